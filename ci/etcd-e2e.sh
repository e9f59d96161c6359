#!/usr/bin/env bash
# etcd 3.4.23's own end-to-end suite (tests/e2e, the TestCtlV3* tests:
# etcdctl 3.4 against spawned servers) with detcd as its `etcd` binary.
# Nightly (ci/nightly.sh): about 15 minutes on a 2-core machine.
#
# The suite's source comes from Debian (golang-etcd-server-dev, built in
# GOPATH mode and offline: no Go module proxy is reachable here). It uses
# fixed ports (20000 and up), so each test runs in a network and PID
# namespace of its own (root), which also ends whatever it left running.
# A failing test's server and etcdctl lines are in target/etcd-e2e/logs.
#
#   ci/etcd-e2e.sh                 # every TestCtlV3* test
#   ci/etcd-e2e.sh '^TestCtlV3Put' # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-^TestCtlV3}
per_test_secs=180
# Fails alone on etcd 3.4.23 too: it needs the v2 API that an earlier
# test in etcd's own order left enabled.
expected_failures=" TestCtlV3Migrate "

as_root=""
[ "$(id -u)" -eq 0 ] || as_root=sudo
need=()
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/go.etcd.io/etcd/tests/e2e ] || need+=(golang-etcd-server-dev)
command -v etcdctl >/dev/null || need+=(etcd-client)
if [ ${#need[@]} -gt 0 ]; then
    $as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

out=$PWD/target/etcd-e2e
mkdir -p "$out/bin" "$out/logs" "$out/gopath" "$out/tmp"
cargo build --quiet --release --bin detcd
target_dir=${CARGO_TARGET_DIR:-target}
ln -sf "$(realpath "$target_dir")/release/detcd" "$out/bin/etcd"
ln -sf "$(command -v etcdctl)" "$out/bin/etcdctl"
src=/usr/share/gocode/src/go.etcd.io/etcd
GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOPROXY=off GOFLAGS= \
    go test -c -o "$out/e2e.test" go.etcd.io/etcd/tests/e2e

failed=()
tests=$("$out/e2e.test" -test.list "$pattern")
total=$(echo "$tests" | wc -l)
n=0
for t in $tests; do
    n=$((n + 1))
    rm -rf "${out:?}/tmp/"*
    log="$out/logs/$t.log"
    # shellcheck disable=SC2016
    timeout -s KILL $((per_test_secs + 30)) $as_root unshare -n -p -f --kill-child \
        bash -c 'ip link set lo up; cd "$1/tests/e2e" && TMPDIR="$2/tmp" EXPECT_DEBUG=1 \
            "$2/e2e.test" -test.run "^$3\$" -test.v -test.timeout "$4s" \
            -bin-dir "$2/bin" -cert-dir "$1/integration/fixtures"' \
        _ "$src" "$out" "$t" "$per_test_secs" > "$log" 2>&1 || true
    if grep -aq -- "--- PASS: $t " "$log"; then
        verdict=PASS
    elif [[ $expected_failures == *" $t "* ]]; then
        verdict="FAIL (expected: fails on etcd 3.4.23 too)"
    else
        verdict=FAIL
        failed+=("$t")
    fi
    echo "[$n/$total] $t: $verdict"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "etcd e2e: ${#failed[@]} of $total failed: ${failed[*]} (logs: $out/logs)"
    echo "reproduce: ci/etcd-e2e.sh '^${failed[0]}\$'"
    exit 1
fi
echo "etcd e2e: $total tests, none failed beyond the expected"
