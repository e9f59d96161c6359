//! Snapshots: marking the backend's durable point in the WAL, streamed
//! snapshots for lagging followers, and installing a leader's snapshot
//! crash-safely.

use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Snapshot as RaftSnapshot};
use tokio::sync::oneshot;

use crate::proto::detcdpb::SnapshotHeader;
use crate::storage::snapshot::{FileAt, SnapshotReader};
use crate::storage::wal::SnapshotMark;

use super::{durable, FatalError, RaftNode, SNAPSHOT_CATCH_UP_ENTRIES};

impl RaftNode {
    /// Snapshots, which cost little now that the backend holds the state:
    /// - every `--snapshot-count` applied entries (or when an operator
    ///   asks), the backend's durable point is marked in the WAL, and WAL
    ///   segments and log entries before the previous mark are released;
    /// - when raft needs a snapshot for a follower the log no longer
    ///   serves, a view of the backend is taken off the loop and handed to
    ///   raft (its header) and the transport (its stream) once taken.
    pub(super) async fn maybe_snapshot(&mut self) -> Result<(), FatalError> {
        self.check_backend()?;
        let applied = self.raw.raft.raft_log.applied;
        let pinned = self.log_pinned_through();
        self.raw.mut_store().compact_to_bytes(
            applied,
            super::LOG_BYTES_MAX,
            pinned,
            super::LOG_BYTES_PINNED_MAX,
        );
        self.snapshot_for_followers()?;
        if self.snapshot_policy.requested() {
            // What an operator asked for covers everything applied.
            self.backend.flush().await?;
        }
        let durable = self.backend.durable();
        if !self.snapshot_policy.due(durable.index, false) {
            if self.snapshot_policy.requested() {
                // The newest mark holds everything applied already.
                self.snapshot_policy.answer_requests();
            }
            return Ok(());
        }
        // The mark's hard state is the in-memory log's: the WAL must hold
        // all that log does first.
        self.settle().await?;
        let mut wal = self.wal.take().expect("wal present");
        let hard_state = self.raw.store().hard_state().clone();
        let previous = self.snapshot_policy.release_to();
        let save_started = self.clock.elapsed();
        let mark = SnapshotMark {
            index: durable.index,
            term: durable.term,
        };
        #[cfg(madsim)]
        let crash = self.crash_point(crate::probe::CrashPoint::BackendDurableNotMarked);
        #[cfg(not(madsim))]
        let crash: Result<(), FatalError> = Ok(());
        let snapshots = self.snapshots.clone();
        let (wal, result) = crate::storage::blocking::run(move || {
            let result = (|| -> Result<(), FatalError> {
                crash?;
                // The hard state goes first so its commit covers the mark:
                // recovery must never see a snapshot beyond the commit index.
                wal.append(&[], Some(&hard_state));
                wal.mark_snapshot(mark);
                wal.sync()?;
                wal.release_to(previous)?;
                // A leader's snapshot the backend has passed is never read
                // again: recovery starts from the newer backend.
                snapshots.prune_through(mark.index)?;
                Ok(())
            })();
            (wal, result)
        })
        .await;
        self.wal = Some(wal);
        result?;
        let took = self.clock.elapsed().saturating_sub(save_started);
        tracing::info!(
            index = mark.index,
            term = mark.term,
            took = ?took,
            "marked the backend's durable state in the WAL"
        );
        // Keep some entries for slow followers, but never more than a
        // snapshot's worth: a small --snapshot-count asks for a small log.
        let catch_up_entries = SNAPSHOT_CATCH_UP_ENTRIES.min(self.snapshot_policy.snapshot_count());
        self.raw
            .mut_store()
            .compact(mark.index.saturating_sub(catch_up_entries));
        self.snapshot_policy.saved(mark.index);
        Ok(())
    }

    /// The last log entry a follower being caught up does not need yet:
    /// the index of a snapshot being made for followers, of one being
    /// streamed, and the match of every follower the log still serves and
    /// that answered lately (on the leader; none elsewhere).
    fn log_pinned_through(&self) -> Option<u64> {
        let making = self.follower_snapshot.as_ref().map(|(applied, _)| *applied);
        let streaming = (self.snapshot_source.as_ref())
            .filter(|(source, _)| Arc::strong_count(source) > 1)
            .map(|(source, _)| source.index());
        let making = making.into_iter().chain(streaming).min();
        if self.raw.raft.state != raft::StateRole::Leader {
            return making;
        }
        let compacted = self.raw.store().compacted_index();
        let me = self.raw.raft.id;
        let followers = self.raw.raft.prs().iter().filter(|(id, _)| **id != me);
        let needed = followers.filter_map(|(_, progress)| match progress.state {
            raft::ProgressState::Snapshot => Some(progress.pending_snapshot),
            _ if progress.recent_active && progress.matched >= compacted => Some(progress.matched),
            _ => None,
        });
        making.into_iter().chain(needed).min()
    }

