//! A map of independent string keys with get, put and append (porcupine's kv model).
//!
//! Every key starts as the empty string. Keys never interact, so histories
//! are partitioned by key and each key is checked as its own register.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{quoted, Model, Transition};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum KvInput {
    Get { key: String },
    Put { key: String, value: String },
    Append { key: String, value: String },
}

impl KvInput {
    pub fn key(&self) -> &str {
        match self {
            KvInput::Get { key } | KvInput::Put { key, .. } | KvInput::Append { key, .. } => key,
        }
    }

    pub fn function(&self) -> &'static str {
        match self {
            KvInput::Get { .. } => "get",
            KvInput::Put { .. } => "put",
            KvInput::Append { .. } => "append",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum KvOutput {
    Get { value: String },
    Put,
    Append,
}

impl KvOutput {
    pub fn function(&self) -> &'static str {
        match self {
            KvOutput::Get { .. } => "get",
            KvOutput::Put => "put",
            KvOutput::Append => "append",
        }
    }
}

/// The value of the one key a partition holds.
pub type KvState = String;

#[derive(Clone, Copy, Debug, Default)]
pub struct Kv;

impl Model for Kv {
    type Input = KvInput;
    type Output = KvOutput;
    type State = KvState;

    const NAME: &'static str = "kv";

    fn initial_state(&self) -> KvState {
        String::new()
    }

    fn apply(&self, state: &KvState, input: &KvInput) -> (Transition<KvState>, KvOutput) {
        match input {
            KvInput::Get { .. } => (
                Transition::Unchanged,
                KvOutput::Get {
                    value: state.clone(),
                },
            ),
            KvInput::Put { value, .. } => (Transition::Changed(value.clone()), KvOutput::Put),
            KvInput::Append { value, .. } => (
                Transition::Changed(format!("{state}{value}")),
                KvOutput::Append,
            ),
        }
    }

    /// Same answer as `apply`, without copying the value for every read the
    /// search tries: reads are most of the steps.
    fn step(
        &self,
        state: &KvState,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Transition<KvState>> {
        match (input, output) {
            (KvInput::Get { .. }, None) => Some(Transition::Unchanged),
            (KvInput::Get { .. }, Some(KvOutput::Get { value })) if value == state => {
                Some(Transition::Unchanged)
            }
            (KvInput::Get { .. }, Some(_)) => None,
            (_, Some(observed)) if observed.function() != input.function() => None,
            _ => Some(self.apply(state, input).0),
        }
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Get { .. })
    }

    fn partition_key(&self, input: &KvInput) -> Option<String> {
        Some(input.key().to_string())
    }

    fn describe_state(&self, state: &KvState) -> String {
        quoted(state)
    }
}

impl fmt::Display for KvInput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvInput::Get { key } => write!(formatter, "get {}", quoted(key)),
            KvInput::Put { key, value } => {
                write!(formatter, "put {} {}", quoted(key), quoted(value))
            }
            KvInput::Append { key, value } => {
                write!(formatter, "append {} {}", quoted(key), quoted(value))
            }
        }
    }
}

impl fmt::Display for KvOutput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Get { value } => write!(formatter, "{}", quoted(value)),
            KvOutput::Put | KvOutput::Append => write!(formatter, "ok"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_agrees_with_apply() {
        let state = "ab".to_string();
        let inputs = [
            KvInput::Get { key: "k".into() },
            KvInput::Put {
                key: "k".into(),
                value: "x".into(),
            },
            KvInput::Append {
                key: "k".into(),
                value: "c".into(),
            },
        ];
        for input in &inputs {
            let (transition, output) = Kv.apply(&state, input);
            assert_eq!(
                Kv.step(&state, input, Some(&output)),
                Some(transition.clone())
            );
            assert_eq!(Kv.step(&state, input, None), Some(transition));
        }
        let stale = KvOutput::Get { value: "a".into() };
        assert_eq!(Kv.step(&state, &inputs[0], Some(&stale)), None);
    }
}
