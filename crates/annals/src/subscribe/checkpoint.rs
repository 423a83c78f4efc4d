//! Durable named consumer checkpoints, kept as events of the system stream
//! `$checkpoint-NAME`: one event per save, type [`CHECKPOINT_EVENT_TYPE`],
//! data the position in decimal ASCII. Saving is an append, so it is
//! durable and atomic like any append, and a consumer that writes events
//! back can save its checkpoint in the *same* append (one frame): after a
//! crash either both its events and its checkpoint are there, or neither.
//!
//! The log shows these events like any other (`read_all`, `annals all`);
//! subscriptions hide streams whose name starts with `$` unless asked
//! ([`SubscriptionOptions::system_streams`](crate::SubscriptionOptions::system_streams))
//! or the filter names them. Each save adds one small event (~100 bytes
//! with its framing); the stream is not truncated.

use std::ops::ControlFlow;

use annals_index::Direction;

use crate::error::{Error, Result};
use crate::event::EventData;
use crate::expected::ExpectedVersion;
use crate::store::AppendResult;
use crate::Store;

/// Event type of a saved consumer checkpoint.
pub const CHECKPOINT_EVENT_TYPE: &str = "ConsumerCheckpoint";

/// The stream a consumer's checkpoints are kept in: `$checkpoint-NAME`.
///
/// ```
/// assert_eq!(annals::checkpoint_stream("projector"), "$checkpoint-projector");
/// ```
pub fn checkpoint_stream(name: &str) -> String {
    format!("$checkpoint-{name}")
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidInput("a checkpoint needs a name".into()));
    }
    Ok(())
}

impl Store {
    /// Saves `position` as consumer `name`'s checkpoint, durably (per the
    /// store's durability mode, like any append).
    ///
    /// ```
    /// use annals::Store;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.load_checkpoint("projector")?, None);
    /// store.save_checkpoint("projector", 41)?;
    /// assert_eq!(store.load_checkpoint("projector")?, Some(41));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_checkpoint(&self, name: &str, position: u64) -> Result<AppendResult> {
        let (stream, expected, events) = Self::checkpoint_append(name, position)?;
        let result = self.append(&stream, expected, events)??;
        Ok(result)
    }

    /// The append that saves `position` as consumer `name`'s checkpoint,
    /// to pass to [`append_many`](Store::append_many) together with the
    /// events the consumer writes: both are committed atomically.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let handled = 7; // the position of the event the consumer handled
    /// store.append_many(vec![
    ///     ("invoice-1".to_string(), ExpectedVersion::Any, vec![EventData::new("Issued", "{}")]),
    ///     Store::checkpoint_append("invoicer", handled)?,
    /// ])??;
    /// assert_eq!(store.load_checkpoint("invoicer")?, Some(7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint_append(
        name: &str,
        position: u64,
    ) -> Result<(String, ExpectedVersion, Vec<EventData>)> {
        check_name(name)?;
        Ok((
            checkpoint_stream(name),
            ExpectedVersion::Any,
            vec![EventData::new(CHECKPOINT_EVENT_TYPE, position.to_string())],
        ))
    }

    /// Consumer `name`'s last saved checkpoint, `None` if it never saved
    /// one. [`Error::BadCheckpoint`] if the last event of its stream does
    /// not hold a position.
    pub fn load_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        check_name(name)?;
        let mut found: Option<Result<u64>> = None;
        self.read_stream_with(
            &checkpoint_stream(name),
            u64::MAX,
            Direction::Backward,
            1,
            |event| {
                found = Some(parse(name, event.event_type, event.data));
                ControlFlow::Break(())
            },
        )?;
        found.transpose()
    }
}

fn parse(name: &str, event_type: &str, data: &[u8]) -> Result<u64> {
    let bad = |reason: String| Error::BadCheckpoint {
        name: name.to_owned(),
        reason,
    };
    if event_type != CHECKPOINT_EVENT_TYPE {
        return Err(bad(format!("its last event has type {event_type:?}")));
    }
    std::str::from_utf8(data)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| {
            bad(format!(
                "{:?} is not a position",
                String::from_utf8_lossy(data)
            ))
        })
}
