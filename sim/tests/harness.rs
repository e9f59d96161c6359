//! The simulation harness end to end (madsim build only): seeds pass on
//! the real code, replay is deterministic, and every sabotage is caught.
#![cfg(madsim)]

use std::process::{Command, Output};

/// Seeds tried per sabotage before the harness counts as blind to it.
const SABOTAGE_SEEDS: &str = "100";

fn detcd_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detcd-sim"))
        .args(args)
        .output()
        .expect("detcd-sim runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn seeds_pass_and_replay_deterministically() {
    let output = detcd_sim(&[
        "run",
        "--seeds",
        "20",
        "--duration",
        "10",
        "--check-determinism",
        "--failures-dir",
        env!("CARGO_TARGET_TMPDIR"),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("seeds: 20 passed, 0 failed"),
        "{}",
        text(&output)
    );
}

#[test]
fn five_members_pass_under_the_append_workload() {
    let output = detcd_sim(&[
        "run",
        "--seeds",
        "5",
        "--start-seed",
        "1000",
        "--nodes",
        "5",
        "--workload",
        "append",
        "--duration",
        "10",
    ]);
    assert!(output.status.success(), "{}", text(&output));
}

/// The trace hash each seed's line of `detcd-sim run` reports.
fn trace_hashes(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| {
            let seed = line.split("] seed ").nth(1)?.split(':').next()?;
            let hash = line.split("trace ").nth(1)?.split(',').next()?;
            Some((seed.to_string(), hash.to_string()))
        })
        .collect()
}

#[test]
fn a_seed_is_the_same_run_alone_and_in_a_batch() {
    // Earlier seeds in the same process must not change a later one: what
    // a batch finds, `replay` must reproduce.
    let batch = detcd_sim(&[
        "run",
        "--seeds",
        "4",
        "--start-seed",
        "50050",
        "--duration",
        "5",
    ]);
    let batch_hashes = trace_hashes(&text(&batch));
    assert_eq!(batch_hashes.len(), 4, "{}", text(&batch));
    let (seed, hash) = &batch_hashes[3];
    let alone = detcd_sim(&["run", "--seed", seed, "--duration", "5"]);
    let alone_hashes = trace_hashes(&text(&alone));
    assert_eq!(
        alone_hashes,
        vec![(seed.clone(), hash.clone())],
        "seed {seed} alone ran another run than in the batch"
    );
}

#[test]
fn replay_prints_the_same_trace_hash_every_time() {
    let hash = |output: &Output| {
        text(output)
            .lines()
            .find(|line| line.starts_with("trace-hash: "))
            .map(str::to_string)
    };
    let first = detcd_sim(&["replay", "--seed", "42", "--duration", "5"]);
    let second = detcd_sim(&["replay", "--seed", "42", "--duration", "5"]);
    assert!(hash(&first).is_some(), "{}", text(&first));
    assert_eq!(hash(&first), hash(&second));
    let other = detcd_sim(&["replay", "--seed", "43", "--duration", "5"]);
    assert_ne!(
        hash(&first),
        hash(&other),
        "the hash must depend on the seed, or it proves nothing"
    );
}

fn caught(sabotage: &str) {
    caught_in(sabotage, "mixed");
}

/// Caught within `SABOTAGE_SEEDS` seeds of `workload`.
fn caught_in(sabotage: &str, workload: &str) {
    let dir = format!("{}/sabotage-{sabotage}", env!("CARGO_TARGET_TMPDIR"));
    let output = detcd_sim(&[
        "run",
        "--seeds",
        SABOTAGE_SEEDS,
        "--duration",
        "10",
        "--nodes",
        "3",
        "--workload",
        workload,
        "--sabotage",
        sabotage,
        "--stop-on-violation",
        "--failures-dir",
        &dir,
    ]);
    assert!(
        !output.status.success(),
        "sabotage {sabotage} went unnoticed for {SABOTAGE_SEEDS} seeds:\n{}",
        text(&output)
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "sabotage {sabotage} must be reported as a correctness violation:\n{}",
        text(&output)
    );
    let last = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.starts_with("reproduce the first failure: cargo sim replay --seed"),
        "a failing run ends with its replay command:\n{}",
        text(&output)
    );
}

