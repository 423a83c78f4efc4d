//! Queries of the Dynamic Consistency Boundary (dcb.events): which events a
//! decision depends on, by event type and tag. A [`Query`] is a list of
//! [`QueryItem`]s combined with OR; an item matches an event whose type is
//! one of the item's types (any type if it names none) and whose tags
//! include every one of the item's tags.

use annals_segment::format::{check_tag, Tags};

use crate::error::{Error, Result};
use crate::event::EventRef;

/// Most items in one query.
pub const QUERY_ITEMS_MAX: usize = 64;
/// Most types, and most tags, in one query item.
pub const QUERY_ITEM_TERMS_MAX: usize = 64;

/// One alternative of a [`Query`]: a type in `types` (any type if empty)
/// and every tag of `tags`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryItem {
    /// Event types, one of which the event must have; empty for any.
    pub types: Vec<String>,
    /// Tags the event must all carry.
    pub tags: Vec<String>,
}

impl QueryItem {
    /// An item matching every event (narrow it with the builders).
    pub fn new() -> Self {
        QueryItem::default()
    }

    /// Events of these types.
    pub fn types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Events carrying all of these tags.
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Whether an event of `event_type` with `tags` matches.
    pub fn matches(&self, event_type: &str, tags: Tags<'_>) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
            && self.tags.iter().all(|t| has_tag(tags.as_bytes(), t))
    }

    /// [`matches`](QueryItem::matches) on an encoded tag region
    /// (`docs/FORMAT.md`) the caller has checked.
    fn matches_encoded(&self, event_type: &str, tags: &[u8]) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
            && self.tags.iter().all(|t| has_tag(tags, t))
    }

    /// Whether it matches every event.
    pub fn is_all(&self) -> bool {
        self.types.is_empty() && self.tags.is_empty()
    }
}

/// Whether `tags` holds `tag`, compared as bytes in the encoded region
/// (`docs/FORMAT.md`: a length byte, then the tag): what
/// [`Tags::contains`] answers, without checking each tag's UTF-8 again on
/// every event a query confirms (the region was checked when its record
/// was decoded).
#[inline]
fn has_tag(tags: &[u8], tag: &str) -> bool {
    let (mut rest, tag) = (tags, tag.as_bytes());
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        // The length first: most tags differ in it, and those are not
        // compared byte by byte.
        if len == tag.len() && tail.get(..len) == Some(tag) {
            return true;
        }
        let Some(after) = tail.get(len..) else {
            return false;
        };
        rest = after;
    }
    false
}

/// Items combined with OR. A query with no items matches nothing; use
/// [`Query::all`] for every event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// The alternatives.
    pub items: Vec<QueryItem>,
}

impl Query {
    /// A query of these items.
    pub fn new(items: impl IntoIterator<Item = QueryItem>) -> Self {
        Query {
            items: items.into_iter().collect(),
        }
    }

    /// A query matching every event.
    pub fn all() -> Self {
        Query::new([QueryItem::new()])
    }

    /// Whether an event of `event_type` with `tags` matches.
    pub fn matches(&self, event_type: &str, tags: Tags<'_>) -> bool {
        self.items.iter().any(|item| item.matches(event_type, tags))
    }

    /// Whether an event of `event_type` whose encoded tag region is `tags`
    /// (one already checked: the write path's own) matches.
    pub(crate) fn matches_encoded(&self, event_type: &str, tags: &[u8]) -> bool {
        self.items
            .iter()
            .any(|item| item.matches_encoded(event_type, tags))
    }

    /// Whether `event` matches.
    pub fn matches_event(&self, event: &EventRef<'_>) -> bool {
        self.matches(event.event_type, event.tags)
    }

    /// Checks the query's bounds: at most [`QUERY_ITEMS_MAX`] items, each
    /// with at most [`QUERY_ITEM_TERMS_MAX`] types and tags, every type
    /// 1..=[`EVENT_TYPE_BYTES_MAX`](crate::EVENT_TYPE_BYTES_MAX) bytes and
    /// every tag a valid one.
    pub fn validate(&self) -> Result<()> {
        if self.items.len() > QUERY_ITEMS_MAX {
            return Err(Error::InvalidInput(format!(
                "a query has at most {QUERY_ITEMS_MAX} items, got {}",
                self.items.len()
            )));
        }
        for item in &self.items {
            if item.types.len() > QUERY_ITEM_TERMS_MAX || item.tags.len() > QUERY_ITEM_TERMS_MAX {
                return Err(Error::InvalidInput(format!(
                    "a query item has at most {QUERY_ITEM_TERMS_MAX} types and {QUERY_ITEM_TERMS_MAX} tags"
                )));
            }
            for event_type in &item.types {
                if event_type.is_empty() || event_type.len() > crate::EVENT_TYPE_BYTES_MAX {
                    return Err(Error::InvalidInput(format!(
                        "query type must be 1..={} bytes, got {}",
                        crate::EVENT_TYPE_BYTES_MAX,
                        event_type.len()
                    )));
                }
            }
            for tag in &item.tags {
                check_tag(tag).map_err(|e| Error::InvalidInput(format!("query {e}")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        annals_segment::format::encode_tags(list, &mut out).unwrap();
        out
    }

    #[test]
    fn items_are_or_types_are_or_tags_are_and() {
        let region = tags(&["student:1", "course:7"]);
        let t = Tags::from_encoded(&region).unwrap();
        let q = Query::new([
            QueryItem::new().types(["A", "B"]).tags(["course:7"]),
            QueryItem::new().tags(["student:2"]),
        ]);
        assert!(q.matches("A", t) && q.matches("B", t));
        assert!(
            !q.matches("C", t),
            "type not in the first item, tag not in the second"
        );
        let both = QueryItem::new().tags(["student:1", "course:8"]);
        assert!(!both.matches("A", t), "all tags needed");
        assert!(Query::all().matches("Z", Tags::EMPTY));
        assert!(!Query::default().matches("Z", t), "no items: nothing");
        assert!(!QueryItem::new().tags(["x"]).matches("Z", Tags::EMPTY));
        for tag in [
            "student:1",
            "course:7",
            "course:",
            "course:77",
            "student:",
            "x",
        ] {
            assert_eq!(has_tag(t.as_bytes(), tag), t.contains(tag), "{tag}");
        }
    }

    #[test]
    fn bounds_are_checked() {
        assert!(Query::all().validate().is_ok());
        let bad = [
            Query::new([QueryItem::new().tags([""])]),
            Query::new([QueryItem::new().types([""])]),
            Query::new([QueryItem::new().tags(["x".repeat(129)])]),
            Query::new((0..=QUERY_ITEMS_MAX).map(|_| QueryItem::new())),
            Query::new([QueryItem::new().tags((0..=QUERY_ITEM_TERMS_MAX).map(|i| i.to_string()))]),
        ];
        for query in bad {
            assert!(matches!(query.validate(), Err(Error::InvalidInput(_))));
        }
    }
}
