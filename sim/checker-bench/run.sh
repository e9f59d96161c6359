#!/usr/bin/env bash
# The checker benchmark: checks every history listed in verdicts.tsv with a
# release build, one process per file, and prints each one's verdict, time
# and peak memory next to the recorded verdict. Exits non-zero if a verdict
# differs. Usage: sim/checker-bench/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
cargo build --release -q -p detcd-sim
status=0
while IFS=$'\t' read -r file expected; do
    [[ "$file" == history ]] && continue
    line="$(target/release/detcd-sim check --format porcupine-kv --html-dir "${TMPDIR:-/tmp}" \
        "$here/$file" | head -n 1 || true)"
    case "$line" in
        *"NOT linearizable"*) got=false ;;
        *": linearizable"*) got=true ;;
        *) got=unknown ;;
    esac
    mark=ok
    if [[ "$got" != "$expected" ]]; then mark="WRONG (expected $expected)"; status=1; fi
    echo "$file: $mark: ${line#*"$file" }"
done < "$here/verdicts.tsv"
exit "$status"
