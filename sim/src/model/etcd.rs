//! etcd's KV API as a sequential object: range, put, delete and txn, with revisions.
//!
//! Follows etcd's mvcc semantics (server/storage/mvcc, `storeTxnWrite`):
//! - The store has one revision counter, starting at 1 on a fresh cluster.
//!   A request that changes something (a put, a delete that removes at
//!   least one key, a txn containing either) raises it by exactly one; all
//!   writes of one txn share that revision. Reads and no-op deletes leave it.
//! - A key's `create_revision` is the revision that created it since it last
//!   did not exist, `mod_revision` the last one that wrote it, `version` the
//!   number of puts since creation. Deleting a key forgets all three.
//! - Every response carries the header revision: the store's revision after
//!   the request. Clients observe it, so it must fit the order the checker
//!   picks, not only the values.
//! - A txn compare on a key that does not exist fails for `value` targets
//!   and compares against zero for the revision and version targets
//!   (etcd `applyCompare`). Reads inside a txn see the txn's earlier writes.
//!
//! - A range's options shape the answer as etcd's `applierV3.Range` does:
//!   `count` is every key in the range, `limit` keeps the first ones and
//!   sets `more`, a sort target other than the key sorts ascending unless
//!   told otherwise (but then, with no order given, only the first
//!   `limit + 1` keys are sorted: etcd decides to fetch everything on the
//!   order asked for), `keys_only` empties values and `count_only` lists
//!   nothing. etcd sorts with Go's unstable `sort.Sort`, so keys that tie
//!   on the sort target may come in any order (and a limit may cut
//!   between them): the check accepts any such answer.
//! - `prev_kv` on a put or delete returns what the request replaced.
//!
//! - Nested txns: every compare of a request, nested ones included, sees
//!   the store as it was before the request (etcd's `compareToPath`).
//!
//! - Leases, as far as keys see them: a grant (with the client's lease
//!   id) and a revoke, which deletes every key attached to the lease in
//!   one revision; a put attaches its key to its lease (or, with
//!   `ignore_lease`, keeps the key's) and detaches it from any other.
//!   Grants and refused revokes leave the revision as it is. Leases never
//!   expire here: the workload grants them for far longer than a run.
//! - Refusals that depend on the store are answers too ([`EtcdOutput::Refused`],
//!   with etcd's error): a put or a txn's taken branch naming a lease that
//!   does not exist, a grant of a lease that exists, a revoke of one that
//!   does not, `ignore_value`/`ignore_lease` on a missing key.
//!
//! Not modelled: lease TTLs and expiry, compaction, watches, reads at a
//! past revision and serializable reads (`properties::past_reads` checks
//! those against this model's states). Requests etcd rejects whatever the
//! store holds (duplicate keys in a txn, too many ops) are definite
//! failures and never reach the model.
//!
//! Revisions are global, so an etcd history cannot be split by key: the
//! model keeps everything in one partition. The observed revisions pin most
//! operations in place, which keeps the search narrow in practice.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{quoted, Model, Transition};

/// etcd's revision counter on a fresh cluster, before any write.
pub const FRESH_CLUSTER_REVISION: i64 = 1;

/// A key as a range returns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    /// The lease the key is attached to; 0 is none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease: i64,
}

