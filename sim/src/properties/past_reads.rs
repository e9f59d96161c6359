//! Reads at a past revision and serializable reads, over what the etcd
//! workload (`etcd_workload`) recorded. The linearizability check
//! cannot judge them: they answer from the store as it was at a revision,
//! not as it is. But revisions name states: every acknowledged write
//! reports the revision it made, so replaying the writes in revision
//! order rebuilds the store at every revision up to the first one no
//! acknowledged write accounts for (an unanswered write's, say), and
//! again from the next full read of the store (a linearizable range over
//! every key written, answered whole) past it. Then:
//!
//! - a read at revision R that succeeded lists what the store held at R
//!   (with its limit, sort, count-only and keys-only), and its header
//!   revision is at least R;
//! - a serializable read (no revision asked) lists what the store held at
//!   the header revision it reports: a member may lag, never lie;
//! - a linearizable read reports at least every revision acknowledged
//!   before it began, and at a past revision it fails with "required
//!   revision has been compacted" once a compaction past R was
//!   acknowledged before it began;
//! - a read refused as compacted had a compaction past R sent before it
//!   ended, and a linearizable read is never refused as a future revision
//!   for a revision acknowledged before it began.
//!
//! The replay also judges a watch over the workload's keys
//! ([`check_watch_events`]): at each revision it covers, the events are
//! exactly the changes that revision made.
//!
//! Plain Rust and no search: the replay is linear in the history.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Operation, Outcome};
use crate::model::etcd::{
    key_interval, Etcd, EtcdInput, EtcdOutput, EtcdState, KeyValue, RangeOptions, StoredValue,
    TxnOp,
};
use crate::model::{Model, Transition};
use crate::properties::watch::{self, CompactionSent, Event, Response};

/// One read with a revision or a serializable one, as recorded.
#[derive(Clone, Debug)]
pub struct RevisionRead {
    pub client: u64,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub key: String,
    pub range_end: Option<String>,
    pub options: RangeOptions,
    /// The revision asked for; 0: the member's current one.
    pub revision: i64,
    pub serializable: bool,
    pub outcome: ReadOutcome,
}

#[derive(Clone, Debug)]
pub enum ReadOutcome {
    Ok {
        header_revision: i64,
        kvs: Vec<KeyValue>,
        count: i64,
        more: bool,
    },
    /// "mvcc: required revision has been compacted".
    Compacted,
    /// "mvcc: required revision is a future revision".
    FutureRevision,
    /// Any other error: no answer to judge.
    Failed,
}

