//! Which statements write synced tables, and how to run them so the written rows are known.
//!
//! Owns the classification of SQL (through sqlparser's AST, never string slicing) and its
//! rewrite: a write to a synced table without `RETURNING` gets one listing the table's
//! synced columns, so the database itself reports the exact rows and values the statement
//! wrote, in the same step that wrote them. A write with the caller's own `RETURNING` runs
//! with it as written, so what the caller reads is exactly what it asked for; the cells
//! come from its items, or are read back by key ([`returning`]).
//!
//! Pure: it takes SQL text and the registry, and returns a plan ([`rows`] turns the rows
//! the plan's statement returned into operations). It must never execute
//! anything, and it must never let a write to a synced table through uncaptured: what it
//! cannot capture exactly it refuses, with the reason and the statement to write instead.
//!
//! Decisions:
//! - `INSERT OR REPLACE` / `REPLACE INTO` run as an upsert on the primary key that sets
//!   every column (the values a replace gives the row), captured like any upsert; a
//!   collision on another UNIQUE column is an error instead of a silent delete of the other
//!   row, and the row's children stay (see `replace_as_upsert`). `UPDATE OR REPLACE` is
//!   refused. `on_conflict(..).update_columns(..)` (an upsert) is captured.
//! - An upsert's `DO UPDATE` branch is captured as a write of every synced column (we
//!   cannot tell from `RETURNING` whether the row was inserted or updated), so it is
//!   last-writer-wins for the whole row; a plain `UPDATE` is per column.
//! - Assigning a primary key column is refused: the old key would vanish without a trace.
//!   Delete the row and insert it under the new key instead.
//! - A write with its own `RETURNING` that returns no primary key column plainly (`id`,
//!   `t.id`, `*`) is refused: the rows it wrote could not be told apart without adding
//!   columns to what the caller reads (see [`returning`]).
//! - Writes wrapped in `WITH`, multi-table `DELETE`, and several statements in one
//!   prepared statement (whose parameters cannot be split safely) are refused.
//! - `DROP TABLE` and `ALTER TABLE` other than `ADD COLUMN` on a synced table are
//!   refused: every later change from peers would fail. A table qualified with another
//!   schema than `main` (`temp.tasks`) is not the synced table.
//! - A delete of rows that synced children reference with `ON DELETE CASCADE / SET NULL /
//!   SET DEFAULT` carries the queries that find those children ([`cascade`]), so what
//!   SQLite does to them on its own is captured as the writes it is. Cascades deeper than
//!   the planner follows, and every write while some trigger of the application writes a
//!   synced table, run with SQLite noting each row it changes ([`touch`]); the notes are
//!   what the transaction logs for those rows.

mod cascade;
mod returning;
pub(crate) mod rows;
pub(crate) mod touch;

pub(crate) use cascade::Cascade;
pub(crate) use returning::Returning;
use returning::{READ_BACK_KEYS, locate, read_back_sql};

use crate::error::Error;
use crate::schema::{Registry, TableClass, TableMeta};
use sea_orm::DbBackend;
use sqlparser::ast::{
    AlterTableOperation, Assignment, AssignmentTarget, Expr, FromTable, Ident, ObjectName,
    ObjectType, OnConflictAction, OnInsert, SetExpr, SqliteOnConflict, Statement, TableFactor,
    TableObject, TableWithJoins,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use std::sync::Arc;

/// What kind of write a captured statement is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CaptureKind {
    /// Insert or upsert: every synced column of each returned row was written.
    Insert,
    /// Update: the assigned synced columns of each returned row were written.
    Update,
    /// Delete: each returned row was deleted.
    Delete,
}

/// A write to a synced table, rewritten to report what it writes.
#[derive(Clone, Debug)]
pub(crate) struct Capture {
    pub table: Arc<TableMeta>,
    pub kind: CaptureKind,
    /// The statement to execute: the original, with our `RETURNING` if it had none.
    pub sql: String,
    /// The registered names of the columns whose written values are captured, key
    /// columns first.
    pub returned_columns: Vec<String>,
    /// Where each row carries them, and whether the caller gets the rows.
    pub returning: Returning,
    /// For a delete: the child rows its foreign keys' actions will delete or change.
    pub cascades: Vec<Cascade>,
    /// The cascades go deeper than [`cascade::MAX_DEPTH`]: the write runs with SQLite
    /// noting every row it changes ([`touch`]).
    pub needs_notes: bool,
}

