//! Writes to a synced table in an endless loop until it is killed; the crash-safety test
//! kills it with SIGKILL at a random moment. Usage: `crash_writer <database file>`.

use sea_orm::prelude::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use std::io::Write;
use wavesyncdb_integration_tests::{open, task};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: crash_writer <database file>")?;
    smol::block_on(async {
        let db = open(std::path::Path::new(&path)).await?;
        let mut stdout = std::io::stdout();
        for n in 0u64.. {
            let id = format!("t{}", n % 200);
            // A single-statement write, then a multi-statement transaction.
            let _ = task::ActiveModel {
                id: Set(id.clone()),
                title: Set(format!("task {n}")),
                completed: Set(false),
            }
            .insert(&db)
            .await;
            let txn = db.begin().await?;
            task::Entity::update_many()
                .col_expr(
                    task::Column::Title,
                    Expr::value(format!("updated {n}, 'quoted'")),
                )
                .col_expr(task::Column::Completed, Expr::value(n % 2 == 0))
                .filter(task::Column::Id.eq(id.clone()))
                .exec(&txn)
                .await?;
            if n % 3 == 0 {
                task::Entity::delete_by_id(format!("t{}", (n + 7) % 200))
                    .exec(&txn)
                    .await?;
            }
            txn.commit().await?;
            writeln!(stdout, "{n}")?;
            stdout.flush()?;
        }
        Ok(())
    })
}
