//! Temporary triggers that note every row SQLite changes in a synced table, whoever made
//! the change: the statement itself, a trigger of the application's, or a foreign key's
//! action.
//!
//! Pure: it returns the SQL of the note table and of the triggers; `trigger_mode`
//! installs them on a writing connection and reads the notes at commit. They are only used while
//! some trigger of the application writes a synced table (see `schema::triggers`): then
//! the statement's `RETURNING` rows no longer say everything a write did.
//!
//! The notes live in `temp._wavesync_touched`, one row per (row, changed column): the key
//! values as SQLite holds them (the columns have no type, so nothing is converted), and
//! `col` = a column name, `*` (inserted: every column) or `-` (deleted, or its key
//! changed). They are written in the user's transaction, so a rollback (or a rolled back
//! savepoint) takes them away with the changes they note. Names reach this SQL only from
//! the registry, as quoted identifiers or as string literals.

use crate::schema::{Registry, TableMeta, quote_ident};

/// The widest primary key whose rows can be noted.
pub(crate) const MAX_KEY_COLUMNS: usize = 8;

/// The name prefix of our temporary triggers.
pub(crate) const TRIGGER_PREFIX: &str = "_wavesync_touch_";

/// Creates the note table on a connection, if missing.
pub(crate) const CREATE_NOTES: &str = "CREATE TEMP TABLE IF NOT EXISTS _wavesync_touched \
    (tbl TEXT NOT NULL, col TEXT NOT NULL, k0, k1, k2, k3, k4, k5, k6, k7)";

/// Reads and clears the notes (two statements, run in order).
pub(crate) const READ_NOTES: &str = "SELECT tbl, col, k0, k1, k2, k3, k4, k5, k6, k7 \
    FROM temp._wavesync_touched";
pub(crate) const CLEAR_NOTES: &str = "DELETE FROM temp._wavesync_touched";

/// Lists the temporary triggers a connection has of ours.
pub(crate) const LIST_TRIGGERS: &str = "SELECT name FROM temp.sqlite_master WHERE type = 'trigger' AND substr(name, 1, 16) = '_wavesync_touch_'";

/// Compound `SELECT`s SQLite allows in one statement are bounded (500); stay below.
const COLUMNS_PER_NOTE: usize = 200;

