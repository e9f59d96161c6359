//! Convergence: once every fault is healed and the writes have stopped,
//! every member that serves must come to hold the same data. etcd's HashKV
//! (a hash over the whole key-value history up to a revision) is the
//! witness; the simulator adds each workload key's value and mod revision,
//! so a report shows what differs, not only that something does.
//!
//! The harness (simulator and jepsen-style alike) polls each member for its
//! `MemberView` until `judge` says `Converged` or the bound passes, then
//! asks `give_up`. The rules:
//!
//! - every member answered with equal views: converged;
//! - two members whose HashKV differs at the same revision and compact
//!   revision: diverged at once (two replicas applied the same log to
//!   different states). Only the hash counts here: it is taken at its
//!   revision in one step, while the keys are read one by one, possibly
//!   across a revision the member was still applying;
//! - still unequal at the bound although every member answers: diverged
//!   (nothing is being written, so a member that answers yet never
//!   reaches the others' state holds another history);
//! - some member not answering at the bound: a liveness failure.

use std::collections::BTreeMap;

/// What one member holds, read locally (serializable) after the heal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// The revision its answer is at.
    pub revision: i64,
    pub compact_revision: i64,
    /// HashKV at `revision`.
    pub hash: u32,
    /// Optional detail to compare as well: key → (value, mod revision).
    pub keys: BTreeMap<String, (String, i64)>,
}

/// Where the members stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Every member answered with the same view.
    Converged { revision: i64, hash: u32 },
    /// A violation: replicas that hold different data.
    Diverged(String),
    /// Not there yet: which member is behind or silent.
    Pending { all_answered: bool, why: String },
}