/// What to do with one statement.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// Execute as it is (reads, DDL, writes to unregistered or local tables).
    PassThrough {
        sql: String,
        /// Whether it is an INSERT, UPDATE or DELETE, whose changed rows count in the
        /// script's `rows_affected` (SQLite reports a stale count after other statements).
        writes_rows: bool,
    },
    /// Execute the rewritten statement and record what it returns.
    Capture(Capture),
}

/// The plan for a prepared statement: one SQL text with its parameters.
pub(crate) fn plan_statement(
    sql: &str,
    backend: DbBackend,
    registry: &Registry,
) -> Result<Option<Capture>, Error> {
    let Some(steps) = plan_script(sql, backend, registry)? else {
        return Ok(None);
    };
    let mut captures = steps.into_iter().filter_map(|step| match step {
        Step::Capture(capture) => Some(capture),
        Step::PassThrough { .. } => None,
    });
    let first = captures.next();
    if let Some(capture) = &first
        && (captures.next().is_some() || statement_count(sql, backend) > 1)
    {
        return Err(refuse(
            &capture.table.name,
            "several statements in one prepared statement cannot be captured, because \
             their parameters cannot be told apart; send them one at a time",
        ));
    }
    Ok(first)
}

/// The plan for a script of `;`-separated statements without parameters.
/// `None` when nothing in it writes a synced table: run the text unchanged.
pub(crate) fn plan_script(
    sql: &str,
    backend: DbBackend,
    registry: &Registry,
) -> Result<Option<Vec<Step>>, Error> {
    let dialect = dialect(backend);
    let statements = match Parser::parse_sql(dialect.as_ref(), sql) {
        Ok(statements) => statements,
        Err(parse_error) => {
            // We cannot see what it does. If it names a synced table, it may write it.
            return match synced_table_named(sql, dialect.as_ref(), registry) {
                Some(table) => Err(refuse(
                    &table,
                    &format!(
                        "the statement could not be parsed ({parse_error}), so its writes \
                         cannot be captured; write it in plain SQLite syntax or through SeaORM"
                    ),
                )),
                None => Ok(None),
            };
        }
    };
    let mut steps = Vec::with_capacity(statements.len());
    let mut any_capture = false;
    for statement in statements {
        match plan_one(statement, registry)? {
            Planned::Capture(capture) => {
                any_capture = true;
                steps.push(Step::Capture(capture));
            }
            Planned::PassThrough(statement) => steps.push(Step::PassThrough {
                writes_rows: matches!(
                    *statement,
                    Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
                ),
                sql: statement.to_string(),
            }),
        }
    }
    Ok(any_capture.then_some(steps))
}

enum Planned {
    PassThrough(Box<Statement>),
    Capture(Capture),
}

