#!/usr/bin/env bash
# The per-commit test suite (the README's test command): installs what the
# tests need, then lints, builds and tests both the normal and the
# simulation (--cfg madsim) build. Long fault-injection runs are nightly.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

need_packages=()
command -v etcdctl >/dev/null || need_packages+=(etcd-client)
command -v etcd >/dev/null || need_packages+=(etcd-server)
# jepsen-style: namespaces, veth and netem; a font for its plots' labels.
command -v tc >/dev/null || need_packages+=(iproute2)
command -v nft >/dev/null || need_packages+=(nftables)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || need_packages+=(faketime)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_packages+=(fonts-dejavu-core)
if [ ${#need_packages[@]} -gt 0 ]; then
    step "installing ${need_packages[*]} (etcdctl 3.4 and the reference etcd 3.4.23)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi
etcdctl version | sed -n 1p  # not head: SIGPIPE under pipefail
etcd --version | sed -n 1p

export CARGO_TERM_COLOR=never
jobs=-j2

step "format: one style for the whole tree (rustfmt.toml)"
cargo fmt --all --check

step "supply chain: cargo deny (deny.toml)"
ci/deny.sh

step "lint: clippy (normal build) enforces the determinism seams in clippy.toml"
cargo clippy --workspace --all-targets $jobs -- -D warnings

step "normal build: unit, property and integration tests"
cargo build --workspace --all-targets $jobs
cargo nextest run --workspace $jobs --no-fail-fast

step "jepsen-style: real processes, each in its own network namespace, under kills, pauses, partitions, leader moves, churn, full disks and clock steps"
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
"$target_dir/debug/detcd-jepsen" --target detcd --nodes 3 --time "${DETCD_CI_JEPSEN_SECS:-60}" \
    --nemesis kill,pause,partition,leader,churn,disk,clock --seed "${DETCD_CI_JEPSEN_SEED:-1}" --out target/jepsen-runs
# Register and append clients with a lease client and two lock clients.
"$target_dir/debug/detcd-jepsen" --target detcd --nodes 3 --time 30 --workload mixed \
    --nemesis kill,pause,partition,leader --seed 2 --out target/jepsen-runs

step "simulation build (--cfg madsim, target/sim): everything compiles warning-free"
export SIM_RUSTFLAGS="--cfg madsim -D warnings"
# Without the jepsen-style tool: it runs real processes (its madsim build is
# a stub), and its `client` feature of detcd-sim would make the -p detcd-sim
# runs below build detcd-sim a second time. Without the authority shim: it
# is real HTTP/2 only (the simulated build has none and does not use it).
RUSTFLAGS="$SIM_RUSTFLAGS" CARGO_TARGET_DIR=target/sim cargo build --workspace --exclude detcd-jepsen --exclude detcd-authority-shim --all-targets $jobs

step "lint: clippy (simulation build) enforces the seams in code only the madsim build compiles"
# Sabotages and other #[cfg(madsim)] code in the core exist only in this
# build; clippy's check artifacts live beside the build's in target/sim.
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo clippy --workspace --exclude detcd-jepsen --exclude detcd-authority-shim --all-targets $jobs -- -D warnings

step "simulation scenarios, with madsim's determinism check on"
RUSTFLAGS="$SIM_RUSTFLAGS" CARGO_TARGET_DIR=target/sim MADSIM_TEST_CHECK_DETERMINISM=1 \
    cargo nextest run -p detcd-sim --test scenarios $jobs --no-fail-fast

step "simulation harness: seeds pass, replay is deterministic, every sabotage is caught"
RUSTFLAGS="$SIM_RUSTFLAGS" CARGO_TARGET_DIR=target/sim \
    cargo nextest run -p detcd-sim --test harness $jobs --no-fail-fast

step "simulation seeds (per commit; ci/nightly.sh runs many more)"
# The debug build above runs them: about 9 minutes of seeds here at 12-25x,
# against about 1 minute in a release build (155-380x), which would first
# cost a release build of the whole simulation tree (about 9 minutes on this
# 2-core machine, measured 2026-12-03) on top of the debug one the warning
# check needs. It does not pay off per commit; the nightly uses release.
target/sim/debug/detcd-sim run --seeds "${DETCD_CI_SEEDS:-250}" --start-seed 1 --duration 10 --nodes 3 --workload mixed \
    --failures-dir target/sim-failures
target/sim/debug/detcd-sim run --seeds "${DETCD_CI_SEEDS_5:-100}" --start-seed 100001 --duration 10 --nodes 5 \
    --workload append --failures-dir target/sim-failures
target/sim/debug/detcd-sim run --seeds "${DETCD_CI_SEEDS_LEASE:-60}" --start-seed 200001 --duration 10 \
    --workload lease --failures-dir target/sim-failures
target/sim/debug/detcd-sim run --seeds "${DETCD_CI_SEEDS_LOCK:-40}" --start-seed 300001 --duration 10 \
    --workload lock --failures-dir target/sim-failures
target/sim/debug/detcd-sim run --seeds "${DETCD_CI_SEEDS_AUTH:-40}" --start-seed 400001 --duration 10 \
    --workload auth --failures-dir target/sim-failures
target/sim/debug/detcd-sim run --seeds "${DETCD_CI_SEEDS_ETCD:-30}" --start-seed 700001 --duration 10 \
    --workload etcd --failures-dir target/sim-failures
