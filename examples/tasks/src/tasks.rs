//! The task list itself: its entity, how it is printed, and the commands that edit it.

use sea_orm::prelude::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use wavesyncdb::WaveSyncDb;

pub(crate) mod task {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub title: String,
        pub completed: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn new_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// How a peer's connection travels, in a word.
pub(crate) fn connection_name(kind: Option<wavesyncdb::ConnectionKind>) -> &'static str {
    match kind {
        Some(wavesyncdb::ConnectionKind::Direct) => "direct",
        Some(wavesyncdb::ConnectionKind::Relayed) => "relayed",
        _ => "connecting",
    }
}

pub(crate) async fn print_tasks(db: &WaveSyncDb) -> Result<(), sea_orm::DbErr> {
    let tasks = task::Entity::find()
        .order_by_asc(task::Column::Title)
        .all(db)
        .await?;
    let connected: Vec<_> = db.peers().into_iter().filter(|p| p.connected).collect();
    let peers = connected.len();
    println!(
        "tasks ({} peer{} connected):",
        peers,
        if peers == 1 { "" } else { "s" }
    );
    for peer in &connected {
        println!(
            "  peer {} {}",
            peer.peer_id,
            connection_name(peer.connection)
        );
    }
    // A long list is cut: the count says how many there are.
    const SHOWN: usize = 50;
    for t in tasks.iter().take(SHOWN) {
        println!(
            "  [{}] {}  {}",
            if t.completed { "x" } else { " " },
            t.id,
            t.title
        );
    }
    if tasks.len() > SHOWN {
        println!(
            "  ... and {} more ({} tasks)",
            tasks.len() - SHOWN,
            tasks.len()
        );
    }
    if tasks.is_empty() {
        println!("  (none)");
    }
    Ok(())
}

/// Runs one command line of `watch` (also `add` from the command line); false on `quit`.
pub(crate) async fn run_command(db: &WaveSyncDb, line: &str) -> Result<bool, sea_orm::DbErr> {
    let (verb, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    let rest = rest.trim();
    match verb {
        "" => {}
        "add" if !rest.is_empty() => {
            task::ActiveModel {
                id: Set(new_id()),
                title: Set(rest.to_owned()),
                completed: Set(false),
            }
            .insert(db)
            .await?;
        }
        "done" | "rm" if !rest.is_empty() => {
            // The id's prefix, matched as text (no LIKE: `%` and `_` are no wildcards),
            // and only when it names one task.
            let ids: Vec<String> = task::Entity::find()
                .all(db)
                .await?
                .into_iter()
                .map(|t| t.id)
                .filter(|id| id.starts_with(rest))
                .collect();
            match ids.as_slice() {
                [] => println!("no task id starts with {rest:?}"),
                [id] if verb == "done" => {
                    task::Entity::update_many()
                        .col_expr(task::Column::Completed, Expr::value(true))
                        .filter(task::Column::Id.eq(id.as_str()))
                        .exec(db)
                        .await?;
                }
                [id] => {
                    task::Entity::delete_by_id(id.clone()).exec(db).await?;
                }
                many => println!(
                    "{} task ids start with {rest:?}; give more of the id",
                    many.len()
                ),
            }
        }
        "list" => print_tasks(db).await?,
        "quit" | "exit" => return Ok(false),
        _ => println!("commands: add <title> | done <id> | rm <id> | list | quit"),
    }
    Ok(true)
}
