//! `Writer`: the one task that commits to the backend, off the raft loop.
//!
//! The loop hands over what each apply round changed (`submit`, which
//! merges into the one pending batch and never waits); the writer task
//! commits the pending batch every `COMMIT_INTERVAL` while there is one,
//! as etcd's backend commits its batch transaction every 100 ms. So a
//! backend commit never holds up the loop's ticks and messages, and one
//! fsync covers every round of an interval. Durability does not wait for
//! it: an entry is durable once in the WAL, and recovery replays the WAL
//! from the backend's consistent index (`durable`).
//!
//! The backend sits behind a mutex that a commit holds for its duration;
//! `flush` and `replace` take it too, so commits stay one at a time (redb
//! allows one writer) and in order.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Backend, Batch, Error};
use crate::clock::Clock;
use crate::published::Published;
use crate::storage::Disk;

/// How long changes gather before one commit writes them (etcd's
/// `--backend-batch-interval` default).
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// The newest state the backend holds durably.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// The consistent index: every entry up to it is in the backend.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// raft's configuration at `index` (`eraftpb.ConfState`).
    pub conf_state: Vec<u8>,
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
    /// `None` only while `replace` swaps the file.
    backend: Mutex<Option<Backend>>,
    pending: Mutex<Option<Batch>>,
    /// Counts submissions, to wake the writer task.
    submitted: Arc<Published<u64>>,
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
                backend: Mutex::new(Some(backend)),
                pending: Mutex::new(None),
                submitted: Published::new(0),
                durable: Mutex::new(durable),
                failure: Mutex::new(None),
                member,
            }),
        }
    }

    /// Adds `batch` to what the next commit writes. Never waits.
    pub fn submit(&self, batch: Batch) {
        {
            let mut pending = self.inner.pending.lock().expect("pending lock");
            match pending.as_mut() {
                Some(earlier) => earlier.extend(batch),
                None => *pending = Some(batch),
            }
        }
        let submitted = self.inner.submitted.get();
        self.inner.submitted.set(submitted.wrapping_add(1));
    }

    /// What the backend holds durably now.
    pub fn durable(&self) -> Durable {
        self.inner.durable.lock().expect("durable lock").clone()
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
        let mut submitted = self.inner.submitted.subscribe();
        loop {
            // A batch submitted before this task first ran (the loop
            // replays the WAL at once on a restart) is pending already.
            let pending = self.inner.pending.lock().expect("pending lock").is_some();
            if !pending {
                submitted.changed().await;
            }
            clock.sleep(COMMIT_INTERVAL).await;
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

    /// Commits what is pending now.
    pub async fn flush(&self) -> Result<(), Error> {
        let inner = self.inner.clone();
        crate::storage::blocking::run(move || inner.commit_pending()).await
    }

    /// Commits what is pending, then compacts the file
    /// (Maintenance.Defragment). Commits wait for it; the raft loop does
    /// not (it only submits), and reads never touch the backend. A failed
    /// compaction stops the writer, as a failed commit does: the member
    /// no longer trusts the file.
    pub async fn compact(&self) -> Result<(), Error> {
        let inner = self.inner.clone();
        let compacted = crate::storage::blocking::run(move || inner.compact()).await;
        if let Err(error) = &compacted {
            tracing::error!(%error, "backend compaction failed");
            *self.inner.failure.lock().expect("failure lock") =
                Some(Stopped::Failed(error.to_string()));
        }
        compacted
    }

    /// Replaces everything the backend holds by `batch` (a snapshot from
    /// the leader, or a state recovered from a snapshot file), durable on
    /// return. What was pending is dropped: `batch` supersedes it.
    pub async fn replace(&self, batch: Batch, durable: Durable) -> Result<(), Error> {
        let inner = self.inner.clone();
        crate::storage::blocking::run(move || inner.replace(&batch, durable)).await
    }
}

impl Inner {
    fn commit_pending(&self) -> Result<(), Error> {
        let backend = self.backend.lock().expect("backend lock");
        let Some(batch) = self.pending.lock().expect("pending lock").take() else {
            return Ok(());
        };
        let backend = backend
            .as_ref()
            .ok_or_else(|| Error::Engine("the backend was closed by a failed replace".into()))?;
        backend.commit(&batch)?;
        let mut durable = self.durable.lock().expect("durable lock");
        durable.index = batch.consistent_index;
        if let Some(meta) = batch.meta {
            durable.term = meta.term;
            durable.conf_state = meta.conf_state;
        }
        Ok(())
    }

    fn compact(&self) -> Result<(), Error> {
        self.commit_pending()?;
        let mut backend = self.backend.lock().expect("backend lock");
        backend
            .as_mut()
            .ok_or_else(|| Error::Engine("the backend was closed by a failed replace".into()))?
            .compact()
    }

    /// The crash point: the pending batch written, never synced, and the
    /// durable point left where it was.
    #[cfg(madsim)]
    fn commit_pending_unsynced(&self) -> Result<(), Error> {
        let mut backend = self.backend.lock().expect("backend lock");
        let batch = self.pending.lock().expect("pending lock").take();
        let result = match (backend.as_ref(), batch) {
            (Some(backend), Some(batch)) => backend.commit_unsynced(&batch),
            _ => Ok(()),
        };
        // The process is dead from here: redb's close in `Drop` would sync
        // the commit left unsynced, which a crash never does.
        std::mem::forget(backend.take());
        result
    }

    fn replace(&self, batch: &Batch, durable: Durable) -> Result<(), Error> {
        let mut backend = self.backend.lock().expect("backend lock");
        self.pending.lock().expect("pending lock").take();
        // The old database closes before its file is replaced.
        drop(backend.take());
        Backend::replace(self.disk.clone(), &self.path, batch)?;
        *backend = Some(Backend::open(self.disk.clone(), &self.path)?);
        *self.durable.lock().expect("durable lock") = durable;
        Ok(())
    }
}