fn plan_one(statement: Statement, registry: &Registry) -> Result<Planned, Error> {
    match statement {
        Statement::Insert(mut insert) => {
            let TableObject::TableName(name) = &insert.table else {
                return Ok(Planned::PassThrough(Box::new(Statement::Insert(insert))));
            };
            let Some(table) = synced(registry, name) else {
                return Ok(Planned::PassThrough(Box::new(Statement::Insert(insert))));
            };
            if insert.replace_into || insert.or == Some(SqliteOnConflict::Replace) {
                if insert.on.is_some() {
                    return Err(refuse(
                        &table.name,
                        "INSERT OR REPLACE with an ON CONFLICT clause is ambiguous; use \
                         one of the two",
                    ));
                }
                replace_as_upsert(&mut insert, &table);
            }
            match &insert.on {
                None => {}
                Some(OnInsert::OnConflict(conflict)) => {
                    if let OnConflictAction::DoUpdate(update) = &conflict.action {
                        check_no_key_assigned(&table, &update.assignments)?;
                    }
                }
                Some(_) => {
                    return Err(refuse(
                        &table.name,
                        "ON DUPLICATE KEY UPDATE is MySQL syntax; use ON CONFLICT (..) DO UPDATE",
                    ));
                }
            }
            let columns = all_columns(&table);
            let returning = returning::plan(&mut insert.returning, &table, &columns)?;
            Ok(Planned::Capture(capture(
                table,
                CaptureKind::Insert,
                Statement::Insert(insert),
                columns,
                returning,
            )))
        }
        Statement::Update(mut update) => {
            let Some(table) = target_table(registry, &update.table) else {
                return Ok(Planned::PassThrough(Box::new(Statement::Update(update))));
            };
            if update.or == Some(SqliteOnConflict::Replace) {
                return Err(refuse(
                    &table.name,
                    "UPDATE OR REPLACE may delete other rows that cannot be captured; \
                     use a plain UPDATE",
                ));
            }
            if !update.table.joins.is_empty() {
                return Err(refuse(
                    &table.name,
                    "UPDATE with JOIN is not SQLite syntax; use UPDATE .. FROM",
                ));
            }
            check_no_key_assigned(&table, &update.assignments)?;
            let assigned = assigned_columns(&table, &update.assignments);
            if assigned.is_empty() {
                // It writes no synced column: nothing to replicate.
                return Ok(Planned::PassThrough(Box::new(Statement::Update(update))));
            }
            let columns: Vec<String> = table.primary_key.iter().cloned().chain(assigned).collect();
            let returning = returning::plan(&mut update.returning, &table, &columns)?;
            Ok(Planned::Capture(capture(
                table,
                CaptureKind::Update,
                Statement::Update(update),
                columns,
                returning,
            )))
        }
        Statement::Delete(mut delete) => {
            let from = match &delete.from {
                FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
            };
            let targets: Vec<Arc<TableMeta>> = from
                .iter()
                .filter_map(|t| target_table(registry, t))
                .chain(
                    delete
                        .tables
                        .iter()
                        .filter_map(|name| synced(registry, name)),
                )
                .collect();
            let Some(table) = targets.first().cloned() else {
                return Ok(Planned::PassThrough(Box::new(Statement::Delete(delete))));
            };
            if from.len() != 1
                || !from[0].joins.is_empty()
                || !delete.tables.is_empty()
                || delete.using.is_some()
            {
                return Err(refuse(
                    &table.name,
                    "a DELETE of several tables cannot be captured; delete from one table \
                     and select the rows with WHERE .. IN (SELECT ..)",
                ));
            }
            let selection = delete.selection.as_ref().map(ToString::to_string);
            // The queries that find the children embed the WHERE alone: they bind its
            // parameters, not those of a RETURNING after it (numbered ones keep their
            // numbers, so they bind them all).
            let where_params = placeholders(selection.as_deref().unwrap_or(""));
            let params = where_params
                .iter()
                .all(|p| p == "?")
                .then_some(where_params.len());
            let (cascades, needs_notes) = cascade::plan(
                registry,
                &table,
                &from[0].to_string(),
                selection.as_deref(),
                params,
            );
            if !cascades.is_empty() && (delete.limit.is_some() || !delete.order_by.is_empty()) {
                return Err(refuse(
                    &table.name,
                    "a DELETE with ORDER BY or LIMIT on a table that other synced tables \
                     reference with ON DELETE actions cannot be captured; select the rows \
                     with WHERE .. IN (SELECT .. LIMIT ..)",
                ));
            }
            let columns = table.primary_key.clone();
            let returning = returning::plan(&mut delete.returning, &table, &columns)?;
            let mut capture = capture(
                table,
                CaptureKind::Delete,
                Statement::Delete(delete),
                columns,
                returning,
            );
            capture.cascades = cascades;
            capture.needs_notes = needs_notes;
            Ok(Planned::Capture(capture))
        }
        Statement::Query(query) => {
            // `WITH .. INSERT/UPDATE/DELETE`: a write hidden in a query body.
            let inner = match query.body.as_ref() {
                SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) => Some(s.clone()),
                _ => None,
            };
            if let Some(inner) = inner
                && let Planned::Capture(capture) = plan_one(inner, registry)?
            {
                return Err(refuse(
                    &capture.table.name,
                    "a write inside a WITH query cannot be captured; move the common table \
                     expression into a sub-select of a plain INSERT, UPDATE or DELETE",
                ));
            }
            Ok(Planned::PassThrough(Box::new(Statement::Query(query))))
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } if names.iter().any(|name| synced(registry, name).is_some()) => {
            let table = names
                .iter()
                .find_map(|name| synced(registry, name))
                .map(|t| t.name.clone())
                .unwrap_or_default();
            Err(refuse(
                &table,
                "dropping a synced table would make every later change from peers fail; \
                 stop syncing it first (register it with `register_local`), or delete its rows",
            ))
        }
        Statement::AlterTable(alter)
            if synced(registry, &alter.name).is_some()
                && !alter
                    .operations
                    .iter()
                    .all(|op| matches!(op, AlterTableOperation::AddColumn { .. })) =>
        {
            let table = synced(registry, &alter.name)
                .map(|t| t.name.clone())
                .unwrap_or_default();
            Err(refuse(
                &table,
                "renaming or dropping a synced table or its columns would break every later \
                 change from peers; migration is additive: add the field to the entity and \
                 call `sync()`, which adds the column",
            ))
        }
        other => Ok(Planned::PassThrough(Box::new(other))),
    }
}

