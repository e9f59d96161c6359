//! etcd's `clientv3/concurrency` recipes, run inside the member for the
//! v3lock and v3election services as etcd runs them through an in-process
//! client. The keys (`name/` + the lease id in hex), the transactions and
//! the wait for every earlier key to go are etcd's, so a client sees the
//! same keys and revisions, and a lock key's create revision is its
//! fencing token.

use crate::error::Error;
use crate::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op, response_op, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
    RangeRequest, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

use super::Server;

/// The TTL of the lease a Lock or Campaign without one is given (etcd
/// `concurrency`'s default session TTL, in seconds).
pub const SESSION_TTL_SECS: i64 = 60;

/// An election's leader, as Campaign answers it (etcd `LeaderKey`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderKey {
    pub name: Vec<u8>,
    pub key: Vec<u8>,
    /// The leader key's create revision.
    pub rev: i64,
    pub lease: i64,
}

/// etcd `clientv3.GetPrefixRangeEnd`: the end of the range of every key
/// that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().expect("not empty") += 1;
            return end;
        }
        end.pop();
    }
    // Every byte is 0xff: every key from the prefix on.
    vec![0]
}

/// The key a session with `lease` holds under `name` (etcd writes the
/// lease id with `%x`).
fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

fn with_slash(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

fn create_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
    }
}

fn op(request: request_op::Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

fn put(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    op(request_op::Request::RequestPut(PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..PutRequest::default()
    }))
}

fn get(key: &[u8]) -> RequestOp {
    op(request_op::Request::RequestRange(RangeRequest {
        key: key.to_vec(),
        ..RangeRequest::default()
    }))
}

/// etcd `WithFirstCreate`: the key under `prefix` created first.
fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..RangeRequest::default()
    }
}

/// The key-values of the range at `position` of a txn's responses.
fn range_kvs(response: &TxnResponse, position: usize) -> Vec<KeyValue> {
    match response
        .responses
        .get(position)
        .and_then(|op| op.response.as_ref())
    {
        Some(response_op::Response::ResponseRange(range)) => range.kvs.clone(),
        _ => Vec::new(),
    }
}

impl Server {
    /// etcd `Mutex.Lock` for v3lock's Lock: queue this lease's key under
    /// `name/`, then wait until every key created before it is gone. If
    /// the wait ends early (the client went away), the key is deleted, as
    /// etcd unlocks on a failed wait.
    pub async fn lock(&self, name: &[u8], lease: i64) -> Result<(ResponseHeader, Vec<u8>), Error> {
        let lease = self.session_lease(lease).await?;
        let prefix = with_slash(name);
        let key = session_key(&prefix, lease);
        let response = self
            .txn(TxnRequest {
                compare: vec![create_revision_is(&key, 0)],
                success: vec![
                    put(&key, b"", lease),
                    op(request_op::Request::RequestRange(first_created(&prefix))),
                ],
                failure: vec![
                    get(&key),
                    op(request_op::Request::RequestRange(first_created(&prefix))),
                ],
            })
            .await?;
        let header = response.header.unwrap_or_default();
        let my_revision = if response.succeeded {
            header.revision
        } else {
            range_kvs(&response, 0)
                .first()
                .map(|kv| kv.create_revision)
                .unwrap_or(header.revision)
        };
        let owner = range_kvs(&response, 1);
        if owner.is_empty() || owner[0].create_revision == my_revision {
            return Ok((header, key));
        }
        let header = self
            .wait_or_clean_up(prefix, my_revision - 1, CleanUp::Unlock(key.clone()))
            .await?;
        Ok((header, key))
    }

    /// The session's lease: `lease`, or without one (0) a new lease of
    /// `SESSION_TTL_SECS` that nothing keeps alive, as etcd's services
    /// orphan the session `concurrency.NewSession` grants. Sharing lease 0
    /// would give every such caller the same key, and so the lock at once.
    async fn session_lease(&self, lease: i64) -> Result<i64, Error> {
        if lease != 0 {
            return Ok(lease);
        }
        let granted = self
            .lease_grant(LeaseGrantRequest {
                ttl: SESSION_TTL_SECS,
                id: 0,
            })
            .await?;
        Ok(granted.id)
    }

    /// etcd v3lock `Unlock`: deletes the key.
    pub async fn unlock(&self, key: &[u8]) -> Result<ResponseHeader, Error> {
        let response = self
            .delete_range(DeleteRangeRequest {
                key: key.to_vec(),
                ..DeleteRangeRequest::default()
            })
            .await?;
        Ok(response.header.unwrap_or_default())
    }

