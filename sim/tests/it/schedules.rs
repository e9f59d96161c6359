//! Property tests: histories from random concurrent schedules are linearizable; corrupted ones are not.
//!
//! A schedule is a list of steps. Each step moves one client along:
//! invoke an operation, let it take effect (the model runs it and fixes its
//! output), or complete it. Some operations time out instead: before taking
//! effect (and then maybe take effect later, after the client gave up, or
//! never) or after. Some fail definitely, without effect. Because every
//! effect happens between its operation's invocation and completion (or any
//! time after invocation for indeterminate ones), the recorded history is
//! linearizable by construction, and the checker must say so. Replacing one
//! read result by a value no schedule can produce must make it say the
//! opposite. A read replaced by a *plausible* stale value is usually, not
//! always, a violation; that direction is measured over fixed seeds.

use std::time::Instant;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};

use detcd_sim::check::{check, Budget, Verdict};
use detcd_sim::history::{History, Operation, Outcome};
use detcd_sim::model::etcd::{
    Compare, CompareResult, CompareTarget, Etcd, EtcdInput, EtcdOutput, RangeOptions, SortOrder,
    SortTarget, TxnOp, FRESH_CLUSTER_REVISION,
};
use detcd_sim::model::kv::{Kv, KvInput, KvOutput};
use detcd_sim::model::register::{Register, RegisterInput, RegisterOutput};
use detcd_sim::model::{Model, Transition};

/// Kept small so the suite stays fast in debug builds.
const CLIENTS_MAX: usize = 5;
const STEPS_MAX: usize = 60;
const CASES: u32 = 96;

#[derive(Clone, Debug)]
struct Step<I> {
    client: usize,
    /// Picks what happens: see `Action::from_roll`.
    roll: u8,
    input: I,
}

enum Action {
    Proceed,
    TimeOut,
    Fail,
    /// Apply the oldest operation whose client gave up before it took effect.
    ApplyAbandoned,
}

impl Action {
    fn from_roll(roll: u8) -> Action {
        match roll % 16 {
            0 => Action::TimeOut,
            1 => Action::Fail,
            2 => Action::ApplyAbandoned,
            _ => Action::Proceed,
        }
    }
}

enum ClientState<O> {
    Idle,
    Invoked(usize),
    Applied(usize, O),
}

/// Runs a schedule against the model and records what clients observed.
struct Recorder<'m, M: Model> {
    model: &'m M,
    /// The whole object's state: one, whatever the model's partitions, so
    /// multi-key operations see every key.
    state: M::State,
    time: u64,
    operations: Vec<Operation<M::Input, M::Output>>,
    clients: Vec<ClientState<M::Output>>,
    abandoned: Vec<usize>,
}

