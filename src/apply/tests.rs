//! Apply semantics that etcdctl cannot reach (min/max revision filters,
//! nested txns), checked directly on the state machine.

use super::*;
use crate::proto::etcdserverpb::{
    compare, range_request, request_op, response_op, Compare, RequestOp,
};

fn machine_with(keys: &[(&str, &str)]) -> (StateMachine, u64) {
    let mut machine = StateMachine::new(0, Members::default());
    let mut index = 0;
    for (key, value) in keys {
        index += 1;
        let put = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        };
        machine
            .apply(index, Some(&Request::Put(put)))
            .unwrap()
            .unwrap();
    }
    (machine, index)
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

#[test]
fn revision_filters_prune_after_count_like_etcd() {
    let (machine, _) = machine_with(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    let request = RangeRequest {
        key: b"a".to_vec(),
        range_end: vec![0],
        min_mod_revision: 3,
        max_mod_revision: 4,
        ..Default::default()
    };
    let response = machine.range(&request).unwrap();
    assert_eq!(keys(&response), ["b", "c"]);
    assert_eq!(response.count, 4, "etcd counts before it filters");
    let limited = machine
        .range(&RangeRequest {
            limit: 1,
            ..request
        })
        .unwrap();
    assert_eq!(keys(&limited), ["b"]);
    assert!(limited.more);
    let by_creation = machine
        .range(&RangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            min_create_revision: 3,
            max_create_revision: 4,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&by_creation), ["b", "c"], "both bounds are inclusive");
}

