//! Availability during faults: while a quorum of members is up, reachable
//! and well, the cluster must keep serving. Safety checks pass on a
//! cluster that stops answering whenever anything goes wrong; this one
//! does not.
//!
//! The nemesis records the run as stretches: each starts when it changed
//! something (a crash, a restart, a pause, a cut, a heal...) and says
//! whether a quorum was healthy from then on. A healthy quorum is a
//! majority of the members that are running, not paused, not lagging,
//! with disks that are neither full nor distrusted, all reachable from
//! each other both ways, and holding the member a client being served
//! lives next to (clients reach only what their own member can), with no
//! message faults and no membership change under way. A stretch starts
//! only when something it depends on changed, or when a member crashed
//! and came straight back, a leader moved or maintenance ran. Any change may cost an election and strands the clients
//! that were talking to the member it hit (they move on after their
//! request timeout), so the check starts `RECOVERY` into a healthy
//! stretch. From then to the stretch's end, some read must succeed in
//! every `GAP`, and some write: a longer silence of either is a liveness
//! failure (a cluster that serves reads but no write is not available).
//!
//! Faults that leave no quorum healthy (a majority down, a partition with
//! no majority side, message loss) are outside the property: the cluster
//! may refuse then, and the final liveness check covers what follows.

use std::time::Duration;

/// From the start of a healthy stretch until availability is owed: an
/// election (up to twice the election timeout, with pre-vote) and the
/// clients' move off a member that just went away.
pub const RECOVERY: Duration = Duration::from_secs(4);
/// The longest a healthy quorum may go without serving a read, or a
/// write: the clients' request timeout (3 s: every client may have been
/// waiting on a paused member just then) and 2 s more.
///
/// Measured on the simulator (CI's 250 mixed seeds of 10 s and 80 of
/// 20 s), even 3 s into a stretch no read or write went unserved for 3 s;
/// 2 s was exceeded once.
pub const GAP: Duration = Duration::from_secs(5);

/// From `from` on (virtual time since the run started), until the next
/// stretch, a quorum was healthy or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stretch {
    pub from: Duration,
    pub healthy: bool,
}

/// Every silence longer than `gap` inside the healthy stretches (after
/// `recovery` into each), up to `until`, when the clients stopped.
/// `served` are the completion times of the operations of one kind
/// (`what`: reads, writes) that succeeded, in any order.
pub fn check(
    what: &str,
    stretches: &[Stretch],
    until: Duration,
    served: &[Duration],
    recovery: Duration,
    gap: Duration,
) -> Vec<String> {
    let mut served = served.to_vec();
    served.sort();
    let mut violations = Vec::new();
    for (i, stretch) in stretches.iter().enumerate() {
        let end = stretches
            .get(i + 1)
            .map_or(until, |next| next.from)
            .min(until);
        let owed_from = stretch.from + recovery;
        if !stretch.healthy || end <= owed_from {
            continue;
        }
        let start = served.partition_point(|at| *at < owed_from);
        let stop = served.partition_point(|at| *at < end);
        let mut last = owed_from;
        for &at in served[start..stop].iter().chain([&end]) {
            if at - last > gap {
                violations.push(format!(
                    "no {what} served from {:.3}s to {:.3}s although a quorum was healthy from {:.3}s to {:.3}s",
                    last.as_secs_f64(),
                    at.as_secs_f64(),
                    stretch.from.as_secs_f64(),
                    end.as_secs_f64()
                ));
            }
            last = at;
        }
    }
    violations
}

