//! Applies committed requests to the state machine with etcd 3.4's exact
//! semantics (etcd `etcdserver/apply.go`, `applierV3backend`).
//!
//! Architecture invariants: apply is deterministic — the same entries in
//! the same order give the same state and the same responses on every
//! member (no clock, no randomness, no map iteration order); an entry at or
//! below the applied index is never applied twice (etcd #13766); apply
//! knows nothing about raft's internals or gRPC — it sees protobuf request
//! types only as data.

mod alarms;
mod quota;
mod txn;

use prost::Message as _;

use crate::auth::{Access, AuthInfo, AuthStore, TokenEffect};
use crate::error::Error;
use crate::lease::Leases;
use crate::membership::{Member, Members, MembershipChange};
use crate::mvcc::{self, KeyValue, RangeOptions, RangeResult, Store, WriteTxn};
use crate::proto::authpb;
use crate::proto::detcdpb::internal_request::Request;
use crate::proto::detcdpb::{LeaseCheckpoints, LeaseExpiries, RequestAuth, StateImage, StateParts};
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction,
    range_request::{SortOrder, SortTarget},
    AlarmMember, AlarmRequest, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb;

pub use alarms::{describe as describe_alarm, Alarms};
pub use quota::{put_cost, txn_cost, DEFAULT_QUOTA_BYTES, KV_OVERHEAD_BYTES};
pub use txn::{is_read_only as is_read_only_txn, is_serializable as is_serializable_txn};

/// The outcome of applying one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    /// A member's published attributes were recorded.
    Published,
    /// The cluster version was set.
    ClusterVersionSet,
    /// A membership change was applied; the members after it.
    Members(Vec<Member>),
    /// An alarm request was applied; the alarms it changed.
    Alarms(Vec<AlarmMember>),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// A keepalive was applied: the lease runs its full TTL (seconds) again.
    LeaseRenewed {
        id: i64,
        ttl: i64,
    },
    /// The checkpoints that took effect: lease id, remaining milliseconds.
    LeaseCheckpointed(Vec<(i64, i64)>),
    /// The expiries that took effect: the leases revoked.
    LeasesExpired(Vec<i64>),
    /// An auth change took effect: what it means for login tokens.
    AuthChanged(TokenEffect),
    /// A login: the token assigned on every member.
    Authenticated {
        user: String,
        token: String,
        /// The auth revision the login applied at (a JWT carries it).
        revision: u64,
    },
    /// User or role names (UserGet's roles, UserList, RoleList), sorted.
    Names(Vec<String>),
    /// RoleGet: the role's permissions, sorted by key.
    Permissions(Vec<authpb::Permission>),
}

/// The replicated state: the MVCC store and the raft index it reflects.
#[derive(Debug)]
pub struct StateMachine {
    store: Store,
    /// The consistent index: the last raft index applied to `store`.
    applied_index: u64,
    quota: quota::Quota,
    members: Members,
    alarms: Alarms,
    leases: Leases,
    auth: AuthStore,
    /// The version the cluster's leader set (etcd's cluster version, which
    /// a new cluster's leader sets once its term's first entry applied);
    /// empty until then.
    cluster_version: String,
    /// Whether members, alarms, leases or auth may have changed since
    /// `take_parts_if_changed` last handed them out: set by every request
    /// that is not a key-value one (those change only the store; a lease's
    /// attached keys are not part of what is stored) and by membership
    /// changes.
    parts_changed: bool,
}

/// The `StateImage` and `StateParts` format this build writes and reads
/// (proto/detcd/state.proto). Images of the hand-made format before it
/// are refused: they do not decode as these messages.
const IMAGE_FORMAT: u32 = 1;
/// `StateImage`'s fields (`encode` writes them itself, to stream the
/// MVCC image in).
const IMAGE_FORMAT_FIELD: u32 = 1;
const IMAGE_PARTS_FIELD: u32 = 2;
const IMAGE_MVCC_FIELD: u32 = 3;

impl StateMachine {
    /// `quota_bytes` follows `--quota-backend-bytes`: 0 means the default,
    /// a negative value disables the quota (as in etcd).
    pub fn new(quota_bytes: i64, members: Members) -> StateMachine {
        StateMachine {
            store: Store::new(),
            applied_index: 0,
            quota: quota::Quota::new(quota_bytes),
            members,
            alarms: Alarms::default(),
            leases: Leases::default(),
            auth: AuthStore::default(),
            cluster_version: String::new(),
            parts_changed: true,
        }
    }