    /// etcd `Election.Campaign`: put this lease's key with `value` (or
    /// proclaim `value` on the key it already has), then wait until every
    /// key created before it is gone.
    pub async fn campaign(
        &self,
        name: &[u8],
        lease: i64,
        value: &[u8],
    ) -> Result<(ResponseHeader, LeaderKey), Error> {
        let lease = self.session_lease(lease).await?;
        let prefix = with_slash(name);
        let key = session_key(&prefix, lease);
        let response = self
            .txn(TxnRequest {
                compare: vec![create_revision_is(&key, 0)],
                success: vec![put(&key, value, lease)],
                failure: vec![get(&key)],
            })
            .await?;
        let header = response.header.unwrap_or_default();
        let mut leader = LeaderKey {
            name: name.to_vec(),
            key: key.clone(),
            rev: header.revision,
            lease,
        };
        if !response.succeeded {
            let existing = range_kvs(&response, 0);
            let existing = existing.first().ok_or(Error::ElectionNotLeader)?;
            leader.rev = existing.create_revision;
            if existing.value != value {
                if let Err(error) = self.proclaim(&leader, value).await {
                    let _ = self.resign(&leader).await;
                    return Err(error);
                }
            }
        }
        self.wait_or_clean_up(prefix, leader.rev - 1, CleanUp::Resign(leader.clone()))
            .await?;
        Ok((header, leader))
    }

    /// etcd `Election.Proclaim`: a new value, only while `leader`'s key is
    /// still the one created at its revision.
    pub async fn proclaim(
        &self,
        leader: &LeaderKey,
        value: &[u8],
    ) -> Result<ResponseHeader, Error> {
        let response = self
            .txn(TxnRequest {
                compare: vec![create_revision_is(&leader.key, leader.rev)],
                success: vec![put(&leader.key, value, leader.lease)],
                failure: Vec::new(),
            })
            .await?;
        if !response.succeeded {
            return Err(Error::ElectionNotLeader);
        }
        Ok(response.header.unwrap_or_default())
    }

    /// etcd `Election.Resign`: deletes the leader's key if it is still the
    /// one created at its revision; no error if it is not.
    pub async fn resign(&self, leader: &LeaderKey) -> Result<ResponseHeader, Error> {
        let response = self
            .txn(TxnRequest {
                compare: vec![create_revision_is(&leader.key, leader.rev)],
                success: vec![op(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: leader.key.clone(),
                        ..DeleteRangeRequest::default()
                    },
                ))],
                failure: Vec::new(),
            })
            .await?;
        Ok(response.header.unwrap_or_default())
    }

    /// etcd `Election.Leader`: the key under `name/` created first.
    pub async fn election_leader(&self, name: &[u8]) -> Result<(ResponseHeader, KeyValue), Error> {
        let response = self.range(first_created(&with_slash(name))).await?;
        let header = response.header.unwrap_or_default();
        let kv = response
            .kvs
            .into_iter()
            .next()
            .ok_or(Error::ElectionNoLeader)?;
        Ok((header, kv))
    }

    /// Resolves at the next change of the store's revision (Observe waits
    /// on it between looks at the leader).
    pub async fn next_revision(
        &self,
        revisions: &mut crate::published::Subscriber<i64>,
    ) -> Result<(), Error> {
        let stopped = self.stopped();
        tokio::select! {
            biased;
            () = stopped => Err(Error::Stopped),
            _ = revisions.changed() => Ok(()),
        }
    }

    /// `wait_deletes` in a task of its own, so that if the caller goes away
    /// first (its client cancelled) the task still cleans up: it deletes the
    /// queued lock key or resigns, as etcd does after a failed wait. The
    /// task learns the caller left when the caller's end of a channel is
    /// dropped; the clean-up runs in that task, not in a destructor.
    async fn wait_or_clean_up(
        &self,
        prefix: Vec<u8>,
        max_create_revision: i64,
        clean_up: CleanUp,
    ) -> Result<ResponseHeader, Error> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let (_caller_here, caller_gone) = tokio::sync::oneshot::channel::<()>();
        let server = self.clone();
        tokio::spawn(async move {
            let waited = tokio::select! {
                biased;
                _ = caller_gone => None,
                waited = server.wait_deletes(&prefix, max_create_revision) => Some(waited),
            };
            match waited {
                Some(Ok(header)) => {
                    let _ = answer.send(Ok(header));
                }
                Some(Err(error)) => {
                    clean_up.run(&server).await;
                    let _ = answer.send(Err(error));
                }
                None => clean_up.run(&server).await,
            }
        });
        answered.await.map_err(|_| Error::Stopped)?
    }

    /// etcd `waitDeletes`: waits until no key under `prefix` has a create
    /// revision of `max_create_revision` or less; the header of the read
    /// that found none.
    async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_revision: i64,
    ) -> Result<ResponseHeader, Error> {
        let mut revisions = self.subscribe_revisions();
        loop {
            let newest_before = RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                limit: 1,
                sort_order: SortOrder::Descend as i32,
                sort_target: SortTarget::Create as i32,
                max_create_revision,
                ..RangeRequest::default()
            };
            let response = self.range(newest_before).await?;
            if response.kvs.is_empty() {
                return Ok(response.header.unwrap_or_default());
            }
            self.next_revision(&mut revisions).await?;
        }
    }
}

/// What a Lock or Campaign undoes when its wait ends without success.
enum CleanUp {
    Unlock(Vec<u8>),
    Resign(LeaderKey),
}

impl CleanUp {
    async fn run(self, server: &Server) {
        let _ = match self {
            CleanUp::Unlock(key) => server.unlock(&key).await,
            CleanUp::Resign(leader) => server.resign(&leader).await,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_follow_etcd() {
        assert_eq!(prefix_end(b"lock/"), b"lock0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(session_key(b"n/", 0x694d_a234), b"n/694da234");
    }
}
