//! Operator experience of the binary: etcd's flags and environment
//! variables, and a clear error (not a hang or a panic) for bad input.

use crate::support::{detcd_once, etcdctl, free_port, Flavor, ServerProcess};

#[test]
fn unknown_flag_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = detcd_once(&["--no-such-flag"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));
}

#[test]
fn bad_flag_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--snapshot-count", "0"][..],
        &["--initial-cluster-state", "sideways"],
        &["--listen-client-urls", "ftp://127.0.0.1:1"],
        &["--heartbeat-interval", "500", "--election-timeout", "1000"],
        &["--name", "x", "--initial-cluster", "y=http://127.0.0.1:1"],
    ] {
        let output = detcd_once(args, dir.path());
        assert!(!output.status.success(), "{args:?} must be refused");
        assert!(!output.stderr.is_empty(), "{args:?} must say why");
    }
}

#[test]
fn port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", holder.local_addr().unwrap());
    let output = detcd_once(&["--listen-client-urls", &url], dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("address already in use") || stderr.contains("Address already in use"),
        "{stderr}"
    );
}

#[test]
fn unreadable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let output = detcd_once(
        &[
            "--data-dir",
            not_a_dir.to_str().unwrap(),
            "--listen-client-urls",
            &url,
        ],
        dir.path(),
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("data dir"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn environment_variables_configure_like_flags() {
    tracing::info!("ETCD_NAME and ETCD_DATA_DIR set what --name and --data-dir would");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_detcd"))
        .current_dir(dir.path())
        .env("ETCD_NAME", "envnode")
        .env("ETCD_LISTEN_CLIENT_URLS", &url)
        .env(
            "ETCD_LISTEN_PEER_URLS",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut answered = false;
    for _ in 0..200 {
        if etcdctl(&url, &["put", "k", "v"], None).status.success() {
            answered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        answered,
        "the server configured from the environment serves"
    );
    assert!(
        dir.path().join("envnode.etcd/member/wal").is_dir(),
        "default data dir is ${{name}}.etcd"
    );
}

#[test]
fn unimplemented_services_answer_unimplemented() {
    let server = ServerProcess::start(Flavor::Detcd, &[]);
    let output = server.ctl(&["lease", "grant", "10"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Unimplemented"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn sigterm_shuts_down_cleanly_and_keeps_the_data() {
    tracing::info!("SIGTERM: exit 0, and the data is there after a restart");
    let mut server = ServerProcess::start(Flavor::Detcd, &[]);
    server.ctl_ok(&["put", "before-shutdown", "kept"]);
    assert_eq!(
        server.terminate(),
        Some(0),
        "SIGTERM is a clean shutdown:\n{}",
        server.log()
    );
    server.restart();
    assert_eq!(
        server.ctl_ok(&["get", "before-shutdown", "--print-value-only"]),
        "kept\n"
    );
}

#[test]
fn oversized_request_is_refused_like_etcd() {
    tracing::info!(
        "with --max-request-bytes 1000, a 2000-byte value is refused and changes nothing"
    );
    let server = ServerProcess::start(Flavor::Detcd, &["--max-request-bytes", "1000"]);
    let output = server.ctl_stdin(&["put", "big"], &"x".repeat(2000));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("etcdserver: request is too large"));
    assert_eq!(server.ctl_ok(&["get", "big", "--print-value-only"]), "");
    server.ctl_ok(&["put", "small", "fits"]);
}

#[test]
fn endpoint_urls_with_scheme_work_like_etcd() {
    // etcdctl dials an endpoint command's `--endpoints=http://…` as
    // passthrough:///http://…, so grpc-go sends the whole URL as
    // :authority. etcd takes it; h2 alone would reset the stream.
    for flavor in [Flavor::Etcd, Flavor::Detcd] {
        tracing::info!("{flavor:?}: endpoint commands against an endpoint URL with its scheme");
        let server = ServerProcess::start(flavor, &[]);
        let url = server.client_url.as_str();
        assert!(
            url.starts_with("http://"),
            "the endpoint carries its scheme: {url}"
        );

        let statuses: serde_json::Value =
            serde_json::from_str(&server.ctl_ok(&["endpoint", "status", "-w", "json"])).unwrap();
        assert_eq!(statuses[0]["Endpoint"], url, "{flavor:?}: {statuses}");
        let status = &statuses[0]["Status"];
        assert_eq!(
            status["leader"], status["header"]["member_id"],
            "{flavor:?}: a single member leads: {statuses}"
        );

        let cluster: serde_json::Value = serde_json::from_str(&server.ctl_ok(&[
            "endpoint",
            "status",
            "--cluster",
            "-w",
            "json",
        ]))
        .unwrap();
        assert_eq!(
            cluster[0]["Endpoint"], url,
            "{flavor:?}: --cluster dials the advertised URL: {cluster}"
        );

        let health: serde_json::Value =
            serde_json::from_str(&server.ctl_ok(&["endpoint", "health", "-w", "json"])).unwrap();
        assert_eq!(health[0]["endpoint"], url, "{flavor:?}: {health}");
        assert_eq!(health[0]["health"], true, "{flavor:?}: {health}");

        tracing::info!("{flavor:?}: the other commands keep working through the same URL");
        let members: serde_json::Value =
            serde_json::from_str(&server.ctl_ok(&["member", "list", "-w", "json"])).unwrap();
        assert_eq!(
            members["members"][0]["clientURLs"][0], url,
            "{flavor:?}: {members}"
        );
        server.ctl_ok(&["put", "scheme", "kept"]);
        assert_eq!(
            server.ctl_ok(&["get", "scheme", "--print-value-only"]),
            "kept\n",
            "{flavor:?}"
        );
    }
}