    /// A restored backup's state joins a new cluster (`crate::backup`):
    /// the members the flags name, applied to `index`. Everything else —
    /// keys, revisions, leases, alarms — is kept.
    pub fn restore_membership(&mut self, members: Members, index: u64) {
        self.members = members;
        self.applied_index = index;
        self.parts_changed = true;
    }

    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The cluster version its leader set; empty: not decided yet.
    pub fn cluster_version(&self) -> &str {
        &self.cluster_version
    }

    /// A state read from etcd's buckets: the alarms etcd's `alarm` bucket
    /// holds.
    pub fn set_alarms(&mut self, alarms: Vec<crate::proto::etcdserverpb::AlarmMember>) {
        self.alarms = Alarms::from_stored(alarms);
        self.parts_changed = true;
    }

    /// A state read from etcd's buckets: the version etcd's `cluster`
    /// bucket holds.
    pub fn set_cluster_version(&mut self, version: String) {
        self.cluster_version = version;
        self.parts_changed = true;
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies the request committed at raft `index`. Entries at or below
    /// the applied index were applied already (replay after restart) and
    /// must not be applied again: `None` says it was skipped.
    pub fn apply(
        &mut self,
        index: u64,
        request: Option<&Request>,
    ) -> Option<Result<Response, Error>> {
        self.apply_as(index, request, None)
    }

    /// `apply` for a client's request, which runs as the user its proposer
    /// authenticated (`auth`): when auth is on, it is refused unless that
    /// user may do it now (etcd's `authApplierV3`). A request the members
    /// make themselves (expiries, checkpoints, alarms) has no `auth`.
    pub fn apply_as(
        &mut self,
        index: u64,
        request: Option<&Request>,
        auth: Option<&RequestAuth>,
    ) -> Option<Result<Response, Error>> {
        if index <= self.applied_index {
            return None;
        }
        self.applied_index = index;
        let request = request?;
        let key_space = matches!(
            request,
            Request::Range(_)
                | Request::Put(_)
                | Request::DeleteRange(_)
                | Request::Txn(_)
                | Request::Compaction(_)
        );
        #[cfg(not(madsim))]
        let key_value = key_space;
        #[cfg(madsim)]
        let key_value = key_space
            || (crate::sabotage::active(crate::sabotage::Sabotage::StatePartsNotRewritten)
                && matches!(request, Request::LeaseRenew(_)));
        self.parts_changed |= !key_value;
        if let Some(auth) = auth {
            let caller = AuthInfo::from_proto(auth);
            if let Err(error) = self.check_permission(&caller, request) {
                return Some(Err(error));
            }
            if let Some(answer) = self.apply_auth(index, request) {
                return Some(answer);
            }
        } else if let Some(answer) = self.apply_auth(index, request) {
            return Some(answer);
        }
        // etcd's applierV3Corrupt: while a CORRUPT alarm is up, nothing
        // that goes through raft reads or changes the key space or leases
        // (linearizable reads and read-only txns are answered beside
        // raft, from the store as it is, as etcd answers them).
        let refused_when_corrupt = key_space || matches!(request, Request::LeaseGrant(_));
        if refused_when_corrupt && self.alarms.corrupt() {
            return Some(Err(Error::Corrupt));
        }
        Some(match request {
            Request::Range(range) => self.range(range).map(Response::Range),
            Request::Put(put) => self.put(put).map(Response::Put),
            Request::DeleteRange(delete) => Ok(Response::DeleteRange(self.delete_range(delete))),
            Request::Txn(txn) => self.txn(txn).map(Response::Txn),
            Request::Compaction(compaction) => self.compact(compaction).map(Response::Compaction),
            Request::Publish(attributes) => {
                self.members
                    .publish(attributes.id, &attributes.name, &attributes.client_urls);
                Ok(Response::Published)
            }
            Request::ClusterVersionSet(set) => {
                self.cluster_version = set.ver.clone();
                Ok(Response::ClusterVersionSet)
            }
            Request::MemberUpdate(update) => self.change_members(
                &MembershipChange::UpdatePeerUrls(update.id, update.peer_urls.clone()),
            ),
            Request::Alarm(alarm) => Ok(Response::Alarms(self.alarm(alarm))),
            Request::LeaseGrant(grant) => self.lease_grant(index, grant).map(Response::LeaseGrant),
            Request::LeaseRevoke(revoke) => self.lease_revoke(revoke.id).map(|revision| {
                Response::LeaseRevoke(LeaseRevokeResponse {
                    header: Some(header(revision)),
                })
            }),
            Request::LeaseRenew(renew) => self
                .leases
                .renew(renew.id, index)
                .map(|ttl| Response::LeaseRenewed { id: renew.id, ttl }),
            Request::LeaseCheckpoint(checkpoints) => Ok(Response::LeaseCheckpointed(
                self.lease_checkpoint(checkpoints),
            )),
            Request::LeaseExpire(expiries) => {
                Ok(Response::LeasesExpired(self.lease_expire(expiries)))
            }
            _ => unreachable!("auth requests are applied by apply_auth"),
        })
    }

    /// etcd `authApplierV3`'s checks, before the request runs.
    fn check_permission(&self, caller: &AuthInfo, request: &Request) -> Result<(), Error> {
        let auth = &self.auth;
        match request {
            Request::Put(put) => {
                auth.check(caller, &put.key, &[], Access::Write)?;
                if put.lease != 0 {
                    self.check_lease_keys(caller, put.lease)?;
                }
                if put.prev_kv {
                    auth.check(caller, &put.key, &[], Access::Read)?;
                }
                Ok(())
            }
            Request::DeleteRange(delete) => {
                auth.check(caller, &delete.key, &delete.range_end, Access::Write)?;
                if delete.prev_kv {
                    auth.check(caller, &delete.key, &delete.range_end, Access::Read)?;
                }
                Ok(())
            }
            Request::Range(range) => auth.check(caller, &range.key, &range.range_end, Access::Read),
            Request::Txn(txn) => auth.check_txn(caller, txn),
            Request::LeaseRevoke(revoke) => self.check_lease_keys(caller, revoke.id),
            // A user may read itself, and the roles it holds.
            Request::UserGet(get) if get.name == caller.username => Ok(()),
            Request::RoleGet(get) if auth.has_role(&caller.username, &get.role) => Ok(()),
            Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::UserAdd(_)
            | Request::UserDelete(_)
            | Request::UserChangePassword(_)
            | Request::UserGrantRole(_)
            | Request::UserRevokeRole(_)
            | Request::UserGet(_)
            | Request::UserList(_)
            | Request::RoleAdd(_)
            | Request::RoleGet(_)
            | Request::RoleList(_)
            | Request::RoleDelete(_)
            | Request::RoleGrantPermission(_)
            | Request::RoleRevokePermission(_) => auth.check_admin(caller),
            _ => Ok(()),
        }
    }

    /// etcd `checkLeasePuts`: a lease whose keys the user may not all
    /// write can be neither revoked nor given more keys by that user.
    fn check_lease_keys(&self, caller: &AuthInfo, lease: i64) -> Result<(), Error> {
        if !self.auth.is_enabled() {
            return Ok(());
        }
        if let Some(lease) = self.leases.get(lease) {
            for key in &lease.keys {
                self.auth.check(caller, key, &[], Access::Write)?;
            }
        }
        Ok(())
    }

    /// The auth requests (`None` for any other request).
    fn apply_auth(&mut self, index: u64, request: &Request) -> Option<Result<Response, Error>> {
        let auth = &mut self.auth;
        let changed =
            |result: Result<(), Error>| result.map(|()| Response::AuthChanged(TokenEffect::None));
        Some(match request {
            Request::AuthEnable(_) => changed(auth.enable()),
            Request::AuthDisable(_) => Ok(Response::AuthChanged(auth.disable())),
            Request::Authenticate(login) => auth
                .authenticate(&login.name, &login.password_hash)
                .map(|()| Response::Authenticated {
                    user: login.name.clone(),
                    token: if login.token_prefix.is_empty() {
                        String::new()
                    } else {
                        format!("{}.{index}", login.token_prefix)
                    },
                    revision: auth.revision(),
                }),
            Request::UserAdd(add) => {
                changed(auth.user_add(&add.name, &add.password_hash, add.no_password))
            }
            Request::UserDelete(delete) => {
                auth.user_delete(&delete.name).map(Response::AuthChanged)
            }
            Request::UserChangePassword(change) => auth
                .user_change_password(&change.name, &change.password_hash)
                .map(Response::AuthChanged),
            Request::UserGrantRole(grant) => {
                changed(auth.user_grant_role(&grant.user, &grant.role))
            }
            Request::UserRevokeRole(revoke) => {
                changed(auth.user_revoke_role(&revoke.name, &revoke.role))
            }
            Request::UserGet(get) => auth.user_get(&get.name).map(Response::Names),
            Request::UserList(_) => Ok(Response::Names(auth.user_list())),
            Request::RoleAdd(add) => changed(auth.role_add(&add.name)),
            Request::RoleGet(get) => auth.role_get(&get.role).map(Response::Permissions),
            Request::RoleList(_) => Ok(Response::Names(auth.role_list())),
            Request::RoleDelete(delete) => changed(auth.role_delete(&delete.role)),
            Request::RoleGrantPermission(grant) => {
                changed(auth.role_grant_permission(&grant.name, grant.perm.as_ref()))
            }
            Request::RoleRevokePermission(revoke) => {
                changed(auth.role_revoke_permission(&revoke.role, &revoke.key, &revoke.range_end))
            }
            _ => return None,
        })
    }

    /// Applies a raft configuration change committed at `index` to the
    /// member registry, if it passes etcd's checks there. `None`: applied
    /// already; `Some(Err)`: refused, and raft must not apply it either.
    pub fn apply_membership(
        &mut self,
        index: u64,
        change: &MembershipChange,
    ) -> Option<Result<Response, Error>> {
        if index <= self.applied_index {
            return None;
        }
        self.applied_index = index;
        self.parts_changed = true;
        Some(self.change_members(change))
    }

    fn change_members(&mut self, change: &MembershipChange) -> Result<Response, Error> {
        self.members.check(change)?;
        self.members.apply(change);
        Ok(Response::Members(self.members.list().cloned().collect()))
    }

    /// The double-apply sabotage: the request runs again, ignoring the
    /// applied index (simulation build only).
    #[cfg(madsim)]
    pub fn apply_again_for_sabotage(&mut self, request: Option<&Request>) {
        let index = self.applied_index;
        self.applied_index -= 1;
        let _ = self.apply(index, request);
    }

    /// Marks an index that carries no request (a new leader's empty
    /// entry) as applied.
    pub fn skip(&mut self, index: u64) {
        self.applied_index = self.applied_index.max(index);
    }

    /// A read at the current state (serializable, or after a read index).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, Error> {
        range(&self.store, request)
    }

