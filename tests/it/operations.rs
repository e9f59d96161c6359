//! What an operator's tooling reaches besides gRPC: /health and /version
//! next to gRPC on the client port, as etcd 3.4.23 answers them (diffed
//! against it), etcd 3.6's /livez and /readyz, Prometheus metrics with
//! etcd's names that move when the cluster does, `--listen-metrics-urls`,
//! and logs as `--logger` and `--log-outputs` ask.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Flavor, ServerProcess};

/// One HTTP/1.1 GET: (status code, body).
fn get(url: &str, path: &str) -> (u16, String) {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    // A chunked body (etcd's /metrics) is decoded well enough for a look.
    (status, body)
}

#[test]
fn health_and_version_answer_as_etcd_does() {
    let servers = [Flavor::Detcd, Flavor::Etcd].map(|flavor| ServerProcess::start(flavor, &[]));
    let answers = servers.each_ref().map(|server| {
        ["/health", "/health?serializable=true", "/version", "/nope"]
            .map(|path| (path, get(&server.client_url, path)))
    });
    assert_eq!(answers[0], answers[1], "detcd, then etcd 3.4.23");
    assert_eq!(answers[0][0].1, (200, "{\"health\":\"true\"}".to_string()));

    tracing::info!("etcd 3.6's probes: ok, verbose, a check excluded");
    let detcd = &servers[0];
    assert_eq!(get(&detcd.client_url, "/livez"), (200, "ok".to_string()));
    assert_eq!(
        get(&detcd.client_url, "/readyz?verbose"),
        (
            200,
            "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nreadyz check passed\n"
                .to_string()
        )
    );
    let (status, body) = get(
        &detcd.client_url,
        "/readyz?verbose&exclude=linearizable_read",
    );
    assert_eq!(status, 200);
    assert!(body.contains("[+]linearizable_read excluded: ok"), "{body}");
}

#[test]
fn an_alarm_makes_health_false_as_in_etcd() {
    for flavor in [Flavor::Detcd, Flavor::Etcd] {
        let server = ServerProcess::start(flavor, &["--quota-backend-bytes=1"]);
        let _ = server.ctl(&["put", "a", "1"]);
        assert!(server.ctl_ok(&["alarm", "list"]).contains("NOSPACE"));
        assert_eq!(
            get(&server.client_url, "/health"),
            (503, "{\"health\":\"false\"}\n".to_string()),
            "{flavor:?}"
        );
    }
}

fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn metrics_have_etcds_names_and_move() {
    let metrics_port = crate::support::free_port();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let server = ServerProcess::start(
        Flavor::Detcd,
        &[&format!("--listen-metrics-urls={metrics_url}")],
    );
    let (status, before) = get(&server.client_url, "/metrics");
    assert_eq!(status, 200);
    for name in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_server_leader_changes_seen_total 1",
        "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
        "# TYPE etcd_disk_backend_commit_duration_seconds histogram",
        "# TYPE etcd_mvcc_db_total_size_in_bytes gauge",
        "# TYPE etcd_mvcc_db_total_size_in_use_in_bytes gauge",
        "# TYPE etcd_debugging_mvcc_keys_total gauge",
        "# TYPE etcd_server_proposals_pending gauge",
        "# TYPE etcd_server_proposals_failed_total counter",
        "# TYPE etcd_server_slow_apply_total counter",
        "# TYPE etcd_server_heartbeat_send_failures_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_cpu_seconds_total counter",
    ] {
        assert!(before.contains(name), "{name} missing:\n{before}");
    }
    tracing::info!("a put moves the put counter, the keys, the proposals and the gRPC counters");
    server.ctl_ok(&["put", "counted", "1"]);
    let (_, after) = get(&metrics_url, "/metrics");
    assert_eq!(
        sample(&after, "etcd_mvcc_put_total"),
        sample(&before, "etcd_mvcc_put_total") + 1.0
    );
    assert_eq!(sample(&after, "etcd_debugging_mvcc_keys_total"), 1.0);
    assert!(
        sample(&after, "etcd_server_proposals_applied_total")
            > sample(&before, "etcd_server_proposals_applied_total")
    );
    assert!(
        after.contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1"),
        "{after}"
    );
    assert!(sample(&after, "etcd_disk_wal_fsync_duration_seconds_count") >= 1.0);

    tracing::info!("the metrics listener serves health too, and no gRPC");
    assert_eq!(get(&metrics_url, "/health").0, 200);
    let output = crate::support::etcdctl(&metrics_url, &["get", "x", "--command-timeout=2s"], None);
    assert!(!output.status.success());
}

#[test]
fn zap_logs_are_json_lines_without_colour_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("detcd.log");
    let mut server = ServerProcess::start(
        Flavor::Detcd,
        &["--logger=zap", &format!("--log-outputs={}", log.display())],
    );
    server.ctl_ok(&["put", "a", "1"]);
    server.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().count() >= 3, "{text}");
    for line in text.lines() {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(
            parsed.get("level").is_some() && parsed.get("message").is_some(),
            "{line}"
        );
    }
    assert!(text.contains("leader changed"), "{text}");
    assert!(!text.contains('\u{1b}'), "no colour codes in a file");
}