/// etcd's `RangeRequest` options the model follows. The default is a plain
/// range: every key, in key order, with values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RangeOptions {
    /// At most this many keys; 0 is no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: i64,
    #[serde(skip_serializing_if = "SortOrder::is_none")]
    pub sort_order: SortOrder,
    #[serde(skip_serializing_if = "SortTarget::is_key")]
    pub sort_target: SortTarget,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub count_only: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keys_only: bool,
    /// Only keys last modified at or after this revision; 0 is no bound.
    /// The four bounds filter the keys listed, not `count`.
    #[serde(skip_serializing_if = "is_zero")]
    pub min_mod_revision: i64,
    /// Only keys last modified at or before this revision; 0 is no bound.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_mod_revision: i64,
    /// Only keys created at or after this revision; 0 is no bound.
    #[serde(skip_serializing_if = "is_zero")]
    pub min_create_revision: i64,
    /// Only keys created at or before this revision; 0 is no bound.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_create_revision: i64,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl RangeOptions {
    pub fn is_plain(&self) -> bool {
        *self == RangeOptions::default()
    }

    fn filtered(&self) -> bool {
        self.min_mod_revision != 0
            || self.max_mod_revision != 0
            || self.min_create_revision != 0
            || self.max_create_revision != 0
    }

    /// Does `kv` pass the revision bounds?
    fn admits(&self, kv: &KeyValue) -> bool {
        let within = |value: i64, min: i64, max: i64| {
            (min == 0 || value >= min) && (max == 0 || value <= max)
        };
        within(
            kv.mod_revision,
            self.min_mod_revision,
            self.max_mod_revision,
        ) && within(
            kv.create_revision,
            self.min_create_revision,
            self.max_create_revision,
        )
    }

    /// The order etcd returns: a target other than the key sorts
    /// ascending when no order is given (etcd `applierV3.Range`).
    fn order(&self) -> SortOrder {
        match (self.sort_order, self.sort_target) {
            (SortOrder::None, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (order, _) => order,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

impl SortOrder {
    fn is_none(&self) -> bool {
        *self == SortOrder::None
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

impl SortTarget {
    fn is_key(&self) -> bool {
        *self == SortTarget::Key
    }
}

/// A condition of a txn on a key or, with `range_end` (as a range's), on
/// every key in a range: it holds when every key there satisfies it, and
/// over no key as over one absent key (etcd 3.4's `applyCompare`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    pub result: CompareResult,
    pub target: CompareTarget,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareResult {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// What a compare looks at, and the operand it compares it with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareTarget {
    Value(String),
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    /// The key's lease (0: none, or the key is absent).
    Lease(i64),
}

/// One operation inside a txn branch. `range_end` follows etcd: absent (or
/// empty) means the single key, `"\0"` means every key from `key` on, otherwise the
/// half-open interval `[key, range_end)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnOp {
    Range {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range_end: Option<String>,
        #[serde(default, skip_serializing_if = "RangeOptions::is_plain")]
        options: RangeOptions,
    },
    Put {
        key: String,
        value: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        prev_kv: bool,
        /// The lease to attach the key to; 0 is none.
        #[serde(default, skip_serializing_if = "is_zero")]
        lease: i64,
    },
    Delete {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range_end: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        prev_kv: bool,
    },
    /// A nested txn. Its compares, like every compare of the request,
    /// see the store as it was before the request (etcd `compareToPath`
    /// decides the whole path first).
    Txn {
        #[serde(default)]
        compare: Vec<Compare>,
        #[serde(default)]
        success: Vec<TxnOp>,
        #[serde(default)]
        failure: Vec<TxnOp>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnOpResponse {
    Range {
        kvs: Vec<KeyValue>,
        /// As answered; absent in histories that did not record them, and
        /// then not checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        more: Option<bool>,
    },
    Put {
        /// The key as the put found it, when the put asked for `prev_kv`
        /// and the key existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_kv: Option<KeyValue>,
    },
    Delete {
        deleted: i64,
        /// The deleted keys, when the delete asked for `prev_kv`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        prev_kvs: Vec<KeyValue>,
    },
    Txn {
        succeeded: bool,
        responses: Vec<TxnOpResponse>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum EtcdInput {
    Range {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range_end: Option<String>,
        #[serde(default, skip_serializing_if = "RangeOptions::is_plain")]
        options: RangeOptions,
    },
    Put {
        key: String,
        value: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        prev_kv: bool,
        /// Keep the key's value (`value` is then empty); etcd refuses it,
        /// changing nothing, when the key does not exist.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ignore_value: bool,
        /// The lease to attach the key to; 0 is none.
        #[serde(default, skip_serializing_if = "is_zero")]
        lease: i64,
        /// Keep the key's lease (`lease` is then 0); refused like
        /// `ignore_value` when the key does not exist.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ignore_lease: bool,
    },
    Delete {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range_end: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        prev_kv: bool,
    },
    Txn {
        #[serde(default)]
        compare: Vec<Compare>,
        #[serde(default)]
        success: Vec<TxnOp>,
        #[serde(default)]
        failure: Vec<TxnOp>,
    },
    /// A lease with the client's id (its TTL is not modelled).
    LeaseGrant { id: i64 },
    /// Ends a lease and deletes the keys attached to it.
    LeaseRevoke { id: i64 },
}

/// etcd's answer to a put, or a txn's taken branch, naming a lease that
/// does not exist, and to a revoke of one.
pub const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
/// etcd's answer to a grant of a lease id in use.
pub const LEASE_EXISTS: &str = "etcdserver: lease already exists";
/// etcd's answer to `ignore_value` or `ignore_lease` on a missing key.
pub const KEY_NOT_FOUND: &str = "etcdserver: key not found";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum EtcdOutput {
    Range {
        header_revision: i64,
        kvs: Vec<KeyValue>,
        /// `count` and `more` as answered; absent in histories that did
        /// not record them, and then not checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        more: Option<bool>,
    },
    Put {
        header_revision: i64,
        /// The key as the put found it, when the put asked for `prev_kv`
        /// and the key existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_kv: Option<KeyValue>,
    },
    Delete {
        header_revision: i64,
        deleted: i64,
        /// The deleted keys, when the delete asked for `prev_kv`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        prev_kvs: Vec<KeyValue>,
    },
    Txn {
        header_revision: i64,
        succeeded: bool,
        responses: Vec<TxnOpResponse>,
    },
    LeaseGrant {
        header_revision: i64,
        id: i64,
    },
    LeaseRevoke {
        header_revision: i64,
    },
    /// etcd refused the request, changing nothing, with this error (one
    /// of the refusals the model decides: [`LEASE_NOT_FOUND`],
    /// [`LEASE_EXISTS`], [`KEY_NOT_FOUND`]).
    Refused {
        error: String,
    },
}

impl EtcdInput {
    pub fn function(&self) -> &'static str {
        match self {
            EtcdInput::Range { .. } => "range",
            EtcdInput::Put { .. } => "put",
            EtcdInput::Delete { .. } => "delete",
            EtcdInput::Txn { .. } => "txn",
            EtcdInput::LeaseGrant { .. } => "lease_grant",
            EtcdInput::LeaseRevoke { .. } => "lease_revoke",
        }
    }
}

impl EtcdOutput {
    /// The revision the answer reports; a refusal reports none.
    pub fn header_revision(&self) -> Option<i64> {
        match *self {
            EtcdOutput::Range {
                header_revision, ..
            }
            | EtcdOutput::Put {
                header_revision, ..
            }
            | EtcdOutput::Delete {
                header_revision, ..
            }
            | EtcdOutput::Txn {
                header_revision, ..
            }
            | EtcdOutput::LeaseGrant {
                header_revision, ..
            }
            | EtcdOutput::LeaseRevoke { header_revision } => Some(header_revision),
            EtcdOutput::Refused { .. } => None,
        }
    }

    /// The request this answers, or None for a refusal (any request's).
    pub fn function(&self) -> Option<&'static str> {
        match self {
            EtcdOutput::Range { .. } => Some("range"),
            EtcdOutput::Put { .. } => Some("put"),
            EtcdOutput::Delete { .. } => Some("delete"),
            EtcdOutput::Txn { .. } => Some("txn"),
            EtcdOutput::LeaseGrant { .. } => Some("lease_grant"),
            EtcdOutput::LeaseRevoke { .. } => Some("lease_revoke"),
            EtcdOutput::Refused { .. } => None,
        }
    }
}

/// A live key's metadata; the key itself is the map key of [`EtcdState`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredValue {
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EtcdState {
    pub revision: i64,
    pub keys: BTreeMap<String, StoredValue>,
    /// The leases that exist.
    pub leases: BTreeSet<i64>,
}

impl EtcdState {
    /// Is (`kvs`, `count`, `more`) an answer etcd may give to a range with
    /// `options` over this store? (`count` and `more` are checked where
    /// given; keys that tie on the sort target may come in any order.)
    pub fn answers_range(
        &self,
        key: &str,
        range_end: Option<&str>,
        options: &RangeOptions,
        kvs: &[KeyValue],
        count: Option<i64>,
        more: Option<bool>,
    ) -> bool {
        shaped_range_matches(range(self, key, range_end), options, kvs, count, more)
    }

    /// Every key in the range as stored, in key order.
    pub fn range_of(&self, key: &str, range_end: Option<&str>) -> Vec<KeyValue> {
        range(self, key, range_end)
    }
}

/// The etcd KV model. `initial_revision` is the store's revision when the
/// history starts (1 on a fresh cluster); the store starts empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Etcd {
    pub initial_revision: i64,
}

impl Default for Etcd {
    fn default() -> Self {
        Etcd {
            initial_revision: FRESH_CLUSTER_REVISION,
        }
    }
}

impl Etcd {
    /// `apply`'s answer. Where `observed` (the answer recorded) has a range
    /// inside a txn that etcd may give (keys tied on the sort target in
    /// another order; `count` or `more` not recorded), that range's
    /// answer is the observed one, so comparing the whole answer checks
    /// the rest.
    fn answer(
        &self,
        state: &EtcdState,
        input: &EtcdInput,
        observed: Option<&EtcdOutput>,
    ) -> (Transition<EtcdState>, EtcdOutput) {
        // Reads are most operations: answer them without copying the store.
        if let EtcdInput::Range {
            key,
            range_end,
            options,
        } = input
        {
            let all = range(state, key, range_end.as_deref());
            let (kvs, count, more) = shape(all, options);
            return (
                Transition::Unchanged,
                EtcdOutput::Range {
                    header_revision: state.revision,
                    kvs,
                    count: Some(count),
                    more: Some(more),
                },
            );
        }
        if let Some(error) = refusal(state, input) {
            return (
                Transition::Unchanged,
                EtcdOutput::Refused {
                    error: error.to_string(),
                },
            );
        }
        let mut write = WriteTxn::begin(state);
        let output = match input {
            EtcdInput::Range { .. } => unreachable!("ranges are answered above"),
            EtcdInput::Put {
                key,
                value,
                prev_kv,
                ignore_value,
                lease,
                ignore_lease,
            } => {
                // Refused above if ignore_value or ignore_lease finds no key.
                let previous = state.keys.get(key.as_str());
                let value = match previous {
                    Some(previous) if *ignore_value => previous.value.as_str(),
                    _ => value.as_str(),
                };
                let lease = match previous {
                    Some(previous) if *ignore_lease => previous.lease,
                    _ => *lease,
                };
                let prev_kv = write.put_answering(key, value, lease, *prev_kv);
                EtcdOutput::Put {
                    header_revision: write.end_revision(),
                    prev_kv,
                }
            }
            EtcdInput::LeaseGrant { id } => {
                write.state.to_mut().leases.insert(*id);
                write.leases_changed = true;
                EtcdOutput::LeaseGrant {
                    header_revision: write.end_revision(),
                    id: *id,
                }
            }
            EtcdInput::LeaseRevoke { id } => {
                write.revoke(*id);
                EtcdOutput::LeaseRevoke {
                    header_revision: write.end_revision(),
                }
            }
            EtcdInput::Delete {
                key,
                range_end,
                prev_kv,
            } => {
                let (deleted, previous) =
                    write.delete_answering(key, range_end.as_deref(), *prev_kv);
                EtcdOutput::Delete {
                    header_revision: write.end_revision(),
                    deleted,
                    prev_kvs: previous,
                }
            }
            EtcdInput::Txn {
                compare,
                success,
                failure,
            } => {
                let observed = match observed {
                    Some(EtcdOutput::Txn { responses, .. }) => Some(responses.as_slice()),
                    _ => None,
                };
                let (succeeded, responses) =
                    write.execute_txn(state, compare, success, failure, observed);
                EtcdOutput::Txn {
                    header_revision: write.end_revision(),
                    succeeded,
                    responses,
                }
            }
        };
        (write.finish(), output)
    }
}

impl Model for Etcd {
    type Input = EtcdInput;
    type Output = EtcdOutput;
    type State = EtcdState;

    const NAME: &'static str = "etcd";

    fn initial_state(&self) -> EtcdState {
        EtcdState {
            revision: self.initial_revision,
            keys: BTreeMap::new(),
            leases: BTreeSet::new(),
        }
    }

    fn apply(&self, state: &EtcdState, input: &EtcdInput) -> (Transition<EtcdState>, EtcdOutput) {
        self.answer(state, input, None)
    }

    /// Same answer as `apply`, cheaper: a range is compared with the store
    /// in place, and a response whose revision cannot follow this state is
    /// refused before running anything. Most of the checker's steps are these.
    fn step(
        &self,
        state: &EtcdState,
        input: &EtcdInput,
        output: Option<&EtcdOutput>,
    ) -> Option<Transition<EtcdState>> {
        match (input, output) {
            (EtcdInput::Range { .. }, None) => Some(Transition::Unchanged),
            (
                EtcdInput::Range {
                    key,
                    range_end,
                    options,
                },
                Some(EtcdOutput::Range {
                    header_revision,
                    kvs,
                    count,
                    more,
                }),
            ) => {
                let matches = *header_revision == state.revision
                    && if options.is_plain() && count.is_none() && more.is_none() {
                        range_matches(state, key, range_end.as_deref(), kvs)
                    } else {
                        state.answers_range(key, range_end.as_deref(), options, kvs, *count, *more)
                    };
                matches.then_some(Transition::Unchanged)
            }
            (_, Some(observed))
                if observed
                    .function()
                    .is_some_and(|function| function != input.function()) =>
            {
                None
            }
            // A request leaves the revision as it was or raises it by one.
            (_, Some(observed))
                if observed.header_revision().is_some_and(|revision| {
                    !(state.revision..=state.revision + 1).contains(&revision)
                }) =>
            {
                None
            }
            (_, observed) => {
                let (transition, expected) = self.answer(state, input, observed);
                observed
                    .is_none_or(|observed| *observed == expected)
                    .then_some(transition)
            }
        }
    }

    fn is_read_only(&self, input: &EtcdInput) -> bool {
        match input {
            EtcdInput::Range { .. } => true,
            EtcdInput::Put { .. }
            | EtcdInput::Delete { .. }
            | EtcdInput::LeaseGrant { .. }
            | EtcdInput::LeaseRevoke { .. } => false,
            EtcdInput::Txn {
                success, failure, ..
            } => success.iter().chain(failure).all(TxnOp::is_read_only),
        }
    }

    /// A refusal changes nothing wherever it is etcd's answer.
    fn answer_changes_nothing(&self, _input: &EtcdInput, output: &EtcdOutput) -> bool {
        matches!(output, EtcdOutput::Refused { .. })
    }

    fn partition_key(&self, _input: &EtcdInput) -> Option<String> {
        None
    }

    fn counter(&self, state: &EtcdState) -> Option<i64> {
        Some(state.revision)
    }

    /// Every response reports the revision after the request, which is at
    /// least the revision before it; a refusal reports none.
    fn counter_bound(&self, _input: &EtcdInput, output: &EtcdOutput) -> Option<i64> {
        output.header_revision()
    }

    fn describe_state(&self, state: &EtcdState) -> String {
        let keys: Vec<String> = state
            .keys
            .iter()
            .map(|(key, stored)| key_value(key, stored).to_string())
            .collect();
        let mut described = format!("revision {} {{{}}}", state.revision, keys.join(", "));
        if !state.leases.is_empty() {
            let leases: Vec<String> = state.leases.iter().map(i64::to_string).collect();
            described.push_str(&format!(" leases {{{}}}", leases.join(", ")));
        }
        described
    }
}

/// The writes of one request, all at revision `base + 1`. The store's
/// revision moves only if something changed (etcd `storeTxnWrite.End`).
/// Copies the store only on its first change: the checker runs many
/// requests that change nothing (failed compares, deletes of absent keys).
struct WriteTxn<'a> {
    state: Cow<'a, EtcdState>,
    /// A key changed: the revision moves.
    changed: bool,
    /// The leases changed (a grant may change nothing else).
    leases_changed: bool,
}

impl<'a> WriteTxn<'a> {
    fn begin(state: &'a EtcdState) -> Self {
        WriteTxn {
            state: Cow::Borrowed(state),
            changed: false,
            leases_changed: false,
        }
    }

    fn write_revision(&self) -> i64 {
        self.state.revision + 1
    }

    /// The header revision this request reports: the store's revision after it.
    fn end_revision(&self) -> i64 {
        if self.changed {
            self.write_revision()
        } else {
            self.state.revision
        }
    }

    fn finish(self) -> Transition<EtcdState> {
        if !self.changed && !self.leases_changed {
            return Transition::Unchanged;
        }
        let revision = self.end_revision();
        let mut state = self.state.into_owned();
        state.revision = revision;
        Transition::Changed(state)
    }

    fn put(&mut self, key: &str, value: &str, lease: i64) {
        let revision = self.write_revision();
        let stored = self
            .state
            .to_mut()
            .keys
            .entry(key.to_string())
            .or_insert(StoredValue {
                value: String::new(),
                create_revision: revision,
                mod_revision: revision,
                version: 0,
                lease: 0,
            });
        stored.value = value.to_string();
        stored.mod_revision = revision;
        stored.version += 1;
        stored.lease = lease;
        self.changed = true;
    }

    /// Ends lease `id` (which exists) and deletes its keys, in one revision.
    fn revoke(&mut self, id: i64) {
        let attached: Vec<String> = (self.state.keys.iter())
            .filter(|(_, stored)| stored.lease == id)
            .map(|(key, _)| key.clone())
            .collect();
        let state = self.state.to_mut();
        state.leases.remove(&id);
        for key in &attached {
            state.keys.remove(key);
        }
        self.leases_changed = true;
        self.changed |= !attached.is_empty();
    }

    fn delete(&mut self, key: &str, range_end: Option<&str>) -> i64 {
        let doomed: Vec<String> = range_keys(&self.state, key, range_end).cloned().collect();
        if !doomed.is_empty() {
            let keys = &mut self.state.to_mut().keys;
            for key in &doomed {
                keys.remove(key);
            }
        }
        self.changed |= !doomed.is_empty();
        i64::try_from(doomed.len()).expect("a store never holds 2^63 keys")
    }

    /// Runs a txn's compares against `before`, then the branch they pick:
    /// whether it succeeded and the branch's responses. `observed` is the
    /// branch's answer as recorded, if any (see `Etcd::answer`).
    fn execute_txn(
        &mut self,
        before: &EtcdState,
        compare: &[Compare],
        success: &[TxnOp],
        failure: &[TxnOp],
        observed: Option<&[TxnOpResponse]>,
    ) -> (bool, Vec<TxnOpResponse>) {
        let succeeded = compare
            .iter()
            .all(|condition| compare_holds(before, condition));
        let branch = if succeeded { success } else { failure };
        let responses = branch
            .iter()
            .enumerate()
            .map(|(index, operation)| {
                let observed = observed.and_then(|responses| responses.get(index));
                self.execute(before, operation, observed)
            })
            .collect();
        (succeeded, responses)
    }

    /// Runs one operation of a txn branch; `before` is the store before
    /// the request, which nested compares see.
    fn execute(
        &mut self,
        before: &EtcdState,
        operation: &TxnOp,
        observed: Option<&TxnOpResponse>,
    ) -> TxnOpResponse {
        match operation {
            TxnOp::Txn {
                compare,
                success,
                failure,
            } => {
                let observed = match observed {
                    Some(TxnOpResponse::Txn { responses, .. }) => Some(responses.as_slice()),
                    _ => None,
                };
                let (succeeded, responses) =
                    self.execute_txn(before, compare, success, failure, observed);
                TxnOpResponse::Txn {
                    succeeded,
                    responses,
                }
            }
            TxnOp::Range {
                key,
                range_end,
                options,
            } => {
                let all = range(&self.state, key, range_end.as_deref());
                if let Some(TxnOpResponse::Range { kvs, count, more }) = observed {
                    if shaped_range_matches(all.clone(), options, kvs, *count, *more) {
                        return observed.expect("matched above").clone();
                    }
                }
                let (kvs, count, more) = shape(all, options);
                TxnOpResponse::Range {
                    kvs,
                    count: Some(count),
                    more: Some(more),
                }
            }
            TxnOp::Put {
                key,
                value,
                prev_kv,
                lease,
            } => TxnOpResponse::Put {
                prev_kv: self.put_answering(key, value, *lease, *prev_kv),
            },
            TxnOp::Delete {
                key,
                range_end,
                prev_kv,
            } => {
                let (deleted, prev_kvs) =
                    self.delete_answering(key, range_end.as_deref(), *prev_kv);
                TxnOpResponse::Delete { deleted, prev_kvs }
            }
        }
    }

    /// A put; with `prev_kv`, the key as it found it (if it existed).
    fn put_answering(
        &mut self,
        key: &str,
        value: &str,
        lease: i64,
        prev_kv: bool,
    ) -> Option<KeyValue> {
        let previous = if prev_kv {
            range(&self.state, key, None).pop()
        } else {
            None
        };
        self.put(key, value, lease);
        previous
    }

    /// A delete: how many keys it deleted and, with `prev_kv`, those keys.
    fn delete_answering(
        &mut self,
        key: &str,
        range_end: Option<&str>,
        prev_kv: bool,
    ) -> (i64, Vec<KeyValue>) {
        let previous = if prev_kv {
            range(&self.state, key, range_end)
        } else {
            Vec::new()
        };
        (self.delete(key, range_end), previous)
    }
}

impl TxnOp {
    fn is_read_only(&self) -> bool {
        match self {
            TxnOp::Range { .. } => true,
            TxnOp::Put { .. } | TxnOp::Delete { .. } => false,
            TxnOp::Txn {
                success, failure, ..
            } => success.iter().chain(failure).all(TxnOp::is_read_only),
        }
    }
}

/// etcd's marker for "every key from `key` on" in `range_end`.
const RANGE_END_ALL: &str = "\0";

/// The keys [`key`, `range_end`) selects, as etcd reads a request's
/// range; `None` for an empty or inverted interval, which selects nothing.
pub fn key_interval<'a>(
    key: &'a str,
    range_end: Option<&'a str>,
) -> Option<(std::ops::Bound<&'a str>, std::ops::Bound<&'a str>)> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    match range_end {
        // An empty range_end is how gRPC spells "absent".
        None | Some("") => Some((Included(key), Included(key))),
        Some(RANGE_END_ALL) => Some((Included(key), Unbounded)),
        Some(end) if end <= key => None,
        Some(end) => Some((Included(key), Excluded(end))),
    }
}

fn range_keys<'a>(
    state: &'a EtcdState,
    key: &'a str,
    range_end: Option<&'a str>,
) -> impl Iterator<Item = &'a String> {
    let iterator = key_interval(key, range_end)
        .map(|bounds| state.keys.range::<str, _>(bounds).map(|(key, _)| key));
    iterator.into_iter().flatten()
}