    /// A transaction without writes, answered from the current state.
    pub fn txn_read_only(&self, request: &TxnRequest) -> Result<TxnResponse, Error> {
        txn::read_only(&self.store, request)
    }

    /// The active alarms of one type (NONE: all).
    pub fn alarms(&self, alarm: i32) -> Vec<AlarmMember> {
        self.alarms.list(alarm)
    }

    /// Would a write costing `cost_bytes` fit the quota? (The check etcd
    /// makes before proposing, which raises NOSPACE when it fails.)
    pub fn check_quota(&self, cost_bytes: u64) -> Result<(), Error> {
        self.quota.check(&self.store, cost_bytes)
    }

    /// etcd `applierV3backend.Alarm`: the alarms the request changed.
    fn alarm(&mut self, request: &AlarmRequest) -> Vec<AlarmMember> {
        match request.action() {
            AlarmAction::Activate => {
                let (raised, first) = self.alarms.activate(request.member_id, request.alarm);
                if first {
                    tracing::warn!(alarm = %describe_alarm(&raised), "alarm raised");
                }
                vec![raised]
            }
            AlarmAction::Deactivate => self
                .alarms
                .deactivate(request.member_id, request.alarm)
                .into_iter()
                .collect(),
            AlarmAction::Get => self.alarms.list(request.alarm),
        }
    }

