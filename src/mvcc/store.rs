//! `Store`: the revisioned key-value state of one member.
//!
//! The state has two parts, as in etcd: the revision log (etcd's `key`
//! bucket), which maps every revision to the change made there, and the key
//! index (etcd's `treeIndex`), which maps every key to its revisions. Reads
//! find revisions in the key index and values in the revision log.
//!
//! The key index and every revision's size stay in memory. With a cold
//! log attached (`attach_cold`: the on-disk backend), the revision log's
//! records stay in memory only until the backend holds them durably
//! (`evict_through`); older ones are read back from it. Without one (unit
//! tests, a store decoded from an image before it is attached), the whole
//! log is in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use super::range::key_bounds;
use super::{ColdLog, Error, KeyIndex, RangeOptions, RangeResult, Record, Revision, WriteTxn};

/// The current revision of an empty store: the first write gets revision 2,
/// as in etcd.
pub const INITIAL_REVISION: i64 = 1;

/// The compact revision of a store that was never compacted (etcd
/// `compactMainRev` starts at -1, so compacting at 0 is allowed once).
pub const NEVER_COMPACTED: i64 = -1;

/// The MVCC state.
#[derive(Clone, Debug)]
pub struct Store {
    /// Every key with a revision in the revision log, in key order.
    key_index: BTreeMap<Vec<u8>, KeyIndex>,
    /// The keys whose index is more than a lone put (`is_lone_put`): all
    /// that a compaction can change. It visits these, not every key: with
    /// a million keys the walk over all of them held writes up for 48 ms.
    history: BTreeSet<Vec<u8>>,
    /// Every revision not yet removed by compaction, with its record's
    /// `Record::size_bytes`: the revision log without its values.
    revisions: BTreeMap<Revision, u32>,
    /// The records held in memory, in revision order: every one in
    /// `revisions` without a cold log, else those above `Cold::through`.
    revision_log: BTreeMap<Revision, Record>,
    /// The revision of the last write transaction that changed something.
    current_revision: i64,
    /// No read below this revision is answered; `NEVER_COMPACTED` if none.
    compact_revision: i64,
    /// Sum of `Record::size_bytes` over the revision log.
    size_bytes: u64,
    /// Number of keys live at the current revision.
    live_key_count: usize,
    /// The changes not yet handed to the on-disk backend, when something
    /// keeps one (`track_changes`); `None` otherwise.
    journal: Option<Changes>,
    /// Where records no longer in memory are read from.
    cold: Option<Cold>,
    /// Why a read of the cold log failed, once one did: the member stops.
    cold_failure: OnceLock<String>,
    /// The live keys attached to a lease, as a rebuild without values
    /// saw them (`Rebuild`), until `live_leases` takes them: so a restart
    /// need not read every value back from disk to learn them.
    rebuilt_leases: Option<Vec<(Vec<u8>, i64)>>,
}

/// The on-disk part of the revision log.
#[derive(Clone)]
struct Cold {
    log: Arc<dyn ColdLog>,
    /// Records at main revisions up to this one are read from `log`, and
    /// no longer held in memory.
    through: i64,
}

impl std::fmt::Debug for Cold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cold")
            .field("through", &self.through)
            .finish()
    }
}

/// What a run of write transactions and compactions changed in the
/// revision log: what the on-disk backend must write to match it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// New revisions, in order.
    pub records: Vec<(Revision, Record)>,
    /// The newest compaction, and every revision the compactions removed
    /// (some may be in `records`: written, then compacted away).
    pub compaction: Option<(i64, Vec<Revision>)>,
}

