//! Property tests: random histories run against `Store` and against a
//! model simple enough to be obviously right, with snapshot round trips
//! along the way.
//!
//! The model keeps the full map of live keys at every revision and every
//! record ever written; etcd's rules (revisions, versions, compaction,
//! errors) are spelled out in it directly, without key index or generations.
//! After a round trip the decoded store runs in lockstep with the original,
//! so a difference the model cannot see still fails the test.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::{Error, KeyValue, RangeOptions, RangeResult, Record, Revision, Store, WriteTxn};

/// Small enough that keys collide often; "b" and "ba" test prefix order.
const KEYS: [&[u8]; 4] = [b"a", b"b", b"ba", b"c"];
const RANGE_ENDS: [&[u8]; 6] = [b"a", b"b", b"ba\0", b"bb", b"c", b"d"];
/// Enough cases for a few seconds in a debug build.
const CASES: u32 = 512;
const OPS_LEN_MAX: usize = 40;

#[derive(Clone, Debug)]
struct KeyRange {
    key: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl KeyRange {
    fn contains(&self, key: &[u8]) -> bool {
        match self.end.as_deref() {
            None => key == self.key.as_slice(),
            Some([]) => key >= self.key.as_slice(),
            Some(end) => key >= self.key.as_slice() && key < end,
        }
    }
}

/// A revision picked relative to the store's when the operation runs:
/// `pick % (current + 4) - 1`, so every value in [-1, current + 2].
#[derive(Clone, Copy, Debug)]
struct RevisionPick(u16);

impl RevisionPick {
    fn resolve(self, current_revision: i64) -> i64 {
        i64::from(self.0) % (current_revision + 4) - 1
    }
}

#[derive(Clone, Debug)]
struct Read {
    range: KeyRange,
    revision: RevisionPick,
    limit: i64,
    count_only: bool,
}

impl Read {
    fn options(&self, current_revision: i64) -> RangeOptions {
        RangeOptions {
            limit: self.limit,
            rev: self.revision.resolve(current_revision),
            count_only: self.count_only,
        }
    }
}

#[derive(Clone, Debug)]
enum TxnOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    DeleteRange(KeyRange),
    Range(Read),
}

#[derive(Clone, Debug)]
enum Op {
    Txn(Vec<TxnOp>),
    Compact(RevisionPick),
    Range(Read),
    RoundTrip,
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(KEYS.to_vec()).prop_map(<[u8]>::to_vec)
}

fn key_range_strategy() -> impl Strategy<Value = KeyRange> {
    let end = prop_oneof![
        3 => Just(None),
        1 => Just(Some(Vec::new())),
        2 => prop::sample::select(RANGE_ENDS.to_vec()).prop_map(|end| Some(end.to_vec())),
    ];
    (key_strategy(), end).prop_map(|(key, end)| KeyRange { key, end })
}

fn read_strategy() -> impl Strategy<Value = Read> {
    (
        key_range_strategy(),
        any::<u16>(),
        -1i64..4,
        prop::bool::weighted(0.2),
    )
        .prop_map(|(range, revision, limit, count_only)| Read {
            range,
            revision: RevisionPick(revision),
            limit,
            count_only,
        })
}

fn txn_op_strategy() -> impl Strategy<Value = TxnOp> {
    let put = (key_strategy(), prop::collection::vec(0u8..3, 0..3), 0i64..3)
        .prop_map(|(key, value, lease)| TxnOp::Put { key, value, lease });
    prop_oneof![
        4 => put,
        2 => key_range_strategy().prop_map(TxnOp::DeleteRange),
        1 => read_strategy().prop_map(TxnOp::Range),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Single puts and deletes are one-op transactions, as etcd runs them.
        8 => prop::collection::vec(txn_op_strategy(), 1..=1).prop_map(Op::Txn),
        3 => prop::collection::vec(txn_op_strategy(), 0..5).prop_map(Op::Txn),
        1 => any::<u16>().prop_map(|pick| Op::Compact(RevisionPick(pick))),
        3 => read_strategy().prop_map(Op::Range),
        1 => Just(Op::RoundTrip),
    ]
}

