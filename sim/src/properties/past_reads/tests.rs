use super::*;
use crate::model::etcd::kv;
use crate::properties::watch::{CompactionSent, Previous};

fn put(
    client: u64,
    at: u64,
    key: &str,
    value: &str,
    revision: i64,
) -> Operation<EtcdInput, EtcdOutput> {
    Operation {
        client,
        invoke_ns: at,
        complete_ns: Some(at + 1),
        input: EtcdInput::Put {
            key: key.into(),
            value: value.into(),
            prev_kv: false,
            ignore_value: false,
            lease: 0,
            ignore_lease: false,
        },
        outcome: Outcome::Ok(EtcdOutput::Put {
            header_revision: revision,
            prev_kv: None,
        }),
        source_line: None,
    }
}

/// a=1 at 2, b=2 at 3, a=3 at 4.
fn history() -> Vec<Operation<EtcdInput, EtcdOutput>> {
    vec![
        put(0, 10, "a", "1", 2),
        put(1, 20, "b", "2", 3),
        put(0, 30, "a", "3", 4),
    ]
}

fn read(revision: i64, serializable: bool, outcome: ReadOutcome) -> RevisionRead {
    RevisionRead {
        client: 7,
        invoke_ns: 100,
        complete_ns: 110,
        key: "a".into(),
        range_end: Some("c".into()),
        options: RangeOptions::default(),
        revision,
        serializable,
        outcome,
    }
}

fn ok(header_revision: i64, kvs: Vec<KeyValue>) -> ReadOutcome {
    ReadOutcome::Ok {
        header_revision,
        count: kvs.len() as i64,
        kvs,
        more: false,
    }
}

fn compaction(revision: i64, invoke_ns: u64, outcome: CompactionOutcome) -> Compaction {
    Compaction {
        invoke_ns,
        complete_ns: invoke_ns + 5,
        revision,
        outcome,
    }
}

#[test]
fn the_replay_rebuilds_every_revision_the_writes_account_for() {
    let replay = Replay::of(&Etcd::default(), &history());
    assert_eq!(replay.last(), 4);
    assert_eq!(
        replay.at(3).unwrap().range_of("a", Some("c")),
        vec![kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1)]
    );
    assert!(replay.at(5).is_none() && replay.at(0).is_none());
}

#[test]
fn a_past_read_must_list_the_store_as_it_was() {
    let model = Etcd::default();
    let right = read(
        3,
        false,
        ok(4, vec![kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1)]),
    );
    assert!(check(&model, &history(), &[right], &[]).is_empty());
    // The current store instead of revision 3's.
    let current = read(
        3,
        false,
        ok(4, vec![kv("a", "3", 2, 4, 2), kv("b", "2", 3, 3, 1)]),
    );
    let found = check(&model, &history(), &[current], &[]);
    assert!(
        found[0].contains("at revision 3 the store held"),
        "{found:?}"
    );
}

#[test]
fn a_serializable_read_must_list_the_store_at_its_header_revision() {
    let model = Etcd::default();
    let lagging = read(0, true, ok(2, vec![kv("a", "1", 2, 2, 1)]));
    assert!(check(&model, &history(), &[lagging], &[]).is_empty());
    let mixed = read(
        0,
        true,
        ok(2, vec![kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1)]),
    );
    assert_eq!(check(&model, &history(), &[mixed], &[]).len(), 1);
    // Linearizable, the same answer is stale: revision 4 was acknowledged.
    let stale = read(0, false, ok(2, vec![kv("a", "1", 2, 2, 1)]));
    let found = check(&model, &history(), &[stale], &[]);
    assert!(
        found[0].contains("after revision 4 was acknowledged"),
        "{found:?}"
    );
}

fn acknowledged(header_revision: i64) -> CompactionOutcome {
    CompactionOutcome::Acknowledged { header_revision }
}

