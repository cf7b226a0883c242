use wavesyncdb_derive::SyncEntity;

#[derive(SyncEntity)]
#[sync_entity(replicated)]
pub struct Model {
    pub id: String,
}

fn main() {}
