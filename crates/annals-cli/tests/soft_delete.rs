//! Property: `annals delete --soft` hides a stream's events from `read` and
//! `load`, keeps it appendable with versions continuing, prints one JSON
//! line, and refuses an unknown stream (exit 2) or a wrong `--expected`
//! (exit 3) without writing; plain `delete` still writes a tombstone; `meta`
//! sets and prints retention rules, refusing bad input (exit 2) unwritten.
//! Method: run the built binary on a real directory.

use std::process::Output;

use serde_json::Value;

mod common;
use common::{annals, code};

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn soft_delete_hides_the_events_and_versions_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    for _ in 0..3 {
        let out = annals(&["append", store, "cart", "--type", "Added", "--data", "1"]);
        assert_eq!(code(&out), 0);
    }
    let wrong = annals(&["delete", store, "cart", "--soft", "--expected", "1"]);
    assert_eq!(code(&wrong), 3);
    assert_eq!(code(&annals(&["delete", store, "nobody", "--soft"])), 2);
    assert_eq!(lines(&annals(&["read", store, "cart"])).len(), 3);

    let out = annals(&["delete", store, "cart", "--soft", "--expected", "2"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let printed = &lines(&out)[0];
    assert_eq!(printed["soft_deleted"], true);
    assert_eq!(printed["reads_from_version"], 3);
    assert_eq!(printed["meta_stream"], "$meta-cart");
    assert!(lines(&annals(&["read", store, "cart"])).is_empty());
    let loaded = lines(&annals(&["load", store, "cart"]));
    assert_eq!(loaded.len(), 1);

    let out = annals(&[
        "append",
        store,
        "cart",
        "--expected",
        "2",
        "--type",
        "Added",
        "--data",
        "2",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines(&out)[0]["first_version"], 3);
    let read = lines(&annals(&["read", store, "cart"]));
    assert_eq!(read.len(), 1);
    assert_eq!(read[0]["version"], 3);

    // Plain delete is still the hard delete.
    let out = annals(&["delete", store, "cart"]);
    assert_eq!(code(&out), 0);
    assert!(lines(&out)[0]["tombstone_version"].is_u64());
    assert_ne!(code(&annals(&["read", store, "cart"])), 0);
}

#[test]
fn meta_sets_and_prints_retention_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    for _ in 0..6 {
        assert_eq!(
            code(&annals(&[
                "append", store, "log", "--type", "T", "--data", "1"
            ])),
            0
        );
    }
    let out = annals(&["meta", store, "log"]);
    assert_eq!(code(&out), 0);
    assert_eq!(lines(&out)[0]["max_count"], Value::Null);
    let out = annals(&[
        "meta",
        store,
        "log",
        "--max-count",
        "2",
        "--truncate-before",
        "1",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        (
            lines(&out)[0]["max_count"].as_u64(),
            lines(&out)[0]["truncate_before"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let read = lines(&annals(&["read", store, "log"]));
    assert_eq!(
        read.iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4, 5]
    );
    // Bad input: exit 2, nothing written.
    let all_before = lines(&annals(&["all", store])).len();
    assert_eq!(
        code(&annals(&["meta", store, "log", "--truncate-before", "0"])),
        2
    );
    assert_eq!(
        code(&annals(&["meta", store, "log", "--truncate-before", "99"])),
        2
    );
    assert_eq!(
        code(&annals(&["meta", store, "nobody", "--max-count", "1"])),
        2
    );
    assert_eq!(
        code(&annals(&["meta", store, "log", "--max-count", "x"])),
        2
    );
    assert_eq!(lines(&annals(&["all", store])).len(), all_before);
}
