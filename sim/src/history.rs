//! The history model: every client operation with its invocation, its completion and what it returned.
//!
//! A history is what a test observed from the outside. Each [`Operation`] is
//! one request of one client: when it was sent (`invoke_ns`), when its answer
//! arrived (`complete_ns`), what was asked (`input`) and how it ended
//! ([`Outcome`]). Times are whatever clock the recorder had (virtual
//! nanoseconds in the simulator, wall nanoseconds in jepsen-style, the line
//! number for the external log formats); only their order matters.
//!
//! The three outcomes are the ones etcd's robustness tests distinguish:
//! - `Ok(output)`: the request took effect exactly once, at some instant
//!   between invocation and completion, and returned `output`.
//! - `Fail`: the request definitely did not take effect (it was rejected
//!   before reaching raft, or the server said so). It constrains nothing.
//! - `Indeterminate`: the client does not know (timeout, connection lost).
//!   The request may have taken effect at any instant after its invocation,
//!   even after the client gave up, or never; its answer, if any, is unknown.

use std::fmt;

/// Identifies the client (Jepsen's "process") that issued an operation.
/// One client has at most one operation in flight in histories we record,
/// but the checker does not rely on that.
pub type ClientId = u64;

/// How an operation ended, as seen by its client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<O> {
    /// Took effect once between invocation and completion, and returned this.
    Ok(O),
    /// Definitely did not take effect.
    Fail,
    /// May have taken effect at any instant after invocation, or never.
    Indeterminate,
}

impl<O> Outcome<O> {
    /// The observed output, if the operation completed successfully.
    pub fn output(&self) -> Option<&O> {
        match self {
            Outcome::Ok(output) => Some(output),
            Outcome::Fail | Outcome::Indeterminate => None,
        }
    }

    /// A short name for reports: `ok`, `fail` or `indeterminate`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Fail => "fail",
            Outcome::Indeterminate => "indeterminate",
        }
    }
}

/// One client request and its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    pub client: ClientId,
    pub invoke_ns: u64,
    /// When the client received the answer or gave up. `None` if the history
    /// ended while the operation was still in flight (which makes it
    /// indeterminate). For an indeterminate operation this time bounds
    /// nothing: the effect may still happen later.
    pub complete_ns: Option<u64>,
    pub input: I,
    pub outcome: Outcome<O>,
    /// The line of the input file that invoked this operation, for messages.
    pub source_line: Option<usize>,
}

impl<I, O> Operation<I, O> {
    /// The latest instant at which this operation may take effect, for the
    /// checker: its completion if it returned `Ok`, otherwise unbounded.
    pub fn effect_deadline_ns(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok(_) => self.complete_ns,
            Outcome::Fail | Outcome::Indeterminate => None,
        }
    }
}

/// An inconsistent history, found by [`History::validate`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error("operation {index} completes at {complete_ns} before it is invoked at {invoke_ns}")]
    CompletesBeforeInvocation {
        index: usize,
        invoke_ns: u64,
        complete_ns: u64,
    },
    #[error("operation {index} has outcome ok but no completion time")]
    OkWithoutCompletion { index: usize },
}

/// All operations of one recorded run, in any order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History<I, O> {
    pub operations: Vec<Operation<I, O>>,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        History {
            operations: Vec::new(),
        }
    }
}

impl<I, O> History<I, O> {
    pub fn new(operations: Vec<Operation<I, O>>) -> Self {
        History { operations }
    }

    pub fn len(&self) -> usize {
        self.operations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// Checks the invariants the checker relies on: an `Ok` operation has a
    /// completion, and nothing completes before it is invoked.
    pub fn validate(&self) -> Result<(), HistoryError> {
        for (index, operation) in self.operations.iter().enumerate() {
            match (operation.complete_ns, &operation.outcome) {
                (Some(complete_ns), _) if complete_ns < operation.invoke_ns => {
                    return Err(HistoryError::CompletesBeforeInvocation {
                        index,
                        invoke_ns: operation.invoke_ns,
                        complete_ns,
                    });
                }
                (None, Outcome::Ok(_)) => return Err(HistoryError::OkWithoutCompletion { index }),
                _ => {}
            }
        }
        Ok(())
    }

    /// The latest time mentioned by any operation, for drawing timelines.
    pub fn end_ns(&self) -> u64 {
        let ends = self
            .operations
            .iter()
            .map(|operation| operation.complete_ns.unwrap_or(operation.invoke_ns));
        ends.max().unwrap_or(0)
    }
}

impl<I: fmt::Display, O: fmt::Display> fmt::Display for Operation<I, O> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "client {} {}", self.client, self.input)?;
        match &self.outcome {
            Outcome::Ok(output) => write!(formatter, " -> {output}"),
            Outcome::Fail => write!(formatter, " -> fail"),
            Outcome::Indeterminate => write!(formatter, " -> ?"),
        }
    }
}
