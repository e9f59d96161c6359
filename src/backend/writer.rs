//! `Writer`: the one task that commits to the backend, off the raft loop.
//!
//! The loop hands over what each apply round changed (`submit`, which
//! merges into the one pending batch and never waits); the writer task
//! commits the pending batch every `COMMIT_INTERVAL` while there is one,
//! or as soon as it holds `COMMIT_LIMIT` revisions, as etcd's backend
//! commits its batch transaction every 100 ms or 10,000 writes (both
//! set by etcd's flags, `set_batching`). So a
//! backend commit never holds up the loop's ticks and messages, and one
//! fsync covers every round of an interval. Durability does not wait for
//! it: an entry is durable once in the WAL, and recovery replays the WAL
//! from the backend's consistent index (`durable`).
//!
//! Commits take the `commits` mutex for their duration, and so do
//! `flush`, `compact` and `replace`: commits stay one at a time (redb
//! allows one writer) and in order. The backend itself sits behind a
//! read-write lock: commits and reads of values the store no longer holds
//! in memory (`cold_log`) share it, since a redb read transaction never
//! waits for a write one; a compaction round and `replace` hold it alone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::{Backend, Batch, Error};
use crate::clock::Clock;
use crate::mvcc::{ColdLog, Record, Revision};
use crate::published::Published;
use crate::storage::Disk;

/// How long changes gather before one commit writes them (etcd's
/// `--backend-batch-interval` default).
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// How many changed revisions commit the batch before its interval is up
/// (etcd's `--backend-batch-limit` default).
pub const COMMIT_LIMIT: usize = 10_000;
/// At most this many revisions a compaction drops are deleted in one
/// backend transaction (etcd's `--experimental-compaction-batch-limit`
/// default; `Writer::set_compaction_batch_limit`).
pub const COMPACTION_BATCH_LIMIT: usize = 1000;
/// A pending batch this large commits at once, whatever the interval and
/// limit: the loop stops taking commands at twice this
/// (`raft_node::UNFLUSHED_BYTES_MAX`), and a long interval must not hold
/// it there.
pub const COMMIT_BYTES: u64 = 32 * 1024 * 1024;

/// How scratch files beside the backend end (`Writer::scratch_path`).
pub const SCRATCH_SUFFIX: &str = ".scratch";

fn scratch_dir(backend: &Path) -> &Path {
    backend.parent().unwrap_or(Path::new("."))
}

/// Removes the scratch files a stopped process left beside the backend at
/// `backend` (backups it was streaming), and a database it was building
/// to replace the backend (`replacement_path`).
pub fn remove_scratch(disk: &dyn Disk, backend: &Path) {
    if let Ok(built) = super::temp_path(backend) {
        if disk.file_len(&built).is_ok() {
            match disk.remove(&built) {
                Ok(()) => tracing::info!(path = %built.display(), "removed a half-built database"),
                Err(error) => {
                    tracing::warn!(path = %built.display(), %error, "could not remove a half-built database")
                }
            }
        }
    }
    let dir = scratch_dir(backend);
    for name in disk.list(dir).unwrap_or_default() {
        if name.ends_with(SCRATCH_SUFFIX) {
            let path = dir.join(&name);
            match disk.remove(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed a leftover scratch file"),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "could not remove a scratch file")
                }
            }
        }
    }
}

/// The newest state the backend holds durably.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// The consistent index: every entry up to it is in the backend.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// raft's configuration at `index` (`eraftpb.ConfState`).
    pub conf_state: Vec<u8>,
    /// The MVCC current revision at `index`: every revision up to it is
    /// in the backend, so the store may let go of its values.
    pub revision: i64,
}

/// The loop's handle on the backend and its writer task.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.inner.path)
            .field("durable", &self.durable())
            .finish()
    }
}

