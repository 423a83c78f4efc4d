//! Property: a process appending to many streams and killed with SIGKILL at
//! random moments never loses an acknowledged append, never shows a partial
//! one, and leaves versions and positions dense — over many kill/reopen
//! iterations, including kills during recovery. Method: `annals stress` as
//! the child (it prints each append only after `Ok`), SIGKILL after a random
//! delay, then reopen in this process and check every acknowledged event
//! byte for byte, plus `verify` (every checksum, index = full rescan).
//! `ANNALS_KILL9_ITERATIONS` sets the count (CI: 50; `scripts/kill9.sh`
//! runs 1000+). `ANNALS_KILL9_COMPACT=1` makes the child also compact again
//! and again (small segments, a stream under a max-count rule), so kills
//! land in compactions too.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use annals::{Direction, Store};
use serde_json::Value;

struct Acked {
    stream: String,
    first_version: u64,
    last_version: u64,
    first_position: u64,
}

fn parse(line: &str) -> Acked {
    let v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad ack line {line:?}: {e}"));
    Acked {
        stream: v["stream"].as_str().unwrap().to_owned(),
        first_version: v["first_version"].as_u64().unwrap(),
        last_version: v["last_version"].as_u64().unwrap(),
        first_position: v["first_position"].as_u64().unwrap(),
    }
}

fn check(store: &Store, acked: &Acked) {
    let count = (acked.last_version - acked.first_version + 1) as usize;
    let events = store
        .read_stream(
            &acked.stream,
            acked.first_version,
            Direction::Forward,
            count,
        )
        .unwrap();
    assert_eq!(
        events.len(),
        count,
        "lost acknowledged events of {}",
        acked.stream
    );
    for (k, event) in events.iter().enumerate() {
        let version = acked.first_version + k as u64;
        assert_eq!(event.version, version);
        assert_eq!(
            event.position,
            acked.first_position + k as u64,
            "{}@{version} moved",
            acked.stream
        );
        assert_eq!(
            &event.data[..],
            format!("\"{}@{version}{}\"", acked.stream, ".".repeat(PAD_BYTES)).as_bytes()
        );
    }
}

/// Dots after each event's `"stream@version"`.
const PAD_BYTES: usize = 1500;

#[test]
fn kill_9_never_loses_an_acknowledged_append() {
    let iterations: u64 = std::env::var("ANNALS_KILL9_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut acked_total = 0u64;
    let mut tail_only = 0u64;
    let mut all: Vec<Acked> = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let compacting = std::env::var("ANNALS_KILL9_COMPACT").is_ok_and(|v| v == "1");
    let compact_args: &[&str] = if compacting {
        &["--compact", "--segment-bytes", "262144"]
    } else {
        &[]
    };
    for iteration in 0..iterations {
        let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
            .args([
                "stress",
                store_dir.to_str().unwrap(),
                "--threads",
                "4",
                "--streams",
                "40",
                "--seconds",
                "60",
                // Index files written and merged all the time, so kills
                // land in the middle of them.
                "--index-buffer-events",
                "300",
                // Events of ~1.6 KB: segments fill fast, so kills also land
                // while zeros are written ahead of the writer and at rolls.
                "--pad-bytes",
                &PAD_BYTES.to_string(),
            ])
            .args(compact_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            // Only complete lines are acknowledgements; a torn last line is not.
            let mut lines = Vec::new();
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.last() == Some(&b'\n') {
                    lines.push(String::from_utf8(line.clone()).unwrap());
                }
                line.clear();
            }
            let _ = reader.read_to_end(&mut line);
            lines
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 250));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let new: Vec<Acked> = reader
            .join()
            .unwrap()
            .iter()
            .map(|l| parse(l.trim_end()))
            .collect();
        acked_total += new.len() as u64;

        let store = Store::open(&store_dir)
            .unwrap_or_else(|e| panic!("iteration {iteration}: reopen failed: {e}"));
        for acked in &new {
            check(&store, acked);
        }
        let index = store.index_report();
        assert_eq!(index.replayed, store.position_end() - index.checkpoint);
        tail_only += u64::from(index.checkpoint > 0);
        let report = store
            .verify()
            .unwrap_or_else(|e| panic!("iteration {iteration}: {e}"));
        // Positions are dense: every acknowledged position is below the end.
        for acked in &new {
            assert!(acked.first_position < report.events);
        }
        all.extend(new);
        if iteration + 1 == iterations {
            for acked in &all {
                check(&store, acked);
            }
        }
    }
    eprintln!(
        "kill -9 iterations {iterations}, acknowledged appends verified {acked_total}, lost 0, \
         reopens that replayed only the tail after an index checkpoint {tail_only}"
    );
    assert!(
        iterations < 10 || tail_only > 0,
        "no reopen found a persisted index checkpoint"
    );
    assert!(
        acked_total > iterations,
        "the child acknowledged almost nothing: {acked_total}"
    );
}