/// Whether some set of more than half of `members` is `good` and pairwise
/// `connected` (both ways), the members a leader needs, and holds one of
/// `homes`, the members next to the clients being served (a client
/// reaches only the members its own can talk to).
pub fn quorum_healthy(
    members: usize,
    homes: &[usize],
    good: impl Fn(usize) -> bool,
    connected: impl Fn(usize, usize) -> bool,
) -> bool {
    let good: Vec<usize> = (0..members).filter(|&m| good(m)).collect();
    let majority = members / 2 + 1;
    if good.len() < majority {
        return false;
    }
    // Clusters are small (3 to 7 members): every subset is cheap to try.
    (0u64..1 << good.len()).any(|subset| {
        let chosen: Vec<usize> = (0..good.len())
            .filter(|bit| subset & (1 << bit) != 0)
            .map(|bit| good[bit])
            .collect();
        chosen.len() >= majority
            && chosen.iter().any(|member| homes.contains(member))
            && chosen
                .iter()
                .enumerate()
                .all(|(i, &a)| chosen[i + 1..].iter().all(|&b| connected(a, b)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn stretch(from: f64, healthy: bool) -> Stretch {
        Stretch {
            from: s(from),
            healthy,
        }
    }

    const R: Duration = RECOVERY;
    const G: Duration = GAP;

    #[test]
    fn steady_service_passes() {
        let served: Vec<Duration> = (0..200).map(|i| s(i as f64 * 0.1)).collect();
        assert!(check("op", &[stretch(0.0, true)], s(20.0), &served, R, G).is_empty());
    }

    #[test]
    fn a_silence_in_a_healthy_stretch_is_caught() {
        let served: Vec<Duration> = (0..200)
            .map(|i| s(i as f64 * 0.1))
            .filter(|at| *at < s(8.0) || *at > s(13.5))
            .collect();
        let violations = check("op", &[stretch(0.0, true)], s(20.0), &served, R, G);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].contains("from 7.900s to 13.600s"),
            "{violations:?}"
        );
    }

    #[test]
    fn silence_at_the_end_of_a_stretch_counts() {
        let served: Vec<Duration> = (0..100).map(|i| s(i as f64 * 0.1)).collect();
        let violations = check("op", &[stretch(0.0, true)], s(20.0), &served, R, G);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("to 20.000s"), "{violations:?}");
    }

    #[test]
    fn unhealthy_stretches_and_the_recovery_are_exempt() {
        // Nothing served at all: an unhealthy stretch owes nothing, nor
        // does a healthy one too short to get past its recovery.
        let stretches = [
            stretch(0.0, false),
            stretch(5.0, true),
            stretch(10.0, false),
        ];
        assert!(check("op", &stretches, s(30.0), &[], R, G).is_empty());
        // Service that resumes just within the gap after the recovery.
        let served = [s(16.0 + 4.0 + 4.9), s(25.0)];
        assert!(check("op", &[stretch(16.0, true)], s(27.0), &served, R, G).is_empty());
        // A healthy stretch long enough owes service.
        let violations = check(
            "op",
            &[stretch(0.0, false), stretch(5.0, true)],
            s(30.0),
            &[],
            R,
            G,
        );
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].contains("from 9.000s to 30.000s"),
            "{violations:?}"
        );
    }

    #[test]
    fn quorum_needs_a_connected_majority_of_good_members() {
        let all = |_| true;
        let linked = |_, _| true;
        let homes = [0, 1, 2, 3, 4];
        assert!(quorum_healthy(3, &homes, all, linked));
        assert!(quorum_healthy(3, &homes, |m| m != 1, linked));
        assert!(!quorum_healthy(3, &homes, |m| m == 0, linked));
        // A bridge: 0 and 2 cannot talk, each can with 1.
        let bridge = |a: usize, b: usize| (a.min(b), a.max(b)) != (0, 2);
        assert!(quorum_healthy(3, &homes, all, bridge));
        // 0 and 2 cannot talk, and 1 is down: no majority is connected.
        assert!(!quorum_healthy(3, &homes, |m| m != 1, bridge));
        // Five members split 2 | 3: the three are a quorum.
        let halves = |a: usize, b: usize| (a < 2) == (b < 2);
        assert!(quorum_healthy(5, &homes, all, halves));
        assert!(!quorum_healthy(5, &homes, |m| m != 4, halves));
        // The clients all live in the minority: nothing can be served.
        assert!(!quorum_healthy(5, &[0, 1], all, halves));
        assert!(quorum_healthy(5, &[1, 2], all, halves));
    }
}
