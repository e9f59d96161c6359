//! Transactions, as etcd 3.4 applies them: every compare (nested ones
//! included) is evaluated against the state before the transaction, the
//! requests of the chosen branches are checked, then executed in one write
//! transaction so they share one revision.

use super::{delete_range, header, key_range_end, put, range, View};
use crate::error::Error;
use crate::lease::Leases;
use crate::mvcc::{KeyValue, RangeOptions, Store};
use crate::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op, response_op, Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

/// A transaction is read-only when every request in both branches is a range.
pub fn is_read_only(request: &TxnRequest) -> bool {
    let all_ranges = |ops: &[RequestOp]| {
        ops.iter()
            .all(|op| matches!(op.request, Some(request_op::Request::RequestRange(_))))
    };
    all_ranges(&request.success) && all_ranges(&request.failure)
}

/// A read-only transaction may be served locally without a read index
/// only when every range asks to be serializable (etcd `isTxnSerializable`).
pub fn is_serializable(request: &TxnRequest) -> bool {
    let all_serializable = |ops: &[RequestOp]| {
        ops.iter().all(|op| matches!(&op.request, Some(request_op::Request::RequestRange(range)) if range.serializable))
    };
    all_serializable(&request.success) && all_serializable(&request.failure)
}

/// Answers a read-only transaction from the current state.
pub fn read_only(store: &Store, request: &TxnRequest) -> Result<TxnResponse, Error> {
    let path = compare_path(store, request);
    check_ranges(store, request, &path, &mut 0)?;
    let mut response = execute(&mut ReadOnly(store), request, &path, &mut 0)?;
    response.header = Some(header(store.current_revision()));
    Ok(response)
}

/// Applies a transaction that may write.
/// Attached keys follow its puts and deletes.
pub fn apply(
    store: &mut Store,
    leases: &mut Leases,
    request: &TxnRequest,
) -> Result<TxnResponse, Error> {
    let path = compare_path(store, request);
    if !is_read_only(request) {
        check_puts(store, leases, request, &path, &mut 0)?;
    }
    #[cfg(madsim)]
    let checked = !crate::sabotage::active(crate::sabotage::Sabotage::TxnRangeRevisionUnchecked);
    #[cfg(not(madsim))]
    let checked = true;
    if checked {
        check_ranges(store, request, &path, &mut 0)?;
    }
    let mut write = store.write();
    let mut response = execute(&mut Writing(&mut write), request, &path, &mut 0)?;
    response.header = Some(header(write.rev()));
    let changes = write.end();
    leases.record_changes(&changes);
    Ok(response)
}

/// The outcome of every (nested) compare block in pre-order: which branch
/// each transaction on the taken path takes (etcd `compareToPath`).
fn compare_path(store: &Store, request: &TxnRequest) -> Vec<bool> {
    let mut path = Vec::new();
    push_path(store, request, compares_hold(store, request), &mut path);
    path
}

fn compares_hold(store: &Store, request: &TxnRequest) -> bool {
    request
        .compare
        .iter()
        .all(|compare| compare_holds(store, compare))
}

fn push_path(store: &Store, request: &TxnRequest, succeeded: bool, path: &mut Vec<bool>) {
    path.push(succeeded);
    for op in branch(request, succeeded) {
        if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
            let succeeded = compares_hold(store, inner);
            #[cfg(madsim)]
            let succeeded = succeeded
                || crate::sabotage::active(crate::sabotage::Sabotage::NestedComparesIgnored);
            push_path(store, inner, succeeded, path);
        }
    }
}

fn branch(request: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &request.success
    } else {
        &request.failure
    }
}

/// etcd `applyCompare`: a compare over a key range holds if it holds for
/// every key; over no key it is tested against an empty key-value, except
/// that a value compare on a missing key always fails.
fn compare_holds(store: &Store, compare: &Compare) -> bool {
    let Ok(result) = store.range(
        &compare.key,
        key_range_end(&compare.range_end),
        &RangeOptions::default(),
    ) else {
        return false;
    };
    let target = CompareTarget::try_from(compare.target).unwrap_or(CompareTarget::Version);
    if result.kvs.is_empty() {
        return target != CompareTarget::Value
            && compare_key_value(compare, target, &KeyValue::default());
    }
    #[cfg(madsim)]
    if crate::sabotage::active(crate::sabotage::Sabotage::RangeCompareFirstKeyOnly) {
        return compare_key_value(compare, target, &result.kvs[0]);
    }
    result
        .kvs
        .iter()
        .all(|kv| compare_key_value(compare, target, kv))
}

fn compare_key_value(compare: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    let number = |wanted: Option<i64>, actual: i64| actual.cmp(&wanted.unwrap_or(0));
    let ordering = match target {
        CompareTarget::Value => {
            let wanted = match &compare.target_union {
                Some(TargetUnion::Value(value)) => value.as_slice(),
                _ => &[],
            };
            kv.value.as_slice().cmp(wanted)
        }
        CompareTarget::Create => number(
            union_number(compare, CompareTarget::Create),
            kv.create_revision,
        ),
        CompareTarget::Mod => number(union_number(compare, CompareTarget::Mod), kv.mod_revision),
        CompareTarget::Version => number(union_number(compare, CompareTarget::Version), kv.version),
        CompareTarget::Lease => number(union_number(compare, CompareTarget::Lease), kv.lease),
    };
    match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => ordering.is_eq(),
        Ok(CompareResult::NotEqual) => ordering.is_ne(),
        Ok(CompareResult::Greater) => ordering.is_gt(),
        Ok(CompareResult::Less) => ordering.is_lt(),
        Err(_) => true,
    }
}

