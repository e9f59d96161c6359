//! `Store::hash_kv`: etcd's HashKV, bit for bit.
//!
//! etcd (`store.HashByRev`) hashes its bbolt "key" bucket with CRC-32C:
//! the bucket name, then for every stored revision up to the requested
//! one, in revision order, the bbolt key and value. The key is the
//! revision (main and sub as big-endian u64s joined by `_`, plus `t` for
//! a tombstone); the value is the protobuf encoding of `mvccpb.KeyValue`
//! (a tombstone's holds only the key). Revisions below the compaction
//! point count only if a compaction at the requested revision would keep
//! them (`keyIndex.keep`), so members that compacted at different moments
//! agree. The revision log holds the same records in the same order, so
//! the hash matches etcd's and `etcdctl endpoint hashkv` can compare a
//! detcd member with an etcd one.
//! The bytes are `layout::key_entry`'s, the same the backup and the
//! on-disk backend store.

use std::collections::BTreeSet;

use super::layout::{key_entry, KEY_BUCKET};
use super::{Error, Revision, Store};

/// A HashKV answer: the hash, and the store's current and compaction
/// revisions when it was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    pub current_revision: i64,
    pub compact_revision: i64,
}

impl Store {
    /// The hash of the key-value history up to `revision` (0: the current
    /// revision). Compacted or future revisions are refused as etcd does.
    pub fn hash_kv(&self, revision: i64) -> Result<KvHash, Error> {
        let (current_revision, compact_revision) =
            (self.current_revision(), self.compact_revision());
        if revision > 0 && revision <= compact_revision {
            return Err(Error::Compacted);
        }
        if revision > 0 && revision > current_revision {
            return Err(Error::FutureRevision);
        }
        let revision = if revision == 0 {
            current_revision
        } else {
            revision
        };
        #[cfg(madsim)]
        let revision = if crate::sabotage::active(crate::sabotage::Sabotage::HashKvIgnoresRevision)
        {
            current_revision
        } else {
            revision
        };
        let mut keep = BTreeSet::new();
        for key_index in self.key_indexes() {
            key_index.keep(revision, &mut keep);
        }
        let lower = Revision::new(compact_revision + 1, 0);
        let mut hash = crc32c::crc32c(KEY_BUCKET);
        self.visit_records(i64::MIN, revision, |record_revision, record| {
            // Below the compaction point only what a compaction at
            // `revision` keeps counts; with nothing to keep, everything.
            if record_revision < lower && !keep.is_empty() && !keep.contains(&record_revision) {
                return;
            }
            let (key, value) = key_entry(record_revision, record);
            hash = crc32c::crc32c_append(hash, &key);
            hash = crc32c::crc32c_append(hash, &value);
        })?;
        Ok(KvHash {
            hash,
            current_revision,
            compact_revision,
        })
    }
}
