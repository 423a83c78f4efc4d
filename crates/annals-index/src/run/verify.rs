//! Verifying a whole run: every page, the order of both tables, each
//! position covered once; returns the run's [`EntryDigest`].

use crate::Error;

use super::*;

impl Run {
    /// Reads and verifies every page, and checks that both tables are
    /// sorted and cover each position once. Returns the digest of its
    /// entries, to compare with one of the entries the log implies.
    pub fn verify(&self) -> Result<EntryDigest, Error> {
        let mut digest = EntryDigest::default();
        for page in 0..self.layout.pages {
            self.page(page)?;
        }
        // Two bits per position (stream table, id table): a quarter byte
        // per event of the run.
        let mut seen = vec![0u64; (self.layout.events as usize).div_ceil(32)];
        let mut mark = |position: u64, table: u8| -> Result<(), Error> {
            let k = position.wrapping_sub(self.header.start);
            let bit = 1u64 << ((k % 32) * 2 + u64::from(table));
            let slot = usize::try_from(k / 32)
                .ok()
                .filter(|_| k < self.layout.events)
                .and_then(|i| seen.get_mut(i));
            match slot {
                Some(s) if *s & bit == 0 => {
                    *s |= bit;
                    Ok(())
                }
                _ => Err(Error::corrupt(
                    &self.name,
                    0,
                    format!("position {position} indexed twice"),
                )),
            }
        };
        let out_of_order = |what: &str, i: u64| {
            Error::corrupt(&self.name, 0, format!("{what} entry {i} out of order"))
        };
        let mut last_stream: Option<StreamEntry> = None;
        for i in 0..self.layout.streams {
            let stream = self.stream_entry(i)?;
            // Sorted. (Entries of one hash may overlap in versions: two
            // streams can share a hash.)
            if last_stream.is_some_and(|l| l >= stream) {
                return Err(out_of_order("stream", i));
            }
            if i % STREAMS_PER_PAGE as u64 == 0
                && self.fence(i / STREAMS_PER_PAGE as u64)? != (stream.hash, stream.version)
            {
                return Err(Error::corrupt(
                    &self.name,
                    0,
                    format!("fence of entry {i} is wrong"),
                ));
            }
            for k in 0..u64::from(stream.count) {
                mark(stream.position + k, 0)?;
            }
            digest.add_stream(&stream);
            last_stream = Some(stream);
        }
        let mut last_id: Option<IdEntry> = None;
        for i in 0..self.layout.events {
            let id = self.id_entry(i)?;
            if last_id.is_some_and(|l| l.id >= id.id) {
                return Err(out_of_order("id", i));
            }
            mark(id.position, 1)?;
            digest.add_id(&id);
            last_id = Some(id);
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::fixtures::*;

    #[test]
    fn verify_refuses_a_position_indexed_twice_and_writing_refuses_one_outside() {
        let storage = storage();
        let (streams, ids) = entries(100, 164);
        let write_with = |stream_position: u64, start: u64| {
            let mut streams = streams.clone();
            if let Some(e) = streams.get_mut(1) {
                e.position = stream_position;
            }
            write_run(
                &storage,
                start,
                start + 64,
                0,
                || streams.iter().copied().map(Ok),
                || ids.iter().copied().map(Ok),
            )
        };
        // Entry 1 takes entry 0's position: sorted, in range, but twice.
        let run = write_with(streams[0].position, 100).unwrap();
        let error = run.verify().unwrap_err();
        assert!(error.to_string().contains("indexed twice"), "{error}");
        for outside in [5, 164, u64::MAX] {
            assert!(write_with(outside, 100).is_err(), "{outside}");
        }
    }
}
