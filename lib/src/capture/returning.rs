//! Where a captured write's result rows carry the cells it wrote, without changing what the
//! caller reads.
//!
//! Pure. A write without `RETURNING` gets ours appended (aliased `__wavesync_N`), and its
//! rows are the library's alone: the caller gets none, as from SQLite. A write with the
//! caller's own `RETURNING` runs with it exactly as written, so every row holds the
//! columns asked for, in order, and nothing else (SQLite's rows cannot be edited after the
//! fact); the cells are then read from the caller's items that plainly reference a column
//! (`*`, `t.*`, `col`, `t.col`, with or without an alias). Columns the items do not return
//! are read back after the write, by primary key, in the same transaction under the same
//! write lock. A `RETURNING` that names no primary key column plainly (and no `*`) cannot
//! tell the written rows apart: it is refused, with the fix.
//!
//! It never executes anything; the glue (`transaction`, `autocommit`) runs the read-back.

use super::refuse;
use crate::error::Error;
use crate::schema::{TableMeta, quote_ident};
use sqlparser::ast::{Expr, Ident, SelectItem};

/// Prefix of the column aliases we append to `RETURNING`.
const RETURNING_ALIAS_PREFIX: &str = "__wavesync_";

/// How a captured write's rows carry its cells.
#[derive(Clone, Debug)]
pub(crate) enum Returning {
    /// The statement had no `RETURNING`: ours is appended, the wanted columns are the last
    /// ones of each row, and the caller gets no rows.
    Appended,
    /// The caller's own `RETURNING` (these items), run as written; its rows go to the
    /// caller unchanged. Wanted columns that are not among the items are read back by key
    /// after the write (see [`read_back_sql`]).
    Own(Vec<Item>),
}

/// One item of a caller's `RETURNING`, as far as capture is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// `*` or `t.*`: the table's columns, under their declared names.
    Wildcard,
    /// A plain reference to this column (the alias does not matter: the position does).
    Column(String),
    /// Anything else: one result column capture does not read.
    Other,
}

/// Plans the `RETURNING` of a write to `table` that must report `wanted` (keys first):
/// appends ours when there is none, keeps the caller's otherwise.
pub(crate) fn plan(
    returning: &mut Option<Vec<SelectItem>>,
    table: &TableMeta,
    wanted: &[String],
) -> Result<Returning, Error> {
    // The key columns come first in `wanted`: they are what a row is told apart by.
    debug_assert!(wanted.starts_with(&table.primary_key));
    let Some(own) = returning else {
        *returning = Some(
            wanted
                .iter()
                .enumerate()
                .map(|(index, column)| SelectItem::ExprWithAlias {
                    expr: Expr::Identifier(Ident::with_quote('"', column.as_str())),
                    alias: Ident::with_quote('"', format!("{RETURNING_ALIAS_PREFIX}{index}")),
                })
                .collect(),
        );
        return Ok(Returning::Appended);
    };
    let items: Vec<Item> = own.iter().map(|item| classify(item, table)).collect();
    let has = |column: &str| {
        items.iter().any(|item| match item {
            Item::Wildcard => true,
            Item::Column(c) => c.eq_ignore_ascii_case(column),
            Item::Other => false,
        })
    };
    if let Some(key) = table.primary_key.iter().find(|key| !has(key)) {
        return Err(refuse(
            &table.name,
            &format!(
                "its RETURNING clause does not return primary key column `{key}`, so the \
                 rows it wrote cannot be told apart without adding columns to what it \
                 returns; add the key columns to RETURNING (or use RETURNING *)"
            ),
        ));
    }
    Ok(Returning::Own(items))
}

fn classify(item: &SelectItem, table: &TableMeta) -> Item {
    let expr = match item {
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => return Item::Wildcard,
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
        // Several result columns from one item: not SQLite's syntax.
        _ => return Item::Other,
    };
    // In RETURNING, a qualified name can only name the written table (SQLite's rule).
    let name = match expr {
        Expr::Identifier(ident) => Some(ident),
        Expr::CompoundIdentifier(parts) => parts.last(),
        _ => None,
    };
    match name.and_then(|ident| {
        table
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(&ident.value))
    }) {
        Some(column) => Item::Column(column.name.clone()),
        None => Item::Other,
    }
}

/// The position of each of `wanted` in a row of a write run with the caller's `items`,
/// given the row's column names (a wildcard's columns are known by name only); `None` for
/// a column the row does not carry. `Err` when the row does not have the items' shape.
pub(crate) fn locate(
    items: &[Item],
    names: &[&str],
    wanted: &[String],
) -> Result<Vec<Option<usize>>, String> {
    let wildcards = items.iter().filter(|i| **i == Item::Wildcard).count();
    let singles = items.len() - wildcards;
    let spread = match (wildcards, names.len().checked_sub(singles)) {
        (0, Some(0)) => 0,
        (n, Some(rest)) if n > 0 && rest % n == 0 => rest / n,
        _ => {
            return Err(format!(
                "RETURNING produced {} columns for {} items",
                names.len(),
                items.len()
            ));
        }
    };
    let mut found: Vec<(&str, usize)> = Vec::with_capacity(names.len());
    let mut position = 0;
    for item in items {
        match item {
            Item::Column(column) => {
                found.push((column, position));
                position += 1;
            }
            Item::Other => position += 1,
            Item::Wildcard => {
                found.extend(
                    names
                        .iter()
                        .enumerate()
                        .skip(position)
                        .take(spread)
                        .map(|(index, name)| (*name, index)),
                );
                position += spread;
            }
        }
    }
    Ok(wanted
        .iter()
        .map(|column| {
            found
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(column))
                .map(|(_, index)| *index)
        })
        .collect())
}

/// Keys per read-back query: well below SQLite's limit on bound parameters (32,766).
pub(crate) const READ_BACK_KEYS: usize = 500;

/// The query that reads `wanted` (keys first) of `table` for `keys` rows: it binds each
/// row's key values, in order.
pub(crate) fn read_back_sql(table: &TableMeta, wanted: &[String], keys: usize) -> String {
    let list = |columns: &[String]| {
        columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let one = format!("({})", vec!["?"; table.primary_key.len()].join(", "));
    format!(
        "SELECT {} FROM {} WHERE ({}) IN (VALUES {})",
        list(wanted),
        quote_ident(&table.name),
        list(&table.primary_key),
        vec![one; keys.max(1)].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_columns_of_plain_items_and_wildcards() {
        let items = [Item::Other, Item::Wildcard, Item::Column("id".into())];
        let names = ["x", "id", "title", "extra", "id"];
        let wanted = ["id".to_owned(), "title".into(), "done".into()];
        assert_eq!(
            locate(&items, &names, &wanted).unwrap(),
            [Some(1), Some(2), None]
        );
        assert!(locate(&items, &names[..1], &wanted).is_err());
        let plain = [Item::Column("title".into()), Item::Column("id".into())];
        assert_eq!(
            locate(&plain, &["id", "title"], &wanted).unwrap(),
            [Some(1), Some(0), None],
            "aliases do not matter, positions do"
        );
    }
}
