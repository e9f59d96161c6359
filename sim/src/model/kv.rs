//! A map of string keys with get, put, append, compare-and-set and atomic
//! multi-key read and append (porcupine's kv model, extended).
//!
//! Every key starts as the empty string. Keys interact only through the
//! multi-key operations, so the checker partitions a history by key and
//! merges the partitions of keys one operation touches together: each
//! group of linked keys is checked as one object (P-compositionality).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{quoted, Model, Transition};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum KvInput {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
    },
    Append {
        key: String,
        value: String,
    },
    /// Sets `to` if the value is `from` (`""`: the key is absent).
    Cas {
        key: String,
        from: String,
        to: String,
    },
    /// Reads several keys at one instant.
    GetAll {
        keys: Vec<String>,
    },
    /// Appends `value` to every key, atomically.
    AppendAll {
        keys: Vec<String>,
        value: String,
    },
    /// Removes the key (its value becomes "").
    Delete {
        key: String,
    },
}

impl KvInput {
    /// The key the operation is filed under: its first.
    pub fn key(&self) -> &str {
        self.keys()[0]
    }

    /// Every key the operation touches, the first one first.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            KvInput::Get { key }
            | KvInput::Put { key, .. }
            | KvInput::Append { key, .. }
            | KvInput::Cas { key, .. }
            | KvInput::Delete { key } => {
                vec![key]
            }
            KvInput::GetAll { keys } | KvInput::AppendAll { keys, .. } => {
                keys.iter().map(String::as_str).collect()
            }
        }
    }

    /// The value the operation writes, if it writes one.
    pub fn written(&self) -> Option<&str> {
        match self {
            KvInput::Put { value, .. }
            | KvInput::Append { value, .. }
            | KvInput::AppendAll { value, .. } => Some(value),
            KvInput::Cas { to, .. } => Some(to),
            KvInput::Get { .. } | KvInput::GetAll { .. } | KvInput::Delete { .. } => None,
        }
    }

    pub fn function(&self) -> &'static str {
        match self {
            KvInput::Get { .. } => "get",
            KvInput::Put { .. } => "put",
            KvInput::Append { .. } => "append",
            KvInput::Cas { .. } => "cas",
            KvInput::GetAll { .. } => "get_all",
            KvInput::AppendAll { .. } => "append_all",
            KvInput::Delete { .. } => "delete",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum KvOutput {
    Get {
        value: String,
    },
    Put,
    Append,
    Cas {
        swapped: bool,
    },
    GetAll {
        values: Vec<String>,
    },
    AppendAll,
    /// Says nothing about whether the key existed: an answer that did
    /// would observe state without a value to pin it, which the
    /// simulator's history patching could not account for.
    Delete,
}

impl KvOutput {
    pub fn function(&self) -> &'static str {
        match self {
            KvOutput::Get { .. } => "get",
            KvOutput::Put => "put",
            KvOutput::Append => "append",
            KvOutput::Cas { .. } => "cas",
            KvOutput::GetAll { .. } => "get_all",
            KvOutput::AppendAll => "append_all",
            KvOutput::Delete => "delete",
        }
    }

    /// The values a read returned.
    pub fn read_values(&self) -> &[String] {
        match self {
            KvOutput::Get { value } => std::slice::from_ref(value),
            KvOutput::GetAll { values } => values,
            _ => &[],
        }
    }
}

/// The values of the keys of one partition; a key not present holds "".
pub type KvState = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, Default)]
pub struct Kv;

fn value_of<'a>(state: &'a KvState, key: &str) -> &'a str {
    state.get(key).map_or("", String::as_str)
}

fn with(state: &KvState, writes: impl IntoIterator<Item = (String, String)>) -> KvState {
    let mut next = state.clone();
    next.extend(writes);
    next
}

impl Model for Kv {
    type Input = KvInput;
    type Output = KvOutput;
    type State = KvState;

    const NAME: &'static str = "kv";

    fn initial_state(&self) -> KvState {
        KvState::new()
    }

    fn apply(&self, state: &KvState, input: &KvInput) -> (Transition<KvState>, KvOutput) {
        match input {
            KvInput::Get { key } => (
                Transition::Unchanged,
                KvOutput::Get {
                    value: value_of(state, key).to_string(),
                },
            ),
            KvInput::Put { key, value } => (
                Transition::Changed(with(state, [(key.clone(), value.clone())])),
                KvOutput::Put,
            ),
            KvInput::Append { key, value } => {
                let appended = format!("{}{value}", value_of(state, key));
                (
                    Transition::Changed(with(state, [(key.clone(), appended)])),
                    KvOutput::Append,
                )
            }
            KvInput::Cas { key, from, to } if value_of(state, key) == from => (
                Transition::Changed(with(state, [(key.clone(), to.clone())])),
                KvOutput::Cas { swapped: true },
            ),
            KvInput::Cas { .. } => (Transition::Unchanged, KvOutput::Cas { swapped: false }),
            KvInput::GetAll { keys } => {
                let values = keys
                    .iter()
                    .map(|key| value_of(state, key).to_string())
                    .collect();
                (Transition::Unchanged, KvOutput::GetAll { values })
            }
            KvInput::AppendAll { keys, value } => {
                let writes = keys
                    .iter()
                    .map(|key| (key.clone(), format!("{}{value}", value_of(state, key))));
                (
                    Transition::Changed(with(state, writes.collect::<Vec<_>>())),
                    KvOutput::AppendAll,
                )
            }
            KvInput::Delete { key } if value_of(state, key).is_empty() => {
                (Transition::Unchanged, KvOutput::Delete)
            }
            KvInput::Delete { key } => {
                let mut next = state.clone();
                next.remove(key);
                (Transition::Changed(next), KvOutput::Delete)
            }
        }
    }

