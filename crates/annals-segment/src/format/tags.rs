//! An event's tags as a record stores them: a packed list of short UTF-8
//! strings ([`Tags`]), with encoding ([`encode_tags`]) and the check a
//! decoder runs before trusting them ([`check_tags`]).
//!
//! Layout of the tag region (`tags_bytes` bytes, between the event type and
//! the metadata): for each tag, its length (u8, 1..=[`TAG_BYTES_MAX`]) and
//! then its UTF-8 bytes; at most [`TAGS_MAX`] tags, no tag twice. An event
//! without tags has an empty region (`tags_bytes` = 0, what every record
//! written before tags existed holds in that field).

use super::FrameFault;
use crate::error::{Error, Result};

/// Most tags on one event.
pub const TAGS_MAX: usize = 16;
/// Longest tag, in bytes.
pub const TAG_BYTES_MAX: usize = 128;
/// Largest tag region of one record.
pub const TAGS_BYTES_MAX: usize = TAGS_MAX * (1 + TAG_BYTES_MAX);

const _: () = assert!(TAG_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(TAGS_BYTES_MAX <= u16::MAX as usize);

/// The tags of one record: its encoded tag region, already checked (by
/// [`check_tags`] on the read side, [`encode_tags`] on the write side).
#[derive(Clone, Copy)]
pub struct Tags<'a>(Region<'a>);

/// A checked tag region, held as its constructor gave it: as bytes from a
/// log read ([`Tags::from_encoded`]: each tag checked as it is read), as
/// text from a copy that checked the region once
/// ([`Tags::from_checked_text`], what [`Tags::to_text`] returns when the
/// whole region is UTF-8: every region whose tags are shorter than 128
/// bytes), so that reading a tag slices it without checking its UTF-8
/// again.
#[derive(Clone, Copy)]
enum Region<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> Region<'a> {
    fn as_bytes(self) -> &'a [u8] {
        match self {
            Region::Text(text) => text.as_bytes(),
            Region::Bytes(bytes) => bytes,
        }
    }
}

impl<'a> Tags<'a> {
    /// No tags.
    pub const EMPTY: Tags<'static> = Tags(Region::Text(""));

    /// Tags from an encoded region; `Err` if it is not a valid one.
    #[inline]
    pub fn from_encoded(bytes: &'a [u8]) -> Result<Self, FrameFault> {
        check_tags(bytes)?;
        Ok(Tags(Region::Bytes(bytes)))
    }

    /// Tags from a region that already passed
    /// [`from_encoded`](Tags::from_encoded) — a copy kept by a cache of
    /// verified records — without checking it again. Nothing unsafe
    /// follows from a region that did not: iterating it stops at the
    /// first tag that is not well formed, and skips one that is not UTF-8.
    pub fn from_checked(bytes: &'a [u8]) -> Self {
        Tags(Region::Bytes(bytes))
    }

    /// [`from_checked`](Tags::from_checked) for a region kept as text
    /// (what [`to_text`](Tags::to_text) returned): reading its tags checks
    /// no UTF-8 again. A region that did not pass `from_encoded` stops
    /// iterating at the first tag that is not well formed or does not
    /// start and end on character boundaries.
    pub fn from_checked_text(text: &'a str) -> Self {
        Tags(Region::Text(text))
    }

    /// The encoded region.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0.as_bytes()
    }

    /// The encoded region as text, if it is UTF-8 as a whole (it is
    /// unless a tag is [`TAG_BYTES_MAX`] bytes long: its length byte is
    /// not ASCII): one check of the region, for a copy whose tags are read
    /// again and again through [`from_checked_text`](Tags::from_checked_text).
    /// Its tags, each UTF-8, then start and end on character boundaries:
    /// what follows a whole character is a length byte, and one that
    /// starts a character is ASCII.
    pub fn to_text(&self) -> Option<&'a str> {
        match self.0 {
            Region::Text(text) => Some(text),
            Region::Bytes(bytes) => std::str::from_utf8(bytes).ok(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The tags, in the order they were given.
    #[inline]
    pub fn iter(&self) -> TagIter<'a> {
        TagIter(self.0)
    }

    /// Whether `tag` is one of them.
    pub fn contains(&self, tag: &str) -> bool {
        raw_tags(self.as_bytes()).any(|t| t == tag.as_bytes())
    }
}

impl Default for Tags<'_> {
    fn default() -> Self {
        Tags::EMPTY
    }
}

/// Equal when their encoded regions are.
impl PartialEq for Tags<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Tags<'_> {}

impl std::fmt::Debug for Tags<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over [`Tags`].
#[derive(Clone)]
pub struct TagIter<'a>(Region<'a>);

impl std::fmt::Debug for TagIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TagIter").field(&self.0.as_bytes()).finish()
    }
}

