//! etcd's Prometheus metrics: the names, types, labels and buckets of the
//! set dashboards and alerts use, one registry per member (the simulator
//! runs several members in one process). Served on /metrics by
//! `api::http`, which also counts gRPC calls into `grpc_*`.
//!
//! Updating a metric is an atomic add or store. Families with labels are
//! resolved to their children once (per peer), so the raft loop never
//! takes the family's lock on its path.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

/// etcd's WAL fsync and backend commit buckets: 1 ms to about 8 s.
fn disk_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 14).expect("valid buckets")
}

pub struct Metrics {
    pub registry: Registry,
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes: IntCounter,
    pub proposals_committed: IntGauge,
    pub proposals_applied: IntGauge,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub slow_apply: IntCounter,
    pub heartbeat_send_failures: IntCounter,
    pub wal_fsync: Histogram,
    /// detcd's backend commit is saving a snapshot of the state image.
    pub backend_commit: Histogram,
    /// Each backend transaction but the last of a compaction's deletes,
    /// in milliseconds (etcd's compaction pause).
    pub compaction_pause: Histogram,
    /// A compaction's deletes from the backend, in milliseconds.
    pub compaction_total: Histogram,
    /// Revisions compactions deleted from the backend.
    pub compaction_keys: IntCounter,
    pub db_total_size: IntGauge,
    pub db_in_use_size: IntGauge,
    pub keys_total: IntGauge,
    pub put_total: IntCounter,
    pub range_total: IntCounter,
    pub delete_total: IntCounter,
    pub txn_total: IntCounter,
    pub lease_granted: IntCounter,
    pub lease_revoked: IntCounter,
    pub lease_renewed: IntCounter,
    peer_sent_bytes: IntCounterVec,
    peer_received_bytes: IntCounterVec,
    peer_round_trip: HistogramVec,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    cluster_version: IntGaugeVec,
}

impl Metrics {
    /// etcd's mvcc counters for one transaction's operations, as etcd's
    /// `metricsTxnWrite` counts them: every range, put and delete-range
    /// call (those of nested txns too), and the transaction itself when
    /// it holds more than one. Writes count on every member as it
    /// applies them, reads on the member that serves them.
    pub fn count_txn(&self, responses: &[crate::proto::etcdserverpb::ResponseOp]) {
        let (ranges, puts, deletes) = count_ops(responses);
        if ranges + puts + deletes > 1 {
            self.txn_total.inc();
        }
        self.range_total.inc_by(ranges);
        self.put_total.inc_by(puts);
        self.delete_total.inc_by(deletes);
    }

    pub fn new(server_version: &str) -> Metrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid gauge");
            registry
                .register(Box::new(gauge.clone()))
                .expect("registers once");
            gauge
        };
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid counter");
            registry
                .register(Box::new(counter.clone()))
                .expect("registers once");
            counter
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let family = IntCounterVec::new(Opts::new(name, help), labels).expect("valid family");
            registry
                .register(Box::new(family.clone()))
                .expect("registers once");
            family
        };
        let histogram_with = |name: &str, help: &str, buckets: Vec<f64>| {
            let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid histogram");
            registry
                .register(Box::new(histogram.clone()))
                .expect("registers once");
            histogram
        };
        let histogram = |name: &str, help: &str| histogram_with(name, help, disk_buckets());
        let version = IntGaugeVec::new(
            Opts::new(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
            ),
            &["server_version"],
        )
        .expect("valid family");
        registry
            .register(Box::new(version.clone()))
            .expect("registers once");
        version.with_label_values(&[server_version]).set(1);
        let cluster_version = IntGaugeVec::new(
            Opts::new(
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
            ),
            &["cluster_version"],
        )
        .expect("valid family");
        registry
            .register(Box::new(cluster_version.clone()))
            .expect("registers once");
        let peer_round_trip = HistogramVec::new(
            HistogramOpts::new(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
            )
            .buckets(exponential_buckets(0.0001, 2.0, 14).expect("valid buckets")),
            &["To"],
        )
        .expect("valid family");
        registry
            .register(Box::new(peer_round_trip.clone()))
            .expect("registers once");
        // Real processes only: the simulator runs many members in one.
        #[cfg(not(madsim))]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("registers once");
        Metrics {
            has_leader: gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            leader_changes: counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_committed: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_pending: gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed: counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            slow_apply: counter(
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            heartbeat_send_failures: counter(
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            ),
            wal_fsync: histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            ),
            backend_commit: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            ),
            // etcd's buckets: 1 ms to 4.096 s, and 100 ms to 819.2 s.
            compaction_pause: histogram_with(
                "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                "Bucketed histogram of db compaction pause duration.",
                exponential_buckets(1.0, 2.0, 13).expect("valid buckets"),
            ),
            compaction_total: histogram_with(
                "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "Bucketed histogram of db compaction total duration.",
                exponential_buckets(100.0, 2.0, 14).expect("valid buckets"),
            ),
            compaction_keys: counter(
                "etcd_debugging_mvcc_db_compaction_keys_total",
                "Total number of db keys compacted.",
            ),
            db_total_size: gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_in_use_size: gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            keys_total: gauge(
                "etcd_debugging_mvcc_keys_total",
                "Total number of keys.",
            ),
            put_total: counter("etcd_mvcc_put_total", "Total number of puts seen by this member."),
            range_total: counter(
                "etcd_mvcc_range_total",
                "Total number of ranges seen by this member.",
            ),
            delete_total: counter(
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            ),
            txn_total: counter(
                "etcd_mvcc_txn_total",
                "Total number of txns seen by this member.",
            ),
            lease_granted: counter(
                "etcd_debugging_server_lease_granted_total",
                "The total number of granted leases.",
            ),
            lease_revoked: counter(
                "etcd_debugging_server_lease_revoked_total",
                "The total number of revoked leases.",
            ),
            lease_renewed: counter(
                "etcd_debugging_server_lease_renewed_total",
                "The number of renewed leases seen by the leader.",
            ),
            peer_sent_bytes: counter_vec(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                &["To"],
            ),
            peer_received_bytes: counter_vec(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                &["From"],
            ),
            peer_round_trip,
            grpc_started: counter_vec(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &["grpc_type", "grpc_service", "grpc_method"],
            ),
            grpc_handled: counter_vec(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            ),
            cluster_version,
            registry,
        }
    }

    /// The cluster version the member runs at, as etcd labels it
    /// (major.minor); the one before goes.
    pub fn set_cluster_version(&self, major_minor: &str) {
        self.cluster_version.reset();
        self.cluster_version
            .with_label_values(&[major_minor])
            .set(1);
    }

    /// The sent-bytes counter for one peer, resolved once.
    pub fn peer_sent_bytes(&self, peer: u64) -> IntCounter {
        self.peer_sent_bytes
            .with_label_values(&[&format!("{peer:x}")])
    }

    pub fn peer_received_bytes(&self, peer: u64) -> IntCounter {
        self.peer_received_bytes
            .with_label_values(&[&format!("{peer:x}")])
    }

    pub fn peer_round_trip(&self, peer: u64) -> Histogram {
        self.peer_round_trip
            .with_label_values(&[&format!("{peer:x}")])
    }

    /// The registry in Prometheus's text format (what /metrics serves).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_utf8(&families, &mut text)
            .expect("text encoding cannot fail");
        text
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

