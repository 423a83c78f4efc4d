//! Property: the CLI's read commands stay correct on a store whose owner
//! compacts while they run (issue 21): `verify`, `all`, `read` and `stats`
//! beside `annals stress --compact` (another process appending and
//! compacting again and again) exit 0, and `all` prints positions in
//! order (with gaps where the owner removed events).
//! Method: `annals stress --compact` with small segments in one child
//! process, the read commands in others, in rounds until it ends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::annals;

#[test]
fn read_commands_work_while_the_owner_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().to_str().unwrap();
    let mut owner = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args([
            "stress",
            text,
            "--seconds",
            "5",
            "--threads",
            "2",
            "--streams",
            "10",
            "--segment-bytes",
            "65536",
            "--pad-bytes",
            "300",
            "--compact",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !Path::new(text).join("00000000000000000000.seg").exists() {
        assert!(started.elapsed() < Duration::from_secs(10), "no start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut rounds = 0;
    while owner.try_wait().unwrap().is_none() {
        for command in [
            vec!["verify", text],
            vec!["read", text, "stress-0-0"],
            vec!["stats", text],
        ] {
            let output = annals(&command);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{command:?} round {rounds}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let all = annals(&["all", text]);
        assert_eq!(
            all.status.code(),
            Some(0),
            "all, round {rounds}: {}",
            String::from_utf8_lossy(&all.stderr)
        );
        let positions: Vec<u64> = String::from_utf8_lossy(&all.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["position"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order");
        rounds += 1;
    }
    assert!(owner.wait().unwrap().success(), "the owner failed");
    assert!(rounds > 0);
    eprintln!("{rounds} rounds of read commands");
    // The final store verifies too.
    let verify = annals(&["verify", text]);
    assert_eq!(verify.status.code(), Some(0));
}