struct Inner {
    disk: Arc<dyn Disk>,
    path: PathBuf,
    /// Held by each commit, compaction and replace: one at a time.
    commits: Mutex<()>,
    /// Views open now (`Writer::view`): compaction waits for none.
    views: Arc<std::sync::atomic::AtomicUsize>,
    /// Databases installed over the first (`install`), changed under the
    /// backend's write lock: a view of an older one reads no more.
    epoch: std::sync::atomic::AtomicU64,
    /// `None` only while `replace` swaps the file.
    backend: RwLock<Option<Backend>>,
    pending: Mutex<Option<Batch>>,
    /// Record bytes submitted and not yet committed (`Writer::unflushed_bytes`).
    unflushed: std::sync::atomic::AtomicU64,
    /// Counts submissions, to wake the writer task.
    submitted: Arc<Published<u64>>,
    /// When the pending batch is committed: after `interval`, or once it
    /// holds `limit` revisions (`Writer::set_batching`).
    batching: Mutex<(Duration, usize)>,
    /// Counts the times the pending batch reached the limit.
    filled: Arc<Published<u64>>,
    /// Revisions of a compaction deleted per transaction.
    compaction_batch_limit: std::sync::atomic::AtomicUsize,
    /// The clock and metrics the writer task reports compactions to
    /// (etcd's `db_compaction_*`), once it runs.
    observer: std::sync::OnceLock<(Clock, Arc<crate::metrics::Metrics>)>,
    durable: Mutex<Durable>,
    /// Why the writer stopped: the loop stops the member on it.
    failure: Mutex<Option<Stopped>>,
    /// This member, for the simulator's crash point.
    #[cfg_attr(not(madsim), allow(dead_code))]
    member: u64,
}

/// Why the writer task stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// A commit failed.
    Failed(String),
    /// The simulator's crash point: a commit was written, not synced.
    #[cfg(madsim)]
    CrashPoint,
}

impl Writer {
    /// A writer over the open `backend` at `path`, which holds `durable`.
    pub fn new(
        disk: Arc<dyn Disk>,
        path: &Path,
        backend: Backend,
        durable: Durable,
        member: u64,
    ) -> Writer {
        Writer {
            inner: Arc::new(Inner {
                disk,
                path: path.to_path_buf(),
                commits: Mutex::new(()),
                views: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
                epoch: std::sync::atomic::AtomicU64::new(0),
                backend: RwLock::new(Some(backend)),
                pending: Mutex::new(None),
                unflushed: std::sync::atomic::AtomicU64::new(0),
                submitted: Published::new(0),
                batching: Mutex::new((COMMIT_INTERVAL, COMMIT_LIMIT)),
                filled: Published::new(0),
                compaction_batch_limit: std::sync::atomic::AtomicUsize::new(COMPACTION_BATCH_LIMIT),
                observer: std::sync::OnceLock::new(),
                durable: Mutex::new(durable),
                failure: Mutex::new(None),
                member,
            }),
        }
    }

    /// Adds `batch` to what the next commit writes. Never waits.
    pub fn submit(&self, batch: Batch) {
        let bytes = batch_bytes(&batch);
        let unflushed =
            (self.inner.unflushed).fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
        let too_large = unflushed < COMMIT_BYTES && unflushed + bytes >= COMMIT_BYTES;
        let (_, limit) = *self.inner.batching.lock().expect("batching lock");
        let filled = {
            let mut pending = self.inner.pending.lock().expect("pending lock");
            let before = pending.as_ref().map_or(0, |batch| batch.records.len());
            match pending.as_mut() {
                Some(earlier) => earlier.extend(batch),
                None => *pending = Some(batch),
            }
            let after = pending.as_ref().map_or(0, |batch| batch.records.len());
            too_large || (before < limit && after >= limit)
        };
        if filled {
            let filled = self.inner.filled.get();
            self.inner.filled.set(filled.wrapping_add(1));
        }
        let submitted = self.inner.submitted.get();
        self.inner.submitted.set(submitted.wrapping_add(1));
    }