/// One compaction the workload asked for.
#[derive(Clone, Copy, Debug)]
pub struct Compaction {
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub revision: i64,
    pub outcome: CompactionOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionOutcome {
    /// Answered, with the answer's header revision.
    Acknowledged { header_revision: i64 },
    /// Refused as compacted already at or past its revision: not applied.
    RefusedCompacted,
    /// Refused as a future revision: not applied.
    RefusedFuture,
    /// Refused for another reason: not applied.
    Refused,
    /// No answer: it may have applied.
    Unknown,
}

impl CompactionOutcome {
    pub fn may_have_applied(self) -> bool {
        matches!(
            self,
            CompactionOutcome::Acknowledged { .. } | CompactionOutcome::Unknown
        )
    }
}

/// The store at each revision, as the acknowledged writes rebuild it:
/// stretches of consecutive revisions. The first starts at the model's
/// initial state; each later one at a full read, a linearizable range
/// with plain options over every key the history writes, whose answer is
/// the whole store at its header revision.
pub struct Replay {
    /// (first revision, the store at it and at each revision after it).
    stretches: Vec<(i64, Vec<EtcdState>)>,
}

impl Replay {
    /// Replays `writes` (the etcd workload's history) from the model's
    /// initial state until a revision no acknowledged write accounts for,
    /// or two of them would make it differently; then again from the
    /// first full read past that revision, and so on.
    ///
    /// Grants move no revision, so the replay cannot place them: every
    /// lease the history grants counts as live throughout. That decides
    /// nothing about keys: a put acknowledged at a revision did find its
    /// lease, and a revoke deletes the keys attached to it as it did.
    ///
    /// A revoke's answer does not say whether it deleted anything: one
    /// that deleted nothing reports the revision another write made, and
    /// replayed just before that write it could delete a key the write
    /// detached. So a revoke may make its revision only if no unanswered
    /// write was sent before it completed (which could have made it).
    pub fn of(model: &Etcd, history: &[Operation<EtcdInput, EtcdOutput>]) -> Replay {
        let mut by_revision: BTreeMap<i64, Vec<(&EtcdInput, &EtcdOutput)>> = BTreeMap::new();
        let mut granted = BTreeSet::new();
        let unanswered_sent: Vec<u64> = (history.iter())
            .filter(|operation| {
                matches!(operation.outcome, Outcome::Indeterminate)
                    && !model.is_read_only(&operation.input)
            })
            .map(|operation| operation.invoke_ns)
            .collect();
        let ambiguous_revoke = |operation: &Operation<EtcdInput, EtcdOutput>| {
            matches!(operation.input, EtcdInput::LeaseRevoke { .. })
                && operation
                    .complete_ns
                    .is_none_or(|completed| unanswered_sent.iter().any(|&sent| sent < completed))
        };
        for operation in history {
            if let EtcdInput::LeaseGrant { id } = operation.input {
                granted.insert(id);
            }
            if ambiguous_revoke(operation) {
                continue;
            }
            if let Outcome::Ok(output) = &operation.outcome {
                match output.header_revision() {
                    Some(revision) if !model.is_read_only(&operation.input) => by_revision
                        .entry(revision)
                        .or_default()
                        .push((&operation.input, output)),
                    _ => {}
                }
            }
        }
        let mut full_reads = full_reads(history);
        let mut initial = model.initial_state();
        initial.leases = granted.clone();
        let mut replay = Replay {
            stretches: vec![(initial.revision, vec![initial])],
        };
        loop {
            let (_, states) = replay.stretches.last_mut().expect("a stretch");
            loop {
                let state = states.last().expect("a stretch's first state");
                let next_revision = state.revision + 1;
                let mut made = None;
                for (input, output) in by_revision.get(&next_revision).into_iter().flatten() {
                    if let Some(Transition::Changed(mut next)) =
                        model.step(state, input, Some(output))
                    {
                        next.leases = granted.clone();
                        match &made {
                            None => made = Some(next),
                            Some(other) if *other == next => {}
                            // Two writes could each have made it: unknown.
                            Some(_) => {
                                made = None;
                                break;
                            }
                        }
                    }
                }
                match made {
                    Some(next) => states.push(next),
                    None => break,
                }
            }
            let reached = replay.last();
            full_reads = full_reads.split_off(&(reached + 1));
            let Some((revision, mut state)) = full_reads
                .iter()
                .find_map(|(revision, state)| Some((*revision, state.clone()?)))
            else {
                return replay;
            };
            state.leases = granted.clone();
            replay.stretches.push((revision, vec![state]));
        }
    }

    /// The store at `revision`, if the replay rebuilt it.
    pub fn at(&self, revision: i64) -> Option<&EtcdState> {
        let stretch = self
            .stretches
            .partition_point(|(first, _)| *first <= revision)
            .checked_sub(1)?;
        let (first, states) = &self.stretches[stretch];
        states.get(usize::try_from(revision - first).ok()?)
    }

    /// The newest revision the replay rebuilt.
    pub fn last(&self) -> i64 {
        let (first, states) = self.stretches.last().expect("a stretch");
        first + states.len() as i64 - 1
    }

