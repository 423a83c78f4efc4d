//! Where cqrs-es' identities land in Annals: an aggregate instance is the
//! stream `{aggregate_type}-{aggregate_id}` (so an aggregate type is an
//! Annals category), and its sequence `n` (from 1) is stream version `n - 1`
//! (from 0).

use annals::ExpectedVersion;

use crate::error::Error;

/// Checks that `aggregate_type` can be an Annals category: not empty, no
/// `-` (the category is the stream name up to its first `-`, so a `-` in
/// the type would put its streams in another category, shared with other
/// types), not starting with `$` (the store's own streams).
pub fn check_aggregate_type(aggregate_type: &str) -> Result<(), Error> {
    let reason = if aggregate_type.is_empty() {
        "it is empty"
    } else if aggregate_type.contains('-') {
        "it holds a '-', which ends an Annals category"
    } else if aggregate_type.starts_with('$') {
        "types starting with '$' name the store's own streams"
    } else {
        return Ok(());
    };
    Err(Error::AggregateType {
        aggregate_type: aggregate_type.to_owned(),
        reason,
    })
}

/// The stream holding one aggregate instance's events:
/// `{aggregate_type}-{aggregate_id}`. The id may hold `-` itself (a UUID
/// does): only the first `-` ends the category.
pub fn stream_name(aggregate_type: &str, aggregate_id: &str) -> Result<String, Error> {
    check_aggregate_type(aggregate_type)?;
    Ok(format!("{aggregate_type}-{aggregate_id}"))
}

/// The aggregate id of a stream of `aggregate_type`'s category, `None` for
/// a stream of another category.
pub fn aggregate_id_of<'a>(aggregate_type: &str, stream: &'a str) -> Option<&'a str> {
    stream
        .strip_prefix(aggregate_type)
        .and_then(|rest| rest.strip_prefix('-'))
}

/// The stream version of sequence `sequence` (cqrs-es counts from 1,
/// Annals from 0); `None` for sequence 0, which cqrs-es never assigns.
pub fn version_of(sequence: usize) -> Option<u64> {
    u64::try_from(sequence).ok()?.checked_sub(1)
}

/// The sequence of stream version `version`; `None` if it does not fit a
/// `usize` (only on targets narrower than 64 bits).
pub fn sequence_of(version: u64) -> Option<usize> {
    usize::try_from(version.checked_add(1)?).ok()
}

/// What an append of events starting at `first_sequence` expects of the
/// stream: no stream for sequence 1, else the version of the sequence
/// before. `None` for sequence 0.
pub fn expected_before(first_sequence: usize) -> Option<ExpectedVersion> {
    match version_of(first_sequence)? {
        0 => Some(ExpectedVersion::NoStream),
        version => Some(ExpectedVersion::Exact(version - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_map_to_versions_one_below() {
        assert_eq!(version_of(0), None);
        assert_eq!(version_of(1), Some(0));
        assert_eq!(version_of(7), Some(6));
        assert_eq!(sequence_of(0), Some(1));
        assert_eq!(sequence_of(6), Some(7));
        assert_eq!(sequence_of(u64::MAX), None);
        for sequence in 1..100 {
            assert_eq!(version_of(sequence).and_then(sequence_of), Some(sequence));
        }
        assert_eq!(expected_before(0), None);
        assert_eq!(expected_before(1), Some(ExpectedVersion::NoStream));
        assert_eq!(expected_before(2), Some(ExpectedVersion::Exact(0)));
        assert_eq!(expected_before(10), Some(ExpectedVersion::Exact(8)));
    }

    #[test]
    fn a_type_that_is_not_a_category_is_refused() {
        for bad in ["", "bank-account", "-", "$system", "a-"] {
            match stream_name(bad, "1") {
                Err(Error::AggregateType { aggregate_type, .. }) => {
                    assert_eq!(aggregate_type, bad)
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let stream = stream_name("BankAccount", "0b6e-42").unwrap();
        assert_eq!(stream, "BankAccount-0b6e-42");
        assert_eq!(annals::category_of(&stream), Some("BankAccount"));
        assert_eq!(aggregate_id_of("BankAccount", &stream), Some("0b6e-42"));
        assert_eq!(aggregate_id_of("Bank", &stream), None);
        assert_eq!(aggregate_id_of("BankAccount", "BankAccount"), None);
    }
}
