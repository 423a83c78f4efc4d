//! Intersecting a walk's candidates with the postings of an item's other
//! tags ([`indexed`](super::indexed)): which tags are worth it, and the
//! leapfrogging intersection itself, kept only while it pays.

use super::indexed::{Key, Postings, PAGE};
use crate::error::Result;

/// A tag whose postings are at most this many times the walked key's is
/// intersected with the walked candidates before any event is read. A
/// posting costs a few nanoseconds to copy out of its page, reading and
/// checking an event over a hundred: when the two keys are rare together,
/// the intersection spares nearly every read; when every walked candidate
/// carries the tag too (which counts cannot tell), it costs at most this
/// many copies per candidate, a few per cent of reading it. Commoner tags
/// are checked on the events read instead — unless the walk is long
/// enough to try them ([`TRY_RATIO`]).
pub(super) const INTERSECT_RATIO: u64 = 4;

/// A walk of at least this many candidates also intersects the item's
/// tags up to [`TRY_RATIO`] times as common as its walked key, and keeps
/// each intersection only while it pays ([`pays`]): a correlated tag costs
/// its copies for a page of candidates, an independent one spares most of
/// the reads of every page after.
pub(super) const TRY_WALKED: u64 = 2 * PAGE as u64;

/// See [`TRY_WALKED`].
pub(super) const TRY_RATIO: u64 = 64;

/// An intersection asked about this many candidates is judged ([`pays`]).
const JUDGED: u64 = 256;

/// Whether an intersection that admitted `admitted` of `asked` candidates
/// is kept: until it is judged, and while it drops at least half of them
/// (one that drops fewer spares fewer reads than its copies cost).
fn pays(asked: u64, admitted: u64) -> bool {
    asked < JUDGED || admitted.saturating_mul(2) < asked
}

/// One tag's postings, intersected with ascending candidates a page at a
/// time; each page is looked up from the candidate that needs it, so the
/// postings between two distant candidates are skipped, not copied.
pub(super) struct Intersect<'q> {
    key: Key<'q>,
    /// The tag's candidates in `..covers` from the last lookup on.
    page: Vec<u64>,
    /// How far into `page` the candidates asked so far have come.
    at: usize,
    /// The end of what `page` covers.
    covers: u64,
    /// Candidates asked about, and admitted ([`pays`]).
    asked: u64,
    admitted: u64,
}

impl<'q> Intersect<'q> {
    pub(super) fn new(tag: &'q str) -> Self {
        Intersect {
            key: Key::Tag(tag),
            page: Vec::new(),
            at: 0,
            covers: 0,
            asked: 0,
            admitted: 0,
        }
    }

    /// Whether `position` may carry the tag. Positions asked must ascend
    /// and stay below `frontier`.
    pub(super) fn admits(
        &mut self,
        postings: &impl Postings,
        position: u64,
        frontier: u64,
    ) -> Result<bool> {
        if position >= self.covers {
            self.page = postings.candidates(self.key, position, frontier, PAGE)?;
            self.at = 0;
            self.covers = match self.page.last() {
                Some(&last) if self.page.len() >= PAGE => last.saturating_add(1),
                _ => frontier,
            };
        }
        self.at += gallop(self.page.get(self.at..).unwrap_or_default(), position);
        let admitted = self.page.get(self.at) == Some(&position);
        self.asked += 1;
        self.admitted += u64::from(admitted);
        Ok(admitted)
    }

    /// Whether to keep this intersection for the rest of the walk
    /// ([`pays`]).
    pub(super) fn pays(&self) -> bool {
        pays(self.asked, self.admitted)
    }
}

/// How many of `sorted`'s first values are below `position`, found by
/// doubling steps from the front, then halving: a few comparisons when the
/// answer is near the front (as it is for candidates about as dense as the
/// postings), logarithmic otherwise.
fn gallop(sorted: &[u64], position: u64) -> usize {
    let mut below = 0;
    let mut step = 1;
    while sorted.get(below + step - 1).is_some_and(|&p| p < position) {
        below += step;
        step *= 2;
    }
    // `below` values are below; the one at `below + step - 1`, if any, is not.
    let window = sorted
        .get(below..(below + step - 1).min(sorted.len()))
        .unwrap_or_default();
    below + window.partition_point(|&p| p < position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gallop_counts_the_values_below_a_position() {
        let sorted: Vec<u64> = (0..300).map(|i| i * 3).collect();
        for len in [0, 1, 2, 3, 7, 64, 300] {
            let sorted = &sorted[..len];
            for position in 0..=(len as u64 * 3 + 2) {
                let want = sorted.iter().filter(|&&p| p < position).count();
                assert_eq!(
                    gallop(sorted, position),
                    want,
                    "len {len} position {position}"
                );
            }
        }
    }
}