impl Changes {
    /// Adds the later `next` to these changes.
    pub fn extend(&mut self, next: Changes) {
        self.records.extend(next.records);
        if let Some((revision, removed)) = next.compaction {
            let all = self.compaction.get_or_insert((revision, Vec::new()));
            all.0 = revision;
            all.1.extend(removed);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.compaction.is_none()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Self {
        Store {
            key_index: BTreeMap::new(),
            history: BTreeSet::new(),
            revisions: BTreeMap::new(),
            revision_log: BTreeMap::new(),
            current_revision: INITIAL_REVISION,
            compact_revision: NEVER_COMPACTED,
            size_bytes: 0,
            live_key_count: 0,
            journal: None,
            cold: None,
            cold_failure: OnceLock::new(),
            rebuilt_leases: None,
        }
    }

    /// Every live key attached to a lease, with its lease, in key order.
    pub fn live_leases(&mut self) -> Result<Vec<(Vec<u8>, i64)>, Error> {
        if let Some(leases) = self.rebuilt_leases.take() {
            return Ok(leases);
        }
        let live = self.range(b"\0", Some(&[]), &RangeOptions::default())?;
        Ok(live
            .kvs
            .into_iter()
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.key, kv.lease))
            .collect())
    }

    /// Reads the records the backend holds from `log` from now on: those
    /// up to main revision `through` at once (a store rebuilt from the
    /// backend without its values), later ones once `evict_through`
    /// says the backend holds them.
    pub fn attach_cold(&mut self, log: Arc<dyn ColdLog>, through: i64) {
        assert!(self.cold.is_none(), "store: one cold log at a time");
        let through = through.clamp(INITIAL_REVISION, self.current_revision);
        self.revision_log = self
            .revision_log
            .split_off(&Revision::new(through.saturating_add(1), 0));
        self.cold = Some(Cold { log, through });
    }

    /// The backend holds every record up to main revision `revision`
    /// durably: they leave memory. Without a cold log, nothing happens.
    pub fn evict_through(&mut self, revision: i64) {
        let current = self.current_revision;
        let Some(cold) = self.cold.as_mut() else {
            return;
        };
        let revision = revision.min(current);
        if revision <= cold.through {
            return;
        }
        cold.through = revision;
        self.revision_log = self
            .revision_log
            .split_off(&Revision::new(revision.saturating_add(1), 0));
    }

    /// Does it read values from a cold log?
    pub fn has_cold(&self) -> bool {
        self.cold.is_some()
    }

    /// Number of records held in memory.
    pub fn records_in_memory(&self) -> usize {
        self.revision_log.len()
    }

    /// Why reading the cold log failed, if it ever did.
    pub fn cold_failure(&self) -> Option<&str> {
        self.cold_failure.get().map(String::as_str)
    }

    /// A failed cold read, remembered so the member stops.
    fn unreadable(&self, why: String) -> Error {
        let _ = self.cold_failure.set(why.clone());
        Error::Unreadable(why)
    }

    /// Keeps the changes from now on, for `take_changes`.
    pub fn track_changes(&mut self) {
        self.journal.get_or_insert_with(Changes::default);
    }

    /// The changes since the last call (or `track_changes`). The journal
    /// starts again with room for as many records: grown one push at a
    /// time, its reallocations copied every record of a large round
    /// again and again (a tenth of a member's CPU while loading keys).
    pub fn take_changes(&mut self) -> Changes {
        self.journal
            .as_mut()
            .map(|journal| {
                let room = journal.records.len();
                std::mem::replace(
                    journal,
                    Changes {
                        records: Vec::with_capacity(room),
                        compaction: None,
                    },
                )
            })
            .unwrap_or_default()
    }

    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction, or `NEVER_COMPACTED` (-1).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Number of keys live at the current revision.
    pub fn key_count(&self) -> usize {
        self.live_key_count
    }

    /// Key plus value bytes of every record kept, tombstones and old
    /// versions included: what the space quota limits.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Number of records in the revision log, tombstones and old versions
    /// included.
    pub fn record_count(&self) -> usize {
        self.revisions.len()
    }

    /// Every key's index, in key order.
    pub(super) fn key_indexes(&self) -> impl Iterator<Item = &KeyIndex> {
        self.key_index.values()
    }