    /// The stretches of revisions rebuilt, first and last of each.
    pub fn stretches(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        (self.stretches.iter()).map(|(first, states)| (*first, first + states.len() as i64 - 1))
    }
}

/// The store each full read saw, by header revision: linearizable ranges
/// with plain options (every key, value and field) over every key any
/// write of `history` names, answered whole. `None` where two such reads
/// at one revision disagree (the model judges which, if either, lied).
fn full_reads(history: &[Operation<EtcdInput, EtcdOutput>]) -> BTreeMap<i64, Option<EtcdState>> {
    let mut written = BTreeSet::new();
    for operation in history {
        written_keys(&operation.input, &mut written);
    }
    let mut reads: BTreeMap<i64, Option<EtcdState>> = BTreeMap::new();
    for operation in history {
        let (
            EtcdInput::Range {
                key,
                range_end,
                options,
            },
            Outcome::Ok(EtcdOutput::Range {
                header_revision,
                kvs,
                more,
                ..
            }),
        ) = (&operation.input, &operation.outcome)
        else {
            continue;
        };
        let whole = options.is_plain()
            && *more != Some(true)
            && key_interval(key, range_end.as_deref()).is_some_and(|interval| {
                written
                    .iter()
                    .all(|written| std::ops::RangeBounds::<&str>::contains(&interval, written))
            });
        if !whole {
            continue;
        }
        let keys = kvs
            .iter()
            .map(|kv| {
                let stored = StoredValue {
                    value: kv.value.clone(),
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                    lease: kv.lease,
                };
                (kv.key.clone(), stored)
            })
            .collect();
        let state = EtcdState {
            revision: *header_revision,
            keys,
            leases: BTreeSet::new(),
        };
        reads
            .entry(*header_revision)
            .and_modify(|seen| {
                if seen.as_ref() != Some(&state) {
                    *seen = None;
                }
            })
            .or_insert_with(|| Some(state.clone()));
    }
    reads
}

/// Every key `input` may write (a range delete's keys were written first).
fn written_keys<'h>(input: &'h EtcdInput, keys: &mut BTreeSet<&'h str>) {
    fn in_ops<'h>(ops: &'h [TxnOp], keys: &mut BTreeSet<&'h str>) {
        for op in ops {
            match op {
                TxnOp::Put { key, .. } => {
                    keys.insert(key);
                }
                TxnOp::Txn {
                    success, failure, ..
                } => {
                    in_ops(success, keys);
                    in_ops(failure, keys);
                }
                TxnOp::Range { .. } | TxnOp::Delete { .. } => {}
            }
        }
    }
    match input {
        EtcdInput::Put { key, .. } => {
            keys.insert(key);
        }
        EtcdInput::Txn {
            success, failure, ..
        } => {
            in_ops(success, keys);
            in_ops(failure, keys);
        }
        _ => {}
    }
}

/// A watch over the keys `watched` selects, with previous key-values,
/// against the replayed store: at each revision from `from` on that both
/// the replay and the watch (every event up to `caught_up_to` received)
/// cover, its events are exactly the changes the revision made to those
/// keys: a put event for each key written (value, create revision,
/// version, lease), a delete event for each key deleted (a revoke's too;
/// etcd's tombstone: no create revision, version or lease), and an
/// event's previous key-value is the key as it was just before; it may
/// be missing only where one of `compactions` may have removed it
/// (`watch::prev_kv_may_be_compacted`).
pub fn check_watch_events(
    replay: &Replay,
    responses: &[Response],
    (from, caught_up_to): (i64, i64),
    watched: impl Fn(&str) -> bool,
    compactions: &[CompactionSent],
) -> Result<(), String> {
    let mut by_revision: BTreeMap<i64, Vec<(&Event, u64)>> = BTreeMap::new();
    for response in responses {
        for event in &response.events {
            (by_revision.entry(event.revision).or_default()).push((event, response.received_ns));
        }
    }
    for revision in from.max(1)..=caught_up_to.min(replay.last()) {
        // A revision the replay skipped, or the first of a stretch whose
        // revision before is unknown.
        let (Some(before), Some(after)) = (replay.at(revision - 1), replay.at(revision)) else {
            continue;
        };
        let mut expected: BTreeMap<&str, Option<&StoredValue>> = BTreeMap::new();
        for (key, stored) in after.keys.iter().filter(|(key, _)| watched(key)) {
            if stored.mod_revision == revision {
                expected.insert(key, Some(stored));
            }
        }
        for key in before.keys.keys().filter(|key| watched(key)) {
            if !after.keys.contains_key(key) {
                expected.insert(key, None);
            }
        }
        let got = by_revision.get(&revision).map_or(&[][..], Vec::as_slice);
        let mismatch = |why: String| {
            Err(format!(
                "watch reliable: at revision {revision} {why} (the store's changes there: {})",
                describe_changes(&expected)
            ))
        };
        if got.len() != expected.len() {
            return mismatch(format!("the watch got {} events", got.len()));
        }
        for &(event, received_ns) in got {
            let Some(change) = expected.get(event.key.as_str()) else {
                return mismatch(format!("{} changed in the watch only", event.key));
            };
            let fits = match change {
                Some(stored) => {
                    event.value.as_deref() == Some(stored.value.as_str())
                        && event.create_revision == stored.create_revision
                        && event.version == stored.version
                        && event.lease == stored.lease
                }
                // etcd's tombstone: the key and its revision, nothing else.
                None => {
                    event.value.is_none()
                        && (event.create_revision, event.version, event.lease) == (0, 0, 0)
                }
            };
            if !fits {
                return mismatch(format!("the event on {} is {event:?}", event.key));
            }
            let held = before.keys.get(event.key.as_str());
            let prev_fits = match (&event.prev, held) {
                (None, None) => true,
                (None, Some(_)) => {
                    watch::prev_kv_may_be_compacted(compactions, revision, received_ns)
                }
                (Some(prev), Some(held)) => {
                    prev.value == held.value
                        && prev.mod_revision == held.mod_revision
                        && prev.create_revision == held.create_revision
                        && prev.version == held.version
                        && prev.lease == held.lease
                }
                (Some(_), None) => false,
            };
            if !prev_fits {
                return mismatch(format!(
                    "the event on {} came with previous key-value {:?}, the key was {held:?}",
                    event.key, event.prev
                ));
            }
        }
    }
    Ok(())
}

