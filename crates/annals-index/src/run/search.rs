//! Searching a run: seeking a stream through the fences, finding an event
//! id through the id range, its filter and the id table.

use crate::Error;

use super::*;

impl Run {
    /// The fence of stream entry page `page`: its first (hash, version).
    pub(super) fn fence(&self, page: u64) -> Result<(u64, u64), Error> {
        let item = self.item(self.layout.fences_first, FENCES_PER_PAGE, FENCE_BYTES, page)?;
        Ok((le_u64(item, 0), le_u64(item, 8)))
    }

    /// The first fence of each page of fences.
    pub(super) fn fence_pages(&self) -> Result<&[(u64, u64)], Error> {
        if let Some(firsts) = self.fence_pages.get() {
            return Ok(firsts);
        }
        let per_page = FENCES_PER_PAGE as u64;
        let firsts = (0..self.layout.entry_pages.div_ceil(per_page))
            .map(|page| self.fence(page * per_page))
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(self.fence_pages.get_or_init(|| firsts))
    }

    /// Index of the first stream entry at or after `(hash, version)`: the
    /// page of fences from the first fence of each (in memory), a binary
    /// search in that page, then in one page of entries — each page's lines
    /// fetched together before its search probes them one after another.
    pub fn seek_stream(&self, hash: u64, version: u64) -> Result<u64, Error> {
        let key = (hash, version);
        // First page whose fence is not below the key. Fence page `f - 1`
        // starts below the key and page `f` does not, so the answer is in
        // page `f - 1` after its first fence, or is page `f`'s first.
        let per_fence_page = FENCES_PER_PAGE as u64;
        let f = self.fence_pages()?.partition_point(|first| *first < key) as u64;
        let (mut low, mut high) = match f.checked_sub(1) {
            None => (0, 0),
            Some(page) => {
                annals_segment::prefetch_all(self.page(self.layout.fences_first + page)?);
                (
                    page * per_fence_page + 1,
                    (f * per_fence_page).min(self.layout.entry_pages),
                )
            }
        };
        while low < high {
            let mid = low + (high - low) / 2;
            if self.fence(mid)? < key {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        // Every entry before the page ahead of it is below the key, every
        // entry from that page on is not.
        let per_page = STREAMS_PER_PAGE as u64;
        let page = low.saturating_sub(1);
        // The search probes ~8 cache lines of the page, each depending on
        // the last: ask for all of them at once.
        if page < self.layout.entry_pages {
            annals_segment::prefetch_all(self.page(self.layout.streams_first + page)?);
        }
        let (mut low, mut high) = (page * per_page, (low * per_page).min(self.layout.streams));
        while low < high {
            let mid = low + (high - low) / 2;
            let entry = self.stream_entry(mid)?;
            if (entry.hash, entry.version) < (hash, version) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        Ok(low)
    }

    /// The position of the event with this id, if it is in this run.
    pub fn find_id(&self, id: &[u8; 16]) -> Result<Option<u64>, Error> {
        // Outside the run's id range, it is not there: time-ordered ids
        // made after the run was written skip it without a filter probe
        // (a cache miss per run and id otherwise).
        let Some(last) = self.layout.events.checked_sub(1) else {
            return Ok(None);
        };
        let (low, high) = match self.id_range.get() {
            Some(range) => *range,
            None => {
                let range = (self.id_entry(0)?.id, self.id_entry(last)?.id);
                *self.id_range.get_or_init(|| range)
            }
        };
        if id < &low || id > &high {
            return Ok(None);
        }
        let (first, blocks) = (self.layout.id_bloom_first, self.layout.id_blocks);
        if !self.bloom_has(first, blocks, id_key(id))? {
            return Ok(None);
        }
        let (mut low, mut high) = (0u64, self.layout.events);
        while low < high {
            let mid = low + (high - low) / 2;
            let entry = self.id_entry(mid)?;
            match entry.id.cmp(id) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(Some(entry.position)),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::fixtures::*;

    /// A run of several pages of fences (the in-memory first fence of each
    /// page picks one): the search equals a lower bound over the entries,
    /// for keys at, just before and just after every page boundary.
    #[test]
    fn a_seek_through_several_pages_of_fences_finds_the_lower_bound() {
        let storage = storage();
        let (start, end) = (
            0,
            SPAN * (3 * FENCES_PER_PAGE as u64 * STREAMS_PER_PAGE as u64 + 777),
        );
        let run = write(&storage, start, end);
        let (streams, _) = entries(start, end);
        assert_eq!(run.fence_pages().unwrap().len(), 4);
        let keys = streams
            .iter()
            .step_by(STREAMS_PER_PAGE)
            .flat_map(|e| {
                [
                    (e.hash, e.version),
                    (e.hash, e.version.wrapping_sub(1)),
                    (e.hash, e.version + 1),
                ]
            })
            .chain([(0, 0), (u64::MAX, u64::MAX), (streams[0].hash, 0)]);
        assert_seeks_find_lower_bounds(&run, &streams, keys);
    }

    #[test]
    fn ids_outside_a_run_s_range_are_answered_without_its_filter() {
        let storage = storage();
        let run = write(&storage, 1, 400);
        let (_, ids) = entries(1, 400);
        // (Position 0's id would be all zeros: start at 1.)
        assert!(ids[0].id > [0; 16] && ids[ids.len() - 1].id < [0xff; 16]);
        let (low, high) = (ids[0].id, ids[ids.len() - 1].id);
        let name = run.name().to_owned();
        let mut bytes = run.map.bytes().to_vec();
        let filter_page = run.layout.id_bloom_first as usize;
        drop(run);
        // Damage every page of the id filter: a lookup that reads it fails.
        let filter_pages = bloom_blocks_for(399).div_ceil(BLOCKS_PER_PAGE as u64) as usize;
        for page in filter_page..filter_page + filter_pages {
            bytes[page * PAGE_BYTES + 1] ^= 0x40;
        }
        storage
            .open(&name)
            .unwrap()
            .write_all_at(&bytes, 0)
            .unwrap();
        let run = Run::open(&storage, &name).unwrap();
        let mut below = low;
        below[15] = below[15].wrapping_sub(1);
        if below > low {
            below = [0; 16];
        }
        assert_eq!(run.find_id(&[0; 16]).unwrap(), None);
        assert_eq!(run.find_id(&[0xff; 16]).unwrap(), None);
        let mut above = high;
        above[15] = above[15].wrapping_add(1);
        if above < high {
            above = [0xff; 16];
        }
        assert_eq!(run.find_id(&below).unwrap(), None);
        assert_eq!(run.find_id(&above).unwrap(), None);
        // Inside the range the filter is read, and its damage found.
        assert!(run.find_id(&low).is_err());
        assert!(run.is_broken());
        // The bounds themselves are in the run.
        let run = write(&storage, 1, 400);
        assert_eq!(run.find_id(&low).unwrap(), Some(ids[0].position));
        assert_eq!(
            run.find_id(&high).unwrap(),
            Some(ids[ids.len() - 1].position)
        );
    }
}