    /// Visits the records from main revision `from_main` through
    /// `through_main`, in revision order: those on disk first, then those
    /// in memory. The watch layer replays them to catch a watcher up.
    pub fn visit_records(
        &self,
        from_main: i64,
        through_main: i64,
        mut visit: impl FnMut(Revision, &Record),
    ) -> Result<(), Error> {
        if through_main < from_main {
            return Ok(());
        }
        let mut memory_from = from_main;
        if let Some(cold) = &self.cold {
            if from_main <= cold.through {
                let mut kept = |revision: Revision, record: Record| {
                    // A compaction's removals reach the disk later.
                    if self.revisions.contains_key(&revision) {
                        visit(revision, &record);
                    }
                };
                cold.log
                    .scan(
                        Revision::new(from_main, 0),
                        through_main.min(cold.through),
                        &mut kept,
                    )
                    .map_err(|why| self.unreadable(why))?;
            }
            memory_from = memory_from.max(cold.through.saturating_add(1));
        }
        if memory_from <= through_main {
            let end = Revision::new(through_main.saturating_add(1), 0);
            for (revision, record) in self.revision_log.range(Revision::new(memory_from, 0)..end) {
                visit(*revision, record);
            }
        }
        Ok(())
    }

    /// The records at main revision `from_main` and later, in revision
    /// order.
    pub fn records_since(&self, from_main: i64) -> Result<Vec<(Revision, Record)>, Error> {
        let mut records = Vec::new();
        self.visit_records(from_main, self.current_revision, |revision, record| {
            records.push((revision, record.clone()))
        })?;
        Ok(records)
    }

    /// The records at `revisions` (each kept), in the same order.
    fn read_records(&self, revisions: &[Revision]) -> Result<Vec<Record>, Error> {
        let cold_through = self.cold.as_ref().map(|cold| cold.through);
        let on_disk: Vec<Revision> = revisions
            .iter()
            .copied()
            .filter(|revision| cold_through.is_some_and(|through| revision.main <= through))
            .collect();
        let mut from_disk = match (&self.cold, on_disk.is_empty()) {
            (Some(cold), false) => cold
                .log
                .get(&on_disk)
                .map_err(|why| self.unreadable(why))?
                .into_iter(),
            _ => Vec::new().into_iter(),
        };
        let mut records = Vec::with_capacity(revisions.len());
        for revision in revisions {
            let record = if cold_through.is_some_and(|through| revision.main <= through) {
                from_disk.next()
            } else {
                self.revision_log.get(revision).cloned()
            };
            match record {
                Some(record) => records.push(record),
                None => return Err(self.unreadable(format!("the record at {revision} is missing"))),
            }
        }
        Ok(records)
    }

    /// Reads a key range (etcd `store.Range`); see `WriteTxn::range` for a
    /// read inside a write transaction.
    pub fn range(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        options: &RangeOptions,
    ) -> Result<RangeResult, Error> {
        self.range_keys(key, end, self.current_revision, options)
    }

