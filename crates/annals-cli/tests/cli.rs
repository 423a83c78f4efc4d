//! Property: the `annals` binary keeps its contract — JSON output shapes,
//! exit codes 0 / 1 / 2 / 3, JSON data returned as the same JSON value,
//! lock waiting — as scripts see it. Method: run the built binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn annals(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout_json(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap()
}

#[test]
fn append_read_all_round_trip_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();

    let out = annals(
        &[
            "append",
            store,
            "order-7",
            "--expected",
            "no-stream",
            "--type",
            "Placed",
            "--data",
            r#"{"total":12.5,"items":[1,2]}"#,
        ],
        None,
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let written = &stdout_json(&out)[0];
    assert_eq!(written["stream"], "order-7");
    assert_eq!(
        (
            written["first_version"].as_u64(),
            written["last_version"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(
        (
            written["first_position"].as_u64(),
            written["last_position"].as_u64()
        ),
        (Some(0), Some(0))
    );

    // A stale expectation: exit 3, expected and actual named on stderr, nothing written.
    let out = annals(
        &[
            "append",
            store,
            "order-7",
            "--expected",
            "no-stream",
            "--type",
            "Placed",
            "--data",
            "{}",
        ],
        None,
    );
    assert_eq!(code(&out), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("expected no-stream") && stderr.contains("actual 0"),
        "{stderr}"
    );

    // JSON lines on stdin are one atomic append.
    let lines = "{\"type\":\"Paid\",\"data\":{\"amount\":3}}\n\n{\"type\":\"Shipped\",\"data\":null,\"metadata\":{\"by\":\"ops\"},\"id\":\"0b9e2b8e-6a52-4cd3-9a3e-5b4f0d8d3a11\"}\n";
    let out = annals(
        &["append", store, "order-7", "--expected", "0"],
        Some(lines),
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let written = &stdout_json(&out)[0];
    assert_eq!(
        (
            written["first_version"].as_u64(),
            written["last_version"].as_u64()
        ),
        (Some(1), Some(2))
    );

    // Retrying the same lines (same ids) is idempotent: the original result, marked.
    let retry =
        "{\"type\":\"Refunded\",\"data\":1,\"id\":\"11111111-2222-4333-8444-555555555555\"}\n";
    let first = stdout_json(&annals(
        &["append", store, "refunds", "--expected", "no-stream"],
        Some(retry),
    ))[0]
        .clone();
    let again = annals(
        &["append", store, "refunds", "--expected", "no-stream"],
        Some(retry),
    );
    assert_eq!(
        code(&again),
        0,
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again = &stdout_json(&again)[0];
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["first_position"], first["first_position"]);

    let out = annals(&["read", store, "order-7"], None);
    assert_eq!(code(&out), 0);
    let events = stdout_json(&out);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0]["data"],
        serde_json::json!({"total": 12.5, "items": [1, 2]})
    );
    assert_eq!(events[1]["data"], serde_json::json!({"amount": 3}));
    assert_eq!(events[2]["metadata"], serde_json::json!({"by": "ops"}));
    assert_eq!(events[2]["id"], "0b9e2b8e-6a52-4cd3-9a3e-5b4f0d8d3a11");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["version"].as_u64(), Some(i as u64));
        assert_eq!(event["position"].as_u64(), Some(i as u64));
        assert_eq!(event["stream"], "order-7");
        for key in ["type", "timestamp"] {
            assert!(event[key].is_string(), "{key}");
        }
    }

    let out = annals(
        &["read", store, "order-7", "--backward", "--max", "2"],
        None,
    );
    let versions: Vec<u64> = stdout_json(&out)
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 1]);
    let out = annals(
        &["read", store, "order-7", "--from", "1", "--max", "1"],
        None,
    );
    assert_eq!(stdout_json(&out)[0]["type"], "Paid");

    annals(
        &[
            "append", store, "user-1", "--type", "Joined", "--data", "\"x\"",
        ],
        None,
    );
    let out = annals(&["all", store, "--from", "2"], None);
    let positions: Vec<u64> = stdout_json(&out)
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, vec![2, 3, 4]);
    let out = annals(&["all", store, "--max", "1"], None);
    assert_eq!(stdout_json(&out).len(), 1);

    let out = annals(&["stats", store, "--json"], None);
    let stats = &stdout_json(&out)[0];
    assert_eq!(
        (
            stats["streams"].as_u64(),
            stats["events"].as_u64(),
            stats["segments"].as_u64()
        ),
        (Some(3), Some(5), Some(1))
    );
    assert!(stats["bytes"].as_u64().unwrap() > 0);
    // Data bytes: the segment header plus five small frames, far below the preallocation.
    let data = stats["data_bytes"].as_u64().unwrap();
    assert!(
        data > 64 && data < stats["bytes"].as_u64().unwrap() / 100,
        "{stats}"
    );
    let text = annals(&["stats", store], None);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("streams   3\nevents    5\nsegments  1\nbytes     ")
            && text.contains("\ndata_bytes "),
        "{text}"
    );

    let out = annals(&["verify", store], None);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_usage_and_bad_input_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
        (
            vec![
                "append",
                store,
                "s",
                "--expected",
                "maybe",
                "--type",
                "T",
                "--data",
                "1",
            ],
            None,
        ),
        (
            vec!["append", store, "s", "--type", "T", "--data", "not json"],
            None,
        ),
        (vec!["append", store, "s", "--type", "T"], None),
        (vec!["append", store, "s"], Some("")),
        (vec!["append", store, "s"], Some("{\"data\":1}\n")),
        (vec!["append", store, "s"], Some("garbage\n")),
        (
            vec!["append", store, "s"],
            Some("{\"type\":\"T\",\"id\":\"nope\"}\n"),
        ),
        (
            vec!["append", store, "", "--type", "T", "--data", "1"],
            None,
        ),
        (
            vec!["append", store, "s", "--type", "$system", "--data", "1"],
            None,
        ),
        (vec!["frobnicate"], None),
    ];
    for (args, stdin) in cases {
        let out = annals(&args, stdin);
        assert_eq!(
            code(&out),
            2,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = annals(&["stats", store, "--json"], None);
    assert_eq!(
        stdout_json(&out)[0]["events"].as_u64(),
        Some(0),
        "bad input wrote something"
    );
}

#[test]
fn reads_of_a_missing_store_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = annals(&["read", missing.to_str().unwrap(), "s"], None);
    assert_eq!(code(&out), 1);
    assert!(!missing.exists(), "a read created the store");
}

