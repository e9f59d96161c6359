//! The on-disk MVCC backend (issue 11): the revision log in etcd's layout,
//! in a redb database on the disk seam (`storage::backend`).
//!
//! Tables, as etcd's bbolt buckets:
//! - `key`: `mvcc::layout::key_entry`, revision key → `mvccpb.KeyValue`,
//!   each value preceded by the CRC32C of key and value
//!   (`CHECKSUM_BYTES`): redb checks its pages only when it repairs, so
//!   bit rot in an entry would otherwise be served; here it is refused
//!   (`Error::Corrupt`) on every read.
//!
//! redb 5.0 panics on some damaged pages it reads (its allocator state,
//! found by the bit-rot proptest in `tests.rs`) rather than returning an
//! error; every call into it here is contained (`contained`), so such
//! damage is reported as corruption too, without the panic hook printing
//! a backtrace that would read as a crash.
//! - `meta`: `consistent_index` (the last raft index whose changes the
//!   database holds, 8 bytes big endian), `finishedCompactRev` (revision
//!   key bytes), and the rest of the state at the consistent index
//!   (`StateMeta`: its raft term and configuration, the MVCC current
//!   revision, members, alarms, leases and auth), written in the same
//!   transaction as the changes they describe, each behind a checksum
//!   too. Members, alarms, leases and auth are written only when they
//!   changed (`StateMeta::state` is `None` otherwise).
//!
//! A `Batch` is one redb write transaction, durable when `commit` returns.
//! Commits must come from one task at a time: redb's `begin_write` waits
//! on a std condition variable while another write transaction is live,
//! which under madsim's single thread would hang the simulation.
//!
//! The raft loop's apply rounds reach it through `Writer`; recovery
//! starts from it, rebuilding the key index by a `scan` of every
//! revision (each checked), without keeping the values. Reads of values
//! the store no longer holds in memory come here (`get`, `scan`, through
//! `Writer::cold_log`), in read transactions that never wait for a
//! commit.

pub mod writer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::mvcc::layout::{key_entry, parse_key_entry, revision_key};
use crate::mvcc::{Changes, Record, Revision, NEVER_COMPACTED};
use crate::storage::backend::DiskBackend;
use crate::storage::snapshot::{ReadAt, SnapshotReader};
use crate::storage::Disk;

pub use writer::{Durable, Stopped, View, Writer};

const KEY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CONSISTENT_INDEX: &str = "consistent_index";
const FINISHED_COMPACT_REV: &str = "finishedCompactRev";
const TERM: &str = "term";
const CONF_STATE: &str = "confState";
const CURRENT_REVISION: &str = "detcdCurrentRevision";
const STATE: &str = "detcdState";
/// Every key of the meta table.
const META_KEYS: [&str; 6] = [
    CONSISTENT_INDEX,
    FINISHED_COMPACT_REV,
    TERM,
    CONF_STATE,
    CURRENT_REVISION,
    STATE,
];
/// Revisions a backend built from a snapshot commits at once, in bytes:
/// a snapshot larger than memory is written in pieces of this.
pub const SNAPSHOT_BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// Rounds of redb's compaction one `compact` runs at most; each moves
/// pages towards the start of the file and commits. It stops earlier once
/// nothing moves.
const COMPACTION_ROUNDS_MAX: usize = 64;
/// A stored value's CRC32C (big endian), before the value.
pub const CHECKSUM_BYTES: usize = 4;
/// The memory redb may use to cache pages (its default is 1 GiB). The
/// values of a large store live on disk, not in memory: reads of them
/// beyond this go through the OS's page cache, as etcd's mmap does.
pub const CACHE_BYTES: usize = 128 * 1024 * 1024;

/// Why the backend failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The engine or the disk under it failed (a full disk, an I/O error,
    /// a database it cannot open).
    Engine(String),
    /// Stored bytes failed their checksum or could not be parsed: the data
    /// cannot be trusted.
    Corrupt(String),
    /// Compaction cannot run while a view is open (a backup or hash being
    /// taken); nothing changed, and it may be asked again.
    Busy,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Engine(why) => write!(f, "backend: {why}"),
            Error::Corrupt(why) => write!(f, "backend data is corrupt: {why}"),
            Error::Busy => write!(f, "backend: a view is open; compaction must wait"),
        }
    }
}

impl std::error::Error for Error {}