    /// Starts a write transaction. It borrows the store mutably, so nothing
    /// else reads or writes until it ends, as etcd's store lock ensures.
    pub fn write(&mut self) -> WriteTxn<'_> {
        WriteTxn::new(self)
    }

    /// Forgets the history below main revision `revision`: afterwards reads
    /// at `revision` and later still work, reads below it fail with
    /// `Compacted` (etcd `store.Compact`, done at once instead of in the
    /// background).
    pub fn compact(&mut self, revision: i64) -> Result<(), Error> {
        #[cfg(madsim)]
        let recompaction = revision == self.compact_revision
            && crate::sabotage::active(crate::sabotage::Sabotage::RecompactionAccepted);
        #[cfg(not(madsim))]
        let recompaction = false;
        if revision <= self.compact_revision && !recompaction {
            return Err(Error::Compacted);
        }
        if revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        self.compact_revision = revision;

        // What the key indexes drop is what goes: every record is in its
        // key's index until compacted. (Listing the records no key keeps,
        // as etcd does, held every request of the scale benchmark's
        // million keys up for 0.6 s; debug builds still check that the
        // two agree.)
        #[cfg(debug_assertions)]
        let mut available = BTreeSet::new();
        #[cfg(not(debug_assertions))]
        let mut available = ();
        let mut compacted = Vec::new();
        let Store {
            key_index: indexes,
            history,
            ..
        } = self;
        history.retain(|key| {
            let key_index = (indexes.get_mut(key)).expect("store: a key with history is indexed");
            key_index.compact_noting(revision, &mut available, &mut compacted);
            if key_index.is_empty() {
                indexes.remove(key);
                return false;
            }
            !key_index.is_lone_put()
        });
        compacted.sort_unstable();
        // The keys passed by keep their lone put, as a visit would have.
        #[cfg(debug_assertions)]
        for (key, key_index) in &self.key_index {
            assert_eq!(
                key_index.is_lone_put(),
                !self.history.contains(key),
                "store: the keys with history are the keys not a lone put"
            );
            key_index.keep(revision, &mut available);
        }
        // (The compaction sabotage drops what the check would name.)
        #[cfg(all(debug_assertions, madsim))]
        let check = !crate::sabotage::active(crate::sabotage::Sabotage::CompactionDropsLiveKeys);
        #[cfg(all(debug_assertions, not(madsim)))]
        let check = true;
        #[cfg(debug_assertions)]
        if check {
            let expected: Vec<Revision> = self
                .revisions
                .range(..=Revision::new(revision, i64::MAX))
                .map(|(&record_revision, _)| record_revision)
                .filter(|record_revision| !available.contains(record_revision))
                .collect();
            assert_eq!(
                compacted, expected,
                "store: the key indexes dropped other records than compaction removes"
            );
        }
        if let Some(journal) = &mut self.journal {
            journal.extend(Changes {
                records: Vec::new(),
                compaction: Some((revision, compacted.clone())),
            });
        }
        for record_revision in compacted {
            let size = self
                .revisions
                .remove(&record_revision)
                .expect("store: a compacted revision was just listed");
            // Gone from memory; the backend drops it with the journal.
            self.revision_log.remove(&record_revision);
            self.size_bytes -= u64::from(size);
        }
        Ok(())
    }

    /// etcd `storeTxnRead.rangeKeys`: reads at `options.rev` as seen by a
    /// reader whose newest visible revision is `read_revision`.
    pub(super) fn range_keys(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        read_revision: i64,
        options: &RangeOptions,
    ) -> Result<RangeResult, Error> {
        let mut revision = options.rev;
        if revision > read_revision {
            return Err(Error::FutureRevision);
        }
        if revision <= 0 {
            revision = read_revision;
        }
        if revision < self.compact_revision {
            return Err(Error::Compacted);
        }

        let revisions: Vec<Revision> = self
            .key_index
            .range::<[u8], _>(key_bounds(key, end))
            .filter_map(|(_, key_index)| key_index.get(revision))
            .map(|key_at| key_at.modified)
            .collect();
        let count = revisions.len();
        if options.count_only {
            return Ok(RangeResult {
                kvs: Vec::new(),
                count,
                rev: read_revision,
            });
        }

        let limit = match usize::try_from(options.limit) {
            Ok(limit) if limit > 0 => limit.min(count),
            _ => count,
        };
        let records = self.read_records(&revisions[..limit])?;
        let mut kvs = Vec::with_capacity(records.len());
        for (modified, record) in revisions.iter().zip(records) {
            match record {
                Record::Put(key_value) if key_value.mod_revision == modified.main => {
                    kvs.push(Arc::unwrap_or_clone(key_value))
                }
                // The key index and the revision log disagree: serving
                // anything now could be wrong data.
                other => {
                    return Err(self.unreadable(format!(
                    "the key index points at a put at {modified}, the revision log has {other:?}"
                )))
                }
            }
        }
        Ok(RangeResult {
            kvs,
            count,
            rev: read_revision,
        })
    }

    /// The keys in the range that are live at main revision `revision`.
    pub(super) fn live_keys(&self, key: &[u8], end: Option<&[u8]>, revision: i64) -> Vec<Vec<u8>> {
        self.key_index
            .range::<[u8], _>(key_bounds(key, end))
            .filter(|(_, key_index)| key_index.get(revision).is_some())
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The key index entry for `key` as of main revision `revision`.
    pub(super) fn key_at(&self, key: &[u8], revision: i64) -> Option<super::KeyAt> {
        self.key_index.get(key)?.get(revision)
    }

    /// Appends a change of the write transaction at `current_revision + 1`
    /// to the revision log and the key index.
    pub(super) fn append(&mut self, revision: Revision, record: Record) {
        // Changes are only ever appended after the current revision: the
        // revision log is history and must never be rewritten.
        assert!(
            revision.main == self.current_revision + 1,
            "store: revisions never go backwards: append at {revision} with current revision {}",
            self.current_revision
        );
        // One lookup for a key already indexed, two for a new one.
        let key = record.key();
        match self.key_index.get_mut(key) {
            Some(key_index) => {
                let was_lone_put = key_index.is_lone_put();
                index_change(key_index, &record, revision, &mut self.live_key_count);
                if was_lone_put {
                    self.history.insert(key.to_vec());
                }
            }
            None => {
                let mut key_index = KeyIndex::new();
                index_change(&mut key_index, &record, revision, &mut self.live_key_count);
                if !key_index.is_lone_put() {
                    self.history.insert(key.to_vec());
                }
                self.key_index.insert(key.to_vec(), key_index);
            }
        }
        self.size_bytes += record.size_bytes();
        self.revisions.insert(revision, record_size(&record));
        if let Some(journal) = &mut self.journal {
            journal.records.push((revision, record.clone()));
        }
        let previous = self.revision_log.insert(revision, record);
        assert!(
            previous.is_none(),
            "store: revision {revision} is written once"
        );
    }

    /// Ends a write transaction: makes its changes the current revision.
    pub(super) fn advance_revision(&mut self) {
        self.current_revision += 1;
    }

    /// Rebuilds a store from its whole revision log, kept in memory; see
    /// `Rebuild`.
    pub fn from_revision_log(
        current_revision: i64,
        compact_revision: i64,
        revision_log: BTreeMap<Revision, Record>,
    ) -> Result<Store, Error> {
        let mut rebuild = Rebuild::new(current_revision, compact_revision, true)?;
        for (revision, record) in revision_log {
            rebuild.push(revision, record)?;
        }
        rebuild.finish()
    }

    /// Adds one record of an image to the key index, checking that its
    /// metadata follows from the records before it.
    fn replay(
        &mut self,
        revision: Revision,
        record: &Record,
        compact_revision: i64,
    ) -> Result<(), Error> {
        let corrupt =
            |message: &str| Err(Error::Corrupt(format!("record at {revision}: {message}")));
        let key_value = match record {
            Record::Tombstone { key } => {
                return match self.key_index.get_mut(key.as_slice()) {
                    Some(key_index) if key_index.is_live() => key_index.tombstone(revision),
                    _ => corrupt("tombstone of a key that is not live"),
                };
            }
            Record::Put(key_value) => key_value,
        };
        if key_value.mod_revision != revision.main {
            return corrupt("mod revision differs from the revision");
        }
        let creates_generation =
            key_value.create_revision == revision.main && key_value.version == 1;
        match self.key_index.get_mut(key_value.key.as_slice()) {
            Some(key_index) if key_index.is_live() => {
                let generation = key_index
                    .generations()
                    .last()
                    .expect("a live key has a generation");
                if key_value.create_revision != generation.created().main
                    || key_value.version != generation.version() + 1
                {
                    return corrupt("create revision or version does not follow the previous put");
                }
                key_index.put(revision);
            }
            Some(key_index) => {
                if !creates_generation {
                    return corrupt("a put after a tombstone must create the key");
                }
                key_index.put(revision);
            }
            None if creates_generation => {
                let mut key_index = KeyIndex::new();
                key_index.put(revision);
                self.key_index.insert(key_value.key.clone(), key_index);
            }
            None => {
                // The first kept record of a key whose older history was
                // compacted away: only compaction can leave one behind.
                let plausible = revision.main <= compact_revision
                    && key_value.version >= 1
                    && (INITIAL_REVISION + 1..=revision.main).contains(&key_value.create_revision);
                if !plausible {
                    return corrupt("the first record of a key does not create it");
                }
                // etcd's restore also loses the sub revision of `created`;
                // only its main revision is ever read.
                let mut key_index = KeyIndex::new();
                key_index.restore(
                    Revision::new(key_value.create_revision, 0),
                    revision,
                    key_value.version,
                );
                self.key_index.insert(key_value.key.clone(), key_index);
            }
        }
        Ok(())
    }
}

