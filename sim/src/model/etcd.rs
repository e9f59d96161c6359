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
//! Not modelled: leases, compaction, watches, `limit`, `prev_kv`, and range
//! compares. Requests etcd rejects (duplicate keys in a txn, too many ops)
//! are definite failures and never reach the model.
//!
//! Revisions are global, so an etcd history cannot be split by key: the
//! model keeps everything in one partition. The observed revisions pin most
//! operations in place, which keeps the search narrow in practice.

use std::borrow::Cow;
use std::collections::BTreeMap;
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
}

/// A single-key condition of a txn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub key: String,
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
    },
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range_end: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnOpResponse {
    Range { kvs: Vec<KeyValue> },
    Put,
    Delete { deleted: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum EtcdInput {
    Range {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range_end: Option<String>,
    },
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range_end: Option<String>,
    },
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
pub enum EtcdOutput {
    Range {
        header_revision: i64,
        kvs: Vec<KeyValue>,
    },
    Put {
        header_revision: i64,
    },
    Delete {
        header_revision: i64,
        deleted: i64,
    },
    Txn {
        header_revision: i64,
        succeeded: bool,
        responses: Vec<TxnOpResponse>,
    },
}

impl EtcdInput {
    pub fn function(&self) -> &'static str {
        match self {
            EtcdInput::Range { .. } => "range",
            EtcdInput::Put { .. } => "put",
            EtcdInput::Delete { .. } => "delete",
            EtcdInput::Txn { .. } => "txn",
        }
    }
}

impl EtcdOutput {
    pub fn header_revision(&self) -> i64 {
        match *self {
            EtcdOutput::Range {
                header_revision, ..
            }
            | EtcdOutput::Put { header_revision }
            | EtcdOutput::Delete {
                header_revision, ..
            }
            | EtcdOutput::Txn {
                header_revision, ..
            } => header_revision,
        }
    }

    pub fn function(&self) -> &'static str {
        match self {
            EtcdOutput::Range { .. } => "range",
            EtcdOutput::Put { .. } => "put",
            EtcdOutput::Delete { .. } => "delete",
            EtcdOutput::Txn { .. } => "txn",
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
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EtcdState {
    pub revision: i64,
    pub keys: BTreeMap<String, StoredValue>,
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

impl Model for Etcd {
    type Input = EtcdInput;
    type Output = EtcdOutput;
    type State = EtcdState;

    const NAME: &'static str = "etcd";

    fn initial_state(&self) -> EtcdState {
        EtcdState {
            revision: self.initial_revision,
            keys: BTreeMap::new(),
        }
    }

    fn apply(&self, state: &EtcdState, input: &EtcdInput) -> (Transition<EtcdState>, EtcdOutput) {
        // Reads are most operations: answer them without copying the store.
        if let EtcdInput::Range { key, range_end } = input {
            let kvs = range(state, key, range_end.as_deref());
            return (
                Transition::Unchanged,
                EtcdOutput::Range {
                    header_revision: state.revision,
                    kvs,
                },
            );
        }
        let mut write = WriteTxn::begin(state);
        let output = match input {
            EtcdInput::Range { .. } => unreachable!("ranges are answered above"),
            EtcdInput::Put { key, value } => {
                write.put(key, value);
                EtcdOutput::Put {
                    header_revision: write.end_revision(),
                }
            }
            EtcdInput::Delete { key, range_end } => {
                let deleted = write.delete(key, range_end.as_deref());
                EtcdOutput::Delete {
                    header_revision: write.end_revision(),
                    deleted,
                }
            }
            EtcdInput::Txn {
                compare,
                success,
                failure,
            } => {
                let succeeded = compare
                    .iter()
                    .all(|condition| compare_holds(state, condition));
                let branch = if succeeded { success } else { failure };
                let responses = branch
                    .iter()
                    .map(|operation| write.execute(operation))
                    .collect();
                EtcdOutput::Txn {
                    header_revision: write.end_revision(),
                    succeeded,
                    responses,
                }
            }
        };
        (write.finish(), output)
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
                EtcdInput::Range { key, range_end },
                Some(EtcdOutput::Range {
                    header_revision,
                    kvs,
                }),
            ) => {
                let matches = *header_revision == state.revision
                    && range_matches(state, key, range_end.as_deref(), kvs);
                matches.then_some(Transition::Unchanged)
            }
            (_, Some(observed)) if observed.function() != input.function() => None,
            // A request leaves the revision as it was or raises it by one.
            (_, Some(observed))
                if !(state.revision..=state.revision + 1).contains(&observed.header_revision()) =>
            {
                None
            }
            (_, observed) => {
                let (transition, expected) = self.apply(state, input);
                observed
                    .is_none_or(|observed| *observed == expected)
                    .then_some(transition)
            }
        }
    }

    fn is_read_only(&self, input: &EtcdInput) -> bool {
        match input {
            EtcdInput::Range { .. } => true,
            EtcdInput::Put { .. } | EtcdInput::Delete { .. } => false,
            EtcdInput::Txn {
                success, failure, ..
            } => success
                .iter()
                .chain(failure)
                .all(|operation| matches!(operation, TxnOp::Range { .. })),
        }
    }

    fn partition_key(&self, _input: &EtcdInput) -> Option<String> {
        None
    }

    fn counter(&self, state: &EtcdState) -> Option<i64> {
        Some(state.revision)
    }

    /// Every response reports the revision after the request, which is at
    /// least the revision before it.
    fn counter_bound(&self, _input: &EtcdInput, output: &EtcdOutput) -> Option<i64> {
        Some(output.header_revision())
    }

    fn describe_state(&self, state: &EtcdState) -> String {
        let keys: Vec<String> = state
            .keys
            .iter()
            .map(|(key, stored)| {
                let kv = KeyValue {
                    key: key.clone(),
                    value: stored.value.clone(),
                    create_revision: stored.create_revision,
                    mod_revision: stored.mod_revision,
                    version: stored.version,
                };
                kv.to_string()
            })
            .collect();
        format!("revision {} {{{}}}", state.revision, keys.join(", "))
    }
}

/// The writes of one request, all at revision `base + 1`. The store's
/// revision moves only if something changed (etcd `storeTxnWrite.End`).
/// Copies the store only on its first change: the checker runs many
/// requests that change nothing (failed compares, deletes of absent keys).
struct WriteTxn<'a> {
    state: Cow<'a, EtcdState>,
    changed: bool,
}

impl<'a> WriteTxn<'a> {
    fn begin(state: &'a EtcdState) -> Self {
        WriteTxn {
            state: Cow::Borrowed(state),
            changed: false,
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
        if !self.changed {
            return Transition::Unchanged;
        }
        let revision = self.write_revision();
        let mut state = self.state.into_owned();
        state.revision = revision;
        Transition::Changed(state)
    }

    fn put(&mut self, key: &str, value: &str) {
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
            });
        stored.value = value.to_string();
        stored.mod_revision = revision;
        stored.version += 1;
        self.changed = true;
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

    fn execute(&mut self, operation: &TxnOp) -> TxnOpResponse {
        match operation {
            TxnOp::Range { key, range_end } => TxnOpResponse::Range {
                kvs: range(&self.state, key, range_end.as_deref()),
            },
            TxnOp::Put { key, value } => {
                self.put(key, value);
                TxnOpResponse::Put
            }
            TxnOp::Delete { key, range_end } => TxnOpResponse::Delete {
                deleted: self.delete(key, range_end.as_deref()),
            },
        }
    }
}

/// etcd's marker for "every key from `key` on" in `range_end`.
const RANGE_END_ALL: &str = "\0";

fn range_keys<'a>(
    state: &'a EtcdState,
    key: &'a str,
    range_end: Option<&'a str>,
) -> impl Iterator<Item = &'a String> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let (start, end) = match range_end {
        // An empty range_end is how gRPC spells "absent".
        None | Some("") => (Included(key), Included(key)),
        Some(RANGE_END_ALL) => (Included(key), Unbounded),
        // etcd answers an empty or inverted interval with nothing.
        Some(end) if end <= key => (Excluded(key), Included(key)),
        Some(end) => (Included(key), Excluded(end)),
    };
    let bounds = (start, end);
    let empty = matches!(bounds, (Excluded(_), Included(_)));
    let iterator = if empty {
        None
    } else {
        Some(state.keys.range::<str, _>(bounds).map(|(key, _)| key))
    };
    iterator.into_iter().flatten()
}