/// etcd's revision semantics, spelled out with full copies of the state.
struct Model {
    /// `states[r]` holds the live keys at revision r, for r in 0..=current.
    states: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    /// Every record ever written, in revision order, compacted or not.
    log: Vec<(Revision, Record)>,
    compact_revision: i64,
}

impl Model {
    fn new() -> Self {
        Model {
            states: vec![BTreeMap::new(), BTreeMap::new()],
            log: Vec::new(),
            compact_revision: -1,
        }
    }

    fn current_revision(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    /// A read by someone who sees up to `read_revision`, where
    /// `current + 1` means the open transaction's `working` state.
    fn range(
        &self,
        working: &BTreeMap<Vec<u8>, KeyValue>,
        read_revision: i64,
        range: &KeyRange,
        options: &RangeOptions,
    ) -> Result<RangeResult, Error> {
        if options.rev > read_revision {
            return Err(Error::FutureRevision);
        }
        let revision = if options.rev <= 0 {
            read_revision
        } else {
            options.rev
        };
        if revision < self.compact_revision {
            return Err(Error::Compacted);
        }
        let state = if revision > self.current_revision() {
            working
        } else {
            &self.states[revision as usize]
        };
        let mut kvs: Vec<KeyValue> = state
            .values()
            .filter(|kv| range.contains(&kv.key))
            .cloned()
            .collect();
        let count = kvs.len();
        if options.count_only {
            kvs.clear();
        } else if options.limit > 0 {
            kvs.truncate(options.limit as usize);
        }
        Ok(RangeResult {
            kvs,
            count,
            rev: read_revision,
        })
    }

    fn compact(&mut self, revision: i64) -> Result<(), Error> {
        if revision <= self.compact_revision {
            return Err(Error::Compacted);
        }
        if revision > self.current_revision() {
            return Err(Error::FutureRevision);
        }
        self.compact_revision = revision;
        Ok(())
    }

    /// What compaction must leave: every record above the compact revision,
    /// and the latest record of each key live at the compact revision.
    fn expected_records(&self) -> Vec<(Revision, Record)> {
        let compact_revision = self.compact_revision;
        let mut kept: BTreeMap<Revision, Record> = self
            .log
            .iter()
            .filter(|(revision, _)| revision.main > compact_revision)
            .cloned()
            .collect();
        if compact_revision >= 0 {
            for key_value in self.states[compact_revision as usize].values() {
                let (revision, record) = self
                    .log
                    .iter()
                    .rev()
                    .find(|(revision, record)| {
                        revision.main <= compact_revision && record.key() == key_value.key
                    })
                    .expect("model: a live key has a put");
                assert_eq!(
                    record,
                    &Record::put(key_value.clone()),
                    "model: live value is the last put"
                );
                kept.insert(*revision, record.clone());
            }
        }
        kept.into_iter().collect()
    }
}

/// The model's view of an open write transaction.
struct ModelTxn {
    begin_revision: i64,
    working: BTreeMap<Vec<u8>, KeyValue>,
    changes: Vec<KeyValue>,
    records: Vec<(Revision, Record)>,
}

impl ModelTxn {
    fn new(model: &Model) -> Self {
        ModelTxn {
            begin_revision: model.current_revision(),
            working: model
                .states
                .last()
                .expect("model: states start non-empty")
                .clone(),
            changes: Vec::new(),
            records: Vec::new(),
        }
    }

    fn rev(&self) -> i64 {
        self.begin_revision + i64::from(!self.changes.is_empty())
    }

    fn next_revision(&self) -> Revision {
        Revision::new(self.begin_revision + 1, self.changes.len() as i64)
    }

    fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> i64 {
        let revision = self.next_revision();
        let previous = self.working.get(key);
        let key_value = KeyValue {
            key: key.to_vec(),
            create_revision: previous.map_or(revision.main, |kv| kv.create_revision),
            mod_revision: revision.main,
            version: previous.map_or(1, |kv| kv.version + 1),
            value: value.to_vec(),
            lease,
        };
        self.working.insert(key.to_vec(), key_value.clone());
        self.records
            .push((revision, Record::put(key_value.clone())));
        self.changes.push(key_value);
        revision.main
    }

    fn delete_range(&mut self, range: &KeyRange) -> (i64, i64) {
        let keys: Vec<Vec<u8>> = self
            .working
            .keys()
            .filter(|key| range.contains(key))
            .cloned()
            .collect();
        for key in &keys {
            let revision = self.next_revision();
            self.working.remove(key);
            self.records
                .push((revision, Record::Tombstone { key: key.clone() }));
            self.changes
                .push(KeyValue::tombstone(key.clone(), revision.main));
        }
        (keys.len() as i64, self.rev())
    }

    fn end(self, model: &mut Model) -> Vec<KeyValue> {
        if !self.changes.is_empty() {
            model.states.push(self.working);
            model.log.extend(self.records);
        }
        self.changes
    }
}

/// The store under test, its decoded copy after the first round trip, and
/// the model they must both agree with.
struct Harness {
    model: Model,
    store: Store,
    restored: Option<Store>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            model: Model::new(),
            store: Store::new(),
            restored: None,
        }
    }

    fn stores(&self) -> impl Iterator<Item = &Store> {
        std::iter::once(&self.store).chain(self.restored.as_ref())
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Txn(txn_ops) => self.run_txn(txn_ops),
            Op::Compact(pick) => {
                let revision = pick.resolve(self.model.current_revision());
                let expected = self.model.compact(revision);
                let results: Vec<Result<(), Error>> = std::iter::once(&mut self.store)
                    .chain(self.restored.as_mut())
                    .map(|store| store.compact(revision))
                    .collect();
                for result in results {
                    assert_eq!(result, expected, "compact at {revision}");
                }
            }
            Op::Range(read) => {
                let current_revision = self.model.current_revision();
                let options = read.options(current_revision);
                let expected =
                    self.model
                        .range(&BTreeMap::new(), current_revision, &read.range, &options);
                for store in self.stores() {
                    let actual = store.range(&read.range.key, read.range.end.as_deref(), &options);
                    assert_eq!(actual, expected, "{read:?} resolved to {options:?}");
                }
            }
            Op::RoundTrip => {
                let image = self.store.encode_image().unwrap();
                let decoded = Store::decode_image(&image).expect("a store's own image decodes");
                assert_eq!(
                    decoded.encode_image().unwrap(),
                    image,
                    "re-encoding a decoded image"
                );
                self.restored = Some(decoded);
            }
        }
        self.check_state();
    }

    fn run_txn(&mut self, txn_ops: &[TxnOp]) {
        let mut model_txn = ModelTxn::new(&self.model);
        let mut txns: Vec<WriteTxn<'_>> = std::iter::once(&mut self.store)
            .chain(self.restored.as_mut())
            .map(Store::write)
            .collect();
        for txn_op in txn_ops {
            match txn_op {
                TxnOp::Put { key, value, lease } => {
                    let expected = model_txn.put(key, value, *lease);
                    for txn in &mut txns {
                        assert_eq!(
                            txn.put(key, value.as_slice(), *lease),
                            expected,
                            "{txn_op:?}"
                        );
                    }
                }
                TxnOp::DeleteRange(range) => {
                    let expected = model_txn.delete_range(range);
                    for txn in &mut txns {
                        assert_eq!(
                            txn.delete_range(&range.key, range.end.as_deref()),
                            expected,
                            "{txn_op:?}"
                        );
                    }
                }
                TxnOp::Range(read) => {
                    let options = read.options(model_txn.rev());
                    let expected = self.model.range(
                        &model_txn.working,
                        model_txn.rev(),
                        &read.range,
                        &options,
                    );
                    for txn in &txns {
                        let actual =
                            txn.range(&read.range.key, read.range.end.as_deref(), &options);
                        assert_eq!(actual, expected, "in txn: {read:?} resolved to {options:?}");
                    }
                }
            }
            for txn in &txns {
                assert_eq!(txn.rev(), model_txn.rev(), "txn revision after {txn_op:?}");
                let changes: Vec<&KeyValue> = txn.changes().iter().map(|c| &**c).collect();
                let expected: Vec<&KeyValue> = model_txn.changes.iter().collect();
                assert_eq!(changes, expected, "txn changes after {txn_op:?}");
            }
        }
        let expected_changes = model_txn.end(&mut self.model);
        for txn in txns {
            let changes: Vec<KeyValue> = txn.end().into_iter().map(Arc::unwrap_or_clone).collect();
            assert_eq!(changes, expected_changes, "changes at end of txn");
        }
    }

    /// Everything observable must match the model after every operation.
    fn check_state(&self) {
        let current_revision = self.model.current_revision();
        let compact_revision = self.model.compact_revision;
        let expected_records = self.model.expected_records();
        let expected_size: u64 = expected_records
            .iter()
            .map(|(_, record)| record.size_bytes())
            .sum();
        let live_keys = self.model.states[current_revision as usize].len();
        let everything = KeyRange {
            key: Vec::new(),
            end: Some(Vec::new()),
        };
        for store in self.stores() {
            assert_eq!(
                store.current_revision(),
                current_revision,
                "current revision"
            );
            assert_eq!(
                store.compact_revision(),
                compact_revision,
                "compact revision"
            );
            assert_eq!(store.key_count(), live_keys, "key count");
            assert_eq!(store.size_bytes(), expected_size, "size bytes");
            let records: Vec<(Revision, Record)> = store.records_since(i64::MIN).unwrap();
            assert_eq!(records, expected_records, "records left by compaction");
            // Every revision still readable reads as it did when it was current.
            for revision in (compact_revision - 1).max(-1)..=current_revision + 1 {
                let options = RangeOptions {
                    rev: revision,
                    ..RangeOptions::default()
                };
                let expected =
                    self.model
                        .range(&BTreeMap::new(), current_revision, &everything, &options);
                assert_eq!(
                    store.range(b"", Some(b""), &options),
                    expected,
                    "everything at {revision}"
                );
            }
        }
        if let Some(restored) = &self.restored {
            assert_eq!(
                restored.state_hash().unwrap(),
                self.store.state_hash().unwrap(),
                "state hash of restored store"
            );
            assert_eq!(
                restored.encode_image().unwrap(),
                self.store.encode_image().unwrap(),
                "image of restored store"
            );
        }
    }
}