/// Rebuilds a store from its revision log (etcd `store.restore`), record
/// by record in revision order: each is replayed into a fresh key index,
/// and `finish` checks that the log is exactly what compaction at the
/// compact revision leaves behind. Anything inconsistent is `Corrupt`;
/// nothing here may panic on input. Values are kept in memory only when
/// asked (`keep_values`); otherwise the store is meant to read them from
/// the backend the records came from (`Store::attach_cold`).
pub struct Rebuild {
    store: Store,
    previous: Option<Revision>,
    keep_values: bool,
    /// Each key's lease as of its newest record (0 after a tombstone).
    leases: BTreeMap<Vec<u8>, i64>,
}

impl Rebuild {
    pub fn new(
        current_revision: i64,
        compact_revision: i64,
        keep_values: bool,
    ) -> Result<Rebuild, Error> {
        if current_revision < INITIAL_REVISION || current_revision == i64::MAX {
            return Err(Error::Corrupt(format!(
                "current revision {current_revision} is outside [{INITIAL_REVISION}, {})",
                i64::MAX
            )));
        }
        if compact_revision < NEVER_COMPACTED || compact_revision > current_revision {
            return Err(Error::Corrupt(format!(
                "compact revision {compact_revision} is outside [{NEVER_COMPACTED}, {current_revision}]"
            )));
        }
        Ok(Rebuild {
            store: Store {
                current_revision,
                compact_revision,
                ..Store::new()
            },
            previous: None,
            keep_values,
            leases: BTreeMap::new(),
        })
    }

