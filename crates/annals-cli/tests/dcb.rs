//! Property: the CLI's DCB contract as issue 22 writes it — `"tags"` in
//! stdin JSON lines and in the printed events, `annals query DIR JSON
//! [--from P] [--max N]`, `annals append … --condition JSON` exiting 3 with
//! the conflicting position on stderr, malformed queries exiting 2.
//! Method: run the built binary.

mod common;

use std::process::Output;

use common::{annals_with_stdin as run, code};
use serde_json::Value;

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn tags_query_and_conditional_append_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let input = concat!(
        r#"{"type":"StudentSubscribed","data":{},"tags":["student:1","course:7"]}"#,
        "\n",
        r#"{"type":"CourseDefined","data":{"cap":2},"tags":["course:7"]}"#,
        "\n",
        r#"{"type":"StudentSubscribed","data":{},"tags":["student:2","course:8"]}"#,
        "\n",
    );
    let out = run(&["append", store, "s-1"], input);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    let q = r#"{"items":[{"types":["StudentSubscribed"],"tags":["course:7"]}]}"#;
    let out = run(&["query", store, q], "");
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let found = lines(&out);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["position"], 0);
    assert_eq!(
        found[0]["tags"],
        serde_json::json!(["student:1", "course:7"])
    );

    let any_course = r#"{"items":[{"tags":["course:7"]},{"tags":["course:8"]}]}"#;
    let positions = |args: &[&str]| -> Vec<u64> {
        let out = run(args, "");
        assert_eq!(code(&out), 0);
        lines(&out)
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(positions(&["query", store, any_course]), [0, 1, 2]);
    assert_eq!(
        positions(&["query", store, any_course, "--from", "1"]),
        [1, 2]
    );
    assert_eq!(
        positions(&["query", store, any_course, "--max", "2"]),
        [0, 1]
    );
    let all = run(&["all", store], "");
    assert_eq!(lines(&all)[1]["tags"], serde_json::json!(["course:7"]));

    let event = r#"{"type":"StudentSubscribed","data":{},"tags":["student:3","course:7"]}"#;
    let condition = r#"{"items":[{"types":["StudentSubscribed"],"tags":["course:7"]}],"after":-1}"#;
    let out = run(&["append", store, "s-3", "--condition", condition], event);
    assert_eq!(code(&out), 2, "a negative position is bad input");
    let condition = r#"{"items":[{"types":["StudentSubscribed"],"tags":["course:7"]}]}"#;
    let out = run(&["append", store, "s-3", "--condition", condition], event);
    assert_eq!(code(&out), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("position 0"), "{stderr}");
    let condition = r#"{"items":[{"types":["StudentSubscribed"],"tags":["course:7"]}],"after":0}"#;
    let out = run(&["append", store, "s-3", "--condition", condition], event);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines(&out)[0]["first_position"], 3);
    // The condition and an expected version together: the version fails.
    let out = run(
        &[
            "append",
            store,
            "s-3",
            "--expected",
            "no-stream",
            "--condition",
            condition,
            "--type",
            "X",
            "--data",
            "{}",
        ],
        "",
    );
    assert_eq!(code(&out), 3);
    assert_eq!(
        positions(&["all", store]).len(),
        4,
        "the failed appends wrote nothing"
    );
}

#[test]
fn malformed_queries_and_tags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let out = run(&["append", store, "s", "--type", "E", "--data", "{}"], "");
    assert_eq!(code(&out), 0);
    for bad in [
        "",
        "not json",
        "[]",
        r#"{"items":{}}"#,
        r#"{"items":[{"tags":"x"}]}"#,
        r#"{"items":[{"tags":[1]}]}"#,
        r#"{"items":[{"tags":[""]}]}"#,
        r#"{"items":[{"colour":["red"]}]}"#,
        r#"{"items":[],"after":3}"#,
    ] {
        let out = run(&["query", store, bad], "");
        assert_eq!(
            code(&out),
            2,
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(
            &[
                "append",
                store,
                "s",
                "--condition",
                bad,
                "--type",
                "E",
                "--data",
                "{}",
            ],
            "",
        );
        let want = if bad.contains("after") { 0 } else { 2 };
        assert_eq!(code(&out), want, "condition {bad}");
    }
    for bad_line in [
        r#"{"type":"E","tags":"x"}"#,
        r#"{"type":"E","tags":[""]}"#,
        r#"{"type":"E","tags":["a","a"]}"#,
    ] {
        let out = run(&["append", store, "s"], bad_line);
        assert_eq!(code(&out), 2, "{bad_line}");
    }
}

