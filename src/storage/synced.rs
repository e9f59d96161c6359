//! How far a member's WAL has synced its log, by the WAL's own account,
//! for the simulator's check that no acknowledgement and no count of
//! raft's runs ahead of the syncs (`RaftNode::check_synced`).
//!
//! The raft loop writes the WAL while it goes on (`wal_writes`), so a Ready
//! that replaces entries can come while a write of the entries it replaces
//! is in flight. That write's sync makes the old entries durable, not the
//! replacing ones at the same indices: it may raise the account only to
//! below the first replaced index. A write begun after the replacement
//! holds the replacing entries, and its sync counts in full. One write is
//! in flight at a time, so a cap that each new write lifts is enough.
//!
//! Plain logic, built in both builds so its tests run in the normal one;
//! only the simulation build keeps an account.

use std::sync::Mutex;

/// The account, shared by the WAL (its syncs) and the raft loop (its
/// replacements and the writes it begins).
#[derive(Debug, Default)]
pub struct SyncedLog {
    account: Mutex<Account>,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    /// The log is durable through this index.
    through: u64,
    /// The write in flight may raise `through` no higher than this: it
    /// was begun before a Ready replaced the entries after it.
    cap: u64,
}

impl Default for Account {
    fn default() -> Account {
        Account {
            through: 0,
            cap: u64::MAX,
        }
    }
}

impl SyncedLog {
    pub fn new(through: u64) -> SyncedLog {
        let log = SyncedLog::default();
        log.account().through = through;
        log
    }

    /// The log is durable through this index.
    pub fn through(&self) -> u64 {
        self.account().through
    }

    /// A Ready replaced the entries from `index` on (the raft loop, before
    /// any write holds them): they are durable no more, and the write in
    /// flight, if any, cannot make the replacing ones durable.
    pub fn replaced_from(&self, index: u64) {
        let mut account = self.account();
        let below = index.saturating_sub(1);
        account.through = account.through.min(below);
        account.cap = account.cap.min(below);
    }

    /// The raft loop began a write that holds every replacement so far.
    pub fn write_begun(&self) {
        self.account().cap = u64::MAX;
    }

    /// The WAL itself dropped the entries from `index` on (its own append
    /// of replacing entries, or an installed snapshot).
    pub fn dropped_from(&self, index: u64) {
        let mut account = self.account();
        account.through = account.through.min(index.saturating_sub(1));
    }

    /// A sync made the entries written through `index` durable, but for
    /// those a Ready replaced since the write began.
    pub fn synced(&self, index: u64) {
        let mut account = self.account();
        account.through = account.through.max(index.min(account.cap));
    }

    /// A restart recovered the log through `index`: a crash took whatever
    /// was not durable, so the rest is.
    pub fn recovered(&self, index: u64) {
        let mut account = self.account();
        account.through = account.through.max(index);
    }

    fn account(&self) -> std::sync::MutexGuard<'_, Account> {
        self.account.lock().expect("synced log lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write of entries 1-10 is in flight when a Ready replaces 8 on:
    /// its sync makes 1-7 durable, not the replacing 8-10. The next write,
    /// which holds them, makes them durable.
    #[test]
    fn a_write_begun_before_a_replacement_counts_only_below_it() {
        let log = SyncedLog::new(0);
        log.write_begun();
        log.replaced_from(8);
        log.synced(10);
        assert_eq!(log.through(), 7);
        log.write_begun();
        log.synced(9);
        assert_eq!(log.through(), 9);
    }

    /// Replacements lower the account at once, and a later sync of what
    /// the write began with raises it in full.
    #[test]
    fn replacements_lower_and_syncs_raise() {
        let log = SyncedLog::new(12);
        log.replaced_from(10);
        assert_eq!(log.through(), 9);
        log.write_begun();
        log.synced(11);
        assert_eq!(log.through(), 11);
        log.dropped_from(1);
        assert_eq!(log.through(), 0);
        log.recovered(5);
        assert_eq!(log.through(), 5);
        log.synced(3);
        assert_eq!(log.through(), 5, "a sync never lowers the account");
    }

    /// Several replacements while one write is in flight: the lowest caps
    /// it.
    #[test]
    fn the_lowest_replacement_caps_the_write_in_flight() {
        let log = SyncedLog::new(4);
        log.write_begun();
        log.replaced_from(9);
        log.replaced_from(6);
        log.replaced_from(8);
        log.synced(12);
        assert_eq!(log.through(), 5);
    }
}