    /// The snapshot for followers that the log cannot catch up, kept
    /// until the log needs a newer one or it lies unused. When raft asks
    /// for one, a task takes a view of the backend (everything applied by
    /// then, committed first), so the loop never waits for a commit; raft
    /// gets it at the first turn after, and until then hears that it is
    /// temporarily unavailable. The transport streams it from the view
    /// (`ViewSnapshot`), so no member holds the whole state in memory.
    fn snapshot_for_followers(&mut self) -> Result<(), FatalError> {
        if let Some((source, used)) = &self.snapshot_source {
            let idle = self.clock.elapsed().saturating_sub(*used) >= super::SNAPSHOT_SOURCE_IDLE;
            if idle && Arc::strong_count(source) == 1 {
                tracing::debug!(
                    index = source.index(),
                    "let go of the snapshot for followers"
                );
                self.snapshot_source = None;
                self.raw.mut_store().forget_snapshot();
            }
        }
        if let Some((_, making)) = &mut self.follower_snapshot {
            match making.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => self.follower_snapshot = None,
                Ok(made) => {
                    self.follower_snapshot = None;
                    // The view could not be read: the backend cannot be
                    // trusted.
                    let source = made
                        .map_err(|why| FatalError::Backend(crate::backend::Error::Corrupt(why)))?;
                    tracing::info!(
                        index = source.header().index,
                        "made a snapshot for followers"
                    );
                    self.raw
                        .mut_store()
                        .set_snapshot(to_raft_snapshot(source.header())?);
                    self.snapshot_source = Some((source, self.clock.elapsed()));
                }
            }
        }
        if self.raw.store().take_snapshot_wanted() && self.follower_snapshot.is_none() {
            let (made, making) = oneshot::channel();
            let backend = self.backend.clone();
            tokio::spawn(async move {
                let source = match backend.view().await {
                    Ok(view) => durable::ViewSnapshot::new(view).map(Arc::new),
                    Err(error) => Err(error.to_string()),
                };
                let _ = made.send(source);
            });
            self.follower_snapshot = Some((self.raw.raft.raft_log.applied, making));
        }
        Ok(())
    }

    /// Replaces the whole state by a snapshot the leader sent, crash-safe
    /// at every step: the snapshot file is durable (the transport made it
    /// so) and the new backend built beside the old before the WAL says
    /// the log was replaced, and recovery uses the file only once the WAL
    /// does.
    pub(super) async fn install_snapshot(
        &mut self,
        raft_snapshot: RaftSnapshot,
    ) -> Result<(), FatalError> {
        // `on_ready` settled the writes of the log before the snapshot
        // (before asking raft for its Ready): the mark goes after them.
        debug_assert!(self.writes.in_flight.is_none(), "a WAL write in flight");
        // The backend is replaced whole: what it held before says nothing.
        #[cfg(madsim)]
        {
            self.stored_parts = None;
        }
        // The transport received the stream into its file, checked it
        // whole, and put its header in the message (`SnapshotHeader`).
        let header = SnapshotHeader::decode(&raft_snapshot.data[..])
            .map_err(|error| FatalError::BadSnapshot(format!("bad header: {error}")))?;
        let metadata = raft_snapshot.get_metadata();
        if (header.index, header.term) != (metadata.index, metadata.term) {
            return Err(FatalError::BadSnapshot(format!(
                "metadata says index {} term {}, the snapshot {} {}",
                metadata.index, metadata.term, header.index, header.term,
            )));
        }
        // First the new database, built beside the backend from the file,
        // its state restored as on a restart, while the old state still
        // serves reads: a file that fails its checks now stops the member
        // before the WAL says the log was replaced, so it recovers from
        // its own backend and WAL and asks again.
        let path = self.snapshots.received_path(header.term, header.index);
        let backend = self.backend.clone();
        let disk = self.snapshots.disk().clone();
        let quota_bytes = self.quota_bytes;
        let received = header.clone();
        let (mut state, _, durable) = crate::storage::blocking::run(move || {
            let mut reader = SnapshotReader::open(FileAt { disk, path })?;
            if *reader.header() != received {
                return Err("the file is not the snapshot received".to_string());
            }
            durable::build_from_snapshot(&backend, &mut reader, quota_bytes)
        })
        .await
        .map_err(FatalError::BadSnapshot)?;
        // Then the file becomes the member's and the WAL marks it: from
        // here recovery finds the snapshot file newer than the backend and
        // rebuilds the backend from it. (Until raft took it, it waited in
        // `incoming`, where recovery never looks.)
        let snapshots = self.snapshots.clone();
        let mut wal = self.wal.take().expect("wal present");
        let mark = SnapshotMark {
            index: header.index,
            term: header.term,
        };
        #[cfg(madsim)]
        let crash = self.crash_point(crate::probe::CrashPoint::SnapshotInstallHalfway);
        #[cfg(not(madsim))]
        let crash: Result<(), FatalError> = Ok(());
        let (wal, result) = crate::storage::blocking::run(move || {
            let result = (|| -> Result<(), FatalError> {
                snapshots.adopt(mark.term, mark.index)?;
                crash?;
                wal.mark_installed(mark);
                wal.sync()?;
                wal.release_to(mark.index)?;
                Ok(())
            })();
            (wal, result)
        })
        .await;
        self.wal = Some(wal);
        result?;
        // Last, the swap. Views of the old database read no more: the
        // snapshot for followers made from one goes too.
        self.snapshot_source = None;
        self.follower_snapshot = None;
        let revision = durable.revision;
        state.track_changes();
        self.shared
            .lease_timers
            .lock()
            .expect("lease timers lock")
            .reset(self.clock.elapsed(), state.leases());
        {
            // The swap is one step for readers: the old state reads values
            // from the old database, the new one from the new.
            let mut current = self.shared.state.write().expect("state lock");
            self.backend.install(durable)?;
            *current = state;
        }
        debug_assert!(
            self.shared
                .state
                .read()
                .expect("state lock")
                .store()
                .current_revision()
                == revision
        );
        tracing::info!(
            index = mark.index,
            term = mark.term,
            "installed a snapshot from the leader"
        );
        self.raw.mut_store().install_snapshot(raft_snapshot);
        // The snapshot may add, move or remove members whose changes this
        // member never applied from the log: its transport must learn them
        // from the registry, or a leader would never reach a learner added
        // there (append seed 100077, 5 members, churn).
        let peers = super::recovery::recovered_peers(&self.shared, self.shared.member_id);
        self.transport.set_peers(peers);
        self.shared.publish_revision();
        self.applied_term = mark.term;
        self.snapshot_policy.installed(mark.index);
        #[cfg(madsim)]
        self.crash_point(crate::probe::CrashPoint::SnapshotInstalled)?;
        Ok(())
    }
}