/// `history()` acknowledges revision 2 at 11, 3 at 21 and 4 at 31.
#[test]
fn compactions_are_answered_as_etcd_answers_them() {
    let model = Etcd::default();
    let judged = |compactions: &[Compaction]| check(&model, &history(), &[], compactions);
    // Answered at the head, after the writes before it.
    assert!(judged(&[compaction(3, 40, acknowledged(4))]).is_empty());
    let found = judged(&[compaction(3, 40, acknowledged(3))]);
    assert!(found[0].contains("header revision 3"), "{found:?}");
    let found = judged(&[compaction(4, 25, acknowledged(3))]);
    assert!(found[0].contains("below its revision"), "{found:?}");
    // A second compaction at or below one acknowledged before it is sent
    // is refused as compacted; sent before that answer, either may win.
    let first = compaction(3, 40, acknowledged(4));
    for at in [2, 3] {
        let found = judged(&[first, compaction(at, 50, acknowledged(4))]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("compaction at 3 had been"), "{found:?}");
        assert!(judged(&[
            first,
            compaction(at, 50, CompactionOutcome::RefusedCompacted)
        ])
        .is_empty());
        assert!(judged(&[first, compaction(at, 42, acknowledged(4))]).is_empty());
    }
    // A refusal as compacted needs a compaction at or past it.
    let found = judged(&[compaction(3, 40, CompactionOutcome::RefusedCompacted)]);
    assert!(found[0].contains("refused as compacted"), "{found:?}");
    let lower = compaction(2, 30, CompactionOutcome::Unknown);
    let refused = compaction(3, 40, CompactionOutcome::RefusedCompacted);
    assert_eq!(judged(&[lower, refused]).len(), 1);
    let unanswered = compaction(3, 30, CompactionOutcome::Unknown);
    assert!(judged(&[unanswered, refused]).is_empty());
    let refused_too = compaction(4, 30, CompactionOutcome::Refused);
    assert_eq!(judged(&[refused_too, refused]).len(), 1);
    // A future revision is one no answer reached before it was sent.
    assert!(judged(&[compaction(5, 40, CompactionOutcome::RefusedFuture)]).is_empty());
    assert!(judged(&[compaction(4, 25, CompactionOutcome::RefusedFuture)]).is_empty());
    let found = judged(&[compaction(4, 40, CompactionOutcome::RefusedFuture)]);
    assert!(
        found[0].contains("after revision 4 was acknowledged"),
        "{found:?}"
    );
}

#[test]
fn compaction_refusals_must_be_explained_and_acknowledged_ones_obeyed() {
    let model = Etcd::default();
    let refused = read(2, false, ReadOutcome::Compacted);
    assert_eq!(
        check(&model, &history(), std::slice::from_ref(&refused), &[]).len(),
        1
    );
    let sent = compaction(3, 50, CompactionOutcome::Unknown);
    assert!(check(&model, &history(), std::slice::from_ref(&refused), &[sent]).is_empty());
    let not_past_it = compaction(2, 50, acknowledged(4));
    assert_eq!(
        check(&model, &history(), &[refused], &[not_past_it]).len(),
        1
    );

    let answered = read(2, false, ok(4, vec![kv("a", "1", 2, 2, 1)]));
    let done = compaction(3, 50, acknowledged(4));
    let found = check(
        &model,
        &history(),
        std::slice::from_ref(&answered),
        std::slice::from_ref(&done),
    );
    assert!(found[0].contains("compaction at 3"), "{found:?}");
    // A serializable read may come from a member yet to apply it.
    let mut serializable = answered;
    serializable.serializable = true;
    assert!(check(&model, &history(), &[serializable], &[done]).is_empty());
}

#[test]
fn revisions_past_an_unanswered_write_are_not_judged() {
    let model = Etcd::default();
    let mut writes = history();
    writes[1].outcome = Outcome::Indeterminate;
    assert_eq!(Replay::of(&model, &writes).last(), 2);
    let unknowable = read(3, false, ok(4, vec![kv("a", "1", 2, 2, 1)]));
    assert!(check(&model, &writes, &[unknowable], &[]).is_empty());
    let knowable = read(2, false, ok(4, Vec::new()));
    assert_eq!(check(&model, &writes, &[knowable], &[]).len(), 1);
}

/// A linearizable range over every key written, answered whole.
fn full_read(
    at: u64,
    header_revision: i64,
    kvs: Vec<KeyValue>,
) -> Operation<EtcdInput, EtcdOutput> {
    Operation {
        client: 5,
        invoke_ns: at,
        complete_ns: Some(at + 1),
        input: EtcdInput::Range {
            key: "a".into(),
            range_end: Some("c".into()),
            options: RangeOptions::default(),
        },
        outcome: Outcome::Ok(EtcdOutput::Range {
            header_revision,
            count: Some(kvs.len() as i64),
            kvs,
            more: Some(false),
        }),
        source_line: None,
    }
}