    /// The bytes of the revisions submitted and not yet committed: the
    /// loop takes no new commands while they pass `UNFLUSHED_BYTES_MAX`,
    /// so a writer slower than the applies holds the load back instead of
    /// letting memory grow without bound.
    pub fn unflushed_bytes(&self) -> u64 {
        self.inner
            .unflushed
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What the backend holds durably now.
    pub fn durable(&self) -> Durable {
        self.inner.durable.lock().expect("durable lock").clone()
    }

    /// Sets what the backend holds durably, as recovery found it.
    pub fn set_durable(&self, durable: Durable) {
        *self.inner.durable.lock().expect("durable lock") = durable;
    }

    /// Reads of the stored revisions, for the store's values that are no
    /// longer in memory (`mvcc::Store::attach_cold`).
    pub fn cold_log(&self) -> Arc<dyn ColdLog> {
        Arc::new(ColdReader(self.inner.clone()))
    }

    /// What the backend holds besides its revisions.
    pub fn load(&self) -> Result<super::Loaded, Error> {
        self.inner.with_backend(|backend| backend.load())
    }

    /// Commits what is pending, here and now (tests, which run no task).
    #[cfg(test)]
    pub fn flush_now(&self) -> Result<(), Error> {
        self.inner.commit_pending()
    }

    /// Every stored revision (tests).
    #[cfg(test)]
    pub fn backend_records(&self) -> Vec<(Revision, Record)> {
        self.inner
            .with_backend(|backend| backend.records())
            .expect("the records read")
    }

    /// Replaces everything the backend holds by `batch`: the database is
    /// built beside it, then installed (`install`).
    pub fn replace_now(&self, batch: &Batch, durable: Durable) -> Result<(), Error> {
        Backend::build_at(self.inner.disk.clone(), &self.replacement_path()?, |made| {
            made.commit(batch)
        })?;
        self.install(durable)
    }

    /// Where a database that is to replace the backend's is built
    /// (`Backend::build_at`), before `install`.
    pub fn replacement_path(&self) -> Result<PathBuf, Error> {
        super::temp_path(&self.inner.path)
    }

    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.inner.disk
    }