/// Judges one poll of every serving member: (name, its view, or `None` if
/// it did not answer).
pub fn judge(views: &[(String, Option<MemberView>)]) -> Judgement {
    let silent: Vec<&str> = views
        .iter()
        .filter(|(_, view)| view.is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    let answered: Vec<(&str, &MemberView)> = views
        .iter()
        .filter_map(|(name, view)| view.as_ref().map(|view| (name.as_str(), view)))
        .collect();
    for (i, (name, view)) in answered.iter().enumerate() {
        for (other_name, other) in &answered[i + 1..] {
            let same_point =
                (view.revision, view.compact_revision) == (other.revision, other.compact_revision);
            if same_point && view.hash != other.hash {
                return Judgement::Diverged(format!(
                    "{name} and {other_name} differ at revision {} (compacted at {}): {}",
                    view.revision,
                    view.compact_revision,
                    difference(view, other)
                ));
            }
        }
    }
    if !silent.is_empty() {
        return Judgement::Pending {
            all_answered: false,
            why: format!("{} did not answer", silent.join(", ")),
        };
    }
    match answered.first() {
        Some((_, first)) if answered.iter().all(|(_, view)| view == first) => {
            Judgement::Converged {
                revision: first.revision,
                hash: first.hash,
            }
        }
        None => Judgement::Pending {
            all_answered: false,
            why: "no member serves".into(),
        },
        Some((first_name, first)) => Judgement::Pending {
            all_answered: true,
            why: answered
                .iter()
                .filter(|(_, view)| view != first)
                .map(|(name, view)| {
                    format!(
                        "{name} at revision {} (compacted at {}) against {first_name} at {} (compacted at {}): {}",
                        view.revision,
                        view.compact_revision,
                        first.revision,
                        first.compact_revision,
                        difference(view, first)
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        },
    }
}

/// Why the members did not converge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// They answer, yet hold different states.
    Violation(String),
    /// Some member did not answer.
    Liveness(String),
}

/// The verdict once the bound has passed, on `last`, the last poll's
/// judgement.
pub fn give_up(last: &Judgement, bound: std::time::Duration) -> Result<(), Failure> {
    match last {
        Judgement::Converged { .. } => Ok(()),
        Judgement::Diverged(why) => Err(Failure::Violation(why.clone())),
        Judgement::Pending {
            all_answered: true,
            why,
        } => Err(Failure::Violation(format!(
            "the members answer but still hold different states {bound:?} after the heal ({why})"
        ))),
        Judgement::Pending {
            all_answered: false,
            why,
        } => Err(Failure::Liveness(format!(
            "the members did not all answer within {bound:?} after the heal ({why})"
        ))),
    }
}

/// What differs between two views at the same revision.
fn difference(a: &MemberView, b: &MemberView) -> String {
    let mut differences = Vec::new();
    if a.hash != b.hash {
        differences.push(format!("HashKV {:#010x} vs {:#010x}", a.hash, b.hash));
    }
    let keys = a.keys.keys().chain(b.keys.keys());
    let mut seen = std::collections::BTreeSet::new();
    for key in keys {
        if !seen.insert(key) {
            continue;
        }
        let (x, y) = (a.keys.get(key), b.keys.get(key));
        if x != y {
            differences.push(format!("{key}: {x:?} vs {y:?}"));
        }
    }
    differences.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(revision: i64, hash: u32, keys: &[(&str, &str, i64)]) -> MemberView {
        MemberView {
            revision,
            compact_revision: 1,
            hash,
            keys: keys
                .iter()
                .map(|(k, v, r)| (k.to_string(), (v.to_string(), *r)))
                .collect(),
        }
    }

    fn named(views: Vec<Option<MemberView>>) -> Vec<(String, Option<MemberView>)> {
        views
            .into_iter()
            .enumerate()
            .map(|(i, view)| (format!("m{i}"), view))
            .collect()
    }

    #[test]
    fn equal_views_converge() {
        let v = view(9, 7, &[("k0", "a", 9)]);
        assert_eq!(
            judge(&named(vec![Some(v.clone()), Some(v.clone()), Some(v)])),
            Judgement::Converged {
                revision: 9,
                hash: 7
            }
        );
    }

    #[test]
    fn a_different_hash_at_one_revision_diverges_at_once_even_if_one_is_silent() {
        let a = view(9, 7, &[("k0", "a", 9)]);
        let b = view(9, 8, &[("k0", "b", 9)]);
        let Judgement::Diverged(why) = judge(&named(vec![Some(a), None, Some(b)])) else {
            panic!("not diverged");
        };
        assert!(why.contains("m0 and m2") && why.contains("k0"), "{why}");
        assert!(why.contains("HashKV 0x00000007 vs 0x00000008"), "{why}");
    }

    #[test]
    fn keys_read_across_an_apply_are_only_pending() {
        let a = view(9, 7, &[("k0", "a", 9)]);
        let b = view(9, 7, &[("k0", "old", 8)]);
        let judgement = judge(&named(vec![Some(a), Some(b)]));
        assert!(matches!(
            judgement,
            Judgement::Pending {
                all_answered: true,
                ..
            }
        ));
        let Err(Failure::Violation(why)) = give_up(&judgement, std::time::Duration::from_secs(1))
        else {
            panic!("{judgement:?}");
        };
        assert!(why.contains("different states"), "{why}");
    }

    #[test]
    fn a_member_behind_is_pending_then_diverged_at_the_bound() {
        let ahead = view(9, 7, &[]);
        let behind = view(8, 6, &[]);
        let judgement = judge(&named(vec![Some(ahead), Some(behind)]));
        assert!(matches!(
            judgement,
            Judgement::Pending {
                all_answered: true,
                ..
            }
        ));
        let bound = std::time::Duration::from_secs(30);
        assert!(matches!(
            give_up(&judgement, bound),
            Err(Failure::Violation(_))
        ));
    }

    #[test]
    fn a_silent_member_is_liveness_at_the_bound() {
        let judgement = judge(&named(vec![Some(view(9, 7, &[])), None]));
        let Judgement::Pending {
            all_answered: false,
            why,
        } = &judgement
        else {
            panic!("{judgement:?}");
        };
        assert!(why.contains("m1 did not answer"), "{why}");
        let bound = std::time::Duration::from_secs(30);
        assert!(matches!(
            give_up(&judgement, bound),
            Err(Failure::Liveness(_))
        ));
        assert!(matches!(
            judge(&[]),
            Judgement::Pending {
                all_answered: false,
                ..
            }
        ));
    }

    #[test]
    fn compaction_is_part_of_the_point_compared() {
        let a = view(9, 7, &[]);
        let b = MemberView {
            compact_revision: 5,
            hash: 8,
            ..a.clone()
        };
        assert!(matches!(
            judge(&named(vec![Some(a), Some(b)])),
            Judgement::Pending {
                all_answered: true,
                ..
            }
        ));
    }
}
