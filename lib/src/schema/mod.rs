//! What is synced: table metadata, the registry, and the type rules for replicated values.
//!
//! Owns [`TableMeta`], [`ColumnMeta`], [`ValueKind`] and the in-memory [`Registry`] that
//! capture and merge consult, with what the application's triggers mean for sync
//! ([`triggers`]). It is pure: no database handle, no `async`. Creating tables lives in
//! `registration`, which is glue. It must never let a name from the network reach SQL: every table
//! and column a remote change names is matched here against what this peer registered,
//! and only the registered spelling is used afterwards.

pub(crate) mod triggers;

use crate::error::{Error, RejectReason};
use crate::value::CellValue;
use sea_orm::sea_query::ColumnType;
use sea_orm::{EntityTrait, IdenStatic, Iterable, PrimaryKeyToColumn, PrimaryKeyTrait};
use std::collections::HashMap;
use std::sync::Arc;

/// The column name WaveSyncDB reserves in its log for a row's existence. It cannot be a
/// real column: SeaORM entities always name their columns.
pub(crate) const ROW_EXISTS_COLUMN: &str = "";

/// `name` as a double-quoted SQLite identifier. Only ever applied to registered names:
/// a name from the network is matched against the registry first.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Which storage classes a column accepts from a remote peer, derived from its SeaORM type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueKind {
    /// Integers of any width.
    Integer,
    /// Booleans: integer 0 or 1.
    Boolean,
    /// Floating point: real (integers are converted to real).
    Real,
    /// Decimals and money: integer, real or text, as the driver stored them.
    Numeric,
    /// Text, including dates, times, JSON and enums.
    Text,
    /// Bytes.
    Blob,
    /// UUIDs: bytes, or text where the application stores them as text.
    Uuid,
    /// Any storage class (custom column types).
    Any,
}

impl ValueKind {
    /// The kind for a SeaORM column type; `None` for types SQLite cannot hold.
    pub fn from_column_type(column_type: &ColumnType) -> Option<ValueKind> {
        use ColumnType as C;
        Some(match column_type {
            C::TinyInteger
            | C::SmallInteger
            | C::Integer
            | C::BigInteger
            | C::TinyUnsigned
            | C::SmallUnsigned
            | C::Unsigned
            | C::BigUnsigned
            | C::Year => ValueKind::Integer,
            C::Boolean => ValueKind::Boolean,
            C::Float | C::Double => ValueKind::Real,
            C::Decimal(_) | C::Money(_) => ValueKind::Numeric,
            C::Char(_)
            | C::String(_)
            | C::Text
            | C::DateTime
            | C::Timestamp
            | C::TimestampWithTimeZone
            | C::Time
            | C::Date
            | C::Interval(..)
            | C::Json
            | C::JsonBinary
            | C::Enum { .. }
            | C::Cidr
            | C::Inet
            | C::MacAddr => ValueKind::Text,
            C::Blob | C::Binary(_) | C::VarBinary(_) | C::Bit(_) | C::VarBit(_) => ValueKind::Blob,
            C::Uuid => ValueKind::Uuid,
            C::Custom(_) => ValueKind::Any,
            _ => return None,
        })
    }