    /// A scratch file named `name` (plus `SCRATCH_SUFFIX`) beside the
    /// backend's: a backup being streamed. Recovery removes what a
    /// stopped process left (`remove_scratch`).
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        scratch_dir(&self.inner.path).join(format!("{name}{SCRATCH_SUFFIX}"))
    }

    /// Makes the database built at `replacement_path`, which holds
    /// `durable`, the backend (a snapshot from the leader, or a state
    /// recovered from a snapshot file): the old one closes, the new one is
    /// renamed over it and opened. What was pending is dropped: the new
    /// state supersedes it. Commits and reads of values wait for the swap,
    /// not for the build.
    pub fn install(&self, durable: Durable) -> Result<(), Error> {
        self.inner.install(durable)
    }

    /// The size of the backend's file (0 if it cannot be read), as etcd's
    /// Status reports its bbolt file's.
    pub fn file_bytes(&self) -> u64 {
        self.inner.disk.file_len(&self.inner.path).unwrap_or(0)
    }

    /// Why the writer stopped, if it did.
    pub fn failure(&self) -> Option<Stopped> {
        self.inner.failure.lock().expect("failure lock").clone()
    }

    /// The writer task: commits the pending batch every `COMMIT_INTERVAL`
    /// while there is one. It ends when a commit fails (`failure`).
    pub async fn run(self, clock: Clock, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.inner.observer.set((clock.clone(), metrics.clone()));
        let mut submitted = self.inner.submitted.subscribe();
        let mut filled = self.inner.filled.subscribe();
        loop {
            // A batch submitted before this task first ran (the loop
            // replays the WAL at once on a restart) is pending already.
            let pending = self.inner.pending.lock().expect("pending lock").is_some();
            if !pending {
                submitted.changed().await;
            }
            let (interval, limit) = *self.inner.batching.lock().expect("batching lock");
            // Full already (before this task first ran, or during the
            // last commit): no wait.
            let full = self.unflushed_bytes() >= COMMIT_BYTES
                || (self.inner.pending.lock().expect("pending lock"))
                    .as_ref()
                    .is_some_and(|batch| batch.records.len() >= limit);
            if !full {
                tokio::select! {
                    biased;
                    _ = filled.changed() => {}
                    () = clock.sleep(interval) => {}
                }
            }
            #[cfg(madsim)]
            if crate::probe::crash_here(
                self.inner.member,
                crate::probe::CrashPoint::BackendWrittenNotSynced,
            ) {
                let inner = self.inner.clone();
                let _ =
                    crate::storage::blocking::run(move || inner.commit_pending_unsynced()).await;
                *self.inner.failure.lock().expect("failure lock") = Some(Stopped::CrashPoint);
                return;
            }
            let started = clock.elapsed();
            let flushed = self.flush().await;
            metrics
                .backend_commit
                .observe(clock.elapsed().saturating_sub(started).as_secs_f64());
            if let Err(error) = flushed {
                tracing::error!(%error, "backend commit failed");
                *self.inner.failure.lock().expect("failure lock") =
                    Some(Stopped::Failed(error.to_string()));
                return;
            }
        }
    }

    /// `--backend-batch-interval` and `--backend-batch-limit`: the pending
    /// batch is committed `interval` after its first change, or once it
    /// holds `limit` revisions, whichever comes first.
    pub fn set_batching(&self, interval: Duration, limit: usize) {
        *self.inner.batching.lock().expect("batching lock") = (interval, limit.max(1));
    }

    /// `--experimental-compaction-batch-limit`: a compaction's revisions
    /// are deleted at most `limit` to a transaction.
    pub fn set_compaction_batch_limit(&self, limit: usize) {
        (self.inner.compaction_batch_limit)
            .store(limit.max(1), std::sync::atomic::Ordering::SeqCst);
    }

    /// Commits what is pending now.
    pub async fn flush(&self) -> Result<(), Error> {
        let inner = self.inner.clone();
        crate::storage::blocking::run(move || inner.commit_pending()).await
    }

    /// Everything the backend holds, as of now: what is pending is
    /// committed first, so the view holds every entry applied before the
    /// call. Commits go on meanwhile; compaction is refused while it lives.
    pub async fn view(&self) -> Result<View, Error> {
        self.flush().await?;
        let inner = self.inner.clone();
        crate::storage::blocking::run(move || {
            // Not between the pieces of a commit (`commit_in_pieces`): a
            // view holds whole batches only.
            let view = {
                let _commits = inner.commits.lock().expect("commits lock");
                inner.with_backend(|backend| backend.view())?
            };
            inner
                .views
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let epoch = inner.epoch.load(std::sync::atomic::Ordering::SeqCst);
            Ok(View {
                view,
                inner: inner.clone(),
                epoch,
            })
        })
        .await
    }

    /// Commits what is pending, then compacts the file
    /// (Maintenance.Defragment). Commits wait for it; the raft loop does
    /// not (it only submits), and reads of values on disk wait for one
    /// round at a time, not for the whole compaction. A failed
    /// compaction stops the writer, as a failed commit does: the member
    /// no longer trusts the file.
    pub async fn compact(&self) -> Result<(), Error> {
        let inner = self.inner.clone();
        let compacted = crate::storage::blocking::run(move || inner.compact()).await;
        match &compacted {
            // Refused while a view lives: nothing changed.
            Ok(()) | Err(Error::Busy) => {}
            Err(error) => {
                tracing::error!(%error, "backend compaction failed");
                *self.inner.failure.lock().expect("failure lock") =
                    Some(Stopped::Failed(error.to_string()));
            }
        }
        compacted
    }
}