fn range(state: &EtcdState, key: &str, range_end: Option<&str>) -> Vec<KeyValue> {
    range_keys(state, key, range_end)
        .map(|key| key_value(key, &state.keys[key]))
        .collect()
}

fn key_value(key: &str, stored: &StoredValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: stored.value.clone(),
        create_revision: stored.create_revision,
        mod_revision: stored.mod_revision,
        version: stored.version,
        lease: stored.lease,
    }
}

/// etcd's refusal of `input` in `state`, before it changes anything.
fn refusal(state: &EtcdState, input: &EtcdInput) -> Option<&'static str> {
    match input {
        EtcdInput::Range { .. } | EtcdInput::Delete { .. } => None,
        EtcdInput::Put {
            key,
            lease,
            ignore_value,
            ignore_lease,
            ..
        } => {
            // etcd `applierV3backend.Put`: the lease first, then the key.
            if *lease != 0 && !state.leases.contains(lease) {
                Some(LEASE_NOT_FOUND)
            } else if (*ignore_value || *ignore_lease) && !state.keys.contains_key(key.as_str()) {
                Some(KEY_NOT_FOUND)
            } else {
                None
            }
        }
        EtcdInput::Txn {
            compare,
            success,
            failure,
        } => txn_refusal(state, compare, success, failure),
        EtcdInput::LeaseGrant { id } => state.leases.contains(id).then_some(LEASE_EXISTS),
        EtcdInput::LeaseRevoke { id } => (!state.leases.contains(id)).then_some(LEASE_NOT_FOUND),
    }
}

