//! One revision as etcd 3.4's backend stores it in its bbolt `key` bucket:
//! the key is the revision (main and sub as big-endian 8-byte integers
//! joined by `_`, plus `t` for a tombstone), the value the protobuf
//! encoding of `mvccpb.KeyValue` (a tombstone's holds only the key).
//!
//! The one encoding of a revision: HashKV hashes these bytes (so it
//! matches etcd's bit for bit), backups write them into etcd's snapshot
//! file format, and the on-disk backend stores them.

use prost::Message as _;

use super::{KeyValue, Record, Revision};
use crate::proto::mvccpb;

/// etcd's bbolt bucket of key-value revisions.
pub const KEY_BUCKET: &[u8] = b"key";
/// etcd's `markTombstone`, appended to a tombstone's revision key.
pub const TOMBSTONE_MARK: u8 = b't';

/// etcd's `revToBytes`: main, `_`, sub.
pub fn revision_key(revision: Revision) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&revision.main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&revision.sub.to_be_bytes());
    key
}

/// A revision key (as `revision_key`, or a tombstone's): the revision,
/// and whether it marks a tombstone.
pub fn parse_revision_key(key: &[u8]) -> Result<(Revision, bool), String> {
    let bad = || format!("{key:?} is not an etcd revision");
    let tombstone = match key.len() {
        17 => false,
        18 if key[17] == TOMBSTONE_MARK => true,
        _ => return Err(bad()),
    };
    if key[8] != b'_' {
        return Err(bad());
    }
    let main = i64::from_be_bytes(key[..8].try_into().map_err(|_| bad())?);
    let sub = i64::from_be_bytes(key[9..17].try_into().map_err(|_| bad())?);
    Ok((Revision::new(main, sub), tombstone))
}

/// One revision's (key, value) in the `key` bucket.
pub fn key_entry(revision: Revision, record: &Record) -> (Vec<u8>, Vec<u8>) {
    let mut key = revision_key(revision);
    let value = match record {
        Record::Put(kv) => encode_key_value(kv, revision.main),
        Record::Tombstone { key: deleted } => {
            key.push(TOMBSTONE_MARK);
            encode_key_value(
                &KeyValue {
                    key: deleted.clone(),
                    ..KeyValue::default()
                },
                0,
            )
        }
    };
    (key, value)
}

/// What `mvccpb::KeyValue::encode_to_vec` gives for `kv` with
/// `mod_revision`, encoded from the borrowed record. The derived encoder
/// needs an owned message, which would cost one more copy of every key
/// and value the backend writes; this writes the same fields with prost's
/// own field encoders (proto3: zero values left out, fields in number
/// order), and a property test holds it to the derived encoding.
fn encode_key_value(kv: &KeyValue, mod_revision: i64) -> Vec<u8> {
    use prost::encoding::{bytes, int64};
    let ints = |tags: &[(u32, i64)]| -> Vec<(u32, i64)> {
        tags.iter().copied().filter(|&(_, n)| n != 0).collect()
    };
    let head = ints(&[(2, kv.create_revision), (3, mod_revision), (4, kv.version)]);
    let lease = ints(&[(6, kv.lease)]);
    let int_len = |fields: &[(u32, i64)]| -> usize {
        fields
            .iter()
            .map(|(tag, n)| int64::encoded_len(*tag, n))
            .sum()
    };
    let bytes_len = |tag: u32, field: &Vec<u8>| -> usize {
        if field.is_empty() {
            0
        } else {
            bytes::encoded_len(tag, field)
        }
    };
    let mut out = Vec::with_capacity(
        bytes_len(1, &kv.key) + int_len(&head) + bytes_len(5, &kv.value) + int_len(&lease),
    );
    if !kv.key.is_empty() {
        bytes::encode(1, &kv.key, &mut out);
    }
    for (tag, n) in &head {
        int64::encode(*tag, n, &mut out);
    }
    if !kv.value.is_empty() {
        bytes::encode(5, &kv.value, &mut out);
    }
    for (tag, n) in &lease {
        int64::encode(*tag, n, &mut out);
    }
    out
}

/// `key_entry` read back; an error for bytes etcd could not have written.
pub fn parse_key_entry(key: &[u8], value: &[u8]) -> Result<(Revision, Record), String> {
    let (revision, tombstone) = parse_revision_key(key)?;
    let kv = mvccpb::KeyValue::decode(value)
        .map_err(|error| format!("the value at revision {revision}: {error}"))?;
    let record = if tombstone {
        Record::Tombstone { key: kv.key }
    } else {
        Record::put(KeyValue {
            mod_revision: revision.main,
            ..kv.into()
        })
    };
    Ok((revision, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_match_etcds_bytes() {
        let put = Record::put(KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            value: b"bar".to_vec(),
            lease: 0,
        });
        let (key, value) = key_entry(Revision::new(5, 1), &put);
        assert_eq!(key, b"\0\0\0\0\0\0\0\x05_\0\0\0\0\0\0\0\x01");
        // Fields 1..4 in order, zero values (lease) left out: proto3.
        assert_eq!(value, b"\x0a\x03foo\x10\x02\x18\x05\x20\x03\x2a\x03bar");
        assert_eq!(
            parse_key_entry(&key, &value).unwrap(),
            (Revision::new(5, 1), put)
        );
        let tombstone = Record::Tombstone {
            key: b"foo".to_vec(),
        };
        let (key, value) = key_entry(Revision::new(6, 0), &tombstone);
        assert_eq!(key.last(), Some(&TOMBSTONE_MARK));
        assert_eq!(value, b"\x0a\x03foo");
        assert_eq!(
            parse_key_entry(&key, &value).unwrap(),
            (Revision::new(6, 0), tombstone)
        );
        assert!(parse_revision_key(b"short").is_err());
        assert!(parse_revision_key(&[0; 18]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn the_borrowed_encoding_is_the_derived_one(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4),
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            ints in proptest::array::uniform5(proptest::prop_oneof![
                proptest::prelude::Just(0i64),
                proptest::prelude::any::<i64>(),
            ]),
        ) {
            let [create_revision, stale_mod_revision, version, lease, mod_revision] = ints;
            let kv = KeyValue { key, create_revision, mod_revision: stale_mod_revision, version, value, lease };
            let derived = mvccpb::KeyValue { mod_revision, ..kv.clone().into() }.encode_to_vec();
            proptest::prop_assert_eq!(encode_key_value(&kv, mod_revision), derived);
        }
    }
}