#[test]
fn follower_ack_before_fsync_is_caught() {
    caught("follower-ack-before-fsync");
}

#[test]
fn persisted_one_write_early_is_caught() {
    caught("persisted-one-write-early");
}

#[test]
fn stale_read_is_caught() {
    caught("stale-read");
}

#[test]
fn ack_before_fsync_is_caught() {
    caught("ack-before-fsync");
}

#[test]
fn double_apply_is_caught() {
    caught("double-apply");
}

#[test]
fn corruption_as_torn_tail_is_caught() {
    caught("corruption-as-torn-tail");
}

#[test]
fn watch_gap_is_caught() {
    caught("watch-gap");
}

#[test]
fn lease_early_expiry_is_caught() {
    caught_in("lease-early-expiry", "lease");
}

#[test]
fn lease_reset_on_leader_change_is_caught() {
    caught_in("lease-reset-on-leader-change", "lease");
}

#[test]
fn revoke_leaves_a_key_is_caught() {
    caught_in("revoke-leaves-a-key", "lease");
}

#[test]
fn version_off_by_one_is_caught() {
    caught("version-off-by-one");
}

#[test]
fn auth_txn_else_unchecked_is_caught() {
    caught_in("auth-txn-else-unchecked", "auth");
}

#[test]
fn version_off_by_one_is_caught_by_the_etcd_model() {
    caught_in("version-off-by-one", "etcd");
}

#[test]
fn range_drops_last_key_is_caught_by_the_etcd_model() {
    caught_in("range-drops-last-key", "etcd");
}

#[test]
fn range_count_after_limit_is_caught_by_the_etcd_model() {
    caught_in("range-count-after-limit", "etcd");
}

#[test]
fn nested_compares_ignored_is_caught_by_the_etcd_model() {
    caught_in("nested-compares-ignored", "etcd");
}

#[test]
fn past_read_off_by_one_is_caught_by_the_past_read_check() {
    caught_in("past-read-off-by-one", "etcd");
}

#[test]
fn range_compare_first_key_only_is_caught_by_the_etcd_model() {
    caught_in("range-compare-first-key-only", "etcd");
}

#[test]
fn range_end_inclusive_is_caught_by_the_etcd_model() {
    caught_in("range-end-inclusive", "etcd");
}

#[test]
fn ignore_value_ignored_is_caught_by_the_etcd_model() {
    caught_in("ignore-value-ignored", "etcd");
}

#[test]
fn read_index_skips_apply_is_caught() {
    caught("read-index-skips-apply");
}

#[test]
fn state_parts_not_rewritten_is_caught() {
    caught("state-parts-not-rewritten");
}

#[test]
fn vote_forgotten_is_caught() {
    caught("vote-forgotten");
}

#[test]
fn apply_before_commit_is_caught() {
    caught("apply-before-commit");
}

#[test]
fn compaction_drops_live_keys_is_caught() {
    caught("compaction-drops-live-keys");
}

#[test]
fn lease_late_expiry_is_caught() {
    caught_in("lease-late-expiry", "lease");
}

#[test]
fn keepalive_ttl_short_is_caught() {
    caught_in("keepalive-ttl-short", "lease");
}

#[test]
fn time_to_live_drops_a_key_is_caught() {
    caught_in("time-to-live-drops-a-key", "lease");
}

#[test]
fn lease_leases_drops_the_last_is_caught() {
    caught_in("lease-leases-drops-the-last", "lease");
}

#[test]
fn watch_event_drops_lease_is_caught() {
    caught_in("watch-event-drops-lease", "etcd");
}

#[test]
fn header_names_the_leader_is_caught() {
    caught_in("header-names-the-leader", "etcd");
}

