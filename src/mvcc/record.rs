//! `Record`: what the revision log stores at one revision.

use super::KeyValue;

/// The change made at one revision: a put of a full `KeyValue`, or a
/// tombstone, which stores only the key (like etcd's backend, where the
/// tombstone mark lives in the revision key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Put(KeyValue),
    Tombstone { key: Vec<u8> },
}

impl Record {
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