    /// etcd `lessor.Grant`. The proposer raised the TTL to the minimum
    /// already; an ID of 0 gets one picked here, the same on every member.
    fn lease_grant(
        &mut self,
        index: u64,
        request: &LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, Error> {
        // etcd's applierV3Capped refuses grants under a NOSPACE alarm.
        if self.alarms.no_space() {
            return Err(Error::NoSpace);
        }
        let id = if request.id == 0 {
            self.leases.pick_id(index)
        } else {
            request.id
        };
        let lease = self.leases.grant(id, request.ttl, index)?;
        Ok(LeaseGrantResponse {
            header: Some(header(self.store.current_revision())),
            id: lease.id,
            ttl: lease.ttl,
            error: String::new(),
        })
    }

    /// etcd `lessor.Revoke`: every attached key is deleted in one revision
    /// (none if there are no keys), then the lease goes. The revision of
    /// the store afterwards.
    fn lease_revoke(&mut self, id: i64) -> Result<i64, Error> {
        // applierV3Corrupt: no revoke, so no expiry either.
        if self.alarms.corrupt() {
            return Err(Error::Corrupt);
        }
        let lease = self.leases.remove(id).ok_or(Error::LeaseNotFound)?;
        let mut write = self.store.write();
        #[allow(unused_mut)]
        let mut keys: Vec<&Vec<u8>> = lease.keys.iter().collect();
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::RevokeLeavesAKey) {
            keys.pop();
        }
        for key in keys {
            let _ = write.delete_range(key, None);
        }
        let changes = write.end();
        self.leases.record_changes(&changes);
        Ok(self.store.current_revision())
    }

