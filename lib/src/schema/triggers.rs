//! The application's own triggers, and which of them write synced tables.
//!
//! Pure: it reads a trigger's SQL text (as `sqlite_master` keeps it) and tells which
//! tables its body writes; it never runs anything.
//!
//! SQLite runs a trigger's body as part of the write that fired it, so what a trigger
//! writes into a synced table belongs to the same transaction: the writing node captures
//! it (`trigger_mode`), and peers receive it as data, like any other write. A peer must then
//! not run that trigger again for the change that arrives, or its effects would happen
//! twice (a second audit row, a timestamp of the peer's own). SQLite switches triggers off
//! only for a whole connection, so the decision is per database:
//! - No trigger writes a synced table: nothing changes. Triggers run on every peer for
//!   local and remote changes alike, so an FTS index or a local cache kept by triggers
//!   stays current everywhere.
//! - Some trigger writes a synced table (directly, or through a trigger of a local table
//!   it writes): this node captures every write SQLite makes to synced tables, and the
//!   engine applies remote changes with the main schema's triggers off. Triggers that
//!   write only local tables then do not run for remote changes; a warning names them.

use sqlparser::dialect::SQLiteDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer, Word};
use std::collections::HashSet;

/// One trigger of the main schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UserTrigger {
    /// Its name.
    pub name: String,
    /// The table whose writes fire it.
    pub table: String,
    /// The tables its body writes, lower-cased.
    pub writes: Vec<String>,
    /// Those it writes with `REPLACE` / `OR REPLACE`: rows such a write removes over
    /// another UNIQUE column run no delete trigger, so they are not noted.
    pub replaces: Vec<String>,
}

impl UserTrigger {
    /// A trigger named `name` on `table`, created by `sql`.
    pub(crate) fn parse(name: &str, table: &str, sql: &str) -> UserTrigger {
        let (writes, replaces) = scan(sql);
        UserTrigger {
            name: name.to_owned(),
            table: table.to_owned(),
            writes,
            replaces,
        }
    }
}

/// What a trigger whose body could not be read counts as writing: every table.
pub(crate) const ANY_TABLE: &str = "*";

/// The tables a `CREATE TRIGGER` statement's body writes (`INSERT INTO`, `REPLACE INTO`,
/// `UPDATE`, `DELETE FROM`), lower-cased, and those of them it writes with `REPLACE`.
/// SQLite accepted the text, so it fails to tokenize only for syntax sqlparser lacks; the
/// trigger then counts as writing every table ([`ANY_TABLE`]): capturing too much costs
/// time, too little loses writes.
fn scan(sql: &str) -> (Vec<String>, Vec<String>) {
    let Ok(tokens) = Tokenizer::new(&SQLiteDialect {}, sql).tokenize() else {
        tracing::warn!(%sql, "a trigger's SQL did not tokenize; it counts as writing every table");
        return (vec![ANY_TABLE.to_owned()], Vec::new());
    };
    let words: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    // The body starts after the first BEGIN; before it are the event (`UPDATE OF ...`)
    // and the table the trigger is on.
    let Some(start) = words
        .iter()
        .position(|t| keyword(t) == Some(Keyword::BEGIN))
    else {
        return (Vec::new(), Vec::new());
    };
    let body = &words[start + 1..];
    let mut out: Vec<String> = Vec::new();
    let mut replaces: Vec<String> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let replacing = keyword(&body[i]) == Some(Keyword::REPLACE)
            || (keyword_at(body, i + 1) == Some(Keyword::OR)
                && keyword_at(body, i + 2) == Some(Keyword::REPLACE));
        let target = match keyword(&body[i]) {
            Some(Keyword::INSERT | Keyword::REPLACE) => {
                let mut j = skip_or_clause(body, i + 1);
                if keyword_at(body, j) == Some(Keyword::INTO) {
                    j += 1;
                    Some(j)
                } else {
                    None
                }
            }
            Some(Keyword::UPDATE) => {
                let j = skip_or_clause(body, i + 1);
                // `ON CONFLICT ... DO UPDATE SET` names no table.
                (keyword_at(body, j) != Some(Keyword::SET)).then_some(j)
            }
            Some(Keyword::DELETE) => {
                (keyword_at(body, i + 1) == Some(Keyword::FROM)).then_some(i + 2)
            }
            _ => None,
        };
        if let Some(j) = target
            && let Some(name) = table_name(body, j)
        {
            if replacing && !replaces.contains(&name) {
                replaces.push(name.clone());
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
        i += 1;
    }
    (out, replaces)
}

fn keyword(token: &Token) -> Option<Keyword> {
    match token {
        Token::Word(Word {
            keyword,
            quote_style: None,
            ..
        }) => Some(*keyword),
        _ => None,
    }
}

fn keyword_at(tokens: &[Token], at: usize) -> Option<Keyword> {
    tokens.get(at).and_then(keyword)
}

/// Past `OR ROLLBACK | ABORT | REPLACE | FAIL | IGNORE`, if there.
fn skip_or_clause(tokens: &[Token], at: usize) -> usize {
    if keyword_at(tokens, at) == Some(Keyword::OR) {
        at + 2
    } else {
        at
    }
}

/// The table named at `at` (`t`, `"t"` or `main.t`), lower-cased.
fn table_name(tokens: &[Token], at: usize) -> Option<String> {
    let Token::Word(first) = tokens.get(at)? else {
        return None;
    };
    if matches!(tokens.get(at + 1), Some(Token::Period))
        && let Some(Token::Word(second)) = tokens.get(at + 2)
    {
        return Some(second.value.to_ascii_lowercase());
    }
    Some(first.value.to_ascii_lowercase())
}

/// What the database's triggers mean for sync, given which tables sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TriggerPlan {
    /// Some trigger writes a synced table: writes SQLite makes are captured, and the
    /// engine applies remote changes with triggers off.
    pub capture: bool,
    /// Tables, lower-cased, a write to which may make a trigger write a synced table
    /// (directly or through other triggers). Writes to them are captured even when the
    /// table itself does not sync.
    pub sources: HashSet<String>,
    /// Triggers that write no synced table, and so will not run for remote changes while
    /// `capture` holds.
    pub local_only: Vec<String>,
    /// (trigger, table) pairs where a trigger writes a synced table with `REPLACE`: a row
    /// it removes over another UNIQUE column is not captured.
    pub replacing: Vec<(String, String)>,
}

