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
    /// The memory `entries` take, by `entry_bytes`.
    entries_bytes: u64,
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
        let kept = (first.index - self.compacted_index - 1) as usize;
        self.entries_bytes -= self.entries[kept..].iter().map(entry_bytes).sum::<u64>();
        self.entries.truncate(kept);
        self.entries_bytes += entries.iter().map(entry_bytes).sum::<u64>();
        self.entries.extend_from_slice(entries);
    }

    /// The last index the log no longer holds.
    pub fn compacted_index(&self) -> u64 {
        self.compacted_index
    }

    /// The memory the entries take (`entry_bytes`).
    pub fn entries_bytes(&self) -> u64 {
        self.entries_bytes
    }

    /// Forgets the oldest entries, up to `applied` at most, until the rest
    /// take at most `budget` bytes: the WAL holds them, and a follower
    /// that still needs them gets a snapshot. Large entries (transactions
    /// of many puts) would otherwise keep gigabytes in memory between
    /// snapshot marks.
    ///
    /// Entries after `pinned` stay while the log takes at most
    /// `pinned_budget`: a follower being caught up needs them, and would
    /// otherwise find its snapshot already behind the log once it is made
    /// (under a steady load, forever). Past that, memory comes first.
    pub fn compact_to_bytes(
        &mut self,
        applied: u64,
        budget: u64,
        pinned: Option<u64>,
        pinned_budget: u64,
    ) {
        if self.entries_bytes <= budget {
            return;
        }
        let applied = match pinned {
            Some(pinned) if self.entries_bytes <= pinned_budget => applied.min(pinned),
            _ => applied,
        };
        let mut left = self.entries_bytes;
        let mut through = self.compacted_index;
        for entry in &self.entries {
            if left <= budget || entry.index > applied {
                break;
            }
            left -= entry_bytes(entry);
            through = entry.index;
        }
        self.compact(through);
    }

    /// Forgets entries up to `index`, which a durable snapshot covers.
    pub fn compact(&mut self, index: u64) {
        if index <= self.compacted_index {
            return;
        }
        assert!(index <= self.last(), "compacting past the last entry");
        let term = self.entry_term(index).expect("entry present");
        let dropped = self
            .entries
            .drain(..(index - self.compacted_index) as usize);
        self.entries_bytes -= dropped.as_slice().iter().map(entry_bytes).sum::<u64>();
        drop(dropped);
        self.compacted_index = index;
        self.compacted_term = term;
    }

    /// Keeps the newest snapshot for followers that need it.
    pub fn set_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = snapshot;
    }

    /// Forgets the snapshot for followers (whose stream is let go): one
    /// asked for later is made anew.
    pub fn forget_snapshot(&mut self) {
        self.snapshot = Snapshot::default();
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
        self.entries_bytes = 0;
        // Its stream is not this member's to send: should it lead, a
        // follower gets one made from its own backend.
        self.snapshot = Snapshot::default();
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

/// What one entry takes in memory: its payload and a fixed share for
/// the rest of it.
fn entry_bytes(entry: &Entry) -> u64 {
    const ENTRY_OVERHEAD_BYTES: u64 = 64;
    (entry.data.len() + entry.context.len()) as u64 + ENTRY_OVERHEAD_BYTES
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

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            index,
            term: 1,
            data: vec![7; bytes].into(),
            ..Entry::default()
        }
    }

    fn sizes(log: &LogStore) -> u64 {
        log.entries.iter().map(entry_bytes).sum()
    }

    #[test]
    fn the_byte_count_follows_appends_truncations_and_compactions() {
        let mut log = LogStore::new(ConfState::default(), 0, 0);
        log.append(&(1..=10).map(|index| entry(index, 100)).collect::<Vec<_>>());
        assert_eq!(log.entries_bytes(), sizes(&log));
        // A new leader's entries replace a conflicting suffix.
        log.append(&[entry(6, 1000), entry(7, 10)]);
        assert_eq!(log.last(), 7);
        assert_eq!(log.entries_bytes(), sizes(&log));
        log.compact(3);
        assert_eq!(log.entries_bytes(), sizes(&log));
        log.install_snapshot(Snapshot::default());
        assert_eq!(log.entries_bytes(), 0);
    }

    #[test]
    fn compaction_by_bytes_keeps_the_budget_and_never_passes_applied() {
        let mut log = LogStore::new(ConfState::default(), 0, 0);
        log.append(&(1..=10).map(|index| entry(index, 1000)).collect::<Vec<_>>());
        let one = entry_bytes(&entry(1, 1000));
        // Within budget: nothing goes.
        log.compact_to_bytes(10, 10 * one, None, 0);
        assert_eq!(log.first_index().unwrap(), 1);
        // Over it: the oldest go until three entries' worth is left.
        log.compact_to_bytes(10, 3 * one, None, 0);
        assert_eq!(log.first_index().unwrap(), 8);
        assert_eq!(log.entries_bytes(), 3 * one);
        // Entries not yet applied stay, whatever they take.
        log.append(
            &(11..=20)
                .map(|index| entry(index, 1000))
                .collect::<Vec<_>>(),
        );
        log.compact_to_bytes(12, one, None, 0);
        assert_eq!(log.first_index().unwrap(), 13);
        assert_eq!(log.entries_bytes(), sizes(&log));
    }

    #[test]
    fn a_pin_keeps_entries_a_follower_needs_up_to_its_own_budget() {
        let mut log = LogStore::new(ConfState::default(), 0, 0);
        log.append(&(1..=10).map(|index| entry(index, 1000)).collect::<Vec<_>>());
        let one = entry_bytes(&entry(1, 1000));
        // A follower needs entries after 4: they stay, though over budget.
        log.compact_to_bytes(10, 3 * one, Some(4), 10 * one);
        assert_eq!(log.first_index().unwrap(), 5);
        // Past the pinned budget the pin gives way.
        log.append(
            &(11..=20)
                .map(|index| entry(index, 1000))
                .collect::<Vec<_>>(),
        );
        log.compact_to_bytes(20, 3 * one, Some(4), 10 * one);
        assert_eq!(log.first_index().unwrap(), 18);
        assert_eq!(log.entries_bytes(), sizes(&log));
    }
}
