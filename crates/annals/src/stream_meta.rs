//! Stream metadata: retention rules set per stream — `truncate-before`
//! (reads start at a version) and `max-count` (reads show at most the
//! newest N events) — stored as events of the stream's metadata stream
//! `$meta-STREAM`, like the soft delete (`crate::soft_delete`), so setting
//! one is durable and atomic like an append. Stream reads and aggregate
//! loads start at the first version the rules leave; stream versions do
//! not change. The events outside the rules stay in the log and in `$all`
//! until a compaction removes them (there is no compaction yet).

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

/// How many times setting metadata that lost a race to another setter
/// checks again before it fails.
const META_ATTEMPTS: usize = 16;

/// A stream's retention rules, as its metadata stream holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamMetadata {
    /// Reads start at this version (set by `set_truncate_before` or a soft
    /// delete).
    pub truncate_before: Option<u64>,
    /// Reads show at most this many of the newest events.
    pub max_count: Option<u64>,
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
                let slot = match event.event_type {
                    TRUNCATE_BEFORE_EVENT_TYPE => &mut metadata.truncate_before,
                    MAX_COUNT_EVENT_TYPE => &mut metadata.max_count,
                    _ => return ControlFlow::Continue(()),
                };
                if slot.is_none() {
                    match std::str::from_utf8(event.data)
                        .ok()
                        .and_then(|t| t.parse::<u64>().ok())
                    {
                        Some(value) => *slot = Some(value),
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
                if metadata.truncate_before.is_some() && metadata.max_count.is_some() {
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
