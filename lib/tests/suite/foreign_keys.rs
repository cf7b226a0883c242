//! Tables related by foreign keys: what SQLite does on its own (cascades, SET NULL) is
//! captured and replicated, and a replica applies children before parents without
//! stalling.

use crate::common::url;
use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder, Set, TransactionTrait};
use wavesyncdb::{ChangeSet, WaveSyncDb, WaveSyncDbBuilder};

mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "posts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::comment::Entity")]
        Comment,
    }

    impl Related<super::comment::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Comment.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

mod comment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "comments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub post_id: String,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::post::Entity",
            from = "Column::PostId",
            to = "super::post::Column::Id",
            on_delete = "Cascade"
        )]
        Post,
        #[sea_orm(has_many = "super::reaction::Entity")]
        Reaction,
    }

    impl Related<super::post::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Post.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

mod reaction {
    use sea_orm::entity::prelude::*;

    /// A grandchild of a post: cascades two levels down.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reactions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub comment_id: String,
        pub emoji: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::comment::Entity",
            from = "Column::CommentId",
            to = "super::comment::Column::Id",
            on_delete = "Cascade"
        )]
        Comment,
    }

    impl Related<super::comment::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Comment.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

mod pin {
    use sea_orm::entity::prelude::*;

    /// Points at a post, and survives its deletion (SET NULL).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pins")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub post_id: Option<String>,
        pub label: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::post::Entity",
            from = "Column::PostId",
            to = "super::post::Column::Id",
            on_delete = "SetNull"
        )]
        Post,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

async fn open(dir: &tempfile::TempDir) -> WaveSyncDb {
    let db = WaveSyncDbBuilder::new(url(dir), "fk-topic")
        .without_network()
        .build()
        .await
        .unwrap();
    db.schema()
        .register::<post::Entity>()
        .register::<comment::Entity>()
        .register::<reaction::Entity>()
        .register::<pin::Entity>()
        .sync()
        .await
        .unwrap();
    db
}

#[derive(Debug, PartialEq)]
struct Contents {
    posts: Vec<post::Model>,
    comments: Vec<comment::Model>,
    reactions: Vec<reaction::Model>,
    pins: Vec<pin::Model>,
}

async fn contents(db: &WaveSyncDb) -> Contents {
    Contents {
        posts: post::Entity::find()
            .order_by_asc(post::Column::Id)
            .all(db)
            .await
            .unwrap(),
        comments: comment::Entity::find()
            .order_by_asc(comment::Column::Id)
            .all(db)
            .await
            .unwrap(),
        reactions: reaction::Entity::find()
            .order_by_asc(reaction::Column::Id)
            .all(db)
            .await
            .unwrap(),
        pins: pin::Entity::find()
            .order_by_asc(pin::Column::Id)
            .all(db)
            .await
            .unwrap(),
    }
}

async fn write_thread(db: &WaveSyncDb, post_id: &str) {
    let post_id = post_id.to_owned();
    db.transaction::<_, (), sea_orm::DbErr>(|txn| {
        Box::pin(async move {
            post::ActiveModel {
                id: Set(post_id.clone()),
                title: Set("t".into()),
            }
            .insert(txn)
            .await?;
            for n in 0..3 {
                let comment_id = format!("{post_id}-c{n}");
                comment::ActiveModel {
                    id: Set(comment_id.clone()),
                    post_id: Set(post_id.clone()),
                    body: Set(format!("comment {n}")),
                }
                .insert(txn)
                .await?;
                reaction::ActiveModel {
                    id: Set(format!("{comment_id}-r")),
                    comment_id: Set(comment_id),
                    emoji: Set("+1".into()),
                }
                .insert(txn)
                .await?;
            }
            pin::ActiveModel {
                id: Set(format!("{post_id}-pin")),
                post_id: Set(Some(post_id.clone())),
                label: Set("pinned".into()),
            }
            .insert(txn)
            .await?;
            Ok(())
        })
    })
    .await
    .unwrap();
}

async fn assert_consistent(db: &WaveSyncDb) {
    let report = db.verify_log().await.unwrap();
    assert!(report.is_consistent(), "{:?}", report.problems);
}

fn drain(receiver: &async_channel::Receiver<ChangeSet>) -> Vec<ChangeSet> {
    std::iter::from_fn(|| receiver.try_recv().ok()).collect()
}

on_both_executors! {
    async fn cascades_and_set_null_are_captured_and_replicated() {
        let dir_a = tempfile::tempdir().unwrap();
        let a = open(&dir_a).await;
        let sent = a.change_set_receiver();
        write_thread(&a, "p1").await;
        write_thread(&a, "p2").await;
        // SQLite deletes p1's comments and their reactions, and unpins p1's pin.
        post::Entity::delete_by_id("p1").exec(&a).await.unwrap();
        let after = contents(&a).await;
        assert_eq!(after.posts.len(), 1);
        assert_eq!(after.comments.len(), 3);
        assert_eq!(after.reactions.len(), 3);
        assert_eq!(after.pins.iter().filter(|p| p.post_id.is_none()).count(), 1);
        assert_consistent(&a).await;
        // Every change set, in reverse order: children before parents, deletes first.
        let mut sets = drain(&sent);
        assert_eq!(sets.len(), 3);
        sets.reverse();
        let dir_b = tempfile::tempdir().unwrap();
        let b = open(&dir_b).await;
        for set in sets {
            b.apply_remote(set).await.unwrap();
        }
        assert_eq!(contents(&b).await, after);
        assert_consistent(&b).await;
    }

    async fn a_delete_in_a_transaction_captures_its_cascades() {
        let dir_a = tempfile::tempdir().unwrap();
        let a = open(&dir_a).await;
        let sent = a.change_set_receiver();
        write_thread(&a, "p1").await;
        let txn = a.begin().await.unwrap();
        post::Entity::delete_many().exec(&txn).await.unwrap();
        txn.commit().await.unwrap();
        assert_consistent(&a).await;
        let dir_b = tempfile::tempdir().unwrap();
        let b = open(&dir_b).await;
        for set in drain(&sent) {
            b.apply_remote(set).await.unwrap();
        }
        assert_eq!(contents(&b).await, contents(&a).await);
        assert_consistent(&b).await;
    }
}

on_both_executors! {
    async fn children_that_arrive_before_any_registration_are_written_when_it_comes() {
        let dir_a = tempfile::tempdir().unwrap();
        let a = open(&dir_a).await;
        let sent = a.change_set_receiver();
        write_thread(&a, "p1").await;
        // B's engine receives the thread before the app registers anything.
        let dir_b = tempfile::tempdir().unwrap();
        let b = WaveSyncDbBuilder::new(url(&dir_b), "fk-topic").without_network().build().await.unwrap();
        for set in drain(&sent) {
            b.apply_remote(set).await.unwrap();
        }
        // Children registered (and so written) before their parents.
        b.schema()
            .register::<reaction::Entity>()
            .register::<comment::Entity>()
            .register::<pin::Entity>()
            .register::<post::Entity>()
            .sync()
            .await
            .unwrap();
        assert_eq!(contents(&b).await, contents(&a).await);
        assert_consistent(&b).await;
    }
}