impl<'m, M: Model> Recorder<'m, M> {
    fn new(model: &'m M, clients: usize) -> Self {
        let clients = (0..clients).map(|_| ClientState::Idle).collect();
        Recorder {
            model,
            state: model.initial_state(),
            time: 0,
            operations: Vec::new(),
            clients,
            abandoned: Vec::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.time += 1;
        self.time
    }

    /// The operation's linearization point.
    fn take_effect(&mut self, operation: usize) -> M::Output {
        let input = &self.operations[operation].input;
        let (transition, output) = self.model.apply(&self.state, input);
        if let Transition::Changed(next) = transition {
            self.state = next;
        }
        output
    }

    fn complete(&mut self, client: usize, operation: usize, outcome: Outcome<M::Output>) {
        let time = self.tick();
        self.operations[operation].complete_ns = Some(time);
        self.operations[operation].outcome = outcome;
        self.clients[client] = ClientState::Idle;
    }

    fn step(&mut self, step: &Step<M::Input>) {
        let client = step.client % self.clients.len();
        let action = Action::from_roll(step.roll);
        if let Action::ApplyAbandoned = action {
            if !self.abandoned.is_empty() {
                let operation = self.abandoned.remove(0);
                self.take_effect(operation);
                return;
            }
        }
        match std::mem::replace(&mut self.clients[client], ClientState::Idle) {
            ClientState::Idle => {
                let invoke_ns = self.tick();
                let operation = Operation {
                    client: client as u64,
                    invoke_ns,
                    complete_ns: None,
                    input: step.input.clone(),
                    outcome: Outcome::Indeterminate,
                    source_line: None,
                };
                self.operations.push(operation);
                self.clients[client] = ClientState::Invoked(self.operations.len() - 1);
            }
            ClientState::Invoked(operation) => match action {
                Action::TimeOut => {
                    // Still in flight at the server: may apply later, or never.
                    self.abandoned.push(operation);
                    self.complete(client, operation, Outcome::Indeterminate);
                }
                Action::Fail => self.complete(client, operation, Outcome::Fail),
                Action::Proceed | Action::ApplyAbandoned => {
                    let output = self.take_effect(operation);
                    self.clients[client] = ClientState::Applied(operation, output);
                }
            },
            ClientState::Applied(operation, output) => match action {
                Action::TimeOut => self.complete(client, operation, Outcome::Indeterminate),
                _ => self.complete(client, operation, Outcome::Ok(output)),
            },
        }
    }

    /// Ends the run: operations still in flight stay indeterminate, without
    /// a completion, whether or not they took effect.
    fn finish(self) -> History<M::Input, M::Output> {
        History::new(self.operations)
    }
}

fn record<M: Model>(
    model: &M,
    clients: usize,
    steps: &[Step<M::Input>],
) -> History<M::Input, M::Output> {
    let mut recorder = Recorder::new(model, clients);
    for step in steps {
        recorder.step(step);
    }
    recorder.finish()
}

fn steps<I: Clone + std::fmt::Debug>(
    input: impl Strategy<Value = I>,
) -> impl Strategy<Value = (usize, Vec<Step<I>>)> {
    let step = (0..CLIENTS_MAX, any::<u8>(), input).prop_map(|(client, roll, input)| Step {
        client,
        roll,
        input,
    });
    (1..=CLIENTS_MAX, prop::collection::vec(step, 1..STEPS_MAX))
}

/// Replaces the output of the `choice`-th (mod count) successful operation
/// that `corrupt` accepts. Returns false if there is none.
fn corrupt_one<I, O>(
    history: &mut History<I, O>,
    choice: usize,
    corrupt: impl Fn(&mut O) -> bool,
) -> bool {
    let mut candidates: Vec<&mut O> = history
        .operations
        .iter_mut()
        .filter_map(|operation| match &mut operation.outcome {
            Outcome::Ok(output) => Some(output),
            _ => None,
        })
        .collect();
    let count = candidates.len();
    (0..count).any(|offset| corrupt(candidates[(choice + offset) % count]))
}

// Register: values 0..5, so 999 can never be read.
fn register_input() -> impl Strategy<Value = RegisterInput> {
    prop_oneof![
        Just(RegisterInput::Read),
        (0..5i64).prop_map(|value| RegisterInput::Write { value }),
        (0..5i64, 0..5i64).prop_map(|(from, to)| RegisterInput::Cas { from, to }),
    ]
}

const IMPOSSIBLE_REGISTER_VALUE: i64 = 999;

// kv: values from a small alphabet, so a value containing '!' can never be read.
fn kv_input() -> impl Strategy<Value = KvInput> {
    let key = prop::sample::select(vec!["k0", "k1", "k2"]).prop_map(str::to_string);
    let value = prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_string);
    let keys = prop::sample::subsequence(vec!["k0", "k1", "k2"], 2..=3)
        .prop_map(|keys| keys.into_iter().map(str::to_string).collect::<Vec<_>>());
    prop_oneof![
        key.clone().prop_map(|key| KvInput::Get { key }),
        (key.clone(), value.clone()).prop_map(|(key, value)| KvInput::Put { key, value }),
        (key.clone(), value.clone()).prop_map(|(key, value)| KvInput::Append { key, value }),
        (key.clone(), value.clone(), value.clone()).prop_map(|(key, from, to)| KvInput::Cas {
            key,
            from,
            to
        }),
        keys.clone().prop_map(|keys| KvInput::GetAll { keys }),
        (keys, value).prop_map(|(keys, value)| KvInput::AppendAll { keys, value }),
        key.prop_map(|key| KvInput::Delete { key }),
    ]
}

