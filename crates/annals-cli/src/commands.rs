//! The store commands.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use annals::{Direction, EventData, ExpectedVersion, Store};
use serde_json::json;

use crate::json::{event_from_line, event_line, to_bytes};
use crate::Failure;

/// How long a command waits for a store locked by another process.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the store: read-only without `create` (no lock, nothing
/// written); otherwise for writing, waiting up to [`LOCK_WAIT`] while
/// another process holds it. Commands that only read refuse a directory that is not a store
/// (`store_dir.rs`); writing ones refuse a non-empty one that is not.
pub fn open(dir: &Path, create: bool) -> Result<Store, Failure> {
    crate::store_dir::check(dir, create)?;
    if !create {
        // Reading commands change nothing and wait for no one: they work
        // while another process owns the store, and on read-only media.
        return Store::open_read_only_with(dir, options()).map_err(Failure::from);
    }
    open_writable(dir)
}

/// The options of a command's store: the defaults without the query cache
/// (a command reads a query once, in pages that would each go through it).
fn options() -> annals::Options {
    annals::Options::default().query_cache_bytes(0)
}

/// Opens an existing store for writing (waiting as [`open`] does) without
/// ever creating one: for commands that change a store but make no sense
/// on a new one (`snapshot`, `meta` with a rule, `delete --soft`); a
/// directory that is not a store is refused and left untouched.
pub fn open_existing(dir: &Path) -> Result<Store, Failure> {
    crate::store_dir::check(dir, false)?;
    open_writable(dir)
}