fn capture(
    table: Arc<TableMeta>,
    kind: CaptureKind,
    statement: Statement,
    columns: Vec<String>,
    returning: Returning,
) -> Capture {
    Capture {
        table,
        kind,
        sql: statement.to_string(),
        returned_columns: columns,
        returning,
        cascades: Vec::new(),
        needs_notes: false,
    }
}

fn dialect(backend: DbBackend) -> Box<dyn Dialect> {
    match backend {
        DbBackend::Postgres => Box::new(PostgreSqlDialect {}),
        _ => Box::new(SQLiteDialect {}),
    }
}

fn statement_count(sql: &str, backend: DbBackend) -> usize {
    Parser::parse_sql(dialect(backend).as_ref(), sql).map_or(1, |s| s.len())
}

fn refuse(table: &str, reason: &str) -> Error {
    Error::Refused {
        table: table.to_owned(),
        reason: reason.to_owned(),
    }
}

fn last_ident(name: &ObjectName) -> Option<&str> {
    name.0.last()?.as_ident().map(|ident| ident.value.as_str())
}

fn synced(registry: &Registry, name: &ObjectName) -> Option<Arc<TableMeta>> {
    // `temp.tasks` is another table than the synced `main.tasks`.
    if name.0.len() > 1
        && name.0[0]
            .as_ident()
            .is_some_and(|schema| !schema.value.eq_ignore_ascii_case("main"))
    {
        return None;
    }
    match registry.classify(last_ident(name)?) {
        TableClass::Synced(meta) => Some(meta),
        TableClass::Local | TableClass::Unregistered => None,
    }
}

fn target_table(registry: &Registry, table: &TableWithJoins) -> Option<Arc<TableMeta>> {
    match &table.relation {
        TableFactor::Table { name, .. } => synced(registry, name),
        _ => None,
    }
}

fn assignment_columns(assignments: &[Assignment]) -> impl Iterator<Item = &str> {
    assignments
        .iter()
        .flat_map(|assignment| match &assignment.target {
            AssignmentTarget::ColumnName(name) => vec![name],
            AssignmentTarget::Tuple(names) => names.iter().collect(),
        })
        .filter_map(last_ident)
}

fn check_no_key_assigned(table: &TableMeta, assignments: &[Assignment]) -> Result<(), Error> {
    if let Some(key) = assignment_columns(assignments).find(|c| table.is_key(c)) {
        return Err(refuse(
            &table.name,
            &format!(
                "it assigns primary key column `{key}`, and the row under the old key would \
                 vanish on other peers; delete the row and insert it under the new key"
            ),
        ));
    }
    Ok(())
}

/// The registered names of the synced columns an UPDATE assigns, in table order.
fn assigned_columns(table: &TableMeta, assignments: &[Assignment]) -> Vec<String> {
    let assigned: Vec<&str> = assignment_columns(assignments).collect();
    table
        .value_columns()
        .filter(|c| assigned.iter().any(|a| a.eq_ignore_ascii_case(&c.name)))
        .map(|c| c.name.clone())
        .collect()
}

fn all_columns(table: &TableMeta) -> Vec<String> {
    table
        .primary_key
        .iter()
        .cloned()
        .chain(table.value_columns().map(|c| c.name.clone()))
        .collect()
}

