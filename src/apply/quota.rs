//! The backend quota (`--quota-backend-bytes`): writes that would grow the
//! state past it fail with etcd's "database space exceeded".
//!
//! etcd measures its bbolt file; we measure the in-memory MVCC size plus a
//! per-key overhead, so every member decides identically at apply time.

use crate::error::Error;
use crate::mvcc::Store;
use crate::proto::etcdserverpb::{request_op, PutRequest, TxnRequest};

/// etcd's default quota: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
/// Bytes charged per key-value besides key and value (etcd `kvOverhead`).
pub const KV_OVERHEAD_BYTES: u64 = 256;

#[derive(Clone, Copy, Debug)]
pub struct Quota {
    /// `None`: no quota (a negative flag value).
    limit_bytes: Option<u64>,
}

impl Quota {
    pub fn new(flag_bytes: i64) -> Quota {
        let limit_bytes = match flag_bytes {
            0 => Some(DEFAULT_QUOTA_BYTES as u64),
            bytes if bytes < 0 => None,
            bytes => Some(bytes as u64),
        };
        Quota { limit_bytes }
    }

    pub fn check(&self, store: &Store, cost_bytes: u64) -> Result<(), Error> {
        match self.limit_bytes {
            Some(limit)
                if store.size_bytes()
                    + store.key_count() as u64 * KV_OVERHEAD_BYTES
                    + cost_bytes
                    > limit =>
            {
                Err(Error::NoSpace)
            }
            _ => Ok(()),
        }
    }
}

/// What a put adds, as the quota counts it.
pub fn put_cost(request: &PutRequest) -> u64 {
    (request.key.len() + request.value.len()) as u64 + KV_OVERHEAD_BYTES
}

/// The larger of the two branches' put costs, nested transactions included.
pub fn txn_cost(request: &TxnRequest) -> u64 {
    let branch_cost = |ops: &[crate::proto::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(put)) => put_cost(put),
                Some(request_op::Request::RequestTxn(txn)) => txn_cost(txn),
                _ => 0,
            })
            .sum()
    };
    branch_cost(&request.success).max(branch_cost(&request.failure))
}