#[test]
fn the_replay_starts_again_from_a_full_read_past_an_unanswered_write() {
    let model = Etcd::default();
    let mut writes = history();
    writes[1].outcome = Outcome::Indeterminate;
    writes.push(put(1, 50, "b", "5", 5));
    let whole = vec![kv("a", "3", 2, 4, 2), kv("b", "2", 3, 3, 1)];
    // One that leaves a written key out does not count.
    let mut partial = full_read(40, 4, whole.clone());
    let EtcdInput::Range { range_end, .. } = &mut partial.input else {
        unreachable!()
    };
    *range_end = Some("b".into());
    writes.push(partial);
    assert_eq!(Replay::of(&model, &writes).last(), 2);
    writes.push(full_read(41, 4, whole.clone()));
    let replay = Replay::of(&model, &writes);
    assert_eq!(replay.stretches().collect::<Vec<_>>(), vec![(1, 2), (4, 5)]);
    assert!(replay.at(3).is_none());
    assert_eq!(
        replay.at(5).unwrap().range_of("a", Some("c")),
        vec![kv("a", "3", 2, 4, 2), kv("b", "5", 3, 5, 2)]
    );
    // Two full reads at one revision that disagree: neither is taken.
    writes.push(full_read(42, 4, vec![kv("a", "3", 2, 4, 2)]));
    assert_eq!(Replay::of(&model, &writes).last(), 2);
}

#[test]
fn a_full_read_right_at_the_gap_joins_the_stretches() {
    let model = Etcd::default();
    let mut writes = history();
    writes[1].outcome = Outcome::Indeterminate;
    let mut more = full_read(40, 3, vec![kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1)]);
    // Cut short by a limit: not the whole store.
    let Outcome::Ok(EtcdOutput::Range { more: cut, .. }) = &mut more.outcome else {
        unreachable!()
    };
    *cut = Some(true);
    writes.push(more.clone());
    assert_eq!(Replay::of(&model, &writes).last(), 2);
    let Outcome::Ok(EtcdOutput::Range { more: cut, .. }) = &mut more.outcome else {
        unreachable!()
    };
    *cut = Some(false);
    writes.push(more);
    let replay = Replay::of(&model, &writes);
    assert_eq!(replay.stretches().collect::<Vec<_>>(), vec![(1, 2), (3, 4)]);
    // Revision 3 has a known store before and after it: a watch is judged
    // there too.
    let only_a = |key: &str| key == "a" || key == "b";
    let mut b_created = vec![event(3, "b", Some("2"), 1)];
    b_created[0].create_revision = 3;
    assert!(check_watch_events(&replay, &responses(b_created), (3, 3), only_a, &[]).is_ok());
    assert!(check_watch_events(&replay, &responses(Vec::new()), (3, 3), only_a, &[]).is_err());
}

#[test]
fn a_future_revision_refusal_is_a_violation_only_when_linearizable_and_acknowledged() {
    let model = Etcd::default();
    let refused = read(4, false, ReadOutcome::FutureRevision);
    assert_eq!(
        check(&model, &history(), std::slice::from_ref(&refused), &[]).len(),
        1
    );
    let mut serializable = refused;
    serializable.serializable = true;
    assert!(check(&model, &history(), &[serializable], &[]).is_empty());
}

fn event(revision: i64, key: &str, value: Option<&str>, version: i64) -> Event {
    Event {
        revision,
        key: key.into(),
        value: value.map(str::to_string),
        create_revision: if value.is_some() { 2 } else { 0 },
        version,
        lease: 0,
        prev: None,
    }
}

fn responses(events: Vec<Event>) -> Vec<Response> {
    vec![Response {
        stream: 1,
        header_revision: 5,
        created: false,
        events,
        received_ns: 50,
    }]
}

