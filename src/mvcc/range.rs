//! `RangeOptions` and `RangeResult`: the shape of a read, and which keys a
//! key range covers.

use std::ops::Bound;

use super::KeyValue;

/// How to read a key range (etcd `mvcc.RangeOptions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// At most this many key-values are returned; 0 or less means no limit.
    pub limit: i64,
    /// The revision to read at; 0 or less means the current revision.
    pub rev: i64,
    /// Return only the count, no key-values.
    pub count_only: bool,
}

/// The answer to a read (etcd `mvcc.RangeResult`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    /// Live key-values in ascending key order, truncated to the limit.
    pub kvs: Vec<KeyValue>,
    /// Number of live keys in the range at the read revision, ignoring the
    /// limit.
    pub count: usize,
    /// The current revision of the store (or of the write transaction), not
    /// the revision that was read: etcd puts it in the response header.
    pub rev: i64,
}

/// The bounds of the keys `key` and `end` select:
/// - `None`: the single key `key`;
/// - `Some(&[])`: every key greater than or equal to `key`;
/// - `Some(end)`: the keys in `[key, end)`, none when `end <= key`.
pub(super) fn key_bounds<'k>(
    key: &'k [u8],
    end: Option<&'k [u8]>,
) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    match end {
        None => (Bound::Included(key), Bound::Included(key)),
        Some([]) => (Bound::Included(key), Bound::Unbounded),
        Some(end) if end > key => (Bound::Included(key), Bound::Excluded(end)),
        // An empty range. It must still be well-formed: `BTreeMap::range`
        // panics when the start is past the end.
        Some(_) => (Bound::Included(key), Bound::Excluded(key)),
    }
}
