//! Differential tests: the same etcdctl 3.4 session against detcd and the
//! reference etcd 3.4.23 must print the same bytes, once cluster id, member
//! id and raft term are masked (they differ by design).

use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::{Flavor, ServerProcess};

struct Step {
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    /// A command that never ends by itself (watch, lock, elect): stopped
    /// as `StopWatch` says.
    watch: bool,
}

const fn run(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        watch: false,
    }
}

const fn run_with_input(args: &'static [&'static str], stdin: &'static str) -> Step {
    Step {
        args,
        stdin: Some(stdin),
        watch: false,
    }
}

/// A command that never ends by itself: etcd's run is stopped once its
/// output is quiet, detcd's once it printed as many lines (waiting for the
/// events, not for a fixed window).
const fn watch(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        watch: true,
    }
}

/// How long a watch's output must stay unchanged to be all of it.
const QUIET: Duration = Duration::from_secs(1);
/// How long a watch that prints nothing is given: proving that nothing
/// comes takes a window.
const SILENT: Duration = Duration::from_secs(2);
/// Bounds a watch that never reaches its stop (a hang, too few lines).
const WATCH_TIMEOUT: Duration = Duration::from_secs(15);

/// When a watch step's etcdctl is stopped.
#[derive(Clone, Copy)]
enum StopWatch {
    /// Once its output stays unchanged for `QUIET`, or empty for
    /// `SILENT`: the reference's run.
    Quiet,
    /// Once it printed this many lines (the reference's), plus
    /// `etcdctl_until`'s grace for any it should not have; `Quiet` for 0.
    Lines(usize),
}

fn line_count(printed: &[u8]) -> usize {
    printed
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .count()
}

fn watch_until(server: &ServerProcess, args: &[&str], stop: StopWatch) -> Output {
    let started = Instant::now();
    let mut changed = (0, Instant::now());
    crate::support::etcdctl_until(
        &server.client_url,
        args,
        WATCH_TIMEOUT,
        move |printed| match stop {
            StopWatch::Lines(lines) if lines > 0 => line_count(printed.as_bytes()) >= lines,
            _ => {
                if printed.len() != changed.0 {
                    changed = (printed.len(), Instant::now());
                }
                if printed.is_empty() {
                    started.elapsed() >= SILENT
                } else {
                    changed.1.elapsed() >= QUIET
                }
            }
        },
    )
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
    // The lease ids each server granted so far, in order: a step names
    // the n-th as `{leaseN}`, and outputs show it as `LEASEN`.
    let mut leases: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
    for (number, step) in steps.iter().enumerate() {
        let run_on = |server: &ServerProcess, granted: &mut Vec<i64>, stop| {
            let args: Vec<String> = step
                .args
                .iter()
                .map(|arg| with_lease_ids(arg, granted))
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = match (step.stdin, step.watch) {
                (Some(input), _) => server.ctl_stdin(&args, input),
                (None, true) => watch_until(server, &args, stop),
                (None, false) => server.ctl(&args),
            };
            granted.extend(granted_lease(&output));
            let lines = output
                .stdout
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            (
                mask_leases(&normalize(&output, &server.client_url), granted),
                lines,
            )
        };
        let [ours_granted, theirs_granted] = &mut leases;
        let (theirs, lines) = run_on(&etcd, theirs_granted, StopWatch::Quiet);
        let (ours, _) = run_on(&detcd, ours_granted, StopWatch::Lines(lines));
        if std::env::var("DIFF_DEBUG").is_ok() {
            eprintln!("step {number} {:?}\n{ours}", step.args);
        }
        if ours != theirs {
            differences.push(format!(
                "step {number}: etcdctl {:?}\n=== detcd\n{ours}=== etcd 3.4.23\n{theirs}",
                step.args
            ));
        }
    }
    differences
}

/// `{leaseN}` in an argument becomes the n-th granted lease id, in hex.
fn with_lease_ids(arg: &str, granted: &[i64]) -> String {
    let mut arg = arg.to_string();
    for (n, id) in granted.iter().enumerate() {
        arg = arg.replace(&format!("{{lease{n}}}"), &format!("{id:x}"));
    }
    arg
}

