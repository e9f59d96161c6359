//! Snapshots: marking the backend's durable point in the WAL, images for
//! lagging followers, and installing a leader's snapshot crash-safely.

use raft::eraftpb::Snapshot as RaftSnapshot;
use tokio::sync::oneshot;

use crate::apply::StateMachine;
use crate::storage::snapshot::Snapshot;
use crate::storage::wal::SnapshotMark;

use super::{durable, FatalError, RaftNode, SNAPSHOT_CATCH_UP_ENTRIES};

impl RaftNode {
    /// Snapshots, which cost little now that the backend holds the state:
    /// - every `--snapshot-count` applied entries (or when an operator
    ///   asks), the backend's durable point is marked in the WAL, and WAL
    ///   segments and log entries before the previous mark are released;
    /// - when raft needs a snapshot for a follower the log no longer
    ///   serves, the state image is made for it off the loop, from a view
    ///   of the backend, and handed to raft once made.
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
    /// the index of a snapshot being made for followers, of one being sent,
    /// and the match of every follower the log still serves and that
    /// answered lately (on the leader; none elsewhere).
    fn log_pinned_through(&self) -> Option<u64> {
        let making = self.follower_snapshot.as_ref().map(|(applied, _)| *applied);
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

    /// The state image for followers that the log cannot catch up, kept
    /// until the log needs a newer one. When raft asks for one, a task
    /// makes it from a view of the backend (everything applied by then,
    /// committed first), so the loop never waits for a copy of the whole
    /// state; raft gets it at the first turn after it is made, and until
    /// then hears that it is temporarily unavailable.
    fn snapshot_for_followers(&mut self) -> Result<(), FatalError> {
        if let Some((_, making)) = &mut self.follower_snapshot {
            match making.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => self.follower_snapshot = None,
                Ok(made) => {
                    self.follower_snapshot = None;
                    // The view could not be read: the backend cannot be
                    // trusted.
                    let snapshot = made
                        .map_err(|why| FatalError::Backend(crate::backend::Error::Corrupt(why)))?;
                    tracing::info!(index = snapshot.index, "made a snapshot for a follower");
                    self.raw
                        .mut_store()
                        .set_snapshot(to_raft_snapshot(&snapshot));
                }
            }
        }
        if self.raw.store().take_snapshot_wanted() && self.follower_snapshot.is_none() {
            let (made, making) = oneshot::channel();
            let backend = self.backend.clone();
            tokio::spawn(async move {
                let snapshot = match backend.view().await {
                    Ok(view) => {
                        crate::storage::blocking::run(move || durable::snapshot_in(view)).await
                    }
                    Err(error) => Err(error.to_string()),
                };
                let _ = made.send(snapshot);
            });
            self.follower_snapshot = Some((self.raw.raft.raft_log.applied, making));
        }
        Ok(())
    }

    /// Replaces the whole state by a snapshot the leader sent, crash-safe
    /// at every step: the snapshot file is durable before the WAL says the
    /// log was replaced, and recovery uses the file only once the WAL does.
    pub(super) async fn install_snapshot(
        &mut self,
        raft_snapshot: RaftSnapshot,
    ) -> Result<(), FatalError> {
        let snapshot = Snapshot::decode(&raft_snapshot.data).map_err(FatalError::BadSnapshot)?;
        let state = StateMachine::decode(&snapshot.state, self.quota_bytes)
            .map_err(FatalError::BadSnapshot)?;
        if state.applied_index() != snapshot.index
            || snapshot.index != raft_snapshot.get_metadata().index
        {
            return Err(FatalError::BadSnapshot(format!(
                "metadata says index {}, file says {}, state says {}",
                raft_snapshot.get_metadata().index,
                snapshot.index,
                state.applied_index()
            )));
        }
        let snapshots = self.snapshots.clone();
        let mut wal = self.wal.take().expect("wal present");
        let snapshot_conf_state = snapshot.conf_state.clone();
        let mark = SnapshotMark {
            index: snapshot.index,
            term: snapshot.term,
        };
        #[cfg(madsim)]
        let crash = self.crash_point(crate::probe::CrashPoint::SnapshotInstallHalfway);
        #[cfg(not(madsim))]
        let crash: Result<(), FatalError> = Ok(());
        let (wal, result) = crate::storage::blocking::run(move || {
            let result = (|| -> Result<(), FatalError> {
                snapshots.save(&snapshot)?;
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
        // Only now the backend: should this crash, recovery finds the
        // snapshot file newer than the backend and rebuilds it from there.
        let (batch, durable) = durable::whole(&state, mark.term, &snapshot_conf_state)
            .map_err(FatalError::BadSnapshot)?;
        let revision = durable.revision;
        let mut state = state;
        state.track_changes();
        self.shared
            .lease_timers
            .lock()
            .expect("lease timers lock")
            .reset(self.clock.elapsed(), state.leases());
        // The new state (all in memory) replaces the old before the
        // backend does: the old one reads values from the backend, and
        // must never read the new one's.
        *self.shared.state.write().expect("state lock") = state;
        self.backend.replace(batch, durable).await?;
        self.shared
            .state
            .write()
            .expect("state lock")
            .attach_cold(self.backend.cold_log(), revision);
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

pub(super) fn to_raft_snapshot(snapshot: &Snapshot) -> RaftSnapshot {
    let mut raft_snapshot = RaftSnapshot {
        data: snapshot.encode().into(),
        ..RaftSnapshot::default()
    };
    let metadata = raft_snapshot.mut_metadata();
    metadata.index = snapshot.index;
    metadata.term = snapshot.term;
    metadata.set_conf_state(snapshot.conf_state.clone());
    raft_snapshot
}