/// etcd `checkRequests`: before running a txn, each put on the branches
/// its compares (all against the store before it) take must name a lease
/// that exists.
fn txn_refusal(
    state: &EtcdState,
    compare: &[Compare],
    success: &[TxnOp],
    failure: &[TxnOp],
) -> Option<&'static str> {
    let succeeded = compare
        .iter()
        .all(|condition| compare_holds(state, condition));
    let branch = if succeeded { success } else { failure };
    branch.iter().find_map(|operation| match operation {
        TxnOp::Put { lease, .. } if *lease != 0 && !state.leases.contains(lease) => {
            Some(LEASE_NOT_FOUND)
        }
        TxnOp::Txn {
            compare,
            success,
            failure,
        } => txn_refusal(state, compare, success, failure),
        _ => None,
    })
}

/// Does `kvs` list exactly what a range over the store returns?
fn range_matches(state: &EtcdState, key: &str, range_end: Option<&str>, kvs: &[KeyValue]) -> bool {
    let mut expected = range_keys(state, key, range_end);
    for kv in kvs {
        let Some(key) = expected.next() else {
            return false;
        };
        let stored = &state.keys[key];
        let same = kv.key == *key
            && kv.value == stored.value
            && kv.create_revision == stored.create_revision
            && kv.mod_revision == stored.mod_revision
            && kv.version == stored.version
            && kv.lease == stored.lease;
        if !same {
            return false;
        }
    }
    expected.next().is_none()
}

/// The value a sort target orders keys by.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortKey<'a> {
    Number(i64),
    Text(&'a str),
}

fn sort_key(kv: &KeyValue, target: SortTarget) -> SortKey<'_> {
    match target {
        SortTarget::Key => SortKey::Text(&kv.key),
        SortTarget::Value => SortKey::Text(&kv.value),
        SortTarget::Version => SortKey::Number(kv.version),
        SortTarget::Create => SortKey::Number(kv.create_revision),
        SortTarget::Mod => SortKey::Number(kv.mod_revision),
    }
}

/// The keys etcd may list for a range with `options`, from every key in
/// the range (in key order), before sorting and the limit: with neither a
/// sort order nor a revision bound (even for a target other than the
/// key, which still sorts ascending) etcd fetches only the first
/// `limit + 1` keys in key order; the revision bounds then filter.
fn candidates(mut all: Vec<KeyValue>, options: &RangeOptions) -> Vec<KeyValue> {
    if options.sort_order == SortOrder::None && !options.filtered() && options.limit > 0 {
        all.truncate(options.limit as usize + 1);
    }
    all.retain(|kv| options.admits(kv));
    all
}

/// etcd's answer to a range with `options`, from every key in the range
/// (in key order): the listed keys, `count` and `more`. `count` is every
/// key in the range, filters and limit aside. Ties on the sort target
/// keep key order here; `shaped_range_matches` accepts any order.
fn shape(all: Vec<KeyValue>, options: &RangeOptions) -> (Vec<KeyValue>, i64, bool) {
    let count = i64::try_from(all.len()).expect("a store never holds 2^63 keys");
    if options.count_only {
        return (Vec::new(), count, false);
    }
    let mut listed = candidates(all, options);
    match options.order() {
        SortOrder::None => {}
        SortOrder::Ascend => listed.sort_by(|a, b| {
            sort_key(a, options.sort_target).cmp(&sort_key(b, options.sort_target))
        }),
        SortOrder::Descend => listed.sort_by(|a, b| {
            sort_key(b, options.sort_target).cmp(&sort_key(a, options.sort_target))
        }),
    }
    let more = options.limit > 0 && listed.len() as i64 > options.limit;
    if more {
        listed.truncate(options.limit as usize);
    }
    if options.keys_only {
        for kv in &mut listed {
            kv.value.clear();
        }
    }
    (listed, count, more)
}

/// Is `kvs` (with `count` and `more`, where recorded) an answer etcd may
/// give to a range with `options` over `all` (every key in the range, in
/// key order)? Keys that tie on the sort target may come in any order,
/// and a limit may cut anywhere among them.
fn shaped_range_matches(
    all: Vec<KeyValue>,
    options: &RangeOptions,
    kvs: &[KeyValue],
    count: Option<i64>,
    more: Option<bool>,
) -> bool {
    let (expected, expected_count, expected_more) = shape(all.clone(), options);
    if count.is_some_and(|count| count != expected_count)
        || more.is_some_and(|more| more != expected_more)
        || kvs.len() != expected.len()
    {
        return false;
    }
    if options.order() == SortOrder::None || options.sort_target == SortTarget::Key {
        // Keys are unique: there is one answer.
        return kvs == expected;
    }
    // Each listed key is one etcd may list (in the range, within the
    // bounds, among the keys fetched), as stored (its value emptied for
    // keys_only), and listed once ...
    let candidates = candidates(all, options);
    let stored = |key: &str| candidates.iter().find(|stored| stored.key == key);
    let mut seen = std::collections::BTreeSet::new();
    let mut listed = Vec::with_capacity(kvs.len());
    for kv in kvs {
        let Some(full) = stored(&kv.key) else {
            return false;
        };
        let mut shown = full.clone();
        if options.keys_only {
            shown.value.clear();
        }
        if *kv != shown || !seen.insert(kv.key.as_str()) {
            return false;
        }
        listed.push(full);
    }
    // ... and their sort values, in order, are the expected answer's: so
    // they are sorted, and the limit cut at the same sort value. Values
    // count as stored (etcd sorts before keys_only empties them).
    let target = options.sort_target;
    let expected_full = expected
        .iter()
        .map(|kv| stored(&kv.key).expect("the expected answer comes from the candidates"));
    listed
        .iter()
        .map(|kv| sort_key(kv, target))
        .eq(expected_full.map(|kv| sort_key(kv, target)))
}

fn compare_holds(state: &EtcdState, condition: &Compare) -> bool {
    let mut keys = range_keys(state, &condition.key, condition.range_end.as_deref()).peekable();
    if keys.peek().is_none() {
        return stored_holds(None, condition);
    }
    keys.all(|key| stored_holds(state.keys.get(key), condition))
}

/// The compare on one key as stored (None: absent).
fn stored_holds(stored: Option<&StoredValue>, condition: &Compare) -> bool {
    let ordering = match (&condition.target, stored) {
        // etcd: "nil == empty string in grpc; no way to represent missing value".
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Value(expected), Some(stored)) => {
            stored.value.as_str().cmp(expected.as_str())
        }
        (CompareTarget::Version(expected), _) => {
            stored.map_or(0, |stored| stored.version).cmp(expected)
        }
        (CompareTarget::CreateRevision(expected), _) => stored
            .map_or(0, |stored| stored.create_revision)
            .cmp(expected),
        (CompareTarget::ModRevision(expected), _) => {
            stored.map_or(0, |stored| stored.mod_revision).cmp(expected)
        }
        (CompareTarget::Lease(expected), _) => {
            stored.map_or(0, |stored| stored.lease).cmp(expected)
        }
    };
    match condition.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

