//! The lease properties, checked over what the lease workload
//! (`lease_workload`) recorded. Each lease client grants short
//! leases one after another, attaches two or three keys of its own to
//! each, and then keeps the lease alive for a while, lets it lapse, or
//! revokes it, reading its keys and asking its TTL all along. Everything
//! it sees is recorded with virtual time; `check` then holds the record
//! to what detcd promises (ARCHITECTURE.md, "Leases"):
//!
//! - a lease never ends before its TTL has run from the sending of its
//!   grant or of a keepalive that was answered, unless revoked;
//! - its keys go all at once: no read sees some of them without the
//!   others, and none is seen again once the lease is gone;
//! - a grant answers the TTL asked for, and a keepalive the lease's TTL
//!   (etcd's `LeaseKeepAliveResponse.TTL` is the granted TTL, not what
//!   is left);
//! - TimeToLive with keys (linearizable in detcd, through a read index)
//!   reports the granted TTL and lists every key whose put with the lease
//!   was acknowledged before it was asked, and no key but the lease's;
//!   a lease gone lists none;
//! - LeaseLeases (linearizable in detcd too) lists every lease seen alive
//!   both before it was asked and after it answered (a lease never comes
//!   back), and none seen gone before it was asked;
//! - a TTL never grows without a keepalive: the remaining TTL a member
//!   reports never reaches past the latest keepalive that could have
//!   taken effect (or the latest return of a crashed member, which
//!   resumes leases from checkpoints), plus the TTL, plus
//!   `EXTENSION_ALLOWED`.
//!
//! A violation that a skewed clock could explain (the nemesis's skews
//! step clocks by seconds and drift them by up to 10%, past the bound the
//! guarantee assumes) is reported apart, as "explained by clock skew",
//! and does not fail the run.

use std::time::Duration;

use super::Faults;

/// What a member's reported TTL may exceed the truth by: a checkpoint
/// interval (a lagging member resumes from the latest checkpoint) and a
/// second for the rounding and the round trips.
pub const EXTENSION_ALLOWED: Duration = Duration::from_secs(2);

/// A call's invocation and completion, as time since the run started.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub invoked: Duration,
    pub completed: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeepAlive {
    /// Answered with this TTL; 0 means the lease was gone.
    Answered(i64),
    /// No answer: it may have taken effect, at any time until the lease's
    /// next observation.
    Unknown,
}

/// One look at a lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Look {
    /// Which of the lease's keys (those attached when the read started)
    /// one linearizable read found.
    Keys(Vec<bool>),
    /// The TTL a member reported; -1: the lease is gone.
    Ttl(i64),
}

/// What TimeToLive with keys answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    /// -1: the lease is gone.
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<String>,
}

/// Everything one client did with one lease.
#[derive(Clone, Debug)]
pub struct LeaseRecord {
    pub client: u64,
    pub id: i64,
    /// The TTL asked for, in seconds: above the shortest TTL a member
    /// grants (1.5 election timeouts), so granted exactly.
    pub requested_ttl: i64,
    /// The TTL granted.
    pub ttl: Duration,
    pub grant: Span,
    /// Keys whose put with the lease succeeded, and when.
    pub keys: Vec<(String, Duration)>,
    /// Keys whose put with the lease failed: attached or not.
    pub unacknowledged_keys: Vec<String>,
    pub keep_alives: Vec<(Span, KeepAlive)>,
    /// When the client first asked to revoke it (any outcome).
    pub revoked: Option<Duration>,
    pub looks: Vec<(Span, Look)>,
    /// TimeToLive answers with keys (each also a `Look::Ttl`).
    pub listings: Vec<(Span, Listing)>,
    /// LeaseLeases answers the client got meanwhile: every lease's id.
    pub lease_lists: Vec<(Span, Vec<i64>)>,
}

impl LeaseRecord {
    /// Seen to exist by a linearizable call within `when`: its grant, a
    /// TTL answer, a read finding all its keys.
    fn seen_alive(&self, when: impl Fn(&Span) -> bool) -> bool {
        when(&self.grant)
            || self.looks.iter().any(|(span, look)| {
                when(span)
                    && match look {
                        Look::Ttl(ttl) => *ttl >= 0,
                        Look::Keys(present) => !present.is_empty() && present.iter().all(|p| *p),
                    }
            })
    }

    /// Seen gone by a linearizable look within `when`.
    fn seen_gone(&self, when: impl Fn(&Span) -> bool) -> bool {
        self.looks.iter().any(|(span, look)| {
            when(span)
                && match look {
                    Look::Ttl(ttl) => *ttl < 0,
                    Look::Keys(present) => !present.is_empty() && present.iter().all(|p| !p),
                }
        })
    }
}