fn etcd_input() -> impl Strategy<Value = EtcdInput> {
    let key = || prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_string);
    let value = prop::sample::select(vec!["1", "2", "3"]).prop_map(str::to_string);
    let options = (
        0i64..4,
        prop::sample::select(vec![SortOrder::None, SortOrder::Ascend, SortOrder::Descend]),
        prop::sample::select(vec![
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ]),
        any::<bool>(),
        any::<bool>(),
        // Revision bounds; 0 is none.
        (0i64..6, 0i64..6, 0i64..6, 0i64..6),
    )
        .prop_map(
            |(limit, sort_order, sort_target, count_only, keys_only, bounds)| RangeOptions {
                limit,
                sort_order,
                sort_target,
                count_only,
                keys_only,
                min_mod_revision: bounds.0,
                max_mod_revision: bounds.1,
                min_create_revision: bounds.2,
                max_create_revision: bounds.3,
            },
        );
    let txn = (
        key(),
        0..6i64,
        key(),
        value.clone(),
        any::<bool>(),
        options.clone(),
        0i64..3,
    )
        .prop_map(
            |(compared, revision, key, value, prev_kv, options, lease)| EtcdInput::Txn {
                compare: vec![Compare {
                    key: compared,
                    range_end: None,
                    result: CompareResult::Equal,
                    target: CompareTarget::ModRevision(revision),
                }],
                success: vec![TxnOp::Put {
                    key: key.clone(),
                    value,
                    prev_kv,
                    lease,
                }],
                failure: vec![TxnOp::Range {
                    key,
                    range_end: Some("\0".into()),
                    options,
                }],
            },
        );
    // Lease grants and revokes change state but no revision: few of them,
    // as in the workload, or the revisions pin too little of a long history.
    prop_oneof![
        4 => key().prop_map(|key| EtcdInput::Range {
            key,
            range_end: None,
            options: RangeOptions::default(),
        }),
        4 => options.prop_map(|options| EtcdInput::Range {
            key: "a".into(),
            range_end: Some("\0".into()),
            options,
        }),
        4 => (
            key(),
            value,
            any::<bool>(),
            any::<bool>(),
            0i64..3,
            any::<bool>()
        )
            .prop_map(|(key, value, prev_kv, ignore_value, lease, ignore_lease)| {
                EtcdInput::Put {
                    key,
                    value,
                    prev_kv,
                    ignore_value,
                    // ignore_lease with a lease is refused whatever the store
                    // holds: a definite failure, never in the model's histories.
                    lease: if ignore_lease { 0 } else { lease },
                    ignore_lease,
                }
            }),
        // Leases 1 and 2: granted twice (refused), revoked when absent.
        1 => (1i64..3).prop_map(|id| EtcdInput::LeaseGrant { id }),
        1 => (1i64..3).prop_map(|id| EtcdInput::LeaseRevoke { id }),
        4 => (key(), any::<bool>()).prop_map(|(key, prev_kv)| EtcdInput::Delete {
            key,
            range_end: None,
            prev_kv
        }),
        4 => txn,
    ]
}

/// Revisions never get near this in a schedule of `STEPS_MAX` steps.
const IMPOSSIBLE_REVISION_OFFSET: i64 = 1000;