#[test]
fn verify_reports_corruption_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    for i in 0..5 {
        let out = annals(
            &[
                "append",
                store,
                "s",
                "--type",
                "T",
                "--data",
                &format!("{{\"i\":{i}}}"),
            ],
            None,
        );
        assert_eq!(code(&out), 0);
    }
    let segment = dir.path().join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[64 + 70] ^= 0x01; // inside the first frame
    std::fs::write(&segment, &bytes).unwrap();
    let out = annals(&["verify", store], None);
    assert_ne!(code(&out), 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("00000000000000000000.seg") && stderr.contains("offset 64"),
        "{stderr}"
    );
}

#[test]
fn a_locked_store_is_waited_for_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    let held = annals::Store::open(dir.path()).unwrap();
    // A writing command waits for the lock, then is refused. (Until read
    // commands opened read-only, `stats` was the command tested here; it
    // now works at once while the store is held: below.)
    let started = std::time::Instant::now();
    let dir_text = dir.path().to_str().unwrap();
    let out = annals(
        &["append", dir_text, "s", "--type", "T", "--data", "0"],
        None,
    );
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "did not wait"
    );
    let started = std::time::Instant::now();
    let out = annals(&["stats", dir_text], None);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "a read command waited for the lock"
    );
    drop(held);

    // Released while the command waits: it proceeds.
    let held = annals::Store::open(dir.path()).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(held);
    });
    let out = annals(
        &[
            "append",
            dir.path().to_str().unwrap(),
            "s",
            "--type",
            "T",
            "--data",
            "1",
        ],
        None,
    );
    releaser.join().unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn demo_runs_and_checks_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = annals(
        &[
            "demo",
            dir.path().join("d").to_str().unwrap(),
            "--threads",
            "4",
            "--commands",
            "100",
        ],
        None,
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("committed 400 deposits")
            && text.contains("conflicts:")
            && text.contains("group commit: ")
            && text.contains("balances add up"),
        "{text}"
    );
    // The demo says tellers race on shared accounts: conflicts must happen.
    let conflicts: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("conflicts: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a conflicts line with a count");
    assert!(conflicts > 0, "no conflict in the demo: {text}");
}

#[test]
fn rebuild_index_replaces_the_index_files_and_stats_report_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    for (i, stream) in ["a", "b", "a", "c", "a"].iter().enumerate() {
        let data = format!("{{\"i\":{i}}}");
        let out = annals(
            &["append", store, stream, "--type", "T", "--data", &data],
            None,
        );
        assert_eq!(code(&out), 0);
    }
    let stats = &stdout_json(&annals(&["stats", store, "--json"], None))[0];
    assert_eq!(stats["index_checkpoint"], 5, "{stats}");
    assert!(stats["index_runs"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["index_buffered"], 0, "{stats}");
    assert!(stats["index_error"].is_null(), "{stats}");

    // Damage every index file in a way open cannot see (a data page).
    let runs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "run"))
        .collect();
    assert!(!runs.is_empty());
    for run in &runs {
        let mut bytes = std::fs::read(run).unwrap();
        bytes[4096 + 3] ^= 0x20;
        std::fs::write(run, &bytes).unwrap();
    }
    let out = annals(&["verify", store], None);
    // The index is derived data: its damage has its own exit code and
    // names the repair, apart from damage to the log (exit 1).
    assert_eq!(code(&out), 4, "verify must report the damaged index page");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(".run"), "{stderr}");
    assert!(stderr.contains("the log is intact"), "{stderr}");
    assert!(stderr.contains("annals rebuild-index"), "{stderr}");

    let out = annals(&["rebuild-index", store], None);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: index rebuilt from 5 events of 3 streams\n"
    );
    let out = annals(&["verify", store], None);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 5 index entries"));
    let events = stdout_json(&annals(&["read", store, "a"], None));
    assert_eq!(events.len(), 3);

    let missing = dir.path().join("nope");
    let out = annals(&["rebuild-index", missing.to_str().unwrap()], None);
    assert_eq!(code(&out), 1);
}