/// A consistent read of the whole backend (`Writer::view`). Its reads
/// fail once the database it reads was replaced (`Writer::install`): the
/// file under it is then another database's, whose pages it must never
/// read as its own.
pub struct View {
    view: super::ReadView,
    inner: Arc<Inner>,
    /// `Inner::epoch` when the view began.
    epoch: u64,
}

impl Drop for View {
    fn drop(&mut self) {
        (self.inner.views).fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl View {
    /// What the backend held besides its revisions.
    pub fn loaded(&self) -> &super::Loaded {
        self.view.loaded()
    }

    /// `ReadView::records_from`.
    pub fn records_from(
        &self,
        from: Revision,
        budget_bytes: u64,
    ) -> Result<Vec<(Revision, Record)>, Error> {
        self.reading(|view| view.records_from(from, budget_bytes))
    }

    /// The next piece of revisions (about `PIECE_TARGET_BYTES`) from
    /// `cursor` on, which moves past them; empty, with the cursor `None`,
    /// once every revision was read. A snapshot, a backup and a hash read
    /// a view this way, never whole.
    pub fn next_piece(
        &self,
        cursor: &mut Option<Revision>,
    ) -> Result<Vec<(Revision, Record)>, Error> {
        let Some(from) = *cursor else {
            return Ok(Vec::new());
        };
        let budget = crate::storage::snapshot::PIECE_TARGET_BYTES as u64;
        let records = self.records_from(from, budget)?;
        *cursor = (records.last()).map(|(last, _)| Revision::new(last.main, last.sub + 1));
        Ok(records)
    }

    /// Runs `read` while the database cannot be replaced, if it was not.
    fn reading<T>(
        &self,
        read: impl FnOnce(&super::ReadView) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _open = self.inner.backend.read().expect("backend lock");
        if self.inner.epoch.load(std::sync::atomic::Ordering::SeqCst) != self.epoch {
            return Err(Error::Engine(
                "the backend was replaced (a leader's snapshot) while this view was open".into(),
            ));
        }
        read(&self.view)
    }
}

impl ColdLog for View {
    fn get(&self, revisions: &[Revision]) -> Result<Vec<Record>, String> {
        (self.reading(|view| view.get(revisions))).map_err(|error| error.to_string())
    }

    fn scan(
        &self,
        from: Revision,
        through_main: i64,
        visit: &mut dyn FnMut(Revision, Record),
    ) -> Result<(), String> {
        (self.reading(|view| view.scan(from, through_main, visit)))
            .map_err(|error| error.to_string())
    }
}

/// The store's reads of values on disk.
struct ColdReader(Arc<Inner>);

impl ColdLog for ColdReader {
    fn get(&self, revisions: &[Revision]) -> Result<Vec<Record>, String> {
        self.0
            .with_backend(|backend| backend.get(revisions))
            .map_err(|error| error.to_string())
    }

    fn scan(
        &self,
        from: Revision,
        through_main: i64,
        visit: &mut dyn FnMut(Revision, Record),
    ) -> Result<(), String> {
        self.0
            .with_backend(|backend| backend.scan(from, through_main, visit))
            .map_err(|error| error.to_string())
    }
}

/// A batch's share of `Inner::unflushed`: its records' key and value
/// bytes.
fn batch_bytes(batch: &Batch) -> u64 {
    batch
        .records
        .iter()
        .map(|(_, record)| record.size_bytes())
        .sum()
}

/// A duration in milliseconds, as etcd's compaction histograms count.
fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn closed() -> Error {
    Error::Engine("the backend was closed by a failed replace or a crash".into())
}

impl Inner {
    /// Runs `call` on the open backend, shared with commits and reads.
    fn with_backend<T>(&self, call: impl FnOnce(&Backend) -> Result<T, Error>) -> Result<T, Error> {
        let backend = self.backend.read().expect("backend lock");
        call(backend.as_ref().ok_or_else(closed)?)
    }

    fn commit_pending(&self) -> Result<(), Error> {
        let _commits = self.commits.lock().expect("commits lock");
        let Some(batch) = self.pending.lock().expect("pending lock").take() else {
            return Ok(());
        };
        let limit = (self.compaction_batch_limit).load(std::sync::atomic::Ordering::SeqCst);
        let observer = self.observer.get();
        let started = observer.map(|(clock, _)| clock.elapsed());
        let mut piece_started = started;
        self.with_backend(|backend| {
            backend.commit_in_pieces(&batch, limit, &mut |_| {
                // etcd observes each batch but the last of a compaction as
                // a pause of its writes; here only this commit waits.
                if let (Some((clock, metrics)), Some(since)) = (observer, piece_started) {
                    let now = clock.elapsed();
                    (metrics.compaction_pause).observe(millis(now.saturating_sub(since)));
                    piece_started = Some(now);
                }
            })
        })?;
        if let (Some((_, removed)), Some((clock, metrics)), Some(started)) =
            (&batch.compaction, observer, started)
        {
            if !removed.is_empty() {
                metrics.compaction_keys.inc_by(removed.len() as u64);
                (metrics.compaction_total).observe(millis(clock.elapsed().saturating_sub(started)));
            }
        }
        self.unflushed
            .fetch_sub(batch_bytes(&batch), std::sync::atomic::Ordering::SeqCst);
        let mut durable = self.durable.lock().expect("durable lock");
        durable.index = batch.consistent_index;
        if let Some(meta) = batch.meta {
            durable.term = meta.term;
            durable.conf_state = meta.conf_state;
            durable.revision = meta.current_revision;
        }
        Ok(())
    }

    fn compact(&self) -> Result<(), Error> {
        self.commit_pending()?;
        let _commits = self.commits.lock().expect("commits lock");
        for _ in 0..super::COMPACTION_ROUNDS_MAX {
            let mut backend = self.backend.write().expect("backend lock");
            // Views begin under the read lock, so none can begin now.
            if self.views.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                return Err(Error::Busy);
            }
            if !backend.as_mut().ok_or_else(closed)?.compact_round()? {
                break;
            }
        }
        Ok(())
    }

    /// The crash point: the pending batch written, never synced, and the
    /// durable point left where it was.
    #[cfg(madsim)]
    fn commit_pending_unsynced(&self) -> Result<(), Error> {
        let _commits = self.commits.lock().expect("commits lock");
        let mut backend = self.backend.write().expect("backend lock");
        let batch = self.pending.lock().expect("pending lock").take();
        let result = match (backend.as_ref(), batch) {
            (Some(backend), Some(batch)) => backend.commit_unsynced(
                &batch,
                (self.compaction_batch_limit).load(std::sync::atomic::Ordering::SeqCst),
            ),
            _ => Ok(()),
        };
        // The process is dead from here: redb's close in `Drop` would sync
        // the commit left unsynced, which a crash never does.
        std::mem::forget(backend.take());
        result
    }

    fn install(&self, durable: Durable) -> Result<(), Error> {
        let _commits = self.commits.lock().expect("commits lock");
        let mut backend = self.backend.write().expect("backend lock");
        if let Some(dropped) = self.pending.lock().expect("pending lock").take() {
            self.unflushed
                .fetch_sub(batch_bytes(&dropped), std::sync::atomic::Ordering::SeqCst);
        }
        // The old database closes before its file is replaced, and its
        // views read no more.
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        drop(backend.take());
        let built = super::temp_path(&self.path)?;
        self.disk
            .rename(&built, &self.path)
            .map_err(|error| Error::Engine(error.to_string()))?;
        self.disk
            .sync_dir(self.path.parent().expect("temp_path checked the parent"))
            .map_err(|error| Error::Engine(error.to_string()))?;
        *backend = Some(Backend::open(self.disk.clone(), &self.path)?);
        *self.durable.lock().expect("durable lock") = durable;
        Ok(())
    }
}