    fn lease_checkpoint(&mut self, request: &LeaseCheckpoints) -> Vec<(i64, i64)> {
        request
            .checkpoints
            .iter()
            .filter(|cp| {
                self.leases
                    .checkpoint(cp.id, cp.remaining_millis, cp.renewed_at)
            })
            .map(|cp| (cp.id, cp.remaining_millis.max(1)))
            .collect()
    }

    /// Each expiry the leader saw is a revoke of its own, unless the lease
    /// was renewed since (or is gone).
    fn lease_expire(&mut self, request: &LeaseExpiries) -> Vec<i64> {
        let mut revoked = Vec::new();
        for expiry in &request.expiries {
            let current = self
                .leases
                .get(expiry.id)
                .is_some_and(|lease| lease.renewed_at == expiry.renewed_at);
            if current && self.lease_revoke(expiry.id).is_ok() {
                revoked.push(expiry.id);
            }
        }
        revoked
    }

    fn put(&mut self, request: &PutRequest) -> Result<PutResponse, Error> {
        if request.lease != 0 && !self.leases.contains(request.lease) {
            return Err(Error::LeaseNotFound);
        }
        // A NOSPACE alarm caps the store (etcd's applierV3Capped).
        if self.alarms.no_space() {
            return Err(Error::NoSpace);
        }
        self.quota.check(&self.store, quota::put_cost(request))?;
        let mut write = self.store.write();
        let response = put(&mut write, request);
        let changes = write.end();
        self.leases.record_changes(&changes);
        response
    }

    fn delete_range(&mut self, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let mut write = self.store.write();
        let response = delete_range(&mut write, request);
        let changes = write.end();
        self.leases.record_changes(&changes);
        response
    }

    fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, Error> {
        if !txn::is_read_only(request) {
            #[cfg(madsim)]
            let capped = quota::txn_cost(request) > 0
                || crate::sabotage::active(crate::sabotage::Sabotage::NoSpaceRefusesDeletes);
            #[cfg(not(madsim))]
            let capped = quota::txn_cost(request) > 0;
            if self.alarms.no_space() && capped {
                return Err(Error::NoSpace);
            }
            self.quota.check(&self.store, quota::txn_cost(request))?;
        }
        txn::apply(&mut self.store, &mut self.leases, request)
    }

