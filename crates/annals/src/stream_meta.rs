//! Stream metadata: retention rules set per stream — `truncate-before`
//! (reads start at a version), `max-count` (reads show at most the newest N
//! events) and `max-age` (reads skip events older than a duration) — stored as events of the stream's metadata stream
//! `$meta-STREAM`, like the soft delete (`crate::soft_delete`), so setting
//! one is durable and atomic like an append. Stream reads and aggregate
//! loads start at the first version the rules leave; stream versions do
//! not change. The events outside the rules stay in the log and in `$all`
//! until a compaction removes them (`crate::compact`).

use std::ops::ControlFlow;

use annals_index::Direction;

use crate::error::{Error, Result};
use crate::event::EventData;
use crate::expected::{CurrentVersion, ExpectedVersion};
use crate::soft_delete::{meta_stream, META_STREAM_PREFIX, TRUNCATE_BEFORE_EVENT_TYPE};
use crate::store::AppendResult;
use crate::Store;

/// Event type, in a metadata stream, of "show at most the newest N events"
/// (data: N in decimal).
pub const MAX_COUNT_EVENT_TYPE: &str = "MaxCount";

/// Event type, in a metadata stream, of "show only events younger than N
/// seconds" (data: N in decimal).
pub const MAX_AGE_EVENT_TYPE: &str = "MaxAge";

/// Metadata of the `TruncateBefore` event a soft delete writes: what tells
/// a compaction's report a soft delete from a truncate-before.
pub(crate) const SOFT_DELETE_MARK: &[u8] = b"soft-delete";

/// How many times setting metadata that lost a race to another setter
/// checks again before it fails.
const META_ATTEMPTS: usize = 16;

/// Stripes of [`MetaWriteLocks`].
const META_LOCK_STRIPES: usize = 16;

/// Serializes, within the one process that writes the store, the
/// read-check-append of a stream's metadata (soft deletes, retention
/// rules) by stream: without it two racing setters of one stream retry
/// against each other, and one that keeps losing to a busy other fails
/// after its bounded attempts (seen under load: two soft-deleters of one
/// stream, 20 deletes each). The expected version of the metadata stream
/// still decides (an append to it made otherwise is a race the bounded
/// retry answers); the lock only makes setters take turns.
#[derive(Debug, Default)]
pub(crate) struct MetaWriteLocks([parking_lot::Mutex<()>; META_LOCK_STRIPES]);

impl MetaWriteLocks {
    /// Held while `stream`'s metadata is read, checked and appended.
    pub(crate) fn lock(&self, stream: &str) -> parking_lot::MutexGuard<'_, ()> {
        // FNV-1a: streams spread over the stripes, the same one each time.
        let hash = stream.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let stripe = (hash % META_LOCK_STRIPES as u64) as usize;
        // `stripe` < META_LOCK_STRIPES: `get` never misses.
        let [first, ..] = &self.0;
        self.0.get(stripe).unwrap_or(first).lock()
    }
}

/// A stream's retention rules, as its metadata stream holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamMetadata {
    /// Reads start at this version (set by `set_truncate_before` or a soft
    /// delete).
    pub truncate_before: Option<u64>,
    /// Reads show at most this many of the newest events.
    pub max_count: Option<u64>,
    /// Reads skip events older than this many seconds (by their commit
    /// timestamp), from the moment of the read.
    pub max_age_secs: Option<u64>,
    /// The truncation point of the newest soft delete, if any (at or below
    /// `truncate_before`).
    pub soft_deleted_before: Option<u64>,
}

impl StreamMetadata {
    /// The first version reads show of a stream whose current version is
    /// `current` (`None`: no events).
    pub fn first_version(&self, current: Option<u64>) -> u64 {
        let truncated = self.truncate_before.unwrap_or(0);
        let counted = match (self.max_count, current) {
            (Some(max), Some(current)) => (current + 1).saturating_sub(max),
            _ => 0,
        };
        truncated.max(counted)
    }
}

