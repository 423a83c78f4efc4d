//! `verify` and `stats` for the snapshot log: every frame of every file
//! read and checksummed again, and the in-memory map (stream → version →
//! frame) checked against what the files hold.

use std::collections::HashMap;

use super::{io, Location, SnapshotLog, State};
use crate::error::{Error, Result};
use crate::snapshot::format::{self, FILE_HEADER_BYTES, FRAME_HEADER_BYTES};

/// What [`SnapshotLog::verify`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SnapshotCheck {
    /// Frames whose checksums were verified (superseded ones included).
    pub frames: u64,
    /// Snapshots the loads can find (one per stream and version).
    pub snapshots: u64,
}

impl SnapshotLog {
    /// Reads every frame of every snapshot file (the newest up to its last
    /// valid frame), verifying each checksum, and checks that the map the
    /// loads use names exactly the newest frame of each (stream, version).
    /// Holds the log's lock: saves wait meanwhile. Damage is
    /// `Corrupt { file, offset }`; a map that differs from the files is
    /// [`Error::Internal`].
    pub(crate) fn verify(&self) -> Result<SnapshotCheck> {
        let state = self.state.lock();
        let mut frames = 0u64;
        let mut streams: Vec<(String, u64, Location)> = Vec::new();
        let newest = state.files.keys().next_back().copied();
        for (number, file) in &state.files {
            let end = if Some(*number) == newest {
                state.end
            } else {
                file.handle.len().map_err(|e| io("len", &file.name, e))?
            };
            let mut offset = FILE_HEADER_BYTES as u64;
            let mut head = [0u8; FRAME_HEADER_BYTES];
            while offset < end {
                let corrupt = |reason: &str| -> Error {
                    annals_segment::Error::corrupt(file.name.clone(), offset, reason).into()
                };
                if end - offset < FRAME_HEADER_BYTES as u64 {
                    return Err(corrupt("frame header cut short"));
                }
                file.handle
                    .read_exact_at(&mut head, offset)
                    .map_err(|e| io("read", &file.name, e))?;
                let frame_len = format::claimed_len(&head)
                    .ok_or_else(|| corrupt("implausible snapshot frame length"))?;
                if offset + frame_len as u64 > end {
                    return Err(corrupt("frame cut short"));
                }
                let mut frame = vec![0u8; frame_len];
                file.handle
                    .read_exact_at(&mut frame, offset)
                    .map_err(|e| io("read", &file.name, e))?;
                let fields = format::decode_frame(file.salt, &frame).map_err(corrupt)?;
                frames += 1;
                let location = Location {
                    file: *number,
                    offset,
                    len: frame_len as u32,
                };
                streams.push((fields.stream.to_owned(), fields.version, location));
                offset += frame_len as u64;
            }
        }
        // Later frames supersede earlier ones at the same version.
        let mut found: HashMap<(&str, u64), Location> = HashMap::new();
        for (stream, version, location) in &streams {
            found.insert((stream.as_str(), *version), *location);
        }
        check_map(&state, &found)?;
        Ok(SnapshotCheck {
            frames,
            snapshots: found.len() as u64,
        })
    }

    /// Snapshots the loads can find, and the bytes of the snapshot files.
    pub(crate) fn figures(&self) -> (u64, u64) {
        let snapshots = {
            let state = self.state.lock();
            state.streams.values().map(|v| v.len() as u64).sum()
        };
        let bytes = self
            .file_prefixes()
            .map(|files| files.iter().map(|(_, len)| len).sum())
            .unwrap_or(0);
        (snapshots, bytes)
    }
}

/// The map in `state` must name exactly the frames in `found`.
fn check_map(state: &State, found: &HashMap<(&str, u64), Location>) -> Result<()> {
    let mut mapped = 0usize;
    for (stream, versions) in &state.streams {
        for (version, location) in versions {
            mapped += 1;
            let same = found.get(&(stream.as_str(), *version)).is_some_and(|f| {
                f.file == location.file && f.offset == location.offset && f.len == location.len
            });
            if !same {
                return Err(Error::Internal(format!(
                    "the snapshot map names a frame for {stream} at version {version} \
                     that is not the newest such frame in the snapshot files"
                )));
            }
        }
    }
    if mapped != found.len() {
        return Err(Error::Internal(format!(
            "the snapshot files hold {} snapshots, the map {mapped}",
            found.len()
        )));
    }
    Ok(())
}
