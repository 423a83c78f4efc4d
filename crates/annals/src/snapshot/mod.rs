//! Snapshots of aggregates: saved beside the events in a log of their own
//! and loaded together with the events after them.
//!
//! | file | owns |
//! |---|---|
//! | `format.rs` | every byte of a snapshot file (header, frame), as FORMAT.md specifies |
//! | `log.rs` | the snapshot log: append + `fdatasync` per save, the in-memory map rebuilt at open, torn-tail cut |
//! | `mod.rs` | `Store::save_snapshot`, `Store::load_aggregate`, `Store::load_aggregate_with` |
//!
//! Snapshots are not events: they never appear in `$all` or in stream
//! reads, and take no version or position.

mod format;
mod log;

use std::ops::ControlFlow;

use annals_index::Direction;
use bytes::Bytes;

pub use format::{SNAPSHOT_BYTES_MAX, SNAPSHOT_TYPE_BYTES_MAX};
pub(crate) use log::SnapshotLog;
pub use log::SnapshotRecovery;

use crate::error::{Error, Result};
use crate::event::{EventRef, RecordedEvent};
use crate::expected::CurrentVersion;
use crate::Store;

/// A snapshot as saved: the state of `stream`'s aggregate after the event
/// at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream.
    pub stream: String,
    /// The stream version the snapshot stands for (its last event folded in).
    pub version: u64,
    /// The caller's type or schema tag.
    pub snapshot_type: String,
    /// The snapshot's bytes.
    pub data: Bytes,
    /// When it was saved, microseconds since the Unix epoch.
    pub saved_us: u64,
}

/// A snapshot borrowed while [`Store::load_aggregate_with`] runs.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotRef<'a> {
    /// The stream.
    pub stream: &'a str,
    /// The stream version the snapshot stands for.
    pub version: u64,
    /// The caller's type or schema tag.
    pub snapshot_type: &'a str,
    /// The snapshot's bytes.
    pub data: &'a [u8],
    /// When it was saved, microseconds since the Unix epoch.
    pub saved_us: u64,
}

impl SnapshotRef<'_> {
    /// An owned copy.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            stream: self.stream.to_owned(),
            version: self.version,
            snapshot_type: self.snapshot_type.to_owned(),
            data: Bytes::copy_from_slice(self.data),
            saved_us: self.saved_us,
        }
    }
}

/// One part of an aggregate as [`Store::load_aggregate_with`] hands it
/// over: the snapshot first (if there is one), then each event after it.
#[derive(Debug, Clone, Copy)]
pub enum AggregatePart<'a> {
    /// The newest snapshot at or below the stream's version.
    Snapshot(SnapshotRef<'a>),
    /// An event after the snapshot, borrowed from the log.
    Event(EventRef<'a>),
}

/// What an aggregate loader needs: the newest snapshot at or below the
/// stream's version, and every event after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// The newest snapshot at or below the stream's version, if any.
    pub snapshot: Option<Snapshot>,
    /// The events after the snapshot (all of them without one), in order.
    pub events: Vec<RecordedEvent>,
    /// The stream's version as loaded: the last event's, else the
    /// snapshot's; [`CurrentVersion::NoStream`] for a stream with no events.
    /// What the next append expects.
    pub version: CurrentVersion,
}

/// What [`Store::load_aggregate_with`] handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// The version of the snapshot handed over, if one was.
    pub snapshot_version: Option<u64>,
    /// How many events were visited after it.
    pub events: usize,
    /// The stream's version as loaded (see [`Aggregate::version`]).
    pub version: CurrentVersion,
}

impl Store {
    /// What opening the store found in the snapshot log: frames read, and
    /// the bytes of a torn last frame cut.
    pub fn snapshot_recovery(&self) -> SnapshotRecovery {
        self.snapshots().recovery()
    }