fn engine(error: impl fmt::Display) -> Error {
    Error::Engine(error.to_string())
}

/// The changes one raft apply batch made, up to `consistent_index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub consistent_index: u64,
    /// New revisions, in order.
    pub records: Vec<(Revision, Record)>,
    /// A compaction: its revision, and the revisions it removes.
    pub compaction: Option<(i64, Vec<Revision>)>,
    /// The rest of the state as of `consistent_index`; `None` leaves the
    /// stored one.
    pub meta: Option<StateMeta>,
}

impl Batch {
    /// Adds the later `next` to this batch: one commit writes both.
    pub fn extend(&mut self, next: Batch) {
        let mut changes = Changes {
            records: std::mem::take(&mut self.records),
            compaction: self.compaction.take(),
        };
        changes.extend(Changes {
            records: next.records,
            compaction: next.compaction,
        });
        self.records = changes.records;
        self.compaction = changes.compaction;
        self.consistent_index = self.consistent_index.max(next.consistent_index);
        if let Some(next) = next.meta {
            // Parts left out of the later batch are the earlier one's.
            let state = next
                .state
                .or_else(|| self.meta.take().and_then(|earlier| earlier.state));
            self.meta = Some(StateMeta { state, ..next });
        }
    }
}

/// What the revision log alone does not say about the state at the
/// consistent index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateMeta {
    /// The raft term of the entry at the consistent index.
    pub term: u64,
    /// raft's configuration there (`eraftpb.ConfState`).
    pub conf_state: Vec<u8>,
    /// The MVCC current revision (the newest record may be compacted away).
    pub current_revision: i64,
    /// Members, alarms, leases and auth (`StateMachine::encode_parts`), as
    /// of the last change to them; `None` in a batch: unchanged, the
    /// stored ones stand. Always `Some` when loaded.
    pub state: Option<Vec<u8>>,
}

/// What a backend holds besides its revisions (`scan` reads those),
/// read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub consistent_index: u64,
    pub compact_revision: i64,
    pub meta: Option<StateMeta>,
}

/// The revision log on disk.
pub struct Backend {
    /// `None` only while dropping.
    db: Option<Database>,
}

impl Drop for Backend {
    /// redb closes the database as it drops (a last commit that records
    /// its allocator state), and may panic there on damaged pages too.
    fn drop(&mut self) {
        let db = self.db.take();
        if let Err(error) = contained("closing the database", || {
            drop(db);
            Ok(())
        }) {
            tracing::error!(%error, "the backend did not close cleanly");
        }
    }
}