fn config() -> Config {
    Config {
        cases: CASES,
        // Failures print the shrunk history; nothing is written next to
        // the sources.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op_strategy(), 1..OPS_LEN_MAX)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.run(op);
        }
    }

    #[test]
    fn decode_of_damaged_image_never_panics(
        ops in prop::collection::vec(op_strategy(), 0..20),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        truncate in any::<prop::sample::Index>(),
        truncated in prop::bool::weighted(0.3),
    ) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.run(op);
        }
        let mut image = harness.store.encode_image().unwrap();
        for (position, byte) in damage {
            let position = position.index(image.len());
            image[position] = byte;
        }
        if truncated {
            image.truncate(truncate.index(image.len()));
        }
        // Whatever decodes is a store some history produced: its own image
        // round-trips. (Damage that still decodes, such as a field number
        // bit flipped into an unknown field, is the checksums' to catch:
        // every container of an image has one, see
        // storage::tests::a_snapshot_file_damaged_anywhere_is_refused.)
        if let Ok(store) = Store::decode_image(&image) {
            let again = Store::decode_image(&store.encode_image().unwrap()).unwrap();
            prop_assert_eq!(again.state_hash().unwrap(), store.state_hash().unwrap());
        }
    }

    #[test]
    fn decode_of_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Store::decode_image(&bytes);
        let mut image = vec![8, 1]; // format 1
        image.extend_from_slice(&bytes);
        let _ = Store::decode_image(&image);
    }
}
