//! Differential tests: the same etcdctl 3.4 session against detcd and the
//! reference etcd 3.4.23 must print the same bytes, once cluster id, member
//! id and raft term are masked (they differ by design).

use std::process::Output;

use crate::support::{Flavor, ServerProcess};

struct Step {
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    /// Stop etcdctl after this many seconds (watch never ends by itself).
    seconds: Option<&'static str>,
}

const fn run(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        seconds: None,
    }
}

const fn run_with_input(args: &'static [&'static str], stdin: &'static str) -> Step {
    Step {
        args,
        stdin: Some(stdin),
        seconds: None,
    }
}

/// A watch: what it prints in its first two seconds (history arrives in
/// milliseconds; the margin is for a loaded machine), then it is stopped.
const fn watch(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        seconds: Some("2"),
    }
}

/// stdout, the error lines etcdctl prints (its retry warnings carry
/// timestamps and random client ids, so they are dropped) and the exit
/// code, with the server's endpoint (ports differ) written as ENDPOINT.
fn normalize(output: &Output, endpoint: &str) -> String {
    let bare = endpoint.trim_start_matches("http://");
    let mask = |text: &str| {
        let mut masked = String::new();
        for line in text.lines() {
            if line.starts_with("{\"level\"") {
                continue;
            }
            masked.push_str(&mask_ids(
                &line.replace(endpoint, "ENDPOINT").replace(bare, "ENDPOINT"),
            ));
            masked.push('\n');
        }
        masked
    };
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        output.status.code().unwrap_or(-1),
        mask(&String::from_utf8_lossy(&output.stdout)),
        mask(&String::from_utf8_lossy(&output.stderr))
    )
}

