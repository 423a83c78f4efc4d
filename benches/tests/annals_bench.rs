//! Property: the `annals-bench` binary (moved here from `annals bench`)
//! prints the comparison table, writes the JSON rows, reports medians over
//! rounds, and exits 2 on bad usage. Method: run the built binary.

use std::process::{Command, Output};

use serde_json::Value;

fn annals_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals-bench"))
        .args(args)
        .output()
        .unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap()
}

#[test]
fn bench_prints_a_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let out = annals_bench(&[
        "--seconds",
        "0.1",
        "--streams",
        "50",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("vs sqlite") && text.contains("load a 100-event stream"),
        "{text}"
    );
    let rows: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 10);
    assert!(rows
        .iter()
        .any(|r| r["workload"] == "bulk: 1 writer, 100 x 128 B per append (zero-ahead off)"));
    for row in rows {
        assert!(row["workload"].is_string() && row["unit"].is_string());
        assert!(row["annals"]["value"].as_f64().unwrap() > 0.0, "{row}");
    }
    let writes = rows.iter().filter(|r| r["unit"] == "commits/s").count();
    assert_eq!(writes, 6);
    assert!(rows
        .iter()
        .filter(|r| r["unit"] == "commits/s")
        .all(|r| r["sqlite"]["value"].as_f64().unwrap() > 0.0
            && r["ceiling"]["value"].as_f64().unwrap() > 0.0));
    let bad = annals_bench(&["--seconds", "0"]);
    assert_eq!(code(&bad), 2);
}

#[test]
fn bench_rounds_interleave_the_systems_and_report_medians() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let out = annals_bench(&[
        "--writes-only",
        "--seconds",
        "0.05",
        "--rounds",
        "3",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("medians of 3 rounds"), "{text}");
    let rows: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for row in rows {
        assert_eq!(row["rounds"], 3, "{row}");
        assert!(row["annals"]["value"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["ceiling"]["value"].as_f64().unwrap() > 0.0, "{row}");
    }
    let bad = annals_bench(&["--rounds", "0"]);
    assert_eq!(code(&bad), 2);
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    for args in [
        &["--rounds", "0"][..],
        &["--streams", "0"],
        &["--seconds", "-1"],
        &["--writes-only", "--reads-only"],
        &["--no-such-flag"],
    ] {
        let out = annals_bench(args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    let out = annals_bench(&["--rounds", "0"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be positive"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
