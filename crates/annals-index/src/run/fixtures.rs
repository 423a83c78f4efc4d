//! Runs written for the unit tests of this module: entries of appends to a
//! few streams, and a writer of them.

use std::sync::Arc;

use annals_segment::storage::{MemStorage, Storage};

use super::*;

pub(crate) fn storage() -> Arc<dyn Storage> {
    Arc::new(MemStorage::new())
}

/// Appends of 3 events (`SPAN`), to 7 streams in turn, cut at `start`
/// and `end`.
pub(crate) fn entries(start: u64, end: u64) -> (Vec<StreamEntry>, Vec<IdEntry>) {
    let mut streams: Vec<StreamEntry> = (start / SPAN..end.div_ceil(SPAN))
        .map(|j| {
            let (first, past) = ((j * SPAN).max(start), (j * SPAN + SPAN).min(end));
            StreamEntry {
                hash: mix(j % 7),
                version: j / 7 * SPAN + (first - j * SPAN),
                position: first,
                tombstone: j % 11 == 0,
                offset: EventOffset::new((mix(first) >> 32) as u32),
                count: (past - first) as u32,
            }
        })
        .collect();
    let mut ids: Vec<IdEntry> = (start..end)
        .map(|p| IdEntry {
            id: mix(p).to_le_bytes().repeat(2).try_into().unwrap(),
            position: p,
        })
        .collect();
    streams.sort_unstable();
    ids.sort_unstable();
    (streams, ids)
}

pub(crate) const SPAN: u64 = 3;

pub(crate) fn write(storage: &Arc<dyn Storage>, start: u64, end: u64) -> Run {
    let (streams, ids) = entries(start, end);
    let new = streams.iter().filter(|e| e.version == 0).count() as u64;
    write_run(
        storage,
        start,
        end,
        new,
        || streams.iter().copied().map(Ok),
        || ids.iter().copied().map(Ok),
    )
    .unwrap()
}

/// `seek_stream` of each key equals a lower bound over `streams`.
pub(crate) fn assert_seeks_find_lower_bounds(
    run: &Run,
    streams: &[StreamEntry],
    keys: impl Iterator<Item = (u64, u64)>,
) {
    for (hash, version) in keys {
        let lower = streams.partition_point(|e| (e.hash, e.version) < (hash, version));
        assert_eq!(
            run.seek_stream(hash, version).unwrap(),
            lower as u64,
            "{hash:x}/{version}"
        );
    }
}