    fn compact(&mut self, request: &CompactionRequest) -> Result<CompactionResponse, Error> {
        self.store.compact(request.revision)?;
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::CompactionAnsweredAtItsRevision) {
            return Ok(CompactionResponse {
                header: Some(header(request.revision)),
            });
        }
        Ok(CompactionResponse {
            header: Some(header(self.store.current_revision())),
        })
    }

    /// A deterministic hash of the whole state, compared across members;
    /// an error if the on-disk revisions cannot be read.
    pub fn state_hash(&self) -> Result<u64, mvcc::Error> {
        let members = StateParts {
            members: self.members.to_stored(),
            alarms: self.alarms.to_stored(),
            ..StateParts::default()
        }
        .encode_to_vec();
        let members =
            crate::rng::stable_hash(&members.into_iter().map(u64::from).collect::<Vec<_>>());
        let leases = crate::rng::stable_hash(&self.leases.hash_words());
        let auth = crate::rng::stable_hash(&self.auth.hash_words());
        Ok(crate::rng::stable_hash(&[
            self.applied_index,
            self.store.state_hash()?,
            members,
            leases,
            auth,
        ]))
    }

    /// The snapshot image: a `StateImage` message, the parts then the
    /// MVCC image (`Store::encode_image`, written record by record); an
    /// error if the on-disk revisions cannot be read.
    pub fn encode(&self) -> Result<Vec<u8>, mvcc::Error> {
        let mut image = Vec::new();
        prost::encoding::uint32::encode(IMAGE_FORMAT_FIELD, &IMAGE_FORMAT, &mut image);
        prost::encoding::message::encode(IMAGE_PARTS_FIELD, &self.parts(), &mut image);
        // A message field's encoding is its bytes' encoding as a bytes field.
        prost::encoding::bytes::encode(IMAGE_MVCC_FIELD, &self.store.encode_image()?, &mut image);
        Ok(image)
    }

    /// Writes the whole state as a snapshot stream at its applied index,
    /// with raft's `term` and configuration (`conf_state`, eraftpb bytes)
    /// there, revision by revision; the sink.
    pub fn write_snapshot<S: crate::storage::snapshot::PieceSink>(
        &self,
        term: u64,
        conf_state: Vec<u8>,
        sink: S,
    ) -> Result<S, String> {
        let header = crate::proto::detcdpb::SnapshotHeader {
            index: self.applied_index,
            term,
            conf_state,
            parts: self.encode_parts(),
            current_revision: self.store.current_revision(),
            compact_revision: self.store.compact_revision(),
        };
        let mut writer = crate::storage::snapshot::SnapshotWriter::new(sink, header)
            .map_err(|error| error.to_string())?;
        let mut failed = None;
        (self.store)
            .visit_records(
                i64::MIN,
                self.store.current_revision(),
                |revision, record| {
                    if failed.is_none() {
                        failed = writer.push(revision, record).err();
                    }
                },
            )
            .map_err(|error| error.to_string())?;
        if let Some(error) = failed {
            return Err(error.to_string());
        }
        writer.finish().map_err(|error| error.to_string())
    }

    fn parts(&self) -> StateParts {
        StateParts {
            format: IMAGE_FORMAT,
            applied_index: self.applied_index,
            members: self.members.to_stored(),
            alarms: self.alarms.to_stored(),
            leases: self.leases.to_stored(),
            auth: Some(self.auth.to_proto()),
            cluster_version: self.cluster_version.clone(),
            removed_members: self.members.removed().collect(),
        }
    }

    /// Everything but the MVCC store (a `StateParts` message): applied
    /// index, members, alarms, leases, auth. The on-disk backend keeps
    /// this beside its revision log.
    pub fn encode_parts(&self) -> Vec<u8> {
        self.parts().encode_to_vec()
    }

    /// `encode_parts`, if they may have changed since the last call: what
    /// the backend has yet to write of them.
    pub fn take_parts_if_changed(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.parts_changed).then(|| self.encode_parts())
    }

    pub fn decode(image: &[u8], quota_bytes: i64) -> Result<StateMachine, String> {
        let image =
            StateImage::decode(image).map_err(|error| format!("not a state image: {error}"))?;
        check_format("state image", image.format)?;
        let parts = image.parts.ok_or("the state image has no parts")?;
        let mvcc = image.mvcc.ok_or("the state image has no MVCC image")?;
        let store = Store::from_image(mvcc).map_err(|e| e.to_string())?;
        Self::from_parts_message(parts, store, quota_bytes)
    }

    /// The state the on-disk backend holds: `encode_parts` output and the
    /// store rebuilt from the revision log.
    pub fn from_stored(
        parts: &[u8],
        store: Store,
        quota_bytes: i64,
    ) -> Result<StateMachine, String> {
        let parts =
            StateParts::decode(parts).map_err(|error| format!("not a state's parts: {error}"))?;
        Self::from_parts_message(parts, store, quota_bytes)
    }

    fn from_parts_message(
        parts: StateParts,
        store: Store,
        quota_bytes: i64,
    ) -> Result<StateMachine, String> {
        check_format("state parts", parts.format)?;
        let leases = Leases::from_stored(parts.leases)?;
        let auth = AuthStore::from_proto(parts.auth.ok_or("the state has no auth part")?)?;
        let mut state = StateMachine::from_parts(store, leases, auth, quota_bytes)?;
        state.applied_index = parts.applied_index;
        state.members = Members::from_stored(parts.members).with_removed(parts.removed_members);
        state.alarms = Alarms::from_stored(parts.alarms);
        state.cluster_version = parts.cluster_version;
        Ok(state)
    }

    /// Keeps the store's changes from now on, for `take_changes`.
    pub fn track_changes(&mut self) {
        self.store.track_changes();
    }

    /// The store's changes since the last call: what the on-disk backend
    /// has yet to write.
    pub fn take_changes(&mut self) -> mvcc::Changes {
        self.store.take_changes()
    }

    /// Reads the values the backend holds from `log` (unless the store
    /// already does); see `Store::attach_cold`.
    pub fn attach_cold(&mut self, log: std::sync::Arc<dyn mvcc::ColdLog>, through: i64) {
        if !self.store.has_cold() {
            self.store.attach_cold(log, through);
        }
    }

    /// The backend holds every revision up to `revision` durably; see
    /// `Store::evict_through`.
    pub fn evict_through(&mut self, revision: i64) {
        self.store.evict_through(revision);
    }

    /// A state of these parts, with no members, no alarms and nothing
    /// applied; each lease learns its live keys from the store.
    pub fn from_parts(
        mut store: Store,
        mut leases: Leases,
        auth: AuthStore,
        quota_bytes: i64,
    ) -> Result<StateMachine, String> {
        let live = store.live_leases().map_err(|e| e.to_string())?;
        leases.attach_live(live.iter().map(|(key, lease)| (key.as_slice(), *lease)));
        Ok(StateMachine {
            store,
            applied_index: 0,
            quota: quota::Quota::new(quota_bytes),
            members: Members::default(),
            alarms: Alarms::default(),
            leases,
            auth,
            cluster_version: String::new(),
            parts_changed: true,
        })
    }
}