fn range(state: &EtcdState, key: &str, range_end: Option<&str>) -> Vec<KeyValue> {
    range_keys(state, key, range_end)
        .map(|key| {
            let stored = &state.keys[key];
            KeyValue {
                key: key.clone(),
                value: stored.value.clone(),
                create_revision: stored.create_revision,
                mod_revision: stored.mod_revision,
                version: stored.version,
            }
        })
        .collect()
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
            && kv.version == stored.version;
        if !same {
            return false;
        }
    }
    expected.next().is_none()
}

fn compare_holds(state: &EtcdState, condition: &Compare) -> bool {
    let stored = state.keys.get(&condition.key);
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
            "{}={} (create {}, mod {}, version {})",
            quoted(&self.key),
            quoted(&self.value),
            self.create_revision,
            self.mod_revision,
            self.version
        )
    }
}

impl fmt::Display for TxnOp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnOp::Range { key, range_end } => {
                write!(formatter, "range ")?;
                describe_range(formatter, key, range_end.as_deref())
            }
            TxnOp::Put { key, value } => write!(formatter, "put {} {}", quoted(key), quoted(value)),
            TxnOp::Delete { key, range_end } => {
                write!(formatter, "delete ")?;
                describe_range(formatter, key, range_end.as_deref())
            }
        }
    }
}

