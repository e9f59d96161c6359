//! A state as etcd 3.4's backend holds it: the buckets of a bbolt file
//! that etcd (and `etcdctl snapshot restore`) reads.
//!
//! What goes where, as etcd writes it:
//! - `key`: revision (main and sub, 8 bytes each, big endian, joined by
//!   `_`; a tombstone's ends in `t`) → `mvccpb.KeyValue` (a tombstone's
//!   holds only the key);
//! - `meta`: `consistent_index` (the applied index, 8 bytes big endian),
//!   and after a compaction `finishedCompactRev` and `scheduledCompactRev`
//!   (revision bytes);
//! - `lease`: id (8 bytes big endian) → `leasepb.Lease`;
//! - `auth`: `enabled` (1 or 0) and `authRevision`; `authUsers` and
//!   `authRoles`: name → `authpb.User` / `authpb.Role`;
//! - `members`: id in hex → the member as JSON; `cluster`:
//!   `clusterVersion`;
//! - `alarm`: an `AlarmMember` message → nothing.
//!
//! Nothing else: `etcdctl snapshot status` counts every bucket's keys,
//! and a backup of the same state counts what etcd's does. Backups of
//! detcd versions before this one also held a `detcd` bucket (`state`: a
//! `SnapshotHeader` without revisions; before that `image`: the whole
//! state image); `open` still reads it.
//!
//! `to_state` reads the buckets back, which is how detcd restores a
//! snapshot etcd saved, and its own.

use std::collections::BTreeMap;

use prost::Message as _;

use super::bolt::{Bucket, Entries};
use super::KEY_BUCKET;
use crate::apply::StateMachine;
use crate::auth::AuthStore;
use crate::lease::Leases;
use crate::mvcc::layout::{key_entry, parse_key_entry, parse_revision_key, revision_key};
use crate::mvcc::{Record, Revision, Store, INITIAL_REVISION, NEVER_COMPACTED};
use crate::proto::authpb;
use crate::proto::detcdpb::{AuthState, SnapshotHeader};
use crate::proto::etcdserverpb::AlarmType;

