#!/usr/bin/env bash
# Supply chain: `cargo deny check` against deny.toml (licenses, duplicate
# versions, sources; advisories, each ignored one with why it does not
# apply). Run per commit by ci/test.sh and by ci/nightly.sh.
#
# cargo-deny is installed from crates.io at a pinned version, as a debug
# build: about a minute on a 2-core machine against several for a release
# build, and its checks take seconds either way. (PyPI's cargo-deny wheel
# is 0.14.2, whose cargo metadata reader panics on today's cargo.)
#
# The advisory database is a git repository on GitHub. Where GitHub cannot
# be reached (these CI machines reach crates.io, PyPI and npm only), the
# advisory check says so and is skipped; the other three always run.
set -euo pipefail
cd "$(dirname "$0")/.."

deny_version=0.20.2
tools=target/tools
deny=$tools/bin/cargo-deny
if ! "$deny" --version 2>/dev/null | grep -qF "$deny_version"; then
    echo "installing cargo-deny $deny_version into $tools (debug build)"
    cargo install --quiet --locked --debug --root "$tools" "cargo-deny@$deny_version"
fi

# Errors only: the duplicate-version warnings are long, and `cargo deny
# check bans` lists them.
"$deny" --log-level error check licenses bans sources
# Bounded: an unreachable host that drops packets must not hang the run.
if timeout 120 "$deny" fetch db >/dev/null 2>&1; then
    "$deny" --log-level error --offline check advisories
else
    echo "cargo deny: advisories NOT checked: the advisory database (github.com/RustSec/advisory-db) is unreachable from here"
fi
