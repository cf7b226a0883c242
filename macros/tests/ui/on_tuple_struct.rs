use wavesyncdb_derive::SyncEntity;

#[derive(SyncEntity)]
pub struct Model(String);

fn main() {}
