// The derive goes next to `DeriveEntityModel`: without an `Entity` in the module, the
// error names the missing `Entity`.
use wavesyncdb_derive::SyncEntity;

#[derive(SyncEntity)]
pub struct Model {
    pub id: String,
}

fn main() {}
