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

/// Also the raft log a new cluster starts with: its leader sets the
/// cluster version (/version's `etcdcluster`, "not_decided" before) in an
/// entry of its own, as etcd's does, so both count the same raft index.
#[test]
fn health_and_version_answer_as_etcd_does() {
    let servers = [Flavor::Detcd, Flavor::Etcd].map(|flavor| ServerProcess::start(flavor, &[]));
    for server in &servers {
        // etcd's leader sets it at once or within its 4 s version check.
        let decided = detcd_launch::eventually(Duration::from_secs(15), || {
            !get(&server.client_url, "/version")
                .1
                .contains("not_decided")
        });
        assert!(decided, "{}: no cluster version", server.client_url);
    }
    let answers = servers.each_ref().map(|server| {
        ["/health", "/health?serializable=true", "/version", "/nope"]
            .map(|path| (path, get(&server.client_url, path)))
    });
    assert_eq!(answers[0], answers[1], "detcd, then etcd 3.4.23");
    assert_eq!(answers[0][0].1, (200, "{\"health\":\"true\"}".to_string()));

    phase!("the same writes leave both at the same raft index");
    let indexes = servers.each_ref().map(|server| {
        for args in [["put", "a", "1"], ["put", "b", "2"], ["del", "a", ""]] {
            let args: Vec<&str> = args.into_iter().filter(|arg| !arg.is_empty()).collect();
            server.ctl_ok(&args);
        }
        let status: serde_json::Value =
            serde_json::from_str(&server.ctl_ok(&["endpoint", "status", "-w", "json"])).unwrap();
        let status = &status[0]["Status"];
        (
            status["raftIndex"].clone(),
            status["raftAppliedIndex"].clone(),
        )
    });
    assert_eq!(indexes[0], indexes[1], "detcd, then etcd 3.4.23");

    phase!("etcd 3.6's probes: ok, verbose, a check excluded");
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

/// The CORS headers of one HTTP/1.1 request with an Origin: (status,
/// the `access-control-*` header lines, sorted).
fn cors_headers(url: &str, method: &str, path: &str) -> (u16, Vec<String>) {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nOrigin: http://browser.example\r\n\
         Access-Control-Request-Method: POST\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    let mut cors: Vec<String> = head
        .lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("access-control-"))
        .map(str::to_ascii_lowercase)
        .collect();
    cors.sort();
    (status, cors)
}

