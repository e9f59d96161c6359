//! A single register with read, write and compare-and-set, as in Jepsen's etcd register test.
//!
//! The register starts absent (Jepsen's `nil`). A compare-and-set whose
//! expected value does not match returns `succeeded: false` and changes
//! nothing; that answer is informative (the value was not `from` at that
//! instant), so it is an `Ok` outcome, not a `Fail`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Model, Transition};

pub type Value = i64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegisterInput {
    Read,
    Write { value: Value },
    Cas { from: Value, to: Value },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegisterOutput {
    /// `None` means the register was absent.
    Read {
        value: Option<Value>,
    },
    Write,
    Cas {
        succeeded: bool,
    },
}

impl RegisterOutput {
    /// The name of the operation this output answers, to match it to its input.
    pub fn function(&self) -> &'static str {
        match self {
            RegisterOutput::Read { .. } => "read",
            RegisterOutput::Write => "write",
            RegisterOutput::Cas { .. } => "cas",
        }
    }
}

impl RegisterInput {
    pub fn function(&self) -> &'static str {
        match self {
            RegisterInput::Read => "read",
            RegisterInput::Write { .. } => "write",
            RegisterInput::Cas { .. } => "cas",
        }
    }
}

/// The register's content; `None` is absent.
pub type RegisterState = Option<Value>;

#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

impl Model for Register {
    type Input = RegisterInput;
    type Output = RegisterOutput;
    type State = RegisterState;

    const NAME: &'static str = "register";

    fn initial_state(&self) -> RegisterState {
        None
    }

    fn apply(
        &self,
        state: &RegisterState,
        input: &RegisterInput,
    ) -> (Transition<RegisterState>, RegisterOutput) {
        match *input {
            RegisterInput::Read => (
                Transition::Unchanged,
                RegisterOutput::Read { value: *state },
            ),
            RegisterInput::Write { value } => {
                (Transition::Changed(Some(value)), RegisterOutput::Write)
            }
            RegisterInput::Cas { from, to } if *state == Some(from) => (
                Transition::Changed(Some(to)),
                RegisterOutput::Cas { succeeded: true },
            ),
            RegisterInput::Cas { .. } => (
                Transition::Unchanged,
                RegisterOutput::Cas { succeeded: false },
            ),
        }
    }

    fn is_read_only(&self, input: &RegisterInput) -> bool {
        matches!(input, RegisterInput::Read)
    }

    /// A cas that did not swap changed nothing, wherever it is the answer.
    fn answer_changes_nothing(&self, _input: &RegisterInput, output: &RegisterOutput) -> bool {
        matches!(output, RegisterOutput::Cas { succeeded: false })
    }

    fn partition_key(&self, _input: &RegisterInput) -> Option<String> {
        None
    }

    fn describe_state(&self, state: &RegisterState) -> String {
        describe_value(*state)
    }
}

fn describe_value(value: Option<Value>) -> String {
    match value {
        Some(value) => value.to_string(),
        None => "nil".to_string(),
    }
}

impl fmt::Display for RegisterInput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterInput::Read => write!(formatter, "read"),
            RegisterInput::Write { value } => write!(formatter, "write {value}"),
            RegisterInput::Cas { from, to } => write!(formatter, "cas {from}->{to}"),
        }
    }
}

impl fmt::Display for RegisterOutput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterOutput::Read { value } => write!(formatter, "{}", describe_value(*value)),
            RegisterOutput::Write => write!(formatter, "ok"),
            RegisterOutput::Cas { succeeded: true } => write!(formatter, "ok"),
            RegisterOutput::Cas { succeeded: false } => write!(formatter, "compare failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_cas_is_legal_only_when_the_value_differs() {
        let cas = RegisterInput::Cas { from: 1, to: 2 };
        let failed = RegisterOutput::Cas { succeeded: false };
        assert_eq!(
            Register.step(&Some(3), &cas, Some(&failed)),
            Some(Transition::Unchanged)
        );
        assert_eq!(Register.step(&Some(1), &cas, Some(&failed)), None);
        assert_eq!(
            Register.step(&Some(1), &cas, None),
            Some(Transition::Changed(Some(2)))
        );
    }

    #[test]
    fn read_of_absent_register_is_nil() {
        let nil = RegisterOutput::Read { value: None };
        assert_eq!(
            Register.step(&None, &RegisterInput::Read, Some(&nil)),
            Some(Transition::Unchanged)
        );
        assert_eq!(
            Register.step(&Some(0), &RegisterInput::Read, Some(&nil)),
            None
        );
    }
}