fn describe_range(
    formatter: &mut fmt::Formatter<'_>,
    key: &str,
    range_end: Option<&str>,
) -> fmt::Result {
    match range_end {
        None | Some("") => write!(formatter, "{}", quoted(key)),
        Some(RANGE_END_ALL) => write!(formatter, "[{}..)", quoted(key)),
        Some(end) => write!(formatter, "[{}..{})", quoted(key), quoted(end)),
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}={} (create {}, mod {}, version {}",
            quoted(&self.key),
            quoted(&self.value),
            self.create_revision,
            self.mod_revision,
            self.version
        )?;
        if self.lease != 0 {
            write!(formatter, ", lease {}", self.lease)?;
        }
        write!(formatter, ")")
    }
}

impl fmt::Display for TxnOp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnOp::Range {
                key,
                range_end,
                options,
            } => describe_range_request(formatter, key, range_end.as_deref(), options),
            TxnOp::Put {
                key,
                value,
                prev_kv,
                lease,
            } => describe_put(formatter, key, value, *lease, &[("prev_kv", *prev_kv)]),
            TxnOp::Txn {
                compare,
                success,
                failure,
            } => write!(
                formatter,
                "txn if [{}] then [{}] else [{}]",
                join(compare, " && "),
                join(success, "; "),
                join(failure, "; ")
            ),
            TxnOp::Delete {
                key,
                range_end,
                prev_kv,
            } => describe_delete(formatter, key, range_end.as_deref(), *prev_kv),
        }
    }
}

fn describe_range_request(
    formatter: &mut fmt::Formatter<'_>,
    key: &str,
    range_end: Option<&str>,
    options: &RangeOptions,
) -> fmt::Result {
    write!(formatter, "range ")?;
    describe_range(formatter, key, range_end)?;
    if !options.is_plain() {
        write!(formatter, " {options}")?;
    }
    Ok(())
}

/// A put, then its flags that are set (`prev_kv`, `ignore_value`, ...).
fn describe_put(
    formatter: &mut fmt::Formatter<'_>,
    key: &str,
    value: &str,
    lease: i64,
    flags: &[(&str, bool)],
) -> fmt::Result {
    write!(formatter, "put {} {}", quoted(key), quoted(value))?;
    if lease != 0 {
        write!(formatter, " lease {lease}")?;
    }
    for (flag, _) in flags.iter().filter(|(_, set)| *set) {
        write!(formatter, " {flag}")?;
    }
    Ok(())
}

fn describe_delete(
    formatter: &mut fmt::Formatter<'_>,
    key: &str,
    range_end: Option<&str>,
    prev_kv: bool,
) -> fmt::Result {
    write!(formatter, "delete ")?;
    describe_range(formatter, key, range_end)?;
    if prev_kv {
        write!(formatter, " prev_kv")?;
    }
    Ok(())
}

/// A range's answer after its revision: the keys, `count` and `more`.
fn describe_listed(
    formatter: &mut fmt::Formatter<'_>,
    kvs: &[KeyValue],
    count: Option<i64>,
    more: Option<bool>,
) -> fmt::Result {
    write!(formatter, "[{}]", join(kvs, ", "))?;
    if let Some(count) = count {
        write!(formatter, " count {count}")?;
    }
    if more == Some(true) {
        write!(formatter, " more")?;
    }
    Ok(())
}

fn describe_deleted(
    formatter: &mut fmt::Formatter<'_>,
    deleted: i64,
    prev_kvs: &[KeyValue],
) -> fmt::Result {
    write!(formatter, "deleted {deleted}")?;
    if !prev_kvs.is_empty() {
        write!(formatter, " prev [{}]", join(prev_kvs, ", "))?;
    }
    Ok(())
}

impl fmt::Display for Compare {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let relation = match self.result {
            CompareResult::Equal => "=",
            CompareResult::NotEqual => "!=",
            CompareResult::Greater => ">",
            CompareResult::Less => "<",
        };
        let key = match self.range_end.as_deref() {
            None | Some("") => quoted(&self.key),
            Some(RANGE_END_ALL) => format!("[{}..)", quoted(&self.key)),
            Some(end) => format!("[{}..{})", quoted(&self.key), quoted(end)),
        };
        match &self.target {
            CompareTarget::Value(value) => {
                write!(formatter, "value({key}) {relation} {}", quoted(value))
            }
            CompareTarget::Version(version) => {
                write!(formatter, "version({key}) {relation} {version}")
            }
            CompareTarget::CreateRevision(revision) => {
                write!(formatter, "create_revision({key}) {relation} {revision}")
            }
            CompareTarget::ModRevision(revision) => {
                write!(formatter, "mod_revision({key}) {relation} {revision}")
            }
            CompareTarget::Lease(lease) => write!(formatter, "lease({key}) {relation} {lease}"),
        }
    }
}

fn join<T: fmt::Display>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

impl fmt::Display for EtcdInput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdInput::Range {
                key,
                range_end,
                options,
            } => describe_range_request(formatter, key, range_end.as_deref(), options),
            EtcdInput::Put {
                key,
                value,
                prev_kv,
                ignore_value,
                lease,
                ignore_lease,
            } => describe_put(
                formatter,
                key,
                value,
                *lease,
                &[
                    ("prev_kv", *prev_kv),
                    ("ignore_value", *ignore_value),
                    ("ignore_lease", *ignore_lease),
                ],
            ),
            EtcdInput::LeaseGrant { id } => write!(formatter, "grant lease {id}"),
            EtcdInput::LeaseRevoke { id } => write!(formatter, "revoke lease {id}"),
            EtcdInput::Delete {
                key,
                range_end,
                prev_kv,
            } => describe_delete(formatter, key, range_end.as_deref(), *prev_kv),
            EtcdInput::Txn {
                compare,
                success,
                failure,
            } => write!(
                formatter,
                "txn if [{}] then [{}] else [{}]",
                join(compare, " && "),
                join(success, "; "),
                join(failure, "; ")
            ),
        }
    }
}

impl fmt::Display for RangeOptions {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.limit != 0 {
            parts.push(format!("limit {}", self.limit));
        }
        if self.sort_order != SortOrder::None || self.sort_target != SortTarget::Key {
            parts.push(
                format!("sort {:?} by {:?}", self.sort_order, self.sort_target).to_lowercase(),
            );
        }
        if self.count_only {
            parts.push("count_only".into());
        }
        if self.keys_only {
            parts.push("keys_only".into());
        }
        for (name, bound) in [
            ("min_mod_revision", self.min_mod_revision),
            ("max_mod_revision", self.max_mod_revision),
            ("min_create_revision", self.min_create_revision),
            ("max_create_revision", self.max_create_revision),
        ] {
            if bound != 0 {
                parts.push(format!("{name} {bound}"));
            }
        }
        write!(formatter, "({})", parts.join(", "))
    }
}

impl fmt::Display for TxnOpResponse {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnOpResponse::Range { kvs, count, more } => {
                describe_listed(formatter, kvs, *count, *more)
            }
            TxnOpResponse::Put { prev_kv: None } => write!(formatter, "ok"),
            TxnOpResponse::Put {
                prev_kv: Some(prev_kv),
            } => write!(formatter, "ok prev {prev_kv}"),
            TxnOpResponse::Delete { deleted, prev_kvs } => {
                describe_deleted(formatter, *deleted, prev_kvs)
            }
            TxnOpResponse::Txn {
                succeeded,
                responses,
            } => write!(
                formatter,
                "{} [{}]",
                if *succeeded { "succeeded" } else { "failed" },
                join(responses, "; ")
            ),
        }
    }
}

impl fmt::Display for EtcdOutput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdOutput::Range {
                header_revision,
                kvs,
                count,
                more,
            } => {
                write!(formatter, "revision {header_revision} ")?;
                describe_listed(formatter, kvs, *count, *more)
            }
            EtcdOutput::Put {
                header_revision,
                prev_kv,
            } => {
                write!(formatter, "revision {header_revision}")?;
                if let Some(prev_kv) = prev_kv {
                    write!(formatter, " prev {prev_kv}")?;
                }
                Ok(())
            }
            EtcdOutput::Delete {
                header_revision,
                deleted,
                prev_kvs,
            } => {
                write!(formatter, "revision {header_revision} ")?;
                describe_deleted(formatter, *deleted, prev_kvs)
            }
            EtcdOutput::Txn {
                header_revision,
                succeeded,
                responses,
            } => write!(
                formatter,
                "revision {header_revision} {} [{}]",
                if *succeeded { "succeeded" } else { "failed" },
                join(responses, "; ")
            ),
            EtcdOutput::LeaseGrant {
                header_revision,
                id,
            } => write!(formatter, "revision {header_revision} lease {id}"),
            EtcdOutput::LeaseRevoke { header_revision } => {
                write!(formatter, "revision {header_revision}")
            }
            EtcdOutput::Refused { error } => write!(formatter, "refused: {error}"),
        }
    }
}

