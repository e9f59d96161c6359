//! etcd's space-quota workflow (op-guide "maintenance: space quota"), run
//! against detcd and the reference etcd 3.4.23 alike: writes fill the
//! quota, NOSPACE is raised and survives a restart, writes are refused
//! while it is up, and compact + defrag + disarm bring writes back. The
//! two servers count space differently (etcd: its bbolt file), so the
//! trip point differs; everything an operator sees around it must not.

use crate::support::{Flavor, ServerProcess};

/// Small enough to fill quickly, large enough for etcd's initial file.
const QUOTA_BYTES: &str = "--quota-backend-bytes=262144";
const VALUE_BYTES: usize = 4096;
/// Puts tried before the quota counts as never reached.
const PUTS_MAX: usize = 400;
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

fn space_quota_workflow(flavor: Flavor) {
    let mut server = ServerProcess::start(flavor, &[QUOTA_BYTES]);
    let value = "v".repeat(VALUE_BYTES);
    let tripped = (0..PUTS_MAX).find(|n| {
        let output = server.ctl(&["put", &format!("fill/{n:04}"), &value]);
        !output.status.success()
    });
    let tripped = tripped.unwrap_or_else(|| {
        panic!("{flavor:?}: {PUTS_MAX} puts of {VALUE_BYTES} bytes never hit the quota")
    });
    assert!(tripped > 0, "{flavor:?}: the first put already failed");
    let alarms = server.ctl_ok(&["alarm", "list"]);
    assert!(
        alarms.contains("alarm:NOSPACE"),
        "{flavor:?}: no NOSPACE alarm: {alarms:?}"
    );

    // The alarm is replicated state: it survives a crash.
    server.kill();
    server.restart();
    assert_eq!(
        server.ctl_ok(&["alarm", "list"]),
        alarms,
        "{flavor:?}: the alarm did not survive a restart"
    );
    let refused = server.ctl(&["put", "small", "1"]);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains(NO_SPACE),
        "{flavor:?}: a put went through under NOSPACE"
    );
    assert_eq!(
        server
            .ctl_ok(&["get", "fill/0000", "--print-value-only"])
            .trim_end(),
        value,
        "{flavor:?}: reads still work"
    );

    // The operator's way out.
    // etcd may have applied the put it refused: it checks the quota before
    // proposing and again at apply, where it applies the put anyway and
    // answers NOSPACE (detcd refuses it there instead).
    let deleted: usize = server
        .ctl_ok(&["del", "fill/", "--prefix"])
        .trim()
        .parse()
        .unwrap();
    let applied = if flavor == Flavor::Detcd {
        tripped..=tripped
    } else {
        tripped..=tripped + 1
    };
    assert!(
        applied.contains(&deleted),
        "{flavor:?}: {deleted} keys deleted after {tripped} acknowledged puts"
    );
    server.ctl_ok(&["compaction", &server.revision().to_string()]);
    let before = db_size(&server);
    assert!(
        server
            .ctl_ok(&["defrag"])
            .starts_with("Finished defragmenting etcd member["),
        "{flavor:?}"
    );
    let after = db_size(&server);
    assert!(
        after < before,
        "{flavor:?}: defrag gave no space back: dbSize {before} then {after}"
    );
    assert_eq!(
        server.ctl_ok(&["alarm", "disarm"]),
        alarms,
        "{flavor:?}: disarm names what it cleared"
    );
    assert_eq!(server.ctl_ok(&["alarm", "list"]), "", "{flavor:?}");
    server.ctl_ok(&["put", "small", "1"]);
}

/// The member's DB size as `endpoint status` reports it.
fn db_size(server: &ServerProcess) -> u64 {
    let status = server.ctl_ok(&["endpoint", "status", "-w", "json"]);
    status
        .split("\"dbSize\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no dbSize in {status}"))
}

#[test]
fn space_quota_workflow_on_detcd() {
    space_quota_workflow(Flavor::Detcd);
}

#[test]
fn space_quota_workflow_on_etcd() {
    space_quota_workflow(Flavor::Etcd);
}
