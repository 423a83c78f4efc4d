//! The index entries the log implies: sorted for a run, or as a digest,
//! scanned in position order.

use std::ops::ControlFlow;

use annals_index::{EntryDigest, EventOffset, Fnv1aMix, IdEntry, StreamEntry, StreamHasher};
use annals_segment::LogReader;

use crate::error::{Error, Result};
use crate::{APPEND_FIRST_FLAG, TOMBSTONE_FLAG};

/// The sorted entries a run of the log's `[start, end)` holds, and how many
/// streams begin there.
pub(super) fn entries_from_log(
    reader: &LogReader,
    start: u64,
    end: u64,
) -> Result<(Vec<StreamEntry>, Vec<IdEntry>, u64)> {
    let capacity = (end - start) as usize;
    let (mut streams, mut ids) = (Vec::new(), Vec::with_capacity(capacity));
    let mut new_streams = 0;
    visit_log_entries(reader, start, end, |entry| match entry {
        LogEntry::Stream(stream) => {
            new_streams += u64::from(stream.version == 0);
            streams.push(stream);
        }
        LogEntry::Id(id) => ids.push(id),
    })?;
    streams.sort_unstable();
    ids.sort_unstable();
    Ok((streams, ids, new_streams))
}

/// The digest of the entries the log's events `[start, end)` imply, in
/// constant memory.
pub(super) fn digest_from_log(reader: &LogReader, start: u64, end: u64) -> Result<EntryDigest> {
    let mut digest = EntryDigest::default();
    visit_log_entries(reader, start, end, |entry| match entry {
        LogEntry::Stream(stream) => digest.add_stream(&stream),
        LogEntry::Id(id) => digest.add_id(&id),
    })?;
    Ok(digest)
}

/// An index entry the log implies.
pub(super) enum LogEntry {
    Stream(StreamEntry),
    Id(IdEntry),
}

/// Calls `visit` with the stream entries of the log's events `[start,
/// end)` — one per stream per append, as the memtable makes them: an event
/// extends the entry of the event before it when it is of the same stream,
/// at the next version, not the first of an append, and the one before is
/// no tombstone — and with each event's id entry, in position order; fails
/// unless the log holds them all.
pub(super) fn visit_log_entries(
    reader: &LogReader,
    start: u64,
    end: u64,
    mut visit: impl FnMut(LogEntry),
) -> Result<()> {
    let mut seen = 0u64;
    let mut open: Option<StreamEntry> = None;
    let mut open_stream = String::new();
    reader.scan_located(start, |position, offset, record, _| {
        if position >= end {
            return ControlFlow::Break(());
        }
        seen += 1;
        let entry = StreamEntry {
            hash: Fnv1aMix.hash(record.stream),
            version: record.stream_version,
            position,
            tombstone: record.flags & TOMBSTONE_FLAG != 0,
            offset: EventOffset::new(offset),
            count: 1,
        };
        let starts_append = record.flags & APPEND_FIRST_FLAG != 0;
        match open.as_mut() {
            Some(o)
                if !starts_append && o.is_continued_by(&entry) && open_stream == record.stream =>
            {
                o.count += 1;
                o.tombstone = entry.tombstone;
            }
            _ => {
                if let Some(done) = open.replace(entry) {
                    visit(LogEntry::Stream(done));
                }
                open_stream.clear();
                open_stream.push_str(record.stream);
            }
        }
        visit(LogEntry::Id(IdEntry {
            id: record.id,
            position,
        }));
        ControlFlow::Continue(())
    })?;
    if let Some(done) = open {
        visit(LogEntry::Stream(done));
    }
    if seen != end - start {
        return Err(Error::Index(format!(
            "the log holds {seen} of the events {start}..{end}"
        )));
    }
    Ok(())
}
