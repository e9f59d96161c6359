//! Cluster membership: members named by `--initial-cluster`, and member and
//! cluster ids derived exactly as etcd derives them, so a detcd member has
//! the same ids an etcd member with the same flags would have.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::proto::detcdpb::StoredMember;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Empty until the member publishes them after it starts (etcd too).
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// A majority of `voters`.
fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// etcd 3.4 allows one learner at a time (`maxLearners`).
pub const MAX_LEARNERS: usize = 1;

/// A change to the member registry, committed through raft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    Add(Member),
    Promote(u64),
    Remove(u64),
    UpdatePeerUrls(u64, Vec<String>),
}

impl Member {
    /// etcd: a member has started once it published its name.
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// The replicated member registry, part of the state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    by_id: BTreeMap<u64, Member>,
    /// Members removed so far (etcd's `members_removed`): a removed member
    /// that asks learns it must stop.
    removed: BTreeSet<u64>,
}

impl Members {
    pub fn new(members: impl IntoIterator<Item = Member>) -> Members {
        Members {
            by_id: members
                .into_iter()
                .map(|member| (member.id, member))
                .collect(),
            removed: BTreeSet::new(),
        }
    }

    /// Whether `id` was a member and has been removed.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    /// The removed members, in id order.
    pub fn removed(&self) -> impl Iterator<Item = u64> + '_ {
        self.removed.iter().copied()
    }

    /// The registry with these removed members (read back from storage).
    pub fn with_removed(mut self, removed: impl IntoIterator<Item = u64>) -> Members {
        self.removed.extend(removed);
        self
    }

    /// Members in id order, as etcd lists them.
    pub fn list(&self) -> impl Iterator<Item = &Member> {
        self.by_id.values()
    }

    pub fn get(&self, id: u64) -> Option<&Member> {
        self.by_id.get(&id)
    }

    /// Voting members, in id order.
    pub fn voters(&self) -> impl Iterator<Item = &Member> {
        self.by_id.values().filter(|member| !member.is_learner)
    }

    /// etcd `ValidateConfigurationChange` for an add: a new id, new peer
    /// URLs, and at most `MAX_LEARNERS` learners.
    pub fn check_add(&self, member: &Member) -> Result<(), Error> {
        if self.by_id.contains_key(&member.id) {
            return Err(Error::MemberExist);
        }
        // etcd's ErrIDRemoved, which it answers as "member not found": a
        // removed id never comes back (its member would be told it was
        // removed). An add's id hashes the clock's second, so adding the
        // same URLs again a second later gets a new one.
        #[cfg(madsim)]
        let reused = crate::sabotage::active(crate::sabotage::Sabotage::MemberIdReused);
        #[cfg(not(madsim))]
        let reused = false;
        if self.removed.contains(&member.id) && !reused {
            return Err(Error::MemberNotFound);
        }
        self.check_peer_urls_free(member.id, &member.peer_urls)?;
        if member.is_learner && self.by_id.values().filter(|m| m.is_learner).count() >= MAX_LEARNERS
        {
            return Err(Error::TooManyLearners);
        }
        Ok(())
    }

    pub fn check_peer_urls_free(&self, id: u64, peer_urls: &[String]) -> Result<(), Error> {
        let taken = self
            .by_id
            .values()
            .filter(|m| m.id != id)
            .flat_map(|m| &m.peer_urls)
            .any(|url| peer_urls.contains(url));
        if taken {
            return Err(Error::PeerUrlExist);
        }
        Ok(())
    }

    pub fn check_exists(&self, id: u64) -> Result<&Member, Error> {
        self.by_id.get(&id).ok_or(Error::MemberNotFound)
    }

    pub fn check_promote(&self, id: u64) -> Result<(), Error> {
        if !self.check_exists(id)?.is_learner {
            return Err(Error::MemberNotLearner);
        }
        Ok(())
    }

    /// etcd `IsReadyToAddVotingMember` (strict reconfiguration): after the
    /// change a quorum of voters must already have started (published).
    pub fn ready_to_add_voter(&self) -> bool {
        let voters = self.voters().count() + 1;
        let started = self.voters().filter(|member| member.is_started()).count();
        // Adding a second member to a one-member cluster is always allowed.
        (started == 1 && voters == 2) || started >= quorum(voters)
    }

    /// etcd `IsReadyToPromoteMember`: the learner counts as a started voter
    /// of the future configuration, and a quorum of it must have started.
    pub fn ready_to_promote(&self) -> bool {
        let voters = self.voters().count() + 1;
        let started = self.voters().filter(|member| member.is_started()).count() + 1;
        started >= quorum(voters)
    }

    /// etcd `IsReadyToRemoveVotingMember`.
    pub fn ready_to_remove_voter(&self, id: u64) -> bool {
        let remaining: Vec<&Member> = self.voters().filter(|member| member.id != id).collect();
        let started = remaining
            .iter()
            .filter(|member| member.is_started())
            .count();
        started >= quorum(remaining.len())
    }

    /// Applies a committed configuration change to the registry.
    pub fn apply(&mut self, change: &MembershipChange) {
        match change {
            MembershipChange::Add(member) => {
                self.by_id.insert(member.id, member.clone());
            }
            MembershipChange::Promote(id) => {
                if let Some(member) = self.by_id.get_mut(id) {
                    member.is_learner = false;
                }
            }
            MembershipChange::Remove(id) => {
                if self.by_id.remove(id).is_some() {
                    self.removed.insert(*id);
                }
            }
            MembershipChange::UpdatePeerUrls(id, peer_urls) => {
                if let Some(member) = self.by_id.get_mut(id) {
                    member.peer_urls = peer_urls.clone();
                }
            }
        }
    }

    /// Checks a change against the registry, deterministically on every
    /// member at apply time (etcd `ValidateConfigurationChange`).
    pub fn check(&self, change: &MembershipChange) -> Result<(), Error> {
        match change {
            MembershipChange::Add(member) => self.check_add(member),
            MembershipChange::Promote(id) => self.check_promote(*id),
            MembershipChange::Remove(id) => self.check_exists(*id).map(drop),
            MembershipChange::UpdatePeerUrls(id, peer_urls) => {
                self.check_exists(*id)?;
                self.check_peer_urls_free(*id, peer_urls)
            }
        }
    }

    /// Records what a running member published about itself; a member not
    /// in the registry (removed meanwhile) is ignored, as in etcd.
    pub fn publish(&mut self, id: u64, name: &str, client_urls: &[String]) {
        if let Some(member) = self.by_id.get_mut(&id) {
            member.name = name.to_string();
            member.client_urls = client_urls.to_vec();
        }
    }

    pub fn to_stored(&self) -> Vec<StoredMember> {
        (self.by_id.values())
            .map(|member| StoredMember {
                id: member.id,
                name: member.name.clone(),
                peer_urls: member.peer_urls.clone(),
                client_urls: member.client_urls.clone(),
                is_learner: member.is_learner,
            })
            .collect()
    }

    pub fn from_stored(stored: Vec<StoredMember>) -> Members {
        Members::new(stored.into_iter().map(|member| Member {
            id: member.id,
            name: member.name,
            peer_urls: member.peer_urls,
            client_urls: member.client_urls,
            is_learner: member.is_learner,
        }))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialCluster {
    /// Sorted by member id, as etcd lists them.
    pub members: Vec<Member>,
    pub cluster_id: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("--initial-cluster: {0:?} is not of the form name=url")]
    BadEntry(String),
    #[error("--initial-cluster has no member named {0:?} (set --name or --initial-cluster)")]
    NameMissing(String),
    #[error("--initial-cluster: member {0:?} is listed twice with the same peer URLs")]
    Duplicate(String),
}