#[test]
fn sort_by_value_descending_with_limit_sets_more() {
    let (machine, _) = machine_with(&[("a", "2"), ("b", "3"), ("c", "1")]);
    let request = RangeRequest {
        key: b"a".to_vec(),
        range_end: vec![0],
        sort_order: range_request::SortOrder::Descend as i32,
        sort_target: range_request::SortTarget::Value as i32,
        limit: 2,
        ..Default::default()
    };
    let response = machine.range(&request).unwrap();
    assert_eq!(keys(&response), ["b", "a"]);
    assert!(response.more);
    assert_eq!(response.count, 3);
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

fn value_equals(key: &str, value: &str) -> Compare {
    Compare {
        key: key.into(),
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Value as i32,
        target_union: Some(compare::TargetUnion::Value(value.into())),
        ..Default::default()
    }
}

#[test]
fn nested_txn_compares_see_the_state_before_the_txn() {
    let (mut machine, index) = machine_with(&[("k", "old")]);
    let nested = TxnRequest {
        compare: vec![value_equals("k", "old")],
        success: vec![put_op("seen", "old")],
        failure: vec![put_op("seen", "new")],
    };
    let outer = TxnRequest {
        compare: vec![],
        success: vec![
            put_op("k", "new"),
            RequestOp {
                request: Some(request_op::Request::RequestTxn(nested)),
            },
        ],
        failure: vec![],
    };
    let Response::Txn(response) = machine
        .apply(index + 1, Some(&Request::Txn(outer)))
        .unwrap()
        .unwrap()
    else {
        panic!()
    };
    assert!(response.succeeded);
    let seen = machine
        .range(&RangeRequest {
            key: b"seen".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        seen.kvs[0].value, b"old",
        "the nested compare ran before the outer put"
    );
    assert_eq!(
        response.header.unwrap().revision,
        3,
        "one revision for the whole txn"
    );
    let Some(response_op::Response::ResponseTxn(nested_response)) = &response.responses[1].response
    else {
        panic!()
    };
    assert_eq!(
        nested_response.header,
        Some(ResponseHeader::default()),
        "nested headers stay empty, as in etcd"
    );
}

#[test]
fn entries_at_or_below_the_applied_index_are_skipped() {
    let (mut machine, index) = machine_with(&[("k", "v")]);
    let again = PutRequest {
        key: b"k".to_vec(),
        value: b"v2".to_vec(),
        ..Default::default()
    };
    assert!(
        machine.apply(index, Some(&Request::Put(again))).is_none(),
        "a replayed entry is not applied twice"
    );
    assert_eq!(machine.store().current_revision(), 2);
}

#[test]
fn quota_refuses_writes_that_would_exceed_it() {
    let mut machine = StateMachine::new(600, Members::default());
    let put = |key: &str| {
        Request::Put(PutRequest {
            key: key.into(),
            value: vec![b'x'; 100],
            ..Default::default()
        })
    };
    assert!(machine.apply(1, Some(&put("a"))).unwrap().is_ok());
    assert_eq!(
        machine.apply(2, Some(&put("b"))).unwrap(),
        Err(Error::NoSpace)
    );
    assert_eq!(
        machine.store().current_revision(),
        2,
        "a refused write changes nothing"
    );
}

#[test]
fn state_image_round_trips() {
    let (machine, _) = machine_with(&[("a", "1"), ("b", "2")]);
    let decoded = StateMachine::decode(&machine.encode().unwrap(), 0).unwrap();
    assert_eq!(decoded.state_hash().unwrap(), machine.state_hash().unwrap());
    assert_eq!(decoded.applied_index(), 2);
}

#[test]
fn images_of_other_formats_are_refused() {
    // The hand-made layout before the protobuf one began with version 5.
    let error = StateMachine::decode(&[5, 2, 0, 0, 0, 0, 0, 0, 0], 0).unwrap_err();
    assert!(error.contains("not a state image"), "{error}");
    let (machine, _) = machine_with(&[("a", "1")]);
    let mut image = machine.encode().unwrap();
    assert_eq!(image[..2], [8, 1], "the format field leads");
    image[1] = 9;
    let error = StateMachine::decode(&image, 0).unwrap_err();
    assert!(error.contains("unknown state image format 9"), "{error}");
    let error = StateMachine::from_stored(&[5, 2, 0], crate::mvcc::Store::new(), 0).unwrap_err();
    assert!(error.contains("not a state's parts"), "{error}");
}

fn alarm(action: AlarmAction, member_id: u64) -> Request {
    Request::Alarm(AlarmRequest {
        action: action as i32,
        member_id,
        alarm: crate::proto::etcdserverpb::AlarmType::Nospace as i32,
    })
}

#[test]
fn a_nospace_alarm_caps_writes_until_it_is_disarmed() {
    let (mut machine, mut index) = machine_with(&[("a", "1"), ("b", "2")]);
    let mut apply = |machine: &mut StateMachine, request: Request| {
        index += 1;
        machine
            .apply(index, Some(&request))
            .expect("a new index is applied")
    };
    let raised = apply(&mut machine, alarm(AlarmAction::Activate, 7)).unwrap();
    assert_eq!(
        raised,
        Response::Alarms(vec![AlarmMember {
            member_id: 7,
            alarm: 1
        }])
    );
    let put = || {
        Request::Put(PutRequest {
            key: b"c".to_vec(),
            value: b"3".to_vec(),
            ..Default::default()
        })
    };
    assert_eq!(apply(&mut machine, put()), Err(Error::NoSpace));
    let txn_put = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"c".to_vec(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    assert_eq!(
        apply(&mut machine, Request::Txn(txn_put)),
        Err(Error::NoSpace)
    );
    let delete = Request::DeleteRange(DeleteRangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    });
    assert!(
        apply(&mut machine, delete).is_ok(),
        "deletes free space: allowed under NOSPACE"
    );
    assert_eq!(
        machine.store().current_revision(),
        4,
        "only the delete changed the store"
    );

    // The alarm is part of the state image.
    let restored = StateMachine::decode(&machine.encode().unwrap(), 0).unwrap();
    assert_eq!(
        restored.alarms(0),
        vec![AlarmMember {
            member_id: 7,
            alarm: 1
        }]
    );
    assert_eq!(
        restored.state_hash().unwrap(),
        machine.state_hash().unwrap()
    );

    assert_eq!(
        apply(&mut machine, alarm(AlarmAction::Deactivate, 8)).unwrap(),
        Response::Alarms(vec![]),
        "not raised for 8"
    );
    assert_eq!(
        apply(&mut machine, alarm(AlarmAction::Deactivate, 7)).unwrap(),
        Response::Alarms(vec![AlarmMember {
            member_id: 7,
            alarm: 1
        }])
    );
    assert!(
        apply(&mut machine, put()).is_ok(),
        "disarmed: writes work again"
    );
    assert_eq!(
        describe_alarm(&AlarmMember {
            member_id: 7,
            alarm: 1
        }),
        "memberID:7 alarm:NOSPACE "
    );
    assert_eq!(
        describe_alarm(&AlarmMember {
            member_id: 7,
            alarm: 0
        }),
        "memberID:7 ",
        "a NONE alarm's type is left out, as protobuf's text form leaves zeros"
    );
}

/// etcd's applierV3Corrupt: under a CORRUPT alarm every request that goes
/// through raft to read or change keys or leases is refused, leases do
/// not expire, and all works again once it is disarmed.
#[test]
fn a_corrupt_alarm_refuses_key_and_lease_changes_until_it_is_disarmed() {
    let (mut machine, mut index) = machine_with(&[("a", "1")]);
    let mut apply = |machine: &mut StateMachine, request: Request| {
        index += 1;
        machine
            .apply(index, Some(&request))
            .expect("a new index is applied")
    };
    assert!(apply(&mut machine, grant(5, 60)).is_ok());
    let corrupt = |action: AlarmAction| {
        Request::Alarm(AlarmRequest {
            action: action as i32,
            member_id: 7,
            alarm: crate::proto::etcdserverpb::AlarmType::Corrupt as i32,
        })
    };
    assert!(apply(&mut machine, corrupt(AlarmAction::Activate)).is_ok());
    let revision = machine.store().current_revision();
    let put = Request::Put(PutRequest {
        key: b"b".to_vec(),
        value: b"2".to_vec(),
        ..Default::default()
    });
    let refused = [
        put.clone(),
        Request::DeleteRange(DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        }),
        Request::Txn(TxnRequest::default()),
        Request::Compaction(crate::proto::etcdserverpb::CompactionRequest {
            revision: 1,
            ..Default::default()
        }),
        grant(6, 60),
        Request::LeaseRevoke(crate::proto::etcdserverpb::LeaseRevokeRequest { id: 5 }),
    ];
    for request in refused {
        assert_eq!(
            apply(&mut machine, request.clone()),
            Err(Error::Corrupt),
            "{request:?}"
        );
    }
    assert_eq!(machine.store().current_revision(), revision);
    assert!(machine.leases().contains(5), "not revoked");
    assert!(apply(&mut machine, corrupt(AlarmAction::Deactivate)).is_ok());
    assert!(
        apply(&mut machine, put).is_ok(),
        "disarmed: writes work again"
    );
}

fn grant(id: i64, ttl: i64) -> Request {
    Request::LeaseGrant(LeaseGrantRequest { id, ttl })
}

fn put_with_lease(key: &str, lease: i64) -> Request {
    Request::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    })
}

