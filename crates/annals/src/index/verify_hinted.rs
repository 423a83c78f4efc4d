//! Checking a read-only store's index against the log with offsets set
//! aside. Such a store follows an owner whose compactions rewrite sealed
//! segments and move their events (`annals_segment`'s `resident.rs`): the
//! runs it mapped at open and the entries it replayed keep offsets into
//! the files as they were, which its reads take as hints (a wrong one is
//! caught by the event's checksum and the event found through the frame
//! index). Everything else an entry holds — stream hash, version,
//! position, tombstone, count, ids — must still equal what the log
//! implies.

use annals_index::{EntryDigest, EventOffset, Run, StreamEntry};
use annals_segment::LogReader;

use super::log_entries::{visit_log_entries, LogEntry};
use crate::error::Result;

/// `entry` with its offset unknown.
pub(super) fn offset_aside(entry: StreamEntry) -> StreamEntry {
    StreamEntry {
        offset: EventOffset::UNKNOWN,
        ..entry
    }
}

/// Whether `run` holds the entries the log's `[start, end)` implies,
/// offsets aside (in constant memory, as the strict check).
pub(super) fn run_matches_offsets_aside(reader: &LogReader, run: &Run) -> Result<bool> {
    let mut in_run = EntryDigest::default();
    for i in 0..run.stream_entries() {
        in_run.add_stream(&offset_aside(run.stream_entry(i)?));
    }
    for i in 0..run.events() {
        in_run.add_id(&run.id_entry(i)?);
    }
    let mut in_log = EntryDigest::default();
    visit_log_entries(reader, run.start(), run.end(), |entry| match entry {
        LogEntry::Stream(stream) => in_log.add_stream(&offset_aside(stream)),
        LogEntry::Id(id) => in_log.add_id(&id),
    })?;
    Ok(in_run == in_log)
}
