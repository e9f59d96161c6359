//! Keys and leases together, as the lease workload uses them: a lease is
//! granted, keys are put with it, its existence is asked (keepalive,
//! TimeToLive) and its keys read, and it ends by a revoke or by an expiry.
//! An expiry is modelled as a server-made revoke: an operation of no
//! client, which may take effect at any instant after the earliest moment
//! the lease may end, or never (`properties::lease_history` builds it).
//!
//! A revoke (or expiry) deletes every key attached to the lease at once.
//! Values, TTLs and revisions are left to the other checks: this model is
//! about which keys and leases exist together.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Model, Transition};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseInput {
    /// The grant that returned lease `id`.
    Grant { id: i64 },
    /// A put of `key` attached to lease `id`.
    Put { key: String, id: i64 },
    /// A keepalive or TimeToLive: does the lease exist?
    Exists { id: i64 },
    /// One read of several keys at once: which exist?
    Read { keys: Vec<String> },
    /// A client's revoke.
    Revoke { id: i64 },
    /// The server's expiry: a revoke no client sent.
    Expire { id: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseOutput {
    Ok,
    /// The lease named does not exist (a put or revoke refused).
    LeaseNotFound,
    Exists(bool),
    Present(Vec<bool>),
}

/// The leases that exist and the keys attached to them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeaseState {
    pub leases: BTreeSet<i64>,
    pub keys: BTreeMap<String, i64>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LeaseKv;

fn end(state: &LeaseState, id: i64) -> LeaseState {
    let mut next = state.clone();
    next.leases.remove(&id);
    next.keys.retain(|_, lease| *lease != id);
    next
}

impl Model for LeaseKv {
    type Input = LeaseInput;
    type Output = LeaseOutput;
    type State = LeaseState;

    const NAME: &'static str = "lease-kv";

    fn initial_state(&self) -> LeaseState {
        LeaseState::default()
    }

    fn apply(
        &self,
        state: &LeaseState,
        input: &LeaseInput,
    ) -> (Transition<LeaseState>, LeaseOutput) {
        match input {
            LeaseInput::Grant { id } => {
                let mut next = state.clone();
                next.leases.insert(*id);
                (Transition::Changed(next), LeaseOutput::Ok)
            }
            LeaseInput::Put { key, id } if state.leases.contains(id) => {
                let mut next = state.clone();
                next.keys.insert(key.clone(), *id);
                (Transition::Changed(next), LeaseOutput::Ok)
            }
            LeaseInput::Put { .. } => (Transition::Unchanged, LeaseOutput::LeaseNotFound),
            LeaseInput::Exists { id } => (
                Transition::Unchanged,
                LeaseOutput::Exists(state.leases.contains(id)),
            ),
            LeaseInput::Read { keys } => (
                Transition::Unchanged,
                LeaseOutput::Present(
                    keys.iter()
                        .map(|key| state.keys.contains_key(key))
                        .collect(),
                ),
            ),
            LeaseInput::Revoke { id } if state.leases.contains(id) => {
                (Transition::Changed(end(state, *id)), LeaseOutput::Ok)
            }
            LeaseInput::Revoke { .. } => (Transition::Unchanged, LeaseOutput::LeaseNotFound),
            LeaseInput::Expire { id } if state.leases.contains(id) => {
                (Transition::Changed(end(state, *id)), LeaseOutput::Ok)
            }
            LeaseInput::Expire { .. } => (Transition::Unchanged, LeaseOutput::Ok),
        }
    }

    fn is_read_only(&self, input: &LeaseInput) -> bool {
        matches!(input, LeaseInput::Exists { .. } | LeaseInput::Read { .. })
    }

    /// One partition per lease with its keys: a put links the key to it.
    fn partition_key(&self, input: &LeaseInput) -> Option<String> {
        Some(match input {
            LeaseInput::Grant { id }
            | LeaseInput::Exists { id }
            | LeaseInput::Revoke { id }
            | LeaseInput::Expire { id } => format!("lease {id:x}"),
            LeaseInput::Put { key, .. } => format!("key {key}"),
            LeaseInput::Read { keys } => format!("key {}", keys.first().map_or("", String::as_str)),
        })
    }

    fn linked_keys(&self, input: &LeaseInput) -> Vec<String> {
        match input {
            LeaseInput::Put { id, .. } => vec![format!("lease {id:x}")],
            LeaseInput::Read { keys } => keys
                .iter()
                .skip(1)
                .map(|key| format!("key {key}"))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn describe_state(&self, state: &LeaseState) -> String {
        let leases: Vec<String> = state.leases.iter().map(|id| format!("{id:x}")).collect();
        let keys: Vec<String> = state
            .keys
            .iter()
            .map(|(key, id)| format!("{key}@{id:x}"))
            .collect();
        format!("leases [{}], keys [{}]", leases.join(" "), keys.join(" "))
    }
}

impl fmt::Display for LeaseInput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseInput::Grant { id } => write!(formatter, "grant {id:x}"),
            LeaseInput::Put { key, id } => write!(formatter, "put {key} with {id:x}"),
            LeaseInput::Exists { id } => write!(formatter, "does {id:x} exist"),
            LeaseInput::Read { keys } => write!(formatter, "read {}", keys.join(" ")),
            LeaseInput::Revoke { id } => write!(formatter, "revoke {id:x}"),
            LeaseInput::Expire { id } => write!(formatter, "expiry of {id:x} (the server's)"),
        }
    }
}

impl fmt::Display for LeaseOutput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseOutput::Ok => write!(formatter, "ok"),
            LeaseOutput::LeaseNotFound => write!(formatter, "lease not found"),
            LeaseOutput::Exists(exists) => {
                write!(formatter, "{}", if *exists { "exists" } else { "gone" })
            }
            LeaseOutput::Present(present) => {
                let marks: Vec<&str> = present
                    .iter()
                    .map(|p| if *p { "present" } else { "absent" })
                    .collect();
                write!(formatter, "{}", marks.join(" "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ending_takes_every_key_along() {
        let granted = LeaseState {
            leases: [1].into(),
            keys: [
                ("a".to_string(), 1),
                ("b".to_string(), 1),
                ("c".to_string(), 2),
            ]
            .into(),
        };
        let read = LeaseInput::Read {
            keys: vec!["a".into(), "b".into(), "c".into()],
        };
        let (Transition::Changed(after), _) =
            LeaseKv.apply(&granted, &LeaseInput::Expire { id: 1 })
        else {
            panic!("an expiry of a live lease changes the state");
        };
        assert_eq!(
            LeaseKv.apply(&after, &read).1,
            LeaseOutput::Present(vec![false, false, true])
        );
        assert_eq!(
            LeaseKv
                .apply(
                    &after,
                    &LeaseInput::Put {
                        key: "a".into(),
                        id: 1
                    }
                )
                .1,
            LeaseOutput::LeaseNotFound
        );
        assert_eq!(
            LeaseKv.apply(&after, &LeaseInput::Expire { id: 1 }).0,
            Transition::Unchanged
        );
    }
}