/// Rewrites `INSERT OR REPLACE` / `REPLACE INTO` as an upsert on the primary key that
/// sets every column: the row gets the values a replace gives it (a column the statement
/// does not name gets its default), and `RETURNING` reports it. What differs, on purpose:
/// a collision on another UNIQUE column fails (a replace would silently delete the other
/// row, which nothing could report), and the row is updated in place rather than deleted
/// and inserted again, so its children (foreign keys) stay.
fn replace_as_upsert(insert: &mut sqlparser::ast::Insert, table: &TableMeta) {
    use sqlparser::ast::{ConflictTarget, DoUpdate, OnConflict};
    insert.replace_into = false;
    insert.or = None;
    let quoted = |name: &str| Ident::with_quote('"', name);
    let assignments: Vec<Assignment> = table
        .columns
        .iter()
        .filter(|column| !table.primary_key.contains(&column.name))
        .map(|column| Assignment {
            target: AssignmentTarget::ColumnName(ObjectName::from(vec![quoted(&column.name)])),
            value: Expr::CompoundIdentifier(vec![Ident::new("excluded"), quoted(&column.name)]),
        })
        .collect();
    let action = if assignments.is_empty() {
        OnConflictAction::DoNothing
    } else {
        OnConflictAction::DoUpdate(DoUpdate {
            assignments,
            selection: None,
        })
    };
    insert.on = Some(OnInsert::OnConflict(OnConflict {
        conflict_target: Some(ConflictTarget::Columns {
            columns: table.primary_key.iter().map(|k| quoted(k)).collect(),
            predicate: None,
        }),
        action,
    }));
}

/// Whether `sql` writes a table a write to which may make a trigger write a synced table
/// (`Registry::trigger_plan`'s sources): such a write is captured although its own table
/// does not sync. A text that does not parse counts as such a write if it names one.
pub(crate) fn writes_trigger_source(sql: &str, backend: DbBackend, registry: &Registry) -> bool {
    let sources = &registry.trigger_plan().sources;
    if sources.is_empty() {
        return false;
    }
    let is_source = |name: &ObjectName| {
        last_ident(name).is_some_and(|table| sources.contains(&table.to_ascii_lowercase()))
    };
    let relation = |table: &TableWithJoins| match &table.relation {
        TableFactor::Table { name, .. } => is_source(name),
        _ => false,
    };
    let dialect = dialect(backend);
    let Ok(statements) = Parser::parse_sql(dialect.as_ref(), sql) else {
        let tokens = Tokenizer::new(dialect.as_ref(), sql)
            .tokenize()
            .unwrap_or_default();
        return tokens.iter().any(|token| {
            matches!(token, Token::Word(word) if sources.contains(&word.value.to_ascii_lowercase()))
        });
    };
    fn writes(
        statement: &Statement,
        is_source: &dyn Fn(&ObjectName) -> bool,
        relation: &dyn Fn(&TableWithJoins) -> bool,
    ) -> bool {
        match statement {
            Statement::Insert(insert) => match &insert.table {
                TableObject::TableName(name) => is_source(name),
                _ => false,
            },
            Statement::Update(update) => relation(&update.table),
            Statement::Delete(delete) => {
                let from = match &delete.from {
                    FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
                };
                from.iter().any(relation) || delete.tables.iter().any(is_source)
            }
            // `WITH .. INSERT/UPDATE/DELETE`.
            Statement::Query(query) => match query.body.as_ref() {
                SetExpr::Insert(inner) | SetExpr::Update(inner) | SetExpr::Delete(inner) => {
                    writes(inner, is_source, relation)
                }
                _ => false,
            },
            _ => false,
        }
    }
    statements
        .iter()
        .any(|statement| writes(statement, &is_source, &relation))
}

/// The parameter placeholders in `sql`, in order, as written (`?`, `?2`, `:name`).
fn placeholders(sql: &str) -> Vec<String> {
    Tokenizer::new(&SQLiteDialect {}, sql)
        .tokenize()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|token| match token {
            Token::Placeholder(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// The first synced table whose name appears as a word in `sql`, for SQL that does not parse.
fn synced_table_named(sql: &str, dialect: &dyn Dialect, registry: &Registry) -> Option<String> {
    let tokens = Tokenizer::new(dialect, sql).tokenize().ok();
    let Some(tokens) = tokens else {
        // Not even tokenizable: refuse if any synced table exists at all.
        return registry.synced_tables().next().map(|t| t.name.clone());
    };
    tokens.iter().find_map(|token| match token {
        Token::Word(word) => registry.synced(&word.value).map(|t| t.name.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
