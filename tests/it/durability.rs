//! Durability of the real binary: what was acknowledged survives kill -9,
//! and the revision carries on from where it was.

use crate::support::{Flavor, ServerProcess};

fn revision_of(json: &str) -> i64 {
    let start = json.find("\"revision\":").expect("header has a revision") + "\"revision\":".len();
    json[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn acknowledged_writes_survive_kill_9_and_revision_continues() {
    phase!("write keys, each acknowledged by etcdctl, then kill -9 the server");
    let mut server = ServerProcess::start(Flavor::Detcd, &[]);
    for n in 0..20 {
        server.ctl_ok(&["put", &format!("key{n:02}"), &format!("value{n}")]);
    }
    server.ctl_ok(&["del", "key00"]);
    let before = server.ctl_ok(&["get", "key", "--prefix", "-w", "json"]);
    server.kill();

    phase!("restart on the same data dir: every acknowledged write is there");
    server.restart();
    let after = server.ctl_ok(&["get", "key", "--prefix", "-w", "json"]);
    assert_eq!(
        revision_of(&after),
        revision_of(&before),
        "no revision lost or invented"
    );
    let values = server.ctl_ok(&["get", "key", "--prefix", "--print-value-only"]);
    let expected: Vec<String> = (1..20).map(|n| format!("value{n}")).collect();
    assert_eq!(values.lines().collect::<Vec<_>>(), expected);

    phase!("a new write gets the next revision");
    let put = server.ctl_ok(&["put", "key20", "x", "-w", "json"]);
    assert_eq!(revision_of(&put), revision_of(&before) + 1);
}

#[test]
fn state_survives_restarts_across_snapshots_and_wal_release() {
    phase!("a small --snapshot-count makes every few writes a snapshot, releasing WAL");
    let mut server = ServerProcess::start(Flavor::Detcd, &["--snapshot-count", "5"]);
    for n in 0..40 {
        server.ctl_ok(&["put", &format!("k{}", n % 7), &format!("v{n}")]);
        if n == 20 {
            server.ctl_ok(&["compaction", "10"]);
        }
    }
    let before = server.ctl_ok(&["get", "", "--from-key", "-w", "json"]);
    assert!(
        server.data_dir.join("member/backend/db.redb").exists(),
        "the backend holds the state"
    );
    assert!(
        server
            .log()
            .contains("marked the backend's durable state in the WAL"),
        "the backend's durable point was marked, releasing the log before it"
    );
    server.kill();

    phase!("recovery from the backend plus the WAL after it gives the same state");
    server.restart();
    let after = server.ctl_ok(&["get", "", "--from-key", "-w", "json"]);
    assert_eq!(strip_term(&after), strip_term(&before));
    let compacted = server.ctl(&["get", "k1", "--rev=5"]);
    assert!(
        String::from_utf8_lossy(&compacted.stderr).contains("required revision has been compacted")
    );
}

fn strip_term(json: &str) -> String {
    let start = json.find("\"raft_term\":").unwrap();
    let end = start + json[start..].find('}').unwrap();
    format!("{}{}", &json[..start], &json[end..])
}

#[test]
fn corrupt_wal_stops_the_server_with_a_clear_error() {
    phase!("flip a byte in the middle of the WAL: the node must refuse to start");
    let mut server = ServerProcess::start(Flavor::Detcd, &[]);
    for n in 0..10 {
        server.ctl_ok(&["put", &format!("k{n}"), "some value to make records"]);
    }
    server.kill();
    let wal_dir = server.data_dir.join("member/wal");
    let segment = std::fs::read_dir(&wal_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_detcd"))
        .args(["--name", "it", "--data-dir"])
        .arg(&server.data_dir)
        .args([
            "--listen-client-urls",
            &server.client_url,
            "--initial-cluster",
            "it=http://127.0.0.1:1",
        ])
        .arg(format!(
            "--listen-peer-urls=http://127.0.0.1:{}",
            crate::support::free_port()
        ))
        .output()
        .unwrap();
    assert!(!output.status.success(), "a corrupt WAL must not be served");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("wal corrupt"),
        "the error names the problem: {stderr}"
    );
}

/// Starts the binary once on `server`'s data dir, expecting it to refuse;
/// returns what it printed.
fn refused_start(server: &ServerProcess) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_detcd"))
        .args(["--name", "it", "--data-dir"])
        .arg(&server.data_dir)
        .args(["--listen-client-urls", &server.client_url])
        .arg(format!(
            "--listen-peer-urls=http://127.0.0.1:{}",
            crate::support::free_port()
        ))
        .output()
        .unwrap();
    assert!(!output.status.success(), "the start must be refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_lost_wal_is_refused_never_bootstrapped_over() {
    phase!("the backend on disk, then every WAL segment deleted");
    let mut server = ServerProcess::start(Flavor::Detcd, &["--snapshot-count", "10"]);
    for n in 0..30 {
        server.ctl_ok(&["put", &format!("k{n}"), "acknowledged"]);
    }
    server.terminate();
    let wal_dir = server.data_dir.join("member/wal");
    assert!(
        server.data_dir.join("member/backend/db.redb").exists(),
        "the test needs the backend's file"
    );
    for segment in std::fs::read_dir(&wal_dir).unwrap() {
        std::fs::remove_file(segment.unwrap().path()).unwrap();
    }

    phase!("the member refuses, naming what is missing, and writes nothing");
    let stderr = refused_start(&server);
    assert!(stderr.contains("no WAL segment"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&wal_dir).unwrap().count(),
        0,
        "no new member was bootstrapped"
    );
}

#[test]
fn bytes_cut_from_the_wal_tail_are_refused_not_served_as_a_shorter_log() {
    phase!("acknowledged writes, then 100 bytes cut off the newest WAL segment");
    let mut server = ServerProcess::start(Flavor::Detcd, &[]);
    for n in 0..10 {
        server.ctl_ok(&["put", &format!("k{n}"), "acknowledged"]);
    }
    server.terminate();
    let wal_dir = server.data_dir.join("member/wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    segments.sort();
    let newest = segments.last().unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - 100).unwrap();
    drop(file);

    phase!("the member refuses, naming the cut segment");
    let stderr = refused_start(&server);
    assert!(stderr.contains("wal corrupt"), "{stderr}");
    assert!(stderr.contains("cut after it was written"), "{stderr}");
}

#[test]
fn a_rotten_value_in_the_backend_is_refused_not_served() {
    phase!("a distinctive value committed to the backend, then one of its bits flipped");
    let mut server = ServerProcess::start(Flavor::Detcd, &[]);
    let value = "a value to find on disk 7f3a9c";
    server.ctl_ok(&["put", "rotten", value]);
    // Stopping commits the backend, so the value is in its file.
    server.terminate();
    let path = server.data_dir.join("member/backend/db.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(value.len())
        .position(|window| window == value.as_bytes())
        .expect("the value is in the backend's file");
    bytes[at + 3] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    phase!("the member refuses, naming the backend and the checksum");
    let stderr = refused_start(&server);
    assert!(stderr.contains("cannot be trusted"), "{stderr}");
    assert!(stderr.contains("fails its checksum"), "{stderr}");
}

/// `--wal-dir`: the WAL lives in a directory of its own (etcd's advice: a
/// dedicated disk), the data dir holds none, and a restart with the flag
/// recovers every write. Started again without it, the member finds no
/// log beside its backend and refuses, rather than come up empty.
#[test]
fn a_dedicated_wal_dir_holds_the_log() {
    let flavor = crate::cluster_support::flavor_from_env();
    let elsewhere = tempfile::tempdir().unwrap();
    let wal_dir = elsewhere.path().join("wal");
    let flag = format!("--wal-dir={}", wal_dir.display());
    let mut server = ServerProcess::start(flavor, &[&flag]);
    server.ctl_ok(&["put", "k", "acknowledged"]);
    let files = std::fs::read_dir(&wal_dir).unwrap().count();
    assert!(files > 0, "nothing in {}", wal_dir.display());
    assert!(
        !server.data_dir.join("member/wal").exists(),
        "the data dir has a WAL of its own"
    );

    phase!("a restart with the flag recovers the write");
    server.terminate();
    server.restart();
    let value = server.ctl_ok(&["get", "k", "--print-value-only"]);
    assert_eq!(value.trim(), "acknowledged");
    server.terminate();

    if flavor == Flavor::Detcd {
        phase!("without the flag the member refuses, naming the missing log");
        let stderr = refused_start(&server);
        assert!(stderr.contains("no WAL segment"), "{stderr}");
        assert!(
            !server.data_dir.join("member/wal").exists(),
            "a new member was bootstrapped"
        );
    }
}