fn lease_keys(machine: &StateMachine, id: i64) -> Vec<String> {
    machine
        .leases()
        .get(id)
        .unwrap()
        .keys
        .iter()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect()
}

#[test]
fn a_revoke_deletes_every_attached_key_in_one_revision() {
    let (mut machine, mut index) = machine_with(&[("other", "x")]);
    let mut apply = |machine: &mut StateMachine, request: Request| {
        index += 1;
        machine.apply(index, Some(&request)).unwrap()
    };
    assert_eq!(
        apply(&mut machine, put_with_lease("a", 7)),
        Err(Error::LeaseNotFound),
        "a put naming an unknown lease fails and writes nothing"
    );
    let Ok(Response::LeaseGrant(granted)) = apply(&mut machine, grant(7, 60)) else {
        panic!("grant failed")
    };
    assert_eq!((granted.id, granted.ttl), (7, 60));
    assert_eq!(apply(&mut machine, grant(7, 60)), Err(Error::LeaseExists));
    for key in ["a", "b", "c"] {
        apply(&mut machine, put_with_lease(key, 7)).unwrap();
    }
    // Overwritten without the lease: c leaves it.
    apply(&mut machine, put_with_lease("c", 0)).unwrap();
    assert_eq!(lease_keys(&machine, 7), ["a", "b"]);
    let before = machine.store().current_revision();
    let revoked = apply(
        &mut machine,
        Request::LeaseRevoke(crate::proto::etcdserverpb::LeaseRevokeRequest { id: 7 }),
    );
    assert!(matches!(revoked, Ok(Response::LeaseRevoke(_))));
    assert_eq!(machine.store().current_revision(), before + 1);
    let all = machine
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&all), ["c", "other"]);
    assert!(machine.leases().get(7).is_none());
    assert_eq!(
        apply(
            &mut machine,
            Request::LeaseRevoke(crate::proto::etcdserverpb::LeaseRevokeRequest { id: 7 })
        ),
        Err(Error::LeaseNotFound)
    );
}

