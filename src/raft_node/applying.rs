//! Applying one committed entry's request, and what follows from it
//! (tokens, probes for the simulator, slow-apply warnings).

use prost::Message as _;
use raft::eraftpb::Entry;

use crate::apply::Response;
use crate::error::Error;
use crate::membership::MembershipChange;
use crate::proto::detcdpb::{internal_request::Request, InternalRequest};

use super::{FatalError, RaftNode};

impl RaftNode {
    /// A login assigns its token on every member; deleting a user or
    /// changing its password voids its tokens, disabling auth voids all.
    pub(super) fn on_auth_applied(&self, result: Option<&Result<Response, Error>>) {
        use crate::auth::TokenEffect;
        let Some(Ok(response)) = result else { return };
        let mut tokens = self.shared.tokens.lock().expect("tokens lock");
        match response {
            Response::Authenticated { user, token, .. } if !token.is_empty() => {
                tokens.assign(token.clone(), user.clone(), self.clock.elapsed())
            }
            Response::AuthChanged(TokenEffect::InvalidateUser(user)) => {
                tokens.invalidate_user(user)
            }
            Response::AuthChanged(TokenEffect::InvalidateAll) => tokens.clear(),
            _ => {}
        }
    }

    #[cfg(madsim)]
    pub(super) fn report_applied(&self, entry: &Entry) {
        if !crate::probe::observing() {
            return;
        }
        let state_hash = entry
            .index
            .is_multiple_of(crate::probe::STATE_HASH_EVERY)
            .then(|| {
                self.shared
                    .state
                    .read()
                    .expect("state lock")
                    .state_hash()
                    .ok()
            })
            .flatten();
        let words: Vec<u64> = [entry.get_entry_type() as u64]
            .into_iter()
            .chain(entry.data.iter().map(|&byte| u64::from(byte)))
            .collect();
        crate::probe::applied(
            self.shared.member_id,
            entry.index,
            entry.term,
            crate::rng::stable_hash(&words),
            state_hash,
        );
    }

    /// Applies one entry's request; an apply slower than
    /// `--experimental-warning-apply-duration` is counted and logged, as
    /// etcd does.
    pub(super) fn apply_request(&mut self, entry: &Entry) -> Result<(), FatalError> {
        let started = self.clock.elapsed();
        let applied = self.apply_request_timed(entry);
        let took = self.clock.elapsed().saturating_sub(started);
        if took > self.slow_apply {
            self.shared.metrics.slow_apply.inc();
            tracing::warn!(
                index = entry.index,
                took = ?took,
                expected = ?self.slow_apply,
                "apply request took too long"
            );
        }
        applied
    }

    pub(super) fn apply_request_timed(&mut self, entry: &Entry) -> Result<(), FatalError> {
        let request = match InternalRequest::decode(&entry.data[..]) {
            Ok(request) => request,
            Err(error) => {
                // What we propose always decodes (`api::validate` uses the
                // decoder's limits), so this is a foreign or forged entry;
                // its proposer, if any, times out.
                self.skip_entry(entry, "a committed entry", &error.to_string());
                return Ok(());
            }
        };
        if let Some(Request::Publish(attributes)) = &request.request {
            // Only our current attributes count: an older publish replayed
            // from the log (another name or client URLs before a restart)
            // must not stop us from publishing what the flags say now.
            self.published |= *attributes == self.attributes;
        }
        let version_before =
            matches!(request.request, Some(Request::ClusterVersionSet(_))).then(|| {
                self.shared
                    .state
                    .read()
                    .expect("state lock")
                    .cluster_version()
                    .to_string()
            });
        let result = self.shared.state.write().expect("state lock").apply_as(
            entry.index,
            request.request.as_ref(),
            request.auth.as_ref(),
        );
        self.on_lease_applied(entry.index, request.request.as_ref(), result.as_ref());
        match &result {
            Some(Ok(Response::Put(_))) => self.shared.metrics.put_total.inc(),
            Some(Ok(Response::DeleteRange(_))) => self.shared.metrics.delete_total.inc(),
            Some(Ok(Response::Txn(txn))) => self.shared.metrics.count_txn(&txn.responses),
            _ => {}
        }
        self.on_auth_applied(result.as_ref());
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::DoubleApply)
            && matches!(
                request.request,
                Some(Request::Put(_) | Request::DeleteRange(_) | Request::Txn(_))
            )
            && !std::mem::replace(&mut self.sabotage_applied_twice, true)
        {
            self.shared
                .state
                .write()
                .expect("state lock")
                .apply_again_for_sabotage(request.request.as_ref());
        }
        if let (Some(Ok(_)), Some(Request::MemberUpdate(update))) = (&result, &request.request) {
            self.update_transport(&MembershipChange::UpdatePeerUrls(
                update.id,
                update.peer_urls.clone(),
            ));
        }
        if let (Some(before), Some(Request::ClusterVersionSet(set))) =
            (version_before, &request.request)
        {
            if before != set.ver {
                log_capabilities(&self.shared.metrics, &set.ver);
            }
        }
        self.announce_published();
        if let Some(result) = result {
            self.proposals.answer(request.id, result);
        }
        Ok(())
    }

    /// Logs, once per process, that this member's attributes are in the
    /// cluster and a leader is known: etcd's "published local member"
    /// line, which tooling (etcd's own e2e tests among it) waits for
    /// before it sends requests.
    pub(super) fn announce_published(&mut self) {
        if self.published && !self.published_announced && self.known_leader != raft::INVALID_ID {
            self.published_announced = true;
            tracing::info!(
                member = format_args!("{:x}", self.shared.member_id),
                name = %self.attributes.name,
                client_urls = ?self.attributes.client_urls,
                cluster = format_args!("{:x}", self.shared.cluster_id),
                "published local member to cluster through raft"
            );
        }
    }

    /// Never stop on what an entry holds: a committed entry is the same
    /// bytes on every member, so every member skips an undecodable one
    /// alike (it takes its index, nothing else) and the state machines stay
    /// equal.
    pub(super) fn skip_entry(&mut self, entry: &Entry, what: &str, reason: &str) {
        tracing::error!(
            index = entry.index,
            %reason,
            "skipping {what} that cannot be decoded"
        );
        self.shared
            .state
            .write()
            .expect("state lock")
            .apply(entry.index, None);
    }
}

/// etcd's line for the cluster version a member runs at (logged when it
/// is recovered at start and when an entry changes it); tooling waits for
/// it as for `announce_published`'s.
pub(super) fn log_capabilities(metrics: &crate::metrics::Metrics, version: &str) {
    let mut parts = version.split('.');
    let major_minor = match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => version.to_string(),
    };
    metrics.set_cluster_version(&major_minor);
    tracing::info!(
        cluster_version = %major_minor,
        "enabled capabilities for version {major_minor}"
    );
}
