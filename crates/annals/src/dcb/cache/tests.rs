//! The query cache's unit tests: its budget, stale entries, copies waiting
//! while the table is read, and copies read back.

use annals_segment::Tags;

use super::*;

fn record(data: &[u8]) -> Record<'_> {
    Record {
        stream: "s-1",
        stream_version: 3,
        id: [7; 16],
        timestamp_us: 11,
        flags: 0,
        event_type: "Changed",
        tags: Tags::EMPTY,
        metadata: b"m",
        data,
    }
}

/// Reads `record` twice (the second read copies it) and keeps the copy.
fn admit(cache: &QueryCache, position: u64, replacements: u64, record: &Record<'_>) {
    assert!(cache.admit(position, replacements, record).is_none());
    let copy = cache.admit(position, replacements, record);
    cache.keep(copy.into_iter().collect());
}

fn held(cache: &QueryCache, position: u64, replacements: u64) -> bool {
    let table = cache.table.read();
    table
        .get(cache.slot_of(position), position, replacements)
        .is_some()
}

fn used(cache: &QueryCache) -> usize {
    cache.table.read().used
}

#[test]
fn the_entries_stay_within_the_budget_and_a_large_event_is_not_kept() {
    // 2,048 slots, room for 251 entries of 4,171 bytes.
    let budget = 1 << 20;
    let cache = QueryCache::new(budget).unwrap();
    let data = [0x5a; 4000];
    for position in 0..10_000 {
        admit(&cache, position, 0, &record(&data));
        assert!(used(&cache) <= budget);
    }
    let kept = (0..10_000).filter(|&p| held(&cache, p, 0)).count();
    assert!((200..=251).contains(&kept), "{kept} kept");
    let large = vec![1u8; budget / 64];
    admit(&cache, 20_000, 0, &record(&large));
    assert!(!held(&cache, 20_000, 0));
}

#[test]
fn an_entry_read_before_a_replacement_is_not_served_after_it() {
    let cache = QueryCache::new(1 << 20).unwrap();
    admit(&cache, 42, 5, &record(b"payload"));
    {
        let table = cache.table.read();
        let hit = table.get(cache.slot_of(42), 42, 5).unwrap();
        let again = hit.record().unwrap();
        assert_eq!((again.stream, again.event_type), ("s-1", "Changed"));
        assert_eq!((again.metadata, again.data), (&b"m"[..], &b"payload"[..]));
        assert_eq!(
            (again.stream_version, again.id, again.timestamp_us),
            (3, [7; 16], 11)
        );
    }
    assert!(!held(&cache, 42, 6));
    assert!(!held(&cache, 43, 5));
}

/// A copy reads back every part of its record: tags kept as text (the
/// names' buffer) and as bytes (a 128-byte tag: the region is not
/// UTF-8 as a whole), non-ASCII names and tags, empty parts.
#[test]
fn a_copy_reads_back_its_record_whether_its_tags_are_text_or_bytes() {
    let cache = QueryCache::new(1 << 20).unwrap();
    let long = "t".repeat(annals_segment::format::TAG_BYTES_MAX);
    let regions: Vec<Vec<u8>> = [
        vec![],
        vec!["student:42", "café"],
        vec!["a", long.as_str(), "日本"],
    ]
    .iter()
    .map(|tags| {
        let mut region = Vec::new();
        annals_segment::format::encode_tags(tags, &mut region).unwrap();
        region
    })
    .collect();
    for (position, region) in (100u64..).zip(&regions) {
        for (stream, metadata, data) in [("s-ü", &b""[..], &b""[..]), ("s", b"m", b"d")] {
            let original = Record {
                stream,
                event_type: "Typé",
                tags: Tags::from_encoded(region).unwrap(),
                metadata,
                data,
                ..record(b"")
            };
            let position = position * 2 + u64::from(metadata.is_empty());
            admit(&cache, position, 0, &original);
            let table = cache.table.read();
            let hit = table.get(cache.slot_of(position), position, 0).unwrap();
            let again = hit.record().unwrap();
            assert_eq!(again, original, "at {position}");
            assert_eq!(
                again.tags.iter().collect::<Vec<_>>(),
                original.tags.iter().collect::<Vec<_>>()
            );
            assert_eq!(hit.tags_in_text, original.tags.to_text().is_some());
        }
    }
}

#[test]
fn forgetting_stale_entries_keeps_the_current_ones_and_frees_the_rest() {
    let cache = QueryCache::new(1 << 20).unwrap();
    for position in 0..100 {
        admit(&cache, position, position % 2, &record(b"payload"));
    }
    let before = used(&cache);
    cache.forget_stale(1);
    assert_eq!((0..100).filter(|&p| held(&cache, p, 1)).count(), 50);
    assert!((0..100).all(|p| !held(&cache, p, 0)));
    assert_eq!(used(&cache) * 2, before);
}

#[test]
fn copies_made_while_another_read_holds_the_table_wait_for_the_next() {
    let cache = QueryCache::new(1 << 20).unwrap();
    assert!(cache.admit(7, 0, &record(b"payload")).is_none());
    let copy = cache.admit(7, 0, &record(b"payload")).unwrap();
    {
        let _reading = cache.table.read();
        cache.keep(vec![copy]);
    }
    assert!(!held(&cache, 7, 0), "kept while the table was read");
    assert_eq!(cache.pending.lock().copies.len(), 1);
    cache.keep(Vec::new());
    assert_eq!(cache.pending.lock().bytes, 0);
    assert!(held(&cache, 7, 0), "the waiting copy is kept next time");
    // A stale-drop asked for while the table is read happens next time.
    {
        let _reading = cache.table.read();
        cache.forget_stale(1);
    }
    assert!(held(&cache, 7, 0));
    cache.keep(Vec::new());
    assert!(!held(&cache, 7, 0));
    assert_eq!(used(&cache), 0);
}

#[test]
fn copies_waiting_for_the_table_stay_within_an_eighth_of_the_budget() {
    let budget = 1 << 20;
    let cache = QueryCache::new(budget).unwrap();
    let data = [0x5a; 4000];
    let _reading = cache.table.read();
    for position in 0..1000 {
        assert!(cache.admit(position, 0, &record(&data)).is_none());
        let copy = cache.admit(position, 0, &record(&data));
        cache.keep(copy.into_iter().collect());
    }
    let pending = cache.pending.lock();
    assert!(pending.bytes <= budget / 8, "{} bytes wait", pending.bytes);
    assert_eq!(pending.copies.len(), budget / 8 / 4171);
}