/// The number the compare holds for `target`, if its union carries that
/// kind (a mismatched union compares against 0, as in etcd).
fn union_number(compare: &Compare, target: CompareTarget) -> Option<i64> {
    match (&compare.target_union, target) {
        (Some(TargetUnion::CreateRevision(n)), CompareTarget::Create) => Some(*n),
        (Some(TargetUnion::ModRevision(n)), CompareTarget::Mod) => Some(*n),
        (Some(TargetUnion::Version(n)), CompareTarget::Version) => Some(*n),
        (Some(TargetUnion::Lease(n)), CompareTarget::Lease) => Some(*n),
        _ => None,
    }
}

/// Visits the requests of the taken branches, depth first, in the order
/// `compare_path` recorded them.
fn for_each_taken(
    request: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
    check: &mut impl FnMut(&request_op::Request) -> Result<(), Error>,
) -> Result<(), Error> {
    let succeeded = path[*cursor];
    *cursor += 1;
    for op in branch(request, succeeded) {
        match &op.request {
            Some(request_op::Request::RequestTxn(nested)) => {
                for_each_taken(nested, path, cursor, check)?
            }
            Some(other) => check(other)?,
            None => {}
        }
    }
    Ok(())
}

/// etcd `checkRequestPut`: ignore_value/ignore_lease need the key to exist
/// before the transaction, and a lease must exist.
fn check_puts(
    store: &Store,
    leases: &Leases,
    request: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
) -> Result<(), Error> {
    for_each_taken(request, path, cursor, &mut |op| {
        let request_op::Request::RequestPut(put) = op else {
            return Ok(());
        };
        if put.ignore_value || put.ignore_lease {
            let existing = store.range(&put.key, None, &RangeOptions::default())?;
            if existing.kvs.is_empty() {
                return Err(Error::KeyNotFound);
            }
        }
        if put.lease != 0 && !leases.contains(put.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    })
}

/// etcd `checkRequestRange`: a range at a future or compacted revision
/// fails the whole transaction before anything is written.
fn check_ranges(
    store: &Store,
    request: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
) -> Result<(), Error> {
    for_each_taken(request, path, cursor, &mut |op| {
        let request_op::Request::RequestRange(range) = op else {
            return Ok(());
        };
        if range.revision == 0 {
            Ok(())
        } else if range.revision > store.current_revision() {
            Err(Error::FutureRevision)
        } else if range.revision < store.compact_revision() {
            Err(Error::Compacted)
        } else {
            Ok(())
        }
    })
}

/// Where transaction requests run: a read-only view, or a write transaction.
trait Executor {
    fn view(&self) -> &dyn ViewObject;
    fn write(&mut self, op: &request_op::Request) -> Result<response_op::Response, Error>;
}

/// `View` made object-safe for the executor.
trait ViewObject {
    fn range(
        &self,
        request: &crate::proto::etcdserverpb::RangeRequest,
    ) -> Result<crate::proto::etcdserverpb::RangeResponse, Error>;
}

impl<V: View> ViewObject for V {
    fn range(
        &self,
        request: &crate::proto::etcdserverpb::RangeRequest,
    ) -> Result<crate::proto::etcdserverpb::RangeResponse, Error> {
        range(self, request)
    }
}

struct ReadOnly<'s>(&'s Store);
struct Writing<'w, 's>(&'w mut crate::mvcc::WriteTxn<'s>);

impl Executor for ReadOnly<'_> {
    fn view(&self) -> &dyn ViewObject {
        self.0
    }
    fn write(&mut self, _op: &request_op::Request) -> Result<response_op::Response, Error> {
        unreachable!("a read-only transaction holds only ranges")
    }
}

impl Executor for Writing<'_, '_> {
    fn view(&self) -> &dyn ViewObject {
        &*self.0
    }
    fn write(&mut self, op: &request_op::Request) -> Result<response_op::Response, Error> {
        match op {
            request_op::Request::RequestPut(request) => {
                #[allow(unused_mut)]
                let mut response = put(self.0, request)?;
                #[cfg(madsim)]
                if crate::sabotage::active(crate::sabotage::Sabotage::TxnPutDropsPrevKv) {
                    response.prev_kv = None;
                }
                Ok(response_op::Response::ResponsePut(response))
            }
            request_op::Request::RequestDeleteRange(request) => Ok(
                response_op::Response::ResponseDeleteRange(delete_range(self.0, request)),
            ),
            _ => unreachable!("only puts and deletes write"),
        }
    }
}

/// Runs the requests of the taken branches (etcd `applyTxn`). A nested
/// transaction's response carries an empty header, as in etcd.
fn execute(
    executor: &mut dyn Executor,
    request: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
) -> Result<TxnResponse, Error> {
    let succeeded = path[*cursor];
    *cursor += 1;
    let mut responses = Vec::new();
    for op in branch(request, succeeded) {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(range)) => Some(
                response_op::Response::ResponseRange(executor.view().range(range)?),
            ),
            Some(request_op::Request::RequestTxn(nested)) => Some(
                response_op::Response::ResponseTxn(execute(executor, nested, path, cursor)?),
            ),
            Some(write) => Some(executor.write(write)?),
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: Some(Default::default()),
        succeeded,
        responses,
    })
}