/// The id `lease grant` printed, if it granted one.
fn granted_lease(output: &Output) -> Option<i64> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    if stdout.contains("\"Error\":") {
        // `-w json`: the grant response's "ID" field, in decimal.
        let digits = stdout.split("\"ID\":").nth(1)?.split(',').next()?;
        return digits.parse().ok();
    }
    let hex = stdout.strip_prefix("lease ")?.split(' ').next()?;
    stdout
        .contains(" granted with TTL(")
        .then(|| i64::from_str_radix(hex, 16).ok())?
}

/// Lease ids differ by design: each granted id, in hex (padded as etcdctl
/// prints it) or decimal, becomes `LEASEN`. A remaining TTL depends on
/// when the step ran, so its number is masked too (the lease tests check
/// its range on detcd).
fn mask_leases(text: &str, granted: &[i64]) -> String {
    let mut text = text.to_string();
    for (n, id) in granted.iter().enumerate() {
        text = text
            .replace(&format!("{id:016x}"), &format!("LEASE{n}"))
            .replace(&id.to_string(), &format!("LEASE{n}"));
    }
    let mut masked = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("remaining(") {
        let start = at + "remaining(".len();
        masked.push_str(&rest[..start]);
        rest = rest[start..].trim_start_matches(|c: char| c.is_ascii_digit());
        masked.push('R');
    }
    masked.push_str(rest);
    let masked = mask_json_number(&masked, "\"ttl\":", ",\"granted-ttl\"");
    let masked = sort_list(&masked, "\"keys\":[", ']', ',');
    let masked = sort_list(&masked, "attached keys([", ']', ' ');
    mask_session_keys(&masked)
}

/// etcd lists a lease's keys in Go map order, which changes run to run:
/// the list after each `opening` is sorted, on both sides alike.
fn sort_list(text: &str, opening: &str, closing: char, separator: char) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(opening) {
        let start = at + opening.len();
        out.push_str(&rest[..start]);
        let Some(length) = rest[start..].find(closing) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let mut items: Vec<&str> = rest[start..start + length].split(separator).collect();
        items.sort_unstable();
        out.push_str(&items.join(&separator.to_string()));
        rest = &rest[start + length..];
    }
    out.push_str(rest);
    out
}

/// The names the lock and election sessions use: their keys end in the
/// session's lease id in hex (unpadded), which differs by design.
const SESSION_NAMES: [&str; 2] = ["mylock/", "myelection/"];

fn mask_session_keys(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let mut line = line.to_string();
        for name in SESSION_NAMES {
            if let Some(at) = line.find(name) {
                let start = at + name.len();
                let hex = line[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .count();
                line.replace_range(start..start + hex, "SESSION");
            }
        }
        out.push_str(&line);
    }
    out
}