impl fmt::Display for Compare {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let relation = match self.result {
            CompareResult::Equal => "=",
            CompareResult::NotEqual => "!=",
            CompareResult::Greater => ">",
            CompareResult::Less => "<",
        };
        let key = quoted(&self.key);
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
            EtcdInput::Range { key, range_end } => TxnOp::Range {
                key: key.clone(),
                range_end: range_end.clone(),
            }
            .fmt(formatter),
            EtcdInput::Put { key, value } => TxnOp::Put {
                key: key.clone(),
                value: value.clone(),
            }
            .fmt(formatter),
            EtcdInput::Delete { key, range_end } => TxnOp::Delete {
                key: key.clone(),
                range_end: range_end.clone(),
            }
            .fmt(formatter),
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

impl fmt::Display for TxnOpResponse {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnOpResponse::Range { kvs } => write!(formatter, "[{}]", join(kvs, ", ")),
            TxnOpResponse::Put => write!(formatter, "ok"),
            TxnOpResponse::Delete { deleted } => write!(formatter, "deleted {deleted}"),
        }
    }
}

impl fmt::Display for EtcdOutput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdOutput::Range {
                header_revision,
                kvs,
            } => write!(
                formatter,
                "revision {header_revision} [{}]",
                join(kvs, ", ")
            ),
            EtcdOutput::Put { header_revision } => write!(formatter, "revision {header_revision}"),
            EtcdOutput::Delete {
                header_revision,
                deleted,
            } => write!(formatter, "revision {header_revision} deleted {deleted}"),
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
        }
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
        }
    }

    #[test]
    fn writes_raise_the_revision_and_reads_see_metadata() {
        let model = Etcd::default();
        let mut state = model.initial_state();
        assert_eq!(
            run(&model, &mut state, put("a", "1")),
            EtcdOutput::Put { header_revision: 2 }
        );
        assert_eq!(
            run(&model, &mut state, put("a", "2")),
            EtcdOutput::Put { header_revision: 3 }
        );
        let read = run(
            &model,
            &mut state,
            EtcdInput::Range {
                key: "a".into(),
                range_end: None,
            },
        );
        let expected = KeyValue {
            key: "a".into(),
            value: "2".into(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
        };
        assert_eq!(
            read,
            EtcdOutput::Range {
                header_revision: 3,
                kvs: vec![expected]
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
        };
        assert_eq!(
            run(&model, &mut state, delete),
            EtcdOutput::Delete {
                header_revision: 1,
                deleted: 0
            }
        );
        run(&model, &mut state, put("a", "1"));
        run(&model, &mut state, put("b", "1"));
        let delete_all = EtcdInput::Delete {
            key: "a".into(),
            range_end: Some(RANGE_END_ALL.into()),
        };
        assert_eq!(
            run(&model, &mut state, delete_all),
            EtcdOutput::Delete {
                header_revision: 4,
                deleted: 2
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
            result: CompareResult::NotEqual,
            target: CompareTarget::Value("x".into()),
        };
        let absent = Compare {
            key: "a".into(),
            result: CompareResult::Equal,
            target: CompareTarget::ModRevision(0),
        };
        let txn = |compare: Compare| EtcdInput::Txn {
            compare: vec![compare],
            success: vec![
                TxnOp::Put {
                    key: "a".into(),
                    value: "1".into(),
                },
                TxnOp::Put {
                    key: "b".into(),
                    value: "1".into(),
                },
            ],
            failure: vec![TxnOp::Range {
                key: "a".into(),
                range_end: None,
            }],
        };
        // A value compare on a missing key fails, even "not equal".
        let failed = run(&model, &mut state, txn(missing_value));
        assert_eq!(
            failed,
            EtcdOutput::Txn {
                header_revision: 1,
                succeeded: false,
                responses: vec![TxnOpResponse::Range { kvs: vec![] }]
            }
        );
        let succeeded = run(&model, &mut state, txn(absent));
        let responses = vec![TxnOpResponse::Put, TxnOpResponse::Put];
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
}
