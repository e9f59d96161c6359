//! Deliberate bugs, compiled only into the simulation build (`--cfg
//! madsim`), never into a production binary: they prove the simulator
//! catches the classes of bug it exists for (`cargo sim run --sabotage`).
//!
//! The switch is process-wide; the simulator runs one seed at a time and
//! sets it before each run.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Sabotage {
    None = 0,
    /// Linearizable reads are served locally, without a read index.
    StaleRead = 1,
    /// The WAL acknowledges without fsync: an acknowledged write can vanish
    /// in a crash.
    AckBeforeFsync = 2,
    /// After a restart the first key-value write applied is applied twice
    /// (as if the applied index had been saved one entry short).
    DoubleApply = 3,
    /// The WAL takes a record that fails its checksum for a torn tail and
    /// drops it and everything after it (detcd's own behaviour until the
    /// simulator's bit-rot nemesis showed it loses acknowledged entries).
    CorruptionAsTornTail = 4,
    /// Watchers skip events at revisions that are multiples of 16.
    WatchGap = 5,
    /// A follower acknowledges appends before its own fsync: a write can be
    /// committed on bytes that only sit in page caches, and lost when the
    /// power fails on a majority at once.
    FollowerAckBeforeFsync = 6,
    /// Leases run out at half their TTL.
    LeaseEarlyExpiry = 7,
    /// A new leader restarts every lease at its full TTL, ignoring the
    /// deadlines it kept and the checkpoints (etcd #9395).
    LeaseResetOnLeaderChange = 8,
    /// A revoke (or expiry) leaves one attached key behind.
    RevokeLeavesAKey = 9,
    /// Reads report a key's version one short once it passes 3 (an MVCC
    /// bug only revision-aware checks see: values stay right).
    VersionOffByOne = 10,
    /// A txn's else branch is not checked against the user's permissions.
    AuthTxnElseUnchecked = 11,
    /// A range over several keys leaves out its last key (an MVCC bug only
    /// a workload reading ranges sees).
    RangeDropsLastKey = 12,
    /// MemberAdd derives the new member's id from its peer URLs alone, not
    /// the time too: a wiped member re-added under its old URLs gets the id
    /// it had, and an empty log under an id that voted and acknowledged
    /// entries (only membership churn re-adds members).
    MemberIdReused = 13,
    /// A watch event's previous key-value is the key as of the event, not
    /// just before it.
    WatchPrevKvIsCurrent = 14,
    /// A watch that filters puts drops deletes, and the other way round.
    WatchFiltersSwapped = 15,
    /// A range cut short by its limit counts only the keys it returns, not
    /// every key in the range (only a workload using range options sees).
    RangeCountAfterLimit = 16,
    /// A nested txn takes its success branch whatever its compares say
    /// (only a workload nesting txns sees).
    NestedComparesIgnored = 17,
    /// A range at a past revision reads one revision later (only reads at
    /// a revision see).
    PastReadOffByOne = 18,
    /// A compare over a range of keys looks at its first key only (only
    /// range compares see).
    RangeCompareFirstKeyOnly = 19,
    /// A range also lists the key equal to its range end (only ranges
    /// ending at an existing key see).
    RangeEndInclusive = 20,
    /// A put with ignore_value writes the request's (empty) value.
    IgnoreValueIgnored = 21,
    /// A linearizable read is answered as soon as raft confirms its read
    /// index, without waiting for the state machine to apply up to it: a
    /// member that applies late (a slow disk, late appends) serves stale
    /// data.
    ReadIndexSkipsApply = 22,
    /// A lease renewal does not mark members, alarms, leases and auth for
    /// the backend: the stored parts miss it, and a restarted member
    /// comes back with the lease as it was before (only restarts see).
    StatePartsNotRewritten = 23,
    /// The WAL records every hard state without its vote: a member that
    /// crashes after voting comes back free to vote again in the same
    /// term, and two candidates can both win it (only crashes see).
    VoteForgotten = 24,
    /// A leader applies (and answers) its entries once they are durable in
    /// its own log, before a quorum holds them: a leader cut off from the
    /// others acknowledges writes the cluster never commits.
    ApplyBeforeCommit = 25,
    /// Compaction also drops a key's newest revision when nothing was
    /// written to the key after the compaction revision: live keys vanish
    /// (only a workload that compacts sees).
    CompactionDropsLiveKeys = 26,
    /// The leader looks for expired leases every 10 s, not every 500 ms:
    /// a lapsed lease and its keys outlive their TTL by seconds (only a
    /// check that a lease ends in time sees).
    LeaseLateExpiry = 27,
    /// A watch that starts at the compact revision itself is told it was
    /// compacted (etcd keeps that revision's history; only a watch resumed
    /// after a compaction sees).
    WatchCompactedAtItsRevision = 28,
    /// A keepalive answers one second less than the lease's TTL (only a
    /// check of the TTL a keepalive reports sees).
    KeepAliveTtlShort = 29,
    /// A range with revision bounds and a limit but no sort order fetches
    /// only `limit + 1` keys before filtering them, as an unfiltered one
    /// does (only ranges with bounds and limits see).
    FilterAfterLimit = 30,
    /// A put inside a txn answers without its prev_kv (only a txn asking
    /// for one sees).
    TxnPutDropsPrevKv = 31,
    /// A put without a lease leaves its key attached to the lease it had:
    /// revoking that lease deletes the key (only a workload that revokes
    /// leases of keys written since sees).
    OverwriteKeepsLease = 32,
    /// TimeToLive with keys leaves the lease's last key out (only a
    /// workload asking for the keys sees).
    TimeToLiveDropsAKey = 33,
    /// LeaseLeases leaves out the lease with the latest deadline (only a
    /// workload listing the leases sees).
    LeaseLeasesDropsTheLast = 34,
    /// A watch's put events leave out the key's lease (only a watch over
    /// keys attached to leases sees).
    WatchEventDropsLease = 35,
    /// A follower's response headers name the leader as the member that
    /// answered (only a check of the header's member id sees).
    HeaderNamesTheLeader = 36,
    /// A watch leaves out the previous key-value of every event at a
    /// revision that is a multiple of 4, as if it had been compacted.
    WatchDropsPrevKv = 37,
    /// A watch leaves out the deletes of keys that were attached to a
    /// lease (a revoke's, an expiry's), as if only a client's delete made
    /// an event.
    WatchSkipsLeaseDeletes = 38,
    /// A watch from now (start revision 0) also delivers the current
    /// revision's events (only a watch created without a start revision
    /// sees).
    WatchFromNowReplaysCurrent = 39,
    /// A compaction's answer carries the compacted revision in its header,
    /// not the store's current one.
    CompactionAnsweredAtItsRevision = 40,
    /// A compaction at the compact revision itself is accepted (etcd
    /// refuses it as compacted).
    RecompactionAccepted = 41,
    /// HashKV at a past revision hashes the history up to the current one.
    HashKvIgnoresRevision = 42,
    /// A watch on one key also hears the keys it is a prefix of.
    SingleKeyWatchMatchesPrefix = 43,
    /// A cancelled watch is answered as cancelled but keeps delivering.
    CancelledWatchStays = 44,
    /// A txn that puts one key twice in one branch is accepted (etcd
    /// refuses it: "duplicate key given in txn request").
    TxnDuplicateKeysAccepted = 45,
    /// A lease asked for below the minimum TTL is granted as asked (etcd
    /// raises it to the minimum, so it outlives an election).
    LeaseMinTtlIgnored = 46,
    /// A write permission also allows reading its keys.
    AuthWriteGrantsRead = 47,
    /// A user's tokens stay good after its password changes.
    PasswordChangeKeepsTokens = 48,
    /// A txn that writes is not checked for ranges at compacted or future
    /// revisions before it runs: its writes before such a range happen,
    /// though it is refused.
    TxnRangeRevisionUnchecked = 49,
    /// A progress notification the server sends on its own promises one
    /// revision more than it delivered (only watches with progress_notify
    /// see).
    ProgressNotifyAhead = 50,
    /// A watch from a revision not yet written starts from the next one
    /// instead.
    WatchFromFutureStartsNow = 51,
    /// A delete's watch event carries the deleted key's value, not etcd's
    /// bare tombstone.
    DeleteEventCarriesValue = 52,
    /// TimeToLive of a lease that does not exist answers TTL 0, not etcd's
    /// -1.
    TimeToLiveOfUnknownIsZero = 53,
    /// The last part of a fragmented watch response is marked as a fragment
    /// too: the client waits for a part that never comes.
    LastFragmentMarked = 54,
    /// Under a NOSPACE alarm a txn that only deletes is refused too: the
    /// operator cannot free space.
    NoSpaceRefusesDeletes = 55,
    /// When a WAL write is durable, the Readies queued behind it count as
    /// durable too: raft counts their entries as this member's and their
    /// acknowledgements leave one write early.
    PersistedOneWriteEarly = 56,
}

