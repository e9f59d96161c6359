//! Why a partition is not linearizable: the longest order found, and what cannot come next.
//!
//! porcupine shows the longest partial linearizations in its visualizer; we
//! do the same in text. After the longest order the search found, the
//! candidates for the next place are the remaining operations invoked before
//! the first remaining completion. Each of them is either wrong in the state
//! reached (the model would have answered differently) or right there but
//! a dead end: every continuation after it fails too.

use super::search::EntryList;
use crate::history::Operation;
use crate::model::{Model, Transition};

/// One operation of the longest linearizable order found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearizedOperation {
    /// Index into the history.
    pub operation: usize,
    /// The model's state after it, described for people.
    pub state_after: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockReason {
    /// In the state reached, the model would have answered `expected`.
    WrongOutput { expected: String },
    /// Allowed in the state reached, but no order continues from there.
    DeadEnd,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedOperation {
    /// Index into the history.
    pub operation: usize,
    pub reason: BlockReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The longest order found that respects real time and the model.
    pub prefix: Vec<LinearizedOperation>,
    pub state_after_prefix: String,
    /// The remaining operations that could be next in real-time order; none
    /// of them can be placed.
    pub blocked: Vec<BlockedOperation>,
    /// History index of the remaining operation that completes first: it had
    /// to take effect before then, and the search could not make that work.
    pub first_completion: usize,
}

/// Builds the explanation for a partition whose search failed. `indices`
/// maps partition positions to history indices; `longest` is in partition
/// positions.
pub(crate) fn explain<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    indices: &[usize],
    longest: &[usize],
) -> Explanation {
    let mut state = model.initial_state();
    let mut prefix = Vec::with_capacity(longest.len());
    for &position in longest {
        let operation = operations[position];
        let transition = model
            .step(&state, &operation.input, operation.outcome.output())
            .expect("the search only records orders the model allows");
        if let Transition::Changed(next) = transition {
            state = next;
        }
        prefix.push(LinearizedOperation {
            operation: indices[position],
            state_after: model.describe_state(&state),
        });
    }
    let (candidates, first_completion) = frontier(operations, longest);
    let blocked = candidates
        .into_iter()
        .map(|position| {
            let operation = operations[position];
            let reason = match model.step(&state, &operation.input, operation.outcome.output()) {
                Some(_) => BlockReason::DeadEnd,
                None => BlockReason::WrongOutput {
                    expected: model.apply(&state, &operation.input).1.to_string(),
                },
            };
            BlockedOperation {
                operation: indices[position],
                reason,
            }
        })
        .collect();
    Explanation {
        prefix,
        state_after_prefix: model.describe_state(&state),
        blocked,
        first_completion: indices[first_completion],
    }
}

/// The operations not in `linearized` that are invoked before the first
/// completion among them, and the operation of that completion.
fn frontier<I, O>(operations: &[&Operation<I, O>], linearized: &[usize]) -> (Vec<usize>, usize) {
    let deadlines: Vec<_> = operations
        .iter()
        .map(|operation| (operation.invoke_ns, operation.effect_deadline_ns()))
        .collect();
    let entries = EntryList::new(&deadlines);
    let mut done = vec![false; operations.len()];
    for &position in linearized {
        done[position] = true;
    }
    let mut candidates = Vec::new();
    let mut node = entries.first();
    while !entries.is_end(node) {
        let operation = entries.operation(node);
        if !done[operation] {
            if !entries.is_call(node) {
                return (candidates, operation);
            }
            candidates.push(operation);
        }
        node = entries.next(node);
    }
    unreachable!("a failed search leaves at least one operation unlinearized")
}
