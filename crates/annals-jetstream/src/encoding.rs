//! How stream names, event types and metadata travel in NATS subjects and
//! headers: percent-encoding of their UTF-8 bytes (`%` and two uppercase hex
//! digits), so that any name survives and decodes back exactly.
//!
//! - A subject **token** keeps only ASCII letters, digits, `-`, `_` and `~`:
//!   never `.`, `*`, `>`, whitespace or anything else NATS gives a meaning.
//! - A **header value** keeps every printable ASCII byte but `%` (0x21 to
//!   0x7E): never a space, CR or LF, which NATS would change or trim.
//!
//! Subjects are `PREFIX.CATEGORY.STREAM`: the category (the stream name up
//! to its first `-`) as a token, or a lone `%` for a stream without one
//! (or with an empty one), then the whole stream name as a token.

use std::fmt::Write;

/// Whether a byte stands for itself in a subject token.
fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

/// Whether a byte stands for itself in a header value.
fn header_byte(b: u8) -> bool {
    (0x21..=0x7E).contains(&b) && b != b'%'
}

fn percent(bytes: &[u8], keep: fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `bytes` as a header value: printable ASCII but `%` as is, every other
/// byte as `%XX`.
pub fn encode(bytes: &[u8]) -> String {
    percent(bytes, header_byte)
}

/// `text` as one subject token: ASCII letters, digits, `-`, `_` and `~` as
/// is, every other byte as `%XX`. Empty text gives an empty string (not a
/// valid token: callers never pass one).
pub fn token_for(text: &str) -> String {
    percent(text.as_bytes(), token_byte)
}

/// The bytes `encode` or `token_for` made `text` from; `None` if `text`
/// holds a `%` not followed by two hex digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The subject an event of `stream` is published on:
/// `PREFIX.CATEGORY.STREAM` (see the module documentation).
pub fn subject_for(prefix: &str, stream: &str) -> String {
    let category = match annals::category_of(stream) {
        Some(category) if !category.is_empty() => token_for(category),
        _ => "%".to_owned(),
    };
    format!("{prefix}.{category}.{}", token_for(stream))
}

/// Whether `prefix` can start the relay's subjects: one or more non-empty
/// tokens of printable ASCII, without wildcards.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| (0x21..=0x7E).contains(&b) && b != b'*' && b != b'>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_no_token_holds_a_subject_metacharacter() {
        let names = [
            "order-1",
            "a.b",
            "*",
            ">",
            "with space",
            "tab\there",
            "ünïcødé-名前",
            "%41",
            "-lead",
            "$meta-x",
            "line\r\nbreak",
        ];
        for name in names {
            let token = token_for(name);
            assert!(
                token.bytes().all(|b| token_byte(b) || b == b'%'),
                "{name:?} -> {token}"
            );
            assert_eq!(decode(&token).as_deref(), Some(name.as_bytes()));
            let header = encode(name.as_bytes());
            assert!(
                header.bytes().all(|b| (0x21..=0x7E).contains(&b)),
                "{header}"
            );
            assert_eq!(decode(&header).as_deref(), Some(name.as_bytes()));
            let subject = subject_for("annals", name);
            assert_eq!(subject.split('.').count(), 3, "{subject}");
            assert!(
                !subject.contains(['*', '>', ' ', '\t', '\r', '\n']),
                "{subject}"
            );
        }
        assert_eq!(subject_for("p.q", "order-1"), "p.q.order.order-1");
        assert_eq!(subject_for("p", "solo"), "p.%.solo");
        assert_eq!(subject_for("p", "-x"), "p.%.-x");
        assert_eq!(encode(br#"{"a": 1}"#), "{\"a\":%201}");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for bad in ["%", "%4", "%zz", "a%g1", "%+1"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
        assert!(valid_prefix("annals") && valid_prefix("a.b-c"));
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }
}