fn open_writable(dir: &Path) -> Result<Store, Failure> {
    let started = Instant::now();
    loop {
        match Store::open_with(dir, options()) {
            Ok(store) => return Ok(store),
            Err(annals::Error::Locked(_)) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(annals::Error::Locked(_)) => {
                return Err(Failure::error(format!(
                    "store at {} is locked by another process (waited {}s)",
                    dir.display(),
                    LOCK_WAIT.as_secs()
                )))
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Parses `any | no-stream | exists | N`.
pub fn parse_expected(text: &str) -> Result<ExpectedVersion, Failure> {
    match text {
        "any" => Ok(ExpectedVersion::Any),
        "no-stream" => Ok(ExpectedVersion::NoStream),
        "exists" => Ok(ExpectedVersion::StreamExists),
        n => n.parse().map(ExpectedVersion::Exact).map_err(|_| {
            Failure::usage(format!(
                "--expected must be any, no-stream, exists or a version number, not {n:?}"
            ))
        }),
    }
}

/// Prints one line to stdout.
pub fn print_line(line: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| Failure::error(format!("stdout: {e}")))
}

/// `annals append`.
pub fn append(
    dir: &Path,
    stream: &str,
    expected: &str,
    one: Option<(String, String)>,
    condition: Option<&str>,
) -> Result<(), Failure> {
    let expected = parse_expected(expected)?;
    if let Some(condition) = condition {
        // Bad input is refused before stdin is read.
        crate::query::parse_condition(condition)?;
    }
    let events = match one {
        Some((event_type, data)) => {
            let value: serde_json::Value = serde_json::from_str(&data)
                .map_err(|e| Failure::usage(format!("--data is not JSON: {e}")))?;
            vec![EventData::new(event_type, to_bytes(&value))]
        }
        None => read_stdin_events()?,
    };
    if events.is_empty() {
        return Err(Failure::usage(
            "no events: give --type and --data, or JSON lines on stdin",
        ));
    }
    if let Some(condition) = condition {
        return crate::query::append(dir, stream, expected, events, condition);
    }
    let store = open(dir, true)?;
    match store.append(stream, expected, events)? {
        Ok(result) => print_line(
            &json!({
                "stream": result.stream,
                "first_version": result.first_version,
                "last_version": result.last_version,
                "first_position": result.first_position,
                "last_position": result.last_position,
                "duplicate": result.duplicate,
            })
            .to_string(),
        ),
        Err(conflict) => Err(Failure::conflict(conflict.to_string())),
    }
}

fn read_stdin_events() -> Result<Vec<EventData>, Failure> {
    let mut events = Vec::new();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| Failure::usage(format!("stdin: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        events.push(event_from_line(&line, i + 1)?);
    }
    Ok(events)
}

/// `annals read`.
pub fn read(
    dir: &Path,
    stream: &str,
    from: Option<u64>,
    max: Option<usize>,
    backward: bool,
) -> Result<(), Failure> {
    let store = open(dir, false)?;
    let (direction, default_from) = if backward {
        (Direction::Backward, u64::MAX)
    } else {
        (Direction::Forward, 0)
    };
    let from = from.unwrap_or(default_from);
    let next = |event: &annals::RecordedEvent| match direction {
        Direction::Forward => event.version.checked_add(1),
        Direction::Backward => event.version.checked_sub(1),
    };
    print_pages(from, max, next, |from, count| {
        store.read_stream(stream, from, direction, count)
    })
}

/// Prints the events `read(from, count)` returns, page after page, from
/// `from` until `max` are printed or a page is empty; `next` gives where
/// the page after an event starts (`None`: nothing after it). When a page
/// fails, its events are read again one at a time, so that every verified
/// event before the damage is printed (and flushed) before the command
/// fails with the error that stopped it: `read` and `all` behave the same.
fn print_pages(
    mut from: u64,
    max: Option<usize>,
    next: impl Fn(&annals::RecordedEvent) -> Option<u64>,
    read: impl Fn(u64, usize) -> annals::Result<Vec<annals::RecordedEvent>>,
) -> Result<(), Failure> {
    let mut left = max.unwrap_or(usize::MAX);
    while left > 0 {
        let page = match read(from, left.min(1024)) {
            Ok(page) => page,
            Err(error) => return Err(print_until_failure(from, left, &next, &read, error)),
        };
        let Some(last) = page.last() else { break };
        let after = next(last);
        for event in &page {
            print_line(&event_line(event))?;
        }
        left -= page.len();
        match after {
            Some(after) => from = after,
            None => break,
        }
    }
    Ok(())
}

/// After a page failed with `error`: prints its events one by one up to
/// the one that fails, and returns that failure (or `error`, if none does).
fn print_until_failure(
    mut from: u64,
    mut left: usize,
    next: &impl Fn(&annals::RecordedEvent) -> Option<u64>,
    read: &impl Fn(u64, usize) -> annals::Result<Vec<annals::RecordedEvent>>,
    error: annals::Error,
) -> Failure {
    let mut failure = Failure::from(error);
    while left > 0 {
        let event = match read(from, 1) {
            Ok(mut one) => match one.pop() {
                Some(event) => event,
                None => break,
            },
            Err(error) => {
                failure = Failure::from(error);
                break;
            }
        };
        if let Err(printing) = print_line(&event_line(&event)) {
            return printing;
        }
        left -= 1;
        match next(&event) {
            Some(after) => from = after,
            None => break,
        }
    }
    let _ = std::io::stdout().flush();
    failure
}

/// `annals all`.
pub fn all(dir: &Path, from: u64, max: Option<usize>) -> Result<(), Failure> {
    let store = open(dir, false)?;
    print_pages(
        from,
        max,
        |event| event.position.checked_add(1),
        |from, count| store.read_all(from, count),
    )
}

/// `annals delete`.
pub fn delete(dir: &Path, stream: &str, expected: &str) -> Result<(), Failure> {
    let expected = parse_expected(expected)?;
    let store = open(dir, true)?;
    match store.delete_stream(stream, expected)? {
        Ok(result) => print_line(
            &json!({"stream": result.stream, "tombstone_version": result.first_version, "position": result.first_position})
                .to_string(),
        ),
        Err(conflict) => Err(Failure::conflict(conflict.to_string())),
    }
}

/// `annals stats`.
pub fn stats(dir: &Path, as_json: bool) -> Result<(), Failure> {
    let store = open(dir, false)?;
    let stats = store.stats();
    if as_json {
        print_line(
            &json!({
                "streams": stats.streams,
                "events": stats.events,
                "segments": stats.segments,
                "bytes": stats.segment_bytes,
                "data_bytes": stats.data_bytes,
                "index_runs": stats.index_runs,
                "index_bytes": stats.index_bytes,
                "index_checkpoint": stats.index_checkpoint,
                "index_buffered": stats.index_buffered,
                "index_error": stats.index_error,
                "snapshots": stats.snapshots,
                "snapshot_bytes": stats.snapshot_bytes,
            })
            .to_string(),
        )
    } else {
        print_line(&format!(
            "streams   {}\nevents    {}\nsegments  {}\nbytes     {}\ndata_bytes {}\n\
             index_runs {}\nindex_bytes {}\nindex_checkpoint {}\nindex_buffered {}\n\
             snapshots {}\nsnapshot_bytes {}",
            stats.streams,
            stats.events,
            stats.segments,
            stats.segment_bytes,
            stats.data_bytes,
            stats.index_runs,
            stats.index_bytes,
            stats.index_checkpoint,
            stats.index_buffered,
            stats.snapshots,
            stats.snapshot_bytes,
        ))?;
        match stats.index_error {
            Some(error) => print_line(&format!("index_error {error}")),
            None => Ok(()),
        }
    }
}

/// `annals verify`.
pub fn verify(dir: &Path) -> Result<(), Failure> {
    let store = open(dir, false)?;
    let report = store.verify().map_err(|e| {
        if e.is_index_damage() {
            Failure::index_damaged(format!(
                "verify failed: {e}; run `annals rebuild-index {}`",
                dir.display()
            ))
        } else {
            Failure::error(format!("verify failed: {e}"))
        }
    })?;
    print_line(&format!(
        "ok: {} events checksummed, index of {} streams matches a full rescan",
        report.events, report.streams
    ))?;
    print_line(&format!(
        "ok: {} index entries (files and memory) checked",
        report.index_entries
    ))?;
    print_line(&format!(
        "ok: {} snapshot frames checksummed, {} snapshots found where loads look",
        report.snapshot_frames, report.snapshots
    ))
}

/// `annals rebuild-index`.
pub fn rebuild_index(dir: &Path) -> Result<(), Failure> {
    crate::store_dir::check(dir, false)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "rebuilding index {bar:40} {pos}/{len} events ({eta})",
        )
        .map_err(|e| Failure::error(e.to_string()))?,
    );
    let store =
        annals::Store::rebuild_index(dir, annals::Options::default(), &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })?;
    bar.finish_and_clear();
    let stats = store.stats();
    drop(store);
    print_line(&format!(
        "ok: index rebuilt from {} events of {} streams",
        stats.events, stats.streams
    ))
}

/// `annals repair`.
pub fn repair(dir: &Path, dry_run: bool) -> Result<(), Failure> {
    crate::store_dir::check(dir, false)?;
    let report = Store::repair(dir, annals::Options::default(), dry_run)?;
    let evidence: Vec<serde_json::Value> = report
        .evidence_discarded
        .iter()
        .map(|e| json!({"file": e.file, "kind": e.kind.as_str(), "position_end": e.position_end}))
        .collect();
    let dropped = report.dropped.map(|(first, end)| {
        json!({
            "positions": [first, end],
            "events": end.saturating_sub(first),
            "file": report.missing_at.as_ref().map(|(file, _)| file),
            "offset": report.missing_at.as_ref().map(|(_, offset)| offset),
            "found": report.found,
        })
    });
    print_line(
        &json!({
            "dry_run": report.dry_run,
            "dropped": dropped,
            "evidence_discarded": evidence,
            "truncated": report.truncated.map(|(file, offset)| json!({"file": file, "offset": offset})),
            "position_end": report.position_end,
        })
        .to_string(),
    )
}