/// (ranges, puts, deletes) among a txn's responses, nested ones included.
fn count_ops(responses: &[crate::proto::etcdserverpb::ResponseOp]) -> (u64, u64, u64) {
    use crate::proto::etcdserverpb::response_op::Response;
    let mut counts = (0, 0, 0);
    for response in responses {
        match &response.response {
            Some(Response::ResponseRange(_)) => counts.0 += 1,
            Some(Response::ResponsePut(_)) => counts.1 += 1,
            Some(Response::ResponseDeleteRange(_)) => counts.2 += 1,
            Some(Response::ResponseTxn(nested)) => {
                let inner = count_ops(&nested.responses);
                counts = (counts.0 + inner.0, counts.1 + inner.1, counts.2 + inner.2);
            }
            None => {}
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_txn_counts_its_operations_nested_ones_too_and_itself_past_one() {
        use crate::proto::etcdserverpb::{
            response_op::Response, DeleteRangeResponse, PutResponse, RangeResponse, ResponseOp,
            TxnResponse,
        };
        let op = |response| ResponseOp {
            response: Some(response),
        };
        let metrics = Metrics::new("3.4.23");
        metrics.count_txn(&[op(Response::ResponsePut(PutResponse::default()))]);
        assert_eq!((metrics.put_total.get(), metrics.txn_total.get()), (1, 0));
        let nested = TxnResponse {
            responses: vec![
                op(Response::ResponseRange(RangeResponse::default())),
                op(Response::ResponseDeleteRange(DeleteRangeResponse::default())),
            ],
            ..TxnResponse::default()
        };
        metrics.count_txn(&[
            op(Response::ResponsePut(PutResponse::default())),
            op(Response::ResponseTxn(nested)),
        ]);
        assert_eq!(
            (
                metrics.put_total.get(),
                metrics.range_total.get(),
                metrics.delete_total.get(),
                metrics.txn_total.get()
            ),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn the_dashboard_set_is_registered_with_etcds_names_and_types() {
        let metrics = Metrics::new("3.4.23");
        metrics.leader_changes.inc();
        metrics.wal_fsync.observe(0.002);
        metrics.peer_sent_bytes(0xab).inc_by(10);
        let text = metrics.encode();
        for (name, kind) in [
            ("etcd_server_has_leader", "gauge"),
            ("etcd_server_is_leader", "gauge"),
            ("etcd_server_leader_changes_seen_total", "counter"),
            ("etcd_server_proposals_committed_total", "gauge"),
            ("etcd_server_proposals_applied_total", "gauge"),
            ("etcd_server_proposals_pending", "gauge"),
            ("etcd_server_proposals_failed_total", "counter"),
            ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
            ("etcd_disk_backend_commit_duration_seconds", "histogram"),
            (
                "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                "histogram",
            ),
            (
                "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "histogram",
            ),
            ("etcd_debugging_mvcc_db_compaction_keys_total", "counter"),
            ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
            ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
            ("etcd_debugging_mvcc_keys_total", "gauge"),
            ("etcd_mvcc_put_total", "counter"),
            ("etcd_mvcc_range_total", "counter"),
            ("etcd_mvcc_delete_total", "counter"),
            ("etcd_mvcc_txn_total", "counter"),
            ("etcd_network_peer_sent_bytes_total", "counter"),
            ("etcd_server_slow_apply_total", "counter"),
            ("etcd_server_heartbeat_send_failures_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind} missing from:\n{text}"
            );
        }
        assert!(text.contains("etcd_server_leader_changes_seen_total 1\n"));
        assert!(text.contains("etcd_network_peer_sent_bytes_total{To=\"ab\"} 10\n"));
        assert!(text.contains("etcd_server_version{server_version=\"3.4.23\"} 1\n"));
        metrics.set_cluster_version("3.3");
        metrics.set_cluster_version("3.4");
        let text = metrics.encode();
        assert!(
            text.contains("etcd_cluster_version{cluster_version=\"3.4\"} 1\n")
                && !text.contains("cluster_version=\"3.3\""),
            "{text}"
        );
    }
}