/// LeaseLeases against every record: a lease seen alive before a list was
/// asked and after it answered was there throughout, so it is listed; one
/// seen gone before is not.
fn check_lease_lists(records: &[LeaseRecord]) -> Vec<String> {
    let mut violations = Vec::new();
    let lists = records.iter().flat_map(|record| &record.lease_lists);
    for (asked, listed) in lists {
        for record in records {
            let is_listed = listed.contains(&record.id);
            let before = |span: &Span| span.completed < asked.invoked;
            let after = |span: &Span| span.invoked > asked.completed;
            let when = format!(
                "LeaseLeases between {:.3}s and {:.3}s",
                asked.invoked.as_secs_f64(),
                asked.completed.as_secs_f64()
            );
            if !is_listed && record.seen_alive(before) && record.seen_alive(after) {
                violations.push(format!(
                    "{when} left out lease {:x}, seen alive before and after it",
                    record.id
                ));
            }
            if is_listed && record.seen_gone(before) {
                violations.push(format!(
                    "{when} listed lease {:x}, seen gone before it",
                    record.id
                ));
            }
        }
    }
    violations
}

/// What `check` found.
#[derive(Debug, Default)]
pub struct LeaseVerdict {
    pub violations: Vec<String>,
    /// Violations a skewed clock could explain.
    pub clock_explained: Vec<String>,
    /// `judge` only: the checker's budget ran out on the keys-and-leases
    /// history (no verdict on linearizability).
    pub budget_ran_out: bool,
}

/// Holds the records to the lease guarantees (see the module docs).
pub fn check(records: &[LeaseRecord], faults: &Faults) -> LeaseVerdict {
    let mut verdict = LeaseVerdict {
        violations: check_lease_lists(records),
        ..LeaseVerdict::default()
    };
    let at = |time: Duration| format!("{:.3}s", time.as_secs_f64());
    for record in records {
        let name = format!("lease {:x} of client {}", record.id, record.client);
        let granted = record.ttl.as_secs() as i64;
        if granted != record.requested_ttl {
            verdict.violations.push(format!(
                "{name}: granted a TTL of {granted}s when {}s was asked for",
                record.requested_ttl
            ));
        }
        for (span, listing) in &record.listings {
            if let Err(why) = listing_fits(record, span, listing) {
                verdict
                    .violations
                    .push(format!("{name}: TimeToLive at {}: {why}", at(span.invoked)));
            }
        }
        for (span, answer) in &record.keep_alives {
            if let KeepAlive::Answered(ttl) = answer {
                if *ttl > 0 && *ttl != granted {
                    verdict.violations.push(format!(
                        "{name}: a keepalive at {} answered a TTL of {ttl}s; the lease's TTL \
                         is {granted}s",
                        at(span.invoked)
                    ));
                }
            }
        }
        let mut report = |when: Duration, what: String| {
            if faults.skewed_before(when) {
                verdict.clock_explained.push(format!("{name}: {what}"));
            } else {
                verdict.violations.push(format!("{name}: {what}"));
            }
        };
        // The first sign the lease is gone, and when it completed.
        let gone_looks = record.looks.iter().filter_map(|(span, look)| match look {
            Look::Ttl(ttl) if *ttl < 0 => Some(span.completed),
            Look::Keys(present) if present.iter().any(|p| !p) => Some(span.completed),
            _ => None,
        });
        let gone_keep_alives = record
            .keep_alives
            .iter()
            .filter(|(_, answer)| *answer == KeepAlive::Answered(0))
            .map(|(span, _)| span.completed);
        let gone = gone_looks.chain(gone_keep_alives).min();
        if let Some(gone) = gone {
            let revoked_before = record.revoked.is_some_and(|revoked| revoked < gone);
            // Promised: the TTL from the sending of the grant or of any
            // keepalive answered before the lease was seen gone.
            let promised = record
                .keep_alives
                .iter()
                .filter(|(span, answer)| {
                    span.completed <= gone && matches!(answer, KeepAlive::Answered(ttl) if *ttl > 0)
                })
                .map(|(span, _)| span.invoked + record.ttl)
                .chain([record.grant.invoked + record.ttl])
                .max()
                .expect("the grant");
            if !revoked_before && gone < promised {
                report(
                    gone,
                    format!(
                        "seen gone at {} but promised until {}: it expired early",
                        at(gone),
                        at(promised)
                    ),
                );
            }
        }
        // Keys go together, and never come back.
        let mut seen_gone: Option<Duration> = None;
        for (span, look) in &record.looks {
            if let (Some(since), Look::Keys(present)) = (seen_gone, look) {
                if span.invoked > since && present.iter().any(|p| *p) {
                    report(
                        span.invoked,
                        format!(
                            "a key was still there at {} though the lease was gone at {}",
                            at(span.invoked),
                            at(since)
                        ),
                    );
                }
            }
            match look {
                Look::Keys(present) if present.iter().any(|p| *p) && present.iter().any(|p| !p) => {
                    report(
                        span.completed,
                        format!(
                            "one read at {} found some of its keys but not all ({present:?}): they did not go in one revision",
                            at(span.completed)
                        ),
                    );
                }
                Look::Keys(present) if !present.is_empty() && present.iter().all(|p| !p) => {
                    seen_gone.get_or_insert(span.completed);
                }
                Look::Ttl(ttl) if *ttl < 0 => {
                    seen_gone.get_or_insert(span.completed);
                }
                _ => {}
            }
        }
        // A reported TTL never reaches past the latest keepalive that could
        // have taken effect by then.
        for (span, look) in &record.looks {
            let Look::Ttl(ttl) = look else { continue };
            // 0 left says only that the lease was not revoked yet: a
            // member reports a passed deadline as 0 (expiry may wait for a
            // leader). From 1 s on, the deadline is at least that far out.
            if *ttl <= 0 {
                continue;
            }
            let latest_effect = record
                .keep_alives
                .iter()
                .filter(|(keep_alive, _)| keep_alive.invoked < span.completed)
                .map(|(keep_alive, answer)| match answer {
                    KeepAlive::Answered(_) => keep_alive.completed.min(span.completed),
                    KeepAlive::Unknown => span.completed,
                })
                .chain([record.grant.completed])
                .max()
                .expect("the grant");
            // A member that came back since resumed from a checkpoint, so
            // it may count the TTL from its return.
            let restarted = faults.last_restart_within(record.grant.invoked, span.completed);
            let base = latest_effect.max(restarted.unwrap_or_default());
            let reaches = span.invoked + Duration::from_secs(*ttl as u64);
            let limit = base + record.ttl + EXTENSION_ALLOWED;
            if reaches > limit {
                report(
                    span.completed,
                    format!(
                        "at {} a member reported {ttl}s left, reaching {}, past the latest keepalive's effect or member restart ({}) plus the TTL and {EXTENSION_ALLOWED:?}: the TTL grew without a keepalive",
                        at(span.invoked),
                        at(reaches),
                        at(base)
                    ),
                );
            }
        }
    }
    verdict
}

