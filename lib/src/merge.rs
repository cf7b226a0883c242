//! Last-writer-wins per cell, and what a row looks like given its cell versions.
//!
//! Owns the conflict rule. Pure: handed the versions a peer holds and the versions that
//! arrive, it returns the winners; handed a row's versions, it returns the row's state.
//! It never reads or writes the database (that is `log`'s job).
//!
//! The rule, the same on every peer, so replicas converge whatever order changes arrive in:
//! - A cell (table, key, column) keeps the version with the greatest HLC; the HLC's node id
//!   breaks ties between peers, and on the impossible exact tie the greater value wins.
//! - A row's existence is one more cell: every insert or update writes "exists", a delete
//!   writes "deleted". So a row is alive exactly when its latest write is later than its
//!   latest delete, and an update concurrent with a delete does not resurrect the row on
//!   some peers only.
//! - Deletes keep the row's cell versions, so a later write that resurrects the row
//!   restores the same values on every peer.

use crate::clock::Hlc;
use crate::protocol::{SyncOperation, WriteKind};
use crate::schema::{ROW_EXISTS_COLUMN, TableMeta};
use crate::value::{CellValue, encode_key};
use std::cmp::Ordering;
use std::collections::HashMap;

/// The version of one cell: its value and the timestamp of the write that set it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CellVersion {
    pub value: CellValue,
    pub hlc: Hlc,
}

impl CellVersion {
    fn supersedes(&self, other: &CellVersion) -> bool {
        match self.hlc.cmp(&other.hlc) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => {
                encode_key(std::slice::from_ref(&self.value))
                    > encode_key(std::slice::from_ref(&other.value))
            }
        }
    }
}

/// The cells an operation writes, the row-existence cell included.
pub(crate) fn written_cells(op: &SyncOperation) -> Vec<(String, CellVersion)> {
    let exists = CellValue::Integer(i64::from(op.kind != WriteKind::Delete));
    std::iter::once((ROW_EXISTS_COLUMN.to_owned(), exists))
        .chain(op.values.iter().cloned())
        .map(|(column, value)| (column, CellVersion { value, hlc: op.hlc }))
        .collect()
}

/// The incoming versions that win against what this peer holds for the row.
pub(crate) fn winners(
    held: &HashMap<String, CellVersion>,
    incoming: Vec<(String, CellVersion)>,
) -> Vec<(String, CellVersion)> {
    incoming
        .into_iter()
        .filter(|(column, version)| held.get(column).is_none_or(|h| version.supersedes(h)))
        .collect()
}

/// What a row is, given all the cell versions a peer holds for it.
///
/// Both live states carry only the columns that have a version: a column without one is
/// left as the table has it (its default on insert), never overwritten with a `NULL` made
/// up here (a column added with a default, a value written before the table synced).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RowState {
    /// Deleted, or never written.
    Absent,
    /// Alive, with a value for every column that needs one: the row can be inserted.
    Complete(Vec<(String, CellValue)>),
    /// Alive, but some required column has not arrived yet (its insert is still on the
    /// way): update the row if it is there, insert it once the rest arrives.
    Partial(Vec<(String, CellValue)>),
}