fn describe_changes(changes: &BTreeMap<&str, Option<&StoredValue>>) -> String {
    let described: Vec<String> = changes
        .iter()
        .map(|(key, change)| match change {
            Some(stored) => format!("put {key}={:?}", stored.value),
            None => format!("delete {key}"),
        })
        .collect();
    if described.is_empty() {
        "none".into()
    } else {
        described.join(", ")
    }
}

/// Every violation found; empty when the reads fit.
pub fn check(
    model: &Etcd,
    history: &[Operation<EtcdInput, EtcdOutput>],
    reads: &[RevisionRead],
    compactions: &[Compaction],
) -> Vec<String> {
    let replay = Replay::of(model, history);
    // The highest revision acknowledged by each instant: linearizable
    // operations that completed, as (completion, revision), prefix maxima.
    let mut acknowledged: Vec<(u64, i64)> = history
        .iter()
        .filter_map(
            |operation| match (&operation.outcome, operation.complete_ns) {
                (Outcome::Ok(output), Some(complete)) => {
                    Some((complete, output.header_revision()?))
                }
                _ => None,
            },
        )
        .chain(reads.iter().filter_map(|read| match &read.outcome {
            ReadOutcome::Ok {
                header_revision, ..
            } if !read.serializable => Some((read.complete_ns, *header_revision)),
            _ => None,
        }))
        .collect();
    acknowledged.sort_unstable();
    let mut highest = i64::MIN;
    for entry in &mut acknowledged {
        highest = highest.max(entry.1);
        entry.1 = highest;
    }
    let acknowledged_before = |instant: u64| {
        let at = acknowledged.partition_point(|(complete, _)| *complete < instant);
        at.checked_sub(1).map_or(0, |at| acknowledged[at].1)
    };

    let mut violations = Vec::new();
    for read in reads {
        let what = || describe(read);
        match &read.outcome {
            ReadOutcome::Ok {
                header_revision,
                kvs,
                count,
                more,
            } => {
                let at = if read.revision > 0 {
                    read.revision
                } else {
                    *header_revision
                };
                if *header_revision < at {
                    violations.push(format!(
                        "{}: answered with header revision {header_revision}, below the revision it read",
                        what()
                    ));
                }
                if !read.serializable {
                    let floor = acknowledged_before(read.invoke_ns);
                    if *header_revision < floor {
                        violations.push(format!(
                            "{}: a linearizable read answered at revision {header_revision}, \
                             after revision {floor} was acknowledged",
                            what()
                        ));
                    }
                    if read.revision > 0 {
                        if let Some(compaction) = compactions.iter().find(|compaction| {
                            matches!(compaction.outcome, CompactionOutcome::Acknowledged { .. })
                                && compaction.revision > read.revision
                                && compaction.complete_ns < read.invoke_ns
                        }) {
                            violations.push(format!(
                                "{}: answered though a compaction at {} was acknowledged before it began",
                                what(),
                                compaction.revision
                            ));
                        }
                    }
                }
                if let Some(state) = replay.at(at) {
                    let answers = state.answers_range(
                        &read.key,
                        read.range_end.as_deref(),
                        &read.options,
                        kvs,
                        Some(*count),
                        Some(*more),
                    );
                    if !answers {
                        violations.push(format!(
                            "{}: answered {} (count {count}, more {more}), \
                             but at revision {at} the store held {}",
                            what(),
                            list(kvs),
                            list(&state.range_of(&read.key, read.range_end.as_deref()))
                        ));
                    }
                }
            }
            ReadOutcome::Compacted => {
                let explained = compactions.iter().any(|compaction| {
                    compaction.outcome.may_have_applied()
                        && compaction.revision > read.revision
                        && compaction.invoke_ns < read.complete_ns
                });
                if read.revision == 0 || !explained {
                    violations.push(format!(
                        "{}: refused as compacted, but no compaction past it had been sent",
                        what()
                    ));
                }
            }
            ReadOutcome::FutureRevision => {
                let floor = acknowledged_before(read.invoke_ns);
                if !read.serializable && read.revision <= floor {
                    violations.push(format!(
                        "{}: refused as a future revision after revision {floor} was acknowledged",
                        what()
                    ));
                }
            }
            ReadOutcome::Failed => {}
        }
    }
    violations.extend(check_compactions(compactions, acknowledged_before));
    violations
}

