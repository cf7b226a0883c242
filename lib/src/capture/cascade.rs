//! What SQLite does on its own to the children of deleted rows (`ON DELETE CASCADE`,
//! `SET NULL`, `SET DEFAULT`), planned so that it is captured too.
//!
//! Pure. For a DELETE on a synced table that synced children reference with a delete
//! action, it returns one query per foreign key (following cascades down to
//! [`MAX_DEPTH`] levels) that selects the primary keys of the child rows the delete will
//! reach. Each query embeds the DELETE's own `WHERE` once, so it binds exactly the
//! DELETE's parameters. The connection runs them just before the DELETE, under the same
//! write lock, and reads those rows again after it: the rows that are gone are captured as
//! deletes, the others as updates of their referencing columns.
//!
//! Cascades deeper than [`MAX_DEPTH`] (a tree of replies) are not followed here: the plan
//! says so, and the delete then runs with SQLite noting every row it changes
//! (`capture::touch`), which sees every level.

use crate::schema::{OnDelete, Registry, TableMeta, quote_ident};
use std::sync::Arc;

/// How many levels of cascades are followed (a self-referencing table, a tree of
/// comments, is followed that deep).
pub(crate) const MAX_DEPTH: usize = 8;

/// The children of a delete's rows that one foreign key action reaches.
#[derive(Clone, Debug)]
pub(crate) struct Cascade {
    /// The child table.
    pub table: Arc<TableMeta>,
    /// Selects the child rows' primary keys; binds the DELETE's parameters.
    pub select_keys: String,
    /// The child's referencing columns (what `SET NULL / SET DEFAULT` changes).
    pub columns: Vec<String>,
    /// How many of the DELETE's parameters `select_keys` binds, from the first: those of
    /// its `WHERE` (its `RETURNING`'s come after them); `None` for all of them.
    pub params: Option<usize>,
}

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cascades of a DELETE from `table`, written `FROM {from} WHERE {selection}`, and
/// whether they go deeper than [`MAX_DEPTH`] levels.
pub(crate) fn plan(
    registry: &Registry,
    table: &Arc<TableMeta>,
    from: &str,
    selection: Option<&str>,
    params: Option<usize>,
) -> (Vec<Cascade>, bool) {
    let filter = selection.map(|s| format!(" WHERE {s}")).unwrap_or_default();
    // A query for `columns` of the rows being deleted from `table`.
    let rows_of =
        move |columns: &[String]| format!("SELECT {} FROM {from}{filter}", column_list(columns));
    let mut out = Vec::new();
    let deeper = follow(registry, table, &rows_of, 0, &mut out);
    for cascade in &mut out {
        cascade.params = params;
    }
    (out, deeper)
}

fn follow(
    registry: &Registry,
    parent: &TableMeta,
    rows_of: &dyn Fn(&[String]) -> String,
    depth: usize,
    out: &mut Vec<Cascade>,
) -> bool {
    if depth >= MAX_DEPTH {
        return !registry.children_of(&parent.name).is_empty();
    }
    let mut deeper = false;
    for key in registry.children_of(&parent.name) {
        let Some(child) = registry.synced(&key.child) else {
            continue;
        };
        let condition = format!(
            "({}) IN ({})",
            column_list(&key.child_columns),
            rows_of(&key.parent_columns)
        );
        let child_table = quote_ident(&child.name);
        out.push(Cascade {
            table: Arc::clone(&child),
            select_keys: format!(
                "SELECT {} FROM {child_table} WHERE {condition}",
                column_list(&child.primary_key)
            ),
            columns: key.child_columns.clone(),
            params: None,
        });
        if key.on_delete == OnDelete::Cascade {
            let rows_of_child = |columns: &[String]| {
                format!(
                    "SELECT {} FROM {child_table} WHERE {condition}",
                    column_list(columns)
                )
            };
            deeper |= follow(registry, &child, &rows_of_child, depth + 1, out);
        }
    }
    deeper
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnMeta, ForeignKey, ValueKind};

    fn table(name: &str, columns: &[&str]) -> TableMeta {
        TableMeta::new(
            name,
            vec!["id".into()],
            columns
                .iter()
                .map(|c| ColumnMeta {
                    name: (*c).into(),
                    kind: ValueKind::Text,
                    nullable: true,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn follows_cascades_and_stops_at_set_null() {
        let mut registry = Registry::default();
        registry.insert_synced(table("posts", &["id", "title"]));
        registry.insert_synced(table("comments", &["id", "post_id"]));
        registry.insert_synced(table("likes", &["id", "comment_id"]));
        registry.insert_synced(table("pins", &["id", "post_id"]));
        let fk = |child: &str, column: &str, on_delete| ForeignKey {
            child: child.into(),
            child_columns: vec![column.into()],
            parent_columns: vec!["id".into()],
            on_delete,
        };
        registry.set_foreign_keys(vec![
            ("posts".into(), fk("comments", "post_id", OnDelete::Cascade)),
            (
                "comments".into(),
                fk("likes", "comment_id", OnDelete::Cascade),
            ),
            (
                "posts".into(),
                fk("pins", "post_id", OnDelete::SetNullOrDefault),
            ),
        ]);
        let posts = registry.synced("posts").unwrap();
        let (cascades, deeper) = plan(&registry, &posts, "posts", Some("\"id\" = ?"), Some(1));
        assert!(!deeper);
        let tables: Vec<&str> = cascades.iter().map(|c| c.table.name.as_str()).collect();
        assert_eq!(tables, ["comments", "likes", "pins"]);
        assert_eq!(
            cascades[1].select_keys,
            "SELECT \"id\" FROM \"likes\" WHERE (\"comment_id\") IN (SELECT \"id\" FROM \
             \"comments\" WHERE (\"post_id\") IN (SELECT \"id\" FROM posts WHERE \"id\" = ?))"
        );
        // Each query binds the DELETE's parameter once.
        assert!(
            cascades
                .iter()
                .all(|c| c.select_keys.matches('?').count() == 1)
        );
    }

    #[test]
    fn a_self_reference_is_followed_to_the_depth_bound() {
        let mut registry = Registry::default();
        registry.insert_synced(table("nodes", &["id", "parent"]));
        registry.set_foreign_keys(vec![(
            "nodes".into(),
            ForeignKey {
                child: "nodes".into(),
                child_columns: vec!["parent".into()],
                parent_columns: vec!["id".into()],
                on_delete: OnDelete::Cascade,
            },
        )]);
        let nodes = registry.synced("nodes").unwrap();
        let (cascades, deeper) = plan(&registry, &nodes, "nodes", None, None);
        assert_eq!(cascades.len(), MAX_DEPTH);
        assert!(deeper);
    }
}
