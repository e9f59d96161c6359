//! Response headers: every answer names the cluster, the member that gave
//! it and that member's raft term (etcd's `ResponseHeader`). Checked at the
//! end over the answers the etcd workload's clients heard:
//! - one cluster id, never 0;
//! - a member id is never 0 and answers from one endpoint only. A member's
//!   id is never reused (a re-added member gets a new one), so an answer
//!   naming another member (the leader, say) shows up as one id at two
//!   endpoints. Where the ids each endpoint ever served are known (the
//!   simulator knows them), the id must be one of those;
//! - a member's raft term is at least 1 and never goes back in real time:
//!   an answer asked for after another from the same member arrived names
//!   a term at least as high. A term only grows and is durable before it
//!   is told (detcd reports raft's current term; etcd, the term of the
//!   last entry it applied, replayed on restart before it serves). One
//!   exception: a serializable read may name term 0. A member just added
//!   (jepsen-style's churn re-adds one at its old client URL) answers
//!   those before it heard from a leader: detcd serves clients before its
//!   publish applied, where etcd waits for it (`ReadyNotify`).
//!
//! Headers' revisions are the models' business (`model::etcd`).

use std::collections::{BTreeMap, BTreeSet};

/// One answer's header, with who asked, when, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub client: u64,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    /// The endpoint that answered.
    pub endpoint: String,
    /// The answer to a serializable read.
    pub serializable: bool,
    pub cluster_id: u64,
    pub member_id: u64,
    pub raft_term: u64,
    pub revision: i64,
}

/// The first header that breaks a rule above, described; `served`: the
/// member ids each endpoint ever served, where known.
pub fn check(
    heard: &[Heard],
    served: Option<&BTreeMap<String, BTreeSet<u64>>>,
) -> Result<(), String> {
    let mut cluster: Option<&Heard> = None;
    let mut endpoints: BTreeMap<u64, &Heard> = BTreeMap::new();
    let mut by_member: BTreeMap<u64, Vec<&Heard>> = BTreeMap::new();
    for answer in heard {
        let no_term = answer.raft_term == 0 && !answer.serializable;
        if answer.cluster_id == 0 || answer.member_id == 0 || no_term {
            return Err(format!(
                "response header: an answer names no cluster, member or term: {answer:?}"
            ));
        }
        match cluster {
            Some(first) if first.cluster_id != answer.cluster_id => {
                return Err(format!(
                    "response header: two cluster ids, {:x} in {first:?} and {:x} in {answer:?}",
                    first.cluster_id, answer.cluster_id
                ));
            }
            Some(_) => {}
            None => cluster = Some(answer),
        }
        match endpoints.get(&answer.member_id) {
            Some(first) if first.endpoint != answer.endpoint => {
                return Err(format!(
                    "response header: member {:x} answered from {} and from {}: {first:?}, {answer:?}",
                    answer.member_id, first.endpoint, answer.endpoint
                ));
            }
            Some(_) => {}
            None => {
                endpoints.insert(answer.member_id, answer);
            }
        }
        if let Some(served) = served {
            let ids = served.get(&answer.endpoint);
            if !ids.is_some_and(|ids| ids.contains(&answer.member_id)) {
                return Err(format!(
                    "response header: member {:x} answered from {}, which served {:x?}: {answer:?}",
                    answer.member_id, answer.endpoint, ids
                ));
            }
        }
        by_member.entry(answer.member_id).or_default().push(answer);
    }
    for answers in by_member.values() {
        check_terms(answers)?;
    }
    Ok(())
}

/// One member's answers: none names a lower term than one that arrived
/// before it was asked for.
fn check_terms(answers: &[&Heard]) -> Result<(), String> {
    let mut by_completion = answers.to_vec();
    by_completion.sort_by_key(|answer| answer.complete_ns);
    let mut by_invocation = answers.to_vec();
    by_invocation.sort_by_key(|answer| answer.invoke_ns);
    let mut highest: Option<&Heard> = None;
    let mut arrived = by_completion.iter().peekable();
    for answer in by_invocation {
        while let Some(earlier) = arrived.next_if(|earlier| earlier.complete_ns < answer.invoke_ns)
        {
            if highest.is_none_or(|highest| earlier.raft_term > highest.raft_term) {
                highest = Some(earlier);
            }
        }
        if let Some(highest) = highest.filter(|highest| highest.raft_term > answer.raft_term) {
            return Err(format!(
                "response header: member {:x} answered in term {} after it had answered in term {}: {highest:?}, then {answer:?}",
                answer.member_id, answer.raft_term, highest.raft_term
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(
        invoke_ns: u64,
        complete_ns: u64,
        endpoint: &str,
        member_id: u64,
        raft_term: u64,
    ) -> Heard {
        Heard {
            client: 0,
            invoke_ns,
            complete_ns,
            endpoint: endpoint.into(),
            serializable: false,
            cluster_id: 9,
            member_id,
            raft_term,
            revision: 1,
        }
    }

    #[test]
    fn right_headers_pass() {
        let answers = [
            heard(0, 10, "a", 1, 2),
            heard(5, 20, "b", 2, 2),
            heard(30, 40, "a", 1, 3),
            // Overlapping the term-3 answer: either order is possible.
            heard(35, 50, "a", 1, 2),
            heard(60, 70, "b", 2, 4),
        ];
        assert_eq!(check(&answers, None), Ok(()));
    }

    #[test]
    fn a_term_that_goes_back_is_caught() {
        let answers = [heard(0, 10, "a", 1, 3), heard(20, 30, "a", 1, 2)];
        assert!(check(&answers, None).unwrap_err().contains("term 2 after"));
        // Another member may well be behind.
        let answers = [heard(0, 10, "a", 1, 3), heard(20, 30, "b", 2, 2)];
        assert_eq!(check(&answers, None), Ok(()));
    }

    #[test]
    fn a_member_named_at_two_endpoints_is_caught() {
        let answers = [heard(0, 10, "a", 1, 2), heard(20, 30, "b", 1, 2)];
        assert!(check(&answers, None)
            .unwrap_err()
            .contains("answered from a and from b"));
    }

    #[test]
    fn an_id_its_endpoint_never_served_is_caught() {
        let served = BTreeMap::from([
            ("a".to_string(), BTreeSet::from([1, 3])),
            ("b".to_string(), BTreeSet::from([2])),
        ]);
        let answers = [heard(0, 10, "a", 1, 2), heard(20, 30, "a", 3, 2)];
        assert_eq!(check(&answers, Some(&served)), Ok(()));
        let answers = [heard(0, 10, "b", 3, 2)];
        assert!(check(&answers, Some(&served))
            .unwrap_err()
            .contains("which served"));
        assert!(check(&[heard(0, 10, "c", 1, 2)], Some(&served)).is_err());
    }

    #[test]
    fn zero_ids_and_two_clusters_are_caught() {
        assert!(check(&[heard(0, 10, "a", 0, 2)], None).is_err());
        assert!(check(&[heard(0, 10, "a", 1, 0)], None).is_err());
        // A member just added answers serializable reads before it heard
        // from a leader.
        let mut early = heard(0, 10, "a", 1, 0);
        early.serializable = true;
        assert_eq!(check(&[early], None), Ok(()));
        let mut other = heard(20, 30, "b", 2, 2);
        other.cluster_id = 8;
        let answers = [heard(0, 10, "a", 1, 2), other];
        assert!(check(&answers, None)
            .unwrap_err()
            .contains("two cluster ids"));
    }
}