    /// What this kind accepts, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            ValueKind::Integer => "an integer",
            ValueKind::Boolean => "a boolean (integer 0 or 1)",
            ValueKind::Real => "a real number",
            ValueKind::Numeric => "a number or numeric text",
            ValueKind::Text => "text",
            ValueKind::Blob => "bytes",
            ValueKind::Uuid => "a UUID (bytes or text)",
            ValueKind::Any => "any value",
        }
    }

    /// The canonical form of `value` for this kind, or `None` if the kind cannot hold it.
    /// `NULL` is checked by the caller, which knows whether the column is nullable.
    pub fn canonicalize(self, value: CellValue) -> Option<CellValue> {
        use CellValue as V;
        match (self, value) {
            (_, V::Null) => Some(V::Null),
            (ValueKind::Any, v) => Some(v),
            (ValueKind::Integer, v @ V::Integer(_)) => Some(v),
            (ValueKind::Boolean, V::Integer(i @ (0 | 1))) => Some(V::Integer(i)),
            (ValueKind::Real, v @ V::Real(_)) => Some(v),
            // SQLite's REAL affinity stores an integer as a real; do the same so both
            // peers hold the same bytes.
            (ValueKind::Real, V::Integer(i)) => Some(V::Real(i as f64)),
            (ValueKind::Numeric, v @ (V::Integer(_) | V::Real(_) | V::Text(_))) => Some(v),
            (ValueKind::Text, v @ V::Text(_)) => Some(v),
            (ValueKind::Blob, v @ V::Blob(_)) => Some(v),
            (ValueKind::Uuid, v @ (V::Blob(_) | V::Text(_))) => Some(v),
            _ => None,
        }
    }
}

/// One column of a synced table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMeta {
    /// The column name, as the entity spells it.
    pub name: String,
    /// What values it accepts.
    pub kind: ValueKind,
    /// Whether it accepts `NULL`.
    pub nullable: bool,
}

/// Metadata of a synced table: its name, primary key and columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableMeta {
    /// The table name.
    pub name: String,
    /// The primary key columns, in key order (one for a simple key, several for a
    /// composite key).
    pub primary_key: Vec<String>,
    /// Every column, key columns included, in the entity's order.
    pub columns: Vec<ColumnMeta>,
}

impl TableMeta {
    /// Metadata from explicit parts, checked like an entity's.
    pub fn new(
        name: impl Into<String>,
        primary_key: Vec<String>,
        columns: Vec<ColumnMeta>,
    ) -> Result<TableMeta, Error> {
        let meta = TableMeta {
            name: name.into(),
            primary_key,
            columns,
        };
        meta.check()?;
        Ok(meta)
    }

    /// Metadata of a SeaORM entity. Refuses an entity that cannot be synced: no primary
    /// key, an auto-increment key, or a column type SQLite cannot hold.
    pub fn from_entity<E: EntityTrait>() -> Result<TableMeta, Error> {
        use sea_orm::ColumnTrait;
        let name = E::default().table_name().to_owned();
        let primary_key: Vec<String> = E::PrimaryKey::iter()
            .map(|key| key.into_column().as_str().to_owned())
            .collect();
        if let Some(first) = primary_key.first()
            && <E::PrimaryKey as PrimaryKeyTrait>::auto_increment()
        {
            return Err(Error::AutoIncrementKey {
                table: name,
                column: first.clone(),
            });
        }
        let mut columns = Vec::new();
        for column in E::Column::iter() {
            let def = column.def();
            let column_name = column.as_str().to_owned();
            let kind = ValueKind::from_column_type(def.get_column_type()).ok_or_else(|| {
                Error::UnsupportedColumnType {
                    table: name.clone(),
                    column: column_name.clone(),
                    column_type: format!("{:?}", def.get_column_type()),
                }
            })?;
            columns.push(ColumnMeta {
                nullable: def.is_null() && !primary_key.contains(&column_name),
                name: column_name,
                kind,
            });
        }
        TableMeta::new(name, primary_key, columns)
    }