fn verdict<M: Model>(model: &M, history: &History<M::Input, M::Output>) -> Verdict {
    check(model, history, Budget::default()).verdict
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn register_schedules_are_linearizable((clients, steps) in steps(register_input())) {
        let history = record(&Register, clients, &steps);
        prop_assert_eq!(verdict(&Register, &history), Verdict::Linearizable, "{:#?}", history);
    }

    #[test]
    fn register_with_an_impossible_read_is_not((clients, steps) in steps(register_input()), choice in any::<usize>()) {
        let mut history = record(&Register, clients, &steps);
        let corrupted = corrupt_one(&mut history, choice, |output| match output {
            RegisterOutput::Read { value } => { *value = Some(IMPOSSIBLE_REGISTER_VALUE); true }
            _ => false,
        });
        prop_assume!(corrupted);
        prop_assert_eq!(verdict(&Register, &history), Verdict::NotLinearizable, "{:#?}", history);
    }

    #[test]
    fn kv_schedules_are_linearizable((clients, steps) in steps(kv_input())) {
        let history = record(&Kv, clients, &steps);
        prop_assert_eq!(verdict(&Kv, &history), Verdict::Linearizable, "{:#?}", history);
    }

    #[test]
    fn kv_with_an_impossible_read_is_not((clients, steps) in steps(kv_input()), choice in any::<usize>()) {
        let mut history = record(&Kv, clients, &steps);
        let corrupted = corrupt_one(&mut history, choice, |output| match output {
            KvOutput::Get { value } => { value.push('!'); true }
            KvOutput::GetAll { values } => { values[0].push('!'); true }
            _ => false,
        });
        prop_assume!(corrupted);
        prop_assert_eq!(verdict(&Kv, &history), Verdict::NotLinearizable, "{:#?}", history);
    }

    #[test]
    fn etcd_schedules_are_linearizable((clients, steps) in steps(etcd_input())) {
        let model = Etcd::default();
        let history = record(&model, clients, &steps);
        prop_assert_eq!(verdict(&model, &history), Verdict::Linearizable, "{:#?}", history);
    }

    #[test]
    fn etcd_with_an_impossible_read_revision_is_not((clients, steps) in steps(etcd_input()), choice in any::<usize>()) {
        let model = Etcd::default();
        let mut history = record(&model, clients, &steps);
        let corrupted = corrupt_one(&mut history, choice, |output| match output {
            EtcdOutput::Range { header_revision, .. } => { *header_revision += IMPOSSIBLE_REVISION_OFFSET; true }
            _ => false,
        });
        prop_assume!(corrupted);
        prop_assert_eq!(verdict(&model, &history), Verdict::NotLinearizable, "{:#?}", history);
    }
}

/// Histories drawn for the stale-read measurement; fixed seed, so the rate
/// below is the same on every run.
const STALE_READ_HISTORIES: usize = 300;
/// The share of plausible wrong reads the checker must catch. Not all are
/// violations (a concurrent write may explain the value); see the measured
/// rate in the failure message when changing the generator.
const STALE_READ_DETECTION_MIN_PERCENT: usize = 75;

#[test]
fn plausible_wrong_register_reads_are_mostly_caught() {
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(ProptestConfig::default(), rng);
    let strategy = (steps(register_input()), any::<usize>(), 0..5i64);
    let (mut corrupted, mut caught) = (0, 0);
    for _ in 0..STALE_READ_HISTORIES {
        let ((clients, steps), choice, shift) = strategy
            .new_tree(&mut runner)
            .expect("strategy draws")
            .current();
        let mut history = record(&Register, clients, &steps);
        assert_eq!(verdict(&Register, &history), Verdict::Linearizable);
        // Another value some write could have put there (0..5 or nil).
        let changed = corrupt_one(&mut history, choice, |output| match output {
            RegisterOutput::Read { value } => {
                let wrong = (value.unwrap_or(5) + 1 + shift % 5) % 6;
                *value = (wrong < 5).then_some(wrong);
                true
            }
            _ => false,
        });
        if changed {
            corrupted += 1;
            caught += usize::from(verdict(&Register, &history) == Verdict::NotLinearizable);
        }
    }
    assert!(
        corrupted > STALE_READ_HISTORIES / 2,
        "too few histories with a read: {corrupted}"
    );
    let percent = caught * 100 / corrupted;
    assert!(
        percent >= STALE_READ_DETECTION_MIN_PERCENT,
        "caught {caught} of {corrupted} wrong reads ({percent}%)"
    );
    println!("plausible wrong reads caught: {caught} of {corrupted} ({percent}%)");
}

/// Steps of the long schedules below; `DETCD_SIM_LONG_SCHEDULE_STEPS`
/// overrides it to measure bigger ones (in a release build).
const LONG_SCHEDULE_STEPS: usize = 2_000;
/// Histories checked per model in the long-schedule test.
const LONG_SCHEDULES: usize = 3;

fn long_schedule<I: Clone + std::fmt::Debug>(
    runner: &mut TestRunner,
    input: impl Strategy<Value = I>,
) -> Vec<Step<I>> {
    let steps_count = std::env::var("DETCD_SIM_LONG_SCHEDULE_STEPS")
        .ok()
        .and_then(|steps| steps.parse().ok())
        .unwrap_or(LONG_SCHEDULE_STEPS);
    let step = (0..CLIENTS_MAX, any::<u8>(), input).prop_map(|(client, roll, input)| Step {
        client,
        roll,
        input,
    });
    prop::collection::vec(step, steps_count)
        .new_tree(runner)
        .expect("strategy draws")
        .current()
}