/// What both a committed store and an open write transaction can answer.
pub(crate) trait View {
    fn range_kvs(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        options: &RangeOptions,
    ) -> Result<RangeResult, mvcc::Error>;
}

impl View for Store {
    fn range_kvs(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        options: &RangeOptions,
    ) -> Result<RangeResult, mvcc::Error> {
        self.range(key, end, options)
    }
}

impl View for WriteTxn<'_> {
    fn range_kvs(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        options: &RangeOptions,
    ) -> Result<RangeResult, mvcc::Error> {
        self.range(key, end, options)
    }
}

/// etcd's `mkGteRange`: an empty range end is a single key, "\0" means
/// every key from `key` on.
pub(crate) fn key_range_end(range_end: &[u8]) -> Option<&[u8]> {
    match range_end {
        [] => None,
        [0] => Some(&[]),
        end => Some(end),
    }
}

pub(crate) fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..ResponseHeader::default()
    }
}

/// Refuses a `StateImage` or `StateParts` of a format this build does
/// not know.
fn check_format(what: &str, format: u32) -> Result<(), String> {
    if format == IMAGE_FORMAT {
        Ok(())
    } else {
        Err(format!(
            "unknown {what} format {format} (this detcd reads {IMAGE_FORMAT})"
        ))
    }
}

pub(crate) fn to_proto(kv: KeyValue) -> mvccpb::KeyValue {
    #[cfg(madsim)]
    let kv =
        if crate::sabotage::active(crate::sabotage::Sabotage::VersionOffByOne) && kv.version > 3 {
            KeyValue {
                version: kv.version - 1,
                ..kv
            }
        } else {
            kv
        };
    kv.into()
}