/// etcd's answers to compactions: one at revision R applies when R is
/// past the compact revision and at most the current revision, and its
/// answer's header is at the current revision. So an acknowledged one
/// answers at R or later, and at every revision acknowledged before it
/// was sent, unless a compaction at R or past it had been acknowledged
/// before; a refusal as compacted needs another compaction at R or past
/// it that may have applied, sent before the answer; a refusal as a future
/// revision needs R past every revision acknowledged before it was sent.
fn check_compactions(
    compactions: &[Compaction],
    acknowledged_before: impl Fn(u64) -> i64,
) -> Vec<String> {
    let mut violations = Vec::new();
    for (index, compaction) in compactions.iter().enumerate() {
        let revision = compaction.revision;
        let what = || format!("a compaction at revision {revision}");
        let floor = acknowledged_before(compaction.invoke_ns);
        let others = || {
            (compactions.iter().enumerate())
                .filter(move |&(other, _)| other != index)
                .map(|(_, other)| other)
        };
        match compaction.outcome {
            CompactionOutcome::Acknowledged { header_revision } => {
                if header_revision < revision.max(floor) {
                    violations.push(format!(
                        "{}: acknowledged at header revision {header_revision}, below its \
                         revision or revision {floor}, acknowledged before it was sent",
                        what()
                    ));
                }
                let covered = others().find(|other| {
                    matches!(other.outcome, CompactionOutcome::Acknowledged { .. })
                        && other.revision >= revision
                        && other.complete_ns < compaction.invoke_ns
                });
                if let Some(covered) = covered {
                    violations.push(format!(
                        "{}: acknowledged, though a compaction at {} had been acknowledged \
                         before it was sent (etcd refuses it as compacted)",
                        what(),
                        covered.revision
                    ));
                }
            }
            CompactionOutcome::RefusedCompacted => {
                let explained = others().any(|other| {
                    other.outcome.may_have_applied()
                        && other.revision >= revision
                        && other.invoke_ns < compaction.complete_ns
                });
                if !explained {
                    violations.push(format!(
                        "{}: refused as compacted, but no compaction at it or past it had \
                         been sent",
                        what()
                    ));
                }
            }
            CompactionOutcome::RefusedFuture if revision <= floor => {
                violations.push(format!(
                    "{}: refused as a future revision after revision {floor} was acknowledged",
                    what()
                ));
            }
            CompactionOutcome::RefusedFuture
            | CompactionOutcome::Refused
            | CompactionOutcome::Unknown => {}
        }
    }
    violations
}

fn describe(read: &RevisionRead) -> String {
    let end = read
        .range_end
        .as_deref()
        .map_or(String::new(), |end| format!("..{end:?}"));
    format!(
        "client {}'s {} range {:?}{end}{} at revision {} ({} ns..{} ns)",
        read.client,
        if read.serializable {
            "serializable"
        } else {
            "linearizable"
        },
        read.key,
        if read.options.is_plain() {
            String::new()
        } else {
            format!(" {}", read.options)
        },
        read.revision,
        read.invoke_ns,
        read.complete_ns
    )
}

fn list(kvs: &[KeyValue]) -> String {
    let shown: Vec<String> = kvs.iter().map(ToString::to_string).collect();
    format!("[{}]", shown.join(", "))
}

#[cfg(test)]
mod tests;