#[test]
fn watch_events_are_exactly_each_revision_s_changes() {
    // a=1 at 2, a=3 at 3 (b is not watched), a deleted at 4.
    let mut writes = vec![put(0, 10, "a", "1", 2), put(1, 20, "a", "3", 3)];
    writes.push(Operation {
        client: 0,
        invoke_ns: 30,
        complete_ns: Some(31),
        input: EtcdInput::Delete {
            key: "a".into(),
            range_end: None,
            prev_kv: false,
        },
        outcome: Outcome::Ok(EtcdOutput::Delete {
            header_revision: 4,
            deleted: 1,
            prev_kvs: Vec::new(),
        }),
        source_line: None,
    });
    let replay = Replay::of(&Etcd::default(), &writes);
    let compacted = [CompactionSent {
        revision: 4,
        sent_ns: 40,
    }];
    let only_a = |key: &str| key == "a";
    let check = |events: Vec<Event>| {
        check_watch_events(&replay, &responses(events), (0, 4), only_a, &compacted)
    };
    let right = vec![
        event(2, "a", Some("1"), 1),
        event(3, "a", Some("3"), 2),
        event(4, "a", None, 0),
    ];
    assert_eq!(check(right.clone()), Ok(()));
    // Without previous key-values: the compaction at 4, sent before the
    // events arrived (at 50), may have removed them; without it they are
    // missing.
    assert!(
        check_watch_events(&replay, &responses(right.clone()), (0, 4), only_a, &[])
            .unwrap_err()
            .contains("at revision 3")
    );
    let mut missing = right.clone();
    missing.remove(2);
    assert!(check(missing).unwrap_err().contains("at revision 4"));
    let mut wrong_version = right.clone();
    wrong_version[1].version = 3;
    assert!(check(wrong_version).is_err());
    let mut wrong_lease = right.clone();
    wrong_lease[1].lease = 7;
    assert!(
        check(wrong_lease).is_err(),
        "a put's event carries its key's lease"
    );
    let mut full_tombstone = right.clone();
    full_tombstone[2].version = 2;
    assert!(
        check(full_tombstone).is_err(),
        "a delete's event is etcd's tombstone: its key and revision only"
    );
    let mut with_prev = right.clone();
    with_prev[1].prev = Some(Previous {
        value: "1".into(),
        mod_revision: 2,
        create_revision: 2,
        version: 1,
        lease: 0,
    });
    assert_eq!(check(with_prev.clone()), Ok(()));
    let mut prev_with_a_lease = with_prev.clone();
    prev_with_a_lease[1].prev.as_mut().unwrap().lease = 7;
    assert!(check(prev_with_a_lease).is_err());
    with_prev[1].prev.as_mut().unwrap().mod_revision = 3;
    assert!(
        check(with_prev).is_err(),
        "the previous key-value is the key before"
    );
    // Revisions the watch was cut off from by compaction are not judged.
    let after_compaction = vec![event(3, "a", Some("3"), 2), event(4, "a", None, 0)];
    assert!(check(after_compaction.clone()).is_err());
    assert_eq!(
        check_watch_events(
            &replay,
            &responses(after_compaction),
            (3, 4),
            only_a,
            &compacted
        ),
        Ok(())
    );
}

#[test]
fn a_revoke_makes_its_revision_only_if_no_unanswered_write_could_have() {
    let operation = |at: u64, input: EtcdInput, outcome: Outcome<EtcdOutput>| Operation {
        client: 0,
        invoke_ns: at,
        complete_ns: Some(at + 10),
        input,
        outcome,
        source_line: None,
    };
    let leased = |value: &str, lease: i64| EtcdInput::Put {
        key: "a".into(),
        value: value.into(),
        prev_kv: false,
        ignore_value: false,
        lease,
        ignore_lease: false,
    };
    let grant = operation(
        0,
        EtcdInput::LeaseGrant { id: 1 },
        Outcome::Ok(EtcdOutput::LeaseGrant {
            header_revision: 1,
            id: 1,
        }),
    );
    let attach = operation(
        20,
        leased("1", 1),
        Outcome::Ok(EtcdOutput::Put {
            header_revision: 2,
            prev_kv: None,
        }),
    );
    // The unanswered put detached "a" at 3; the revoke then deleted
    // nothing and reported 3. Replayed at 2 it would delete "a".
    let detach = operation(40, leased("2", 0), Outcome::Indeterminate);
    let revoke = operation(
        45,
        EtcdInput::LeaseRevoke { id: 1 },
        Outcome::Ok(EtcdOutput::LeaseRevoke { header_revision: 3 }),
    );
    let history = vec![grant.clone(), attach.clone(), detach, revoke.clone()];
    assert_eq!(Replay::of(&Etcd::default(), &history).last(), 2);
    // With no unanswered write in flight, the revoke made 3.
    let history = vec![grant, attach, revoke];
    let replay = Replay::of(&Etcd::default(), &history);
    assert_eq!(replay.last(), 3);
    assert!(replay.at(3).unwrap().keys.is_empty());
}
