//! Cell values as they are replicated: SQLite's five storage classes.
//!
//! Owns [`CellValue`], its conversion to and from SeaORM/sqlx values, and the canonical
//! byte encoding of primary keys used to address rows in the sync log.
//!
//! It must never interpret a value by its column's declared type: that is `schema`'s job
//! (validation and canonicalisation). What SQLite stored is what we replicate, so two peers
//! that hold the same row hold the same `CellValue`s, byte for byte.

use sea_orm::Value;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, TypeInfo, ValueRef};

/// The largest value (text or bytes) a synced cell may hold: 8 MiB. A local write of a
/// larger value is refused (the transaction does not commit), and a peer's change carrying
/// one is rejected. Every value must fit one catch-up page, which is what bounds it; store
/// larger files outside the database and sync their names or hashes.
pub const MAX_CELL_BYTES: usize = 8 << 20;

/// One replicated value: exactly what SQLite stored in a cell.
///
/// SQLite has five storage classes, and every value SeaORM writes (bools, dates, UUIDs,
/// JSON, decimals) lands in one of them, so replicating storage classes loses nothing and
/// compares canonically (a `bool` column holds `Integer(0)` or `Integer(1)` everywhere).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CellValue {
    /// SQL `NULL`.
    Null,
    /// A 64-bit signed integer (also how SQLite stores booleans).
    Integer(i64),
    /// An IEEE-754 double.
    Real(f64),
    /// UTF-8 text (also how SeaORM stores dates, times, JSON and enums on SQLite).
    Text(String),
    /// Raw bytes (also how sqlx stores UUIDs on SQLite).
    Blob(Vec<u8>),
}

impl CellValue {
    /// The name of this value's storage class, as SQLite's `typeof()` spells it.
    pub fn storage_class(&self) -> &'static str {
        match self {
            CellValue::Null => "null",
            CellValue::Integer(_) => "integer",
            CellValue::Real(_) => "real",
            CellValue::Text(_) => "text",
            CellValue::Blob(_) => "blob",
        }
    }

    /// The bytes of the value's payload: the length of a text or blob, 8 for a number.
    pub fn byte_len(&self) -> usize {
        match self {
            CellValue::Null => 0,
            CellValue::Integer(_) | CellValue::Real(_) => 8,
            CellValue::Text(text) => text.len(),
            CellValue::Blob(blob) => blob.len(),
        }
    }

    /// The SeaORM value that binds this cell as a statement parameter.
    pub fn to_sea_value(&self) -> Value {
        match self {
            CellValue::Null => Value::BigInt(None),
            CellValue::Integer(i) => Value::BigInt(Some(*i)),
            CellValue::Real(f) => Value::Double(Some(*f)),
            CellValue::Text(s) => Value::String(Some(s.clone())),
            CellValue::Blob(b) => Value::Bytes(Some(b.clone())),
        }
    }

    /// The cell SQLite stores for a SeaORM value, for the value types whose SQLite form
    /// is unambiguous (integers, booleans, floats, text, bytes, UUIDs); `None` for others.
    /// Useful to compare a primary key with [`crate::RowChange::primary_key`].
    pub fn from_value(value: &Value) -> Option<CellValue> {
        Some(match value {
            Value::Bool(v) => v.map_or(CellValue::Null, |b| CellValue::Integer(i64::from(b))),
            Value::TinyInt(v) => v.map_or(CellValue::Null, |i| CellValue::Integer(i64::from(i))),
            Value::SmallInt(v) => v.map_or(CellValue::Null, |i| CellValue::Integer(i64::from(i))),
            Value::Int(v) => v.map_or(CellValue::Null, |i| CellValue::Integer(i64::from(i))),
            Value::BigInt(v) => v.map_or(CellValue::Null, CellValue::Integer),
            Value::TinyUnsigned(v) => {
                v.map_or(CellValue::Null, |i| CellValue::Integer(i64::from(i)))
            }
            Value::SmallUnsigned(v) => {
                v.map_or(CellValue::Null, |i| CellValue::Integer(i64::from(i)))
            }
            Value::Unsigned(v) => v.map_or(CellValue::Null, |i| CellValue::Integer(i64::from(i))),
            Value::BigUnsigned(v) => match v {
                None => CellValue::Null,
                Some(i) => CellValue::Integer(i64::try_from(*i).ok()?),
            },
            Value::Float(v) => v.map_or(CellValue::Null, |f| CellValue::Real(f64::from(f))),
            Value::Double(v) => v.map_or(CellValue::Null, CellValue::Real),
            Value::String(v) => v.clone().map_or(CellValue::Null, CellValue::Text),
            Value::Char(v) => v.map_or(CellValue::Null, |c| CellValue::Text(c.to_string())),
            Value::Bytes(v) => v.clone().map_or(CellValue::Null, CellValue::Blob),
            Value::Uuid(v) => v.map_or(CellValue::Null, |u| CellValue::Blob(u.as_bytes().to_vec())),
            _ => return None,
        })
    }

    /// Reads column `index` of a SQLite row as the storage class SQLite reports for it.
    pub(crate) fn read(row: &SqliteRow, index: usize) -> Result<CellValue, sqlx::Error> {
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            return Ok(CellValue::Null);
        }
        // `type_info` of a non-NULL value is its runtime storage class, not the declared
        // column type, so this never guesses.
        let class = raw.type_info().name().to_ascii_uppercase();
        Ok(match class.as_str() {
            "INTEGER" | "BOOLEAN" | "INT8" | "INT" | "BIGINT" => {
                CellValue::Integer(row.try_get_unchecked::<i64, _>(index)?)
            }
            "REAL" | "FLOAT" | "DOUBLE" => CellValue::Real(row.try_get_unchecked::<f64, _>(index)?),
            "BLOB" => CellValue::Blob(row.try_get_unchecked::<Vec<u8>, _>(index)?),
            _ => CellValue::Text(row.try_get_unchecked::<String, _>(index)?),
        })
    }
}