/// etcd's `applierV3backend.Range`: filters and sorting force a full read,
/// then the limit is applied; `count` is taken before filtering.
pub(crate) fn range(view: &impl View, request: &RangeRequest) -> Result<RangeResponse, Error> {
    let sort_order = SortOrder::try_from(request.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(request.sort_target).unwrap_or(SortTarget::Key);
    let filtered = request.min_mod_revision != 0
        || request.max_mod_revision != 0
        || request.min_create_revision != 0
        || request.max_create_revision != 0;
    #[cfg(madsim)]
    let filtered =
        filtered && !crate::sabotage::active(crate::sabotage::Sabotage::FilterAfterLimit);
    let mut limit = if sort_order != SortOrder::None || filtered {
        0
    } else {
        request.limit
    };
    if limit > 0 {
        // One extra key tells whether there are more.
        limit += 1;
    }
    let options = RangeOptions {
        limit,
        rev: request.revision,
        count_only: request.count_only,
    };
    #[cfg(madsim)]
    let options = RangeOptions {
        rev: if request.revision > 0
            && crate::sabotage::active(crate::sabotage::Sabotage::PastReadOffByOne)
        {
            request.revision + 1
        } else {
            request.revision
        },
        ..options
    };
    let result = view.range_kvs(&request.key, key_range_end(&request.range_end), &options)?;
    let mut kvs = result.kvs;
    #[cfg(madsim)]
    if crate::sabotage::active(crate::sabotage::Sabotage::RangeEndInclusive)
        && !request.range_end.is_empty()
        && request.range_end != [0]
        && request.key < request.range_end
    {
        kvs.extend(view.range_kvs(&request.range_end, None, &options)?.kvs);
    }
    kvs.retain(|kv| {
        (request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision)
            && (request.min_mod_revision == 0 || kv.mod_revision >= request.min_mod_revision)
            && (request.max_create_revision == 0
                || kv.create_revision <= request.max_create_revision)
            && (request.min_create_revision == 0
                || kv.create_revision >= request.min_create_revision)
    });
    // The store returns keys ascending, so only a non-key target needs an
    // explicit (ascending by default) sort. A stable sort keeps ties in key
    // order, as etcd's insertion sort does for small results.
    let order = match (sort_order, sort_target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    if order != SortOrder::None {
        kvs.sort_by(|a, b| {
            let ascending = match sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend {
                ascending.reverse()
            } else {
                ascending
            }
        });
    }
    #[cfg(madsim)]
    if crate::sabotage::active(crate::sabotage::Sabotage::RangeDropsLastKey)
        && !request.range_end.is_empty()
        && kvs.len() > 1
    {
        kvs.pop();
    }
    let mut more = false;
    if request.limit > 0 && kvs.len() > request.limit as usize {
        kvs.truncate(request.limit as usize);
        more = true;
    }
    if request.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    let count = result.count as i64;
    #[cfg(madsim)]
    let count = if crate::sabotage::active(crate::sabotage::Sabotage::RangeCountAfterLimit) && more
    {
        kvs.len() as i64
    } else {
        count
    };
    Ok(RangeResponse {
        header: Some(header(result.rev)),
        kvs: kvs.into_iter().map(to_proto).collect(),
        more,
        count,
    })
}

/// etcd's `applierV3backend.Put` inside an open write transaction; the
/// caller has checked the lease.
pub(crate) fn put(write: &mut WriteTxn<'_>, request: &PutRequest) -> Result<PutResponse, Error> {
    let needs_previous = request.ignore_value || request.ignore_lease || request.prev_kv;
    let previous = if needs_previous {
        write
            .range(&request.key, None, &RangeOptions::default())?
            .kvs
            .into_iter()
            .next()
    } else {
        None
    };
    if (request.ignore_value || request.ignore_lease) && previous.is_none() {
        // ignore_{value,lease} need a previous key-value to take them from.
        return Err(Error::KeyNotFound);
    }
    let value = match (&previous, request.ignore_value) {
        (Some(previous), true) => previous.value.clone(),
        _ => request.value.clone(),
    };
    #[cfg(madsim)]
    let value = if crate::sabotage::active(crate::sabotage::Sabotage::IgnoreValueIgnored) {
        request.value.clone()
    } else {
        value
    };
    let lease = match (&previous, request.ignore_lease) {
        (Some(previous), true) => previous.lease,
        _ => request.lease,
    };
    let revision = write.put(&request.key, value, lease);
    Ok(PutResponse {
        header: Some(header(revision)),
        prev_kv: if request.prev_kv {
            previous.map(to_proto)
        } else {
            None
        },
    })
}

/// etcd's `applierV3backend.DeleteRange` inside an open write transaction.
pub(crate) fn delete_range(
    write: &mut WriteTxn<'_>,
    request: &DeleteRangeRequest,
) -> DeleteRangeResponse {
    let end = key_range_end(&request.range_end);
    let prev_kvs = if request.prev_kv {
        let previous = write
            .range(&request.key, end, &RangeOptions::default())
            .expect("reading the newest revision cannot fail");
        previous.kvs.into_iter().map(to_proto).collect()
    } else {
        Vec::new()
    };
    let (deleted, revision) = write.delete_range(&request.key, end);
    DeleteRangeResponse {
        header: Some(header(revision)),
        deleted,
        prev_kvs,
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
