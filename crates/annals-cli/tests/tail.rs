//! Property: `annals tail` prints the same JSON lines as `annals all`, one
//! per event and flushed per line, with `--from` inclusive, `--after`
//! exclusive, `--stream` / `--category` / `--type` filters, `--max` and
//! `--no-follow` exits; without them it keeps following; `annals all
//! --category/--type` filters the same way; a bad filter is exit 2.
//! Method: a store filled through the library, then the built binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use annals::{EventData, ExpectedVersion, Store};
use serde_json::Value;

mod common;
use common::annals;

fn lines(output: &Output) -> Vec<String> {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn positions(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["position"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// 12 events: positions 0..12 over `order-N`, `user-N` and `lonely`,
/// types `Placed` (even positions) and `Paid` (odd).
fn filled() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..12u64 {
        let stream = ["order-1", "user-1", "order-2", "lonely"][(i % 4) as usize];
        let kind = if i % 2 == 0 { "Placed" } else { "Paid" };
        store
            .append(
                stream,
                ExpectedVersion::Any,
                vec![EventData::new(kind, format!("{{\"n\":{i}}}"))],
            )
            .unwrap()
            .unwrap();
    }
    store.close().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    (dir, path)
}

#[test]
fn no_follow_prints_what_all_prints_and_from_is_inclusive_after_exclusive() {
    let (_dir, store) = filled();
    let all = lines(&annals(&["all", &store]));
    assert_eq!(all.len(), 12);
    assert_eq!(lines(&annals(&["tail", &store, "--no-follow"])), all);
    let from = lines(&annals(&["tail", &store, "--no-follow", "--from", "5"]));
    assert_eq!(from, lines(&annals(&["all", &store, "--from", "5"])));
    assert_eq!(positions(&from), (5..12).collect::<Vec<_>>());
    let after = lines(&annals(&["tail", &store, "--no-follow", "--after", "5"]));
    assert_eq!(positions(&after), (6..12).collect::<Vec<_>>());
    assert!(lines(&annals(&["tail", &store, "--no-follow", "--after", "11"])).is_empty());
}

#[test]
fn filters_select_the_same_events_in_tail_and_all() {
    let (_dir, store) = filled();
    let category = lines(&annals(&[
        "tail",
        &store,
        "--no-follow",
        "--category",
        "order",
    ]));
    assert_eq!(positions(&category), vec![0, 2, 4, 6, 8, 10]);
    assert_eq!(
        lines(&annals(&["all", &store, "--category", "order"])),
        category
    );
    let typed = lines(&annals(&["all", &store, "--type", "Paid", "--from", "4"]));
    assert_eq!(positions(&typed), vec![5, 7, 9, 11]);
    let both = lines(&annals(&[
        "tail",
        &store,
        "--no-follow",
        "--type",
        "Paid",
        "--type",
        "Placed",
    ]));
    assert_eq!(positions(&both).len(), 12);
    let stream = lines(&annals(&[
        "tail",
        &store,
        "--no-follow",
        "--stream",
        "lonely",
    ]));
    assert_eq!(positions(&stream), vec![3, 7, 11]);
    assert!(lines(&annals(&["all", &store, "--category", "lonely"])).is_empty());
}

#[test]
fn max_exits_after_n_events_and_without_it_tail_keeps_following() {
    let (_dir, store) = filled();
    let two = lines(&annals(&["tail", &store, "--max", "2", "--after", "3"]));
    assert_eq!(positions(&two), vec![4, 5]);
    // Fewer events than --max and no --no-follow: it prints them, one
    // flushed line at a time, and keeps waiting.
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["tail", &store, "--max", "100", "--category", "user"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        got.push(line.trim_end().to_owned());
    }
    assert_eq!(positions(&got), vec![1, 5, 9]);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(300) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "tail exited instead of following"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_bad_filter_is_exit_2_with_a_clear_message() {
    let (_dir, store) = filled();
    for (args, says) in [
        (
            vec!["tail", &store, "--from", "1", "--after", "2"],
            "--from or --after",
        ),
        (vec!["tail", &store, "--category", ""], "--category"),
        (vec!["tail", &store, "--category", "a-b"], "--category"),
        (
            vec!["tail", &store, "--stream", "s", "--category", "c"],
            "one of --stream",
        ),
        (vec!["tail", &store, "--type", ""], "--type"),
        (vec!["all", &store, "--category", ""], "--category"),
        (vec!["tail", &store, "--from", "x"], "invalid value"),
    ] {
        let out = annals(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