/// etcd's `leasepb.Lease`, the value of the `lease` bucket (detcd's API
/// protos do not include etcd's lease storage message).
#[derive(Clone, PartialEq, prost::Message)]
struct LeaseRecord {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    /// The remaining TTL of the latest checkpoint, in seconds; 0: none.
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// The buckets, sorted by name, each sorted by key.
pub fn of(state: &StateMachine) -> Result<Vec<Bucket>, crate::mvcc::Error> {
    let store = state.store();
    let header = super::detcd_header(state);
    let mut buckets = others(state, &header);
    buckets.push(bucket(KEY_BUCKET, key_entries(state)?));
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    debug_assert_eq!(store.compact_revision(), header.compact_revision);
    Ok(buckets)
}

/// Every bucket but `key`, sorted by name, for the state `header`
/// describes (`state` holds its members, alarms, leases and auth; its
/// store is not read).
pub fn others(state: &StateMachine, header: &SnapshotHeader) -> Vec<Bucket> {
    let mut buckets = vec![
        bucket(b"meta", {
            let mut meta = vec![(
                b"consistent_index".to_vec(),
                header.index.to_be_bytes().to_vec(),
            )];
            if header.compact_revision != NEVER_COMPACTED {
                let compacted = revision_key(Revision::new(header.compact_revision, 0));
                meta.push((b"finishedCompactRev".to_vec(), compacted.clone()));
                meta.push((b"scheduledCompactRev".to_vec(), compacted));
            }
            meta
        }),
        bucket(
            b"lease",
            state
                .leases()
                .iter()
                .map(|lease| {
                    let record = LeaseRecord {
                        id: lease.id,
                        ttl: lease.ttl,
                        remaining_ttl: (lease.remaining_millis + 999) / 1000,
                    };
                    (lease.id.to_be_bytes().to_vec(), record.encode_to_vec())
                })
                .collect(),
        ),
        bucket(
            b"alarm",
            state
                .alarms(AlarmType::None as i32)
                .iter()
                .map(|alarm| (alarm.encode_to_vec(), Vec::new()))
                .collect(),
        ),
        // etcd writes the version once its leader decided it.
        bucket(
            b"cluster",
            Some(state.cluster_version())
                .filter(|version| !version.is_empty())
                .map(|version| (b"clusterVersion".to_vec(), version.as_bytes().to_vec()))
                .into_iter()
                .collect(),
        ),
        bucket(
            b"members",
            state
                .members()
                .list()
                .map(|member| {
                    // Go's field order: id, peerURLs, isLearner, name,
                    // clientURLs, the last three omitted when empty.
                    let text = |value: serde_json::Value| value.to_string();
                    let mut json = format!(
                        "{{\"id\":{},\"peerURLs\":{}",
                        member.id,
                        text(member.peer_urls.clone().into())
                    );
                    if member.is_learner {
                        json.push_str(",\"isLearner\":true");
                    }
                    if !member.name.is_empty() {
                        let name = text(member.name.clone().into());
                        json.push_str(&format!(",\"name\":{name}"));
                    }
                    if !member.client_urls.is_empty() {
                        let urls = text(member.client_urls.clone().into());
                        json.push_str(&format!(",\"clientURLs\":{urls}"));
                    }
                    json.push('}');
                    (format!("{:x}", member.id).into_bytes(), json.into_bytes())
                })
                .collect(),
        ),
        // etcd's: the id in hex → "removed".
        bucket(
            b"members_removed",
            state
                .members()
                .removed()
                .map(|id| (format!("{id:x}").into_bytes(), b"removed".to_vec()))
                .collect(),
        ),
    ];
    // etcd writes `authRevision` when it starts, and `enabled` when auth
    // is first enabled, keeping it (0 or 1) from then on.
    let auth = state.auth().to_proto();
    let mut auth_keys = vec![(
        b"authRevision".to_vec(),
        auth.revision.to_be_bytes().to_vec(),
    )];
    if auth.enabled_once {
        auth_keys.push((b"enabled".to_vec(), vec![u8::from(auth.enabled)]));
    }
    buckets.push(bucket(b"auth", auth_keys));
    buckets.push(bucket(
        b"authUsers",
        auth.users
            .iter()
            .map(|user| (user.name.clone(), user.encode_to_vec()))
            .collect(),
    ));
    buckets.push(bucket(
        b"authRoles",
        auth.roles
            .iter()
            .map(|role| (role.name.clone(), role.encode_to_vec()))
            .collect(),
    ));
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    buckets
}

fn bucket(name: &[u8], mut entries: Entries) -> Bucket {
    entries.sort();
    Bucket {
        name: name.to_vec(),
        entries,
    }
}

/// Every revision the store holds, as etcd's `key` bucket holds it.
pub(super) fn key_entries(state: &StateMachine) -> Result<Entries, crate::mvcc::Error> {
    let store = state.store();
    let mut entries = Vec::with_capacity(store.record_count());
    store.visit_records(i64::MIN, store.current_revision(), |revision, record| {
        entries.push(key_entry(revision, record))
    })?;
    Ok(entries)
}

/// The state an etcd 3.4 backend holds (an etcd snapshot): keys with
/// every revision it kept, the compaction, leases, auth, alarms and the
/// cluster version. Members are left out: a restore names the new
/// cluster's. Alarms stay, as etcd's restore keeps them (a NOSPACE
/// alarm still refuses writes in the restored cluster until disarmed).
/// Refuses what etcd could not have written.
pub(super) fn to_state(buckets: &BTreeMap<Vec<u8>, Entries>) -> Result<StateMachine, String> {
    let empty = Entries::new();
    let get = |name: &[u8]| buckets.get(name).unwrap_or(&empty);
    let value_of = |name: &[u8], key: &[u8]| {
        get(name)
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_slice())
    };