impl<'a> Iterator for TagIter<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let (&len, _) = self.0.as_bytes().split_first()?;
        let end = 1 + usize::from(len);
        match self.0 {
            Region::Text(text) => {
                // A tag of a text region is a slice of it: no check but the
                // character boundaries (which a checked region has).
                let (tag, rest) = (text.get(1..end)?, text.get(end..)?);
                self.0 = Region::Text(rest);
                Some(tag)
            }
            Region::Bytes(bytes) => {
                let (tag, rest) = (bytes.get(1..end)?, bytes.get(end..)?);
                self.0 = Region::Bytes(rest);
                // Checked UTF-8 when the region was accepted; a region that
                // is not (impossible through this module) ends the
                // iteration.
                std::str::from_utf8(tag).ok()
            }
        }
    }
}

/// Checks one tag given by a caller.
pub fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > TAG_BYTES_MAX {
        return Err(Error::Invalid(format!(
            "tag must be 1..={TAG_BYTES_MAX} bytes, got {}",
            tag.len()
        )));
    }
    Ok(())
}

/// Appends the tag region of `tags` to `out`: each checked (length), at
/// most [`TAGS_MAX`] of them, none twice. Nothing is appended on `Err`.
pub fn encode_tags<S: AsRef<str>>(tags: &[S], out: &mut Vec<u8>) -> Result<()> {
    if tags.len() > TAGS_MAX {
        return Err(Error::Invalid(format!(
            "an event has at most {TAGS_MAX} tags, got {}",
            tags.len()
        )));
    }
    for (i, tag) in tags.iter().enumerate() {
        let tag = tag.as_ref();
        check_tag(tag)?;
        if tags.iter().take(i).any(|t| t.as_ref() == tag) {
            return Err(Error::Invalid(format!("tag {tag:?} appears twice")));
        }
    }
    for tag in tags {
        let tag = tag.as_ref();
        out.push(tag.len() as u8);
        out.extend_from_slice(tag.as_bytes());
    }
    Ok(())
}

/// Checks a tag region read from disk: lengths in range and filling it
/// exactly, UTF-8, at most [`TAGS_MAX`] tags, none twice.
#[inline]
pub fn check_tags(bytes: &[u8]) -> Result<(), FrameFault> {
    // Most events have no tags: nothing to check, and no table of seen
    // tags to set up (a call per record while scanning otherwise).
    if bytes.is_empty() {
        return Ok(());
    }
    check_tag_list(bytes)
}

fn check_tag_list(bytes: &[u8]) -> Result<(), FrameFault> {
    if bytes.len() > TAGS_BYTES_MAX {
        return Err(FrameFault::TagsMalformed);
    }
    // When the whole region is ASCII (length bytes are below 0x80 unless a
    // tag is 128 bytes long), every tag in it is UTF-8: one word-at-a-time
    // pass instead of a byte-at-a-time validation per tag.
    let ascii = bytes.is_ascii();
    let mut rest = bytes;
    let mut count = 0usize;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 || len > TAG_BYTES_MAX || count >= TAGS_MAX {
            return Err(FrameFault::TagsMalformed);
        }
        let (tag, after) = tail
            .split_at_checked(len)
            .ok_or(FrameFault::TagsMalformed)?;
        if !(ascii || std::str::from_utf8(tag).is_ok()) {
            return Err(FrameFault::TagsMalformed);
        }
        // None twice: compared with the tags before it, in the region
        // itself (at most 16 tags; a length differs far more often than
        // the bytes of tags of one length).
        let before = bytes.len() - rest.len();
        if raw_tags(bytes.get(..before).unwrap_or_default()).any(|t| t == tag) {
            return Err(FrameFault::TagsMalformed);
        }
        count += 1;
        rest = after;
    }
    Ok(())
}