/// A browser may call the JSON gateway and the HTTP endpoints: etcd's
/// default `--cors '*'` answers with its CORS headers, preflights too.
#[test]
fn cors_headers_are_etcds() {
    let servers = [Flavor::Detcd, Flavor::Etcd].map(|flavor| ServerProcess::start(flavor, &[]));
    let answers = servers.each_ref().map(|server| {
        [
            ("POST", "/v3/kv/range"),
            ("OPTIONS", "/v3/kv/put"),
            ("GET", "/version"),
        ]
        .map(|(method, path)| cors_headers(&server.client_url, method, path))
    });
    assert_eq!(answers[0], answers[1], "detcd, then etcd 3.4.23");
    assert_eq!(answers[0][0].1.len(), 3, "{:?}", answers[0]);
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

pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// A member's /metrics text.
pub fn metrics(client_url: &str) -> String {
    let (status, text) = get(client_url, "/metrics");
    assert_eq!(status, 200);
    text
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
    phase!("a put moves the put counter, the keys, the proposals and the gRPC counters");
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

    phase!("the DB size is the backend file's, as Status reports it; in use is no more");
    let total = sample(&after, "etcd_mvcc_db_total_size_in_bytes");
    let in_use = sample(&after, "etcd_mvcc_db_total_size_in_use_in_bytes");
    assert!(
        total >= 4096.0,
        "a file of whole pages, not the keys' bytes: {total}"
    );
    assert!(
        in_use > 0.0 && in_use <= total,
        "in use {in_use} of {total}"
    );

    phase!("the metrics listener serves health too, and no gRPC");
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

/// `etcdctl snapshot save` against a loaded 3-member cluster, `detcd
/// snapshot status` on the file, then `detcd snapshot restore` into each
/// member of a new 3-member cluster: it serves the same keys, values and
/// revisions (`get --from-key -w json`), leases included; a damaged file
/// is refused.
#[test]
fn a_backup_restores_into_a_new_cluster_with_the_same_keys_and_revisions() {
    use crate::cluster_support::{flavor_from_env, Cluster, Consistency};
    if flavor_from_env() != Flavor::Detcd {
        // detcd's own restore tool: nothing to run against etcd.
        eprintln!("SKIPPED: restoring needs detcd's restore tool (DETCD_IT_FLAVOR is etcd)");
        return;
    }
    let source = Cluster::start("backup-source", 3, &[]);
    let all = source.all();
    for n in 0..60 {
        source.put(
            all[n % 3],
            &format!("key/{:02}", n % 25),
            &format!("value-{n}"),
        );
    }
    source.ctl_ok(0, &["del", "key/03"]);
    let lease = source.ctl_ok(1, &["lease", "grant", "600"]);
    let lease = lease.split(' ').nth(1).unwrap().to_string();
    source.ctl_ok(1, &["put", "leased", "x", &format!("--lease={lease}")]);
    source.ctl_ok(2, &["compaction", "10"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let saved = source.ctl_ok(0, &["snapshot", "save", file.to_str().unwrap()]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    let expected = source.keyspace(0, Consistency::Linearizable);
    let member_dir = source.members[0].data_dir.join("member");
    let scratch: Vec<String> = walk(&member_dir)
        .into_iter()
        .filter(|name| name.ends_with(".scratch"))
        .collect();
    assert!(
        scratch.is_empty(),
        "the backup's scratch file stays: {scratch:?}"
    );

    phase!("detcd snapshot status reads the file etcdctl wrote");
    let status =
        crate::support::detcd_tool(&["snapshot", "status", file.to_str().unwrap()], dir.path());
    let printed = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let fields: Vec<&str> = printed.trim().split(", ").collect();
    assert_eq!(fields[1], expected.revision.to_string(), "{printed}");
    // TOTAL KEYS counts every bucket's entries, as etcdctl's does (below).
    assert!(fields[2].parse::<usize>().unwrap() > 25, "{printed}");

    phase!("etcdctl snapshot status agrees with it field for field");
    let path = file.to_str().unwrap();
    let ours = crate::support::detcd_tool(&["snapshot", "status", path, "-w", "json"], dir.path());
    let theirs = crate::support::etcdctl(
        &source.members[0].client_url,
        &["snapshot", "status", path, "-w", "json"],
        None,
    );
    let parse = |output: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&output.stderr)))
    };
    assert_eq!(parse(&ours), parse(&theirs));

    phase!("etcdctl snapshot restore makes a data dir etcd 3.4.23 serves it from");
    let etcd = start_restored(Flavor::Etcd, &file);
    let served = crate::cluster_support::parse_keyspace(&etcd.ctl_ok(&[
        "get",
        "",
        "--from-key",
        "-w",
        "json",
    ]));
    assert_eq!(served, expected);
    let ttl = etcd.ctl_ok(&["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    let compacted = etcd.ctl(&["get", "key/01", "--rev", "9"]);
    assert!(
        String::from_utf8_lossy(&compacted.stderr).contains("required revision has been compacted")
    );

    phase!("etcd's own snapshot, after writes there, restores into detcd");
    etcd.ctl_ok(&["put", "written-by-etcd", "1"]);
    etcd.ctl_ok(&["del", "key/04"]);
    let etcd_file = dir.path().join("from-etcd.db");
    etcd.ctl_ok(&["snapshot", "save", etcd_file.to_str().unwrap()]);
    let etcd_keyspace = crate::cluster_support::parse_keyspace(&etcd.ctl_ok(&[
        "get",
        "",
        "--from-key",
        "-w",
        "json",
    ]));
    let detcd = start_restored(Flavor::Detcd, &etcd_file);
    let served = crate::cluster_support::parse_keyspace(&detcd.ctl_ok(&[
        "get",
        "",
        "--from-key",
        "-w",
        "json",
    ]));
    assert_eq!(served, etcd_keyspace);
    let ttl = detcd.ctl_ok(&["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    drop((etcd, detcd));

    phase!("a truncated copy is refused, writing nothing");
    let truncated = dir.path().join("truncated.db");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    let refused_dir = dir.path().join("refused.etcd");
    let refused = crate::support::detcd_tool(
        &[
            "snapshot",
            "restore",
            truncated.to_str().unwrap(),
            "--data-dir",
            refused_dir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("checksum"));
    assert!(!refused_dir.exists());

    phase!("restore the file into every member of a new cluster and start it");
    let mut target = Cluster::start("backup-target", 3, &[]);
    for index in target.all() {
        target.terminate(index);
        std::fs::remove_dir_all(&target.members[index].data_dir).unwrap();
        let member = &target.members[index];
        let restored = crate::support::detcd_tool(
            &[
                "snapshot",
                "restore",
                file.to_str().unwrap(),
                "--data-dir",
                member.data_dir.to_str().unwrap(),
                "--name",
                &member.name,
                "--initial-cluster",
                target.initial_cluster(),
                "--initial-cluster-token",
                &target.token,
                "--initial-advertise-peer-urls",
                &member.peer_url,
            ],
            dir.path(),
        );
        assert!(
            restored.status.success(),
            "{}",
            String::from_utf8_lossy(&restored.stderr)
        );
    }
    let all = target.all();
    target.restart(&all);
    for index in target.all() {
        assert_eq!(target.keyspace(index, Consistency::Linearizable), expected);
    }
    let ttl = target.ctl_ok(0, &["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    phase!("and it takes writes at the next revision");
    target.put(1, "after-restore", "1");
    assert_eq!(
        target.keyspace(2, Consistency::Linearizable).revision,
        expected.revision + 1
    );

    phase!("Maintenance.Hash agrees on every member once they applied the same index");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let urls: Vec<String> = target
        .members
        .iter()
        .map(|m| m.client_url.clone())
        .collect();
    let hashes = || {
        runtime.block_on(async {
            let mut hashes = Vec::new();
            for url in &urls {
                let mut client =
                    detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient::connect(
                        url.clone(),
                    )
                    .await
                    .unwrap();
                let answer = client
                    .hash(detcd::proto::etcdserverpb::HashRequest {})
                    .await
                    .unwrap()
                    .into_inner();
                hashes.push(answer.hash);
            }
            hashes
        })
    };
    assert!(
        crate::support::eventually(Duration::from_secs(10), || {
            let hashes = hashes();
            hashes.windows(2).all(|pair| pair[0] == pair[1])
        }),
        "members disagree on Hash: {:?}",
        hashes()
    );
}

/// A single-member server of `flavor` on a data dir restored from `file`
/// by its own tool (etcdctl for etcd, detcd for detcd).
fn start_restored(flavor: Flavor, file: &std::path::Path) -> ServerProcess {
    ServerProcess::start_prepared(flavor, &[], |server| {
        let initial_cluster = format!("{}={}", server.name, server.peer_url);
        let args = [
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            server.data_dir.to_str().unwrap(),
            "--name",
            &server.name,
            "--initial-cluster",
            &initial_cluster,
            "--initial-advertise-peer-urls",
            &server.peer_url,
        ];
        let restored = match flavor {
            Flavor::Etcd => crate::support::etcdctl(&server.client_url, &args, None),
            Flavor::Detcd => crate::support::detcd_tool(&args, file.parent().unwrap()),
        };
        assert!(
            restored.status.success(),
            "{}",
            String::from_utf8_lossy(&restored.stderr)
        );
    })
}

/// A snapshot etcd 3.4.23 saved (etcd's buckets only) restores into
/// detcd: the same keys and revisions, the compaction, the lease with its
/// key, users and roles.
#[test]
fn an_etcd_snapshot_restores_into_detcd() {
    let etcd = ServerProcess::start(Flavor::Etcd, &[]);
    for n in 0..40 {
        etcd.ctl_ok(&["put", &format!("k/{:02}", n % 15), &format!("v{n}")]);
    }
    etcd.ctl_ok(&["del", "k/0", "--prefix"]);
    let lease = etcd.ctl_ok(&["lease", "grant", "600"]);
    let lease = lease.split(' ').nth(1).unwrap().to_string();
    etcd.ctl_ok(&["put", "leased", "x", &format!("--lease={lease}")]);
    etcd.ctl_ok(&["user", "add", "alice:secret"]);
    etcd.ctl_ok(&["role", "add", "reader"]);
    etcd.ctl_ok(&[
        "role",
        "grant-permission",
        "reader",
        "read",
        "k/",
        "--prefix",
    ]);
    etcd.ctl_ok(&["user", "grant-role", "alice", "reader"]);
    etcd.ctl_ok(&["compaction", "20"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd.db");
    etcd.ctl_ok(&["snapshot", "save", file.to_str().unwrap()]);

    let detcd = start_restored(Flavor::Detcd, &file);
    for args in [
        &["get", "", "--from-key", "-w", "json"][..],
        &["get", "k/1", "--prefix", "--rev", "25", "-w", "json"],
        &["user", "get", "alice"],
        &["role", "get", "reader"],
    ] {
        let theirs = etcd.ctl_ok(args);
        let ours = detcd.ctl_ok(args);
        if args[0] == "get" {
            let parse = crate::cluster_support::parse_keyspace;
            assert_eq!(parse(&ours), parse(&theirs), "{args:?}");
        } else {
            assert_eq!(ours, theirs, "{args:?}");
        }
    }
    let ttl = detcd.ctl_ok(&["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    let compacted = detcd.ctl(&["get", "k/11", "--rev", "19"]);
    assert!(
        String::from_utf8_lossy(&compacted.stderr).contains("required revision has been compacted")
    );
    phase!("and the restored member takes writes at the next revision");
    let before = detcd.revision();
    detcd.ctl_ok(&["put", "after", "1"]);
    assert_eq!(detcd.revision(), before + 1);
}

/// `--auto-compaction-mode periodic` keeps about one retention of history:
/// under steady writes, the start of history is compacted away on its own.
/// A retention that does not parse is refused at start.
#[test]
fn periodic_auto_compaction_compacts_on_its_own() {
    let server = ServerProcess::start(
        Flavor::Detcd,
        &[
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=2s",
        ],
    );
    let mut written = 0;
    let compacted = crate::support::eventually(Duration::from_secs(40), || {
        written += 1;
        server.ctl_ok(&["put", "k", &written.to_string()]);
        let old = server.ctl(&["get", "k", "--rev=2"]);
        String::from_utf8_lossy(&old.stderr).contains("required revision has been compacted")
    });
    assert!(
        compacted,
        "no compaction after {written} writes:\n{}",
        server.log()
    );
    assert!(server.log().contains("auto-compacted"));

    let dir = tempfile::tempdir().unwrap();
    let refused = crate::support::detcd_once(
        &["--auto-compaction-retention=soon", "--data-dir", "x"],
        dir.path(),
    );
    assert!(!refused.status.success(), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("auto-compaction-retention"));
}

/// Every file name under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            names.extend(walk(&entry.path()));
        } else {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

/// `detcd gateway start` (etcd's TCP gateway): etcdctl given only the
/// gateway's address reads and writes; once the member it tries first
/// dies, new connections go to the members left.
#[test]
fn the_tcp_gateway_carries_clients_to_live_members() {
    use crate::cluster_support::Cluster;
    let mut cluster = Cluster::start("tcp-gateway", 3, &[]);
    // A follower dies: the gateway is under test, not a leader election.
    let leader = cluster.wait_for_leader(&cluster.all());
    let victim = (leader + 1) % 3;
    let order: Vec<usize> = (0..3).map(|i| (victim + i) % 3).collect();
    let dir = tempfile::tempdir().unwrap();
    let gateway = format!("127.0.0.1:{}", crate::support::free_port());
    let log = detcd_launch::Member {
        log_path: dir.path().join("gateway.log"),
        ..detcd_launch::Member::at("gateway", "http", "127.0.0.1", (0, 0), dir.path())
    };
    phase!(flavor = ?cluster.flavor, "a gateway in front of three members");
    let launch = detcd_launch::Launch {
        args: [
            "gateway".to_string(),
            format!("--endpoints={}", cluster.endpoints(&order)),
            format!("--listen-addr={gateway}"),
            "--retry-delay=1s".into(),
            "start".into(),
        ]
        .map(Into::into)
        .to_vec(),
        configured_elsewhere: true,
        ..detcd_launch::Launch::new(cluster.flavor.binary())
    };
    let server = launch.spawn(&log).unwrap();
    assert!(
        crate::support::eventually(Duration::from_secs(10), || log
            .log()
            .contains("ready to proxy client requests")),
        "the gateway says it is ready:\n{}",
        log.log()
    );
    let through = |args: &[&str]| crate::support::etcdctl(&gateway, args, None);
    assert!(
        through(&["put", "k", "v1"]).status.success(),
        "{}",
        log.log()
    );
    cluster.kill(victim);
    phase!("the gateway's first endpoint, a follower, is gone");
    for round in 0..4 {
        let value = format!("v{}", round + 2);
        let put = through(&["put", "k", &value]);
        assert!(
            put.status.success(),
            "round {round}: {}\n{}",
            String::from_utf8_lossy(&put.stderr),
            log.log()
        );
        let read = through(&["get", "k", "--print-value-only"]);
        assert_eq!(String::from_utf8_lossy(&read.stdout), format!("{value}\n"));
    }
    drop(server);
}

/// `--backend-batch-limit`: a batch holding that many changes commits
/// before its interval (an hour here) is up. etcd's default limit, 10,000,
/// would leave a dozen puts for the hour.
#[test]
fn the_backend_commits_a_full_batch_before_its_interval() {
    let server = ServerProcess::start(
        crate::cluster_support::flavor_from_env(),
        &["--backend-batch-interval=1h", "--backend-batch-limit=5"],
    );
    let commits = || {
        sample(
            &metrics(&server.client_url),
            "etcd_disk_backend_commit_duration_seconds_count",
        )
    };
    let before = commits();
    for index in 0..12 {
        server.ctl_ok(&["put", &format!("batched{index}"), "v"]);
    }
    let mut after = before;
    crate::support::eventually(crate::cluster_support::CONVERGE_TIMEOUT, || {
        after = commits();
        after >= before + 2.0
    });
    assert!(
        after >= before + 2.0,
        "{before} commits before 12 puts, {after} after"
    );
}

/// etcd counts an apply, and a read-only range, slower than
/// `--experimental-warning-apply-duration` in one metric; with 1ns every
/// request is slow.
#[test]
fn slow_applies_and_reads_are_counted_past_the_warning_duration() {
    let flavor = crate::cluster_support::flavor_from_env();
    let server = ServerProcess::start(flavor, &["--experimental-warning-apply-duration=1ns"]);
    let slow = || sample(&metrics(&server.client_url), "etcd_server_slow_apply_total");
    let before = slow();
    server.ctl_ok(&["put", "slow", "1"]);
    let after_put = slow();
    assert!(
        after_put > before,
        "a put's apply: {before} then {after_put}"
    );
    server.ctl_ok(&["get", "slow", "--consistency=s"]);
    let after_get = slow();
    assert!(
        after_get > after_put,
        "a read: {after_put} then {after_get}"
    );
    if flavor == Flavor::Detcd {
        assert!(server.log().contains("apply request took too long"));
    }
}

/// etcd's `--experimental-compaction-batch-limit`: a compaction deletes
/// old revisions from the backend a batch at a time, each batch but the
/// last observed as a pause; the deleted revisions are counted.
#[test]
fn a_compaction_deletes_in_batches_of_the_limit() {
    let server = ServerProcess::start(
        crate::cluster_support::flavor_from_env(),
        &["--experimental-compaction-batch-limit=1"],
    );
    let read = |name: &str| sample(&metrics(&server.client_url), name);
    const KEYS: &str = "etcd_debugging_mvcc_db_compaction_keys_total";
    const PAUSES: &str = "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds_count";
    let (keys_before, pauses_before) = (read(KEYS), read(PAUSES));
    for value in 1..=5 {
        server.ctl_ok(&["put", "batched", &value.to_string()]);
    }
    let revision = server.revision();
    server.ctl_ok(&["compact", &revision.to_string(), "--physical"]);
    let mut deleted = 0.0;
    crate::support::eventually(crate::cluster_support::CONVERGE_TIMEOUT, || {
        deleted = read(KEYS) - keys_before;
        deleted >= 4.0
    });
    assert_eq!(deleted, 4.0, "the four older revisions of the key");
    assert!(
        read(PAUSES) >= pauses_before + 1.0,
        "one revision to a batch"
    );
    assert_eq!(
        server
            .ctl_ok(&["get", "batched", "--print-value-only"])
            .trim(),
        "5"
    );
}
