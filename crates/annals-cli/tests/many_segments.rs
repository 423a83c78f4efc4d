//! Property: a store of thousands of segments opens, appends, reads any
//! stream and verifies within a low open-file limit (`ulimit -n 256`),
//! as a user runs it. Method: `annals stress --segment-bytes 4096` makes
//! the store (on /dev/shm when there is one: its rolls cost no fsync),
//! then every command runs as a child whose RLIMIT_NOFILE is 256 (a shell
//! sets it with `ulimit -n 256`, then `exec`s the binary). Before, open
//! kept every segment file open and failed at ~250 segments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const NOFILE: u32 = 256;
const SEGMENTS_MIN: usize = 2_000;

/// Runs the CLI with `args` under `ulimit -n NOFILE`.
fn annals_limited(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {NOFILE} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_annals"))
        .args(args)
        .output()
        .expect("run sh")
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        })
        .unwrap_or(0)
}

fn store_dir() -> (tempfile::TempDir, PathBuf) {
    let parent = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let dir = parent.path().join("store");
    (parent, dir)
}

#[test]
fn a_store_of_thousands_of_segments_works_under_ulimit_n_256() {
    let limit = annals_limited(&["--version"]);
    ok(&limit, "annals --version under ulimit");
    let shown = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {NOFILE} && ulimit -n"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), "256");

    let (_parent, dir) = store_dir();
    let dir_arg = dir.to_str().unwrap();
    // Make the store (without the limit: the writer of this many segments
    // is the same code, but the point is to open what exists).
    let started = Instant::now();
    let mut acked = Vec::new();
    while segment_count(&dir) < SEGMENTS_MIN && started.elapsed() < Duration::from_secs(20) {
        let stress = Command::new(env!("CARGO_BIN_EXE_annals"))
            .args([
                "stress",
                dir_arg,
                "--segment-bytes",
                "4096",
                "--seconds",
                "2",
                "--threads",
                "2",
                "--streams",
                "20",
                "--pad-bytes",
                "600",
            ])
            .output()
            .unwrap();
        acked.extend(
            ok(&stress, "stress")
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    let segments = segment_count(&dir);
    assert!(segments >= SEGMENTS_MIN, "only {segments} segments made");

    let stats = ok(&annals_limited(&["stats", dir_arg]), "stats");
    assert!(stats.contains(&format!("segments  {segments}")), "{stats}");
    let appended = ok(
        &annals_limited(&["append", dir_arg, "late", "--type", "T", "--data", "\"x\""]),
        "append",
    );
    assert!(appended.contains("\"first_version\":0"), "{appended}");
    // A stream written throughout: every event of it, from the first
    // segment to the last.
    let stream = acked[0]["stream"].as_str().unwrap().to_owned();
    let last = acked
        .iter()
        .filter(|a| a["stream"] == stream.as_str())
        .map(|a| a["last_version"].as_u64().unwrap())
        .max()
        .unwrap();
    let read = ok(&annals_limited(&["read", dir_arg, &stream]), "read");
    assert_eq!(read.lines().count() as u64, last + 1);
    let late = ok(&annals_limited(&["read", dir_arg, "late"]), "read late");
    assert_eq!(late.lines().count(), 1);
    let verify = ok(&annals_limited(&["verify", dir_arg]), "verify");
    assert!(verify.starts_with("ok"), "{verify}");
    eprintln!(
        "{segments} segments, {} appends: stats, append, read, verify under ulimit -n {NOFILE} in {:?} in all",
        acked.len(),
        started.elapsed()
    );
}