/// The `annals` binary linked (or copied) alone into `dir`, so that no
/// `annals-bench` is beside it whatever `target/` holds.
fn lone_annals(dir: &std::path::Path) -> std::path::PathBuf {
    let exe = dir.join(format!("annals{}", std::env::consts::EXE_SUFFIX));
    if std::fs::hard_link(env!("CARGO_BIN_EXE_annals"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_annals"), &exe).unwrap();
    }
    exe
}

/// Runs `exe` with `args` and PATH set to `path` only, retrying while the
/// kernel reports a just-written script busy (another test's fork may still
/// hold it open for writing).
fn run_with_path(exe: &std::path::Path, args: &[&str], path: &std::path::Path) -> Output {
    for _ in 0..20 {
        let out = Command::new(exe)
            .args(args)
            .env("PATH", path)
            .output()
            .unwrap();
        if !String::from_utf8_lossy(&out.stderr).contains("busy") {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} stayed busy", exe.display());
}

#[test]
fn bench_without_annals_bench_exits_2_naming_the_command_to_run() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bin = dir.path().join("bin");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&bin).unwrap();
    std::fs::create_dir(&empty).unwrap();
    let exe = lone_annals(&bin);
    for args in [
        &["bench"][..],
        &[
            "bench",
            "--seconds",
            "1",
            "--rounds",
            "3",
            "--json",
            "x.json",
        ],
        &["bench", "--help"],
    ] {
        let out = run_with_path(&exe, args, &empty);
        assert_eq!(code(&out), 2, "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("annals-bench")
                && stderr
                    .contains("cargo run --release -p annals-benches --bin annals-bench -- [ARGS]"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// Writes an `annals-bench` script into `dir` that prints its arguments one
/// a line and exits 7.
#[cfg(unix)]
fn fake_annals_bench(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("annals-bench");
    std::fs::write(&script, "#!/bin/sh\nprintf '%s\\n' \"$@\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(unix)]
#[test]
fn bench_runs_annals_bench_beside_it_or_on_path_with_the_arguments_and_its_exit_code() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let beside = dir.path().join("beside");
    let alone = dir.path().join("alone");
    let on_path = dir.path().join("on-path");
    let empty = dir.path().join("empty");
    for d in [&beside, &alone, &on_path, &empty] {
        std::fs::create_dir(d).unwrap();
    }
    fake_annals_bench(&beside);
    fake_annals_bench(&on_path);
    let args = [
        "--seconds",
        "0.5",
        "--rounds",
        "3",
        "--json",
        "a file.json",
        "--writes-only",
        "--help",
    ];
    let expected: String = args.iter().map(|a| format!("{a}\n")).collect();
    let with_bench: Vec<&str> = std::iter::once("bench").chain(args).collect();
    for (exe, path) in [
        (lone_annals(&beside), &empty),
        (lone_annals(&alone), &on_path),
    ] {
        let out = run_with_path(&exe, &with_bench, path);
        assert_eq!(code(&out), 7, "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }
}

#[test]
fn stress_rate_caps_the_appends_and_the_store_is_held_for_its_seconds() {
    // `--rate 400` over 1 s, 2 threads: each thread's appends are due every
    // 5 ms from the start, so at most 200 each; unpaced it makes thousands.
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().to_str().unwrap();
    let started = std::time::Instant::now();
    let output = annals(
        &[
            "stress",
            text,
            "--seconds",
            "1",
            "--threads",
            "2",
            "--rate",
            "400",
        ],
        None,
    );
    let elapsed = started.elapsed();
    assert_eq!(
        code(&output),
        0,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let appends = stdout_json(&output).len();
    assert!((1..=400).contains(&appends), "{appends} appends");
    assert!(elapsed >= std::time::Duration::from_secs(1), "{elapsed:?}");
    for rate in ["0", "-5", "inf", "NaN"] {
        let missing = dir.path().join(format!("not-created-{rate}"));
        let output = annals(&["stress", missing.to_str().unwrap(), "--rate", rate], None);
        assert_eq!(code(&output), 2, "--rate {rate}");
        assert!(!missing.exists(), "--rate {rate} created the store");
    }
}
