//! Reading the events of one Annals category (all streams of one aggregate
//! type) in global order.
//!
//! Today this scans `$all` and keeps the streams of the category
//! (`Store::read_all_with` + `annals::category_of`): O(events scanned), not
//! O(events of the category). A native category index
//! (`Store::read_category`) is under way; when it lands, this function is
//! the one place to switch to it.

use std::ops::ControlFlow;

use annals::{RecordedEvent, Store};

/// Up to `max` events of `category`'s streams at global positions from
/// `from` (inclusive) up to `end` (exclusive), in order, and the position to
/// read on from (`end` once the range is exhausted). Events of the store's
/// own types (`$`…, e.g. a deleted stream's tombstone) are left out.
pub fn read_category(
    store: &Store,
    category: &str,
    from: u64,
    end: u64,
    max: usize,
) -> annals::Result<(Vec<RecordedEvent>, u64)> {
    let mut events = Vec::new();
    let mut next = from;
    if from >= end || max == 0 {
        return Ok((events, from.max(end)));
    }
    store.read_all_with(from, usize::MAX, |event| {
        if event.position >= end {
            return ControlFlow::Break(());
        }
        next = event.position + 1;
        if annals::category_of(event.stream) == Some(category) && !event.event_type.starts_with('$')
        {
            events.push(event.to_recorded());
        }
        if events.len() >= max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    // A scan that stopped short of `max` reached `end` or the log's end.
    if events.len() < max {
        next = end;
    }
    Ok((events, next))
}