/// A TimeToLive answer with keys, asked at `span`: the granted TTL, every
/// key acknowledged before it was asked, no key not the lease's; none
/// once the lease is gone. Held to detcd's TimeToLive, which answers after
/// a read index: etcd 3.4's leader answers from its own state without
/// one, so a key acknowledged just before could be missing there.
fn listing_fits(record: &LeaseRecord, span: &Span, listing: &Listing) -> Result<(), String> {
    let listed = |key: &str| listing.keys.iter().any(|listed| listed == key);
    if listing.ttl < 0 {
        return match listing.keys.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "the lease is gone, yet it lists {:?}",
                listing.keys
            )),
        };
    }
    let granted = record.ttl.as_secs() as i64;
    if listing.granted_ttl != granted {
        return Err(format!(
            "granted TTL {}s, but the grant answered {granted}s",
            listing.granted_ttl
        ));
    }
    if let Some((missing, _)) =
        (record.keys.iter()).find(|(key, attached)| *attached <= span.invoked && !listed(key))
    {
        return Err(format!(
            "{missing} is missing from the keys {:?}, though its put with the lease was acknowledged before",
            listing.keys
        ));
    }
    let ours = |key: &str| {
        record.keys.iter().any(|(attached, _)| attached == key)
            || record.unacknowledged_keys.iter().any(|tried| tried == key)
    };
    match listing.keys.iter().find(|key| !ours(key)) {
        Some(stranger) => Err(format!("it lists {stranger}, never put with the lease")),
        None => Ok(()),
    }
}

