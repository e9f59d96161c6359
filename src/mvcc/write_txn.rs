//! `WriteTxn`: a write transaction, all of whose changes share one revision.
//!
//! Port of etcd 3.4 `storeTxnWrite` (`mvcc/kvstore_txn.go`). The changes go
//! into the store's revision log and key index as they are made, at main
//! revision `begin_revision + 1`; ending the transaction makes that revision
//! current. The transaction borrows the store mutably, so no one can read a
//! half-done transaction, and it ends when dropped even without `end()`:
//! an abandoned transaction is committed, never left half-applied with its
//! revision still in the future.

use std::sync::Arc;

use super::{Error, KeyValue, RangeOptions, RangeResult, Record, Revision, Store};

/// A write transaction over a `Store`; see the module docs.
#[must_use = "a write transaction commits when dropped; call end() to make that explicit"]
pub struct WriteTxn<'s> {
    store: &'s mut Store,
    /// The store's current revision when the transaction began.
    begin_revision: i64,
    /// Every change so far, in order; position = sub revision.
    changes: Vec<Arc<KeyValue>>,
}

impl<'s> WriteTxn<'s> {
    pub(super) fn new(store: &'s mut Store) -> Self {
        let begin_revision = store.current_revision();
        WriteTxn {
            store,
            begin_revision,
            changes: Vec::new(),
        }
    }

    /// The store's revision when the transaction began (etcd `Rev()`).
    pub fn begin_revision(&self) -> i64 {
        self.begin_revision
    }

    /// The revision a response should carry: the transaction's revision if
    /// it changed anything, else the revision it read at.
    pub fn rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin_revision
        } else {
            self.begin_revision + 1
        }
    }

    /// The changes so far, in sub revision order. Tombstones have only
    /// `key` and `mod_revision` set (see `KeyValue::is_tombstone`).
    pub fn changes(&self) -> &[Arc<KeyValue>] {
        &self.changes
    }

    /// Reads a key range; sees this transaction's own earlier writes.
    pub fn range(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        options: &RangeOptions,
    ) -> Result<RangeResult, Error> {
        self.store.range_keys(key, end, self.rev(), options)
    }

    /// Writes `value` to `key`; returns the transaction's revision. The
    /// value is taken, not copied: it is the largest part of a put.
    pub fn put(&mut self, key: &[u8], value: impl Into<Vec<u8>>, lease: i64) -> i64 {
        let revision = self.next_revision();
        let (create_revision, previous_version) = match self.store.key_at(key, revision.main) {
            Some(key_at) => (key_at.created.main, key_at.version),
            None => (revision.main, 0),
        };
        let key_value = Arc::new(KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: revision.main,
            version: previous_version + 1,
            value: value.into(),
            lease,
        });
        self.store
            .append(revision, Record::Put(Arc::clone(&key_value)));
        self.changes.push(key_value);
        revision.main
    }

    /// Deletes every key of the range that is live, each with its own sub
    /// revision. Returns (number deleted, revision for the response header):
    /// the header revision is this transaction's revision if anything in it
    /// changed, else the revision it read at (etcd `DeleteRange`).
    pub fn delete_range(&mut self, key: &[u8], end: Option<&[u8]>) -> (i64, i64) {
        let keys = self.store.live_keys(key, end, self.rev());
        let deleted = keys.len() as i64;
        for key in keys {
            let revision = self.next_revision();
            self.store
                .append(revision, Record::Tombstone { key: key.clone() });
            self.changes
                .push(Arc::new(KeyValue::tombstone(key, revision.main)));
        }
        (deleted, self.rev())
    }

    /// Commits the transaction and returns its changes, for the watch layer.
    pub fn end(mut self) -> Vec<Arc<KeyValue>> {
        self.commit()
    }

    /// The revision of the next change: one main revision for the whole
    /// transaction, and sub revisions counting its changes.
    fn next_revision(&self) -> Revision {
        Revision::new(self.begin_revision + 1, self.changes.len() as i64)
    }

    /// Makes the changes current and hands them over; a transaction without
    /// changes leaves the revision alone. Taking the changes makes a second
    /// call (from `drop` after `end`) a no-op.
    fn commit(&mut self) -> Vec<Arc<KeyValue>> {
        let changes = std::mem::take(&mut self.changes);
        if !changes.is_empty() {
            self.store.advance_revision();
            assert_eq!(
                self.store.current_revision(),
                self.begin_revision + 1,
                "write txn: a transaction moves the revision by exactly one"
            );
        }
        changes
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        self.commit();
    }
}