impl Backend {
    /// Opens the database at `path`, or creates an empty one if there is no
    /// file. A new database is made under a temporary name and renamed
    /// into place once redb has written it whole: a crash while it is made
    /// leaves no file at `path`, never a torn one redb cannot read.
    pub fn open(disk: Arc<dyn Disk>, path: &Path) -> Result<Backend, Error> {
        let backend = match DiskBackend::open(disk.clone(), path) {
            Ok(backend) => backend,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                create(&disk, path)?;
                DiskBackend::open(disk, path).map_err(engine)?
            }
            Err(error) => return Err(engine(error)),
        };
        let db = contained("opening the database", || {
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create_with_backend(backend)
                .map_err(engine)
        })?;
        Ok(Backend { db: Some(db) })
    }

    /// Rewrites the file smaller (etcd's defragmentation): pages move
    /// towards its start and the free space left at its end is cut off.
    /// What the database holds does not change, and each round commits as
    /// a transaction, so a crash during it leaves the data as it was.
    pub fn compact(&mut self) -> Result<(), Error> {
        for _ in 0..COMPACTION_ROUNDS_MAX {
            if !self.compact_round()? {
                break;
            }
        }
        Ok(())
    }

    /// One round of `compact`; false once nothing moves. Reads wait for
    /// a round (redb compacts with no read transaction open), not for the
    /// whole compaction.
    pub fn compact_round(&mut self) -> Result<bool, Error> {
        let db = self
            .db
            .as_mut()
            .expect("the database is open until dropped");
        contained("compacting the database", || {
            match db.compact(redb::CompactionMode::Balanced) {
                Err(redb::CompactionError::TransactionInProgress) => Err(Error::Busy),
                compacted => compacted.map_err(engine),
            }
        })
    }

    fn db(&self) -> &Database {
        self.db
            .as_ref()
            .expect("the database is open until dropped")
    }

    /// Writes `batch` in one transaction, durable on return.
    pub fn commit(&self, batch: &Batch) -> Result<(), Error> {
        self.commit_in_pieces(batch, usize::MAX, &mut |_| {})
    }

    /// Writes `batch`, durable on return, deleting its compaction's
    /// revisions at most `limit` to a transaction (etcd's
    /// `--experimental-compaction-batch-limit`), so no one transaction
    /// grows with the history a compaction drops. `after_piece` hears how
    /// many revisions each transaction but the last deleted, once it is
    /// committed.
    ///
    /// All or nothing still: every transaction but the last commits
    /// without an fsync (redb's `Durability::None`), which redb keeps from
    /// reusing the pages of the last durable commit; a crash before the
    /// last one's fsync reopens the database as it was before `batch`.
    /// Readers that begin meanwhile may see a piece; `Writer::view` waits
    /// for the whole.
    pub fn commit_in_pieces(
        &self,
        batch: &Batch,
        limit: usize,
        after_piece: &mut dyn FnMut(usize),
    ) -> Result<(), Error> {
        contained("a commit", || {
            self.commit_batch(batch, true, limit, after_piece)
        })
    }

    /// Writes `batch` without the fsync that would make it durable: the
    /// simulator's crash point inside a commit.
    #[cfg(any(madsim, test))]
    pub fn commit_unsynced(&self, batch: &Batch, limit: usize) -> Result<(), Error> {
        contained("a commit", || {
            self.commit_batch(batch, false, limit, &mut |_| {})
        })
    }

    fn commit_batch(
        &self,
        batch: &Batch,
        synced: bool,
        limit: usize,
        after_piece: &mut dyn FnMut(usize),
    ) -> Result<(), Error> {
        let removed = batch
            .compaction
            .as_ref()
            .map_or(&[][..], |(_, removed)| removed.as_slice());
        let mut pieces = removed.chunks(limit.max(1));
        let mut first = true;
        // The revisions are inserted in the first transaction, before any
        // is removed: a compaction may drop records of its own batch.
        while pieces.len() > 1 {
            let piece = pieces.next().expect("more than one piece left");
            let mut write = self.db().begin_write().map_err(engine)?;
            write
                .set_durability(redb::Durability::None)
                .map_err(engine)?;
            {
                let mut keys = write.open_table(KEY).map_err(engine)?;
                if std::mem::take(&mut first) {
                    insert_records(&mut keys, &batch.records)?;
                }
                remove_revisions(&mut keys, piece)?;
            }
            write.commit().map_err(engine)?;
            after_piece(piece.len());
        }
        let last_piece = pieces.next().unwrap_or(&[]);
        let mut write = self.db().begin_write().map_err(engine)?;
        if !synced {
            write
                .set_durability(redb::Durability::None)
                .map_err(engine)?;
        }
        {
            let mut keys = write.open_table(KEY).map_err(engine)?;
            if first {
                insert_records(&mut keys, &batch.records)?;
            }
            remove_revisions(&mut keys, last_piece)?;
            let mut meta = write.open_table(META).map_err(engine)?;
            if let Some((compacted, _)) = &batch.compaction {
                let finished = revision_key(Revision::new(*compacted, 0));
                put_meta(&mut meta, FINISHED_COMPACT_REV, &finished)?;
            }
            put_meta(
                &mut meta,
                CONSISTENT_INDEX,
                &batch.consistent_index.to_be_bytes(),
            )?;
            if let Some(state) = &batch.meta {
                put_meta(&mut meta, TERM, &state.term.to_be_bytes())?;
                put_meta(&mut meta, CONF_STATE, &state.conf_state)?;
                put_meta(
                    &mut meta,
                    CURRENT_REVISION,
                    &state.current_revision.to_be_bytes(),
                )?;
                if let Some(parts) = &state.state {
                    put_meta(&mut meta, STATE, parts)?;
                }
            }
        }
        write.commit().map_err(engine)
    }

    /// What the backend holds besides its revisions, checked.
    pub fn load(&self) -> Result<Loaded, Error> {
        self.reading("loading the meta table", |reader| reader.load())
    }

    /// A consistent read of everything the backend holds as of its last
    /// commit, for as long as it lives (a redb read transaction): commits
    /// go on meanwhile, unseen by it.
    pub fn view(&self) -> Result<ReadView, Error> {
        contained("starting a read", || {
            let read = self.db().begin_read().map_err(engine)?;
            let loaded = Reader(&read).load()?;
            Ok(ReadView { read, loaded })
        })
    }

    /// Runs `call` on a reader of a new read transaction; a panic in redb
    /// is corruption (`what` failed).
    fn reading<T>(
        &self,
        what: &str,
        call: impl FnOnce(Reader<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        contained(what, || {
            let read = self.db().begin_read().map_err(engine)?;
            call(Reader(&read))
        })
    }

    /// Replaces the database at `path` by one holding exactly `batch`
    /// (tests, and states made offline). The new file is made whole and
    /// durable under a temporary name (`build_at`), then renamed over the
    /// old one: a crash leaves one or the other. No `Backend` may be open
    /// on `path`.
    pub fn replace(disk: Arc<dyn Disk>, path: &Path, batch: &Batch) -> Result<(), Error> {
        let temp = temp_path(path)?;
        Backend::build_at(disk.clone(), &temp, |made| made.commit(batch))?;
        disk.rename(&temp, path).map_err(engine)?;
        disk.sync_dir(path.parent().expect("temp_path checked the parent"))
            .map_err(engine)
    }

    /// Makes a new database at `path` (any file there is removed first),
    /// filled by `fill`, closed and durable on return.
    pub fn build_at(
        disk: Arc<dyn Disk>,
        path: &Path,
        fill: impl FnOnce(&Backend) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let _ = disk.remove(path);
        let backend = DiskBackend::create(disk.clone(), path).map_err(engine)?;
        let db = contained("making a database", || {
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create_with_backend(backend)
                .map_err(engine)
        })?;
        let made = Backend { db: Some(db) };
        let filled = fill(&made);
        drop(made);
        if let Err(error) = filled {
            // Half a database is no one's: it goes rather than lie there.
            let _ = disk.remove(path);
            return Err(error);
        }
        disk.sync(path).map_err(engine)
    }

    /// Writes the state a snapshot stream holds into this (new, empty)
    /// database, piece by piece: revisions commit in batches of about
    /// `SNAPSHOT_BATCH_BYTES`, unsynced (the file is synced whole once
    /// made), and the consistent index and the rest of the state last.
    /// The stream is read to its end, each piece checked, and `visit`
    /// sees each revision (a restore rebuilds the key index from them,
    /// rather than from a second read of the database). Its durable point.
    pub fn fill_from_snapshot<R: ReadAt>(
        &self,
        reader: &mut SnapshotReader<R>,
        visit: &mut dyn FnMut(Revision, &Record) -> Result<(), Error>,
    ) -> Result<Durable, Error> {
        let header = reader.header().clone();
        let corrupt = |why: String| Error::Corrupt(format!("the snapshot: {why}"));
        let mut batch = Batch {
            consistent_index: header.index,
            ..Batch::default()
        };
        let mut batch_bytes = 0;
        while let Some(records) = reader.next_records().map_err(corrupt)? {
            for (revision, record) in &records {
                visit(*revision, record)?;
            }
            batch_bytes += records
                .iter()
                .map(|(_, record)| record.size_bytes())
                .sum::<u64>();
            batch.records.extend(records);
            if batch_bytes >= SNAPSHOT_BATCH_BYTES {
                contained("a commit", || {
                    self.commit_batch(&batch, false, usize::MAX, &mut |_| {})
                })?;
                batch.records.clear();
                batch_bytes = 0;
            }
        }
        batch.compaction = (header.compact_revision != NEVER_COMPACTED)
            .then(|| (header.compact_revision, Vec::new()));
        batch.meta = Some(StateMeta {
            term: header.term,
            conf_state: header.conf_state.clone(),
            current_revision: header.current_revision,
            state: Some(header.parts.clone()),
        });
        self.commit(&batch)?;
        Ok(Durable {
            index: header.index,
            term: header.term,
            conf_state: header.conf_state,
            revision: header.current_revision,
        })
    }

    /// The last raft index whose changes are stored (0: none).
    pub fn consistent_index(&self) -> Result<u64, Error> {
        self.reading(CONSISTENT_INDEX, |reader| reader.consistent_index())
    }

    /// Every stored revision, in order, each checked.
    pub fn records(&self) -> Result<Vec<(Revision, Record)>, Error> {
        let mut records = Vec::new();
        self.scan(
            Revision::new(i64::MIN, 0),
            i64::MAX,
            &mut |revision, record| records.push((revision, record)),
        )?;
        Ok(records)
    }

    /// Visits the stored revisions from `from` through main revision
    /// `through_main`, in order, each checked, in one read transaction.
    pub fn scan(
        &self,
        from: Revision,
        through_main: i64,
        visit: &mut dyn FnMut(Revision, Record),
    ) -> Result<(), Error> {
        self.reading("reading the revisions", |reader| {
            reader.scan(from, through_main, visit)
        })
    }

    /// The records at `revisions`, in the same order, each checked, in one
    /// read transaction; a revision not stored is corruption (the caller
    /// knows it was written).
    pub fn get(&self, revisions: &[Revision]) -> Result<Vec<Record>, Error> {
        self.reading("reading revisions", |reader| reader.get(revisions))
    }
}

