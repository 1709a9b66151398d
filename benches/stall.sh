#!/usr/bin/env bash
# Stalls at scale: builds release, starts the daemon on a fresh temporary
# database on a free 127.0.0.1 port, runs testgen against it (default
# `500 1000`, or the arguments given), then prints the request latency
# (p50, p99, max), the run time, the samples stored, the database size and
# the daemon's own figures from /metrics, and stops the daemon. See
# "Stalls at scale" in benches/README.md.
#
#   benches/stall.sh                          # testgen 500 1000
#   benches/stall.sh 100 1000                 # any testgen arguments
#   benches/stall.sh 500 1000 --samples 6     # 500,000 servers, fewer samples
#
# Environment: STALL_TIMEOUT (seconds testgen may run, default 900),
# STALL_SKIP_BUILD=1 (use the binaries already built), STALL_KEEP=1 (keep
# the temporary directory), STALL_LOG=FILE (copy the daemon's stderr there),
# STALL_PRELOAD_SERVERS=N (before testgen, store one sample of an hour ago
# for each of N more servers, in batches of 10,000, so a short testgen run
# meets the daemon at a large server count without verifying them all).
# Exit status: testgen's (0 PASSED, 1 FAILED), 2 when the harness could not
# run, 124 when testgen ran out of time.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo curl python3 timeout; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "benches/stall.sh: $tool is missing" >&2
        exit 2
    fi
done

