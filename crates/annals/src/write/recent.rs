//! The event types and tags of the events the writer wrote last, kept by
//! the writer itself: an append condition whose `after` is recent (the
//! usual case: read, decide, append) is checked against them, with no
//! lock and no log decode. The secondary index's memtable is extended from
//! the log only by whoever asks it; extending it on the write path for
//! every conditional append was ~40 % of a Buffered conditional commit
//! (`docs/PERFORMANCE.md`). Events older than the last
//! [`RECENT_SCAN_MAX`] are found through the index, which the index worker
//! keeps extended off the write path (`Index::kick_secondary`).
//!
//! What must stay true: while [`RecentEvents::scan_start`] says some, the
//! events held are exactly those at `[start, end)` in the log, in order, as
//! written (a compaction may have erased one since: a match is confirmed
//! on the log before it counts, as the index path does). The writer pushes
//! every accepted request of a group after its write, so `end` is the
//! log's end when the next group is decided; anything else (a gap, a
//! writer that never pushed) shows as `end` differing from the log's end,
//! and the condition then goes through the secondary index.

use annals_segment::Record;

use crate::dcb::Query;

/// Events always held once the writer keeps them (it holds between this
/// many and twice as many: half are dropped at once, so that dropping
/// costs O(1) per event).
pub(crate) const RECENT_EVENTS_MAX: usize = 1024;

/// Most events one condition check scans here: those further back are
/// found through the secondary index (bounding the scan's cost on the
/// write path).
pub(crate) const RECENT_SCAN_MAX: u64 = 1024;

const _: () = assert!(RECENT_SCAN_MAX as usize <= RECENT_EVENTS_MAX);

/// The types and tag regions of the last published events, packed.
#[derive(Debug, Default)]
pub(crate) struct RecentEvents {
    /// Kept only once a conditional append has been seen: a store that
    /// never uses conditions pays nothing.
    on: bool,
    /// Position of the first event held.
    start: u64,
    /// Per event, where its type ends in `types` and its tags in `tags`.
    ends: Vec<(u32, u32)>,
    types: String,
    tags: Vec<u8>,
}

// Offsets fit in u32: at most 2 × RECENT_EVENTS_MAX events of bounded size.
const _: () = assert!(
    2 * RECENT_EVENTS_MAX * (crate::EVENT_TYPE_BYTES_MAX + annals_segment::format::TAGS_BYTES_MAX)
        <= u32::MAX as usize
);

impl RecentEvents {
    /// Whether events are being kept.
    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// Starts keeping events, from `end` (the log's end) on.
    pub(crate) fn start_at(&mut self, end: u64) {
        self.on = true;
        self.clear(end);
    }

    fn clear(&mut self, start: u64) {
        self.start = start;
        self.ends.clear();
        self.types.clear();
        self.tags.clear();
    }