/// Masks the number between `before` and `after` (a json field whose
/// value depends on time).
fn mask_json_number(text: &str, before: &str, after: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(before) {
        let start = at + before.len();
        out.push_str(&rest[..start]);
        let digits = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .count();
        if rest[start + digits..].starts_with(after) {
            out.push('R');
        } else {
            out.push_str(&rest[start..start + digits]);
        }
        rest = &rest[start + digits..];
    }
    out.push_str(rest);
    out
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
    phase!("fill a few keys over several revisions, then read them every way etcdctl can");
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
        // A put that keeps the value of a key that does not exist fails
        // the whole txn: the put before it must not have been written.
        // (etcdctl keeps a flag for the lines after it: it goes last.)
        run_with_input(&["txn"], "\nput a 9\nput nokey --ignore-value\n\n\n"),
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
        // A txn's reads at the edges: below the compacted revision, at
        // it, at the current one and past it.
        run_with_input(&["txn"], "\nget k --rev=3\n\n\n"),
        run_with_input(&["txn"], "\nget k --rev=4\n\n\n"),
        run_with_input(&["txn", "-w", "json"], "\nget k --rev=5\n\n\n"),
        run_with_input(&["txn"], "\nget k --rev=6\n\n\n"),
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
/// whose start revision was compacted or negative.
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
        // Negative starts: below the compact revision (-1 before any
        // compaction) the watch is compacted; -1 owes no history.
        watch(&["watch", "--rev=-5", "a"]),
        watch(&["watch", "--rev=-1", "--prefix", ""]),
        // --physical: etcd removes compacted revisions in the background,
        // and a watch racing it may still see the tombstone at 4.
        run(&["compaction", "--physical", "4"]),
        watch(&["watch", "--rev=4", "--prefix", ""]),
        watch(&["watch", "--rev=2", "a"]),
        watch(&["watch", "--rev=3", "a", "-w", "json"]),
        watch(&["watch", "--rev=-1", "a"]),
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
/// (then from history), and the output cannot depend on timing. The
/// watch is stopped once it printed the eleven events (or after
/// `WATCH_TIMEOUT`, which bounds a hang), not after a fixed window.
#[test]
fn live_watch_matches_etcd() {
    let watch_while_writing = |server: &ServerProcess| {
        let from = format!("--rev={}", server.revision() + 1);
        let endpoint = server.client_url.clone();
        let watcher = std::thread::spawn(move || {
            crate::support::etcdctl_until(
                &endpoint,
                &["watch", "--prefix", "k", &from, "--prev-kv"],
                WATCH_TIMEOUT,
                |printed| {
                    printed.matches("PUT\n").count() >= 10
                        && printed.matches("DELETE\n").count() >= 1
                },
            )
        });
        // Give the watch a moment to connect, so the live path is the usual one.
        std::thread::sleep(Duration::from_millis(500));
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

/// The lease commands etcdctl has, on one long lease: grant, attach keys
/// (and detach them by overwriting), keep alive, ask the TTL with and
/// without keys, list, revoke (every key in one revision, as the watch
/// shows), and every refusal on the way.
#[test]
fn lease_sessions_match_etcd() {
    check(&[
        run(&["lease", "grant", "600"]),
        run(&["lease", "grant", "900", "-w", "json"]),
        run(&["lease", "grant", "9000000001"]),
        run(&["put", "a", "1", "--lease={lease0}"]),
        run(&["put", "b", "2", "--lease={lease0}", "-w", "json"]),
        run(&["put", "c", "3", "--lease={lease0}"]),
        run(&["put", "d", "4", "--lease={lease1}"]),
        run(&["put", "a", "5", "--ignore-lease"]),
        run(&["put", "c", "6"]),
        run(&["get", "", "--from-key", "-w", "json"]),
        run(&["lease", "timetolive", "{lease0}"]),
        run(&["lease", "timetolive", "{lease0}", "--keys"]),
        run(&["lease", "timetolive", "{lease0}", "-w", "json"]),
        run(&["lease", "timetolive", "{lease0}", "--keys", "-w", "json"]),
        run(&["lease", "keep-alive", "--once", "{lease0}"]),
        run(&["lease", "keep-alive", "--once", "{lease1}", "-w", "json"]),
        run(&["lease", "list"]),
        run(&["lease", "list", "-w", "json"]),
        run_with_input(&["txn"], "\nput e 7 --lease={lease1}\n\n"),
        run(&["lease", "revoke", "{lease0}"]),
        run(&["lease", "revoke", "{lease0}"]),
        run(&["lease", "timetolive", "{lease0}"]),
        run(&["lease", "timetolive", "{lease0}", "-w", "json"]),
        run(&["lease", "keep-alive", "--once", "{lease0}"]),
        run(&["put", "z", "1", "--lease={lease0}"]),
        run(&["lease", "revoke", "{lease1}", "-w", "json"]),
        watch(&["watch", "--rev=1", "--prefix", ""]),
        run(&["get", "", "--from-key", "-w", "json"]),
        run(&["lease", "list"]),
        run(&["lease", "revoke", "abc"]),
        run(&["lease", "timetolive", "abc"]),
        run(&["lease", "keep-alive", "--once", "1"]),
    ]);
}

/// A TTL under the minimum is raised to it (two seconds with etcd's
/// default election timeout), and such a lease then expires by itself:
/// its keys go, its TTL reads -1.
#[test]
fn a_short_lease_is_raised_to_the_minimum_and_expires() {
    let steps = [
        run(&["lease", "grant", "1"]),
        run(&["put", "gone", "soon", "--lease={lease0}"]),
        run(&["lease", "grant", "0", "-w", "json"]),
    ];
    check(&steps);
    let detcd = ServerProcess::start(Flavor::Detcd, &[]);
    let granted = detcd.ctl_ok(&["lease", "grant", "1"]);
    assert!(granted.ends_with("granted with TTL(2s)\n"), "{granted}");
    let id = granted.split(' ').nth(1).unwrap().to_string();
    detcd.ctl_ok(&["put", "gone", "soon", &format!("--lease={id}")]);
    let remaining = detcd.ctl_ok(&["lease", "timetolive", &id]);
    assert!(
        remaining.contains("remaining(1s)") || remaining.contains("remaining(0s)"),
        "{remaining}"
    );
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(20), || {
            detcd.ctl_ok(&["get", "gone"]).is_empty()
        }),
        "the key outlived its lease"
    );
    let expired = detcd.ctl_ok(&["lease", "timetolive", &id]);
    assert_eq!(expired, format!("lease {id} already expired\n"));
}

/// etcdctl's lock and elect recipes (client-side, over leases, txns and
/// watches): a lock running a command, a lock held until etcdctl is
/// stopped (which releases it), an election won and then observed, and
/// the usage errors.
#[test]
fn lock_and_elect_sessions_match_etcd() {
    check(&[
        run(&["lock", "mylock", "--", "echo", "held"]),
        watch(&["lock", "mylock"]),
        run(&["get", "mylock", "--prefix", "--keys-only"]),
        watch(&["elect", "myelection", "alice"]),
        watch(&["elect", "--listen", "myelection"]),
        run(&["get", "myelection", "--prefix", "--keys-only"]),
        run(&["lock"]),
        run(&["elect"]),
        run(&["elect", "a", "b", "c"]),
    ]);
}

/// Users, roles and permissions, then auth on: requests without a user,
/// with a wrong password, and as users whose roles allow some of them, on
/// every service that checks keys (KV, txn, watch, lease, lock), the
/// admin-only calls, root's protections, and auth off again.
#[test]
fn auth_sessions_match_etcd() {
    const ALICE: &str = "--user=alice:apw";
    const ROOT: &str = "--user=root:rootpw";
    check(&[
        run(&["auth", "enable"]),
        run(&["user", "add", "root", "--new-user-password=rootpw"]),
        run(&["user", "grant-role", "root", "root"]),
        run(&["user", "get", "root", "-w", "json"]),
        run(&["user", "add", "alice", "--new-user-password=apw"]),
        run(&["user", "add", "alice", "--new-user-password=x"]),
        run(&["user", "add", "", "--new-user-password=x"]),
        run(&["user", "add", "bob", "--no-password"]),
        run_with_input(&["user", "add", "carol", "--interactive=false"], "cpw\n"),
        run(&["role", "add", "r1"]),
        run(&["role", "add", "r1"]),
        run(&["role", "add", ""]),
        run(&["role", "add", "r2"]),
        run(&["role", "grant-permission", "r1", "read", "a"]),
        run(&["role", "grant-permission", "r1", "readwrite", "b", "c"]),
        run(&["role", "grant-permission", "r1", "write", "p", "--prefix"]),
        run(&["role", "grant-permission", "r1", "write", "a"]),
        run(&["role", "grant-permission", "r1", "read", "z", "--from-key"]),
        run(&[
            "role",
            "grant-permission",
            "r1",
            "readwrite",
            "mylock",
            "--prefix",
        ]),
        run(&["role", "grant-permission", "nope", "read", "z"]),
        run(&["role", "grant-permission", "r2", "read", "a"]),
        run(&["role", "get", "r1"]),
        run(&["role", "get", "r1", "-w", "json"]),
        run(&["role", "get", "nope"]),
        run(&["user", "grant-role", "alice", "r1"]),
        run(&["user", "grant-role", "alice", "r1"]),
        run(&["user", "grant-role", "alice", "nope"]),
        run(&["user", "grant-role", "nope", "r1"]),
        run(&["user", "grant-role", "carol", "r2"]),
        run(&["user", "get", "alice"]),
        run(&["user", "get", "nope"]),
        run(&["user", "list"]),
        run(&["user", "list", "-w", "json"]),
        run(&["role", "list"]),
        run(&["put", "a", "before"]),
        run(&["auth", "enable"]),
        run(&["auth", "enable", ROOT]),
        run(&["get", "a"]),
        run(&["put", "a", "1"]),
        run(&["user", "list"]),
        run(&["get", "a", "--user=alice:wrong"]),
        run(&["get", "a", "--user=nobody:x"]),
        run(&["get", "a", ALICE]),
        run(&["put", "a", "1", ALICE]),
        run(&["put", "b", "1", ALICE]),
        run(&["get", "b", ALICE]),
        run(&["get", "b", "c", ALICE]),
        run(&["get", "b", "--prefix", ALICE]),
        run(&["get", "", "--prefix", ALICE]),
        run(&["put", "pq", "1", ALICE]),
        run(&["get", "pq", ALICE]),
        run(&["put", "pq", "2", "--prev-kv", ALICE]),
        run(&["del", "pq", ALICE]),
        run(&["del", "pq", "--prev-kv", ALICE]),
        run(&["del", "p", "--prefix", ALICE]),
        run(&["get", "a", "-w", "json", ROOT]),
        run(&["get", "a", "--user=carol:cpw"]),
        run(&["put", "a", "2", "--user=carol:cpw"]),
        run_with_input(
            &["txn", ALICE],
            "value(\"b\") = \"1\"\n\nput a 3\n\nput b 4\n\n",
        ),
        run_with_input(
            &["txn", ALICE],
            "value(\"b\") = \"1\"\n\nput b 5\n\nput x 1\n\n",
        ),
        run_with_input(&["txn", ALICE], "value(\"x\") = \"1\"\n\nput b 6\n\n\n"),
        // Read-only txns are checked too, and a delete's prev_kv needs
        // read. (A put's prev_kv in a txn needs read in detcd, not in
        // etcd 3.4.23: see auth::tests.)
        run_with_input(&["txn", ALICE], "\nget a\n\n\n"),
        run_with_input(&["txn", ALICE], "\nget q\n\n\n"),
        run_with_input(&["txn", ALICE], "value(\"q\") = \"1\"\n\n\n\n"),
        run_with_input(&["txn", ALICE], "\nput pq 3\n\n\n"),
        run_with_input(&["txn", ALICE], "\ndel pq --prev-kv\n\n\n"),
        watch(&["watch", "a", "--rev=1", ALICE]),
        watch(&["watch", "zz", "--rev=1", ALICE]),
        watch(&["watch", "b", "--prefix", "--rev=1", ALICE]),
        run(&["lease", "grant", "600", ALICE]),
        run(&["put", "b", "leased", "--lease={lease0}", ALICE]),
        run(&["lease", "revoke", "{lease0}", "--user=carol:cpw"]),
        run(&["lease", "revoke", "{lease0}", ALICE]),
        run(&["lock", "mylock", ALICE, "--", "echo", "held"]),
        run(&["lock", "otherlock", ALICE, "--", "echo", "held"]),
        watch(&["elect", "myelection", "alice", ALICE]),
        run(&["compaction", "1", ALICE]),
        run(&["endpoint", "hashkv", ALICE]),
        run(&["alarm", "list", ALICE]),
        run(&["user", "list", ALICE]),
        run(&["user", "get", "alice", ALICE]),
        run(&["user", "get", "root", ALICE]),
        run(&["role", "get", "r1", ALICE]),
        run(&["role", "get", "r2", ALICE]),
        run(&["user", "add", "dave", "--new-user-password=d", ALICE]),
        run(&["user", "delete", "root", ROOT]),
        run(&["user", "revoke-role", "root", "root", ROOT]),
        run(&["role", "delete", "root", ROOT]),
        run(&["role", "revoke-permission", "r1", "a", ROOT]),
        run(&["role", "revoke-permission", "r1", "a", ROOT]),
        run(&["role", "revoke-permission", "r1", "p", "--prefix", ROOT]),
        run(&["role", "get", "r1", ROOT]),
        run(&["put", "a", "7", ALICE]),
        run(&["user", "revoke-role", "alice", "r1", ROOT]),
        run(&["user", "revoke-role", "alice", "r1", ROOT]),
        run(&["get", "b", ALICE]),
        run_with_input(
            &["user", "passwd", "carol", "--interactive=false", ROOT],
            "cpw2\n",
        ),
        run(&["get", "a", "--user=carol:cpw"]),
        run(&["get", "a", "--user=carol:cpw2"]),
        run(&["get", "a", "--user=bob:"]),
        run(&["role", "delete", "r2", ROOT]),
        run(&["user", "get", "carol", ROOT]),
        run(&["user", "delete", "carol", ROOT]),
        run(&["user", "delete", "carol", ROOT]),
        run(&["auth", "disable", ALICE]),
        run(&["auth", "disable", ROOT]),
        run(&["auth", "disable"]),
        run(&["get", "", "--prefix"]),
        run(&["user", "list"]),
    ]);
}

/// `--auth-token jwt` (ES256, keys made here): the same session prints
/// the same on both servers; the tokens are signed, not kept.
#[test]
fn jwt_auth_sessions_match_etcd() {
    let keys = tempfile::tempdir().unwrap();
    let flag = crate::support::jwt_auth_token_flag(keys.path(), ",ttl=10m");
    const ROOT: &str = "--user=root:rootpw";
    const ALICE: &str = "--user=alice:apw";
    let differences = differences_with(
        &[&flag],
        &[
            run(&["user", "add", "root", "--new-user-password=rootpw"]),
            run(&["user", "grant-role", "root", "root"]),
            run(&["user", "add", "alice", "--new-user-password=apw"]),
            run(&["role", "add", "r"]),
            run(&["role", "grant-permission", "r", "readwrite", "a"]),
            run(&["user", "grant-role", "alice", "r"]),
            run(&["auth", "enable"]),
            run(&["put", "a", "1", ALICE]),
            run(&["get", "a", ALICE]),
            run(&["get", "b", ALICE]),
            run(&["get", "a", "--user=alice:wrong"]),
            run(&["user", "list", ROOT]),
            run(&["role", "revoke-permission", "r", "a", ROOT]),
            run(&["get", "a", ALICE]),
            run(&["auth", "disable", ROOT]),
            run(&["get", "a"]),
        ],
    );
    assert!(
        differences.is_empty(),
        "{} step(s) differ from etcd:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// `etcdctl snapshot status` of each server's backup after the same
/// session: the same revision and the same count of keys (etcdctl counts
/// every bucket's), auth enabled once and off again, a lease, a
/// compaction. Hash and size are the files', which differ by design
/// (member ids, page layout).
#[test]
fn snapshot_status_counts_what_etcd_counts() {
    phase!("the same session on detcd and etcd, then a backup of each");
    let dir = tempfile::tempdir().unwrap();
    let mut statuses = Vec::new();
    for (n, flavor) in [Flavor::Detcd, Flavor::Etcd].into_iter().enumerate() {
        let server = ServerProcess::start(flavor, &[]);
        for args in [
            &["put", "a", "1"][..],
            &["put", "b", "2"],
            &["put", "a", "3"],
            &["del", "b"],
            &["lease", "grant", "600"],
            &["compaction", "3", "--physical"],
            &["user", "add", "root:secret"],
            &["user", "grant-role", "root", "root"],
            &["auth", "enable"],
            &["--user", "root:secret", "auth", "disable"],
        ] {
            server.ctl_ok(args);
        }
        let file = dir.path().join(format!("{n}.db"));
        server.ctl_ok(&["snapshot", "save", file.to_str().unwrap()]);
        let status = crate::support::etcdctl(
            &server.client_url,
            &["snapshot", "status", file.to_str().unwrap(), "-w", "json"],
            None,
        );
        let status: serde_json::Value = serde_json::from_slice(&status.stdout)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&status.stderr)));
        statuses.push((status["revision"].clone(), status["totalKey"].clone()));
    }
    assert_eq!(
        statuses[0], statuses[1],
        "(revision, totalKey): detcd's, then etcd's"
    );
}

/// `member remove` checks, as etcd's does, that enough members stay
/// started before it looks the member up: with a voter added but never
/// started, removing an id nobody has is refused for the quorum.
#[test]
fn member_remove_checks_started_members_first_as_etcd_does() {
    for flavor in [Flavor::Detcd, Flavor::Etcd] {
        let server = ServerProcess::start(flavor, &[]);
        server.ctl_ok(&[
            "member",
            "add",
            "never-started",
            "--peer-urls=http://127.0.0.1:1",
        ]);
        let refused = server.ctl(&["member", "remove", "1234"]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr
                .contains("etcdserver: re-configuration failed due to not enough started members"),
            "{flavor:?}: {stderr}"
        );
    }
}