/// etcd `NewMember`: SHA-1 of the sorted peer URLs and the cluster token;
/// the id is the first 8 bytes, big-endian.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    added_member_id(peer_urls, token, None)
}

/// The id of a member added at runtime: etcd also hashes in the time (in
/// seconds) so re-adding the same URLs later gives a new id.
pub fn added_member_id(peer_urls: &[String], token: &str, unix_seconds: Option<i64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut hasher = sha1_smol::Sha1::new();
    for url in &urls {
        hasher.update(url.as_bytes());
    }
    hasher.update(token.as_bytes());
    if let Some(seconds) = unix_seconds {
        hasher.update(seconds.to_string().as_bytes());
    }
    first_word(&hasher.digest().bytes())
}

/// etcd `RaftCluster.genID`: SHA-1 of the sorted member ids (big-endian).
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = sha1_smol::Sha1::new();
    for id in ids {
        hasher.update(&id.to_be_bytes());
    }
    first_word(&hasher.digest().bytes())
}

fn first_word(digest: &[u8; 20]) -> u64 {
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl InitialCluster {
    /// Parses `name=url,name=url2,other=url3` (a name may repeat to give
    /// several peer URLs, as in etcd).
    pub fn parse(flag: &str, token: &str) -> Result<InitialCluster, MembershipError> {
        let mut urls_by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in flag
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
        {
            let (name, url) = entry
                .split_once('=')
                .ok_or_else(|| MembershipError::BadEntry(entry.to_string()))?;
            if name.is_empty() || url.is_empty() {
                return Err(MembershipError::BadEntry(entry.to_string()));
            }
            urls_by_name
                .entry(name.to_string())
                .or_default()
                .push(url.to_string());
        }
        let mut members: Vec<Member> = urls_by_name
            .into_iter()
            .map(|(name, peer_urls)| Member {
                id: member_id(&peer_urls, token),
                name,
                peer_urls,
                ..Member::default()
            })
            .collect();
        members.sort_by_key(|member| member.id);
        if let Some(pair) = members.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(MembershipError::Duplicate(pair[1].name.clone()));
        }
        let cluster_id = cluster_id(&members.iter().map(|member| member.id).collect::<Vec<_>>());
        Ok(InitialCluster {
            members,
            cluster_id,
        })
    }

    pub fn member(&self, name: &str) -> Result<&Member, MembershipError> {
        self.members
            .iter()
            .find(|member| member.name == name)
            .ok_or_else(|| MembershipError::NameMissing(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_single_member_ids_match_etcd() {
        // What etcd 3.4 reports for a member started with no flags.
        let cluster =
            InitialCluster::parse("default=http://localhost:2380", "etcd-cluster").unwrap();
        assert_eq!(format!("{:x}", cluster.members[0].id), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster.cluster_id), "cdf818194e3a8c32");
    }

    /// etcd's members_removed: a removed id is remembered (and stored)
    /// and never added again, so its old member, told it was removed,
    /// cannot stop a new one.
    #[test]
    fn a_removed_id_is_remembered_and_never_added_again() {
        let member = |id: u64, url: &str| Member {
            id,
            name: String::new(),
            peer_urls: vec![url.to_string()],
            client_urls: Vec::new(),
            is_learner: false,
        };
        let mut members = Members::new([member(1, "http://a:1"), member(2, "http://b:1")]);
        members.apply(&MembershipChange::Remove(2));
        members.apply(&MembershipChange::Remove(9)); // never a member
        assert!(members.is_removed(2) && !members.is_removed(9));
        assert_eq!(
            members.check(&MembershipChange::Add(member(2, "http://c:1"))),
            Err(Error::MemberNotFound)
        );
        assert_eq!(
            members.check(&MembershipChange::Add(member(3, "http://b:1"))),
            Ok(())
        );
        let stored = Members::from_stored(members.to_stored()).with_removed(members.removed());
        assert_eq!(stored, members);
    }

    #[test]
    fn bad_entries_are_rejected() {
        assert!(matches!(
            InitialCluster::parse("default", "t"),
            Err(MembershipError::BadEntry(_))
        ));
        assert!(matches!(
            InitialCluster::parse("a=", "t"),
            Err(MembershipError::BadEntry(_))
        ));
        let cluster = InitialCluster::parse("a=http://x:1", "t").unwrap();
        assert_eq!(
            cluster.member("b"),
            Err(MembershipError::NameMissing("b".into()))
        );
    }
}