/// A consistent read of the whole backend at one commit (`Backend::view`).
pub struct ReadView {
    read: redb::ReadTransaction,
    loaded: Loaded,
}

impl ReadView {
    /// What the backend held besides its revisions, at the view's commit.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// `Backend::scan`, as of the view's commit.
    pub fn scan(
        &self,
        from: Revision,
        through_main: i64,
        visit: &mut dyn FnMut(Revision, Record),
    ) -> Result<(), Error> {
        contained("reading the revisions", || {
            Reader(&self.read).scan(from, through_main, visit)
        })
    }

    /// The revisions from `from` on, in order, each checked, up to the
    /// first that brings their size to `budget_bytes` (at least one, if
    /// any is left): a snapshot is read from a view a piece at a time.
    pub fn records_from(
        &self,
        from: Revision,
        budget_bytes: u64,
    ) -> Result<Vec<(Revision, Record)>, Error> {
        let mut records = Vec::new();
        let mut bytes = 0;
        contained("reading the revisions", || {
            Reader(&self.read).scan_while(from, i64::MAX, &mut |revision, record| {
                bytes += record.size_bytes();
                records.push((revision, record));
                bytes < budget_bytes
            })
        })?;
        Ok(records)
    }

    /// `Backend::get`, as of the view's commit.
    pub fn get(&self, revisions: &[Revision]) -> Result<Vec<Record>, Error> {
        contained("reading revisions", || Reader(&self.read).get(revisions))
    }
}

