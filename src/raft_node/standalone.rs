//! `--force-new-cluster`: a member restarted as the only voter of its
//! cluster, keeping its data (etcd's `restartAsStandaloneNode`). It is
//! the way out when a quorum is lost for good: the surviving member keeps
//! serving, and new members join it.
//!
//! As etcd does, at start: entries past the commit index the member knows
//! are dropped (nothing the member knows to be committed is), and so are
//! snapshot files beyond it (an old leader's, its install unfinished); one
//! configuration change per other member, removing it, is appended after
//! the commit index with the current term and made durable in the WAL;
//! and the hard state commits them. Applied like any committed entry, they
//! leave raft a configuration of this member alone, and the registry
//! without the others, on this start and on every later one. The others
//! must not start again with their old data: they would still count the
//! old members (etcd's warning, logged here too).

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use raft::{GetEntriesContext, Storage};
use std::collections::BTreeSet;

use super::log_store::LogStore;
use super::RecoveryError;
use crate::storage::snapshot::SnapshotDir;
use crate::storage::wal::Wal;

/// Rewrites the recovered `log` (and `wal`) so that this member is the
/// only voter once the committed log is applied; the members removed.
pub(super) fn force(
    wal: &mut Wal,
    log: &mut LogStore,
    snapshots: &SnapshotDir,
) -> Result<Vec<u64>, RecoveryError> {
    let member_id = wal.metadata().member_id;
    let mut hard_state = log.hard_state().clone();
    let commit = hard_state.commit;
    let (voters, learners) = members_at(log, commit)?;
    if !voters.contains(&member_id) {
        return Err(RecoveryError::Inconsistent(format!(
            "--force-new-cluster: member {member_id:x} is not a voter of the cluster its \
             data records (a learner or a removed member cannot restart it alone)"
        )));
    }
    let others: Vec<u64> = (voters.iter().chain(&learners))
        .copied()
        .filter(|&id| id != member_id)
        .collect();
    let dropped = log.last().saturating_sub(commit);
    // First, so that a crash before the WAL write leaves nothing of the
    // old history beyond the fork for a later start to pick up.
    snapshots.prune_above(commit)?;
    if others.is_empty() {
        tracing::warn!("--force-new-cluster: this member is already the only one");
        return Ok(others);
    }
    let removals: Vec<Entry> = (others.iter().zip(commit + 1..))
        .map(|(&id, index)| conf_change(ConfChangeType::RemoveNode, id, index, hard_state.term))
        .collect();
    hard_state.commit = removals.last().map_or(commit, |entry| entry.index);
    wal.append(&removals, Some(&hard_state));
    wal.write()?;
    wal.sync()?;
    log.append(&removals);
    log.set_hard_state(hard_state);
    tracing::warn!(
        member = format_args!("{member_id:x}"),
        removed = ?others.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>(),
        commit,
        dropped_uncommitted = dropped,
        "forcing restart as the only member of the cluster (--force-new-cluster); \
         the removed members must not start again with their old data"
    );
    Ok(others)
}

/// A v1 configuration change entry, as etcd writes them.
fn conf_change(change_type: ConfChangeType, node_id: u64, index: u64, term: u64) -> Entry {
    let change = ConfChange {
        change_type,
        node_id,
        ..ConfChange::default()
    };
    Entry {
        entry_type: EntryType::EntryConfChange,
        term,
        index,
        data: change
            .write_to_bytes()
            .expect("a conf change encodes")
            .into(),
        ..Entry::default()
    }
}

