//! Property: `annals compact DIR` removes what the streams' rules hide and
//! prints its report as one JSON line (removed events per reason, bytes
//! before and after, segments merged and files removed); `meta --max-age` sets the rule and prints it, and a
//! bad duration is exit 2 with nothing written.
//! Method: run the built binary on a real directory.

use std::process::Output;

use serde_json::Value;

mod common;
use common::{annals, code};

fn line(output: &Output) -> Value {
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

#[test]
fn compact_reports_what_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    // Enough events to seal segments of the default size is too many for a
    // test: `stress` writes them quickly with small segments.
    let out = annals(&[
        "stress",
        store,
        "--threads",
        "1",
        "--streams",
        "4",
        "--seconds",
        "1",
        "--segment-bytes",
        "65536",
        // ~2 KB events: a loaded machine's few fsyncs in one second still
        // fill more than one 64 KiB segment (without padding this failed
        // under load with a single segment).
        "--pad-bytes",
        "2000",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let stats: Value = serde_json::from_slice(&annals(&["stats", store, "--json"]).stdout).unwrap();
    assert!(stats["segments"].as_u64().unwrap() > 1, "{stats}");
    let streams: Vec<String> = {
        let all = annals(&["all", store, "--max", "50"]);
        let text = String::from_utf8(all.stdout).unwrap();
        let mut names: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["stream"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let victim = &streams[0];
    let out = annals(&["meta", store, victim, "--max-count", "1"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    let out = annals(&["compact", store]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let report = line(&out);
    assert!(
        report["removed"]["max_count"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["removed"]["total"], report["removed"]["max_count"]);
    assert!(
        report["bytes_after"].as_u64() < report["bytes_before"].as_u64(),
        "{report}"
    );
    assert_eq!(code(&annals(&["verify", store])), 0);
    // Again: nothing left to remove.
    let again = line(&annals(&["compact", store]));
    assert_eq!(again["removed"]["total"], 0);
    assert!(again["segments_merged"].is_u64(), "{again}");
    assert!(again["files_removed"].is_u64(), "{again}");
    // Every stream down to its last event: the sealed segments are nearly
    // empty, and merged.
    for stream in &streams {
        let out = annals(&["meta", store, stream, "--max-count", "1"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    }
    let before: Value =
        serde_json::from_slice(&annals(&["stats", store, "--json"]).stdout).unwrap();
    let out = annals(&["compact", store]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let merged = line(&out);
    let after: Value = serde_json::from_slice(&annals(&["stats", store, "--json"]).stdout).unwrap();
    if before["segments"].as_u64().unwrap() > 2 {
        // Two sealed segments or more: they are merged.
        assert!(merged["segments_merged"].as_u64().unwrap() > 0, "{merged}");
        assert!(merged["files_removed"].as_u64().unwrap() > 0, "{merged}");
    }
    assert_eq!(
        after["segments"].as_u64().unwrap(),
        before["segments"].as_u64().unwrap() - merged["files_removed"].as_u64().unwrap(),
        "{merged}"
    );
    assert_eq!(code(&annals(&["verify", store])), 0);
}

#[test]
fn meta_max_age_sets_the_rule_and_refuses_bad_durations() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let out = annals(&["append", store, "log", "--type", "Logged", "--data", "1"]);
    assert_eq!(code(&out), 0);
    for bad in [
        "",
        "12",
        "d",
        "-5d",
        "5w",
        "0s",
        "1.5h",
        "99999999999999999999d",
    ] {
        let out = annals(&["meta", store, "log", "--max-age", bad, "--max-count", "3"]);
        assert_eq!(
            code(&out),
            2,
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nothing was written by the refused ones, not even the max-count.
    let printed = line(&annals(&["meta", store, "log"]));
    assert_eq!(printed["max_count"], Value::Null);
    assert_eq!(printed["max_age_secs"], Value::Null);
    let out = annals(&["meta", store, "log", "--max-age", "30d"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(line(&out)["max_age_secs"], 30 * 86_400);
    assert_eq!(
        line(&annals(&["meta", store, "log"]))["max_age_secs"],
        30 * 86_400
    );
    // Still readable: the event is younger than 30 days.
    let read = annals(&["read", store, "log"]);
    assert_eq!(String::from_utf8(read.stdout).unwrap().lines().count(), 1);
}
