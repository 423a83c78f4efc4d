//! One copy in the query cache ([`Cached`]): an event as its record was
//! verified, and the record borrowed from it again.

use annals_segment::{Record, Tags};
use bytes::Bytes;

use crate::error::{Error, Result};

/// What an entry costs besides its text and body: the entry itself and
/// the three allocations' headers.
pub(super) const ENTRY_OVERHEAD: usize = 160;

/// One event, as its record was verified: its text (the stream's name,
/// the type's, and the tag region when it is text, as nearly every one
/// is), a buffer of the rest (the tag region if it is not text, the
/// metadata, the data) and the fixed fields. Text apart, so that a hit
/// makes no `&str` by checking bytes again.
pub(super) struct Cached {
    pub(super) position: u64,
    /// [`LogReader::replacements`] loaded before the event was read.
    pub(super) replacements: u64,
    text: Box<str>,
    /// Where the stream's name and the type end in `text`.
    stream_end: usize,
    type_end: usize,
    /// Whether the tag region is the rest of `text` (else it starts
    /// `body`).
    pub(super) tags_in_text: bool,
    pub(super) body: Bytes,
    /// Where the tag region (if in `body`) ends in `body`, and the
    /// metadata's length after it.
    tags_end: usize,
    metadata_len: usize,
    stream_version: u64,
    id: [u8; 16],
    timestamp_us: u64,
    flags: u16,
}

impl Cached {
    pub(super) fn new(position: u64, replacements: u64, record: &Record<'_>) -> Cached {
        let tags_text = record.tags.to_text();
        let tags_bytes = if tags_text.is_some() {
            &[][..]
        } else {
            record.tags.as_bytes()
        };
        let mut text = String::with_capacity(
            record.stream.len() + record.event_type.len() + tags_text.map_or(0, str::len),
        );
        text.push_str(record.stream);
        text.push_str(record.event_type);
        text.push_str(tags_text.unwrap_or_default());
        let mut body =
            Vec::with_capacity(tags_bytes.len() + record.metadata.len() + record.data.len());
        body.extend_from_slice(tags_bytes);
        body.extend_from_slice(record.metadata);
        body.extend_from_slice(record.data);
        Cached {
            position,
            replacements,
            text: text.into_boxed_str(),
            stream_end: record.stream.len(),
            type_end: record.stream.len() + record.event_type.len(),
            tags_in_text: tags_text.is_some(),
            body: Bytes::from(body),
            tags_end: tags_bytes.len(),
            metadata_len: record.metadata.len(),
            stream_version: record.stream_version,
            id: record.id,
            timestamp_us: record.timestamp_us,
            flags: record.flags,
        }
    }

    /// Bytes it holds, as the budget counts them.
    pub(super) fn bytes(&self) -> usize {
        self.text.len() + self.body.len() + ENTRY_OVERHEAD
    }

    /// The record again, borrowed from the copy, whose parts were all
    /// verified when it was read.
    #[inline]
    pub(super) fn record(&self) -> Result<Record<'_>> {
        self.parts().ok_or_else(|| self.broken())
    }

    /// [`record`](Cached::record), `None` if the offsets do not fit.
    #[inline]
    fn parts(&self) -> Option<Record<'_>> {
        let (names, tags_text) = self.text.split_at_checked(self.type_end)?;
        let (stream, event_type) = names.split_at_checked(self.stream_end)?;
        let (tags, rest) = self.body.split_at_checked(self.tags_end)?;
        let (metadata, data) = rest.split_at_checked(self.metadata_len)?;
        Some(Record {
            stream,
            stream_version: self.stream_version,
            id: self.id,
            timestamp_us: self.timestamp_us,
            flags: self.flags,
            event_type,
            tags: if self.tags_in_text {
                Tags::from_checked_text(tags_text)
            } else {
                Tags::from_checked(tags)
            },
            metadata,
            data,
        })
    }

    /// An entry whose offsets do not fit its buffers (never made so).
    #[cold]
    fn broken(&self) -> Error {
        Error::Internal(format!("query cache entry at {}", self.position))
    }
}
