use std::collections::BTreeMap;

use super::*;

fn put(revision: i64, key: &str, value: &str, create_revision: i64, version: i64) -> Event {
    Event {
        revision,
        key: key.into(),
        value: Some(value.into()),
        create_revision,
        version,
        lease: 0,
        prev: None,
    }
}

fn delete(revision: i64, key: &str) -> Event {
    Event {
        revision,
        key: key.into(),
        value: None,
        create_revision: 0,
        version: 0,
        lease: 0,
        prev: None,
    }
}

fn with_prev(mut event: Event, value: &str, mod_revision: i64, create: i64, version: i64) -> Event {
    event.prev = Some(Previous {
        value: value.into(),
        mod_revision,
        create_revision: create,
        version,
        lease: 0,
    });
    event
}

fn response(stream: usize, header_revision: i64, events: Vec<Event>) -> Response {
    Response {
        stream,
        header_revision,
        created: false,
        events,
        // Each arrives at ten times its header revision.
        received_ns: header_revision as u64 * 10,
    }
}

fn compaction(revision: i64, sent_ns: u64) -> CompactionSent {
    CompactionSent { revision, sent_ns }
}

fn created(stream: usize, header_revision: i64) -> Response {
    Response {
        created: true,
        ..response(stream, header_revision, vec![])
    }
}

/// A correct record: k0 put twice, k1 put then deleted, a progress
/// notification, one resumption.
fn good() -> Vec<Response> {
    vec![
        created(1, 1),
        response(
            1,
            3,
            vec![put(2, "k0", "a;", 2, 1), put(3, "k1", "b;", 3, 1)],
        ),
        response(1, 3, vec![]),
        created(2, 3),
        response(
            2,
            5,
            vec![
                with_prev(put(4, "k0", "a;c;", 2, 2), "a;", 2, 2, 1),
                with_prev(delete(5, "k1"), "b;", 3, 3, 1),
            ],
        ),
    ]
}

#[test]
fn a_correct_record_passes_every_check() {
    let record = good();
    check_created(&record).unwrap();
    check_order(&record).unwrap();
    check_atomic(&record).unwrap();
    check_bookmarks(&record).unwrap();
    // Keys created by an event have no previous key-value to miss.
    check_prev_kv(&record, &[]).unwrap();
}

#[test]
fn prev_kv_must_be_the_key_just_before() {
    let record = vec![
        created(1, 1),
        response(1, 2, vec![put(2, "k0", "a;", 2, 1)]),
        response(
            1,
            3,
            vec![with_prev(put(3, "k0", "a;b;", 2, 2), "a;", 2, 2, 1)],
        ),
    ];
    check_prev_kv(&record, &[]).unwrap();
    // The event itself instead of what came before it.
    let mut wrong = record.clone();
    wrong[2].events[0] = with_prev(put(3, "k0", "a;b;", 2, 2), "a;b;", 3, 2, 2);
    let compacted = [compaction(3, 25)];
    assert!(check_prev_kv(&wrong, &compacted)
        .unwrap_err()
        .starts_with("watch prev_kv"));
    // Missing: a violation unless a compaction at the event's revision or
    // later, sent before it arrived (at 30), may have removed it.
    let mut missing = record.clone();
    missing[2].events[0].prev = None;
    check_prev_kv(&missing, &compacted).unwrap();
    assert!(check_prev_kv(&missing, &[]).is_err());
    assert!(check_prev_kv(&missing, &[compaction(2, 25)]).is_err());
    assert!(check_prev_kv(&missing, &[compaction(3, 35)]).is_err());
    // A previous key-value for a key that did not exist.
    let mut invented = record.clone();
    invented[1].events[0] = with_prev(put(2, "k0", "a;", 2, 1), "x;", 1, 1, 1);
    assert!(check_prev_kv(&invented, &compacted).is_err());
    // A version that does not count the writes.
    let mut version = record;
    version[2].events[0].version = 3;
    assert!(check_prev_kv(&version, &compacted).is_err());
}

#[test]
fn every_stream_opens_with_one_created_notification() {
    let mut record = good();
    record.remove(3);
    assert!(check_created(&record)
        .unwrap_err()
        .starts_with("watch created"));
    let mut twice = good();
    twice.insert(2, created(1, 3));
    assert!(check_created(&twice).is_err());
    let mut with_events = good();
    with_events[0].events.push(put(1, "k0", "x;", 1, 1));
    assert!(check_created(&with_events).is_err());
}

#[test]
fn order_and_uniqueness_hold_across_streams() {
    let mut back = good();
    back[4].events.insert(0, put(1, "k2", "z;", 1, 1));
    assert!(check_order(&back).unwrap_err().starts_with("watch ordered"));
    let mut twice = good();
    twice[4].events.insert(0, put(3, "k1", "b;", 3, 1));
    assert!(check_order(&twice).unwrap_err().starts_with("watch unique"));
}

#[test]
fn one_revision_comes_in_one_response() {
    let record = vec![
        created(1, 1),
        response(1, 2, vec![put(2, "k0", "a;", 2, 1)]),
        response(1, 2, vec![put(2, "k1", "b;", 2, 1)]),
    ];
    assert!(check_atomic(&record)
        .unwrap_err()
        .starts_with("watch atomic"));
}

#[test]
fn nothing_older_than_a_progress_notification_comes_after_it() {
    let mut record = good();
    // Progress at 3, then an event at 3.
    record[2].header_revision = 4;
    record[4].events[0].revision = 4;
    assert!(check_bookmarks(&record)
        .unwrap_err()
        .starts_with("watch bookmarkable"));
    let mut ahead = good();
    ahead[1].header_revision = 2;
    assert!(check_bookmarks(&ahead).is_err());
}

#[test]
fn a_filtered_watch_gets_exactly_the_other_events() {
    let all = good();
    let no_delete = vec![
        created(1, 1),
        response(
            1,
            3,
            vec![put(2, "k0", "a;", 2, 1), put(3, "k1", "b;", 3, 1)],
        ),
        response(1, 5, vec![put(4, "k0", "a;c;", 2, 2)]),
    ];
    check_filtered(&no_delete, Filter::NoDelete, &all, 5).unwrap();
    assert!(check_filtered(&no_delete, Filter::NoPut, &all, 5)
        .unwrap_err()
        .starts_with("watch filters"));
    // One put left out.
    let mut short = no_delete.clone();
    short[2].events.clear();
    assert!(check_filtered(&short, Filter::NoDelete, &all, 5).is_err());
    // ... but beyond `up_to` nothing is owed yet.
    check_filtered(&short, Filter::NoDelete, &all, 3).unwrap();
}

#[test]
fn replaying_the_events_gives_what_the_members_hold() {
    let record = good();
    let watched = |key: &str| key.starts_with('k');
    let view = BTreeMap::from([("k0".to_string(), ("a;c;".to_string(), 4))]);
    check_replay(&record, &view, 5, watched).unwrap();
    let stale = BTreeMap::from([("k0".to_string(), ("a;".to_string(), 2))]);
    assert!(check_replay(&record, &stale, 5, watched)
        .unwrap_err()
        .starts_with("watch reliable"));
    check_acknowledged(&record, [("k0", "c;"), ("x", "q;")].into_iter(), watched).unwrap();
    assert!(check_acknowledged(&record, [("k1", "d;")].into_iter(), watched).is_err());
}