/// The state of a row of `meta` whose versions are `held`.
pub(crate) fn row_state(meta: &TableMeta, held: &HashMap<String, CellVersion>) -> RowState {
    let alive = held
        .get(ROW_EXISTS_COLUMN)
        .is_some_and(|v| v.value == CellValue::Integer(1));
    if !alive {
        return RowState::Absent;
    }
    let mut values = Vec::new();
    let mut complete = true;
    for column in meta.value_columns() {
        match held.get(&column.name) {
            Some(version) => values.push((column.name.clone(), version.value.clone())),
            None if column.nullable => {}
            None => complete = false,
        }
    }
    if complete {
        RowState::Complete(values)
    } else {
        RowState::Partial(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::NodeId;
    use crate::schema::{ColumnMeta, ValueKind};

    fn hlc(time_ms: u64, node: u8) -> Hlc {
        Hlc {
            time_ms,
            counter: 0,
            node: NodeId([node; 16]),
        }
    }

    fn meta() -> TableMeta {
        TableMeta::new(
            "t",
            vec!["id".into()],
            vec![
                ColumnMeta {
                    name: "id".into(),
                    kind: ValueKind::Text,
                    nullable: false,
                },
                ColumnMeta {
                    name: "a".into(),
                    kind: ValueKind::Text,
                    nullable: false,
                },
                ColumnMeta {
                    name: "b".into(),
                    kind: ValueKind::Text,
                    nullable: true,
                },
            ],
        )
        .unwrap()
    }

    fn op(kind: WriteKind, at: Hlc, values: &[(&str, &str)]) -> SyncOperation {
        SyncOperation {
            table: "t".into(),
            kind,
            hlc: at,
            primary_key: vec![("id".into(), "k".into())],
            values: values
                .iter()
                .map(|(c, v)| ((*c).into(), (*v).into()))
                .collect(),
        }
    }

    fn apply(held: &mut HashMap<String, CellVersion>, op: &SyncOperation) {
        for (column, version) in winners(held, written_cells(op)) {
            held.insert(column, version);
        }
    }

    #[test]
    fn concurrent_edits_of_different_columns_both_survive() {
        let mut held = HashMap::new();
        apply(
            &mut held,
            &op(WriteKind::Insert, hlc(1, 1), &[("a", "a0"), ("b", "b0")]),
        );
        apply(&mut held, &op(WriteKind::Update, hlc(3, 2), &[("b", "b2")]));
        apply(&mut held, &op(WriteKind::Update, hlc(2, 1), &[("a", "a1")]));
        assert_eq!(
            row_state(&meta(), &held),
            RowState::Complete(vec![("a".into(), "a1".into()), ("b".into(), "b2".into())])
        );
    }

    #[test]
    fn a_column_without_a_version_is_left_out_not_made_null() {
        let mut held = HashMap::new();
        apply(&mut held, &op(WriteKind::Insert, hlc(1, 1), &[("a", "a0")]));
        assert_eq!(
            row_state(&meta(), &held),
            RowState::Complete(vec![("a".into(), "a0".into())])
        );
    }

    #[test]
    fn a_later_update_outlives_an_earlier_delete_and_an_earlier_update_does_not() {
        let insert = op(WriteKind::Insert, hlc(1, 1), &[("a", "a0")]);
        let delete = op(WriteKind::Delete, hlc(5, 1), &[]);
        for (update_at, alive) in [(hlc(4, 2), false), (hlc(6, 2), true)] {
            let update = op(WriteKind::Update, update_at, &[("a", "a2")]);
            let mut one = HashMap::new();
            let mut two = HashMap::new();
            for o in [&insert, &delete, &update] {
                apply(&mut one, o);
            }
            for o in [&update, &delete, &insert] {
                apply(&mut two, o);
            }
            assert_eq!(row_state(&meta(), &one), row_state(&meta(), &two));
            assert_eq!(row_state(&meta(), &one) != RowState::Absent, alive);
        }
    }

    #[test]
    fn an_update_before_its_insert_is_partial_then_complete() {
        let mut held = HashMap::new();
        apply(&mut held, &op(WriteKind::Update, hlc(2, 2), &[("b", "b2")]));
        assert_eq!(
            row_state(&meta(), &held),
            RowState::Partial(vec![("b".into(), "b2".into())])
        );
        apply(
            &mut held,
            &op(WriteKind::Insert, hlc(1, 1), &[("a", "a0"), ("b", "b0")]),
        );
        assert_eq!(
            row_state(&meta(), &held),
            RowState::Complete(vec![("a".into(), "a0".into()), ("b".into(), "b2".into())])
        );
    }

    #[test]
    fn duplicates_win_nothing() {
        let mut held = HashMap::new();
        let insert = op(WriteKind::Insert, hlc(1, 1), &[("a", "a0")]);
        apply(&mut held, &insert);
        assert!(winners(&held, written_cells(&insert)).is_empty());
    }
}