/// raft's voters and learners once the log through `commit` is applied:
/// the recovered configuration, then the changes in the entries after it.
fn members_at(
    log: &LogStore,
    commit: u64,
) -> Result<(BTreeSet<u64>, BTreeSet<u64>), RecoveryError> {
    let conf_state = log.conf_state();
    let mut voters: BTreeSet<u64> = conf_state.voters.iter().copied().collect();
    let mut learners: BTreeSet<u64> = conf_state.learners.iter().copied().collect();
    let first = log.compacted_index() + 1;
    if commit < first {
        return Ok((voters, learners));
    }
    let entries = log
        .entries(first, commit + 1, None, GetEntriesContext::empty(false))
        .map_err(|error| RecoveryError::Inconsistent(format!("reading the log: {error}")))?;
    for entry in &entries {
        if !matches!(
            entry.get_entry_type(),
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2
        ) {
            continue;
        }
        // A change that does not decode was skipped when applied.
        let Ok((change, _)) = super::conf_change::decode_conf_change(entry) else {
            continue;
        };
        let single = &change.changes[0];
        let id = single.node_id;
        match single.get_change_type() {
            ConfChangeType::AddNode => {
                learners.remove(&id);
                voters.insert(id);
            }
            ConfChangeType::AddLearnerNode => {
                voters.remove(&id);
                learners.insert(id);
            }
            ConfChangeType::RemoveNode => {
                voters.remove(&id);
                learners.remove(&id);
            }
        }
    }
    Ok((voters, learners))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::wal::Metadata;
    use crate::storage::{Disk as _, SimDisk};
    use raft::eraftpb::{ConfState, HardState};
    use std::path::Path;
    use std::sync::Arc;

    /// Voters 1, 2 and 3, learner 4 added at entry 5; entries 1 to 7 at
    /// term 2, committed through 5. The WAL of `member` holds the same.
    fn snapshots(disk: &Arc<SimDisk>) -> SnapshotDir {
        SnapshotDir::open(disk.clone(), Path::new("/m/member/snap")).unwrap()
    }

    fn recovered(disk: &Arc<SimDisk>, member: u64) -> (Wal, LogStore) {
        let conf_state = ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        };
        let entries: Vec<Entry> = (1..=7)
            .map(|index| match index {
                5 => conf_change(ConfChangeType::AddLearnerNode, 4, 5, 2),
                _ => Entry {
                    index,
                    term: 2,
                    ..Entry::default()
                },
            })
            .collect();
        let hard_state = HardState {
            term: 2,
            vote: 1,
            commit: 5,
            ..HardState::default()
        };
        let metadata = Metadata {
            member_id: member,
            cluster_id: 9,
        };
        let dir = Path::new("/m/member/wal");
        let mut wal = Wal::create(
            disk.clone(),
            dir,
            metadata,
            conf_state.clone(),
            &[],
            &hard_state,
        )
        .unwrap();
        wal.append(&entries, Some(&hard_state));
        wal.write().unwrap();
        wal.sync().unwrap();
        let mut log = LogStore::new(conf_state, 0, 0);
        log.append(&entries);
        log.set_hard_state(hard_state);
        (wal, log)
    }

    #[test]
    fn the_others_are_removed_after_the_commit_index_and_durably() {
        let disk = Arc::new(SimDisk::new());
        let (mut wal, mut log) = recovered(&disk, 1);
        let snapshots = snapshots(&disk);
        let (kept, forked) = (snapshots.path(1, 3), snapshots.path(2, 9));
        for path in [&kept, &forked] {
            crate::storage::disk::write_atomically(&*disk, path, b"a snapshot").unwrap();
        }
        let removed = force(&mut wal, &mut log, &snapshots).unwrap();
        assert!(
            disk.file_len(&kept).is_ok(),
            "a snapshot below the commit index stays"
        );
        assert!(
            disk.file_len(&forked).is_err(),
            "one past it belongs to the old history"
        );
        assert_eq!(
            removed,
            vec![2, 3, 4],
            "voters, then the learner entry 5 added"
        );
        assert_eq!(log.last(), 8, "entries 6 and 7 were never committed");
        assert_eq!(log.hard_state().commit, 8, "the removals are committed");
        let written = log
            .entries(6, 9, None, GetEntriesContext::empty(false))
            .unwrap();
        for (entry, id) in written.iter().zip([2, 3, 4]) {
            assert_eq!(entry.get_entry_type(), EntryType::EntryConfChange);
            assert_eq!(entry.term, 2);
            let (change, _) = super::super::conf_change::decode_conf_change(entry).unwrap();
            assert_eq!(
                change.changes[0].get_change_type(),
                ConfChangeType::RemoveNode
            );
            assert_eq!(change.changes[0].node_id, id);
        }
        drop(wal);
        let (_, replay) = Wal::open(disk.clone(), Path::new("/m/member/wal")).unwrap();
        assert_eq!(
            replay.hard_state.commit, 8,
            "the WAL has it after a restart"
        );
        let indexes: Vec<(u64, EntryType)> = (replay.entries.iter())
            .map(|entry| (entry.index, entry.get_entry_type()))
            .collect();
        assert_eq!(indexes.len(), 8);
        assert_eq!(
            indexes[5],
            (6, EntryType::EntryConfChange),
            "entry 6 replaced"
        );
    }

    #[test]
    fn a_learner_cannot_restart_the_cluster_alone() {
        let disk = Arc::new(SimDisk::new());
        let (mut wal, mut log) = recovered(&disk, 4);
        let refused = force(&mut wal, &mut log, &snapshots(&disk)).unwrap_err();
        assert!(refused.to_string().contains("is not a voter"), "{refused}");
        assert_eq!(log.last(), 7, "nothing changed");
        assert_eq!(log.hard_state().commit, 5);
    }
}