/// The reads of one read transaction.
struct Reader<'a>(&'a redb::ReadTransaction);

impl Reader<'_> {
    fn load(&self) -> Result<Loaded, Error> {
        // A flipped bit in a meta key would hide its value (read as never
        // written): every key must be one this build writes.
        let names = self.meta_names()?;
        if let Some(unknown) = names
            .iter()
            .find(|name| !META_KEYS.contains(&name.as_str()))
        {
            return Err(Error::Corrupt(format!(
                "meta has an unknown key {unknown:?}"
            )));
        }
        let consistent_index = self.consistent_index()?;
        if !names.is_empty() && !names.iter().any(|name| name == CONSISTENT_INDEX) {
            return Err(Error::Corrupt(format!(
                "meta has {names:?} but no {CONSISTENT_INDEX}"
            )));
        }
        let compact_revision = self.compact_revision()?;
        let meta = match self.meta(STATE)? {
            None => None,
            Some(state) => {
                let missing =
                    |name: &str| Error::Corrupt(format!("meta has {STATE} but no {name}"));
                let term = self.meta(TERM)?.ok_or_else(|| missing(TERM))?;
                let current_revision = self
                    .meta(CURRENT_REVISION)?
                    .ok_or_else(|| missing(CURRENT_REVISION))?;
                Some(StateMeta {
                    term: u64::from_be_bytes(eight_bytes(TERM, &term)?),
                    conf_state: self.meta(CONF_STATE)?.ok_or_else(|| missing(CONF_STATE))?,
                    current_revision: i64::from_be_bytes(eight_bytes(
                        CURRENT_REVISION,
                        &current_revision,
                    )?),
                    state: Some(state),
                })
            }
        };
        Ok(Loaded {
            consistent_index,
            compact_revision,
            meta,
        })
    }

    fn consistent_index(&self) -> Result<u64, Error> {
        match self.meta(CONSISTENT_INDEX)? {
            None => Ok(0),
            Some(bytes) => Ok(u64::from_be_bytes(eight_bytes(CONSISTENT_INDEX, &bytes)?)),
        }
    }

    /// The revision of the last finished compaction (`NEVER_COMPACTED`).
    fn compact_revision(&self) -> Result<i64, Error> {
        match self.meta(FINISHED_COMPACT_REV)? {
            None => Ok(NEVER_COMPACTED),
            Some(bytes) => crate::mvcc::layout::parse_revision_key(&bytes)
                .map(|(revision, _)| revision.main)
                .map_err(Error::Corrupt),
        }
    }

    /// Visits the stored revisions from `from` through main revision
    /// `through_main`, in order, each checked, in one read transaction.
    fn scan(
        &self,
        from: Revision,
        through_main: i64,
        visit: &mut dyn FnMut(Revision, Record),
    ) -> Result<(), Error> {
        self.scan_while(from, through_main, &mut |revision, record| {
            visit(revision, record);
            true
        })
    }

    /// `scan`, stopping after the first record `visit` answers false for.
    fn scan_while(
        &self,
        from: Revision,
        through_main: i64,
        visit: &mut dyn FnMut(Revision, Record) -> bool,
    ) -> Result<(), Error> {
        {
            let keys = match self.0.open_table(KEY) {
                Ok(keys) => keys,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(error) => return Err(engine(error)),
            };
            // Revision keys are big-endian bytes: negative revisions
            // (never stored) would sort after every stored one.
            if through_main < 0 {
                return Ok(());
            }
            let start = revision_key(from.max(Revision::new(0, 0)));
            let range = match through_main.checked_add(1) {
                Some(end) => {
                    let end = revision_key(Revision::new(end, 0));
                    keys.range(start.as_slice()..end.as_slice())
                }
                None => keys.range(start.as_slice()..),
            };
            for entry in range.map_err(engine)? {
                let (key, value) = entry.map_err(engine)?;
                let (revision, record) = checked_entry(key.value(), value.value())?;
                if !visit(revision, record) {
                    break;
                }
            }
            Ok(())
        }
    }

    /// The records at `revisions`, in the same order, each checked, in one
    /// read transaction; a revision not stored is corruption (the caller
    /// knows it was written).
    fn get(&self, revisions: &[Revision]) -> Result<Vec<Record>, Error> {
        {
            let keys = self.0.open_table(KEY).map_err(engine)?;
            let mut records = Vec::with_capacity(revisions.len());
            for &revision in revisions {
                // A put's key is the revision; a tombstone's adds a mark.
                let key = revision_key(revision);
                let found = keys
                    .range(key.as_slice()..)
                    .map_err(engine)?
                    .next()
                    .transpose()
                    .map_err(engine)?;
                let record = match found {
                    Some((stored_key, value)) => {
                        let (stored, record) = checked_entry(stored_key.value(), value.value())?;
                        (stored == revision).then_some(record)
                    }
                    None => None,
                };
                records.push(record.ok_or_else(|| {
                    Error::Corrupt(format!("the value at revision {revision} is missing"))
                })?);
            }
            Ok(records)
        }
    }

    fn meta_names(&self) -> Result<Vec<String>, Error> {
        let meta = match self.0.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(engine(error)),
        };
        let mut names = Vec::new();
        for entry in meta.iter().map_err(engine)? {
            let (name, _) = entry.map_err(engine)?;
            names.push(name.value().to_string());
        }
        Ok(names)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let meta = match self.0.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(engine(error)),
        };
        let Some(stored) = meta.get(name).map_err(engine)? else {
            return Ok(None);
        };
        checked(name.as_bytes(), stored.value())
            .map(|value| Some(value.to_vec()))
            .ok_or_else(|| Error::Corrupt(format!("meta {name} fails its checksum")))
    }
}

