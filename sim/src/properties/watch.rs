//! etcd's watch guarantees, checked over what the simulator's watch
//! consumers (`watcher`) received. Each check is one guarantee
//! and names it in its violation:
//! - created: every stream opens with a created notification, which
//!   carries no events;
//! - ordered: event revisions never go back, across resumptions too;
//! - unique: no (key, revision) is delivered twice;
//! - atomic: all of one revision's events come in one response;
//! - bookmarkable: a progress notification at revision R promises every
//!   event up to R was sent, so none at or below R comes after it, and no
//!   response carries events above its header revision;
//! - prev_kv: an event's previous key-value is the key as it was just
//!   before the event (missing only where compaction may have removed it);
//!   versions and create revisions follow from the events before;
//! - filters: a watch that filters puts or deletes never gets one, and
//!   gets every other event an unfiltered watch of the same keys got;
//! - reliable and resumable: replaying the events gives what the members
//!   hold, and every acknowledged write is among them (`replay`,
//!   `acknowledged`), unless compaction cut the watch off.
//!
//! Plain Rust with unit tests, like the checker: the harness only
//! collects the records and calls these.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Operation, Outcome};
use crate::model::etcd::{EtcdInput, EtcdOutput};
use crate::model::kv::{KvInput, KvOutput};

/// One event as the consumer got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub revision: i64,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<String>,
    pub create_revision: i64,
    pub version: i64,
    /// The lease the key is attached to (0: none, and always for a delete).
    pub lease: i64,
    /// The previous key-value, if the watch asked for it and it came.
    pub prev: Option<Previous>,
}

/// An event's previous key-value (etcd's `prev_kv`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    pub value: String,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// One response on one stream, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Streams are numbered from 1 by the consumer; a resumption opens
    /// the next one.
    pub stream: usize,
    pub header_revision: i64,
    pub created: bool,
    pub events: Vec<Event>,
    /// When it arrived: ns since the run started, the clock compactions
    /// are sent by.
    pub received_ns: u64,
}

impl Response {
    /// A progress notification: neither created, nor carrying events.
    pub fn is_progress(&self) -> bool {
        !self.created && self.events.is_empty()
    }
}

/// Which event type a watch filters out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    NoPut,
    NoDelete,
}

impl Filter {
    fn drops(self, event: &Event) -> bool {
        match self {
            Filter::NoPut => event.value.is_some(),
            Filter::NoDelete => event.value.is_none(),
        }
    }
}

/// Every event in arrival order.
pub fn events(responses: &[Response]) -> impl Iterator<Item = &Event> {
    responses.iter().flat_map(|response| &response.events)
}

/// A compaction the run asked for: its revision and when it was sent (ns
/// since the run started).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionSent {
    pub revision: i64,
    pub sent_ns: u64,
}

/// Whether the previous key-value of an event at `revision`, received at
/// `received_ns`, may be missing: etcd reads it at `revision - 1` and
/// leaves it out once that is compacted, which takes a compaction at
/// `revision` or later, sent before the event arrived.
pub fn prev_kv_may_be_compacted(
    compactions: &[CompactionSent],
    revision: i64,
    received_ns: u64,
) -> bool {
    (compactions.iter())
        .any(|compaction| compaction.revision >= revision && compaction.sent_ns < received_ns)
}

/// created: each stream's first response is its created notification, and
/// created notifications carry no events.
pub fn check_created(responses: &[Response]) -> Result<(), String> {
    let mut opened = BTreeSet::new();
    for response in responses {
        let first = opened.insert(response.stream);
        if first && !response.created {
            return Err(format!(
                "watch created: stream {} began with a response that is not its created notification",
                response.stream
            ));
        }
        if !first && response.created {
            return Err(format!(
                "watch created: stream {} got a second created notification",
                response.stream
            ));
        }
        if response.created && !response.events.is_empty() {
            return Err(format!(
                "watch created: stream {}'s created notification carried events",
                response.stream
            ));
        }
    }
    Ok(())
}

