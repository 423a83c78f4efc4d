//! Property: `annals backup DIR DEST` works while another process owns the
//! store; the backup opens, verifies and holds exactly positions `0..P`
//! (the P it printed) of the owner's log; a backup process killed at any
//! point leaves a destination that never opens as complete (it says the
//! backup is incomplete), and running it again completes it.
//! Method: `annals stress` as the owner, `annals backup` as a child process
//! killed after growing delays.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::annals;

fn positions(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

/// `P` from "ok: positions 0..P backed up …".
fn printed_end(output: &Output) -> usize {
    let text = String::from_utf8_lossy(&output.stdout);
    let rest = text.split("0..").nth(1).unwrap();
    rest.split(' ').next().unwrap().parse().unwrap()
}

fn stressed(dir: &str, seconds: &str) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args([
            "stress",
            dir,
            "--seconds",
            seconds,
            "--threads",
            "4",
            "--segment-bytes",
            "1048576",
            "--pad-bytes",
            "2000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !Path::new(dir).join("00000000000000000000.seg").exists() {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[test]
fn a_backup_of_a_live_store_is_exactly_a_prefix_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let (text, target) = (dir.path().to_str().unwrap(), dest.path().join("b"));
    let mut owner = stressed(text, "3");
    std::thread::sleep(Duration::from_millis(500));
    let first = annals(&["backup", text, target.to_str().unwrap()]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first_end = printed_end(&first);
    std::thread::sleep(Duration::from_millis(300));
    let second = annals(&["backup", text, target.to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(0));
    let end = printed_end(&second);
    assert!(end >= first_end && first_end > 0);
    assert!(owner.wait().unwrap().success());
    let verify = annals(&["verify", target.to_str().unwrap()]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let copy = positions(&annals(&["all", target.to_str().unwrap()]));
    let source = positions(&annals(&["all", text]));
    assert_eq!(copy.len(), end);
    assert_eq!(copy[..], source[..end]);
}

#[test]
fn a_killed_backup_never_opens_as_complete() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().to_str().unwrap();
    let mut owner = stressed(text, "2");
    assert!(owner.wait().unwrap().success());
    let dest = tempfile::tempdir().unwrap();
    let mut incomplete = 0;
    for (round, delay_ms) in [0u64, 2, 5, 10, 20, 40, 80].into_iter().enumerate() {
        let target = dest.path().join(format!("b{round}"));
        let target_text = target.to_str().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
            .args(["backup", text, target_text])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let finished = child.wait().unwrap().success();
        let stats = annals(&["stats", target_text]);
        if finished || stats.status.code() == Some(0) {
            // Complete: it finished, or the kill landed after its last
            // step (removing `BACKUP-INCOMPLETE`) but before the process
            // exited (seen killed after 10 ms and after 40 ms under CPU
            // load, where this test asserted the open failed). Either way
            // the copy opens as the whole source and verifies.
            assert_eq!(stats.status.code(), Some(0), "killed after {delay_ms} ms");
            let verify = annals(&["verify", target_text]);
            assert_eq!(verify.status.code(), Some(0), "killed after {delay_ms} ms");
            assert_eq!(
                positions(&annals(&["all", target_text])),
                positions(&annals(&["all", text])),
                "killed after {delay_ms} ms"
            );
            continue;
        }
        assert_eq!(stats.status.code(), Some(1), "killed after {delay_ms} ms");
        let stderr = String::from_utf8_lossy(&stats.stderr);
        assert!(
            stderr.contains("incomplete") || stderr.contains("not an Annals store"),
            "killed after {delay_ms} ms: {stderr}"
        );
        incomplete += 1;
        // Running it again completes it.
        let again = annals(&["backup", text, target_text]);
        assert_eq!(
            again.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        let verify = annals(&["verify", target_text]);
        assert_eq!(verify.status.code(), Some(0));
        assert_eq!(
            positions(&annals(&["all", target_text])),
            positions(&annals(&["all", text]))
        );
    }
    assert!(incomplete > 0, "no backup was killed before it finished");
}

#[test]
fn a_backup_into_a_foreign_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().to_str().unwrap();
    let out = annals(&["append", text, "s-1", "--type", "T", "--data", "1"]);
    assert!(out.status.success());
    let dest = tempfile::tempdir().unwrap();
    std::fs::write(dest.path().join("photo.jpg"), b"not mine to touch").unwrap();
    let out = annals(&["backup", text, dest.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"));
    let names: Vec<_> = std::fs::read_dir(dest.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    assert_eq!(
        std::fs::read(dest.path().join("photo.jpg")).unwrap(),
        b"not mine to touch"
    );
}

#[test]
fn a_paced_backup_completes_and_a_bad_rate_is_a_usage_error_that_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().to_str().unwrap();
    let out = annals(&["append", text, "s-1", "--type", "T", "--data", "1"]);
    assert!(out.status.success());
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("dest");
    let dest_text = dest.to_str().unwrap();
    for bad in ["0", "fast", "10X", "-5", "99999999999G"] {
        let out = annals(&["backup", text, dest_text, "--rate", bad]);
        assert_eq!(out.status.code(), Some(2), "--rate {bad}");
        assert!(!dest.exists(), "--rate {bad} created the destination");
    }
    let out = annals(&["backup", text, dest_text, "--rate", "64M", "--no-link"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(printed_end(&out), 1);
    let out = annals(&["verify", dest_text]);
    assert!(out.status.success(), "{out:?}");
}
