#!/usr/bin/env bash
# Nightly fault injection: runs simulation seeds (3 and 5 members, every
# workload, every seed checked for determinism) until the time budget in
# seconds is spent, then writes a summary. Failing seeds leave their
# history, timeline and replay command under target/sim-failures.
#
#   ci/nightly.sh 3600        # one hour
set -euo pipefail
cd "$(dirname "$0")/.."
budget_secs=${1:?usage: ci/nightly.sh BUDGET_SECONDS}
chunk=${DETCD_NIGHTLY_CHUNK:-25}
summary=${DETCD_NIGHTLY_SUMMARY:-target/sim-nightly-summary.txt}

RUSTFLAGS="--cfg madsim" cargo build --quiet --release -p detcd-sim --target-dir target/sim
sim=target/sim/release/detcd-sim

mkdir -p "$(dirname "$summary")"
: > "$summary"
deadline=$(( $(date +%s) + budget_secs ))
# A different starting seed every night, recorded in the summary.
seed=$(( $(date +%s) / 86400 * 100000 ))
status=0
round=0
while [ "$(date +%s)" -lt "$deadline" ]; do
    for config in "--nodes 3 --workload mixed" "--nodes 5 --workload append" "--nodes 3 --workload register" "--nodes 3 --workload lease" "--nodes 5 --workload lock" "--nodes 3 --workload auth" "--nodes 3 --workload etcd"; do
        [ "$(date +%s)" -lt "$deadline" ] || break
        round=$((round + 1))
        echo "== round $round: seeds $seed.. $config" | tee -a "$summary"
        # shellcheck disable=SC2086
        if ! "$sim" run --seeds "$chunk" --start-seed "$seed" --duration 30 $config --check-determinism \
                --failures-dir target/sim-failures | tee -a "$summary.log" | grep -E "^seeds:|VIOLATION|LIVENESS|CRASH|NONDETERMINISTIC|UNKNOWN|replay:" | tee -a "$summary"; then
            :
        fi
        if grep -qE "VIOLATION|LIVENESS|CRASH|NONDETERMINISTIC" "$summary"; then status=1; fi
        seed=$((seed + chunk))
    done
done
# jepsen-style: real processes under every fault, detcd and etcd 3.4.23 on
# the same seed, 3 and 5 members (outside the budget: about 25 minutes).
# Namespaces, mounts and apt need root: sudo where the runner is not.
as_root=""
[ "$(id -u)" -eq 0 ] || as_root=sudo
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v nft >/dev/null || need+=(nftables)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || need+=(faketime)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    $as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --quiet --release -p detcd -p detcd-jepsen
for nodes in 3 5; do
    echo "== jepsen-style: both targets, $nodes members, seed $seed" | tee -a "$summary"
    # pipefail: the tool's own status counts too (a panic prints no verdict).
    jepsen_status=0
    $as_root target/release/detcd-jepsen --target both --nodes "$nodes" --time "${DETCD_NIGHTLY_JEPSEN_SECS:-300}" \
        --nemesis all --seed "$seed" --out target/jepsen-runs | tee -a "$summary.log" \
        | grep -E "^(detcd|etcd):|^reproduce:|^ +[a-z/0-9 ,]+ {3,}" | tee -a "$summary" || jepsen_status=$?
    if [ "$jepsen_status" -ne 0 ] || grep -qE "^(detcd|etcd): (VIOLATION|LIVENESS|CRASH)" "$summary"; then status=1; fi
done
# Leases and locks next to the kv workloads, detcd only: etcd 3.4.23 fails
# the lease check by design (a leader change restarts every lease at its
# full TTL unless its experimental lease checkpointing is on).
echo "== jepsen-style: mixed workload (kv, leases, locks), detcd, seed $seed" | tee -a "$summary"
jepsen_status=0
$as_root target/release/detcd-jepsen --target detcd --nodes 3 --time "${DETCD_NIGHTLY_JEPSEN_SECS:-300}" \
    --workload mixed --nemesis all --seed "$seed" --out target/jepsen-runs | tee -a "$summary.log" \
    | grep -E "^detcd:|^reproduce:" | tee -a "$summary" || jepsen_status=$?
if [ "$jepsen_status" -ne 0 ] || grep -qE "^detcd: (VIOLATION|LIVENESS|CRASH)" "$summary"; then status=1; fi

# Supply chain (ci/deny.sh; deny.toml says why each ignored advisory does
# not apply). The advisories are checked where GitHub can be reached.
echo "== cargo deny check" | tee -a "$summary"
deny_status=0
ci/deny.sh > "$summary.deny" 2>&1 || deny_status=$?
grep -E "^error|NOT checked" "$summary.deny" | tee -a "$summary" || true
if [ "$deny_status" -ne 0 ]; then
    echo "cargo deny check: FAILED (reproduce: ci/deny.sh)" | tee -a "$summary"
    status=1
fi

# etcd 3.4.23's own e2e suite (TestCtlV3*: etcdctl against spawned
# servers) with detcd as its etcd binary (ci/etcd-e2e.sh).
echo "== etcd 3.4.23 e2e suite against detcd" | tee -a "$summary"
e2e_status=0
ci/etcd-e2e.sh > "$summary.e2e" 2>&1 || e2e_status=$?
grep -E "^etcd e2e:|^reproduce:" "$summary.e2e" | tee -a "$summary" || true
if [ "$e2e_status" -ne 0 ]; then status=1; fi

echo "nightly: $(grep -c '^seeds:' "$summary") rounds; summary in $summary" | tee -a "$summary"
# A failing run ends with the commands that reproduce it.
if [ "$status" -ne 0 ]; then
    grep -E "replay:|^reproduce:" "$summary" | sed 's/^ *replay: /reproduce: /' | sort -u | tee -a "$summary"
fi
exit $status
