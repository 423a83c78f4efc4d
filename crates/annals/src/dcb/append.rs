//! [`Store::append_with_condition`]: an atomic append to one or more
//! streams, each with its expected version, that also fails if an event
//! matching a query was written after a position.

use super::condition::{AppendCondition, AppendRejected, ConditionFailed};
use crate::error::Result;
use crate::event::EventData;
use crate::expected::ExpectedVersion;
use crate::store::{expected_only, AppendResult, Store};
use crate::write::{Conflict, StreamAppend};

impl Store {
    /// Appends to several streams atomically, as
    /// [`append_many`](Store::append_many), and only if no event matching
    /// `condition`'s query has a position above its `after` — counting
    /// stored events and those accepted earlier in the same group commit.
    /// Either every expectation and the condition hold and every event is
    /// written, or nothing is and the inner `Err` says why (for a failed
    /// condition, the first matching position). Give streams
    /// [`ExpectedVersion::Any`] to rely on the condition alone.
    ///
    /// A retry of an append already stored (same event ids) returns the
    /// original result, as for every append, without checking the
    /// condition again (its own events would match it).
    ///
    /// ```
    /// use annals::{AppendCondition, EventData, ExpectedVersion, Query, QueryItem, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let username = Query::new([QueryItem::new().types(["UserRegistered"]).tags(["username:ann"])]);
    /// let read = store.read_query(&username, 0, 1)?;
    /// assert!(read.events.is_empty());
    /// let register = |user: &str| {
    ///     let event = EventData::new("UserRegistered", "{}").with_tag("username:ann");
    ///     let condition = AppendCondition::new(username.clone()).after(read.read_up_to);
    ///     store.append_with_condition(vec![(user.into(), ExpectedVersion::NoStream, vec![event])], condition)
    /// };
    /// assert!(register("user-1")?.is_ok());
    /// let taken = register("user-2")?.unwrap_err();
    /// assert_eq!(taken.to_string(), "append condition failed: the event at position 0 matches its query");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_with_condition(
        &self,
        appends: Vec<(String, ExpectedVersion, Vec<EventData>)>,
        condition: AppendCondition,
    ) -> Result<Result<Vec<AppendResult>, AppendRejected>> {
        let appends = appends
            .into_iter()
            .map(|(stream, expected, events)| StreamAppend::new(stream, expected, events, false))
            .collect();
        match self.submit(appends, Some(condition))? {
            Ok(results) => Ok(Ok(results)),
            Err(Conflict::Condition(position)) => Ok(Err(ConditionFailed { position }.into())),
            Err(conflict) => Ok(Err(expected_only(conflict)?.into())),
        }
    }
}