/// A key-value with the given revisions, for tests.
#[cfg(test)]
pub(crate) fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(model: &Etcd, state: &mut EtcdState, input: EtcdInput) -> EtcdOutput {
        let (transition, output) = model.apply(state, &input);
        if let Transition::Changed(next) = transition {
            *state = next;
        }
        output
    }

    fn put(key: &str, value: &str) -> EtcdInput {
        EtcdInput::Put {
            key: key.into(),
            value: value.into(),
            prev_kv: false,
            ignore_value: false,
            lease: 0,
            ignore_lease: false,
        }
    }

    #[test]
    fn writes_raise_the_revision_and_reads_see_metadata() {
        let model = Etcd::default();
        let mut state = model.initial_state();
        assert_eq!(
            run(&model, &mut state, put("a", "1")),
            EtcdOutput::Put {
                header_revision: 2,
                prev_kv: None
            }
        );
        assert_eq!(
            run(&model, &mut state, put("a", "2")),
            EtcdOutput::Put {
                header_revision: 3,
                prev_kv: None
            }
        );
        let read = run(
            &model,
            &mut state,
            EtcdInput::Range {
                key: "a".into(),
                range_end: None,
                options: RangeOptions::default(),
            },
        );
        let expected = KeyValue {
            key: "a".into(),
            value: "2".into(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            lease: 0,
        };
        assert_eq!(
            read,
            EtcdOutput::Range {
                header_revision: 3,
                kvs: vec![expected],
                count: Some(1),
                more: Some(false),
            }
        );
    }

    #[test]
    fn deleting_nothing_keeps_the_revision() {
        let model = Etcd::default();
        let mut state = model.initial_state();
        let delete = EtcdInput::Delete {
            key: "missing".into(),
            range_end: None,
            prev_kv: false,
        };
        assert_eq!(
            run(&model, &mut state, delete),
            EtcdOutput::Delete {
                header_revision: 1,
                deleted: 0,
                prev_kvs: vec![],
            }
        );
        run(&model, &mut state, put("a", "1"));
        run(&model, &mut state, put("b", "1"));
        let delete_all = EtcdInput::Delete {
            key: "a".into(),
            range_end: Some(RANGE_END_ALL.into()),
            prev_kv: false,
        };
        assert_eq!(
            run(&model, &mut state, delete_all),
            EtcdOutput::Delete {
                header_revision: 4,
                deleted: 2,
                prev_kvs: vec![],
            }
        );
        run(&model, &mut state, put("a", "again"));
        assert_eq!(state.keys["a"].create_revision, 5);
        assert_eq!(state.keys["a"].version, 1);
    }

    #[test]
    fn txn_compares_and_shares_one_revision() {
        let model = Etcd::default();
        let mut state = model.initial_state();
        let missing_value = Compare {
            key: "a".into(),
            range_end: None,
            result: CompareResult::NotEqual,
            target: CompareTarget::Value("x".into()),
        };
        let absent = Compare {
            key: "a".into(),
            range_end: None,
            result: CompareResult::Equal,
            target: CompareTarget::ModRevision(0),
        };
        let txn = |compare: Compare| EtcdInput::Txn {
            compare: vec![compare],
            success: vec![
                TxnOp::Put {
                    key: "a".into(),
                    value: "1".into(),
                    prev_kv: false,
                    lease: 0,
                },
                TxnOp::Put {
                    key: "b".into(),
                    value: "1".into(),
                    prev_kv: false,
                    lease: 0,
                },
            ],
            failure: vec![TxnOp::Range {
                key: "a".into(),
                range_end: None,
                options: RangeOptions::default(),
            }],
        };
        // A value compare on a missing key fails, even "not equal".
        let failed = run(&model, &mut state, txn(missing_value));
        assert_eq!(
            failed,
            EtcdOutput::Txn {
                header_revision: 1,
                succeeded: false,
                responses: vec![TxnOpResponse::Range {
                    kvs: vec![],
                    count: Some(0),
                    more: Some(false),
                }]
            }
        );
        let succeeded = run(&model, &mut state, txn(absent));
        let responses = vec![
            TxnOpResponse::Put { prev_kv: None },
            TxnOpResponse::Put { prev_kv: None },
        ];
        assert_eq!(
            succeeded,
            EtcdOutput::Txn {
                header_revision: 2,
                succeeded: true,
                responses
            }
        );
        assert_eq!(state.keys["b"].mod_revision, 2);
    }

    #[test]
    fn range_intervals_follow_etcd() {
        let model = Etcd::default();
        let mut state = model.initial_state();
        for key in ["a", "b", "c"] {
            run(&model, &mut state, put(key, key));
        }
        let keys = |range_end: Option<&str>| -> Vec<String> {
            range(&state, "b", range_end)
                .into_iter()
                .map(|kv| kv.key)
                .collect()
        };
        assert_eq!(keys(None), ["b"]);
        assert_eq!(keys(Some("c")), ["b"]);
        assert_eq!(keys(Some(RANGE_END_ALL)), ["b", "c"]);
        assert!(keys(Some("a")).is_empty());
    }

    /// a=x (rev 2), b=y (rev 3, then 4: version 2), c=x (rev 5).
    fn three_keys() -> (Etcd, EtcdState) {
        let model = Etcd::default();
        let mut state = model.initial_state();
        for (key, value) in [("a", "x"), ("b", "y"), ("b", "y"), ("c", "x")] {
            run(&model, &mut state, put(key, value));
        }
        (model, state)
    }

    fn ranged(options: RangeOptions) -> EtcdInput {
        EtcdInput::Range {
            key: "a".into(),
            range_end: Some(RANGE_END_ALL.into()),
            options,
        }
    }

    fn answer(kvs: Vec<KeyValue>, count: i64, more: bool) -> EtcdOutput {
        EtcdOutput::Range {
            header_revision: 5,
            kvs,
            count: Some(count),
            more: Some(more),
        }
    }

    impl EtcdInput {
        fn options(&self) -> &RangeOptions {
            match self {
                EtcdInput::Range { options, .. } => options,
                _ => panic!("not a range"),
            }
        }
    }

    fn accepts(model: &Etcd, state: &EtcdState, input: &EtcdInput, output: EtcdOutput) -> bool {
        model.step(state, input, Some(&output)).is_some()
    }

    #[test]
    fn range_options_shape_the_answer_as_etcd_does() {
        let (model, state) = three_keys();
        let (a, b, c) = (
            kv("a", "x", 2, 2, 1),
            kv("b", "y", 3, 4, 2),
            kv("c", "x", 5, 5, 1),
        );
        let limited = ranged(RangeOptions {
            limit: 2,
            ..RangeOptions::default()
        });
        assert!(accepts(
            &model,
            &state,
            &limited,
            answer(vec![a.clone(), b.clone()], 3, true)
        ));
        assert!(
            !accepts(
                &model,
                &state,
                &limited,
                answer(vec![a.clone(), b.clone()], 2, true)
            ),
            "count ignores the limit"
        );
        assert!(
            !accepts(
                &model,
                &state,
                &limited,
                answer(vec![a.clone(), b.clone()], 3, false)
            ),
            "more is set"
        );
        assert!(!accepts(
            &model,
            &state,
            &limited,
            answer(vec![a.clone()], 3, true)
        ));
        let descending = ranged(RangeOptions {
            sort_order: SortOrder::Descend,
            ..RangeOptions::default()
        });
        assert!(accepts(
            &model,
            &state,
            &descending,
            answer(vec![c.clone(), b.clone(), a.clone()], 3, false)
        ));
        assert!(!accepts(
            &model,
            &state,
            &descending,
            answer(vec![a.clone(), b.clone(), c.clone()], 3, false)
        ));
        let counted = ranged(RangeOptions {
            count_only: true,
            ..RangeOptions::default()
        });
        assert!(accepts(&model, &state, &counted, answer(vec![], 3, false)));
        assert!(!accepts(
            &model,
            &state,
            &counted,
            answer(vec![a.clone()], 3, false)
        ));
        let keys_only = ranged(RangeOptions {
            keys_only: true,
            limit: 1,
            ..RangeOptions::default()
        });
        assert!(accepts(
            &model,
            &state,
            &keys_only,
            answer(vec![kv("a", "", 2, 2, 1)], 3, true)
        ));
        assert!(
            !accepts(&model, &state, &keys_only, answer(vec![a.clone()], 3, true)),
            "keys_only hides values"
        );
    }

    #[test]
    fn keys_that_tie_on_the_sort_target_may_come_in_any_order() {
        let (model, state) = three_keys();
        let (a, b, c) = (
            kv("a", "x", 2, 2, 1),
            kv("b", "y", 3, 4, 2),
            kv("c", "x", 5, 5, 1),
        );
        // By value, ascending by default: a and c tie on "x".
        let by_value = ranged(RangeOptions {
            sort_target: SortTarget::Value,
            ..RangeOptions::default()
        });
        assert!(accepts(
            &model,
            &state,
            &by_value,
            answer(vec![a.clone(), c.clone(), b.clone()], 3, false)
        ));
        assert!(accepts(
            &model,
            &state,
            &by_value,
            answer(vec![c.clone(), a.clone(), b.clone()], 3, false)
        ));
        assert!(!accepts(
            &model,
            &state,
            &by_value,
            answer(vec![a.clone(), b.clone(), c.clone()], 3, false)
        ));
        // A limit may cut between the tied keys.
        let first_by_version = ranged(RangeOptions {
            sort_target: SortTarget::Version,
            limit: 1,
            ..RangeOptions::default()
        });
        assert!(accepts(
            &model,
            &state,
            &first_by_version,
            answer(vec![a.clone()], 3, true)
        ));
        let first_of_all_by_version = ranged(RangeOptions {
            sort_order: SortOrder::Ascend,
            ..first_by_version.options().clone()
        });
        assert!(accepts(
            &model,
            &state,
            &first_of_all_by_version,
            answer(vec![c.clone()], 3, true)
        ));
        assert!(
            !accepts(
                &model,
                &state,
                &first_by_version,
                answer(vec![c.clone()], 3, true)
            ),
            "with no order etcd sorts only a and b, the first limit + 1 keys"
        );
        assert!(!accepts(
            &model,
            &state,
            &first_by_version,
            answer(vec![b.clone()], 3, true)
        ));
        let newest_first = ranged(RangeOptions {
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Mod,
            limit: 2,
            ..RangeOptions::default()
        });
        assert!(accepts(
            &model,
            &state,
            &newest_first,
            answer(vec![c, b], 3, true)
        ));
    }

    #[test]
    fn with_no_order_a_limit_sorts_only_the_first_keys() {
        // etcd 3.4 `applierV3.Range`: no sort order, a value target and a
        // limit of 1 fetch "a" and "b" (limit + 1, in key order) and sort
        // those: "c", which would sort first, is never looked at.
        let (model, mut state) = three_keys();
        run(&model, &mut state, put("c", "a"));
        let first_by_value = ranged(RangeOptions {
            sort_target: SortTarget::Value,
            limit: 1,
            ..RangeOptions::default()
        });
        let answer = EtcdOutput::Range {
            header_revision: 6,
            kvs: vec![kv("a", "x", 2, 2, 1)],
            count: Some(3),
            more: Some(true),
        };
        assert!(accepts(&model, &state, &first_by_value, answer));
    }

    #[test]
    fn revision_bounds_filter_the_keys_listed_but_not_the_count() {
        // a: create 2, mod 2; b: create 3, mod 4; c: create 5, mod 5.
        let (model, state) = three_keys();
        let (a, b, c) = (
            kv("a", "x", 2, 2, 1),
            kv("b", "y", 3, 4, 2),
            kv("c", "x", 5, 5, 1),
        );
        let cases = [
            (
                RangeOptions {
                    min_mod_revision: 4,
                    ..RangeOptions::default()
                },
                vec![b.clone(), c.clone()],
                false,
            ),
            (
                RangeOptions {
                    max_mod_revision: 4,
                    ..RangeOptions::default()
                },
                vec![a.clone(), b.clone()],
                false,
            ),
            (
                RangeOptions {
                    min_create_revision: 3,
                    max_create_revision: 3,
                    ..RangeOptions::default()
                },
                vec![b.clone()],
                false,
            ),
            // A bound makes etcd fetch every key before the limit: the
            // first key past the bound is listed, not cut away with a.
            (
                RangeOptions {
                    min_create_revision: 3,
                    limit: 1,
                    ..RangeOptions::default()
                },
                vec![b.clone()],
                true,
            ),
            (
                RangeOptions {
                    max_create_revision: 3,
                    limit: 2,
                    ..RangeOptions::default()
                },
                vec![a.clone(), b.clone()],
                false,
            ),
            (
                RangeOptions {
                    min_mod_revision: 3,
                    sort_order: SortOrder::Descend,
                    sort_target: SortTarget::Create,
                    ..RangeOptions::default()
                },
                vec![c.clone(), b.clone()],
                false,
            ),
        ];
        for (options, listed, more) in cases {
            let input = ranged(options.clone());
            let (_, output) = model.apply(&state, &input);
            assert_eq!(output, answer(listed.clone(), 3, more), "{options}");
            assert!(accepts(&model, &state, &input, answer(listed, 3, more)));
            assert!(
                !accepts(
                    &model,
                    &state,
                    &input,
                    answer(vec![a.clone(), b.clone(), c.clone()], 3, false)
                ),
                "{options} filters"
            );
        }
        // Keys tied on the sort target must still be within the bounds.
        let by_value = ranged(RangeOptions {
            sort_target: SortTarget::Value,
            min_create_revision: 3,
            ..RangeOptions::default()
        });
        assert!(accepts(
            &model,
            &state,
            &by_value,
            answer(vec![c.clone(), b.clone()], 3, false)
        ));
        assert!(!accepts(
            &model,
            &state,
            &by_value,
            answer(vec![a, b], 3, false)
        ));
    }

    #[test]
    fn ranges_and_writes_inside_a_txn_answer_as_outside() {
        let (model, state) = three_keys();
        let (a, b, c) = (
            kv("a", "x", 2, 2, 1),
            kv("b", "y", 3, 4, 2),
            kv("c", "x", 5, 5, 1),
        );
        let txn = |options: RangeOptions| EtcdInput::Txn {
            compare: vec![],
            success: vec![
                TxnOp::Range {
                    key: "a".into(),
                    range_end: Some(RANGE_END_ALL.into()),
                    options,
                },
                TxnOp::Put {
                    key: "a".into(),
                    value: "z".into(),
                    prev_kv: true,
                    lease: 0,
                },
                TxnOp::Delete {
                    key: "b".into(),
                    range_end: Some("c".into()),
                    prev_kv: true,
                },
            ],
            failure: vec![],
        };
        let answer = |kvs: Vec<KeyValue>, count: Option<i64>, more: Option<bool>| EtcdOutput::Txn {
            header_revision: 6,
            succeeded: true,
            responses: vec![
                TxnOpResponse::Range { kvs, count, more },
                TxnOpResponse::Put {
                    prev_kv: Some(a.clone()),
                },
                TxnOpResponse::Delete {
                    deleted: 1,
                    prev_kvs: vec![b.clone()],
                },
            ],
        };
        let by_value = txn(RangeOptions {
            sort_target: SortTarget::Value,
            limit: 2,
            sort_order: SortOrder::Ascend,
            ..RangeOptions::default()
        });
        let (_, output) = model.apply(&state, &by_value);
        assert_eq!(
            output,
            answer(vec![a.clone(), c.clone()], Some(3), Some(true))
        );
        // a and c tie on "x": either order is etcd's.
        for listed in [vec![a.clone(), c.clone()], vec![c.clone(), a.clone()]] {
            assert!(accepts(
                &model,
                &state,
                &by_value,
                answer(listed, Some(3), Some(true))
            ));
        }
        // Histories that did not record count and more are not held to them.
        assert!(accepts(
            &model,
            &state,
            &by_value,
            answer(vec![c.clone(), a.clone()], None, None)
        ));
        assert!(!accepts(
            &model,
            &state,
            &by_value,
            answer(vec![a.clone(), b.clone()], Some(3), Some(true))
        ));
        assert!(
            !accepts(
                &model,
                &state,
                &by_value,
                answer(vec![a.clone(), c.clone()], Some(2), Some(true))
            ),
            "count is every key in the range"
        );
        let limited = txn(RangeOptions {
            limit: 1,
            ..RangeOptions::default()
        });
        assert!(accepts(
            &model,
            &state,
            &limited,
            answer(vec![a.clone()], Some(3), Some(true))
        ));
        assert!(
            !accepts(
                &model,
                &state,
                &limited,
                answer(vec![a.clone(), b.clone(), c.clone()], Some(3), Some(false))
            ),
            "a range inside a txn keeps its limit"
        );
        // The put's and the delete's previous key-values are checked.
        let mut wrong = answer(vec![a.clone()], Some(3), Some(true));
        if let EtcdOutput::Txn { responses, .. } = &mut wrong {
            responses[1] = TxnOpResponse::Put { prev_kv: None };
        }
        assert!(!accepts(&model, &state, &limited, wrong));
    }

    fn leased(key: &str, value: &str, lease: i64) -> EtcdInput {
        EtcdInput::Put {
            key: key.into(),
            value: value.into(),
            prev_kv: false,
            ignore_value: false,
            lease,
            ignore_lease: false,
        }
    }

    fn refused(error: &str) -> EtcdOutput {
        EtcdOutput::Refused {
            error: error.into(),
        }
    }

    #[test]
    fn a_revoke_deletes_the_keys_attached_to_its_lease_in_one_revision() {
        let model = Etcd::default();
        let mut state = model.initial_state();
        // A grant changes the leases, not the revision.
        assert_eq!(
            run(&model, &mut state, EtcdInput::LeaseGrant { id: 7 }),
            EtcdOutput::LeaseGrant {
                header_revision: 1,
                id: 7
            }
        );
        assert_eq!(
            run(&model, &mut state, EtcdInput::LeaseGrant { id: 7 }),
            refused(LEASE_EXISTS)
        );
        assert_eq!(
            run(&model, &mut state, leased("a", "1", 8)),
            refused(LEASE_NOT_FOUND)
        );
        assert_eq!(state.revision, 1, "refusals change nothing");
        run(&model, &mut state, leased("a", "1", 7));
        run(&model, &mut state, leased("b", "1", 7));
        run(&model, &mut state, leased("c", "1", 7));
        // Overwritten without a lease: detached. With ignore_lease: kept.
        run(&model, &mut state, put("b", "2"));
        let keep_lease = EtcdInput::Put {
            key: "c".into(),
            value: "2".into(),
            prev_kv: false,
            ignore_value: false,
            lease: 0,
            ignore_lease: true,
        };
        run(&model, &mut state, keep_lease);
        assert_eq!(state.keys["c"].lease, 7);
        assert_eq!(state.keys["b"].lease, 0);
        let on_lease = |lease| EtcdInput::Txn {
            compare: vec![Compare {
                key: "a".into(),
                range_end: None,
                result: CompareResult::Equal,
                target: CompareTarget::Lease(lease),
            }],
            success: vec![],
            failure: vec![],
        };
        let succeeded = |output: EtcdOutput| {
            matches!(
                output,
                EtcdOutput::Txn {
                    succeeded: true,
                    ..
                }
            )
        };
        assert!(succeeded(run(&model, &mut state, on_lease(7))));
        assert!(!succeeded(run(&model, &mut state, on_lease(0))));
        assert_eq!(state.revision, 6);
        assert_eq!(
            run(&model, &mut state, EtcdInput::LeaseRevoke { id: 7 }),
            EtcdOutput::LeaseRevoke { header_revision: 7 }
        );
        assert_eq!(state.keys.keys().collect::<Vec<_>>(), ["b"]);
        assert!(state.leases.is_empty());
        assert_eq!(
            run(&model, &mut state, EtcdInput::LeaseRevoke { id: 7 }),
            refused(LEASE_NOT_FOUND)
        );
        // A revoke of a lease with no keys moves no revision.
        run(&model, &mut state, EtcdInput::LeaseGrant { id: 9 });
        assert_eq!(
            run(&model, &mut state, EtcdInput::LeaseRevoke { id: 9 }),
            EtcdOutput::LeaseRevoke { header_revision: 7 }
        );
    }

    #[test]
    fn a_txn_naming_a_missing_lease_on_its_taken_branch_is_refused() {
        let model = Etcd::default();
        let mut state = model.initial_state();
        let txn = |holds: bool| EtcdInput::Txn {
            compare: vec![Compare {
                key: "a".into(),
                range_end: None,
                result: if holds {
                    CompareResult::Equal
                } else {
                    CompareResult::NotEqual
                },
                target: CompareTarget::Version(0),
            }],
            success: vec![TxnOp::Txn {
                compare: vec![],
                success: vec![TxnOp::Put {
                    key: "a".into(),
                    value: "1".into(),
                    prev_kv: false,
                    lease: 5,
                }],
                failure: vec![],
            }],
            failure: vec![TxnOp::Put {
                key: "b".into(),
                value: "1".into(),
                prev_kv: false,
                lease: 0,
            }],
        };
        assert_eq!(run(&model, &mut state, txn(true)), refused(LEASE_NOT_FOUND));
        assert_eq!(state.revision, 1);
        // The branch not taken may name any lease.
        assert!(matches!(
            run(&model, &mut state, txn(false)),
            EtcdOutput::Txn {
                header_revision: 2,
                succeeded: false,
                ..
            }
        ));
        // A refusal fits no other state: here, once the lease exists.
        run(&model, &mut state, EtcdInput::LeaseGrant { id: 5 });
        assert!(!accepts(
            &model,
            &state,
            &txn(true),
            refused(LEASE_NOT_FOUND)
        ));
    }

    #[test]
    fn ignore_value_keeps_the_value_and_needs_the_key() {
        let (model, mut state) = three_keys();
        let keep = |key: &str| EtcdInput::Put {
            key: key.into(),
            value: String::new(),
            prev_kv: false,
            ignore_value: true,
            lease: 0,
            ignore_lease: false,
        };
        let before = state.keys["b"].clone();
        run(&model, &mut state, keep("b"));
        let after = &state.keys["b"];
        assert_eq!(after.value, before.value);
        assert_eq!(after.version, before.version + 1);
        assert_eq!(after.mod_revision, state.revision);
        let (transition, output) = model.apply(&state, &keep("absent"));
        assert_eq!(transition, Transition::Unchanged);
        assert_eq!(
            output,
            EtcdOutput::Refused {
                error: KEY_NOT_FOUND.into()
            }
        );
    }

    #[test]
    fn prev_kv_returns_what_the_write_replaced() {
        let (model, mut state) = three_keys();
        let replace = EtcdInput::Put {
            key: "b".into(),
            value: "z".into(),
            prev_kv: true,
            ignore_value: false,
            lease: 0,
            ignore_lease: false,
        };
        assert_eq!(
            run(&model, &mut state, replace),
            EtcdOutput::Put {
                header_revision: 6,
                prev_kv: Some(kv("b", "y", 3, 4, 2)),
            }
        );
        let delete = EtcdInput::Delete {
            key: "a".into(),
            range_end: Some("c".into()),
            prev_kv: true,
        };
        assert_eq!(
            run(&model, &mut state, delete),
            EtcdOutput::Delete {
                header_revision: 7,
                deleted: 2,
                prev_kvs: vec![kv("a", "x", 2, 2, 1), kv("b", "z", 3, 6, 3)],
            }
        );
    }

    #[test]
    fn a_range_compare_holds_when_every_key_in_it_does() {
        let model = Etcd::default();
        let mut state = model.initial_state();
        run(&model, &mut state, put("a/1", "x"));
        run(&model, &mut state, put("a/2", "y"));
        let over = |range_end: &str, result, target| Compare {
            key: "a/".into(),
            range_end: Some(range_end.into()),
            result,
            target,
        };
        let holds = |compare: &Compare| compare_holds(&state, compare);
        assert!(holds(&over(
            "a0",
            CompareResult::Greater,
            CompareTarget::Version(0)
        )));
        assert!(!holds(&over(
            "a0",
            CompareResult::Equal,
            CompareTarget::Value("x".into())
        )));
        assert!(holds(&over(
            "a0",
            CompareResult::Less,
            CompareTarget::ModRevision(4)
        )));
        assert!(!holds(&over(
            "a0",
            CompareResult::Less,
            CompareTarget::ModRevision(3)
        )));
        // Over no key: as over one absent key (a value never matches).
        assert!(holds(&over(
            "a/",
            CompareResult::Equal,
            CompareTarget::Version(0)
        )));
        assert!(!holds(&over(
            "a/",
            CompareResult::NotEqual,
            CompareTarget::Value("z".into())
        )));
        // From a key on.
        assert!(!holds(&over(
            RANGE_END_ALL,
            CompareResult::Equal,
            CompareTarget::CreateRevision(2)
        )));
        assert!(holds(&over(
            RANGE_END_ALL,
            CompareResult::Greater,
            CompareTarget::CreateRevision(1)
        )));
    }

    #[test]
    fn nested_compares_see_the_store_before_the_request() {
        let model = Etcd::default();
        let mut state = model.initial_state();
        let absent = |key: &str| Compare {
            key: key.into(),
            range_end: None,
            result: CompareResult::Equal,
            target: CompareTarget::Version(0),
        };
        // The outer put creates "a"; the nested compare still sees it absent.
        let txn = EtcdInput::Txn {
            compare: vec![],
            success: vec![
                TxnOp::Put {
                    key: "a".into(),
                    value: "1".into(),
                    prev_kv: false,
                    lease: 0,
                },
                TxnOp::Txn {
                    compare: vec![absent("a")],
                    success: vec![TxnOp::Range {
                        key: "a".into(),
                        range_end: None,
                        options: RangeOptions::default(),
                    }],
                    failure: vec![],
                },
            ],
            failure: vec![],
        };
        let output = run(&model, &mut state, txn);
        let nested = TxnOpResponse::Txn {
            succeeded: true,
            responses: vec![TxnOpResponse::Range {
                kvs: vec![kv("a", "1", 2, 2, 1)],
                count: Some(1),
                more: Some(false),
            }],
        };
        assert_eq!(
            output,
            EtcdOutput::Txn {
                header_revision: 2,
                succeeded: true,
                responses: vec![TxnOpResponse::Put { prev_kv: None }, nested],
            }
        );
    }
}
