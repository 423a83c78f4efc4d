//! Soft delete: a stream that reads as empty and can be appended to again,
//! its versions continuing.
//!
//! A soft delete appends one event, type [`TRUNCATE_BEFORE_EVENT_TYPE`],
//! data the decimal version V (the stream's version + 1), to the stream's
//! metadata stream `$meta-STREAM` ([`meta_stream`]). It is an append like
//! any other: one frame, durable before `Ok`, atomic. Stream reads and
//! aggregate loads take the newest such event of `$meta-STREAM` and start
//! at version V: events below it are hidden (they stay in the log and in
//! `$all` until a compaction removes them, `crate::compact`).
//! The stream itself is not written, so its version is unchanged and the
//! next append gets version V.

use crate::error::{Error, Result};
use crate::event::EventData;
use crate::expected::{CurrentVersion, ExpectedVersion, WrongExpectedVersion};
use crate::store::AppendResult;
use crate::Store;

/// Prefix of a stream's metadata stream.
pub const META_STREAM_PREFIX: &str = "$meta-";
/// Event type, in a metadata stream, of "the stream's events start at
/// version V" (data: V in decimal).
pub const TRUNCATE_BEFORE_EVENT_TYPE: &str = "TruncateBefore";

/// How many times a soft delete that lost a race to another one checks
/// again before it fails.
const SOFT_DELETE_ATTEMPTS: usize = 16;

/// The metadata stream of `stream`: `$meta-STREAM`.
///
/// ```
/// assert_eq!(annals::meta_stream("order-1"), "$meta-order-1");
/// ```
pub fn meta_stream(stream: &str) -> String {
    format!("{META_STREAM_PREFIX}{stream}")
}

/// What a soft delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftDeleted {
    /// The first version reads see from now on (the stream's version at
    /// the soft delete + 1): the version the next event gets.
    pub truncate_before: u64,
    /// The metadata event written to `$meta-STREAM`.
    pub written: AppendResult,
}

impl Store {
    /// Soft-deletes `stream` if it is at `expected`: from now on it reads
    /// (and loads) as empty, and it can be appended to again, its versions
    /// continuing (the next event gets the version after the current one).
    /// Writes one event to `$meta-STREAM` ([`meta_stream`]); durable and
    /// atomic like any append. A stream with no events is
    /// [`Error::StreamNotFound`], a hard-deleted one
    /// [`Error::StreamDeleted`], a metadata stream [`Error::InvalidInput`];
    /// none writes anything. A stale `expected` is the inner `Err`.
    ///
    /// The expectation is checked just before the metadata event is
    /// written, not inside the same commit: the truncation point is the
    /// version that was checked, so an event appended concurrently after
    /// the check survives the soft delete, as if appended after it. Racing
    /// soft deletes are serialized through the metadata stream's expected
    /// version, so the truncation point never moves back.
    ///
    /// ```
    /// use annals::{CurrentVersion, Direction, EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let events = (0..3).map(|n| EventData::new("Changed", vec![n])).collect();
    /// store.append("cart-1", ExpectedVersion::NoStream, events)??;
    /// let deleted = store.soft_delete_stream("cart-1", ExpectedVersion::Exact(2))??;
    /// assert_eq!(deleted.truncate_before, 3);
    /// assert!(store.read_stream("cart-1", 0, Direction::Forward, 10)?.is_empty());
    /// assert_eq!(store.stream_version("cart-1")?, CurrentVersion::Version(2));
    /// let again = store.append("cart-1", ExpectedVersion::Exact(2), vec![EventData::new("Changed", "x")])??;
    /// assert_eq!(again.first_version, 3);
    /// assert_eq!(store.read_stream("cart-1", 0, Direction::Forward, 10)?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn soft_delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
    ) -> Result<Result<SoftDeleted, WrongExpectedVersion>> {
        if stream.starts_with(META_STREAM_PREFIX) {
            return Err(Error::InvalidInput(format!(
                "{stream} is a metadata stream; it cannot be soft-deleted"
            )));
        }
        let meta = meta_stream(stream);
        // The metadata append expects the metadata stream's version read
        // before the stream's: two racing soft deletes cannot both win, so
        // the truncation point only ever moves forward. The loser checks
        // again (bounded). Setters in this process take turns per stream
        // (`MetaWriteLocks`), so the loser is one that raced an append to
        // the metadata stream made otherwise.
        let _turn = self.meta_write_lock(stream);
        for _ in 0..SOFT_DELETE_ATTEMPTS {
            let meta_expected = match self.stream_version(&meta)? {
                CurrentVersion::NoStream => ExpectedVersion::NoStream,
                CurrentVersion::Version(version) => ExpectedVersion::Exact(version),
                CurrentVersion::Deleted { .. } => return Err(Error::StreamDeleted(meta)),
            };
            let actual = self.stream_version(stream)?;
            let current = match actual {
                CurrentVersion::NoStream => return Err(Error::StreamNotFound(stream.to_owned())),
                CurrentVersion::Deleted { .. } => {
                    return Err(Error::StreamDeleted(stream.to_owned()))
                }
                CurrentVersion::Version(current) => current,
            };
            if !actual.satisfies(expected) {
                return Ok(Err(WrongExpectedVersion {
                    stream: stream.to_owned(),
                    expected,
                    actual,
                }));
            }
            let truncate_before = current + 1;
            let event = EventData::new(TRUNCATE_BEFORE_EVENT_TYPE, truncate_before.to_string())
                .with_metadata(crate::stream_meta::SOFT_DELETE_MARK);
            if let Ok(written) = self.append(&meta, meta_expected, vec![event])? {
                return Ok(Ok(SoftDeleted {
                    truncate_before,
                    written,
                }));
            }
        }
        Err(Error::Internal(format!(
            "a soft delete of {stream} lost {SOFT_DELETE_ATTEMPTS} races in a row to other soft deletes"
        )))
    }

    /// The first version of `stream` that reads see: 0 unless the stream
    /// was soft-deleted or has retention rules (`crate::stream_meta`).
    /// Metadata streams are never truncated.
    pub(crate) fn truncate_before(&self, stream: &str) -> Result<u64> {
        if stream.starts_with(META_STREAM_PREFIX) {
            return Ok(0);
        }
        // The usual stream has no metadata stream: one index lookup.
        if !matches!(
            self.stream_version(&meta_stream(stream))?,
            CurrentVersion::Version(_)
        ) {
            return Ok(0);
        }
        let metadata = self.stream_metadata(stream)?;
        let current = match self.stream_version(stream)? {
            CurrentVersion::Version(current) => Some(current),
            CurrentVersion::NoStream | CurrentVersion::Deleted { .. } => None,
        };
        let first = metadata.first_version(current);
        match (metadata.max_age_secs, current) {
            (Some(max_age), Some(_)) => self.max_age_first(stream, first, max_age, now_us()),
            _ => Ok(first),
        }
    }
}

/// Now, in microseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
