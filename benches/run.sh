#!/usr/bin/env bash
# The benchmark harness: builds release, then runs W1, W2, W3 and the 1/s rate
# case against the daemon on a fresh temporary database, next to a ceiling
# reference, and prints one table (see benches/README.md). Only talks to
# 127.0.0.1. Exit status: 0 when every check passed (targets may be missed),
# 1 when a check failed, 2 when the harness could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo python3 wrk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "benches/run.sh: $tool is missing (wrk: apt-get install -y wrk)" >&2
        exit 2
    fi
done

target_dir=${CARGO_TARGET_DIR:-target}
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --bin sperform
    cargo build --release --features bench --bin bench-ceiling
fi
BENCH_BIN_DIR=$(cd "$target_dir/release" && pwd)
export BENCH_BIN_DIR

workdir=$(mktemp -d "${TMPDIR:-/tmp}/sperform-bench.XXXXXX")
cleanup() {
    # bench.py stops its servers itself; this catches any it could not.
    local pidfile
    for pidfile in "$workdir"/*.pid; do
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "benches/run.sh: kept $workdir"
    else
        rm -rf "$workdir"
    fi
}
trap cleanup EXIT

python3 benches/bench.py "$workdir"