/// The bounds the store puts on queries and tags, through the CLI: too
/// many items, too many types or tags in an item, a type or tag too long,
/// too many tags on an event, and `"after"` that is not a whole number in
/// u64 all exit 2 and write nothing; a store-side refusal (an event's tags)
/// too; `"after": u64::MAX` and `--from` past the end are valid.
#[test]
fn query_and_tag_bounds_exit_2_and_write_nothing() {
    use annals::{QUERY_ITEMS_MAX, QUERY_ITEM_TERMS_MAX, TAGS_MAX, TAG_BYTES_MAX};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let tagged = r#"{"type":"E","data":{},"tags":["t:1"]}"#;
    assert_eq!(code(&run(&["append", store, "s"], tagged)), 0);
    let quoted = |list: Vec<String>| {
        list.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let item = r#"{"tags":["t:1"]}"#;
    let items = vec![item; QUERY_ITEMS_MAX + 1].join(",");
    let terms = quoted(
        (0..=QUERY_ITEM_TERMS_MAX)
            .map(|i| format!("t:{i}"))
            .collect(),
    );
    let long_tag = "t".repeat(TAG_BYTES_MAX + 1);
    let long_type = "T".repeat(annals::EVENT_TYPE_BYTES_MAX + 1);
    let bad_queries = [
        format!(r#"{{"items":[{items}]}}"#),
        format!(r#"{{"items":[{{"tags":[{terms}]}}]}}"#),
        format!(r#"{{"items":[{{"types":[{terms}]}}]}}"#),
        format!(r#"{{"items":[{{"tags":["{long_tag}"]}}]}}"#),
        format!(r#"{{"items":[{{"types":["{long_type}"]}}]}}"#),
        r#"{"items":[{"types":[""]}]}"#.to_owned(),
        r#"{"items":[{"types":"E"}]}"#.to_owned(),
        r#"{"items":[1]}"#.to_owned(),
    ];
    for bad in &bad_queries {
        let out = run(&["query", store, bad], "");
        assert_eq!(code(&out), 2, "query {bad}");
        let out = run(&["append", store, "s", "--condition", bad], tagged);
        assert_eq!(code(&out), 2, "condition {bad}");
    }
    for after in [
        r#""3""#,
        "1.5",
        "true",
        "[0]",
        "18446744073709551616",
        "-0.5",
    ] {
        let condition = format!(r#"{{"items":[{item}],"after":{after}}}"#);
        let out = run(&["append", store, "s", "--condition", &condition], tagged);
        assert_eq!(code(&out), 2, "after {after}");
    }
    let many = quoted((0..=TAGS_MAX).map(|i| format!("t:{i}")).collect());
    for bad_line in [
        format!(r#"{{"type":"E","tags":[{many}]}}"#),
        format!(r#"{{"type":"E","tags":["{long_tag}"]}}"#),
        r#"{"type":"E","tags":[null]}"#.to_owned(),
        r#"{"type":"E","tags":{"t":1}}"#.to_owned(),
    ] {
        // A good line first: the whole append is refused.
        let input = format!("{tagged}\n{bad_line}\n");
        assert_eq!(code(&run(&["append", store, "s"], &input)), 2, "{bad_line}");
        let condition = r#"{"items":[{"tags":["absent"]}]}"#;
        let out = run(&["append", store, "s", "--condition", condition], &input);
        assert_eq!(code(&out), 2, "with a condition: {bad_line}");
    }
    let out = run(&["all", store], "");
    assert_eq!(lines(&out).len(), 1, "nothing was written");

    let condition = format!(r#"{{"items":[{item}],"after":18446744073709551615}}"#);
    let out = run(&["append", store, "s", "--condition", &condition], tagged);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let query = format!(r#"{{"items":[{item}]}}"#);
    let out = run(
        &["query", store, &query, "--from", "18446744073709551615"],
        "",
    );
    assert_eq!((code(&out), lines(&out).len()), (0, 0));
    let out = run(&["query", store, &query, "--max", "0"], "");
    assert_eq!((code(&out), lines(&out).len()), (0, 0));
    let out = run(&["query", store, &query], "");
    assert_eq!((code(&out), lines(&out).len()), (0, 2));
}
