//! The CLI's Dynamic Consistency Boundary commands: `annals query DIR JSON`
//! (print the events a query matches) and `annals append … --condition
//! JSON` (append only if no event matching the condition's query was
//! written after its position; exit 3 naming the position otherwise).
//!
//! Query JSON: `{"items":[{"types":["A","B"],"tags":["course:7"]}]}`;
//! a condition adds `"after": P` (a position; absent or null for the whole
//! log). Anything else — unknown keys, wrong types, bounds the store
//! refuses — is bad input (exit 2).

use std::path::Path;

use annals::{AppendCondition, AppendRejected, EventData, ExpectedVersion, Query, QueryItem};
use serde_json::{json, Map, Value};

use crate::commands::{open, print_line};
use crate::json::event_line;
use crate::Failure;

/// Parses a condition: a query with an optional `"after"`.
pub fn parse_condition(text: &str) -> Result<AppendCondition, Failure> {
    let object = parse_object(text, "--condition")?;
    let after = match object.get("after") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| {
            Failure::usage("--condition: \"after\" must be a position (a whole number ≥ 0)")
        })?),
    };
    let query = query_of(&object, "--condition", &["items", "after"])?;
    Ok(AppendCondition::new(query).after(after))
}

/// Parses a query.
pub fn parse_query(text: &str) -> Result<Query, Failure> {
    let object = parse_object(text, "query")?;
    query_of(&object, "query", &["items"])
}

fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>, Failure> {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Failure::usage(format!("{what}: expected a JSON object"))),
        Err(e) => Err(Failure::usage(format!("{what}: not JSON: {e}"))),
    }
}

fn query_of(object: &Map<String, Value>, what: &str, keys: &[&str]) -> Result<Query, Failure> {
    if let Some(key) = object.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(Failure::usage(format!("{what}: unknown key {key:?}")));
    }
    let Some(Value::Array(items)) = object.get("items") else {
        return Err(Failure::usage(format!(
            "{what}: \"items\" must be an array of {{\"types\": [...], \"tags\": [...]}}"
        )));
    };
    let mut query = Query::default();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(Failure::usage(format!(
                "{what}: item {i} must be an object"
            )));
        };
        if let Some(key) = item.keys().find(|k| *k != "types" && *k != "tags") {
            return Err(Failure::usage(format!(
                "{what}: item {i}: unknown key {key:?}"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>, Failure> {
            match item.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        Failure::usage(format!("{what}: item {i}: \"{key}\" must be strings"))
                    }),
                Some(_) => Err(Failure::usage(format!(
                    "{what}: item {i}: \"{key}\" must be an array of strings"
                ))),
            }
        };
        query.items.push(
            QueryItem::new()
                .types(strings("types")?)
                .tags(strings("tags")?),
        );
    }
    query
        .validate()
        .map_err(|e| Failure::usage(format!("{what}: {e}")))?;
    Ok(query)
}

/// `annals query DIR JSON [--from P] [--max N]`: the matching events as
/// JSON lines, in position order.
pub fn run(dir: &Path, query: &str, from: u64, max: Option<usize>) -> Result<(), Failure> {
    let query = parse_query(query)?;
    let store = open(dir, false)?;
    let mut from = from;
    let mut left = max.unwrap_or(usize::MAX);
    // Pages, so that a large result is printed as it is read.
    while left > 0 {
        let want = left.min(1024);
        let page = store.read_query(&query, from, want)?;
        for event in &page.events {
            print_line(&event_line(event))?;
        }
        left -= page.events.len();
        // A full page stopped at its last event; a short one read to the end.
        match page.read_up_to.and_then(|p| p.checked_add(1)) {
            Some(next) if page.events.len() == want => from = next,
            _ => break,
        }
    }
    Ok(())
}

/// `annals append … --condition JSON`.
pub fn append(
    dir: &Path,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<EventData>,
    condition: &str,
) -> Result<(), Failure> {
    let condition = parse_condition(condition)?;
    let store = open(dir, true)?;
    let appends = vec![(stream.to_owned(), expected, events)];
    match store.append_with_condition(appends, condition)? {
        Ok(results) => {
            let Some(result) = results.first() else {
                return Err(Failure::error("an append returned no result"));
            };
            print_line(
                &json!({
                    "stream": result.stream,
                    "first_version": result.first_version,
                    "last_version": result.last_version,
                    "first_position": result.first_position,
                    "last_position": result.last_position,
                    "duplicate": result.duplicate,
                })
                .to_string(),
            )
        }
        Err(AppendRejected::Condition(failed)) => Err(Failure::conflict(failed.to_string())),
        Err(AppendRejected::WrongExpectedVersion(conflict)) => {
            Err(Failure::conflict(conflict.conflict.to_string()))
        }
    }
}