#[test]
fn watch_drops_prev_kv_is_caught() {
    caught("watch-drops-prev-kv");
}

#[test]
fn watch_drops_prev_kv_is_caught_over_the_etcd_workload() {
    caught_in("watch-drops-prev-kv", "etcd");
}

#[test]
fn watch_skips_lease_deletes_is_caught() {
    caught_in("watch-skips-lease-deletes", "lease");
}

#[test]
fn filter_after_limit_is_caught_by_the_etcd_model() {
    caught_in("filter-after-limit", "etcd");
}

#[test]
fn txn_put_drops_prev_kv_is_caught_by_the_etcd_model() {
    caught_in("txn-put-drops-prev-kv", "etcd");
}

#[test]
fn watch_prev_kv_is_current_is_caught_over_the_etcd_workload() {
    caught_in("watch-prev-kv-is-current", "etcd");
}

#[test]
fn overwrite_keeps_lease_is_caught_by_the_etcd_model() {
    caught_in("overwrite-keeps-lease", "etcd");
}

#[test]
fn watch_compacted_at_its_revision_is_caught() {
    caught("watch-compacted-at-its-revision");
}

#[test]
fn the_command_line_lists_every_sabotage_the_build_has() {
    let listed: Vec<(String, String)> = detcd_sim::options::SABOTAGES
        .iter()
        .map(|(name, what)| (name.to_string(), what.to_string()))
        .collect();
    let built: Vec<(String, String)> = detcd::sabotage::Sabotage::ALL
        .iter()
        .map(|s| (s.name().to_string(), s.describe().to_string()))
        .collect();
    assert_eq!(listed, built);
}

#[test]
fn watch_prev_kv_is_current_is_caught() {
    caught("watch-prev-kv-is-current");
}

#[test]
fn watch_filters_swapped_is_caught() {
    caught("watch-filters-swapped");
}

#[test]
fn member_id_reused_is_caught_with_churn() {
    caught("member-id-reused");
}

#[test]
fn watch_from_now_replays_current_is_caught() {
    caught("watch-from-now-replays-current");
}

#[test]
fn compaction_answered_at_its_revision_is_caught() {
    caught_in("compaction-answered-at-its-revision", "etcd");
}

#[test]
fn recompaction_accepted_is_caught() {
    caught("recompaction-accepted");
}

#[test]
fn hash_kv_ignores_revision_is_caught() {
    caught("hash-kv-ignores-revision");
}

#[test]
fn single_key_watch_matches_prefix_is_caught() {
    caught("single-key-watch-matches-prefix");
}

#[test]
fn cancelled_watch_stays_is_caught() {
    caught("cancelled-watch-stays");
}

#[test]
fn txn_duplicate_keys_accepted_is_caught() {
    caught("txn-duplicate-keys-accepted");
}

#[test]
fn lease_min_ttl_ignored_is_caught() {
    caught("lease-min-ttl-ignored");
}

#[test]
fn auth_write_grants_read_is_caught() {
    caught("auth-write-grants-read");
}

#[test]
fn password_change_keeps_tokens_is_caught() {
    caught("password-change-keeps-tokens");
}

#[test]
fn txn_range_revision_unchecked_is_caught() {
    caught("txn-range-revision-unchecked");
}

#[test]
fn progress_notify_ahead_is_caught() {
    caught("progress-notify-ahead");
}

#[test]
fn watch_from_future_starts_now_is_caught() {
    caught("watch-from-future-starts-now");
}

#[test]
fn delete_event_carries_value_is_caught() {
    caught("delete-event-carries-value");
}

#[test]
fn time_to_live_of_unknown_is_zero_is_caught() {
    caught("time-to-live-of-unknown-is-zero");
}

#[test]
fn last_fragment_marked_is_caught() {
    caught_in("last-fragment-marked", "etcd");
}

#[test]
fn no_space_refuses_deletes_is_caught() {
    caught("no-space-refuses-deletes");
}