#[test]
fn a_txn_put_needs_its_lease_and_an_expiry_loses_to_a_renewal() {
    let (mut machine, _) = machine_with(&[]);
    machine.apply(1, Some(&grant(0, 30))).unwrap().unwrap();
    let id = machine.leases().iter().next().unwrap().id;
    assert!(id > 0, "an id is picked when none is asked for");
    let txn = |lease: i64| {
        Request::Txn(TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"k".to_vec(),
                    lease,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        })
    };
    assert_eq!(
        machine.apply(2, Some(&txn(id + 1))).unwrap(),
        Err(Error::LeaseNotFound)
    );
    machine.apply(3, Some(&txn(id))).unwrap().unwrap();
    assert_eq!(lease_keys(&machine, id), ["k"]);
    // The leader saw the lease expire as granted at 1, but a keepalive
    // committed first: the expiry is void.
    let renew = Request::LeaseRenew(crate::proto::detcdpb::LeaseRenew { id });
    assert_eq!(
        machine.apply(4, Some(&renew)).unwrap(),
        Ok(Response::LeaseRenewed { id, ttl: 30 })
    );
    let expire = |renewed_at| {
        Request::LeaseExpire(LeaseExpiries {
            expiries: vec![crate::proto::detcdpb::LeaseExpiry { id, renewed_at }],
        })
    };
    assert_eq!(
        machine.apply(5, Some(&expire(1))).unwrap(),
        Ok(Response::LeasesExpired(vec![]))
    );
    assert_eq!(lease_keys(&machine, id), ["k"]);
    assert_eq!(
        machine.apply(6, Some(&expire(4))).unwrap(),
        Ok(Response::LeasesExpired(vec![id]))
    );
    assert!(machine.leases().is_empty());
    assert!(machine
        .range(&RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .unwrap()
        .kvs
        .is_empty());
}

#[test]
fn leases_survive_the_state_image_with_their_keys() {
    let (mut machine, _) = machine_with(&[]);
    machine.apply(1, Some(&grant(5, 30))).unwrap().unwrap();
    machine.apply(2, Some(&grant(6, 40))).unwrap().unwrap();
    machine
        .apply(3, Some(&put_with_lease("a", 5)))
        .unwrap()
        .unwrap();
    machine
        .apply(4, Some(&put_with_lease("b", 6)))
        .unwrap()
        .unwrap();
    let checkpoint = Request::LeaseCheckpoint(LeaseCheckpoints {
        checkpoints: vec![crate::proto::detcdpb::LeaseCheckpoint {
            id: 6,
            remaining_millis: 12_000,
            renewed_at: 2,
        }],
    });
    assert_eq!(
        machine.apply(5, Some(&checkpoint)).unwrap(),
        Ok(Response::LeaseCheckpointed(vec![(6, 12_000)]))
    );
    let decoded = StateMachine::decode(&machine.encode().unwrap(), 0).unwrap();
    assert_eq!(decoded.leases(), machine.leases());
    assert_eq!(decoded.state_hash().unwrap(), machine.state_hash().unwrap());
    assert_eq!(
        decoded.leases().get(6).unwrap().resume_from(),
        std::time::Duration::from_secs(12)
    );
}

/// The backend rewrites members, alarms, leases and auth only when they
/// may have changed: key-value requests never change them (a lease's keys
/// are not stored), everything else may.
#[test]
fn the_parts_are_handed_out_again_only_after_a_change() {
    let (mut machine, mut index) = machine_with(&[("a", "1")]);
    let mut apply = |machine: &mut StateMachine, request: Request| {
        index += 1;
        machine.apply(index, Some(&request)).unwrap().unwrap();
    };
    assert!(machine.take_parts_if_changed().is_some(), "a new state");
    assert_eq!(machine.take_parts_if_changed(), None, "nothing since");
    apply(&mut machine, grant(7, 60));
    let parts = machine.take_parts_if_changed().expect("a grant");
    apply(&mut machine, put_with_lease("k", 7));
    apply(
        &mut machine,
        Request::DeleteRange(DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        }),
    );
    assert_eq!(machine.take_parts_if_changed(), None, "only keys changed");
    assert_eq!(
        machine.encode_parts().len(),
        parts.len(),
        "and the parts are what they were"
    );
    apply(
        &mut machine,
        Request::LeaseRenew(crate::proto::detcdpb::LeaseRenew { id: 7 }),
    );
    assert!(machine.take_parts_if_changed().is_some(), "a renewal");
    apply(&mut machine, alarm(AlarmAction::Activate, 1));
    assert!(machine.take_parts_if_changed().is_some(), "an alarm");
}