/// Makes an empty database at `path`: written under a temporary name,
/// closed cleanly (synced), renamed, and the rename made durable.
fn create(disk: &Arc<dyn Disk>, path: &Path) -> Result<(), Error> {
    let temp = temp_path(path)?;
    let dir = path.parent().expect("temp_path checked the parent");
    let backend = DiskBackend::create(disk.clone(), &temp).map_err(engine)?;
    let db = redb::Builder::new()
        .create_with_backend(backend)
        .map_err(engine)?;
    let write = db.begin_write().map_err(engine)?;
    write.open_table(META).map_err(engine)?;
    write.commit().map_err(engine)?;
    drop(db);
    disk.sync(&temp).map_err(engine)?;
    disk.rename(&temp, path).map_err(engine)?;
    disk.sync_dir(dir).map_err(engine)
}

/// Where a new database for `path` is made before it is renamed there.
pub fn temp_path(path: &Path) -> Result<std::path::PathBuf, Error> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Engine(format!("{} has no parent", path.display())))?;
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    Ok(dir.join(temp_name))
}

fn eight_bytes(name: &str, bytes: &[u8]) -> Result<[u8; 8], Error> {
    bytes
        .try_into()
        .map_err(|_| Error::Corrupt(format!("{name} is {} bytes", bytes.len())))
}

