//! Sequential specifications: what each object does when operations run one at a time.
//!
//! The linearizability checker asks a [`Model`] one question, again and
//! again: "in this state, may this operation with this observed output take
//! effect now, and what state follows?". Models are deterministic: given a
//! state and an input there is exactly one output and one next state, which
//! [`Model::apply`] computes. The simulator's workloads use `apply` too, to
//! predict results, and the tests use it to generate histories.

pub mod etcd;
pub mod kv;
pub mod lease;
pub mod register;

use std::fmt;
use std::hash::Hash;

/// What an operation does to the state, as computed by [`Model::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition<S> {
    /// The state stays as it was (a read, a failed compare-and-set, a delete
    /// of nothing). Kept apart so the checker does not clone or re-intern it.
    Unchanged,
    Changed(S),
}

/// A sequential object the checker can linearize operations against.
pub trait Model {
    type Input: Clone + fmt::Debug + fmt::Display;
    type Output: Clone + fmt::Debug + fmt::Display + PartialEq;
    type State: Clone + fmt::Debug + Eq + Hash;

    /// The name used in reports and in the JSON history header.
    const NAME: &'static str;

    fn initial_state(&self) -> Self::State;

    /// Runs `input` alone against `state`: the next state and the output a
    /// correct server must return.
    fn apply(
        &self,
        state: &Self::State,
        input: &Self::Input,
    ) -> (Transition<Self::State>, Self::Output);

    /// May `input` take effect in `state` and be observed as `output`? `None`
    /// as output means the result is unknown (an indeterminate operation),
    /// which every state allows. Returns the transition if allowed.
    /// Override only to avoid work `apply` would do; the answer must agree.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Transition<Self::State>> {
        let (transition, expected) = self.apply(state, input);
        match output {
            Some(observed) if *observed != expected => None,
            _ => Some(transition),
        }
    }

    /// True if `input` can never change the state. An indeterminate read-only
    /// operation constrains nothing, so the checker drops it.
    fn is_read_only(&self, input: &Self::Input) -> bool;

    /// True if an operation answered `output` changes no state wherever the
    /// model accepts that answer (a refusal), though its input could. The
    /// checker then places it as it places reads (`search::Frame::forced`).
    fn answer_changes_nothing(&self, _input: &Self::Input, _output: &Self::Output) -> bool {
        false
    }

    /// The partition an operation belongs to, for P-compositional checking:
    /// operations in different partitions touch disjoint state, so each
    /// partition is linearizable on its own iff the whole is (Herlihy & Wing
    /// locality). `None` puts every operation in one partition.
    fn partition_key(&self, input: &Self::Input) -> Option<String>;

    /// Keys besides its partition key that an operation touches at once (a
    /// multi-key transaction). The checker merges the partitions of all of
    /// them, so linked keys are checked together as one object.
    fn linked_keys(&self, _input: &Self::Input) -> Vec<String> {
        Vec::new()
    }

    /// A counter in the state that no operation ever decreases, if the model
    /// has one (etcd's revision). With [`Model::counter_bound`] it lets the
    /// checker abandon an order as soon as the counter has passed what some
    /// operation still to be placed observed, instead of discovering it only
    /// when it reaches that operation. Returning `None` disables this.
    fn counter(&self, _state: &Self::State) -> Option<i64> {
        None
    }

    /// The largest counter value the state can have just before an
    /// operation that returned `output` takes effect. Must hold for every
    /// state in which `step` accepts the operation.
    fn counter_bound(&self, _input: &Self::Input, _output: &Self::Output) -> Option<i64> {
        None
    }

    /// The state as a person would write it, for explanations.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }
}

/// Quotes a string for reports, escaping what would be ambiguous.
pub(crate) fn quoted(text: &str) -> String {
    format!("{text:?}")
}