/// The tags' bytes, without a UTF-8 check (for a region already checked,
/// or while checking one whose earlier tags were).
fn raw_tags(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let (tag, after) = tail.split_at_checked(usize::from(len))?;
        rest = after;
        Some(tag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_their_region() {
        let mut out = Vec::new();
        encode_tags(&["student:42", "course:7"], &mut out).unwrap();
        let tags = Tags::from_encoded(&out).unwrap();
        assert_eq!(tags.iter().collect::<Vec<_>>(), ["student:42", "course:7"]);
        assert_eq!(tags.len(), 2);
        assert!(tags.contains("course:7") && !tags.contains("course:8"));
        assert!(Tags::EMPTY.is_empty() && Tags::EMPTY.iter().next().is_none());
    }

    #[test]
    fn bad_tags_are_refused_and_append_nothing() {
        let long = "x".repeat(TAG_BYTES_MAX + 1);
        let many: Vec<String> = (0..=TAGS_MAX).map(|i| format!("t{i}")).collect();
        for bad in [vec![""], vec![long.as_str()], vec!["a", "a"]] {
            let mut out = vec![9];
            assert!(encode_tags(&bad, &mut out).is_err(), "{bad:?}");
            assert_eq!(out, [9]);
        }
        assert!(encode_tags(&many, &mut Vec::new()).is_err());
        let max: Vec<String> = (0..TAGS_MAX).map(|i| format!("{i:0>128}")).collect();
        let mut out = Vec::new();
        encode_tags(&max, &mut out).unwrap();
        assert_eq!(out.len(), TAGS_BYTES_MAX);
        assert!(check_tags(&out).is_ok());
    }

    #[test]
    fn malformed_regions_are_faults() {
        for bad in [
            &[0u8][..],              // empty tag
            &[3, b'a', b'b'][..],    // runs past the region
            &[1, 0xff][..],          // not UTF-8
            &[1, b'a', 1, b'a'][..], // twice
        ] {
            assert_eq!(check_tags(bad), Err(FrameFault::TagsMalformed), "{bad:?}");
        }
        let mut seventeen = Vec::new();
        for i in 0..=TAGS_MAX {
            seventeen.extend_from_slice(&[2, b't', b'a' + i as u8]);
        }
        assert_eq!(check_tags(&seventeen), Err(FrameFault::TagsMalformed));
    }

    /// The check of a whole ASCII region at once, and per tag otherwise:
    /// non-ASCII tags are accepted when UTF-8 and refused when not, also
    /// beside a 128-byte tag (whose length byte is not ASCII) and after
    /// ASCII tags; a repeat is found wherever it stands, and tags of one
    /// length that differ are not repeats.
    #[test]
    fn ascii_and_non_ascii_regions_are_checked_alike() {
        let long = "x".repeat(TAG_BYTES_MAX);
        let long_bad = {
            let mut b = long.clone().into_bytes();
            b[100] = 0xC3; // a lead byte not followed by a continuation
            b
        };
        let region = |tags: &[&[u8]]| -> Vec<u8> {
            let mut out = Vec::new();
            for tag in tags {
                out.push(tag.len() as u8);
                out.extend_from_slice(tag);
            }
            out
        };
        let good: [&[&[u8]]; 5] = [
            &[b"ab", b"ac", b"ba"],
            &["café".as_bytes(), b"cafe"],
            &[b"a", "日本".as_bytes()],
            &[long.as_bytes(), b"a"],
            &[b"z", long.as_bytes(), "é".as_bytes()],
        ];
        for tags in good {
            let bytes = region(tags);
            assert_eq!(check_tags(&bytes), Ok(()), "{tags:?}");
            let read: Vec<&str> = Tags::from_encoded(&bytes).unwrap().iter().collect();
            assert_eq!(read.len(), tags.len());
        }
        let bad: [&[&[u8]]; 6] = [
            &[b"a", &[0xC3, b'a']],
            &[&[0x80], b"a"],
            &[b"a", long_bad.as_slice()],
            &[long_bad.as_slice()],
            &[b"ab", b"cd", b"ab"],
            &["é".as_bytes(), b"x", b"y", "é".as_bytes()],
        ];
        for tags in bad {
            assert_eq!(
                check_tags(&region(tags)),
                Err(FrameFault::TagsMalformed),
                "{tags:?}"
            );
        }
    }

    /// A region that is UTF-8 as a whole can still hold a tag that is not:
    /// a lead byte ending one tag, completed by the next tag's length byte
    /// (128, a continuation byte). Each tag is checked, not only the
    /// whole.
    #[test]
    fn a_tag_split_inside_a_character_is_refused_though_its_region_is_utf8() {
        let mut bytes = vec![1, 0xC3, 128];
        bytes.extend_from_slice(&[b'x'; 128]);
        assert!(std::str::from_utf8(&bytes).is_ok());
        assert_eq!(check_tags(&bytes), Err(FrameFault::TagsMalformed));
    }

    /// Tags read from a text region (every tag shorter than 128 bytes) and
    /// from a byte region (a 128-byte tag) read alike; a text region that
    /// is not well formed ends the iteration instead of yielding a wrong
    /// tag.
    #[test]
    fn text_and_byte_regions_read_the_same_tags() {
        let long = "y".repeat(TAG_BYTES_MAX);
        for tags in [
            vec!["student:42", "café", "日本"],
            vec!["a", long.as_str(), "é"],
        ] {
            let mut out = Vec::new();
            encode_tags(&tags, &mut out).unwrap();
            let read = Tags::from_encoded(&out).unwrap();
            let text = read.to_text();
            assert_eq!(text.is_some(), !tags.contains(&long.as_str()));
            assert_eq!(read.iter().collect::<Vec<_>>(), tags);
            if let Some(text) = text {
                let kept = Tags::from_checked_text(text);
                assert_eq!(kept.iter().collect::<Vec<_>>(), tags);
                assert_eq!(kept, read);
                assert!(tags.iter().all(|t| kept.contains(t)));
            }
            assert_eq!(Tags::from_checked(&out).iter().collect::<Vec<_>>(), tags);
            assert!(tags.iter().all(|t| read.contains(t)) && !read.contains("student:4"));
            assert_eq!(read.len(), tags.len());
        }
        // "é" is two bytes: a length of 1 cuts it.
        let cut = Tags::from_checked_text("\u{1}é");
        assert_eq!(cut.iter().next(), None);
        let short = Tags::from_checked_text("\u{5}ab");
        assert_eq!(short.iter().next(), None);
        let good_then_cut = Tags::from_checked_text("\u{1}a\u{1}é");
        assert_eq!(good_then_cut.iter().collect::<Vec<_>>(), ["a"]);
    }
}