    /// Adds the next record; revisions must rise strictly.
    pub fn push(&mut self, revision: Revision, record: Record) -> Result<(), Error> {
        self.push_ref(revision, &record)?;
        if self.keep_values {
            self.store.revision_log.insert(revision, record);
        }
        Ok(())
    }

    /// `push`, lending the record: what a rebuild that keeps no values
    /// needs of it.
    pub fn push_ref(&mut self, revision: Revision, record: &Record) -> Result<(), Error> {
        let corrupt = |message: String| Err(Error::Corrupt(message));
        if self.previous.is_some_and(|previous| revision <= previous) {
            return corrupt(format!("record at {revision} is out of order"));
        }
        if revision.main <= INITIAL_REVISION {
            return corrupt(format!("record at {revision} is before the first write"));
        }
        if revision.sub < 0 {
            return corrupt(format!("record at {revision} has a negative sub revision"));
        }
        if revision.main > self.store.current_revision {
            return corrupt(format!(
                "record at {revision} is after the current revision"
            ));
        }
        self.previous = Some(revision);
        let store = &mut self.store;
        store.replay(revision, record, store.compact_revision)?;
        store.size_bytes += record.size_bytes();
        store.revisions.insert(revision, record_size(record));
        if !self.keep_values {
            match record {
                Record::Put(key_value) if key_value.lease != 0 => {
                    self.leases.insert(key_value.key.clone(), key_value.lease);
                }
                other => {
                    self.leases.remove(other.key());
                }
            }
        }
        Ok(())
    }

