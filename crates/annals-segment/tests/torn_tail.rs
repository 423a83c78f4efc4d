//! Property: after a torn or garbage tail in the active segment, reopen keeps
//! exactly the longest valid prefix — for every truncation length across the
//! last two frames, and for tails of zeros, 0xFF, random bytes, a frame from
//! another segment and a stale frame of the same segment. Method: real files,
//! damaged byte by byte, reopened each time.

mod common;

use annals_segment::format::{self, align_up, SEGMENT_HEADER_BYTES};
use annals_segment::{segment_file_name, Record};
use common::*;

const SEGMENT_BYTES: u64 = 64 << 10;

struct Fixture {
    _dir: tempfile::TempDir,
    bytes: Vec<u8>,
    /// (offset, unpadded size, event count) of each frame.
    frames: Vec<(u64, u64, u64)>,
    events: Vec<Owned>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = open_fs(dir.path(), SEGMENT_BYTES).unwrap();
    let mut frames = Vec::new();
    let mut events = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    for k in 0..8u64 {
        let batch: Vec<Owned> = (0..1 + k % 3)
            .map(|i| event(events.len() as u64 + i, 20 + 7 * k as usize))
            .collect();
        let records: Vec<Record<'_>> = batch.iter().map(Owned::record).collect();
        let size = format::frame_bytes(&records).unwrap() as u64;
        append_sync(&mut writer, &batch);
        frames.push((offset, size, batch.len() as u64));
        offset += align_up(size);
        events.extend(batch);
    }
    drop(writer);
    let bytes = std::fs::read(dir.path().join(segment_file_name(0))).unwrap();
    Fixture {
        _dir: dir,
        bytes,
        frames,
        events,
    }
}

/// Reopens a copy of the segment whose bytes were damaged by `damage`;
/// returns the events that survived.
fn reopen_damaged(
    bytes: &[u8],
    damage: impl FnOnce(&mut Vec<u8>),
) -> annals_segment::Result<Vec<Owned>> {
    let dir = tempfile::tempdir().unwrap();
    let mut copy = bytes.to_vec();
    damage(&mut copy);
    std::fs::write(dir.path().join(segment_file_name(0)), &copy).unwrap();
    let (_, reader) = open_fs(dir.path(), SEGMENT_BYTES)?;
    let survivors = read_all(&reader);
    // Recovery is idempotent: a second open finds the same log.
    drop(reader);
    let (_, again) = open_fs(dir.path(), SEGMENT_BYTES)?;
    assert_eq!(read_all(&again), survivors);
    Ok(survivors)
}

fn expected_survivors(f: &Fixture, cut: u64) -> usize {
    f.frames
        .iter()
        .take_while(|(offset, size, _)| offset + size <= cut)
        .map(|(_, _, n)| *n as usize)
        .sum()
}

#[test]
fn every_truncation_across_the_last_two_frames_keeps_the_longest_valid_prefix() {
    let f = fixture();
    let (start, _, _) = f.frames[f.frames.len() - 2];
    let (last, size, _) = f.frames[f.frames.len() - 1];
    let end = last + align_up(size);
    let mut checked = 0;
    for cut in start..=end {
        let want = expected_survivors(&f, cut);
        let zeroed = reopen_damaged(&f.bytes, |b| b[cut as usize..].fill(0)).unwrap();
        assert_eq!(zeroed, f.events[..want], "zeroed from {cut}");
        let truncated = reopen_damaged(&f.bytes, |b| b.truncate(cut as usize)).unwrap();
        assert_eq!(truncated, f.events[..want], "truncated at {cut}");
        checked += 2;
    }
    assert!(checked > 200, "{checked} cuts");
}

#[test]
fn garbage_tails_are_cut_and_the_log_continues() {
    let f = fixture();
    let (last, size, _) = *f.frames.last().unwrap();
    let end = (last + align_up(size)) as usize;
    // A frame from another segment at the same offset: same content, other salt.
    let other = fixture();
    let foreign = other.bytes[end - align_up(size) as usize..end].to_vec();
    // A stale frame of this very segment, copied to the tail.
    let (o3, s3, _) = f.frames[3];
    let stale = f.bytes[o3 as usize..(o3 + align_up(s3)) as usize].to_vec();
    let mut seed = 0x1234_5678_u64;
    let random: Vec<u8> = (0..3000)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect();
    let tails: Vec<(&str, Vec<u8>)> = vec![
        ("zeros", vec![0; 3000]),
        ("0xFF", vec![0xFF; 3000]),
        ("random", random),
        ("foreign frame", foreign.clone()),
        (
            "foreign frame, one frame later",
            [vec![0; 8], foreign].concat(),
        ),
        ("stale frame", stale),
    ];
    for (name, tail) in tails {
        let survivors = reopen_damaged(&f.bytes, |b| {
            b[end..end + tail.len()].copy_from_slice(&tail)
        })
        .unwrap();
        assert_eq!(survivors, f.events, "tail of {name}");
    }
}

#[test]
fn appends_after_a_truncated_tail_are_durable() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (last, _, _) = *f.frames.last().unwrap();
    let mut copy = f.bytes.clone();
    copy[last as usize + 60..].fill(0xFF);
    std::fs::write(dir.path().join(segment_file_name(0)), &copy).unwrap();
    let (mut writer, reader) = open_fs(dir.path(), SEGMENT_BYTES).unwrap();
    let kept = f.events.len() - f.frames.last().unwrap().2 as usize;
    assert_eq!(reader.position_end(), kept as u64);
    let extra = vec![event(1000, 10), event(1001, 10)];
    append_sync(&mut writer, &extra);
    drop((writer, reader));
    let (_, reader) = open_fs(dir.path(), SEGMENT_BYTES).unwrap();
    let all = read_all(&reader);
    assert_eq!(all[..kept], f.events[..kept]);
    assert_eq!(all[kept..], extra[..]);
}