    fn check(&self) -> Result<(), Error> {
        if self.primary_key.is_empty() {
            return Err(Error::NoPrimaryKey {
                table: self.name.clone(),
            });
        }
        for column in &self.columns {
            if column.name == ROW_EXISTS_COLUMN {
                return Err(Error::ReservedColumnName {
                    table: self.name.clone(),
                    column: column.name.clone(),
                });
            }
        }
        for key in &self.primary_key {
            if self.column(key).is_none() {
                return Err(Error::NoPrimaryKey {
                    table: self.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The column called `name` (SQLite names are case-insensitive).
    pub fn column(&self, name: &str) -> Option<&ColumnMeta> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Whether `name` is one of the primary key columns.
    pub fn is_key(&self, name: &str) -> bool {
        self.primary_key
            .iter()
            .any(|k| k.eq_ignore_ascii_case(name))
    }

    /// Every column, key columns first, and the statement that selects them from every
    /// row of the table.
    pub(crate) fn select_all(&self) -> (Vec<&str>, String) {
        let columns: Vec<&str> = self
            .primary_key
            .iter()
            .map(String::as_str)
            .chain(self.value_columns().map(|c| c.name.as_str()))
            .collect();
        let list = columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {list} FROM {}", quote_ident(&self.name));
        (columns, sql)
    }

    /// The columns that are not part of the primary key.
    pub fn value_columns(&self) -> impl Iterator<Item = &ColumnMeta> {
        self.columns.iter().filter(|c| !self.is_key(&c.name))
    }

    /// Checks a remote value for `column` and returns its canonical form and the
    /// registered column name.
    pub(crate) fn admit(
        &self,
        column: &str,
        value: CellValue,
    ) -> Result<(&ColumnMeta, CellValue), RejectReason> {
        let meta = self
            .column(column)
            .ok_or_else(|| RejectReason::UnknownColumn {
                table: self.name.clone(),
                column: column.to_owned(),
            })?;
        let found = value.storage_class();
        let wrong_type = || RejectReason::WrongType {
            table: self.name.clone(),
            column: meta.name.clone(),
            expected: meta.kind.describe(),
            found,
        };
        if value == CellValue::Null && !meta.nullable {
            return Err(wrong_type());
        }
        let value = meta.kind.canonicalize(value).ok_or_else(wrong_type)?;
        Ok((meta, value))
    }
}

/// How a registered table takes part in sync.
#[derive(Clone, Debug)]
pub(crate) enum TableClass {
    /// Replicated: writes are captured, remote changes accepted.
    Synced(Arc<TableMeta>),
    /// Registered with `register_local`: never replicated, never accepted from the network.
    Local,
    /// Not registered at all: passes straight through.
    Unregistered,
}

/// What SQLite does to a child row when its parent row is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnDelete {
    /// The child row is deleted too.
    Cascade,
    /// The child's referencing columns are set to NULL, or to their defaults.
    SetNullOrDefault,
}

/// A foreign key of a synced table onto a synced table whose deletes SQLite turns into
/// writes of the child (`ON DELETE CASCADE / SET NULL / SET DEFAULT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ForeignKey {
    /// The referencing (child) table, as registered.
    pub child: String,
    /// The child's referencing columns.
    pub child_columns: Vec<String>,
    /// The parent's referenced columns, in the same order.
    pub parent_columns: Vec<String>,
    /// What a delete of the parent does.
    pub on_delete: OnDelete,
}

/// The tables this peer registered, by lower-cased name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    tables: HashMap<String, TableClass>,
    /// Foreign keys with delete actions, by lower-cased parent table.
    children: HashMap<String, Vec<ForeignKey>>,
    /// The main schema's triggers, as last read.
    triggers: Vec<triggers::UserTrigger>,
    /// What they mean given the synced tables; recomputed on every change.
    trigger_plan: triggers::TriggerPlan,
    /// Bumped on every change, so plans made against an older registry are dropped.
    generation: u64,
}

impl Registry {
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn insert_synced(&mut self, meta: TableMeta) {
        self.tables.insert(
            meta.name.to_ascii_lowercase(),
            TableClass::Synced(Arc::new(meta)),
        );
        self.changed();
    }

    pub(crate) fn insert_local(&mut self, table: &str) {
        self.tables
            .insert(table.to_ascii_lowercase(), TableClass::Local);
        self.changed();
    }

    /// Replaces the main schema's triggers.
    pub(crate) fn set_triggers(&mut self, triggers: Vec<triggers::UserTrigger>) {
        self.triggers = triggers;
        self.changed();
    }

    /// What the triggers mean for sync (see [`triggers`]).
    pub(crate) fn trigger_plan(&self) -> &triggers::TriggerPlan {
        &self.trigger_plan
    }

    /// The trigger plan `triggers` would have with this registry's synced tables plus
    /// `also_synced` (lower-cased), before they are registered.
    pub(crate) fn trigger_plan_with(
        &self,
        triggers: &[triggers::UserTrigger],
        also_synced: &[String],
    ) -> triggers::TriggerPlan {
        triggers::TriggerPlan::new(triggers, |table| {
            also_synced.iter().any(|t| t == table) || self.synced(table).is_some()
        })
    }

    fn changed(&mut self) {
        self.generation += 1;
        self.trigger_plan = self.trigger_plan_with(&self.triggers, &[]);
    }

    pub(crate) fn classify(&self, table: &str) -> TableClass {
        self.tables
            .get(&table.to_ascii_lowercase())
            .cloned()
            .unwrap_or(TableClass::Unregistered)
    }

    pub(crate) fn synced(&self, table: &str) -> Option<Arc<TableMeta>> {
        match self.classify(table) {
            TableClass::Synced(meta) => Some(meta),
            _ => None,
        }
    }

    /// Replaces the foreign keys with delete actions between synced tables, keyed by
    /// their parent table.
    pub(crate) fn set_foreign_keys(&mut self, foreign_keys: Vec<(String, ForeignKey)>) {
        self.generation += 1;
        self.children.clear();
        for (parent, foreign_key) in foreign_keys {
            self.children
                .entry(parent.to_ascii_lowercase())
                .or_default()
                .push(foreign_key);
        }
    }

    /// The foreign keys whose parent is `table`.
    pub(crate) fn children_of(&self, table: &str) -> &[ForeignKey] {
        self.children
            .get(&table.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    pub(crate) fn synced_tables(&self) -> impl Iterator<Item = &Arc<TableMeta>> {
        self.tables.values().filter_map(|class| match class {
            TableClass::Synced(meta) => Some(meta),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(
            ValueKind::Real.canonicalize(CellValue::Integer(2)),
            Some(CellValue::Real(2.0))
        );
        assert_eq!(ValueKind::Boolean.canonicalize(CellValue::Integer(2)), None);
        assert_eq!(ValueKind::Boolean.canonicalize("true".into()), None);
        assert_eq!(ValueKind::Text.canonicalize(CellValue::Integer(1)), None);
        assert_eq!(
            ValueKind::Any.canonicalize(CellValue::Blob(vec![1])),
            Some(CellValue::Blob(vec![1]))
        );
    }

    #[test]
    fn admit_checks_names_nulls_and_types() {
        let meta = TableMeta::new(
            "t",
            vec!["id".into()],
            vec![
                ColumnMeta {
                    name: "id".into(),
                    kind: ValueKind::Text,
                    nullable: false,
                },
                ColumnMeta {
                    name: "n".into(),
                    kind: ValueKind::Integer,
                    nullable: false,
                },
                ColumnMeta {
                    name: "note".into(),
                    kind: ValueKind::Text,
                    nullable: true,
                },
            ],
        )
        .unwrap();
        assert!(matches!(
            meta.admit("zzz", 1.into()),
            Err(RejectReason::UnknownColumn { .. })
        ));
        assert!(matches!(
            meta.admit("n", CellValue::Null),
            Err(RejectReason::WrongType { .. })
        ));
        assert!(matches!(
            meta.admit("n", "x".into()),
            Err(RejectReason::WrongType { .. })
        ));
        assert_eq!(meta.admit("NOTE", CellValue::Null).unwrap().0.name, "note");
    }

    #[test]
    fn a_table_needs_a_key() {
        let err = TableMeta::new("t", vec![], vec![]).unwrap_err();
        assert!(matches!(err, Error::NoPrimaryKey { .. }));
    }
}