if [ $# -eq 0 ]; then
    set -- 500 1000
fi
timeout_s=${STALL_TIMEOUT:-900}

target_dir=${CARGO_TARGET_DIR:-target}
if [ "${STALL_SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --bin sperform --bin testgen
fi
bin_dir=$(cd "$target_dir/release" && pwd)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/sperform-stall.XXXXXX")
daemon_pid=
cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [ -n "${STALL_LOG:-}" ] && [ -f "$workdir/daemon.log" ]; then
        cp "$workdir/daemon.log" "$STALL_LOG"
    fi
    if [ "${STALL_KEEP:-0}" = 1 ]; then
        echo "benches/stall.sh: kept $workdir"
    else
        rm -rf "$workdir"
    fi
}
trap cleanup EXIT

# A port nobody listens on now; the daemon binds it a moment later.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
db="$workdir/stall.db"

# In the temporary directory, so no Rocket.toml but the environment's applies.
(
    cd "$workdir"
    ROCKET_PROFILE=release ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$port" \
        ROCKET_DATABASE="$db" ROCKET_LOG_LEVEL=critical \
        exec "$bin_dir/sperform" >"$workdir/daemon.log" 2>&1
) &
daemon_pid=$!

for _ in $(seq 1 100); do
    if curl -fsS "$url/health" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "benches/stall.sh: the daemon exited at start-up:" >&2
        cat "$workdir/daemon.log" >&2
        exit 2
    fi
    sleep 0.1
done
if ! curl -fsS "$url/health" >/dev/null 2>&1; then
    echo "benches/stall.sh: the daemon did not answer on $url" >&2
    exit 2
fi

preload=${STALL_PRELOAD_SERVERS:-0}
if [ "$preload" -gt 0 ]; then
    python3 - "$url" "$preload" <<'PRELOAD'
import json, sys, time, urllib.request

url, count = sys.argv[1], int(sys.argv[2])
at = int(time.time()) - 3600
started = time.monotonic()
for first in range(0, count, 10_000):
    body = [
        {"server": f"preload-{i}", "cpu": 10, "ram": 20, "time": at}
        for i in range(first, min(first + 10_000, count))
    ]
    request = urllib.request.Request(
        f"{url}/api/v1/samples",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        if answer.status != 204:
            sys.exit(f"preload: {answer.status} from the daemon")
print(f"preloaded {count} servers in {time.monotonic() - started:.1f} s")
PRELOAD
fi

echo "testgen $* --url $url --quiet (at most ${timeout_s} s)"
status=0
started=$(date +%s.%N)
timeout "$timeout_s" "$bin_dir/testgen" "$@" --url "$url" --quiet >"$workdir/testgen.out" 2>&1 || status=$?
ended=$(date +%s.%N)
cat "$workdir/testgen.out"
if [ "$status" = 124 ]; then
    echo "benches/stall.sh: testgen ran out of time after ${timeout_s} s (STALL_TIMEOUT)" >&2
fi

# The daemon's figures before it stops: after the run, so the scrape is no
# part of what testgen measured.
curl -fsS "$url/metrics" >"$workdir/metrics.txt" || echo "benches/stall.sh: /metrics did not answer" >&2

python3 - "$workdir/testgen.out" "$workdir/metrics.txt" "$db" "$started" "$ended" <<'EOF'
import os, re, sys

testgen_out, metrics_path, db, started, ended = sys.argv[1:6]
text = open(testgen_out).read()

def line(prefix):
    for l in text.splitlines():
        if l.startswith(prefix):
            return l[len(prefix):].strip()
    return "(not reported)"

metrics = {}
buckets = {}
if os.path.exists(metrics_path):
    for l in open(metrics_path):
        if l.startswith("#") or not l.strip():
            continue
        name, _, value = l.rpartition(" ")
        metrics[name] = float(value)
        m = re.match(r'(\w+)_bucket\{(.*)le="([^"]+)"\}', name)
        if m:
            buckets.setdefault((m.group(1), m.group(2)), []).append((m.group(3), float(value)))

def histogram(family, labels=""):
    # Cumulative buckets: report the count, the mean and the bucket the
    # slowest observation fell in.
    rows = buckets.get((family, labels))
    if not rows:
        return "(not in /metrics)"
    suffix = "{" + labels.rstrip(",") + "}" if labels else ""
    count = metrics.get(f"{family}_count{suffix}", 0)
    total = metrics.get(f"{family}_sum{suffix}", 0)
    previous, slowest = 0.0, None
    over = []
    for i, (le, cumulative) in enumerate(rows):
        if cumulative > previous:
            low = rows[i - 1][0] if i else "0"
            slowest = (low, le)
        previous = cumulative
    for limit in ("0.1", "0.25", "1", "2.5"):
        below = next((c for le, c in rows if le == limit), None)
        if below is not None:
            over.append(f"> {limit} s: {int(count - below)}")
    mean = total / count * 1000 if count else 0
    where = f"{slowest[0]} s < slowest <= {slowest[1]} s" if slowest else "none"
    return f"{int(count)}, mean {mean:.2f} ms, {where}; " + ", ".join(over)

size = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
stored = metrics.get("sperform_samples_ingested_total")
print()
print("stall summary")
print(f"  testgen      {line('servers')}")
print(f"  latency      {line('latency')}")
print(f"  send time    {line('wall time')} ({line('throughput')})")
print(f"  whole run    {float(ended) - float(started):.1f} s including verification ({line('verified')})")
print(f"  samples      {line('sent')}; daemon committed {int(stored) if stored is not None else '?'}")
db_bytes = os.path.getsize(db) if os.path.exists(db) else 0
wal_bytes = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
per = f", {size / stored:.1f} bytes per sample" if stored else ""
print(f"  database     {db_bytes / 2**20:.1f} MiB + WAL {wal_bytes / 2**20:.1f} MiB{per}")
print(f"  servers      {int(metrics.get('sperform_servers', 0))} in the database")
print(f"  transactions {int(metrics.get('sperform_write_transactions_total', 0))} committed, "
      f"{int(metrics.get('sperform_write_transactions_failed_total', 0))} failed")
print(f"  commit time  {histogram('sperform_commit_duration_seconds')}")
for (family, labels) in sorted(buckets):
    if family == "sperform_ingest_request_duration_seconds":
        print(f"  daemon {labels.rstrip(',')}: {histogram(family, labels)}")
print(f"  result       {text.strip().splitlines()[-1] if text.strip() else '(no output)'}")
EOF

kill "$daemon_pid" 2>/dev/null || true
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=
exit "$status"
