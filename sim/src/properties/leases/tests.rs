use super::*;

fn s(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

fn span(invoked: f64, completed: f64) -> Span {
    Span {
        invoked: s(invoked),
        completed: s(completed),
    }
}

/// A 6 s lease granted at 1 s with keys a and b.
fn lease() -> LeaseRecord {
    LeaseRecord {
        client: 0,
        id: 7,
        requested_ttl: 6,
        ttl: s(6.0),
        grant: span(1.0, 1.1),
        keys: vec![("a".into(), s(1.2)), ("b".into(), s(1.3))],
        unacknowledged_keys: vec!["c".into()],
        keep_alives: Vec::new(),
        revoked: None,
        looks: Vec::new(),
        listings: Vec::new(),
        lease_lists: Vec::new(),
    }
}

fn verdict(record: LeaseRecord, faults: &Faults) -> LeaseVerdict {
    check(&[record], faults)
}

#[test]
fn a_lease_that_lapses_on_time_passes() {
    let mut record = lease();
    record.looks = vec![
        (span(2.0, 2.1), Look::Keys(vec![true, true])),
        (span(3.0, 3.1), Look::Ttl(4)),
        // Past its deadline, not revoked yet (no leader, say): 0 left.
        (span(9.5, 9.6), Look::Ttl(0)),
        (span(10.5, 10.6), Look::Keys(vec![false, false])),
        (span(10.7, 10.8), Look::Ttl(-1)),
    ];
    let found = verdict(record, &Faults::default());
    assert!(found.violations.is_empty(), "{found:?}");
}

#[test]
fn an_early_end_is_caught_unless_a_clock_was_skewed() {
    let mut record = lease();
    record.keep_alives = vec![(span(3.0, 3.1), KeepAlive::Answered(6))];
    // Promised until 3.0 + 6: gone at 6.1 is early.
    record.looks = vec![(span(6.0, 6.1), Look::Keys(vec![false, false]))];
    let found = verdict(record.clone(), &Faults::default());
    assert_eq!(found.violations.len(), 1, "{found:?}");
    assert!(found.violations[0].contains("expired early"), "{found:?}");
    let skewed = Faults {
        skewed_at: Some(s(2.0)),
        ..Faults::default()
    };
    let found = verdict(record.clone(), &skewed);
    assert!(found.violations.is_empty() && found.clock_explained.len() == 1);
    // A revoke before it explains it too.
    record.revoked = Some(s(5.0));
    assert!(verdict(record, &Faults::default()).violations.is_empty());
}

#[test]
fn keys_that_go_apart_or_come_back_are_caught() {
    let mut record = lease();
    record.revoked = Some(s(2.0));
    record.looks = vec![(span(2.5, 2.6), Look::Keys(vec![true, false]))];
    let found = verdict(record.clone(), &Faults::default());
    assert!(found.violations[0].contains("not all"), "{found:?}");
    record.looks = vec![
        (span(2.5, 2.6), Look::Ttl(-1)),
        (span(2.7, 2.8), Look::Keys(vec![true, true])),
    ];
    let found = verdict(record, &Faults::default());
    assert!(found.violations[0].contains("still there"), "{found:?}");
}

#[test]
fn a_ttl_that_grows_without_a_keepalive_is_caught() {
    let mut record = lease();
    // A new leader restarted the lease at 5 s: 5 s left at 6 s reaches 11 s,
    // past 1.1 + 6 + 2.
    record.looks = vec![(span(6.0, 6.1), Look::Ttl(5))];
    let found = verdict(record.clone(), &Faults::default());
    assert!(found.violations[0].contains("grew"), "{found:?}");
    // A keepalive that may have taken effect at 5 s explains it.
    record.keep_alives = vec![(span(4.9, 5.0), KeepAlive::Unknown)];
    assert!(verdict(record.clone(), &Faults::default())
        .violations
        .is_empty());
    // So does a member coming back at 5 s (its timers restart from checkpoints).
    record.keep_alives.clear();
    let down = Faults {
        skewed_at: None,
        out: vec![(s(2.0), 1), (s(5.0), 0)],
        ..Faults::default()
    };
    assert!(verdict(record, &down).violations.is_empty());
}

fn linearizable(records: &[LeaseRecord], faults: &Faults) -> bool {
    let history = history(records, faults);
    let report = crate::check::check(
        &crate::model::lease::LeaseKv,
        &history,
        crate::check::Budget::default(),
    );
    report.verdict == crate::check::Verdict::Linearizable
}

#[test]
fn keys_and_leases_are_checked_together_with_expiry_as_a_server_revoke() {
    let mut on_time = lease();
    on_time.looks = vec![
        (span(2.0, 2.1), Look::Keys(vec![true, true])),
        (span(10.5, 10.6), Look::Keys(vec![false, false])),
        (span(10.7, 10.8), Look::Ttl(-1)),
    ];
    assert!(linearizable(&[on_time.clone()], &Faults::default()));

    // Gone at 6.1, though promised until 7.0 (granted at 1.0, 6 s).
    let mut early = lease();
    early.looks = vec![(span(6.0, 6.1), Look::Ttl(-1))];
    assert!(!linearizable(&[early.clone()], &Faults::default()));
    // A skewed clock lifts the time bound (the property check reports it).
    let skewed = Faults {
        skewed_at: Some(s(2.0)),
        ..Faults::default()
    };
    assert!(linearizable(&[early], &skewed));

    // The lease is gone but one of its keys is not: never atomic.
    let mut torn = on_time;
    torn.looks = vec![
        (span(10.5, 10.6), Look::Ttl(-1)),
        (span(10.7, 10.8), Look::Keys(vec![false, true])),
    ];
    assert!(!linearizable(&[torn], &Faults::default()));
}

#[test]
fn a_grant_or_keepalive_with_another_ttl_is_a_violation() {
    let mut record = lease();
    record.keep_alives = vec![(span(2.0, 2.1), KeepAlive::Answered(6))];
    assert!(verdict(record.clone(), &Faults::default())
        .violations
        .is_empty());
    record.keep_alives = vec![(span(2.0, 2.1), KeepAlive::Answered(5))];
    let found = verdict(record.clone(), &Faults::default()).violations;
    assert!(found[0].contains("answered a TTL of 5s"), "{found:?}");
    record.keep_alives.clear();
    record.requested_ttl = 5;
    let found = verdict(record, &Faults::default()).violations;
    assert!(found[0].contains("granted a TTL of 6s"), "{found:?}");
}

#[test]
fn time_to_live_lists_the_granted_ttl_and_every_acknowledged_key() {
    let listing = |ttl: i64, granted_ttl: i64, keys: &[&str]| Listing {
        ttl,
        granted_ttl,
        keys: keys.iter().map(|key| key.to_string()).collect(),
    };
    let judged = |at: f64, answer: Listing| {
        let mut record = lease();
        record.listings = vec![(span(at, at + 0.1), answer)];
        verdict(record, &Faults::default()).violations
    };
    // "a" was attached at 1.2, "b" at 1.3; "c"'s put failed, so it may be.
    assert!(judged(1.25, listing(5, 6, &["a"])).is_empty());
    assert!(judged(2.0, listing(5, 6, &["a", "b", "c"])).is_empty());
    assert!(judged(5.0, listing(-1, 0, &[])).is_empty());
    let found = judged(2.0, listing(5, 6, &["a"]));
    assert!(found[0].contains("b is missing"), "{found:?}");
    let found = judged(2.0, listing(5, 4, &["a", "b"]));
    assert!(found[0].contains("granted TTL 4s"), "{found:?}");
    let found = judged(2.0, listing(5, 6, &["a", "b", "d"]));
    assert!(found[0].contains("lists d"), "{found:?}");
    let found = judged(5.0, listing(-1, 0, &["a"]));
    assert!(found[0].contains("the lease is gone"), "{found:?}");
}

#[test]
fn lease_leases_lists_a_lease_alive_around_it_and_none_gone_before() {
    let mut record = lease();
    record.looks = vec![
        (span(2.0, 2.1), Look::Ttl(4)),
        (span(3.0, 3.1), Look::Keys(vec![true, true])),
        (span(8.0, 8.1), Look::Ttl(-1)),
    ];
    let judged = |at: f64, listed: Vec<i64>| {
        let mut record = record.clone();
        record.lease_lists = vec![(span(at, at + 0.1), listed)];
        verdict(record, &Faults::default()).violations
    };
    // Alive at 2.1 and at 3.0: listed between them; after it went, not.
    assert!(judged(2.5, vec![7]).is_empty());
    assert!(judged(9.0, vec![]).is_empty());
    // Between 3.1 and 8.0 it may have gone: either answer.
    assert!(judged(5.0, vec![]).is_empty() && judged(5.0, vec![7]).is_empty());
    let found = judged(2.5, vec![8]);
    assert!(found[0].contains("left out lease 7"), "{found:?}");
    let found = judged(9.0, vec![7]);
    assert!(found[0].contains("listed lease 7, seen gone"), "{found:?}");
}