/// ordered and unique.
pub fn check_order(responses: &[Response]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    let mut last = i64::MIN;
    for event in events(responses) {
        if event.revision < last {
            return Err(format!(
                "watch ordered: an event at revision {} came after one at {last}",
                event.revision
            ));
        }
        last = event.revision;
        if !seen.insert((event.key.as_str(), event.revision)) {
            return Err(format!(
                "watch unique: {} at revision {} was delivered twice",
                event.key, event.revision
            ));
        }
    }
    Ok(())
}

/// atomic: the events of one revision all come in one response.
pub fn check_atomic(responses: &[Response]) -> Result<(), String> {
    let mut carried_by: BTreeMap<i64, usize> = BTreeMap::new();
    for (index, response) in responses.iter().enumerate() {
        for event in &response.events {
            match carried_by.insert(event.revision, index) {
                Some(other) if other != index => {
                    return Err(format!(
                        "watch atomic: the events of revision {} came in two responses (streams {} and {})",
                        event.revision, responses[other].stream, response.stream
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// bookmarkable: after a progress notification at R no event at or below
/// R arrives, and no response carries an event above its header revision.
pub fn check_bookmarks(responses: &[Response]) -> Result<(), String> {
    let mut promised = i64::MIN;
    for response in responses {
        for event in &response.events {
            if event.revision <= promised {
                return Err(format!(
                    "watch bookmarkable: an event at revision {} came after a progress notification at {promised}",
                    event.revision
                ));
            }
            if event.revision > response.header_revision {
                return Err(format!(
                    "watch bookmarkable: an event at revision {} came in a response whose header says {}",
                    event.revision, response.header_revision
                ));
            }
        }
        if response.is_progress() {
            promised = promised.max(response.header_revision);
        }
    }
    Ok(())
}

/// prev_kv, versions and create revisions, replaying the events of a
/// watch that started at revision 1 and was never cut off by compaction.
/// A missing previous key-value is allowed only where a compaction may
/// have removed it (`prev_kv_may_be_compacted`), a wrong one never is.
pub fn check_prev_kv(responses: &[Response], compactions: &[CompactionSent]) -> Result<(), String> {
    let mut keys: BTreeMap<&str, Previous> = BTreeMap::new();
    let arrived = (responses.iter()).flat_map(|response| {
        response
            .events
            .iter()
            .map(|event| (event, response.received_ns))
    });
    for (event, received_ns) in arrived {
        let before = keys.get(event.key.as_str());
        match (&event.prev, before) {
            (Some(got), Some(expected)) if got != expected => {
                return Err(format!(
                    "watch prev_kv: {} at revision {} came with previous {got:?}, but before it the key was {expected:?}",
                    event.key, event.revision
                ));
            }
            (Some(got), None) => {
                return Err(format!(
                    "watch prev_kv: {} at revision {} came with previous {got:?}, but the key did not exist before it",
                    event.key, event.revision
                ));
            }
            (None, Some(expected))
                if !prev_kv_may_be_compacted(compactions, event.revision, received_ns) =>
            {
                return Err(format!(
                    "watch prev_kv: {} at revision {} came without its previous {expected:?}",
                    event.key, event.revision
                ));
            }
            _ => {}
        }
        match &event.value {
            Some(value) => {
                let (create_revision, version) = before.map_or((event.revision, 1), |before| {
                    (before.create_revision, before.version + 1)
                });
                if (event.create_revision, event.version) != (create_revision, version) {
                    return Err(format!(
                        "watch prev_kv: {} at revision {} has create revision {} and version {}, but the events before give {create_revision} and {version}",
                        event.key, event.revision, event.create_revision, event.version
                    ));
                }
                keys.insert(
                    &event.key,
                    Previous {
                        value: value.clone(),
                        mod_revision: event.revision,
                        create_revision,
                        version,
                        lease: event.lease,
                    },
                );
            }
            None => {
                keys.remove(event.key.as_str());
            }
        }
    }
    Ok(())
}

/// filters: the filtered watch never got the type it filters, and, up to
/// `up_to` (a revision both watches had received everything below), got
/// exactly the other events the unfiltered watch got.
pub fn check_filtered(
    filtered: &[Response],
    filter: Filter,
    unfiltered: &[Response],
    up_to: i64,
) -> Result<(), String> {
    if let Some(event) = events(filtered).find(|event| filter.drops(event)) {
        return Err(format!(
            "watch filters: a {filter:?} watch got {} at revision {} ({})",
            event.key,
            event.revision,
            if event.value.is_some() {
                "a put"
            } else {
                "a delete"
            }
        ));
    }
    let key = |event: &Event| (event.revision, event.key.clone(), event.value.clone());
    let got: BTreeSet<_> = events(filtered)
        .filter(|event| event.revision <= up_to)
        .map(key)
        .collect();
    let expected: BTreeSet<_> = events(unfiltered)
        .filter(|event| event.revision <= up_to && !filter.drops(event))
        .map(key)
        .collect();
    if let Some(missing) = expected.difference(&got).next() {
        return Err(format!(
            "watch filters: a {filter:?} watch never got {} at revision {}, which it does not filter",
            missing.1, missing.0
        ));
    }
    Ok(())
}

/// reliable: replaying the events up to `revision` gives each watched
/// key's value and mod revision as one member holds them at `revision`
/// (`view`; a key absent there is absent from the replay too).
pub fn check_replay(
    responses: &[Response],
    view: &BTreeMap<String, (String, i64)>,
    revision: i64,
    watched: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let mut replayed: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for event in events(responses).filter(|event| event.revision <= revision) {
        match &event.value {
            Some(value) => replayed.insert(event.key.clone(), (value.clone(), event.revision)),
            None => replayed.remove(&event.key),
        };
    }
    let keys: BTreeSet<&String> = view.keys().chain(replayed.keys()).collect();
    for key in keys.into_iter().filter(|key| watched(key)) {
        let from_events = replayed.get(key).cloned().unwrap_or_default();
        let held = view.get(key).cloned().unwrap_or_default();
        if from_events != held {
            return Err(format!(
                "watch reliable: the events up to revision {revision} give {key} = {from_events:?} but the members hold {held:?}"
            ));
        }
    }
    Ok(())
}

/// reliable, against the clients: the unique token every acknowledged
/// write wrote (values are `;`-terminated tokens, appends concatenate
/// them) shows up in some event of each watched key it wrote.
pub fn check_acknowledged<'a>(
    responses: &[Response],
    acknowledged: impl Iterator<Item = (&'a str, &'a str)>,
    watched: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for event in events(responses) {
        for token in event
            .value
            .iter()
            .flat_map(|value| value.split_inclusive(';'))
        {
            seen.insert((&event.key, token));
        }
    }
    for (key, written) in acknowledged {
        if watched(key) && !seen.contains(&(key, written)) {
            return Err(format!(
                "watch reliable: the acknowledged write of {written:?} to {key} never showed up in an event"
            ));
        }
    }
    Ok(())
}

/// (key, value) of every acknowledged write of the kv workloads whose
/// value is its own (puts, appends, cas that swapped): each must show up
/// in a watch event (`check_acknowledged`).
pub fn acknowledged_kv_writes(
    operations: &[Operation<KvInput, KvOutput>],
) -> Vec<(String, String)> {
    operations
        .iter()
        .filter(|operation| {
            matches!(&operation.outcome, Outcome::Ok(output) if !matches!(output, KvOutput::Cas { swapped: false }))
        })
        .flat_map(|operation| {
            let written = operation.input.written();
            operation
                .input
                .keys()
                .into_iter()
                .filter_map(move |key| written.map(|value| (key.to_string(), value.to_string())))
        })
        .collect()
}

/// (key, value) of every acknowledged plain put of the etcd workload (not
/// `ignore_value`, not refused), as `acknowledged_kv_writes`.
pub fn acknowledged_etcd_puts(
    operations: &[Operation<EtcdInput, EtcdOutput>],
) -> Vec<(String, String)> {
    operations
        .iter()
        .filter_map(|operation| match (&operation.input, &operation.outcome) {
            (
                EtcdInput::Put {
                    key,
                    value,
                    ignore_value: false,
                    ..
                },
                Outcome::Ok(EtcdOutput::Put { .. }),
            ) => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