impl Store {
    /// `stream`'s retention rules: the newest `TruncateBefore` and
    /// `MaxCount` events of `$meta-STREAM`. Costs a backward read of the
    /// metadata stream until both are found (all of it when one is unset).
    ///
    /// ```
    /// use annals::{Direction, EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let events = (0..5).map(|n| EventData::new("Changed", vec![n])).collect();
    /// store.append("log-1", ExpectedVersion::NoStream, events)??;
    /// store.set_max_count("log-1", 2)?;
    /// assert_eq!(store.stream_metadata("log-1")?.max_count, Some(2));
    /// let versions: Vec<u64> = store
    ///     .read_stream("log-1", 0, Direction::Forward, 10)?
    ///     .iter()
    ///     .map(|e| e.version)
    ///     .collect();
    /// assert_eq!(versions, [3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream_metadata(&self, stream: &str) -> Result<StreamMetadata> {
        let mut metadata = StreamMetadata::default();
        if stream.starts_with(META_STREAM_PREFIX) {
            return Ok(metadata);
        }
        let meta = meta_stream(stream);
        // A metadata stream someone hard-deleted holds no rules.
        if !matches!(self.stream_version(&meta)?, CurrentVersion::Version(_)) {
            return Ok(metadata);
        }
        let mut failure = None;
        self.read_stream_from_with(
            &meta,
            0,
            u64::MAX,
            Direction::Backward,
            usize::MAX,
            |event| {
                let soft = event.event_type == TRUNCATE_BEFORE_EVENT_TYPE
                    && event.metadata == SOFT_DELETE_MARK
                    && metadata.soft_deleted_before.is_none();
                let slot = match event.event_type {
                    TRUNCATE_BEFORE_EVENT_TYPE if metadata.truncate_before.is_some() && soft => {
                        &mut metadata.soft_deleted_before
                    }
                    TRUNCATE_BEFORE_EVENT_TYPE => &mut metadata.truncate_before,
                    MAX_COUNT_EVENT_TYPE => &mut metadata.max_count,
                    MAX_AGE_EVENT_TYPE => &mut metadata.max_age_secs,
                    _ => return ControlFlow::Continue(()),
                };
                if slot.is_none() {
                    match std::str::from_utf8(event.data)
                        .ok()
                        .and_then(|t| t.parse::<u64>().ok())
                    {
                        Some(value) => {
                            *slot = Some(value);
                            if soft {
                                metadata.soft_deleted_before = Some(value);
                            }
                        }
                        None => {
                            failure = Some(Error::BadStreamMetadata {
                                stream: stream.to_owned(),
                                reason: format!(
                                    "{} at version {} does not hold a number",
                                    event.event_type, event.version
                                ),
                            });
                            return ControlFlow::Break(());
                        }
                    }
                }
                if metadata.truncate_before.is_some()
                    && metadata.max_count.is_some()
                    && metadata.max_age_secs.is_some()
                    && metadata.soft_deleted_before.is_some()
                {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )?;
        failure.map_or(Ok(metadata), Err)
    }

    /// Makes reads of `stream` start at `version` (events below it stop
    /// being readable at once; versions do not change). Refused, writing
    /// nothing, for a stream with no events ([`Error::StreamNotFound`]), a
    /// deleted one ([`Error::StreamDeleted`]), a version past the next one
    /// or below the truncation point already set ([`Error::InvalidInput`]:
    /// it never moves back). Durable and atomic like an append.
    pub fn set_truncate_before(&self, stream: &str, version: u64) -> Result<AppendResult> {
        self.set_meta(
            stream,
            TRUNCATE_BEFORE_EVENT_TYPE,
            version,
            |current, metadata| {
                if version > current + 1 {
                    return Err(format!(
                        "truncate-before {version} is past the stream's next version {}",
                        current + 1
                    ));
                }
                match metadata.truncate_before {
                    Some(set) if version < set => Err(format!(
                        "truncate-before {version} is below the one already set ({set})"
                    )),
                    _ => Ok(()),
                }
            },
        )
    }

    /// Makes reads of `stream` show at most its newest `max_count` events.
    /// Refused, writing nothing, for a stream with no events or a deleted
    /// one (as [`set_truncate_before`](Store::set_truncate_before)).
    /// Durable and atomic like an append.
    pub fn set_max_count(&self, stream: &str, max_count: u64) -> Result<AppendResult> {
        self.set_meta(stream, MAX_COUNT_EVENT_TYPE, max_count, |_, _| Ok(()))
    }

    /// Makes reads of `stream` skip its events older than `max_age` (by
    /// commit timestamp, at the moment of each read; whole seconds, at
    /// least one). Refused, writing nothing, for a stream with no events or
    /// a deleted one, or a zero age ([`Error::InvalidInput`]). Durable and
    /// atomic like an append; a compaction removes what it hides.
    pub fn set_max_age(&self, stream: &str, max_age: std::time::Duration) -> Result<AppendResult> {
        let secs = max_age.as_secs();
        if secs == 0 {
            return Err(Error::InvalidInput(
                "max-age must be at least one second".into(),
            ));
        }
        self.set_meta(stream, MAX_AGE_EVENT_TYPE, secs, |_, _| Ok(()))
    }

    /// The first version of `stream` at or after `from` whose event is
    /// younger than `max_age_secs` at `now_us` (the version after the last
    /// event when none is): a forward read over the expired events.
    pub(crate) fn max_age_first(
        &self,
        stream: &str,
        from: u64,
        max_age_secs: u64,
        now_us: u64,
    ) -> Result<u64> {
        let cutoff_us = now_us.saturating_sub(max_age_secs.saturating_mul(1_000_000));
        let mut first = None;
        let mut last = None;
        self.read_stream_from_with(
            stream,
            from,
            from,
            Direction::Forward,
            usize::MAX,
            |event| {
                last = Some(event.version);
                if event.timestamp_us >= cutoff_us {
                    first = Some(event.version);
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )?;
        Ok(match (first, last) {
            (Some(first), _) => first,
            (None, Some(last)) => last + 1,
            (None, None) => match self.stream_version(stream)? {
                CurrentVersion::Version(current) => (current + 1).max(from),
                _ => from,
            },
        })
    }

    /// Appends one metadata event of `event_type` holding `value`, after
    /// `check(current version, metadata)`; serialized with other setters
    /// through the metadata stream's expected version.
    fn set_meta(
        &self,
        stream: &str,
        event_type: &str,
        value: u64,
        check: impl Fn(u64, &StreamMetadata) -> std::result::Result<(), String>,
    ) -> Result<AppendResult> {
        if stream.starts_with(META_STREAM_PREFIX) {
            return Err(Error::InvalidInput(format!(
                "{stream} is a metadata stream; it has no metadata"
            )));
        }
        let meta = meta_stream(stream);
        let _turn = self.meta_write_lock(stream);
        for _ in 0..META_ATTEMPTS {
            let meta_expected = match self.stream_version(&meta)? {
                CurrentVersion::NoStream => ExpectedVersion::NoStream,
                CurrentVersion::Version(version) => ExpectedVersion::Exact(version),
                CurrentVersion::Deleted { .. } => return Err(Error::StreamDeleted(meta)),
            };
            let current = match self.stream_version(stream)? {
                CurrentVersion::NoStream => return Err(Error::StreamNotFound(stream.to_owned())),
                CurrentVersion::Deleted { .. } => {
                    return Err(Error::StreamDeleted(stream.to_owned()))
                }
                CurrentVersion::Version(current) => current,
            };
            check(current, &self.stream_metadata(stream)?).map_err(Error::InvalidInput)?;
            let event = EventData::new(event_type, value.to_string());
            if let Ok(written) = self.append(&meta, meta_expected, vec![event])? {
                return Ok(written);
            }
        }
        Err(Error::Internal(format!(
            "setting the metadata of {stream} lost {META_ATTEMPTS} races in a row"
        )))
    }
}