/// Everything a run's lease records are held to: the time-based
/// guarantees (`check`) and, with an expiry as a server-made revoke,
/// keys and leases linearizable together (`history` under
/// `model::lease`). Shared by the simulator and the jepsen-style tool.
pub fn judge(records: &[LeaseRecord], faults: &Faults) -> LeaseVerdict {
    use crate::check::{check as linearizable, Budget, Verdict};
    let mut verdict = check(records, faults);
    let history = history(records, faults);
    let report = linearizable(&crate::model::lease::LeaseKv, &history, Budget::default());
    match report.verdict {
        Verdict::NotLinearizable => {
            let explained = report
                .partitions
                .iter()
                .find_map(|partition| partition.explanation.as_ref())
                .map(|explanation| {
                    let stuck = &history.operations[explanation.first_completion];
                    format!(
                        ": after {} operations the state is {}, and {} answered {} by client {} \
                         between {:.3}s and {:.3}s cannot take effect",
                        explanation.prefix.len(),
                        explanation.state_after_prefix,
                        stuck.input,
                        stuck
                            .outcome
                            .output()
                            .map_or("nothing".to_string(), ToString::to_string),
                        stuck.client,
                        stuck.invoke_ns as f64 / 1e9,
                        stuck.complete_ns.unwrap_or(stuck.invoke_ns) as f64 / 1e9,
                    )
                })
                .unwrap_or_default();
            verdict
                .violations
                .push(format!("keys and leases are not linearizable{explained}"));
        }
        Verdict::Unknown => verdict.budget_ran_out = true,
        Verdict::Linearizable => {}
    }
    verdict
}

/// The records as one history for the keys-and-leases model
/// (`model::lease`), to be checked for linearizability: grants, puts,
/// keepalives and TTL questions (does the lease exist?), key reads, client
/// revokes (fate unknown: the workload does not wait on them), and one
/// expiry per lease, made by no client, that may take effect only once
/// the TTL has run from the sending of the grant or of the latest
/// keepalive answered while the lease lived — or never. Where a clock was
/// skewed by then, the expiry may come any time after the grant: the time
/// bound is then the property check's, reported apart.
pub fn history(
    records: &[LeaseRecord],
    faults: &Faults,
) -> crate::history::History<crate::model::lease::LeaseInput, crate::model::lease::LeaseOutput> {
    use crate::history::{Operation, Outcome};
    use crate::model::lease::{LeaseInput, LeaseOutput};
    let ns = |time: Duration| time.as_nanos() as u64;
    let mut operations = Vec::new();
    let mut op = |client: u64, span: Span, input: LeaseInput, outcome: Outcome<LeaseOutput>| {
        operations.push(Operation {
            client,
            invoke_ns: ns(span.invoked),
            complete_ns: Some(ns(span.completed)),
            input,
            outcome,
            source_line: None,
        })
    };
    for (number, record) in records.iter().enumerate() {
        let id = record.id;
        op(
            record.client,
            record.grant,
            LeaseInput::Grant { id },
            Outcome::Ok(LeaseOutput::Ok),
        );
        // A put's send is only known to follow the previous success.
        let mut previous = record.grant.completed;
        for (key, completed) in &record.keys {
            let span = Span {
                invoked: previous,
                completed: *completed,
            };
            op(
                record.client,
                span,
                LeaseInput::Put {
                    key: key.clone(),
                    id,
                },
                Outcome::Ok(LeaseOutput::Ok),
            );
            previous = *completed;
        }
        let mut latest_start = record.grant.invoked;
        for (span, answer) in &record.keep_alives {
            if let KeepAlive::Answered(ttl) = answer {
                op(
                    record.client,
                    *span,
                    LeaseInput::Exists { id },
                    Outcome::Ok(LeaseOutput::Exists(*ttl > 0)),
                );
                if *ttl > 0 {
                    latest_start = latest_start.max(span.invoked);
                }
            }
        }
        for (span, look) in &record.looks {
            let (input, output) = match look {
                Look::Ttl(ttl) => (LeaseInput::Exists { id }, LeaseOutput::Exists(*ttl >= 0)),
                Look::Keys(present) => {
                    let keys = record
                        .keys
                        .iter()
                        .filter(|(_, attached)| *attached <= span.invoked)
                        .map(|(key, _)| key.clone())
                        .collect();
                    (
                        LeaseInput::Read { keys },
                        LeaseOutput::Present(present.clone()),
                    )
                }
            };
            op(record.client, *span, input, Outcome::Ok(output));
        }
        if let Some(revoked) = record.revoked {
            let span = Span {
                invoked: revoked,
                completed: revoked,
            };
            op(
                record.client,
                span,
                LeaseInput::Revoke { id },
                Outcome::Indeterminate,
            );
        }
        let earliest = latest_start + record.ttl;
        let earliest = if faults.skewed_before(earliest) {
            record.grant.invoked
        } else {
            earliest
        };
        let span = Span {
            invoked: earliest,
            completed: earliest,
        };
        // The server is a client of its own, one per lease.
        op(
            EXPIRY_CLIENT_BASE + number as u64,
            span,
            LeaseInput::Expire { id },
            Outcome::Indeterminate,
        );
    }
    crate::history::History::new(operations)
}

/// Client ids of the server's expiries in `history`: far from the workload's.
const EXPIRY_CLIENT_BASE: u64 = 1 << 40;

#[cfg(test)]
mod tests;
