//! Reading the events of one Annals category (all streams of one aggregate
//! type) in global order, through the store's category index
//! (`Store::read_category_with`): O(log n + events of the category).

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
    store.read_category_with(category, from, usize::MAX, |event| {
        if event.position >= end {
            return ControlFlow::Break(());
        }
        next = event.position + 1;
        if !event.event_type.starts_with('$') {
            events.push(event.to_recorded());
        }
        if events.len() >= max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    // A read that stopped short of `max` reached `end` or the log's end.
    if events.len() < max {
        next = end;
    }
    Ok((events, next))
}
