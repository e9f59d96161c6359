//! Multi-version concurrency control: the revisioned key-value state, with
//! etcd 3.4's revision semantics.
//!
//! Every write transaction that changes something gets the next main
//! revision; each change inside it gets a sub revision. A read names a
//! revision and sees the keys as they were then, until compaction forgets
//! the history below the compact revision. `Store` holds the revision log
//! (revision → change) and the key index (key → `KeyIndex` of revisions);
//! `WriteTxn` is the only way to change them.
//!
//! Architecture invariants:
//! - mvcc knows nothing about raft or gRPC: its inputs are keys, values and
//!   revisions, its outputs plain structs and `Error`s. The apply layer
//!   maps requests onto it; the api layer maps `Error` to gRPC. The one
//!   protobuf message it speaks is etcd's stored `mvccpb.KeyValue`
//!   (`layout`): etcd's storage format, which HashKV hashes.
//! - No I/O of its own, no clock, no randomness, no async: everything is
//!   a pure function of the sequence of calls, so replicas that apply the
//!   same entries end with the same `state_hash`. Values the on-disk
//!   backend holds durably leave memory and are read back through
//!   `ColdLog` (`cold.rs`), which the backend implements on the disk
//!   seam; a failed read is an error, never a different answer. Maps are `BTreeMap`s: no
//!   behaviour depends on hash iteration order.
//! - Revisions never go backwards: the current revision moves by exactly one
//!   per write transaction with changes, and a change is only ever appended
//!   after it (`assert!`ed in `Store::append`, `KeyIndex::put` and
//!   `WriteTxn`).
//! - Compaction only removes history no read at or after the compact
//!   revision can see.
//! - The snapshot image holds the revisions and the revision log only; the
//!   key index is derived and rebuilt on decode, and decoding rejects bytes
//!   no store could have produced instead of panicking.
//!
//! Differences from etcd, on purpose: compaction happens at once instead of
//! in the background, and leases are not attached here (the lease module
//! owns the key → lease map; `KeyValue::lease` only records the id).

mod cold;
mod errors;
mod hash_kv;
mod image;
mod key_index;
mod key_value;
pub mod layout;
mod range;
mod record;
mod revision;
mod state_hash;
mod store;
mod write_txn;

pub use cold::ColdLog;
pub use errors::Error;
pub use hash_kv::KvHash;
pub use image::{record_from_message, record_message};
pub use key_index::{Generation, KeyAt, KeyIndex};
pub use key_value::KeyValue;
pub use range::{RangeOptions, RangeResult};
pub use record::Record;
pub use revision::Revision;
pub use store::{Changes, Rebuild, Store, INITIAL_REVISION, NEVER_COMPACTED};
pub use write_txn::WriteTxn;

#[cfg(test)]
mod key_index_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod store_tests;
