//! `LogStore`: the in-memory raft log raft-rs reads through its `Storage`
//! trait. The WAL makes it durable; this is the copy raft works on.
//!
//! Entries start right after `compacted` (the index and term of the last
//! entry folded into a snapshot); `snapshot` is the newest snapshot, sent to
//! followers that fall behind the compacted log.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

#[derive(Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    compacted_index: u64,
    compacted_term: u64,
    entries: Vec<Entry>,
    snapshot: Snapshot,
    /// Set when raft asked for a snapshot the newest one cannot serve: a
    /// member added after it is not in its configuration, and raft-rs
    /// refuses to install a snapshot that does not name the receiver.
    snapshot_wanted: std::cell::Cell<bool>,
}

impl LogStore {
    /// A log that starts after `snapshot` (index 0 for a new member).
    pub fn new(conf_state: ConfState, snapshot_index: u64, snapshot_term: u64) -> LogStore {
        LogStore {
            conf_state,
            compacted_index: snapshot_index,
            compacted_term: snapshot_term,
            hard_state: HardState {
                term: snapshot_term,
                commit: snapshot_index,
                ..HardState::default()
            },
            ..LogStore::default()
        }
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Appends entries, replacing any conflicting suffix (raft decides
    /// which entries conflict; we only cut where the new ones start).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.compacted_index,
            "appending entry {} over the compacted log",
            first.index
        );
        assert!(
            first.index <= self.last() + 1,
            "entry {} leaves a gap after {}",
            first.index,
            self.last()
        );
        self.entries
            .truncate((first.index - self.compacted_index - 1) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Forgets entries up to `index`, which a durable snapshot covers.
    pub fn compact(&mut self, index: u64) {
        if index <= self.compacted_index {
            return;
        }
        assert!(index <= self.last(), "compacting past the last entry");
        let term = self.entry_term(index).expect("entry present");
        self.entries
            .drain(..(index - self.compacted_index) as usize);
        self.compacted_index = index;
        self.compacted_term = term;
    }

    /// Keeps the newest snapshot for followers that need it.
    pub fn set_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = snapshot;
    }

    /// Replaces the whole log by a snapshot received from the leader.
    pub fn install_snapshot(&mut self, snapshot: Snapshot) {
        let metadata = snapshot.get_metadata();
        self.compacted_index = metadata.index;
        self.compacted_term = metadata.term;
        self.conf_state = metadata.get_conf_state().clone();
        self.hard_state.commit = self.hard_state.commit.max(metadata.index);
        self.hard_state.term = self.hard_state.term.max(metadata.term);
        self.entries.clear();
        self.snapshot = snapshot;
    }

    pub fn last(&self) -> u64 {
        self.compacted_index + self.entries.len() as u64
    }

    pub fn entry_term(&self, index: u64) -> Option<u64> {
        if index == self.compacted_index {
            return Some(self.compacted_term);
        }
        let offset = index.checked_sub(self.compacted_index + 1)?;
        self.entries.get(offset as usize).map(|entry| entry.term)
    }

    /// Whether a fresh snapshot is needed for a member the newest one
    /// does not know; resets the request.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.compacted_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last() + 1,
            "entries [{low}, {high}) past the last entry {}",
            self.last()
        );
        let start = (low - self.compacted_index - 1) as usize;
        let end = (high - self.compacted_index - 1) as usize;
        let mut entries = self.entries[start..end].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index < self.compacted_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.entry_term(index)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.compacted_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let metadata = self.snapshot.get_metadata();
        let conf = metadata.get_conf_state();
        let names_receiver = conf.voters.contains(&to) || conf.learners.contains(&to);
        // A snapshot older than the log's start cannot catch anyone up:
        // the entries after it are gone.
        let stale = metadata.index < self.compacted_index;
        if metadata.index < request_index || metadata.index == 0 || stale || !names_receiver {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}