    /// Same answer as `apply`, without copying values for every read the
    /// search tries: reads are most of the steps.
    fn step(
        &self,
        state: &KvState,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Transition<KvState>> {
        match (input, output) {
            (KvInput::Get { .. } | KvInput::GetAll { .. }, None) => Some(Transition::Unchanged),
            (KvInput::Get { key }, Some(KvOutput::Get { value }))
                if value == value_of(state, key) =>
            {
                Some(Transition::Unchanged)
            }
            (KvInput::GetAll { keys }, Some(KvOutput::GetAll { values }))
                if keys.len() == values.len()
                    && keys
                        .iter()
                        .zip(values)
                        .all(|(key, value)| value == value_of(state, key)) =>
            {
                Some(Transition::Unchanged)
            }
            (KvInput::Get { .. } | KvInput::GetAll { .. }, Some(_)) => None,
            (_, Some(observed)) if observed.function() != input.function() => None,
            (_, Some(observed)) => {
                let (transition, expected) = self.apply(state, input);
                (*observed == expected).then_some(transition)
            }
            (_, None) => Some(self.apply(state, input).0),
        }
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Get { .. } | KvInput::GetAll { .. })
    }

    /// A cas that did not swap changed nothing, wherever it is the answer.
    fn answer_changes_nothing(&self, _input: &KvInput, output: &KvOutput) -> bool {
        matches!(output, KvOutput::Cas { swapped: false })
    }

    fn partition_key(&self, input: &KvInput) -> Option<String> {
        Some(input.key().to_string())
    }

    fn linked_keys(&self, input: &KvInput) -> Vec<String> {
        input.keys()[1..]
            .iter()
            .map(|key| key.to_string())
            .collect()
    }

    fn describe_state(&self, state: &KvState) -> String {
        match state.len() {
            0 => quoted(""),
            1 => quoted(state.values().next().expect("one value")),
            _ => {
                let pairs: Vec<String> = state
                    .iter()
                    .map(|(key, value)| format!("{}={}", key, quoted(value)))
                    .collect();
                format!("{{{}}}", pairs.join(", "))
            }
        }
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
            KvInput::Cas { key, from, to } => write!(
                formatter,
                "cas {} {} {}",
                quoted(key),
                quoted(from),
                quoted(to)
            ),
            KvInput::GetAll { keys } => write!(formatter, "get_all {keys:?}"),
            KvInput::AppendAll { keys, value } => {
                write!(formatter, "append_all {keys:?} {}", quoted(value))
            }
            KvInput::Delete { key } => write!(formatter, "delete {}", quoted(key)),
        }
    }
}

impl fmt::Display for KvOutput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Get { value } => write!(formatter, "{}", quoted(value)),
            KvOutput::Put | KvOutput::Append | KvOutput::AppendAll | KvOutput::Delete => {
                write!(formatter, "ok")
            }
            KvOutput::Cas { swapped } => {
                write!(formatter, "{}", if *swapped { "ok" } else { "fail" })
            }
            KvOutput::GetAll { values } => write!(formatter, "{values:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_agrees_with_apply() {
        let state = KvState::from([("k".to_string(), "ab".to_string())]);
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
            KvInput::Cas {
                key: "k".into(),
                from: "ab".into(),
                to: "y".into(),
            },
            KvInput::Cas {
                key: "k".into(),
                from: "a".into(),
                to: "y".into(),
            },
            KvInput::Cas {
                key: "other".into(),
                from: "".into(),
                to: "y".into(),
            },
            KvInput::GetAll {
                keys: vec!["k".into(), "other".into()],
            },
            KvInput::AppendAll {
                keys: vec!["k".into(), "other".into()],
                value: "d".into(),
            },
            KvInput::Delete { key: "k".into() },
            KvInput::Delete {
                key: "missing".into(),
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
        let torn = KvOutput::GetAll {
            values: vec!["ab".into(), "d".into()],
        };
        assert_eq!(Kv.step(&state, &inputs[6], Some(&torn)), None);
    }

    #[test]
    fn multi_key_operations_are_atomic() {
        let keys = vec!["a".to_string(), "b".to_string()];
        let (transition, _) = Kv.apply(
            &KvState::new(),
            &KvInput::AppendAll {
                keys: keys.clone(),
                value: "x;".into(),
            },
        );
        let Transition::Changed(state) = transition else {
            panic!("append_all changes the state")
        };
        let (_, read) = Kv.apply(&state, &KvInput::GetAll { keys });
        assert_eq!(
            read,
            KvOutput::GetAll {
                values: vec!["x;".into(), "x;".into()]
            }
        );
        let (_, swapped) = Kv.apply(
            &state,
            &KvInput::Cas {
                key: "a".into(),
                from: "x;".into(),
                to: "y;".into(),
            },
        );
        assert_eq!(swapped, KvOutput::Cas { swapped: true });
    }
}
