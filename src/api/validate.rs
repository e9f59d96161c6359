//! Stateless request checks done before a request reaches raft, exactly
//! as etcd's `v3rpc/key.go` does them: a bad request changes nothing.

use std::collections::BTreeSet;

use crate::error::Error;
use crate::proto::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

pub fn range(request: &RangeRequest) -> Result<(), Error> {
    if request.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub fn put(request: &PutRequest) -> Result<(), Error> {
    if request.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(request: &DeleteRangeRequest) -> Result<(), Error> {
    if request.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// etcd `checkTxnRequest` then `checkIntervals` on both branches.
pub fn txn(request: &TxnRequest, max_txn_ops: usize) -> Result<(), Error> {
    txn_ops(request, max_txn_ops as i64, 1)?;
    check_intervals(&request.success)?;
    check_intervals(&request.failure)?;
    Ok(())
}

/// Nested transactions share the op budget: each level may use what its
/// parent's widest list left over (etcd passes `maxTxnOps - opc` down).
/// With etcd's default budget that allows `TXN_DEPTH_MAX` levels; a larger
/// `--max-txn-ops` does not allow more, because deeper would not decode
/// (`proto::txn_op` says why), and a proposal must always decode.
fn txn_ops(request: &TxnRequest, max_txn_ops: i64, depth: usize) -> Result<(), Error> {
    if depth > crate::proto::TXN_DEPTH_MAX {
        return Err(Error::TooManyOps);
    }
    let widest = request
        .compare
        .len()
        .max(request.success.len())
        .max(request.failure.len()) as i64;
    if widest > max_txn_ops {
        return Err(Error::TooManyOps);
    }
    if request.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in request.success.iter().chain(&request.failure) {
        request_op(op, max_txn_ops - widest, depth)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, max_txn_ops: i64, depth: usize) -> Result<(), Error> {
    match &op.request {
        Some(request_op::Request::RequestRange(request)) => range(request),
        Some(request_op::Request::RequestPut(request)) => put(request),
        Some(request_op::Request::RequestDeleteRange(request)) => delete_range(request),
        Some(request_op::Request::RequestTxn(request)) => txn_ops(request, max_txn_ops, depth + 1),
        // An empty op: etcd answers "key not found".
        None => Err(Error::KeyNotFound),
    }
}

/// A deleted key range, `[start, end)`; `end: None` is unbounded.
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn contains(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && self.end.as_deref().is_none_or(|end| key < end)
    }
}

/// etcd `checkIntervals`: within one transaction a key may be put at most
/// once and not also deleted, except that the two branches of a nested
/// transaction may put the same key (only one of them runs).
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<Interval>), Error> {
    let mut deletes: Vec<Interval> = Vec::new();
    for op in ops {
        if let Some(request_op::Request::RequestDeleteRange(delete)) = &op.request {
            let end = if delete.range_end.is_empty() {
                let mut point_end = delete.key.clone();
                point_end.push(0);
                point_end
            } else {
                delete.range_end.clone()
            };
            deletes.push(Interval {
                start: delete.key.clone(),
                end: Some(end),
            });
        }
    }
    let deleted =
        |deletes: &[Interval], key: &[u8]| deletes.iter().any(|interval| interval.contains(key));
    let mut puts = BTreeSet::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, deletes_then) = check_intervals(&nested.success)?;
        let (puts_else, deletes_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted(&deletes, key) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            if (puts.contains(&key) && !puts_then.contains(&key)) || deleted(&deletes, &key) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key);
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(put)) = &op.request else {
            continue;
        };
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::TxnDuplicateKeysAccepted) {
            continue;
        }
        if puts.contains(&put.key) || deleted(&deletes, &put.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deletes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::TxnRequest;

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn delete(key: &str, range_end: &str) -> RequestOp {
        let delete = DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..Default::default()
        };
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(delete)),
        }
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }

    fn check(success: Vec<RequestOp>, expected: Result<(), Error>) {
        let request = TxnRequest {
            compare: vec![],
            success,
            failure: vec![],
        };
        assert_eq!(txn(&request, 128), expected);
    }

    #[test]
    fn duplicate_keys_follow_etcds_interval_rules() {
        check(vec![put("a"), put("b")], Ok(()));
        check(vec![put("a"), put("a")], Err(Error::DuplicateKey));
        check(vec![put("b"), delete("a", "c")], Err(Error::DuplicateKey));
        check(vec![put("c"), delete("a", "c")], Ok(()));
        check(vec![put("a"), delete("a", "")], Err(Error::DuplicateKey));
        check(vec![nested(vec![put("a")], vec![put("a")])], Ok(()));
        check(
            vec![put("a"), nested(vec![put("a")], vec![])],
            Err(Error::DuplicateKey),
        );
        check(
            vec![delete("a", "z"), nested(vec![put("b")], vec![])],
            Err(Error::DuplicateKey),
        );
        check(vec![RequestOp { request: None }], Err(Error::KeyNotFound));
    }

    #[test]
    fn op_budget_is_shared_with_nested_txns() {
        let wide: Vec<RequestOp> = (0..128).map(|n| put(&format!("k{n}"))).collect();
        check(wide.clone(), Ok(()));
        check([wide, vec![put("x")]].concat(), Err(Error::TooManyOps));
        let inner: Vec<RequestOp> = (0..3).map(|n| put(&format!("i{n}"))).collect();
        let request = TxnRequest {
            compare: vec![],
            success: vec![put("a"), put("b"), nested(inner, vec![])],
            failure: vec![],
        };
        assert_eq!(
            txn(&request, 5),
            Err(Error::TooManyOps),
            "3 ops at the top leave 2 for the nested txn"
        );
    }

    fn chain(depth: usize) -> TxnRequest {
        crate::proto::nested_txn(depth, put("k"))
    }

    #[test]
    fn nesting_depth_follows_etcds_budget_and_never_exceeds_what_decodes() {
        let max = crate::proto::TXN_DEPTH_MAX;
        assert_eq!(txn(&chain(49), 128), Ok(()));
        assert_eq!(
            txn(&chain(128), 128),
            Ok(()),
            "etcd's default budget allows 128 levels"
        );
        assert_eq!(txn(&chain(129), 128), Err(Error::TooManyOps));
        assert_eq!(txn(&chain(max), 100_000), Ok(()));
        assert_eq!(
            txn(&chain(max + 1), 100_000),
            Err(Error::TooManyOps),
            "a larger budget never allows what would not decode"
        );
    }
}