thread_local! {
    /// Set while `contained` runs a call into redb on this thread.
    static CONTAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps the panic hook from printing (with a backtrace) a panic that
/// `contained` turns into a corruption error: the error says it all, and
/// a backtrace on stderr reads as a crash. Other panics print as before;
/// contained ones are logged at debug level.
fn quiet_contained_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINING.with(std::cell::Cell::get) {
                tracing::debug!(%info, "the storage engine panicked (reported as corruption)");
            } else {
                previous(info)
            }
        }));
    });
}

/// Runs `call` into redb, a panic in it reported as corruption (`what`
/// failed).
fn contained<T>(what: &str, call: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    quiet_contained_panics();
    let outer = CONTAINING.with(|containing| containing.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    CONTAINING.with(|containing| containing.set(outer));
    result.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Corrupt(format!(
            "{what}: the storage engine failed on its data ({message})"
        )))
    })
}

/// The CRC32C of an entry's key and value.
fn checksum(key: &[u8], value: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(key), value)
}

/// `value` preceded by the checksum of `key` and `value`.
fn checksummed(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(CHECKSUM_BYTES + value.len());
    stored.extend_from_slice(&checksum(key, value).to_be_bytes());
    stored.extend_from_slice(value);
    stored
}

/// Writes a `meta` value behind its checksum, as `key` values are.
/// Writes `records` into the key table, each value behind its checksum.
fn insert_records(
    keys: &mut redb::Table<&[u8], &[u8]>,
    records: &[(Revision, Record)],
) -> Result<(), Error> {
    for (revision, record) in records {
        let (key, value) = key_entry(*revision, record);
        keys.insert(key.as_slice(), checksummed(&key, &value).as_slice())
            .map_err(engine)?;
    }
    Ok(())
}

/// Deletes `revisions` from the key table, as a put or a tombstone.
fn remove_revisions(
    keys: &mut redb::Table<&[u8], &[u8]>,
    revisions: &[Revision],
) -> Result<(), Error> {
    for revision in revisions {
        for tombstone in [false, true] {
            let mut key = revision_key(*revision);
            if tombstone {
                key.push(crate::mvcc::layout::TOMBSTONE_MARK);
            }
            keys.remove(key.as_slice()).map_err(engine)?;
        }
    }
    Ok(())
}

fn put_meta(meta: &mut redb::Table<&str, &[u8]>, name: &str, value: &[u8]) -> Result<(), Error> {
    meta.insert(name, checksummed(name.as_bytes(), value).as_slice())
        .map(|_| ())
        .map_err(engine)
}

/// The value in `stored` if its checksum (of `key` and the value) holds.
fn checked<'a>(key: &[u8], stored: &'a [u8]) -> Option<&'a [u8]> {
    if stored.len() < CHECKSUM_BYTES {
        return None;
    }
    let (sum, value) = stored.split_at(CHECKSUM_BYTES);
    let sum = u32::from_be_bytes(sum.try_into().expect("checksum bytes"));
    (checksum(key, value) == sum).then_some(value)
}

/// A stored `key` entry, its checksum verified.
fn checked_entry(key: &[u8], stored: &[u8]) -> Result<(Revision, Record), Error> {
    let describe = || {
        crate::mvcc::layout::parse_revision_key(key)
            .map(|(revision, _)| format!("the value at revision {revision}"))
            .unwrap_or_else(|_| format!("the entry under key {key:?}"))
    };
    let value = checked(key, stored)
        .ok_or_else(|| Error::Corrupt(format!("{} fails its checksum", describe())))?;
    parse_key_entry(key, value).map_err(Error::Corrupt)
}

#[cfg(test)]
mod tests;