    /// The store, once every record is in and the whole is consistent.
    pub fn finish(self) -> Result<Store, Error> {
        let mut store = self.store;
        if !self.keep_values {
            store.rebuilt_leases = Some(self.leases.into_iter().collect());
        }
        let corrupt = |message: String| Err(Error::Corrupt(message));
        check_revisions_are_contiguous(
            store.current_revision,
            store.compact_revision,
            &store.revisions,
        )?;
        store.live_key_count = store
            .key_index
            .values()
            .filter(|key_index| key_index.is_live())
            .count();
        store.history = (store.key_index.iter())
            .filter(|(_, key_index)| !key_index.is_lone_put())
            .map(|(key, _)| key.clone())
            .collect();
        let compact_revision = store.compact_revision;
        if compact_revision >= 0 {
            // Compacting again at the compact revision must change nothing:
            // every record at or below it is one compaction keeps.
            let mut available = BTreeSet::new();
            for (key, key_index) in &store.key_index {
                let mut compacted = key_index.clone();
                compacted.compact(compact_revision, &mut available);
                if compacted.is_empty() {
                    return corrupt(format!("key {key:?} has only compacted history"));
                }
            }
            let compacted_range = ..=Revision::new(compact_revision, i64::MAX);
            if let Some((revision, _)) = store
                .revisions
                .range(compacted_range)
                .find(|(revision, _)| !available.contains(revision))
            {
                return corrupt(format!("record at {revision} should have been compacted"));
            }
        }
        Ok(store)
    }
}

/// Adds the change `record` makes at `revision` to its key's index, and
/// keeps the count of live keys.
fn index_change(
    key_index: &mut KeyIndex,
    record: &Record,
    revision: Revision,
    live_keys: &mut usize,
) {
    match record {
        Record::Put(_) => {
            if !key_index.is_live() {
                *live_keys += 1;
            }
            key_index.put(revision);
        }
        Record::Tombstone { .. } => {
            // etcd: "cannot tombstone an existing key" is fatal, the
            // caller only deletes keys it just found live.
            key_index
                .tombstone(revision)
                .expect("store: only live keys get a tombstone");
            *live_keys -= 1;
        }
    }
}

/// A record's size (`Record::size_bytes`) as the store keeps it: keys and
/// values are bounded far below 4 GiB by the request size limit.
fn record_size(record: &Record) -> u32 {
    u32::try_from(record.size_bytes()).expect("store: a record is smaller than 4 GiB")
}

/// Compaction never removes records above the compact revision, and every
/// write transaction above it left records with sub revisions 0, 1, 2, ...
/// at consecutive main revisions up to the current revision. Records at or
/// below the compact revision must still lie in [2, compact revision].
fn check_revisions_are_contiguous<V>(
    current_revision: i64,
    compact_revision: i64,
    revision_log: &BTreeMap<Revision, V>,
) -> Result<(), Error> {
    if current_revision == i64::MAX {
        return Err(Error::Corrupt(
            "current revision has no successor".to_string(),
        ));
    }
    if let Some((revision, _)) = revision_log.first_key_value() {
        if revision.main <= INITIAL_REVISION {
            return Err(Error::Corrupt(format!(
                "record at {revision} is before the first write"
            )));
        }
    }
    if let Some(revision) = revision_log.keys().find(|revision| revision.sub < 0) {
        return Err(Error::Corrupt(format!(
            "record at {revision} has a negative sub revision"
        )));
    }
    if let Some((revision, _)) = revision_log.last_key_value() {
        if revision.main > current_revision {
            return Err(Error::Corrupt(format!(
                "record at {revision} is after the current revision"
            )));
        }
    }
    // Cannot overflow: compact revision <= current revision < i64::MAX.
    let first_main = compact_revision.max(INITIAL_REVISION) + 1;
    // The next revision expected above the compact revision.
    let mut expected = Revision::new(first_main, 0);
    for &revision in revision_log
        .range(Revision::new(first_main, 0)..)
        .map(|(revision, _)| revision)
    {
        let starts_next_main = expected.sub > 0 && revision == Revision::new(expected.main + 1, 0);
        if revision == expected || starts_next_main {
            expected = Revision::new(revision.main, revision.sub + 1);
        } else {
            return Err(Error::Corrupt(format!(
                "record at {revision}, expected {expected}"
            )));
        }
    }
    let complete = if current_revision < first_main {
        expected == Revision::new(first_main, 0)
    } else {
        expected.main == current_revision && expected.sub > 0
    };
    if !complete {
        return Err(Error::Corrupt(format!(
            "records above the compact revision end before {expected}, current revision is {current_revision}"
        )));
    }
    Ok(())
}