    /// Saves a snapshot of `stream`'s aggregate at `version` (the state
    /// after folding events 0..=`version`), tagged with `snapshot_type`:
    /// one checksummed frame appended to the snapshot log and synced
    /// (`fdatasync`) before this returns `Ok`. Refused with a typed error,
    /// writing nothing, for a stream with no events
    /// ([`Error::StreamNotFound`]), a deleted stream
    /// ([`Error::StreamDeleted`]), a version the stream has not reached
    /// ([`Error::SnapshotAhead`]), an empty or too long type or data over
    /// [`SNAPSHOT_BYTES_MAX`] ([`Error::InvalidInput`]). Saves are serialized
    /// (one sync each); they never wait for or hold up appends.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let events = (0..3).map(|n| EventData::new("Deposited", vec![n])).collect();
    /// store.append("account-1", ExpectedVersion::NoStream, events)??;
    /// store.save_snapshot("account-1", 2, "Balance.v1", b"3")?;
    /// let loaded = store.load_aggregate("account-1")?;
    /// assert_eq!(loaded.snapshot.map(|s| s.version), Some(2));
    /// assert!(loaded.events.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_snapshot(
        &self,
        stream: &str,
        version: u64,
        snapshot_type: &str,
        data: &[u8],
    ) -> Result<()> {
        if snapshot_type.is_empty() || snapshot_type.len() > SNAPSHOT_TYPE_BYTES_MAX {
            return Err(Error::InvalidInput(format!(
                "a snapshot type must be 1 to {SNAPSHOT_TYPE_BYTES_MAX} bytes, not {}",
                snapshot_type.len()
            )));
        }
        if data.len() > SNAPSHOT_BYTES_MAX {
            return Err(Error::InvalidInput(format!(
                "a snapshot of {} bytes exceeds the limit of {SNAPSHOT_BYTES_MAX}",
                data.len()
            )));
        }
        match self.stream_version(stream)? {
            CurrentVersion::NoStream => return Err(Error::StreamNotFound(stream.to_owned())),
            CurrentVersion::Deleted { .. } => return Err(Error::StreamDeleted(stream.to_owned())),
            CurrentVersion::Version(current) if version > current => {
                return Err(Error::SnapshotAhead {
                    stream: stream.to_owned(),
                    version,
                    current,
                })
            }
            CurrentVersion::Version(_) => {}
        }
        let first = self.truncate_before(stream)?;
        if version < first {
            return Err(Error::InvalidInput(format!(
                "version {version} of {stream} was soft-deleted: its events start at version {first}"
            )));
        }
        self.snapshots().append(&format::FrameFields {
            stream,
            version,
            saved_us: now_us(),
            snapshot_type,
            data,
        })
    }

    /// Loads `stream`'s aggregate: the newest snapshot at or below the
    /// stream's current version, and the events after it, collected. A
    /// stream with no events loads as empty ([`CurrentVersion::NoStream`]);
    /// a deleted one is [`Error::StreamDeleted`]. A snapshot above the
    /// stream's version (possible only after a crash lost events appended
    /// with [`Durability::Buffered`](crate::Durability::Buffered)) is
    /// passed over.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let events = (0..5).map(|n| EventData::new("Deposited", vec![n])).collect();
    /// store.append("account-1", ExpectedVersion::NoStream, events)??;
    /// store.save_snapshot("account-1", 2, "Balance.v1", b"3")?;
    /// let loaded = store.load_aggregate("account-1")?;
    /// assert_eq!(loaded.snapshot.unwrap().data, &b"3"[..]);
    /// let versions: Vec<u64> = loaded.events.iter().map(|e| e.version).collect();
    /// assert_eq!(versions, [3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_aggregate(&self, stream: &str) -> Result<Aggregate> {
        let mut snapshot = None;
        let mut events = Vec::new();
        let loaded = self.load_aggregate_with(stream, |part| {
            match part {
                AggregatePart::Snapshot(found) => snapshot = Some(found.to_snapshot()),
                AggregatePart::Event(event) => events.push(event.to_recorded()),
            }
            ControlFlow::Continue(())
        })?;
        Ok(Aggregate {
            snapshot,
            events,
            version: loaded.version,
        })
    }

    /// Like [`load_aggregate`](Store::load_aggregate), but hands `visit`
    /// the snapshot (if any), then each event after it, borrowed
    /// ([`AggregatePart`]: no allocation per event; the snapshot's bytes are
    /// one `pread`). `visit` returns `Break` to stop early; the returned
    /// [`Loaded`] then counts what was visited.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use annals::{AggregatePart, EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let events = (1..=4u8).map(|n| EventData::new("Deposited", vec![n])).collect();
    /// store.append("account-1", ExpectedVersion::NoStream, events)??;
    /// store.save_snapshot("account-1", 1, "Balance.v1", &[3])?; // 1 + 2
    /// let mut balance = 0u64;
    /// store.load_aggregate_with("account-1", |part| {
    ///     match part {
    ///         AggregatePart::Snapshot(snapshot) => balance = u64::from(snapshot.data[0]),
    ///         AggregatePart::Event(event) => balance += u64::from(event.data[0]),
    ///     }
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(balance, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_aggregate_with(
        &self,
        stream: &str,
        mut visit: impl FnMut(AggregatePart<'_>) -> ControlFlow<()>,
    ) -> Result<Loaded> {
        let current = match self.stream_version(stream)? {
            CurrentVersion::Deleted { .. } => return Err(Error::StreamDeleted(stream.to_owned())),
            CurrentVersion::NoStream => {
                return Ok(Loaded {
                    snapshot_version: None,
                    events: 0,
                    version: CurrentVersion::NoStream,
                })
            }
            CurrentVersion::Version(current) => current,
        };
        // After a soft delete, events (and snapshots) below `first` are gone.
        let first = self.truncate_before(stream)?;
        let mut last = first.checked_sub(1);
        let mut from = first;
        let mut snapshot_version = None;
        let found = self.snapshots().newest_at_or_below(stream, current)?;
        if let Some(found) = found.filter(|found| found.version >= first) {
            let fields = format::decode_frame(found.salt, &found.frame).map_err(|fault| {
                Error::Internal(format!(
                    "a verified snapshot frame no longer decodes: {fault}"
                ))
            })?;
            snapshot_version = Some(fields.version);
            last = Some(fields.version);
            from = fields.version.saturating_add(1);
            let flow = visit(AggregatePart::Snapshot(SnapshotRef {
                stream: fields.stream,
                version: fields.version,
                snapshot_type: fields.snapshot_type,
                data: fields.data,
                saved_us: fields.saved_us,
            }));
            if flow.is_break() {
                return Ok(Loaded {
                    snapshot_version,
                    events: 0,
                    version: CurrentVersion::Version(fields.version),
                });
            }
        }
        let events =
            self.read_stream_with(stream, from, Direction::Forward, usize::MAX, |event| {
                last = Some(event.version);
                visit(AggregatePart::Event(event))
            })?;
        Ok(Loaded {
            snapshot_version,
            events,
            version: last.map_or(CurrentVersion::NoStream, CurrentVersion::Version),
        })
    }
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
