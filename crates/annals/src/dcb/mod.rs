//! Dynamic Consistency Boundary (dcb.events): read the events a decision
//! depends on by type and tag ([`Query`], [`Store::read_query`](crate::Store::read_query)),
//! decide, and append only if no event matching that query was written
//! since ([`AppendCondition`], [`Store::append_with_condition`](crate::Store::append_with_condition)).
//!
//! | file | owns |
//! |---|---|
//! | `query.rs` | [`Query`], [`QueryItem`], matching and bounds |
//! | `condition.rs` | [`AppendCondition`] and its failure |
//! | `indexed.rs` | finding matches through postings per type and tag |
//! | `lookup.rs` | finding matching positions in the log (the write path's check and `read_query`) |
//! | `read.rs` | `Store::read_query` and its visitor form |
//! | `append.rs` | `Store::append_with_condition` |
//! | `cache.rs` | the query cache: verified copies of events `read_query` read |

mod append;
pub(crate) mod cache;
mod condition;
mod indexed;
mod intersect;
pub(crate) mod lookup;
mod query;
mod read;

pub use condition::{AppendCondition, AppendRejected, ConditionFailed};
pub use query::{Query, QueryItem, QUERY_ITEMS_MAX, QUERY_ITEM_TERMS_MAX};
pub use read::QueryRead;