impl Sabotage {
    pub const ALL: [Sabotage; 56] = [
        Sabotage::StaleRead,
        Sabotage::AckBeforeFsync,
        Sabotage::DoubleApply,
        Sabotage::CorruptionAsTornTail,
        Sabotage::WatchGap,
        Sabotage::FollowerAckBeforeFsync,
        Sabotage::LeaseEarlyExpiry,
        Sabotage::LeaseResetOnLeaderChange,
        Sabotage::RevokeLeavesAKey,
        Sabotage::VersionOffByOne,
        Sabotage::AuthTxnElseUnchecked,
        Sabotage::RangeDropsLastKey,
        Sabotage::MemberIdReused,
        Sabotage::WatchPrevKvIsCurrent,
        Sabotage::WatchFiltersSwapped,
        Sabotage::RangeCountAfterLimit,
        Sabotage::NestedComparesIgnored,
        Sabotage::PastReadOffByOne,
        Sabotage::RangeCompareFirstKeyOnly,
        Sabotage::RangeEndInclusive,
        Sabotage::IgnoreValueIgnored,
        Sabotage::ReadIndexSkipsApply,
        Sabotage::StatePartsNotRewritten,
        Sabotage::VoteForgotten,
        Sabotage::ApplyBeforeCommit,
        Sabotage::CompactionDropsLiveKeys,
        Sabotage::LeaseLateExpiry,
        Sabotage::WatchCompactedAtItsRevision,
        Sabotage::KeepAliveTtlShort,
        Sabotage::FilterAfterLimit,
        Sabotage::TxnPutDropsPrevKv,
        Sabotage::OverwriteKeepsLease,
        Sabotage::TimeToLiveDropsAKey,
        Sabotage::LeaseLeasesDropsTheLast,
        Sabotage::WatchEventDropsLease,
        Sabotage::HeaderNamesTheLeader,
        Sabotage::WatchDropsPrevKv,
        Sabotage::WatchSkipsLeaseDeletes,
        Sabotage::WatchFromNowReplaysCurrent,
        Sabotage::CompactionAnsweredAtItsRevision,
        Sabotage::RecompactionAccepted,
        Sabotage::HashKvIgnoresRevision,
        Sabotage::SingleKeyWatchMatchesPrefix,
        Sabotage::CancelledWatchStays,
        Sabotage::TxnDuplicateKeysAccepted,
        Sabotage::LeaseMinTtlIgnored,
        Sabotage::AuthWriteGrantsRead,
        Sabotage::PasswordChangeKeepsTokens,
        Sabotage::TxnRangeRevisionUnchecked,
        Sabotage::ProgressNotifyAhead,
        Sabotage::WatchFromFutureStartsNow,
        Sabotage::DeleteEventCarriesValue,
        Sabotage::TimeToLiveOfUnknownIsZero,
        Sabotage::LastFragmentMarked,
        Sabotage::NoSpaceRefusesDeletes,
        Sabotage::PersistedOneWriteEarly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sabotage::None => "none",
            Sabotage::StaleRead => "stale-read",
            Sabotage::AckBeforeFsync => "ack-before-fsync",
            Sabotage::DoubleApply => "double-apply",
            Sabotage::CorruptionAsTornTail => "corruption-as-torn-tail",
            Sabotage::WatchGap => "watch-gap",
            Sabotage::FollowerAckBeforeFsync => "follower-ack-before-fsync",
            Sabotage::LeaseEarlyExpiry => "lease-early-expiry",
            Sabotage::LeaseResetOnLeaderChange => "lease-reset-on-leader-change",
            Sabotage::RevokeLeavesAKey => "revoke-leaves-a-key",
            Sabotage::VersionOffByOne => "version-off-by-one",
            Sabotage::AuthTxnElseUnchecked => "auth-txn-else-unchecked",
            Sabotage::RangeDropsLastKey => "range-drops-last-key",
            Sabotage::MemberIdReused => "member-id-reused",
            Sabotage::WatchPrevKvIsCurrent => "watch-prev-kv-is-current",
            Sabotage::WatchFiltersSwapped => "watch-filters-swapped",
            Sabotage::RangeCountAfterLimit => "range-count-after-limit",
            Sabotage::NestedComparesIgnored => "nested-compares-ignored",
            Sabotage::PastReadOffByOne => "past-read-off-by-one",
            Sabotage::RangeCompareFirstKeyOnly => "range-compare-first-key-only",
            Sabotage::RangeEndInclusive => "range-end-inclusive",
            Sabotage::IgnoreValueIgnored => "ignore-value-ignored",
            Sabotage::ReadIndexSkipsApply => "read-index-skips-apply",
            Sabotage::StatePartsNotRewritten => "state-parts-not-rewritten",
            Sabotage::VoteForgotten => "vote-forgotten",
            Sabotage::ApplyBeforeCommit => "apply-before-commit",
            Sabotage::CompactionDropsLiveKeys => "compaction-drops-live-keys",
            Sabotage::LeaseLateExpiry => "lease-late-expiry",
            Sabotage::WatchCompactedAtItsRevision => "watch-compacted-at-its-revision",
            Sabotage::KeepAliveTtlShort => "keepalive-ttl-short",
            Sabotage::FilterAfterLimit => "filter-after-limit",
            Sabotage::TxnPutDropsPrevKv => "txn-put-drops-prev-kv",
            Sabotage::OverwriteKeepsLease => "overwrite-keeps-lease",
            Sabotage::TimeToLiveDropsAKey => "time-to-live-drops-a-key",
            Sabotage::LeaseLeasesDropsTheLast => "lease-leases-drops-the-last",
            Sabotage::WatchEventDropsLease => "watch-event-drops-lease",
            Sabotage::HeaderNamesTheLeader => "header-names-the-leader",
            Sabotage::WatchDropsPrevKv => "watch-drops-prev-kv",
            Sabotage::WatchSkipsLeaseDeletes => "watch-skips-lease-deletes",
            Sabotage::WatchFromNowReplaysCurrent => "watch-from-now-replays-current",
            Sabotage::CompactionAnsweredAtItsRevision => "compaction-answered-at-its-revision",
            Sabotage::RecompactionAccepted => "recompaction-accepted",
            Sabotage::HashKvIgnoresRevision => "hash-kv-ignores-revision",
            Sabotage::SingleKeyWatchMatchesPrefix => "single-key-watch-matches-prefix",
            Sabotage::CancelledWatchStays => "cancelled-watch-stays",
            Sabotage::TxnDuplicateKeysAccepted => "txn-duplicate-keys-accepted",
            Sabotage::LeaseMinTtlIgnored => "lease-min-ttl-ignored",
            Sabotage::AuthWriteGrantsRead => "auth-write-grants-read",
            Sabotage::PasswordChangeKeepsTokens => "password-change-keeps-tokens",
            Sabotage::TxnRangeRevisionUnchecked => "txn-range-revision-unchecked",
            Sabotage::ProgressNotifyAhead => "progress-notify-ahead",
            Sabotage::WatchFromFutureStartsNow => "watch-from-future-starts-now",
            Sabotage::DeleteEventCarriesValue => "delete-event-carries-value",
            Sabotage::TimeToLiveOfUnknownIsZero => "time-to-live-of-unknown-is-zero",
            Sabotage::LastFragmentMarked => "last-fragment-marked",
            Sabotage::NoSpaceRefusesDeletes => "no-space-refuses-deletes",
            Sabotage::PersistedOneWriteEarly => "persisted-one-write-early",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Sabotage::None => "no sabotage",
            Sabotage::StaleRead => "serve linearizable reads locally without ReadIndex",
            Sabotage::AckBeforeFsync => "acknowledge writes before the WAL is fsynced",
            Sabotage::DoubleApply => "apply the first key-value write after a restart twice",
            Sabotage::CorruptionAsTornTail => {
                "drop a WAL record that fails its checksum as if torn"
            }
            Sabotage::WatchGap => "watchers skip events at every 16th revision",
            Sabotage::FollowerAckBeforeFsync => {
                "followers acknowledge appends before their fsync"
            }
            Sabotage::LeaseEarlyExpiry => "leases run out at half their TTL",
            Sabotage::LeaseResetOnLeaderChange => {
                "a new leader restarts every lease at its full TTL"
            }
            Sabotage::RevokeLeavesAKey => "a lease's revoke or expiry leaves one key behind",
            Sabotage::VersionOffByOne => "reads report a key's version one short past 3",
            Sabotage::AuthTxnElseUnchecked => "a txn's else branch skips the permission check",
            Sabotage::RangeDropsLastKey => "a range over several keys leaves out its last key",
            Sabotage::MemberIdReused => "a re-added member gets the id it had before its removal, and the check that a removed id never comes back lets it in",
            Sabotage::WatchPrevKvIsCurrent => {
                "a watch event's previous key-value is the key as of the event"
            }
            Sabotage::WatchFiltersSwapped => "a watch's put and delete filters are swapped",
            Sabotage::RangeCountAfterLimit => {
                "a range cut short by its limit counts only the keys it returns"
            }
            Sabotage::NestedComparesIgnored => {
                "a nested txn takes its success branch whatever its compares say"
            }
            Sabotage::PastReadOffByOne => "a range at a past revision reads one revision later",
            Sabotage::RangeCompareFirstKeyOnly => {
                "a txn compare over a range of keys looks at its first key only"
            }
            Sabotage::RangeEndInclusive => "a range also lists the key equal to its range end",
            Sabotage::IgnoreValueIgnored => {
                "a put with ignore_value writes the request's empty value"
            }
            Sabotage::ReadIndexSkipsApply => {
                "a linearizable read is answered before its read index is applied"
            }
            Sabotage::StatePartsNotRewritten => {
                "a lease renewal is left out of the state the backend stores"
            }
            Sabotage::VoteForgotten => {
                "the WAL keeps no vote: a restarted member may vote twice in a term"
            }
            Sabotage::ApplyBeforeCommit => {
                "a leader applies and answers its entries before a quorum holds them"
            }
            Sabotage::CompactionDropsLiveKeys => {
                "compaction drops a key's newest revision if nothing followed it"
            }
            Sabotage::LeaseLateExpiry => "the leader looks for expired leases every 10 s",
            Sabotage::WatchCompactedAtItsRevision => {
                "a watch starting at the compact revision is told it was compacted"
            }
            Sabotage::KeepAliveTtlShort => "a keepalive answers one second less than the TTL",
            Sabotage::FilterAfterLimit => {
                "a range with revision bounds filters only the first limit + 1 keys"
            }
            Sabotage::TxnPutDropsPrevKv => "a put inside a txn answers without its prev_kv",
            Sabotage::OverwriteKeepsLease => {
                "a put without a lease leaves its key attached to its old lease"
            }
            Sabotage::TimeToLiveDropsAKey => "TimeToLive with keys leaves the last key out",
            Sabotage::LeaseLeasesDropsTheLast => {
                "LeaseLeases leaves out the lease with the latest deadline"
            }
            Sabotage::WatchEventDropsLease => "a watch's put events leave out the key's lease",
            Sabotage::HeaderNamesTheLeader => {
                "a follower's response headers name the leader as the member answering"
            }
            Sabotage::WatchDropsPrevKv => {
                "a watch leaves out the previous key-value at every 4th revision"
            }
            Sabotage::WatchSkipsLeaseDeletes => {
                "a watch leaves out the deletes of keys that were attached to a lease"
            }
            Sabotage::WatchFromNowReplaysCurrent => "a watch from now also delivers the current revision's events",
            Sabotage::CompactionAnsweredAtItsRevision => "a compaction's answer header carries the compacted revision",
            Sabotage::RecompactionAccepted => "a compaction at the compact revision itself is accepted",
            Sabotage::HashKvIgnoresRevision => "HashKV at a past revision hashes the current revision",
            Sabotage::SingleKeyWatchMatchesPrefix => "a watch on one key also hears the keys it is a prefix of",
            Sabotage::CancelledWatchStays => "a cancelled watch is answered as cancelled but keeps delivering",
            Sabotage::TxnDuplicateKeysAccepted => "a txn that puts one key twice in one branch is accepted",
            Sabotage::LeaseMinTtlIgnored => "a lease asked for below the minimum TTL is granted as asked",
            Sabotage::AuthWriteGrantsRead => "a write permission also allows reading its keys",
            Sabotage::PasswordChangeKeepsTokens => "a user's tokens stay good after its password changes",
            Sabotage::TxnRangeRevisionUnchecked => "a txn that writes is not checked for ranges at bad revisions before it runs",
            Sabotage::ProgressNotifyAhead => "a server-sent progress notification promises one revision too many",
            Sabotage::WatchFromFutureStartsNow => "a watch from a revision not yet written starts from the next one",
            Sabotage::DeleteEventCarriesValue => "a delete's watch event carries the deleted key's value",
            Sabotage::TimeToLiveOfUnknownIsZero => "TimeToLive of an unknown lease answers TTL 0, not -1",
            Sabotage::LastFragmentMarked => "the last part of a fragmented watch response is marked as a fragment too",
            Sabotage::NoSpaceRefusesDeletes => "under a NOSPACE alarm a txn that only deletes is refused too",
            Sabotage::PersistedOneWriteEarly => {
                "a write's completion counts the Readies queued behind it as durable too"
            }
        }
    }

    pub fn parse(name: &str) -> Option<Sabotage> {
        Sabotage::ALL
            .into_iter()
            .find(|sabotage| sabotage.name() == name)
    }
}

static ACTIVE: AtomicU8 = AtomicU8::new(Sabotage::None as u8);

pub fn set(sabotage: Sabotage) {
    ACTIVE.store(sabotage as u8, Ordering::SeqCst);
}

pub fn active(sabotage: Sabotage) -> bool {
    ACTIVE.load(Ordering::SeqCst) == sabotage as u8
}