    /// The position after the last event held.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.ends.len() as u64
    }

    /// Where the events this holds and may be scanned for a check start
    /// (the last [`RECENT_SCAN_MAX`] at most), if they run up to `log_end`,
    /// the log's end; `None` if they do not (or none are kept).
    pub(crate) fn scan_start(&self, log_end: u64) -> Option<u64> {
        (self.on && self.end() == log_end)
            .then(|| self.start.max(log_end.saturating_sub(RECENT_SCAN_MAX)))
    }

    /// Records the event written at `position`. A position that does not
    /// follow the last one held starts afresh from it. True when the oldest
    /// half was dropped (the events before the recent ones are then to be
    /// found through the secondary index).
    pub(crate) fn push(&mut self, position: u64, record: &Record<'_>) -> bool {
        if !self.on {
            return false;
        }
        if position != self.end() {
            self.clear(position);
        }
        let dropped = self.ends.len() >= 2 * RECENT_EVENTS_MAX;
        if dropped {
            self.drop_oldest(RECENT_EVENTS_MAX);
        }
        self.types.push_str(record.event_type);
        self.tags.extend_from_slice(record.tags.as_bytes());
        self.ends
            .push((self.types.len() as u32, self.tags.len() as u32));
        dropped
    }

    /// Drops the `n` oldest events held.
    fn drop_oldest(&mut self, n: usize) {
        let Some(&(type_end, tag_end)) = n.checked_sub(1).and_then(|i| self.ends.get(i)) else {
            return;
        };
        self.types.drain(..type_end as usize);
        self.tags.drain(..tag_end as usize);
        self.ends.drain(..n);
        for (t, g) in &mut self.ends {
            *t -= type_end;
            *g -= tag_end;
        }
        self.start += n as u64;
    }

    /// Calls `candidate(position)` for each event held from `from` on that
    /// matches `query`, in position order, until it returns true; returns
    /// that position. (The caller checks
    /// [`scan_start`](RecentEvents::scan_start) first.)
    pub(crate) fn first_match(
        &self,
        query: &Query,
        from: u64,
        mut candidate: impl FnMut(u64) -> bool,
    ) -> Option<u64> {
        let skip = usize::try_from(from.saturating_sub(self.start)).unwrap_or(usize::MAX);
        let mut before = match skip.checked_sub(1) {
            None => (0, 0),
            Some(i) => *self.ends.get(i)?,
        };
        for (i, &after) in self.ends.iter().enumerate().skip(skip) {
            let event_type = self.types.get(before.0 as usize..after.0 as usize);
            let tags = self.tags.get(before.1 as usize..after.1 as usize);
            before = after;
            let (Some(event_type), Some(tags)) = (event_type, tags) else {
                continue;
            };
            let position = self.start + i as u64;
            if query.matches_encoded(event_type, tags) && candidate(position) {
                return Some(position);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueryItem;

    fn record<'a>(event_type: &'a str, tags: &'a [u8]) -> Record<'a> {
        Record {
            stream: "s",
            stream_version: 0,
            id: [0; 16],
            timestamp_us: 0,
            flags: 0,
            event_type,
            tags: annals_segment::Tags::from_encoded(tags).unwrap(),
            metadata: &[],
            data: &[],
        }
    }

    fn region(tags: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        annals_segment::format::encode_tags(tags, &mut out).unwrap();
        out
    }

    /// Matches equal a filter of what was pushed, across drops of the
    /// oldest half and a gap that starts afresh; the scan start is the
    /// last [`RECENT_SCAN_MAX`] events when they run up to the log's end,
    /// and nothing otherwise.
    #[test]
    fn matches_equal_a_filter_across_drops_and_gaps() {
        let mut recent = RecentEvents::default();
        assert!(!recent.push(0, &record("A", &[])));
        assert_eq!(recent.scan_start(0), None, "off until started");
        recent.start_at(10);
        assert_eq!(recent.scan_start(10), Some(10));
        let mut pushed = Vec::new();
        let n = 3 * RECENT_EVENTS_MAX as u64 + 7;
        let mut drops = 0;
        for p in 10..10 + n {
            let ty = ["A", "B", "C"][(p % 3) as usize];
            let tags = region(&[&format!("m:{}", p % 5), "all"]);
            drops += u32::from(recent.push(p, &record(ty, &tags)));
            pushed.push((p, ty, p % 5));
        }
        assert_eq!(drops, 2, "half dropped at 2 x RECENT_EVENTS_MAX, twice");
        let end = 10 + n;
        assert_eq!(recent.end(), end);
        assert!(end - recent.start >= RECENT_EVENTS_MAX as u64);
        let split = end - RECENT_SCAN_MAX;
        assert_eq!(recent.scan_start(end), Some(split));
        let query = Query::new([
            QueryItem::new().types(["A"]).tags(["m:1"]),
            QueryItem::new().types(["C", "B"]).tags(["all", "m:3"]),
        ]);
        for from in (split..end).step_by(7).chain([end - 1]) {
            let want: Vec<u64> = pushed
                .iter()
                .filter(|&&(p, ty, m)| {
                    p >= from && ((ty == "A" && m == 1) || (ty != "A" && m == 3))
                })
                .map(|&(p, ..)| p)
                .collect();
            let mut got = Vec::new();
            let first = recent.first_match(&query, from, |p| {
                got.push(p);
                false
            });
            assert_eq!((first, &got), (None, &want), "from {from}");
            let first = recent.first_match(&query, from, |_| true);
            assert_eq!(first, want.first().copied(), "from {from}");
        }
        assert_eq!(recent.scan_start(end + 1), None, "behind the log");
        assert!(!recent.push(end + 5, &record("A", &region(&["m:1"]))));
        assert_eq!(
            recent.scan_start(end + 6),
            Some(end + 5),
            "a gap starts afresh"
        );
        assert_eq!(recent.first_match(&query, end + 5, |_| true), Some(end + 5));
        assert_eq!(
            recent.first_match(&query, end + 9, |_| true),
            None,
            "past the end"
        );
    }
}