impl TriggerPlan {
    /// The plan for `triggers` when `is_synced` tells the synced tables (lower-cased).
    pub(crate) fn new(triggers: &[UserTrigger], is_synced: impl Fn(&str) -> bool) -> TriggerPlan {
        let is_synced = |table: &str| table == ANY_TABLE || is_synced(table);
        // A table is a source if some trigger on it writes a synced table or a source.
        let mut sources: HashSet<String> = HashSet::new();
        loop {
            let before = sources.len();
            for trigger in triggers {
                if trigger
                    .writes
                    .iter()
                    .any(|t| is_synced(t) || sources.contains(t))
                {
                    sources.insert(trigger.table.to_ascii_lowercase());
                }
            }
            if sources.len() == before {
                break;
            }
        }
        let capture = !sources.is_empty();
        let local_only = if capture {
            triggers
                .iter()
                .filter(|t| !t.writes.iter().any(|w| is_synced(w) || sources.contains(w)))
                .map(|t| t.name.clone())
                .collect()
        } else {
            Vec::new()
        };
        let replacing = triggers
            .iter()
            .flat_map(|t| {
                t.replaces
                    .iter()
                    .filter(|table| is_synced(table))
                    .map(|table| (t.name.clone(), table.clone()))
            })
            .collect();
        TriggerPlan {
            capture,
            sources,
            local_only,
            replacing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_tables_a_body_writes() {
        let sql = r#"CREATE TRIGGER stamp AFTER UPDATE OF done ON tasks FOR EACH ROW
            WHEN NEW.done = 1 BEGIN
              UPDATE OR IGNORE "Tasks" SET at = 1 WHERE id = NEW.id;
              INSERT INTO main.audit (note) SELECT title FROM other WHERE x IN (SELECT 1);
              REPLACE INTO counters VALUES (1);
              INSERT INTO log2 VALUES (1) ON CONFLICT DO UPDATE SET n = n + 1;
              DELETE FROM gone WHERE id = OLD.id;
              SELECT RAISE(IGNORE) FROM audit;
            END"#;
        assert_eq!(
            scan(sql).0,
            vec!["tasks", "audit", "counters", "log2", "gone"]
        );
    }

    #[test]
    fn the_event_and_on_table_are_not_writes() {
        let sql = "CREATE TRIGGER t AFTER DELETE ON a BEGIN SELECT 1; END";
        assert!(scan(sql).0.is_empty());
        let sql = "CREATE TRIGGER t BEFORE UPDATE ON a BEGIN SELECT 1; END";
        assert!(scan(sql).0.is_empty());
    }

    fn trigger(name: &str, table: &str, writes: &[&str]) -> UserTrigger {
        UserTrigger {
            name: name.into(),
            table: table.into(),
            writes: writes.iter().map(|w| w.to_string()).collect(),
            replaces: Vec::new(),
        }
    }

    #[test]
    fn replacing_writes_are_told_apart() {
        let trigger = UserTrigger::parse(
            "t",
            "a",
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT OR REPLACE INTO tags VALUES (1); \
             REPLACE INTO other VALUES (1); INSERT INTO plain VALUES (1); END",
        );
        assert_eq!(trigger.writes, ["tags", "other", "plain"]);
        assert_eq!(trigger.replaces, ["tags", "other"]);
        let plan = TriggerPlan::new(&[trigger], |t| t == "tags");
        assert_eq!(plan.replacing, [("t".to_string(), "tags".to_string())]);
    }

    #[test]
    fn sources_follow_chains_of_triggers() {
        let triggers = [
            trigger("fts", "tasks", &["tasks_fts"]),
            trigger("a", "inbox", &["staging"]),
            trigger("b", "staging", &["tasks"]),
        ];
        let plan = TriggerPlan::new(&triggers, |t| t == "tasks");
        assert!(plan.capture);
        assert_eq!(
            plan.sources,
            HashSet::from(["inbox".to_string(), "staging".to_string()])
        );
        assert_eq!(plan.local_only, vec!["fts".to_string()]);
    }

    #[test]
    fn local_triggers_alone_change_nothing() {
        let triggers = [trigger("fts", "tasks", &["tasks_fts"])];
        assert_eq!(
            TriggerPlan::new(&triggers, |t| t == "tasks"),
            TriggerPlan::default()
        );
    }
}
