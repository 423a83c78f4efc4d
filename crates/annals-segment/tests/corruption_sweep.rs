//! Property: damage to a sealed segment's data — a flipped bit, a zeroed
//! 4 KiB sector, a 512-byte sector copied over another — is detected as
//! `Corrupt` every time, by open (when the frame index is gone and the
//! segment is rescanned) or by `verify` (when it is trusted through its
//! frame index); never silently accepted. Method: seeded damage to copies of
//! one log in the memory backend; the counts are printed.

mod common;

use std::sync::Arc;

use annals_segment::storage::{CrashMode, MemStorage};
use annals_segment::{frame_index_file_name, Error, LogOptions};
use common::*;

const SEGMENT_BYTES: u64 = 16 << 10;

#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipBit,
    ZeroSector,
    MisplacedSector,
}

fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn every_damage_to_sealed_data_is_detected() {
    // One log of many sealed segments.
    let mem = MemStorage::new();
    let (mut writer, reader, _) = annals_segment::open(
        Arc::new(mem.handle()),
        LogOptions {
            segment_bytes: SEGMENT_BYTES,
            ..Default::default()
        },
    )
    .unwrap();
    for k in 0..400u64 {
        let batch: Vec<Owned> = (0..1 + k % 3)
            .map(|i| event(k * 3 + i, (k % 150) as usize))
            .collect();
        append_sync(&mut writer, &batch);
    }
    let segments = reader.segments();
    let sealed = &segments[..segments.len() - 1];
    // Where each sealed segment's frames end: from a clean scan.
    let data_end = |name: &str| -> usize {
        let bytes = mem.read_file(name).unwrap();
        bytes.iter().rposition(|b| *b != 0).map_or(64, |i| i + 1)
    };
    drop((writer, reader));

    let (mut injected, mut detected_by_open, mut detected_by_verify) = (0u64, 0u64, 0u64);
    let mut seed = 0x5eed_u64;
    for round in 0..600u64 {
        let damage =
            [Damage::FlipBit, Damage::ZeroSector, Damage::MisplacedSector][round as usize % 3];
        let target = &sealed[next(&mut seed) as usize % sealed.len()];
        let end = data_end(&target.name);
        let image = mem.crash_image(round, CrashMode::DropUnsynced);
        let mut bytes = image.read_file(&target.name).unwrap();
        let original = bytes.clone();
        match damage {
            Damage::FlipBit => {
                let at = 64 + next(&mut seed) as usize % (end - 64);
                bytes[at] ^= 1 << (next(&mut seed) % 8);
            }
            Damage::ZeroSector => {
                let sector = (64 + next(&mut seed) as usize % (end - 64)) / 4096 * 4096;
                let len = bytes.len();
                bytes[sector..(sector + 4096).min(len)].fill(0);
            }
            Damage::MisplacedSector => {
                let sectors = end.div_ceil(512);
                let from = next(&mut seed) as usize % sectors * 512;
                let to = next(&mut seed) as usize % sectors * 512;
                let copy = original[from..from + 512].to_vec();
                bytes[to..to + 512].copy_from_slice(&copy);
            }
        }
        if bytes == original {
            continue; // e.g. zeroing a sector that held only zeros, or copying a sector onto itself
        }
        injected += 1;
        image.write_file(&target.name, &bytes);
        let rescan = round % 2 == 0;
        if rescan {
            // No frame index: open must rescan the segment and refuse it.
            image.write_file(&frame_index_file_name(target.position_first), b"");
        }
        match annals_segment::open(
            Arc::new(image),
            LogOptions {
                segment_bytes: SEGMENT_BYTES,
                ..Default::default()
            },
        ) {
            Err(Error::Corrupt { file, .. }) => {
                assert_eq!(file, target.name, "round {round}: blamed the wrong file");
                detected_by_open += 1;
            }
            Err(other) => panic!("round {round} ({damage:?}): {other}"),
            Ok((_, reader, _)) => {
                assert!(
                    !rescan,
                    "round {round} ({damage:?}): a rescan accepted damaged data"
                );
                match reader.verify() {
                    Err(Error::Corrupt { file, .. }) => {
                        assert_eq!(file, target.name, "round {round}: blamed the wrong file");
                        detected_by_verify += 1;
                    }
                    other => panic!("round {round} ({damage:?}): damage not detected: {other:?}"),
                }
            }
        }
    }
    eprintln!(
        "corruptions injected {injected}, detected {} (by open {detected_by_open}, by verify {detected_by_verify}), silent 0",
        detected_by_open + detected_by_verify
    );
    assert!(injected > 500);
    assert_eq!(detected_by_open + detected_by_verify, injected);
}