/// A temporary trigger to have: its name and the statement that creates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TouchTrigger {
    pub name: String,
    pub create: String,
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The triggers every writing connection needs for `registry` (none unless its trigger
/// plan captures). Names carry the registry's generation, so a connection whose triggers
/// predate a change (a new column) replaces them.
pub(crate) fn wanted(registry: &Registry) -> Vec<TouchTrigger> {
    if !registry.trigger_plan().capture {
        return Vec::new();
    }
    all(registry)
}

/// The triggers that note every synced table's changes, whatever the trigger plan says
/// (for one transaction whose cascades go deeper than the planner follows).
pub(crate) fn all(registry: &Registry) -> Vec<TouchTrigger> {
    let mut tables: Vec<_> = registry.synced_tables().collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let generation = registry.generation();
    let mut out = Vec::with_capacity(tables.len() * 3);
    for (index, table) in tables.into_iter().enumerate() {
        if table.primary_key.len() > MAX_KEY_COLUMNS {
            tracing::error!(
                table = %table.name,
                "a primary key of more than {MAX_KEY_COLUMNS} columns: what triggers write to this table is not captured"
            );
            continue;
        }
        let name = |event: &str| format!("{TRIGGER_PREFIX}{generation}_{index}_{event}");
        out.push(TouchTrigger {
            name: name("ins"),
            create: on_insert(table, &name("ins")),
        });
        out.push(TouchTrigger {
            name: name("upd"),
            create: on_update(table, &name("upd")),
        });
        out.push(TouchTrigger {
            name: name("del"),
            create: on_delete(table, &name("del")),
        });
    }
    out
}

fn key_slots(table: &TableMeta) -> String {
    (0..table.primary_key.len())
        .map(|i| format!("k{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_of(table: &TableMeta, row: &str) -> String {
    table
        .primary_key
        .iter()
        .map(|k| format!("{row}.{}", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_changed(table: &TableMeta) -> String {
    table
        .primary_key
        .iter()
        .map(|k| differs(k))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Whether `column` changed, byte for byte: the column's own collation (`NOCASE`) and
/// numeric equality (`1` and `1.0`) would hide changes that peers must see.
fn differs(column: &str) -> String {
    format!(
        "(OLD.{0} COLLATE BINARY IS NOT NEW.{0} OR typeof(OLD.{0}) IS NOT typeof(NEW.{0}))",
        quote_ident(column)
    )
}

fn header(table: &TableMeta, name: &str, event: &str) -> String {
    format!(
        "CREATE TEMP TRIGGER IF NOT EXISTS {} AFTER {event} ON main.{} BEGIN ",
        quote_ident(name),
        quote_ident(&table.name)
    )
}

fn on_insert(table: &TableMeta, name: &str) -> String {
    format!(
        "{}INSERT INTO _wavesync_touched (tbl, col, {}) VALUES ({}, '*', {}); END",
        header(table, name, "INSERT"),
        key_slots(table),
        literal(&table.name),
        key_of(table, "NEW")
    )
}

fn on_delete(table: &TableMeta, name: &str) -> String {
    format!(
        "{}INSERT INTO _wavesync_touched (tbl, col, {}) VALUES ({}, '-', {}); END",
        header(table, name, "DELETE"),
        key_slots(table),
        literal(&table.name),
        key_of(table, "OLD")
    )
}

fn on_update(table: &TableMeta, name: &str) -> String {
    let tbl = literal(&table.name);
    let slots = key_slots(table);
    let new_key = key_of(table, "NEW");
    let changed = key_changed(table);
    let mut body = header(table, name, "UPDATE");
    // A new key: the row under the old one is gone, the one under the new key is new.
    body.push_str(&format!(
        "INSERT INTO _wavesync_touched (tbl, col, {slots}) SELECT {tbl}, '-', {} WHERE {changed}; \
         INSERT INTO _wavesync_touched (tbl, col, {slots}) SELECT {tbl}, '*', {new_key} WHERE {changed}; ",
        key_of(table, "OLD")
    ));
    let columns: Vec<_> = table.value_columns().collect();
    for chunk in columns.chunks(COLUMNS_PER_NOTE) {
        let selects = chunk
            .iter()
            .map(|c| {
                format!(
                    "SELECT {tbl}, {}, {new_key} WHERE {}",
                    literal(&c.name),
                    differs(&c.name)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        body.push_str(&format!(
            "INSERT INTO _wavesync_touched (tbl, col, {slots}) {selects}; "
        ));
    }
    body.push_str("END");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::triggers::UserTrigger;
    use crate::schema::{ColumnMeta, ValueKind};

    fn registry(capture: bool) -> Registry {
        let mut registry = Registry::default();
        registry.insert_synced(
            TableMeta::new(
                "it's",
                vec!["id".into()],
                vec![
                    ColumnMeta {
                        name: "id".into(),
                        kind: ValueKind::Integer,
                        nullable: false,
                    },
                    ColumnMeta {
                        name: "ti\"tle".into(),
                        kind: ValueKind::Text,
                        nullable: true,
                    },
                ],
            )
            .unwrap(),
        );
        if capture {
            registry.set_triggers(vec![UserTrigger {
                name: "t".into(),
                table: "other".into(),
                writes: vec!["it's".into()],
                replaces: Vec::new(),
            }]);
        }
        registry
    }

    #[test]
    fn nothing_unless_a_trigger_writes_a_synced_table() {
        assert!(wanted(&registry(false)).is_empty());
    }

    #[test]
    fn names_are_quoted_and_literals_escaped() {
        let triggers = wanted(&registry(true));
        assert_eq!(triggers.len(), 3);
        let update = &triggers[1].create;
        assert!(update.contains("ON main.\"it's\""), "{update}");
        assert!(update.contains("'it''s'"), "{update}");
        assert!(
            update.contains("OLD.\"ti\"\"tle\" COLLATE BINARY IS NOT NEW.\"ti\"\"tle\""),
            "{update}"
        );
        assert!(update.contains("'ti\"tle'"), "{update}");
    }
}
