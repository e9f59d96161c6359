//! etcd's JSON gateway (`POST /v3/...`), diffed with etcd 3.4.23: the same
//! calls on both servers, with ids, terms and sizes masked, must give the
//! same HTTP status and the same JSON.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Flavor, ServerProcess};

/// How long a test waits for a gateway answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Fields that differ between two servers for reasons that are not the
/// gateway's: ids, terms, indexes, sizes, versions.
const MASKED: &[&str] = &[
    "cluster_id",
    "member_id",
    "raft_term",
    "ID",
    "leader",
    "raftIndex",
    "raftTerm",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "version",
    "hash",
    "compact_revision",
];

fn mask(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if MASKED.contains(&key.as_str()) && !field.is_object() {
                    *field = Value::String("*".into());
                } else {
                    mask(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// One HTTP/1.1 request; returns the status and the body (chunked
/// transfer decoded).
fn http(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = exchange(url, method, path, body);
    (status, body)
}

/// One HTTP/1.1 request: the status, the head's lines (lower case, the
/// status line and `Date` left out) and the body (chunked transfer decoded).
fn exchange(url: &str, method: &str, path: &str, body: &str) -> (u16, Vec<String>, String) {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|error| panic!("{method} {path} to {url}: {error}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a full HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let lines: Vec<String> = head
        .lines()
        .skip(1)
        .map(str::to_ascii_lowercase)
        .filter(|line| !line.starts_with("date:"))
        .collect();
    let chunked = lines
        .iter()
        .any(|line| line == "transfer-encoding: chunked");
    let body = if chunked {
        unchunk(rest)
    } else {
        rest.to_string()
    };
    (status, lines, body)
}

fn unchunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}

fn json(body: &str) -> Value {
    let mut value: Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|error| panic!("not JSON ({error}): {body}"));
    mask(&mut value);
    value
}

/// The calls, in order; each answer is compared whole, after masking.
const SCRIPT: &[(&str, &str)] = &[
    ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
    (
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#,
    ),
    ("/v3/kv/put", r#"{"key":"Zm9vMg==","value":"eA=="}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","range_end":"Zm9w","sort_order":"DESCEND","limit":"1"}"#,
    ),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","range_end":"Zm9w","count_only":true}"#,
    ),
    ("/v3/kv/range", r#"{"key":"bWlzc2luZw=="}"#),
    // Fields the server does not know (a newer client's) are ignored.
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","unknown_field":1,"nested":{"a":[1]}}"#,
    ),
    ("/v3/maintenance/alarm", r#"{"action":"GET","newer":true}"#),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],"success":[{"request_range":{"key":"Zm9v"}},{"request_put":{"key":"dA==","value":"MQ=="}}],"failure":[{"request_delete_range":{"key":"Zm9v"}}]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"GREATER","target":"MOD","mod_revision":"100"}],"failure":[{"request_delete_range":{"key":"dA==","prev_kv":true}}]}"#,
    ),
    ("/v3/kv/deleterange", r#"{"key":"Zm9vMg==","prev_kv":true}"#),
    ("/v3beta/kv/range", r#"{"key":"Zm9v"}"#),
    ("/v3/lease/grant", r#"{"TTL":"30"}"#),
    ("/v3/lease/revoke", r#"{"ID":"1"}"#),
    // A stream: one renewal (of no lease), and the answer ends.
    ("/v3/lease/keepalive", r#"{"ID":"1"}"#),
    ("/v3/kv/lease/timetolive", r#"{"ID":"1"}"#),
    ("/v3/kv/compaction", r#"{"revision":"2"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","revision":"1"}"#),
    ("/v3/maintenance/status", "{}"),
    ("/v3/maintenance/alarm", r#"{"action":"GET"}"#),
    ("/v3/auth/user/list", "{}"),
];

fn run_script(server: &ServerProcess) -> Vec<(u16, Value)> {
    SCRIPT
        .iter()
        .map(|(path, body)| {
            let (status, answer) = http(&server.client_url, "POST", path, body);
            (status, json(&answer))
        })
        .collect()
}

#[test]
fn gateway_answers_as_etcd_does() {
    let etcd = ServerProcess::start(Flavor::Etcd, &[]);
    let detcd = ServerProcess::start(Flavor::Detcd, &[]);
    let expected = run_script(&etcd);
    let got = run_script(&detcd);
    for (((path, body), want), have) in SCRIPT.iter().zip(&expected).zip(&got) {
        assert_eq!(
            have, want,
            "POST {path} {body}: detcd differs from etcd 3.4.23"
        );
    }

    phase!("bad JSON and the wrong method, as etcd answers them");
    for server in [&etcd, &detcd] {
        let (status, answer) = http(&server.client_url, "POST", "/v3/kv/put", "not json");
        assert_eq!(status, 400, "{answer}");
        assert_eq!(json(&answer)["code"], 3, "{answer}");
        let (status, _) = http(&server.client_url, "GET", "/v3/kv/range", "");
        assert_eq!(status, 405, "{:?}", server.flavor);
    }
}

#[test]
fn gateway_watch_streams_results() {
    let server = ServerProcess::start(Flavor::Detcd, &[]);
    let address = server.client_url.trim_start_matches("http://").to_string();
    let mut watch = TcpStream::connect(&address).unwrap();
    watch.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    let body = r#"{"create_request":{"key":"Zm9v"}}"#;
    write!(
        watch,
        "POST /v3/watch HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while !seen.contains(r#""created":true"#) {
        let read = watch.read(&mut buffer).expect("the watch is created");
        assert!(read > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    let (status, _) = http(
        &server.client_url,
        "POST",
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmFy"}"#,
    );
    assert_eq!(status, 200);
    while !seen.contains(r#""value":"YmFy""#) {
        let read = watch
            .read(&mut buffer)
            .expect("the put arrives as an event");
        assert!(read > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(seen.contains(r#"{"result":{"#), "{seen}");
}

/// What etcd's client port answers besides the gateway's calls: Go's
/// ServeMux's redirects of unclean paths and of "/v3", grpc-gateway's own
/// 404 and 405, the handlers' one method each. Status, headers and body
/// must be etcd's.
#[test]
fn paths_and_methods_answer_as_etcd_does() {
    const REQUESTS: &[(&str, &str)] = &[
        ("GET", "/v3"),
        ("POST", "/v3"),
        ("HEAD", "/v3"),
        ("GET", "/v3?x=1&y=%22"),
        ("POST", "//health"),
        ("GET", "/v3/kv//range"),
        ("POST", "/v3/kv/./range"),
        ("POST", "/v3beta/kv//range"),
        ("GET", "/a/../version"),
        ("POST", "/v3/"),
        ("POST", "/v3/kv/rag"),
        ("GET", "/v3/kv/rag"),
        ("POST", "/v3/kv/range/"),
        ("POST", "/v3beta/"),
        ("POST", "/v3beta"),
        ("POST", "/v3alpha/kv/range"),
        ("GET", "/v3/kv/range"),
        ("PUT", "/v3/watch"),
        ("POST", "/health"),
        ("PUT", "/version"),
        ("HEAD", "/health"),
        ("POST", "/debug/vars"),
        ("GET", "/config/local/log"),
        ("GET", "/nope"),
    ];
    let servers = [Flavor::Etcd, Flavor::Detcd].map(|flavor| ServerProcess::start(flavor, &[]));
    let answers = servers.each_ref().map(|server| {
        REQUESTS
            .iter()
            // No body: etcd (Go) may reset a connection whose body its
            // handler left unread.
            .map(|(method, path)| exchange(&server.client_url, method, path, ""))
            .collect::<Vec<_>>()
    });
    for (i, (method, path)) in REQUESTS.iter().enumerate() {
        let sorted = |(status, mut lines, body): (u16, Vec<String>, String)| {
            lines.retain(|line| !line.starts_with("access-control-"));
            lines.sort();
            (status, lines, body)
        };
        assert_eq!(
            sorted(answers[1][i].clone()),
            sorted(answers[0][i].clone()),
            "{method} {path}: detcd, then etcd 3.4.23"
        );
    }

    phase!("/debug/vars: the command line, the files limit, raft's status");
    for server in &servers {
        let (status, body) = http(&server.client_url, "GET", "/debug/vars", "");
        assert_eq!(status, 200, "{:?}: {body}", server.flavor);
        let vars: Value = serde_json::from_str(&body).unwrap();
        assert!(vars["cmdline"].is_array(), "{body}");
        assert!(
            vars["file_descriptor_limit"].as_u64().unwrap() > 0,
            "{body}"
        );
        let raft = &vars["raft.status"];
        assert_eq!(raft["raftState"], "StateLeader", "{body}");
        assert_eq!(raft["id"], raft["lead"], "{body}");
        assert_eq!(raft["progress"].as_object().unwrap().len(), 1, "{body}");
        assert_eq!(raft["leadtransferee"], "0", "{body}");
    }

    phase!("/config/local/log sets the log level");
    for server in &servers {
        let set = |body: &str| http(&server.client_url, "PUT", "/config/local/log", body);
        assert_eq!(set(r#"{"Level":"debug"}"#), (204, String::new()));
        assert_eq!(
            set(r#"{"level":"loud"}"#),
            (400, r#"{"message":"Invalid log level loud"}"#.to_string())
        );
        assert_eq!(
            set("[1]"),
            (400, r#"{"message":"Invalid json body"}"#.to_string())
        );
        assert_eq!(set(r#"{"Level":"INFO"}"#), (204, String::new()));
    }
}

/// Request bodies etcd's gateway (jsonpb over Go's encoding/json) reads
/// strictly, or leniently: base64 with its padding only (newlines
/// skipped), enum names it knows, integers as Go parses them, `null` as
/// unset, only the first JSON value of a unary call's body. Refusals carry
/// Go's words. Each answer (status and JSON) must be etcd's.
#[test]
fn request_json_is_read_as_etcd_reads_it() {
    const CALLS: &[(&str, &str)] = &[
        ("/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#),
        ("/v3/kv/range", r#"{"key":"/"}"#),
        ("/v3/kv/range", r#"{"key":"ab!c"}"#),
        ("/v3/kv/range", r#"{"key":"abc"}"#),
        ("/v3/kv/range", r#"{"key":"YQ"}"#),
        ("/v3/kv/range", r#"{"key":"YQ="}"#),
        ("/v3/kv/range", r#"{"key":"Y-_a"}"#),
        ("/v3/kv/range", r#"{"key":"YQ==YQ=="}"#),
        ("/v3/kv/range", r#"{"key":"YQ=\n="}"#),
        ("/v3/kv/range", r#"{"key":"Y\r\nQ=="}"#),
        ("/v3/kv/range", r#"{"key":[97]}"#),
        ("/v3/kv/range", r#"{"key":["YQ=="]}"#),
        ("/v3/kv/range", r#"{"key":[300]}"#),
        ("/v3/kv/range", r#"{"key":5}"#),
        ("/v3/kv/range", r#"{"key":{"a":1}}"#),
        ("/v3/kv/range", r#"{"key":null}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","sort_order":"NOPE"}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","sort_order":"DESCEND"}"#),
        (
            "/v3/kv/range",
            r#"{"key":"YQ==","sort_order":"\u0044ESCEND"}"#,
        ),
        ("/v3/kv/range", r#"{"key":"YQ==","sort_order":1.5}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","sort_order":true}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","sort_order":"1"}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":2.0}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":"2.5"}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":1e3}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":"abc"}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":""}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":" 1 "}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":true}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":"null"}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":"-"}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":"1.e"}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":"tru"}"#),
        (
            "/v3/kv/range",
            r#"{"key":"YQ==","revision":9223372036854775808}"#,
        ),
        ("/v3/kv/range", r#"{"key":"YQ==","keys_only":"true"}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","keys_only":1}"#),
        (
            "/v3/kv/range",
            r#"{"key":"YQ==","count_only":false,"countOnly":true}"#,
        ),
        ("/v3/kv/range", "garbage"),
        ("/v3/kv/range", "[]"),
        ("/v3/kv/range", r#""x""#),
        ("/v3/kv/range", "null"),
        ("/v3/kv/range", r#"{"key":"YQ==" "x"}"#),
        ("/v3/kv/range", r#"{"key":"YQ=="}x"#),
        ("/v3/kv/range", r#"{"key":"YQ==","limit":01}"#),
        ("/v3/kv/range", r#"{"key":"#),
        ("/v3/kv/txn", r#"{"compare":{"key":"YQ=="}}"#),
        ("/v3/kv/txn", r#"{"compare":["x"]}"#),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"key":"YQ==","target":"NOPE"}]}"#,
        ),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"key":"YQ==","target":"VALUE","value":"Yg=="}],"success":[{"requestRange":{"key":"YQ=="}}]}"#,
        ),
        ("/v3/kv/txn", r#"{"success":[{"request_put":"x"}]}"#),
        ("/v3/lease/grant", r#"{"TTL":"1.5"}"#),
        ("/v3/lease/grant", r#"{"TTL":[1]}"#),
    ];
    let servers = [Flavor::Etcd, Flavor::Detcd].map(|flavor| ServerProcess::start(flavor, &[]));
    let answers = servers.each_ref().map(|server| {
        CALLS
            .iter()
            .map(|(path, body)| {
                let (status, answer) = http(&server.client_url, "POST", path, body);
                (status, json(&answer))
            })
            .collect::<Vec<_>>()
    });
    for (i, (path, body)) in CALLS.iter().enumerate() {
        assert_eq!(
            answers[1][i], answers[0][i],
            "POST {path} {body}: detcd, then etcd 3.4.23"
        );
    }

    phase!("a client stream's body: nothing, a bad first message, a bad later one");
    const STREAMS: &[(&str, &str)] = &[
        ("/v3/lease/keepalive", ""),
        ("/v3/lease/keepalive", r#"{"ID":"#),
        ("/v3/lease/keepalive", r#"{"ID":"x"}"#),
        ("/v3/lease/keepalive", r#"{"ID":"1"}{"ID":"#),
        ("/v3/lease/keepalive", r#"{"ID":"1"}[]"#),
    ];
    let answers = servers.each_ref().map(|server| {
        STREAMS
            .iter()
            .map(|(path, body)| {
                let (status, answer) = http(&server.client_url, "POST", path, body);
                let lines: Vec<Value> = answer.lines().map(json).collect();
                (status, lines)
            })
            .collect::<Vec<_>>()
    });
    for (i, (path, body)) in STREAMS.iter().enumerate() {
        assert_eq!(
            answers[1][i], answers[0][i],
            "POST {path} {body}: detcd, then etcd 3.4.23"
        );
    }
}

/// A stream's answer begins with its first message, as Go's server sends
/// a head with the first write: observing an election with no leader
/// yet, a client hears nothing at all, from either server, until one is
/// elected.
#[test]
fn a_stream_answers_once_it_has_a_first_message() {
    let servers = [Flavor::Etcd, Flavor::Detcd].map(|flavor| ServerProcess::start(flavor, &[]));
    for server in &servers {
        let address = server.client_url.trim_start_matches("http://").to_string();
        let mut observe = TcpStream::connect(&address).unwrap();
        observe
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let body = r#"{"name":"ZWxlY3Rpb24="}"#;
        write!(
            observe,
            "POST /v3/election/observe HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut buffer = [0u8; 1024];
        match observe.read(&mut buffer) {
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => panic!(
                "{:?}: an answer before any leader: {other:?} {:?}",
                server.flavor,
                String::from_utf8_lossy(&buffer)
            ),
        }
        let (status, _) = http(
            &server.client_url,
            "POST",
            "/v3/election/campaign",
            r#"{"name":"ZWxlY3Rpb24=","value":"dg=="}"#,
        );
        assert_eq!(status, 200, "{:?}", server.flavor);
        let mut seen = String::new();
        observe.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        while !seen.contains(r#""value":"dg==""#) {
            let read = observe.read(&mut buffer).expect("the leader is observed");
            assert!(read > 0, "{:?}: the stream ended: {seen}", server.flavor);
            seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
        assert!(seen.starts_with("HTTP/1.1 200 OK"), "{seen}");
    }
}
