//! Property: on a damaged store the CLI points at the right thing and its
//! read commands agree — a missing middle segment is named (not the intact
//! one before it); `read` and `all` both print the verified events before a
//! damaged one, then fail with the same exit code and a message naming
//! file and offset; a log that ends before its evidence is refused and
//! `annals repair` reports, as JSON, what it drops. Method: run the built
//! binary on stores damaged byte by byte.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod common;
use common::{annals, code};

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Five single-event appends to stream `s`, each its own frame, data
/// `{"i":N}`.
fn five_events(store: &str) {
    for i in 0..5 {
        let data = format!("{{\"i\":{i}}}");
        let out = annals(&["append", store, "s", "--type", "T", "--data", &data]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

/// Flips a byte inside the stored data of event `i` (found by its bytes).
fn damage_event(dir: &Path, i: u32) -> u64 {
    let segment = dir.join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let needle = format!("{{\"i\":{i}}}").into_bytes();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    bytes[at + 1] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    at as u64
}

/// Issue 18 item 7 (c): `annals read` printed nothing, not even the intact
/// events before a damaged one, while `annals all` printed some; now both
/// print the verified prefix, then fail alike, naming file and offset.
#[test]
fn regression_read_and_all_print_the_verified_prefix_then_fail_alike() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    five_events(store);
    damage_event(dir.path(), 3);

    let read = annals(&["read", store, "s"]);
    let all = annals(&["all", store]);
    for (name, out) in [("read", &read), ("all", &all)] {
        let lines: Vec<Value> = stdout(out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let data: Vec<&Value> = lines.iter().map(|l| &l["data"]["i"]).collect();
        assert_eq!(data, [0, 1, 2], "{name} printed {lines:?}");
        assert_eq!(code(out), 1, "{name}: {}", stderr(out));
        let message = stderr(out);
        assert!(
            message.contains("00000000000000000000.seg") && message.contains("offset"),
            "{name}: {message}"
        );
    }
    // Both name the damaged event's frame: `read` the event's own offset,
    // `all` (which verifies whole frames) the offset of its frame.
    for out in [&read, &all] {
        assert!(
            stderr(out).contains("event checksum mismatch"),
            "{}",
            stderr(out)
        );
    }
}

/// Issue 18 item 7 (a): a missing middle segment was reported as corrupt
/// data at the end of the intact segment before it; now the error names
/// the missing file and positions.
#[test]
fn regression_a_missing_middle_segment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    {
        let options = annals::Options::default().segment_bytes(8 << 10);
        let store = annals::Store::open_with(dir.path(), options).unwrap();
        for i in 0..200u64 {
            let data = format!("{i} {}", ".".repeat(200));
            let event = annals::EventData::new("T", data);
            store
                .append("s", annals::ExpectedVersion::Any, vec![event])
                .unwrap()
                .unwrap();
        }
    }
    let mut segments: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    segments.sort();
    assert!(segments.len() > 3);
    let middle = &segments[1];
    std::fs::remove_file(dir.path().join(middle)).unwrap();
    let out = annals(&["all", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let message = stderr(&out);
    let first: u64 = middle.trim_end_matches(".seg").parse().unwrap();
    let next: u64 = segments[2].trim_end_matches(".seg").parse().unwrap();
    assert!(message.contains(middle.as_str()), "{message}");
    assert!(message.contains(&format!("{first}..{next}")), "{message}");
    assert!(
        !message.contains(&format!("corrupt log: {}", segments[0])),
        "{message}"
    );
}

/// A damaged last frame after a crash, vouched for by the index run the
/// last close wrote: every command refuses (exit 1) and names it; `repair
/// --dry-run` reports what it would drop and changes nothing; `repair`
/// drops exactly that and the store opens with the rest.
#[test]
fn repair_reports_what_it_drops_as_json_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    five_events(store);
    let offset = damage_event(dir.path(), 4);
    // A crash: no clean-close marker (the index run stays).
    std::fs::remove_file(dir.path().join("CLEAN")).unwrap();

    let out = annals(&["all", store]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).is_empty());
    let message = stderr(&out);
    assert!(
        message.contains("missing log data: positions 4..5") && message.contains(".run"),
        "{message}"
    );

    let dry = annals(&["repair", store, "--dry-run"]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let report: Value = serde_json::from_str(stdout(&dry).trim()).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["dropped"]["positions"], serde_json::json!([4, 5]));
    assert_eq!(report["dropped"]["events"], 1);
    assert_eq!(report["dropped"]["file"], "00000000000000000000.seg");
    assert!(report["dropped"]["offset"].as_u64().unwrap() <= offset);
    assert!(report["evidence_discarded"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "index run"));
    assert_eq!(report["position_end"], 4);
    assert_eq!(code(&annals(&["all", store])), 1, "the dry run repaired");

    let done = annals(&["repair", store]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    let report: Value = serde_json::from_str(stdout(&done).trim()).unwrap();
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["dropped"]["positions"], serde_json::json!([4, 5]));
    assert_eq!(report["truncated"]["file"], "00000000000000000000.seg");
    let all = annals(&["all", store]);
    assert_eq!(code(&all), 0, "{}", stderr(&all));
    assert_eq!(stdout(&all).lines().count(), 4);
    assert_eq!(code(&annals(&["verify", store])), 0);
}
