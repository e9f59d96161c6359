//! Choices shared by the `detcd-sim` command line and the simulation
//! harness (plain Rust, so the normal build can parse them too).

/// What the simulated clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// get / put / cas on a few keys.
    Register,
    /// single- and multi-key appends (a read, then a txn comparing mod
    /// revisions) and multi-key reads on a few keys.
    Append,
    /// register and append operations mixed, with one lease client and
    /// two lock clients alongside.
    Mixed,
    /// leases only: grant, attach keys, keep alive, lapse, revoke, ask the
    /// TTL (checked by `properties::leases`).
    Lease,
    /// locks only: v3lock's Lock, then writes fenced on the lock key's
    /// revision (checked by `properties::locks`).
    Lock,
    /// auth only: permissions granted and revoked while users read and
    /// write (checked by `properties::auth`).
    Auth,
    /// more of the KV API (prefix and from-key ranges and deletes, txns
    /// comparing every target), checked with the revision-aware etcd model.
    Etcd,
}

impl Workload {
    /// Key-value clients do register and append operations.
    pub fn key_value(self) -> bool {
        matches!(
            self,
            Workload::Register | Workload::Append | Workload::Mixed
        )
    }

    /// Lease clients alongside, given the run's client count.
    pub fn lease_clients(self, clients: usize) -> usize {
        match self {
            Workload::Lease => clients,
            Workload::Mixed => 1,
            _ => 0,
        }
    }

    /// Clients of the etcd workload, given the run's client count.
    pub fn etcd_clients(self, clients: usize) -> usize {
        match self {
            Workload::Etcd => clients,
            _ => 0,
        }
    }

    /// Users of the auth workload (plus its administrator).
    pub fn auth_users(self, clients: usize) -> usize {
        match self {
            Workload::Auth => clients,
            _ => 0,
        }
    }

    /// Lock clients alongside, given the run's client count.
    pub fn lock_clients(self, clients: usize) -> usize {
        match self {
            Workload::Lock => clients,
            Workload::Mixed => 2,
            _ => 0,
        }
    }
}