impl RaftNode {
    /// Stops the member once a read of the values on disk failed: whatever
    /// read it got an error, and the backend is not to be trusted.
    /// Also stops it once the backend's writer stopped (which closes the
    /// backend, failing the reads after it): for that reason.
    pub(super) fn check_backend(&self) -> Result<(), FatalError> {
        match self.backend.failure() {
            None => {}
            Some(crate::backend::Stopped::Failed(failure)) => {
                return Err(crate::backend::Error::Engine(failure).into())
            }
            #[cfg(madsim)]
            Some(crate::backend::Stopped::CrashPoint) => {
                return Err(FatalError::CrashPoint(
                    crate::probe::CrashPoint::BackendWrittenNotSynced,
                ))
            }
        }
        let state = self.shared.state.read().expect("state lock");
        match state.store().cold_failure() {
            None => Ok(()),
            Some(why) => Err(FatalError::Backend(crate::backend::Error::Corrupt(
                why.to_string(),
            ))),
        }
    }
}

/// raft's snapshot of the snapshot whose header is `header`: its index,
/// term and configuration, and the header as its data (the stream itself
/// travels apart, `transport::SnapshotSource`).
pub(super) fn to_raft_snapshot(header: &SnapshotHeader) -> Result<RaftSnapshot, FatalError> {
    let mut conf_state = ConfState::default();
    conf_state
        .merge_from_bytes(&header.conf_state)
        .map_err(|error| FatalError::BadSnapshot(format!("bad conf state: {error}")))?;
    let mut raft_snapshot = RaftSnapshot {
        data: prost::Message::encode_to_vec(header).into(),
        ..RaftSnapshot::default()
    };
    let metadata = raft_snapshot.mut_metadata();
    metadata.index = header.index;
    metadata.term = header.term;
    metadata.set_conf_state(conf_state);
    Ok(raft_snapshot)
}
