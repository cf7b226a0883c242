//! Replays the fuzz corpora (`fuzz/corpus/*`) through the same entry points as the fuzz
//! targets: every input must be handled without a panic, on every CI run.

use std::path::PathBuf;
use wavesyncdb::testing::{ApplyHarness, decode_any, encode_live};
use wavesyncdb::{CellValue, ChangeSet, Hlc, NodeId, SyncOperation, WriteKind};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.expect("corpus entry").path()).expect("read corpus file"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 5,
        "the {target} corpus is nearly empty: {} inputs",
        inputs.len()
    );
    inputs
}

#[test]
fn wire_decode_corpus_never_panics() {
    let inputs = corpus("wire_decode");
    let decoded = inputs.iter().filter(|input| decode_any(input) > 0).count();
    assert!(
        decoded > 0,
        "no input of the corpus decodes: it exercises only the error paths"
    );
}

#[test]
fn remote_change_corpus_never_panics() {
    let harness = ApplyHarness::new().expect("open the harness database");
    let inputs = corpus("remote_change");
    let applied = inputs
        .iter()
        .filter(|input| harness.apply_gossip(input))
        .count();
    assert!(
        applied > 0,
        "no input of the corpus applies: it exercises only rejections"
    );
}

fn seeds() -> Vec<ChangeSet> {
    let origin = NodeId([9; 16]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let op = |kind, counter, values: Vec<(&str, CellValue)>| SyncOperation {
        table: "t".into(),
        kind,
        hlc: Hlc {
            time_ms: now,
            counter,
            node: origin,
        },
        primary_key: vec![("id".into(), "k1".into())],
        values: values.into_iter().map(|(c, v)| (c.to_owned(), v)).collect(),
    };
    vec![
        ChangeSet {
            origin,
            seq: 1,
            operations: vec![op(
                WriteKind::Insert,
                0,
                vec![
                    ("n", 1.into()),
                    ("note", CellValue::Null),
                    ("data", vec![0u8, 1].into()),
                    ("r", 0.5.into()),
                ],
            )],
        },
        ChangeSet {
            origin,
            seq: 2,
            operations: vec![op(
                WriteKind::Update,
                1,
                vec![("note", "x, 'y' WHERE".into())],
            )],
        },
        ChangeSet {
            origin,
            seq: 3,
            operations: vec![op(WriteKind::Delete, 2, vec![])],
        },
        ChangeSet {
            origin,
            seq: 4,
            operations: vec![op(WriteKind::Update, 3, vec![("n", "wrong".into())])],
        },
        ChangeSet {
            origin,
            seq: 5,
            operations: vec![op(WriteKind::Update, 4, vec![("nope", 1.into())])],
        },
    ]
}

/// Writes the seed inputs of both corpora: `cargo test -p wavesyncdb --test suite
/// fuzz_corpus -- --ignored write_seeds`, then grow them with `cargo fuzz run <target>`.
#[test]
#[ignore = "a tool: regenerates the fuzz seed inputs"]
fn write_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for target in ["wire_decode", "remote_change"] {
        std::fs::create_dir_all(root.join(target)).expect("corpus dir");
        for (n, seed) in seeds().iter().enumerate() {
            std::fs::write(
                root.join(target).join(format!("seed-{n}")),
                encode_live(seed),
            )
            .expect("write seed");
        }
    }
}
