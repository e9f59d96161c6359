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
//!
//! The value encoding is written out here rather than borrowed from the
//! gRPC layer: it is part of the hash's definition, not of the wire API.

use std::collections::BTreeSet;

use super::{Error, Record, Revision, Store};

/// etcd's bbolt bucket of key-value revisions; its name starts the hash.
const KEY_BUCKET_NAME: &[u8] = b"key";
/// etcd's `markTombstone`, appended to a tombstone's revision key.
const TOMBSTONE_MARK: u8 = b't';

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
        let mut keep = BTreeSet::new();
        for key_index in self.key_indexes() {
            key_index.keep(revision, &mut keep);
        }
        let lower = Revision::new(compact_revision + 1, 0);
        let mut hash = crc32c::crc32c(KEY_BUCKET_NAME);
        for (record_revision, record) in self.records_through(revision) {
            // Below the compaction point only what a compaction at
            // `revision` keeps counts; with nothing to keep, everything.
            if *record_revision < lower && !keep.is_empty() && !keep.contains(record_revision) {
                continue;
            }
            hash = crc32c::crc32c_append(
                hash,
                &revision_key(*record_revision, matches!(record, Record::Tombstone { .. })),
            );
            hash = crc32c::crc32c_append(hash, &encode_value(*record_revision, record));
        }
        Ok(KvHash {
            hash,
            current_revision,
            compact_revision,
        })
    }
}

/// etcd's `revToBytes` (+ `appendMarkTombstone`).
fn revision_key(revision: Revision, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&(revision.main as u64).to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&(revision.sub as u64).to_be_bytes());
    if tombstone {
        key.push(TOMBSTONE_MARK);
    }
    key
}

/// `mvccpb.KeyValue` in protobuf (proto3: fields in order, zero values
/// left out), as etcd stores it.
fn encode_value(revision: Revision, record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    match record {
        Record::Put(key_value) => {
            bytes_field(&mut out, 1, &key_value.key);
            varint_field(&mut out, 2, key_value.create_revision);
            varint_field(&mut out, 3, revision.main);
            varint_field(&mut out, 4, key_value.version);
            bytes_field(&mut out, 5, &key_value.value);
            varint_field(&mut out, 6, key_value.lease);
        }
        Record::Tombstone { key } => bytes_field(&mut out, 1, key),
    }
    out
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u64, value: i64) {
    if value != 0 {
        varint(out, field << 3);
        varint(out, value as u64);
    }
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    if !bytes.is_empty() {
        varint(out, (field << 3) | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
}