/// The deliberate bugs the madsim build of detcd can switch on
/// (`detcd::sabotage`), by name, with what they do.
/// `harness.rs` checks it matches the madsim build's list.
pub const SABOTAGES: [(&str, &str); 56] = [
    (
        "stale-read",
        "serve linearizable reads locally without ReadIndex",
    ),
    (
        "ack-before-fsync",
        "acknowledge writes before the WAL is fsynced",
    ),
    (
        "double-apply",
        "apply the first key-value write after a restart twice",
    ),
    (
        "corruption-as-torn-tail",
        "drop a WAL record that fails its checksum as if torn",
    ),
    ("watch-gap", "watchers skip events at every 16th revision"),
    (
        "follower-ack-before-fsync",
        "followers acknowledge appends before their fsync",
    ),
    ("lease-early-expiry", "leases run out at half their TTL"),
    (
        "lease-reset-on-leader-change",
        "a new leader restarts every lease at its full TTL",
    ),
    (
        "revoke-leaves-a-key",
        "a lease's revoke or expiry leaves one key behind",
    ),
    (
        "version-off-by-one",
        "reads report a key's version one short past 3",
    ),
    (
        "auth-txn-else-unchecked",
        "a txn's else branch skips the permission check",
    ),
    (
        "range-drops-last-key",
        "a range over several keys leaves out its last key",
    ),
    (
        "member-id-reused",
        "a re-added member gets the id it had before its removal, and the check that a removed id never comes back lets it in",
    ),
    (
        "watch-prev-kv-is-current",
        "a watch event's previous key-value is the key as of the event",
    ),
    (
        "watch-filters-swapped",
        "a watch's put and delete filters are swapped",
    ),
    (
        "range-count-after-limit",
        "a range cut short by its limit counts only the keys it returns",
    ),
    (
        "nested-compares-ignored",
        "a nested txn takes its success branch whatever its compares say",
    ),
    (
        "past-read-off-by-one",
        "a range at a past revision reads one revision later",
    ),
    (
        "range-compare-first-key-only",
        "a txn compare over a range of keys looks at its first key only",
    ),
    (
        "range-end-inclusive",
        "a range also lists the key equal to its range end",
    ),
    (
        "ignore-value-ignored",
        "a put with ignore_value writes the request's empty value",
    ),
    (
        "read-index-skips-apply",
        "a linearizable read is answered before its read index is applied",
    ),
    (
        "state-parts-not-rewritten",
        "a lease renewal is left out of the state the backend stores",
    ),
    (
        "vote-forgotten",
        "the WAL keeps no vote: a restarted member may vote twice in a term",
    ),
    (
        "apply-before-commit",
        "a leader applies and answers its entries before a quorum holds them",
    ),
    (
        "compaction-drops-live-keys",
        "compaction drops a key's newest revision if nothing followed it",
    ),
    (
        "lease-late-expiry",
        "the leader looks for expired leases every 10 s",
    ),
    (
        "watch-compacted-at-its-revision",
        "a watch starting at the compact revision is told it was compacted",
    ),
    (
        "keepalive-ttl-short",
        "a keepalive answers one second less than the TTL",
    ),
    (
        "filter-after-limit",
        "a range with revision bounds filters only the first limit + 1 keys",
    ),
    (
        "txn-put-drops-prev-kv",
        "a put inside a txn answers without its prev_kv",
    ),
    (
        "overwrite-keeps-lease",
        "a put without a lease leaves its key attached to its old lease",
    ),
    (
        "time-to-live-drops-a-key",
        "TimeToLive with keys leaves the last key out",
    ),
    (
        "lease-leases-drops-the-last",
        "LeaseLeases leaves out the lease with the latest deadline",
    ),
    (
        "watch-event-drops-lease",
        "a watch's put events leave out the key's lease",
    ),
    (
        "header-names-the-leader",
        "a follower's response headers name the leader as the member answering",
    ),
    (
        "watch-drops-prev-kv",
        "a watch leaves out the previous key-value at every 4th revision",
    ),
    (
        "watch-skips-lease-deletes",
        "a watch leaves out the deletes of keys that were attached to a lease",
    ),
    ("watch-from-now-replays-current", "a watch from now also delivers the current revision's events"),
    ("compaction-answered-at-its-revision", "a compaction's answer header carries the compacted revision"),
    ("recompaction-accepted", "a compaction at the compact revision itself is accepted"),
    ("hash-kv-ignores-revision", "HashKV at a past revision hashes the current revision"),
    ("single-key-watch-matches-prefix", "a watch on one key also hears the keys it is a prefix of"),
    ("cancelled-watch-stays", "a cancelled watch is answered as cancelled but keeps delivering"),
    ("txn-duplicate-keys-accepted", "a txn that puts one key twice in one branch is accepted"),
    ("lease-min-ttl-ignored", "a lease asked for below the minimum TTL is granted as asked"),
    ("auth-write-grants-read", "a write permission also allows reading its keys"),
    ("password-change-keeps-tokens", "a user's tokens stay good after its password changes"),
    ("txn-range-revision-unchecked", "a txn that writes is not checked for ranges at bad revisions before it runs"),
    ("progress-notify-ahead", "a server-sent progress notification promises one revision too many"),
    ("watch-from-future-starts-now", "a watch from a revision not yet written starts from the next one"),
    ("delete-event-carries-value", "a delete's watch event carries the deleted key's value"),
    ("time-to-live-of-unknown-is-zero", "TimeToLive of an unknown lease answers TTL 0, not -1"),
    ("last-fragment-marked", "the last part of a fragmented watch response is marked as a fragment too"),
    ("no-space-refuses-deletes", "under a NOSPACE alarm a txn that only deletes is refused too"),
    ("persisted-one-write-early", "a write's completion counts the Readies queued behind it as durable too"),
];
