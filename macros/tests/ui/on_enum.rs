use wavesyncdb_derive::SyncEntity;

#[derive(SyncEntity)]
pub enum Model {
    A,
}

fn main() {}