impl From<i64> for CellValue {
    fn from(v: i64) -> Self {
        CellValue::Integer(v)
    }
}
impl From<bool> for CellValue {
    fn from(v: bool) -> Self {
        CellValue::Integer(i64::from(v))
    }
}
impl From<f64> for CellValue {
    fn from(v: f64) -> Self {
        CellValue::Real(v)
    }
}
impl From<&str> for CellValue {
    fn from(v: &str) -> Self {
        CellValue::Text(v.to_owned())
    }
}
impl From<String> for CellValue {
    fn from(v: String) -> Self {
        CellValue::Text(v)
    }
}
impl From<Vec<u8>> for CellValue {
    fn from(v: Vec<u8>) -> Self {
        CellValue::Blob(v)
    }
}

/// The canonical bytes of a primary key (its values in the table's key-column order),
/// used as the row address in the sync log. Equal keys always give equal bytes.
pub(crate) fn encode_key(values: &[CellValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * values.len());
    for value in values {
        match value {
            CellValue::Null => out.push(0),
            CellValue::Integer(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            CellValue::Real(f) => {
                out.push(2);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            CellValue::Text(s) => {
                out.push(3);
                out.extend_from_slice(&(s.len() as u64).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            CellValue::Blob(b) => {
                out.push(4);
                out.extend_from_slice(&(b.len() as u64).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    out
}

/// Inverse of [`encode_key`]; `None` for bytes it did not produce.
pub(crate) fn decode_key(mut bytes: &[u8]) -> Option<Vec<CellValue>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Some(head)
    }
    fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(take(bytes, 8)?.try_into().ok()?))
    }
    let mut values = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        bytes = rest;
        values.push(match tag {
            0 => CellValue::Null,
            1 => CellValue::Integer(take_u64(&mut bytes)? as i64),
            2 => CellValue::Real(f64::from_bits(take_u64(&mut bytes)?)),
            3 => {
                let len = usize::try_from(take_u64(&mut bytes)?).ok()?;
                CellValue::Text(String::from_utf8(take(&mut bytes, len)?.to_vec()).ok()?)
            }
            4 => {
                let len = usize::try_from(take_u64(&mut bytes)?).ok()?;
                CellValue::Blob(take(&mut bytes, len)?.to_vec())
            }
            _ => return None,
        });
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_cell() -> impl Strategy<Value = CellValue> {
        prop_oneof![
            Just(CellValue::Null),
            any::<i64>().prop_map(CellValue::Integer),
            any::<f64>().prop_map(CellValue::Real),
            ".*".prop_map(CellValue::Text),
            proptest::collection::vec(any::<u8>(), 0..32).prop_map(CellValue::Blob),
        ]
    }

    proptest! {
        #[test]
        fn key_encoding_round_trips(values in proptest::collection::vec(any_cell(), 1..4)) {
            let bytes = encode_key(&values);
            let decoded = decode_key(&bytes).expect("decodes");
            // Compare through the encoding so NaN payloads compare bit-exactly.
            prop_assert_eq!(encode_key(&decoded), bytes);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_key(&bytes);
        }
    }
    #[test]
    fn decoding_refuses_truncated_or_unknown_input() {
        assert_eq!(decode_key(&[]), Some(vec![]));
        assert_eq!(decode_key(&[9]), None);
        assert_eq!(decode_key(&[1, 0, 0]), None);
        assert_eq!(
            decode_key(&[3, 255, 255, 255, 255, 255, 255, 255, 255]),
            None
        );
        assert_eq!(decode_key(&[3, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]), None);
    }

    #[test]
    fn sea_values_map_to_their_sqlite_cells() {
        assert_eq!(
            CellValue::from_value(&Value::Bool(Some(true))),
            Some(CellValue::Integer(1))
        );
        assert_eq!(
            CellValue::from_value(&Value::String(Some("a".into()))),
            Some("a".into())
        );
        assert_eq!(
            CellValue::from_value(&Value::Int(None)),
            Some(CellValue::Null)
        );
        assert_eq!(
            CellValue::from_value(&Value::BigUnsigned(Some(u64::MAX))),
            None
        );
    }

    #[test]
    fn distinct_keys_encode_distinctly() {
        let a = encode_key(&["ab".into(), "c".into()]);
        let b = encode_key(&["a".into(), "bc".into()]);
        assert_ne!(a, b);
        assert_ne!(
            encode_key(&[CellValue::Integer(1)]),
            encode_key(&["1".into()])
        );
    }
}
