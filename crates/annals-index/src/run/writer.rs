//! Writing a run: [`write_run`] checks the entries, lays out the file and
//! writes it durably (temporary file, `fsync`, rename).

use std::sync::Arc;

use annals_segment::storage::Storage;

use crate::Error;

use super::*;

/// Writes the run `[start, end)` from sorted entries (stream entries that
/// cover each position once, one id entry per position), durably: a
/// temporary file, `fsync`, rename, directory `fsync`. Returns the opened
/// run. `streams` and `ids` must yield the same entries each time they are
/// called: the table sizes are counted and the Bloom filters built in
/// bounded passes over them, so writing a run of any size holds only a few
/// MiB.
pub fn write_run<S, I>(
    storage: &Arc<dyn Storage>,
    start: u64,
    end: u64,
    new_streams: u64,
    streams: impl Fn() -> S,
    ids: impl Fn() -> I,
) -> Result<Run, Error>
where
    S: Iterator<Item = Result<StreamEntry, Error>>,
    I: Iterator<Item = Result<IdEntry, Error>>,
{
    if end > POSITION_LIMIT {
        return Err(Error::invalid(format!(
            "index runs hold positions below {POSITION_LIMIT}, not {start}..{end}"
        )));
    }
    let name = run_file_name(start, end);
    let temp = format!("{name}.tmp");
    match storage.remove(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", temp, e)),
    }
    let wrong_count = |what: &str, count: u64| {
        Error::invalid(format!(
            "index run {start}..{end} given {count} {what} for {} positions",
            end - start
        ))
    };
    // The stream table's size and widest entry, before anything is written.
    let (mut stream_entries, mut covered, mut max_count) = (0u64, 0u64, 0u64);
    for entry in streams() {
        let entry = entry?;
        let past = entry.position.checked_add(u64::from(entry.count));
        if entry.count == 0
            || entry.count > MAX_ENTRY_EVENTS
            || entry.position < start
            || past.is_none_or(|past| past > end)
        {
            return Err(wrong_count(
                "stream entries, one misplaced,",
                stream_entries,
            ));
        }
        stream_entries += 1;
        covered += u64::from(entry.count);
        max_count = max_count.max(u64::from(entry.count));
    }
    if covered != end - start {
        return Err(wrong_count("stream entries' events", covered));
    }
    let file = storage
        .create(&temp)
        .map_err(|e| Error::io("create", temp.clone(), e))?;
    let layout = Layout::new(end - start, stream_entries);
    let salt = annals_segment::random_u64();
    let section = |first_page| SectionWriter::new(&file, &temp, salt, first_page);
    let header = Header {
        start,
        end,
        salt,
        new_streams,
        streams: stream_entries,
        max_count,
    };
    let mut header_page = section(0);
    header_page.push_payload(&header.encode())?;
    header_page.finish()?;
    let (mut entries, mut fences) = (section(layout.streams_first), section(layout.fences_first));
    let mut count = 0u64;
    for entry in streams() {
        let entry = entry?;
        if entries.page.is_empty() {
            let mut fence = [0u8; FENCE_BYTES];
            fence[..8].copy_from_slice(&entry.hash.to_le_bytes());
            fence[8..].copy_from_slice(&entry.version.to_le_bytes());
            fences.push_item(&fence, FENCES_PER_PAGE)?;
        }
        entries.push_item(&encode_stream(entry), STREAMS_PER_PAGE)?;
        count += 1;
    }
    entries.finish()?;
    fences.finish()?;
    if count != layout.streams {
        return Err(wrong_count("stream entries (a second pass)", count));
    }
    let mut entries = section(layout.ids_first);
    count = 0;
    for entry in ids() {
        let entry = entry?;
        if !(start..end).contains(&entry.position) {
            return Err(wrong_count("id entries, one misplaced,", count));
        }
        entries.push_item(&encode_id(entry), IDS_PER_PAGE)?;
        count += 1;
    }
    entries.finish()?;
    if count != layout.events {
        return Err(wrong_count("id entries", count));
    }
    let pass = BLOOM_PASS_BLOCKS;
    write_bloom(
        &mut section(layout.stream_bloom_first),
        layout.stream_blocks,
        pass,
        || streams().map(|e| e.map(|e| e.hash)),
    )?;
    write_bloom(
        &mut section(layout.id_bloom_first),
        layout.id_blocks,
        pass,
        || ids().map(|e| e.map(|e| id_key(&e.id))),
    )?;
    file.sync_all()
        .map_err(|e| Error::io("fsync", temp.clone(), e))?;
    drop(file);
    storage
        .rename(&temp, &name)
        .map_err(|e| Error::io("rename", temp.clone(), e))?;
    storage
        .sync_dir()
        .map_err(|e| Error::io("fsync dir", storage.describe(), e))?;
    Run::open(storage, &name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::fixtures::*;

    #[test]
    fn the_widest_entries_at_the_highest_positions_round_trip_and_wider_are_refused() {
        let storage = storage();
        let max = u64::from(MAX_ENTRY_EVENTS);
        let (start, end) = (POSITION_LIMIT - max - 1, POSITION_LIMIT);
        let wide = StreamEntry {
            hash: 7,
            version: u64::MAX - max,
            position: start,
            tombstone: true,
            offset: EventOffset::new(u32::MAX),
            count: MAX_ENTRY_EVENTS,
        };
        let one = StreamEntry {
            hash: 8,
            version: 0,
            position: end - 1,
            tombstone: false,
            offset: EventOffset::new(64),
            count: 1,
        };
        let ids: Vec<IdEntry> = (start..end)
            .map(|p| IdEntry {
                id: mix(p).to_le_bytes().repeat(2).try_into().unwrap(),
                position: p,
            })
            .collect();
        let mut ids = ids;
        ids.sort_unstable();
        let write = |streams: &[StreamEntry], start: u64, end: u64| {
            write_run(
                &storage,
                start,
                end,
                1,
                || streams.iter().copied().map(Ok),
                || ids.iter().copied().map(Ok),
            )
        };
        let run = write(&[wide, one], start, end).unwrap();
        run.verify().unwrap();
        assert_eq!(run.stream_entry(0).unwrap(), wide);
        assert_eq!(run.stream_entry(1).unwrap(), one);
        assert_eq!(run.max_count(), max);
        // One event wider, or a run past the position limit: refused.
        let wider = StreamEntry {
            count: MAX_ENTRY_EVENTS + 1,
            ..wide
        };
        assert!(write(&[wider], start, end).is_err());
        let shifted = [
            StreamEntry {
                position: start + 1,
                ..wide
            },
            StreamEntry {
                position: end,
                ..one
            },
        ];
        assert!(write(&shifted, start + 1, end + 1).is_err());
    }
}