/// Masks the numbers after the id and term fields in json and fields output.
fn mask_ids(line: &str) -> String {
    let mut out = line.to_string();
    for field in [
        "\"cluster_id\":",
        "\"member_id\":",
        "\"raft_term\":",
        "\"ClusterID\" : ",
        "\"MemberID\" : ",
        "\"RaftTerm\" : ",
        "memberID:",
        "\"memberID\":",
    ] {
        let mut searched = 0;
        while let Some(found) = out[searched..].find(field) {
            let start = searched + found + field.len();
            let digits = out[start..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .count();
            out.replace_range(start..start + digits, "N");
            searched = start;
        }
    }
    out
}

/// Runs `steps` against a fresh detcd and a fresh etcd; returns every step
/// whose normalized output differs.
fn differences(steps: &[Step]) -> Vec<String> {
    differences_with(&[], steps)
}

/// `differences`, both servers started with `flags`.
fn differences_with(flags: &[&str], steps: &[Step]) -> Vec<String> {
    let detcd = ServerProcess::start(Flavor::Detcd, flags);
    let etcd = ServerProcess::start(Flavor::Etcd, flags);
    let mut differences = Vec::new();
    for (number, step) in steps.iter().enumerate() {
        let [ours, theirs] = [&detcd, &etcd].map(|server| {
            let output = match (step.stdin, step.seconds) {
                (Some(input), _) => server.ctl_stdin(step.args, input),
                (None, Some(seconds)) => server.ctl_for(seconds, step.args),
                (None, None) => server.ctl(step.args),
            };
            normalize(&output, &server.client_url)
        });
        if ours != theirs {
            differences.push(format!(
                "step {number}: etcdctl {:?}\n=== detcd\n{ours}=== etcd 3.4.23\n{theirs}",
                step.args
            ));
        }
    }
    differences
}

fn check(steps: &[Step]) {
    let differences = differences(steps);
    assert!(
        differences.is_empty(),
        "{} step(s) differ from etcd:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

#[test]
fn put_and_get_with_every_range_option_match_etcd() {
    tracing::info!("fill a few keys over several revisions, then read them every way etcdctl can");
    check(&[
        run(&["put", "foo", "bar"]),
        run(&["put", "foo", "baz", "--prev-kv"]),
        run(&["put", "a", "1"]),
        run(&["put", "b", "22"]),
        run(&["put", "c", "333"]),
        run(&["put", "b", "4444", "-w", "json"]),
        run(&["put", "abc", "x"]),
        run(&["get", "foo"]),
        run(&["get", "foo", "-w", "json"]),
        run(&["get", "missing", "-w", "json"]),
        run(&["get", "a", "c"]),
        run(&["get", "a", "--prefix"]),
        run(&["get", "b", "--from-key"]),
        run(&["get", "", "--from-key", "-w", "json"]),
        run(&["get", "a", "--from-key", "--limit", "2", "-w", "json"]),
        run(&["get", "a", "--from-key", "--keys-only"]),
        run(&["get", "a", "--from-key", "--count-only", "-w", "json"]),
        run(&["get", "a", "--from-key", "--print-value-only"]),
        run(&[
            "get",
            "a",
            "--from-key",
            "--sort-by=MODIFY",
            "--order=DESCEND",
        ]),
        run(&[
            "get",
            "a",
            "--from-key",
            "--sort-by=VALUE",
            "--order=ASCEND",
        ]),
        run(&[
            "get",
            "a",
            "--from-key",
            "--sort-by=VERSION",
            "--order=DESCEND",
            "--limit",
            "2",
            "-w",
            "json",
        ]),
        run(&["get", "a", "--from-key", "--sort-by=CREATE"]),
        run(&["get", "a", "--from-key", "--order=DESCEND"]),
        run(&["get", "foo", "--rev=2", "-w", "json"]),
        run(&["get", "foo", "--rev=1"]),
        run(&["get", "foo", "--rev=100"]),
        run(&["get", "a", "--consistency=s", "-w", "json"]),
        run(&["get", "a", "--from-key", "-w", "fields"]),
        run(&["get", ""]),
    ]);
}

#[test]
fn delete_with_prev_kv_matches_etcd() {
    check(&[
        run(&["put", "k1", "v1"]),
        run(&["put", "k2", "v2"]),
        run(&["put", "k3", "v3"]),
        run(&["del", "k1", "--prev-kv"]),
        run(&["del", "k1", "-w", "json"]),
        run(&["del", "k", "--prefix", "--prev-kv", "-w", "json"]),
        run(&["del", "nothing-here"]),
        run(&["put", "k1", "again"]),
        run(&["get", "k1", "-w", "json"]),
        run(&["del", "", "--from-key"]),
        run(&["get", "", "--from-key", "-w", "json"]),
    ]);
}

#[test]
fn txn_branches_match_etcd() {
    check(&[
        run(&["put", "key", "old"]),
        run_with_input(
            &["txn"],
            "value(\"key\") = \"old\"\n\nput key new\nget key\n\nput key failed\n\n",
        ),
        run_with_input(
            &["txn", "-w", "json"],
            "value(\"key\") = \"old\"\n\nput key new2\n\nget key\nput other x\ndel key\n\n",
        ),
        run_with_input(
            &["txn"],
            "mod(\"key\") > \"0\"\nversion(\"key\") = \"2\"\n\nget key --prefix\n\n\n",
        ),
        run_with_input(
            &["txn", "-w", "json"],
            "create(\"nope\") = \"0\"\n\nput nope created\n\n\n",
        ),
        run_with_input(
            &["txn"],
            "value(\"missing\") != \"x\"\n\nput a 1\n\nput b 2\n\n",
        ),
        run_with_input(
            &["txn"],
            "version(\"key\") < \"10\"\n\ndel key --prev-kv\n\n\n",
        ),
        run_with_input(&["txn"], "\nput a 1\nput a 2\n\n\n"),
        run_with_input(&["txn"], "\nput a 1\ndel a\n\n\n"),
        run_with_input(&["txn"], "\nput a 1 --lease=99\n\n\n"),
        run(&["get", "", "--from-key", "-w", "json"]),
    ]);
}

#[test]
fn compaction_and_revision_errors_match_etcd() {
    check(&[
        run(&["put", "k", "1"]),
        run(&["put", "k", "2"]),
        run(&["put", "k", "3"]),
        run(&["put", "j", "1"]),
        run(&["compaction", "3"]),
        run(&["get", "k", "--rev=2"]),
        run(&["get", "k", "--rev=3", "-w", "json"]),
        run(&["compaction", "3"]),
        run(&["compaction", "2"]),
        run(&["compaction", "100"]),
        run(&["compaction", "--physical", "4", "-w", "json"]),
        run(&["get", "k", "--rev=3"]),
        run(&["get", "", "--from-key", "--rev=4", "-w", "json"]),
        run(&["put", "k", "4", "-w", "json"]),
    ]);
}

/// HashKV is etcd's hash of its bbolt key bucket; detcd computes the same
/// bytes from its revision log, so the numbers themselves must match.
#[test]
fn hashkv_matches_etcd_bit_for_bit() {
    check(&[
        run(&["endpoint", "hashkv"]),
        run(&["put", "a", "1"]),
        run(&["put", "b", "2"]),
        run(&["put", "a", "3"]),
        run(&["del", "b"]),
        run(&["put", "b", "again"]),
        run_with_input(&["txn"], "\nput c 4\nput d 5\n\n"),
        run(&["del", "", "--from-key"]),
        run(&["put", "a", "after-delete"]),
        run(&["endpoint", "hashkv", "-w", "json"]),
        run(&["endpoint", "hashkv", "--rev=4"]),
        run(&["endpoint", "hashkv", "--rev=100"]),
        // --physical: etcd compacts its bbolt file in the background, and
        // until that finishes its HashKV below the new revision is not the
        // settled value (CI saw it differ right after a plain compaction).
        run(&["compaction", "6", "--physical"]),
        run(&["endpoint", "hashkv"]),
        run(&["endpoint", "hashkv", "--rev=6"]),
        run(&["endpoint", "hashkv", "--rev=7", "-w", "json"]),
        run(&["compaction", "9", "--physical"]),
        run(&["endpoint", "hashkv", "-w", "fields"]),
    ]);
}

/// A write that does not fit the quota raises NOSPACE; while it is up,
/// writes that add data are refused, deletes and reads still work, and
/// `alarm disarm` clears it. A one-byte quota trips both servers at the
/// first put, whatever their size accounting.
#[test]
fn nospace_alarm_matches_etcd() {
    let steps = [
        run(&["put", "a", "1"]),
        run(&["alarm", "list"]),
        run(&["alarm", "list", "-w", "json"]),
        run(&["get", "a"]),
        run(&["del", "a"]),
        run_with_input(&["txn"], "\nput c 4\n\n"),
        run_with_input(&["txn"], "\nget c\n\n"),
        run_with_input(&["txn"], "\ndel c\n\n"),
        run(&["alarm", "disarm"]),
        run(&["alarm", "disarm", "-w", "json"]),
        run(&["alarm", "list"]),
        run(&["compaction", "1"]),
        run(&["put", "a", "1"]),
        run(&["alarm", "list", "-w", "json"]),
    ];
    let differences = differences_with(&["--quota-backend-bytes=1"], &steps);
    assert!(
        differences.is_empty(),
        "{} step(s) differ from etcd:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// Watches from the past replay history exactly as etcd does: events,
/// previous values, filters, ranges, json framing, and the end of a watch
/// whose start revision was compacted.
#[test]
fn historical_watches_match_etcd() {
    check(&[
        run(&["put", "a", "1"]),
        run(&["put", "b", "2"]),
        run(&["del", "a"]),
        run(&["put", "a", "3"]),
        run_with_input(&["txn"], "\nput c 4\ndel b\n\n"),
        watch(&["watch", "--rev=1", "--prefix", ""]),
        watch(&["watch", "--rev=2", "a", "--prev-kv"]),
        watch(&["watch", "--rev=2", "a", "--prev-kv", "-w", "json"]),
        watch(&["watch", "--rev=1", "a", "c"]),
        watch(&["watch", "--rev=4", "b", "--prefix", "-w", "json"]),
        watch(&["watch", "--rev=100", "a"]),
        run(&["compaction", "4"]),
        watch(&["watch", "--rev=4", "--prefix", ""]),
        watch(&["watch", "--rev=2", "a"]),
        watch(&["watch", "--rev=3", "a", "-w", "json"]),
    ]);
}

#[test]
fn bad_puts_are_refused_like_etcd() {
    check(&[
        run(&["put", "x", "--ignore-value"]),
        run(&["put", "x", "v"]),
        run(&["put", "x", "--ignore-value", "-w", "json"]),
        run(&["put", "x", "--ignore-lease", "-w", "json"]),
        run(&["put", "x", "y", "--lease=1234"]),
        run(&["put", "y", "v", "--lease=abc"]),
        run(&["get", "", "--from-key", "-w", "json"]),
    ]);
}

/// A live watch: etcdctl watches while another etcdctl writes, on both
/// servers; the watch must print the same events. It starts from the
/// next revision, so a watch that connects late still owes every event
/// (then from history), and the output cannot depend on timing.
#[test]
fn live_watch_matches_etcd() {
    let watch_while_writing = |server: &ServerProcess| {
        let from = format!("--rev={}", server.revision() + 1);
        let endpoint = server.client_url.clone();
        // Stopped after 8 s: the writes below take well under that even on a loaded machine.
        let watcher = std::thread::spawn(move || {
            crate::support::etcdctl_for(
                Some("8"),
                &endpoint,
                &["watch", "--prefix", "k", &from, "--prev-kv"],
                None,
            )
        });
        // Give the watch a moment to connect, so the live path is the usual one.
        std::thread::sleep(std::time::Duration::from_millis(500));
        for n in 0..10 {
            server.ctl_ok(&["put", &format!("k{}", n % 3), &format!("v{n}")]);
        }
        server.ctl_ok(&["del", "k1"]);
        server.ctl_ok(&["put", "other", "x"]);
        normalize(&watcher.join().unwrap(), &server.client_url)
    };
    let detcd = ServerProcess::start(Flavor::Detcd, &[]);
    let etcd = ServerProcess::start(Flavor::Etcd, &[]);
    let (ours, theirs) = (watch_while_writing(&detcd), watch_while_writing(&etcd));
    assert_eq!(ours, theirs, "=== detcd\n{ours}=== etcd 3.4.23\n{theirs}");
    assert_eq!(ours.matches("PUT\n").count(), 10, "{ours}");
    assert_eq!(ours.matches("DELETE\n").count(), 1, "{ours}");
}