/// Long etcd histories with about one operation in eight indeterminate are
/// decided, not left "unknown", also after a read's revision is made one
/// older (which is usually, not always, a violation: the read may have
/// been concurrent with the write it misses). Indeterminate operations
/// stay candidates until the end of the history, so this is where a search
/// without the checker's pruning (no-op skipping, late-first ordering,
/// revision bounds) blows up. Prints step counts and times for the record.
#[test]
fn long_etcd_schedules_are_decided_both_ways() {
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[9; 32]),
    );
    let model = Etcd::default();
    let mut violations = 0;
    for _ in 0..LONG_SCHEDULES {
        let steps = long_schedule(&mut runner, etcd_input());
        let mut history = record(&model, CLIENTS_MAX, &steps);
        let started = Instant::now();
        let report = check(&model, &history, Budget::default());
        println!(
            "etcd, {} operations: {:?} in {} steps, {:?}",
            history.len(),
            report.verdict,
            report.steps(),
            started.elapsed()
        );
        assert_eq!(report.verdict, Verdict::Linearizable);
        // A read that misses the latest write: a stale read in the middle.
        let middle = history.len() / 2;
        let corrupted = corrupt_one(&mut history, middle, |output| match output {
            EtcdOutput::Range {
                header_revision, ..
            } if *header_revision > FRESH_CLUSTER_REVISION => {
                *header_revision -= 1;
                true
            }
            _ => false,
        });
        assert!(corrupted, "a long schedule has reads");
        let started = Instant::now();
        let report = check(&model, &history, Budget::default());
        println!(
            "  one read revision older: {:?} in {} steps, {:?}",
            report.verdict,
            report.steps(),
            started.elapsed()
        );
        assert_ne!(report.verdict, Verdict::Unknown);
        violations += usize::from(report.verdict == Verdict::NotLinearizable);
    }
    assert!(violations > 0, "no corrupted long history was a violation");
}

fn completed(
    client: u64,
    at: u64,
    input: KvInput,
    output: KvOutput,
) -> Operation<KvInput, KvOutput> {
    Operation {
        client,
        invoke_ns: at,
        complete_ns: Some(at + 1),
        input,
        outcome: Outcome::Ok(output),
        source_line: None,
    }
}

/// A multi-key append links its keys: seeing it on one key and not, later,
/// on the other is a violation, though each key alone is linearizable.
#[test]
fn half_of_a_multi_key_append_is_not_linearizable() {
    let keys = vec!["a".to_string(), "b".to_string()];
    let get = |key: &str| KvInput::Get { key: key.into() };
    let read = |value: &str| KvOutput::Get {
        value: value.into(),
    };
    let append = completed(
        0,
        0,
        KvInput::AppendAll {
            keys: keys.clone(),
            value: "x;".into(),
        },
        KvOutput::AppendAll,
    );
    let whole = History::new(vec![
        append.clone(),
        completed(1, 10, get("a"), read("x;")),
        completed(1, 20, get("b"), read("x;")),
    ]);
    assert_eq!(verdict(&Kv, &whole), Verdict::Linearizable);
    // The append may take effect late (indeterminate), but not half of it.
    let mut late = append;
    late.outcome = Outcome::Indeterminate;
    late.complete_ns = None;
    let torn = History::new(vec![
        late,
        completed(1, 10, get("a"), read("x;")),
        completed(1, 20, get("b"), read("")),
    ]);
    assert_eq!(verdict(&Kv, &torn), Verdict::NotLinearizable);
    let torn_snapshot = History::new(vec![
        completed(
            0,
            0,
            KvInput::AppendAll {
                keys: keys.clone(),
                value: "x;".into(),
            },
            KvOutput::AppendAll,
        ),
        completed(
            1,
            10,
            KvInput::GetAll { keys },
            KvOutput::GetAll {
                values: vec!["x;".into(), "".into()],
            },
        ),
    ]);
    assert_eq!(verdict(&Kv, &torn_snapshot), Verdict::NotLinearizable);
}