    let mut log = BTreeMap::new();
    for (key, value) in get(KEY_BUCKET) {
        let (revision, record) = parse_key_entry(key, value)?;
        log.insert(revision, record);
    }
    // etcd compacts in batches and marks the compaction finished at the
    // end; a snapshot taken in between holds the scheduled revision and a
    // log compacted only partly. etcd's restore finishes the compaction:
    // so does this, keeping at or below it only each key's newest record,
    // and only if that is a put.
    let compacted = |name: &[u8]| -> Result<i64, String> {
        match value_of(b"meta", name) {
            Some(bytes) => Ok(parse_revision_key(bytes)?.0.main),
            None => Ok(NEVER_COMPACTED),
        }
    };
    let compact_revision =
        compacted(b"finishedCompactRev")?.max(compacted(b"scheduledCompactRev")?);
    if compact_revision != NEVER_COMPACTED {
        let mut newest: BTreeMap<Vec<u8>, Revision> = BTreeMap::new();
        for (revision, record) in log.range(..=Revision::new(compact_revision, i64::MAX)) {
            newest.insert(record.key().to_vec(), *revision);
        }
        log.retain(|revision, record| {
            revision.main > compact_revision
                || (newest.get(record.key()) == Some(revision) && matches!(record, Record::Put(_)))
        });
    }
    // etcd's restore: the newest revision in the log, or the compaction
    // if that is newer (its tombstones are gone).
    let current_revision = log
        .keys()
        .next_back()
        .map_or(INITIAL_REVISION, |revision: &Revision| revision.main)
        .max(compact_revision)
        .max(INITIAL_REVISION);
    let store = Store::from_revision_log(current_revision, compact_revision, log)
        .map_err(|error| error.to_string())?;

    let mut leases = Leases::default();
    for (key, value) in get(b"lease") {
        let record = LeaseRecord::decode(value.as_slice())
            .map_err(|error| format!("lease {key:?}: {error}"))?;
        leases
            .grant(record.id, record.ttl, 0)
            .map_err(|error| format!("lease {:x}: {error}", record.id))?;
        if record.remaining_ttl > 0 {
            leases.checkpoint(record.id, record.remaining_ttl.saturating_mul(1000), 0);
        }
    }

    let revision = match value_of(b"auth", b"authRevision") {
        Some(bytes) => u64::from_be_bytes(
            bytes
                .try_into()
                .map_err(|_| format!("authRevision holds {} bytes, not 8", bytes.len()))?,
        ),
        None => 0,
    };
    let decode_all = |name: &[u8]| -> Result<Vec<&[u8]>, String> {
        Ok(get(name)
            .iter()
            .map(|(_, value)| value.as_slice())
            .collect())
    };
    let auth = AuthState {
        enabled: value_of(b"auth", b"enabled") == Some(&[1]),
        enabled_once: value_of(b"auth", b"enabled").is_some(),
        revision,
        users: decode_all(b"authUsers")?
            .into_iter()
            .map(authpb::User::decode)
            .collect::<Result<_, _>>()
            .map_err(|error| format!("a user: {error}"))?,
        roles: decode_all(b"authRoles")?
            .into_iter()
            .map(authpb::Role::decode)
            .collect::<Result<_, _>>()
            .map_err(|error| format!("a role: {error}"))?,
    };
    let auth = AuthStore::from_proto(auth)?;
    let applied = match value_of(b"meta", b"consistent_index") {
        Some(bytes) => u64::from_be_bytes(
            bytes
                .try_into()
                .map_err(|_| format!("consistent_index holds {} bytes, not 8", bytes.len()))?,
        ),
        None => 0,
    };
    let alarms = get(b"alarm")
        .iter()
        .map(|(key, _)| {
            crate::proto::etcdserverpb::AlarmMember::decode(key.as_slice())
                .map_err(|error| format!("an alarm: {error}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut state = StateMachine::from_parts(store, leases, auth, 0)?;
    state.set_alarms(alarms);
    state.skip(applied);
    if let Some(version) = value_of(b"cluster", b"clusterVersion") {
        state.set_cluster_version(String::from_utf8_lossy(version).into_owned());
    }
    Ok(state)
}
