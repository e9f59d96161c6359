//! Operator experience of the binary: etcd's flags and environment
//! variables, and a clear error (not a hang or a panic) for bad input.

use std::time::Duration;

use crate::cluster_support::flavor_from_env;
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
        &["--listen-client-urls", "unixs://client.sock:1"],
        &["--listen-peer-urls", "unixs://peer.sock:1"],
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
    // The launcher tells such a start from others by this wording, and
    // lays the member out again on fresh ports.
    let log = dir.path().join("stderr.log");
    std::fs::write(&log, &output.stderr).unwrap();
    assert!(detcd_launch::bind_conflict(&log));
}

/// With port 0, each listener's port is the kernel's pick, and the log says
/// which, in etcd's words: "serving client requests on 127.0.0.1:N"
/// (etcd: "serving insecure client requests on …") and "listening for
/// peers on 127.0.0.1:N". The port read back serves.
#[test]
fn port_zero_listeners_log_the_port_they_got() {
    crate::support::init_tracing();
    for flavor in [Flavor::Detcd, Flavor::Etcd] {
        phase!(?flavor, "a member on port 0 for clients and peers");
        let dir = tempfile::tempdir().unwrap();
        let mut member = detcd_launch::Member::at("zero", "http", "127.0.0.1", (0, 0), dir.path());
        member.advertise_client_url = "http://127.0.0.1:2379".into();
        let server = detcd_launch::Launch::new(flavor.binary())
            .spawn(&member)
            .unwrap();
        let port_after = |needle: &str| {
            let log = member.log();
            let rest = &log[log.find(needle)? + needle.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u16>().ok()
        };
        let mut client_port = None;
        assert!(
            crate::support::eventually(std::time::Duration::from_secs(30), || {
                client_port = port_after("client requests on 127.0.0.1:");
                client_port.is_some() && port_after("listening for peers on 127.0.0.1:").is_some()
            }),
            "{flavor:?} logs the ports it got:\n{}",
            member.log()
        );
        let client_port = client_port.unwrap();
        assert_ne!(client_port, 0);
        let url = format!("http://127.0.0.1:{client_port}");
        assert!(
            crate::support::eventually(std::time::Duration::from_secs(30), || {
                etcdctl(&url, &["put", "k", "v"], None).status.success()
            }),
            "{flavor:?} serves on the port it logged:\n{}",
            member.log()
        );
        drop(server);
    }
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

/// A member for a launch `configured_elsewhere`: only its log (in `dir`)
/// is used.
fn log_only(dir: &std::path::Path) -> detcd_launch::Member {
    detcd_launch::Member {
        log_path: dir.join("detcd.log"),
        ..detcd_launch::Member::at("unused", "http", "127.0.0.1", (0, 0), dir)
    }
}

#[test]
fn environment_variables_configure_like_flags() {
    phase!("ETCD_NAME and ETCD_DATA_DIR set what --name and --data-dir would");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let launch = detcd_launch::Launch {
        env: vec![
            ("ETCD_NAME".into(), "envnode".into()),
            ("ETCD_LISTEN_CLIENT_URLS".into(), url.clone().into()),
            ("ETCD_LISTEN_PEER_URLS".into(), peer.into()),
        ],
        configured_elsewhere: true,
        current_dir: Some(dir.path().to_path_buf()),
        ..detcd_launch::Launch::new(env!("CARGO_BIN_EXE_detcd"))
    };
    let server = launch.spawn(&log_only(dir.path())).unwrap();
    let answered = crate::support::eventually(Duration::from_secs(10), || {
        etcdctl(&url, &["put", "k", "v"], None).status.success()
    });
    server.kill();
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
fn sigterm_shuts_down_cleanly_and_keeps_the_data() {
    phase!("SIGTERM: exit 0, and the data is there after a restart");
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
    phase!("with --max-request-bytes 1000, a 2000-byte value is refused and changes nothing");
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
        phase!("{flavor:?}: endpoint commands against an endpoint URL with its scheme");
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

        phase!("{flavor:?}: the other commands keep working through the same URL");
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

/// Runs detcd with `args` and the environment `variables`; it must refuse
/// to start, and say so naming `expected`.
fn assert_refused(args: &[&str], variables: &[(&str, &str)], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_detcd"));
    command
        .arg(format!(
            "--listen-client-urls=http://127.0.0.1:{}",
            free_port()
        ))
        .arg(format!(
            "--listen-peer-urls=http://127.0.0.1:{}",
            free_port()
        ))
        .args(args)
        .envs(variables.iter().copied())
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    // A server that starts anyway must fail the test, not hang it.
    let exited = crate::support::eventually(Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        child.kill().unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(exited, "{args:?} {variables:?} started a server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{args:?} {variables:?} must be refused"
    );
    assert!(
        stderr.contains(expected),
        "must name {expected:?}: {stderr}"
    );
}

#[test]
fn variables_for_settings_detcd_lacks_are_refused_not_ignored() {
    phase!("TLS asked for through the environment must not be served as plaintext");
    for (variable, value, expected) in [
        ("ETCD_CERT_FILE", "/etc/etcd/server.crt", "is plain http"),
        ("ETCD_CLIENT_CERT_AUTH", "true", "--trusted-ca-file"),
        ("ETCD_PEER_CERT_FILE", "/etc/etcd/peer.crt", "is plain http"),
        ("ETCD_AUTO_TLS", "true", "is plain http"),
        ("ETCD_DISCOVERY_SRV", "example.com", "ETCD_DISCOVERY_SRV"),
        (
            "ETCD_CIPHER_SUITES",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            "does not offer TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        ),
        (
            "ETCD_CIPHER_SUITES",
            "TLS_NO_SUCH_SUITE",
            "unexpected TLS cipher suite",
        ),
    ] {
        assert_refused(&[], &[(variable, value)], expected);
    }
    assert_refused(
        &[],
        &[
            ("ETCD_PEER_CERT_ALLOWED_CN", "m1"),
            ("ETCD_PEER_CERT_ALLOWED_HOSTNAME", "localhost"),
        ],
        "mutually exclusive",
    );
    phase!("a config file that does not exist is a clear error");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_detcd"))
        .env("ETCD_CONFIG_FILE", "/no/such/file.yaml")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/no/such/file.yaml"), "{stderr}");
}

#[test]
fn initial_cluster_must_agree_with_the_advertised_peer_urls() {
    phase!("etcd's advertiseMatchesCluster, with etcd's words");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let other = format!("http://127.0.0.1:{}", free_port());
    assert_refused(
        &[
            "--name=a",
            &format!("--initial-advertise-peer-urls={peer}"),
            &format!("--initial-cluster=a={other}"),
        ],
        &[],
        &format!(
            "--initial-cluster has a={other} but missing from --initial-advertise-peer-urls={peer}"
        ),
    );
    assert_refused(
        &[
            "--name=a",
            &format!("--initial-advertise-peer-urls={peer},{other}"),
            &format!("--initial-cluster=a={peer}"),
        ],
        &[],
        &format!("--initial-advertise-peer-urls has {other} but missing from --initial-cluster"),
    );
}

#[test]
fn a_config_file_with_etcds_keys_configures_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let data_dir = dir.path().join("from-file.etcd");
    let yaml = format!(
        "# etcd's config file format\n\
         name: from-file\n\
         data-dir: {}\n\
         listen-client-urls: {client}\n\
         advertise-client-urls: {client}\n\
         listen-peer-urls: {peer}\n\
         initial-advertise-peer-urls: {peer}\n\
         initial-cluster: from-file={peer}\n\
         enable-v2: false\n\
         client-transport-security:\n  cert-file: ''\n  client-cert-auth: false\n",
        data_dir.display()
    );
    let path = dir.path().join("etcd.yaml");
    std::fs::write(&path, yaml).unwrap();
    let launch = detcd_launch::Launch {
        args: vec![format!("--config-file={}", path.display()).into()],
        configured_elsewhere: true,
        current_dir: Some(dir.path().to_path_buf()),
        ..detcd_launch::Launch::new(env!("CARGO_BIN_EXE_detcd"))
    };
    let server = launch.spawn(&log_only(dir.path())).unwrap();
    let serving = crate::support::eventually(Duration::from_secs(30), || {
        etcdctl(&client, &["put", "k", "v"], None).status.success()
    });
    let members = etcdctl(&client, &["member", "list"], None);
    let _ = server.terminate(crate::support::STOP_TIMEOUT);
    assert!(serving, "detcd serves with its settings from --config-file");
    let members = String::from_utf8_lossy(&members.stdout);
    assert!(
        members.contains("from-file"),
        "the name came from the file: {members}"
    );
    assert!(
        data_dir.join("member").exists(),
        "the data dir came from the file"
    );

    phase!("a config file is not mixed with flags: etcd would ignore the flags");
    assert_refused(
        &[&format!("--config-file={}", path.display()), "--name=other"],
        &[],
        "--name",
    );
}

#[test]
fn a_restarted_member_publishes_its_new_name_and_client_urls() {
    let mut server = ServerProcess::start(flavor_from_env(), &[]);
    server.terminate();
    phase!("restart under another name and advertised client URL, as etcd allows");
    server.name = "renamed".into();
    server.advertised_client_url = server.client_url.replace("127.0.0.1", "localhost");
    server.restart();
    let listed = crate::support::eventually(std::time::Duration::from_secs(30), || {
        let list = server.ctl_ok(&["member", "list"]);
        list.contains("renamed") && list.contains(&server.advertised_client_url)
    });
    assert!(
        listed,
        "member list shows the new name and URL: {}",
        server.ctl_ok(&["member", "list"])
    );
}

/// Several `--listen-peer-urls`: every one serves raft. The members
/// advertise only their second peer URL, so the cluster forms only if the
/// second listener serves (etcd's TestEtcdMultiPeer, made stricter).
#[test]
fn every_listen_peer_url_serves_raft() {
    several_peer_urls(false);
}

/// A member advertising several peer URLs is reached at the next one when
/// a URL does not answer (etcd's urlPicker): each advertises a URL nobody
/// listens on first, and its second listener's URL after it.
#[test]
fn peers_are_dialed_at_their_next_url_when_one_fails() {
    several_peer_urls(true);
}

/// One member of a cluster a test starts by hand, with etcd's flags.
struct HandMember {
    name: String,
    data_dir: String,
    listen_client: String,
    advertise_client: String,
    listen_peer: String,
    advertise_peer: String,
}

impl HandMember {
    /// Starts the member of `initial_cluster` (from `dir`, if given),
    /// logging where `log` says.
    fn spawn(
        self,
        flavor: Flavor,
        initial_cluster: &str,
        dir: Option<&std::path::Path>,
        log: detcd_launch::Member,
    ) -> (detcd_launch::Server, detcd_launch::Member) {
        let launch = detcd_launch::Launch {
            args: [
                "--name",
                &self.name,
                "--data-dir",
                &self.data_dir,
                "--listen-client-urls",
                &self.listen_client,
                "--advertise-client-urls",
                &self.advertise_client,
                "--listen-peer-urls",
                &self.listen_peer,
                "--initial-advertise-peer-urls",
                &self.advertise_peer,
                "--initial-cluster",
                initial_cluster,
            ]
            .map(Into::into)
            .to_vec(),
            configured_elsewhere: true,
            current_dir: dir.map(std::path::Path::to_path_buf),
            ..detcd_launch::Launch::new(flavor.binary())
        };
        (launch.spawn(&log).unwrap(), log)
    }
}

/// Waits for a put through `url` to succeed; fails with `what` and the
/// members' log tails if none does within 30 s.
fn assert_quorum(url: &str, servers: &[(detcd_launch::Server, detcd_launch::Member)], what: &str) {
    let written = crate::support::eventually(Duration::from_secs(30), || {
        etcdctl(url, &["put", "k", "v"], None).status.success()
    });
    let logs: Vec<String> = servers
        .iter()
        .map(|(_, member)| member.log_tail(20))
        .collect();
    assert!(written, "{what}:\n{logs:#?}");
}

fn several_peer_urls(dead_first: bool) {
    crate::support::init_tracing();
    let flavor = flavor_from_env();
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<[u16; 3]> = (0..3)
        .map(|_| [free_port(), free_port(), free_port()])
        .collect();
    // The first port's listener is left out when it stands for a dead URL.
    let advertised = |[_, first, second]: &[u16; 3]| {
        if dead_first {
            vec![
                format!("http://127.0.0.1:{first}"),
                format!("http://127.0.0.1:{second}"),
            ]
        } else {
            vec![format!("http://127.0.0.1:{second}")]
        }
    };
    let initial_cluster = ports
        .iter()
        .enumerate()
        .flat_map(|(i, ports)| {
            advertised(ports)
                .into_iter()
                .map(move |url| format!("m{i}={url}"))
        })
        .collect::<Vec<_>>()
        .join(",");
    phase!(?flavor, "three members, two peer listeners each");
    let servers: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, [client, first, second])| {
            let member_dir = dir.path().join(format!("m{i}"));
            std::fs::create_dir_all(&member_dir).unwrap();
            let client = format!("http://127.0.0.1:{client}");
            HandMember {
                name: format!("m{i}"),
                data_dir: member_dir.join("data").display().to_string(),
                listen_client: client.clone(),
                advertise_client: client,
                listen_peer: if dead_first {
                    format!("http://127.0.0.1:{second}")
                } else {
                    format!("http://127.0.0.1:{first},http://127.0.0.1:{second}")
                },
                advertise_peer: advertised(&[0, *first, *second]).join(","),
            }
            .spawn(flavor, &initial_cluster, None, log_only(&member_dir))
        })
        .collect();
    let url = format!("http://127.0.0.1:{}", ports[0][0]);
    assert_quorum(
        &url,
        &servers,
        &format!("{flavor:?}: no quorum over the second peer URLs"),
    );
    for [client, _, _] in &ports {
        let url = format!("http://127.0.0.1:{client}");
        let read = etcdctl(&url, &["get", "k", "--print-value-only"], None);
        assert_eq!(String::from_utf8_lossy(&read.stdout), "v\n", "{url}");
    }
    for (server, _) in servers {
        server.kill();
    }
}

/// etcd's `unix://` URLs: three members talk raft over unix sockets (the
/// file `m0.peer:1` in each one's working directory, etcd's form), and one
/// serves its clients on a unix socket that etcdctl reaches too.
#[test]
fn members_and_clients_talk_over_unix_sockets() {
    crate::support::init_tracing();
    let flavor = flavor_from_env();
    let dir = tempfile::tempdir().unwrap();
    let peer = |i: usize| format!("unix://m{i}.peer:1");
    let initial_cluster = (0..3)
        .map(|i| format!("m{i}={}", peer(i)))
        .collect::<Vec<_>>()
        .join(",");
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    phase!(?flavor, "three members with unix-socket peer URLs");
    let servers: Vec<_> = (0..3)
        .map(|i| {
            let client = if i == 0 {
                "unix://m0.client:1".to_string()
            } else {
                format!("http://127.0.0.1:{}", client_ports[i])
            };
            HandMember {
                name: format!("m{i}"),
                data_dir: format!("m{i}.data"),
                listen_client: client.clone(),
                advertise_client: client,
                listen_peer: peer(i),
                advertise_peer: peer(i),
            }
            .spawn(
                flavor,
                &initial_cluster,
                Some(dir.path()),
                detcd_launch::Member {
                    log_path: dir.path().join(format!("m{i}.log")),
                    ..log_only(dir.path())
                },
            )
        })
        .collect();
    let url = format!("http://127.0.0.1:{}", client_ports[1]);
    assert_quorum(
        &url,
        &servers,
        &format!("{flavor:?}: no quorum over unix sockets"),
    );
    let other = format!("http://127.0.0.1:{}", client_ports[2]);
    let read = etcdctl(&other, &["get", "k", "--print-value-only"], None);
    assert_eq!(String::from_utf8_lossy(&read.stdout), "v\n");
    phase!("etcdctl over the first member's unix client socket");
    let socket = format!("unix://{}", dir.path().join("m0.client:1").display());
    let read = crate::support::etcdctl(&socket, &["get", "k", "--print-value-only"], None);
    assert_eq!(
        String::from_utf8_lossy(&read.stdout),
        "v\n",
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    for (server, _) in servers {
        server.kill();
    }
}

/// `--grpc-keepalive-interval` and `--grpc-keepalive-timeout`: the server
/// pings a client connection that stayed silent that long, and closes it
/// when the ping goes unanswered as long again (a client that vanished
/// behind a dropping network holds nothing for good). The client here
/// speaks just enough HTTP/2 to be taken (the preface and its settings),
/// then reads and answers nothing.
#[test]
fn a_client_that_never_answers_a_ping_is_disconnected() {
    use std::io::{Read, Write};
    let server = ServerProcess::start(
        flavor_from_env(),
        &[
            "--grpc-keepalive-interval=1s",
            "--grpc-keepalive-timeout=1s",
        ],
    );
    let address = server.client_url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    // The connection preface, then an empty SETTINGS frame.
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = loop {
        match socket.read(&mut buffer) {
            Ok(0) => break true,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    // Frames: a 9-byte header (length 24 bits, type, flags, stream id).
    let mut frame_types = Vec::new();
    let mut rest = &received[..];
    while rest.len() >= 9 {
        let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        frame_types.push((rest[3], rest[4]));
        rest = &rest[(9 + length).min(rest.len())..];
    }
    const PING: u8 = 6;
    const ACK: u8 = 1;
    assert!(
        frame_types.contains(&(PING, 0)) && !frame_types.contains(&(PING, ACK)),
        "no keepalive ping among the frames (type, flags) {frame_types:?}"
    );
    assert!(
        closed,
        "the server kept a connection that never answered its ping"
    );
}
