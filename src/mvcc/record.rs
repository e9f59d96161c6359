//! `Record`: what the revision log stores at one revision.

use std::sync::Arc;

use super::KeyValue;

/// The change made at one revision: a put of a full `KeyValue`, or a
/// tombstone, which stores only the key (like etcd's backend, where the
/// tombstone mark lives in the revision key).
///
/// A put's key-value is shared: the revision log, the journal of changes
/// the backend has yet to write and the write transaction's own list of
/// changes hold the same one, rather than three copies of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Put(Arc<KeyValue>),
    Tombstone { key: Vec<u8> },
}

impl Record {
    pub fn put(key_value: KeyValue) -> Record {
        Record::Put(Arc::new(key_value))
    }

    pub fn key(&self) -> &[u8] {
        match self {
            Record::Put(key_value) => &key_value.key,
            Record::Tombstone { key } => key,
        }
    }

    /// Key plus value bytes: the record's share of the store's size quota.
    pub fn size_bytes(&self) -> u64 {
        match self {
            Record::Put(key_value) => (key_value.key.len() + key_value.value.len()) as u64,
            Record::Tombstone { key } => key.len() as u64,
        }
    }
}
