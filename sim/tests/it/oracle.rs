//! The checker against brute force: on small random kv histories, its
//! verdict equals that of trying every order.
//!
//! The search prunes in many ways (memoization on fingerprints, forced
//! reads, late candidates, skipped no-op indeterminate writes, per-key
//! partitions); each is argued sound and complete in its comment. This test
//! is where such an argument meets a counter-example: the oracle below
//! knows nothing but the definition of linearizability. Outputs are drawn
//! at random from plausible values, so about half of the histories are not
//! linearizable.

use proptest::prelude::*;

use detcd_sim::check::{check, Budget, Verdict};
use detcd_sim::history::{History, Operation, Outcome};
use detcd_sim::model::kv::{Kv, KvInput, KvOutput, KvState};
use detcd_sim::model::{Model, Transition};

const OPERATIONS_MAX: usize = 7;
const KEYS: [&str; 2] = ["a", "b"];
const READ_VALUES: [&str; 6] = ["", "1", "2", "12", "21", "2 1"];

type KvOperation = Operation<KvInput, KvOutput>;

fn input() -> impl Strategy<Value = KvInput> {
    let key = prop::sample::select(KEYS.to_vec()).prop_map(str::to_string);
    let value = prop::sample::select(vec!["1", "2"]).prop_map(str::to_string);
    prop_oneof![
        key.clone().prop_map(|key| KvInput::Get { key }),
        (key.clone(), value.clone()).prop_map(|(key, value)| KvInput::Put { key, value }),
        (key.clone(), value.clone()).prop_map(|(key, value)| KvInput::Append { key, value }),
        // A cas answered "not swapped" is placed like a read
        // (`Model::answer_changes_nothing`): brute force checks that is sound.
        (key.clone(), value.clone(), value).prop_map(|(key, from, to)| KvInput::Cas {
            key,
            from,
            to
        }),
        key.prop_map(|key| KvInput::Delete { key }),
    ]
}

fn operation() -> impl Strategy<Value = KvOperation> {
    (
        0u64..20,
        0u64..10,
        input(),
        0u8..20,
        prop::sample::select(READ_VALUES.to_vec()),
    )
        .prop_map(|(invoke_ns, duration_ns, input, roll, read)| {
            let output = match &input {
                KvInput::Get { .. } => KvOutput::Get {
                    value: read.to_string(),
                },
                KvInput::Put { .. } => KvOutput::Put,
                KvInput::Append { .. } => KvOutput::Append,
                KvInput::Cas { .. } => KvOutput::Cas {
                    swapped: roll % 2 == 0,
                },
                _ => KvOutput::Delete,
            };
            let outcome = match roll {
                0..=2 => Outcome::Indeterminate,
                3 => Outcome::Fail,
                _ => Outcome::Ok(output),
            };
            Operation {
                client: 0,
                invoke_ns,
                complete_ns: Some(invoke_ns + duration_ns),
                input,
                outcome,
                source_line: None,
            }
        })
}

/// Is there an order of all `Ok` operations and some indeterminate ones
/// that respects real time (an `Ok` operation that completed before another
/// began comes first; touching instants count as concurrent) and that the
/// model accepts?
fn linearizable_by_brute_force(operations: &[KvOperation]) -> bool {
    let candidates: Vec<&KvOperation> = operations
        .iter()
        .filter(|operation| !matches!(operation.outcome, Outcome::Fail))
        .collect();
    let mut placed = vec![false; candidates.len()];
    extend(&Kv, &candidates, &mut placed, &Kv.initial_state())
}

fn extend(model: &Kv, operations: &[&KvOperation], placed: &mut [bool], state: &KvState) -> bool {
    let all_ok_placed = operations
        .iter()
        .zip(placed.iter())
        .all(|(operation, &done)| done || operation.outcome.output().is_none());
    if all_ok_placed {
        return true;
    }
    for next in 0..operations.len() {
        if placed[next] {
            continue;
        }
        // Every unplaced Ok operation that completed before this one began
        // would have to come first.
        let blocked = (0..operations.len()).any(|other| {
            !placed[other]
                && other != next
                && operations[other]
                    .effect_deadline_ns()
                    .is_some_and(|deadline| deadline < operations[next].invoke_ns)
        });
        if blocked {
            continue;
        }
        let operation = operations[next];
        let Some(transition) = model.step(state, &operation.input, operation.outcome.output())
        else {
            continue;
        };
        let next_state = match transition {
            Transition::Unchanged => state.clone(),
            Transition::Changed(changed) => changed,
        };
        placed[next] = true;
        let found = extend(model, operations, placed, &next_state);
        placed[next] = false;
        if found {
            return true;
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10000))]

    #[test]
    fn the_checker_agrees_with_brute_force(
        operations in prop::collection::vec(operation(), 1..=OPERATIONS_MAX)
    ) {
        let expected = if linearizable_by_brute_force(&operations) {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        let history = History::new(operations);
        let report = check(&Kv, &history, Budget::default());
        prop_assert_eq!(report.verdict, expected);
    }
}
