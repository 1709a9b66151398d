#!/usr/bin/env python3
"""Benchmark driver; run it through benches/run.sh (see benches/README.md).

Usage: bench.py WORKDIR. WORKDIR is an empty scratch directory (databases,
request bodies, logs); the binaries come from BENCH_BIN_DIR.

Phases, all against 127.0.0.1 only:
  1. data: W1 and 1/s-rate request bodies; the SQLite insert ceiling.
  2. ceiling server (bench-ceiling serve): the load generator's own ceiling
     on GET /health, then W1, W2 and W3 against routes that store nothing.
  3. the daemon on a fresh database: GET /health, W1 + checks, W2 + checks,
     W3 + checks, the 1/s-rate backfill + checks, W3 on the 1/s servers +
     checks; peak RSS (VmHWM) and bytes on disk after each phase.
  4. a Markdown table on stdout and a JSON file (BENCH_OUT).

With BENCH_AB="a=PATH,b=PATH" phase 3 runs for each daemon binary named,
BENCH_AB_ROUNDS times (each round in the opposite order of the one before,
so a drift in the machine's speed weighs on both alike), without the
ceilings; the table then compares the builds.

Exit status: 0 when every check passed (targets may be missed: FAIL marks in
the table), 1 when a check failed (wrong answers, lost or extra samples,
non-2xx answers, socket errors, the daemon exiting), 2 when the harness
itself could not run.
"""

import datetime
import glob
import json
import os
import random
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LUA = os.path.join(HERE, "wrk", "bench.lua")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The targets. Not configurable: the table judges against these.
TARGET_W1_SAMPLES_S = 1_000_000
TARGET_W2_SAMPLES_S = 50_000
TARGET_W2_P99_MS = 10.0
TARGET_W3_QUERIES_S = 16_000
TARGET_W3_P99_MS = 1.0
TARGET_RSS_MIB = 100.0
TARGET_BYTES_PER_SAMPLE = 40.0


def env_int(name, default):
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        sys.exit(f"bench: {name} must be an integer, got {value!r}")


class Config:
    def __init__(self):
        self.duration = env_int("BENCH_DURATION", 10)
        self.lg_duration = env_int("BENCH_LG_DURATION", 5)
        self.backfill_timeout = env_int("BENCH_BACKFILL_TIMEOUT", 120)
        self.pause = env_int("BENCH_PAUSE", 1)
        self.threads = env_int("BENCH_THREADS", 2)
        self.batch = env_int("BENCH_BATCH", 5000)
        self.w1_servers = env_int("BENCH_W1_SERVERS", 1000)
        self.w1_conns = env_int("BENCH_W1_CONNS", 4)
        self.w2_servers = env_int("BENCH_W2_SERVERS", 10_000)
        self.w2_conns = env_int("BENCH_W2_CONNS", 64)
        self.w3_conns = env_int("BENCH_W3_CONNS", 16)
        self.rate_servers = env_int("BENCH_RATE_SERVERS", 100)
        self.rate_hours = env_int("BENCH_RATE_HOURS", 24)
        self.check_servers = env_int("BENCH_CHECK_SERVERS", 5)
        self.check_timeout = env_int("BENCH_CHECK_TIMEOUT", 60)
        self.settle_timeout = env_int("BENCH_SETTLE_TIMEOUT", 30)
        self.ceiling_cache_kib = env_int("BENCH_CEILING_CACHE_KIB", 32 * 1024)
        self.retention = os.environ.get("BENCH_RETENTION", "7d")
        self.write_queue = os.environ.get("BENCH_WRITE_QUEUE", "")
        self.out = os.environ.get(
            "BENCH_OUT", os.path.join(ROOT, "target", "bench", "results.json")
        )
        self.bin_dir = os.environ.get("BENCH_BIN_DIR", os.path.join(ROOT, "target", "release"))
        self.ab = parse_ab(os.environ.get("BENCH_AB", ""))
        self.ab_rounds = env_int("BENCH_AB_ROUNDS", 2)

    def as_dict(self):
        return {k: v for k, v in vars(self).items()}


def parse_ab(value):
    """BENCH_AB: `label=path` pairs, comma-separated, in the first round's order."""
    builds = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        label, sep, path = part.partition("=")
        if not sep or not label or not path:
            sys.exit(f"bench: BENCH_AB wants label=path pairs separated by commas, got {part!r}")
        builds.append((label, os.path.abspath(path)))
    return builds


class HarnessError(Exception):
    """The harness could not run (a server did not start, wrk failed, ...)."""


# ---------------------------------------------------------------- data sets


class DataSet:
    """Mirrors DataSet in benches/ceiling.rs: server i is `{prefix}{i:04}`;
    point t (of `points`) is at `at - (points - 1 - t) * step`; cpu and ram
    are multiples of 0.25; entries are in time order (entry e = point
    e // servers of server e % servers), cut into batches of `batch`."""

    def __init__(self, prefix, servers, points, step, at, batch):
        self.prefix, self.servers, self.points = prefix, servers, points
        self.step, self.at, self.batch = step, at, batch
        self.files = -(-servers * points // batch)
        self.acked = set(range(self.files))  # batches answered 2xx

    def args(self):
        return [
            "--prefix", self.prefix, "--servers", str(self.servers),
            "--points", str(self.points), "--step", str(self.step), "--at", str(self.at),
        ]

    def name(self, i):
        return f"{self.prefix}{i:04}"

    def time(self, t):
        return self.at - (self.points - 1 - t) * self.step

    def cpu(self, i, t):
        return ((37 * i + 11 * t) % 400) / 4

    def ram(self, i, t):
        return ((13 * i + 7 * t) % 401) / 4

    def samples(self):
        """Samples in the batches answered 2xx."""
        total = self.servers * self.points
        return sum(min(self.batch, total - k * self.batch) for k in self.acked)

    def complete(self):
        return len(self.acked) == self.files

    def present(self, i, t):
        return (t * self.servers + i) // self.batch in self.acked

    def count(self, i):
        if self.complete():
            return self.points
        return sum(1 for t in range(self.points) if self.present(i, t))

    def point_of(self, seconds):
        """The point index at Unix `seconds`, rounded down."""
        return (seconds - self.time(0)) // self.step

    def buckets(self, i, at, width, count):
        """The daemon's buckets for server i: `count` buckets `width` seconds
        wide, the last holding `at`, counting samples at or before `at`."""
        last = at - at % width
        out = []
        for k in range(count):
            start = last - (count - 1 - k) * width
            end = min(start + width - 1, at)
            lo = max(0, -(-(start - self.time(0)) // self.step))
            hi = min(self.points - 1, self.point_of(end)) if end >= self.time(0) else -1
            cpus, rams = [], []
            for t in range(lo, hi + 1):
                if self.present(i, t):
                    cpus.append(self.cpu(i, t))
                    rams.append(self.ram(i, t))
            out.append({
                "start": iso(start),
                "cpu": sum(cpus) / len(cpus) if cpus else None,
                "ram": sum(rams) / len(rams) if rams else None,
                "cpu_min": min(cpus) if cpus else None,
                "cpu_max": max(cpus) if cpus else None,
                "ram_min": min(rams) if rams else None,
                "ram_max": max(rams) if rams else None,
                "samples": len(cpus),
            })
        return out

    def mark_acked(self, per_thread, threads):
        """Batches answered, from the files mode's per-thread counts (thread
        k sends files k, k + threads, ...), when every answer was 2xx."""
        acked = set()
        for thread in per_thread:
            for n in range(int(thread["answered"])):
                acked.add(int(thread["id"]) + n * threads)
        self.acked = acked


def iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


# ---------------------------------------------------------------- processes


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, timeout=300):
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def get_json(url, timeout=300):
    status, body = http("GET", url, timeout)
    if status != 200:
        raise HarnessError(f"GET {url}: {status} {body[:200]!r}")
    return json.loads(body)


def proc_status(pid):
    """VmHWM and VmRSS of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user, nice, system, steal: time processes ran. Interrupt time is left
    # out: on loopback most of it serves the benchmark's own traffic.
    return (fields[0] + fields[1] + fields[2] + fields[7]) / CLK_TCK


class Server:
    """A server process (daemon or ceiling) on a free 127.0.0.1 port."""

    def __init__(self, name, argv, workdir, extra_env):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKET_")}
        env.update({
            "ROCKET_ADDRESS": "127.0.0.1",
            "ROCKET_PORT": str(self.port),
            "ROCKET_LOG_LEVEL": "critical",
            "ROCKET_CONFIG": os.path.join(workdir, "no-Rocket.toml"),
        })
        env.update(extra_env)
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.pidfile = os.path.join(workdir, f"{name}.pid")
        with open(self.pidfile, "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"{name} exited at start-up:\n{self.log_tail()}")
            try:
                if http("GET", self.url + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise HarnessError(f"{name} did not answer /health within 60 s")
            time.sleep(0.1)

    def log_tail(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def memory(self):
        return proc_status(self.proc.pid)

    def cpu_s(self):
        return proc_cpu_s(self.proc.pid)

    def stop(self):
        self.died = self.proc.poll() is not None
        if not self.died:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.exit_status = self.proc.returncode
        if os.path.exists(self.pidfile):
            os.remove(self.pidfile)


def run_wrk(workdir, name, server, mode, mode_args, threads, conns, seconds, timeout_s):
    """Runs wrk with benches/wrk/bench.lua; returns its BENCH_RESULT plus the
    CPU time the server, wrk and everything else on the machine used."""
    markers = os.path.join(workdir, f"done-{name}")
    # Markers left by an earlier run of the same name (A/B runs repeat
    # names) would tell the threads that the others are done.
    for stale in glob.glob(glob.escape(markers) + ".*"):
        os.remove(stale)
    limit = seconds + 30
    argv = [
        "wrk", "-t", str(threads), "-c", str(conns), "-d", f"{limit}s",
        "--timeout", f"{timeout_s}s", "-s", LUA, server.url,
        "--", mode, markers, str(threads), str(seconds), *mode_args,
    ]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, server_cpu = machine_busy_s(), server.cpu_s()
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limit + 30)
    except subprocess.TimeoutExpired as err:
        raise HarnessError(f"wrk ({name}) did not end within {limit + 30} s") from err
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    server_cpu = server.cpu_s() - server_cpu
    busy = machine_busy_s() - busy
    lines = [l for l in done.stdout.splitlines() if l.startswith("BENCH_RESULT ")]
    if done.returncode != 0 or not lines:
        raise HarnessError(
            f"wrk ({name}) failed, status {done.returncode}:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
        )
    if done.stderr.strip():
        raise HarnessError(f"wrk ({name}) script error:\n{done.stderr[-1500:]}")
    result = json.loads(lines[-1][len("BENCH_RESULT "):])
    result["wall_s"] = wall
    result["cpu_s"] = {
        "server": server_cpu, "wrk": wrk_cpu,
        "other": max(0.0, busy - server_cpu - wrk_cpu), "capacity": wall * os.cpu_count(),
    }
    result["rate"] = result["answered"] / result["window_s"] if result["window_s"] > 0 else 0.0
    result["ok_2xx"] = sum(n for s, n in result["statuses"].items() if s.startswith("2"))
    result["non_2xx"] = result["answered"] - result["ok_2xx"]
    result["p99_ms"] = result["latency_us"]["p99"] / 1000
    errors = result["socket_errors"]
    result["socket_error_count"] = errors["connect"] + errors["read"] + errors["write"]
    result["errors"] = result["non_2xx"] + result["socket_error_count"] + errors["timeout"]
    return result


# ---------------------------------------------------------------- the run


class Bench:
    def __init__(self, workdir, cfg):
        self.dir, self.cfg = workdir, cfg
        self.runs, self.checks, self.phases, self.notes = {}, [], [], []
        self.check_timings = []
        self.settles = {}
        self.at = int(time.time()) // 60 * 60
        self.w1 = DataSet("bf-", cfg.w1_servers, 1440, 60, self.at, cfg.batch)
        self.rate = DataSet("rate-", cfg.rate_servers, cfg.rate_hours * 3600, 1, self.at, cfg.batch)
        self.insert_ceiling = None
        self.ceiling_rss_kib = None
        self.load_sizes = {}

    def log(self, message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def check(self, name, ok, detail=""):
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        self.log(f"  {'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")

    def binary(self, name):
        path = os.path.abspath(os.path.join(self.cfg.bin_dir, name))
        if not os.access(path, os.X_OK):
            raise HarnessError(f"{path} is missing; build it first (benches/run.sh does)")
        return path

    def settle(self, server, key):
        """Waits (at most BENCH_SETTLE_TIMEOUT) until the server is idle, so
        that work left over from the previous phase (checkpoints, a check's
        query) does not count against the next one; records the wait."""
        started = time.monotonic()
        if self.cfg.settle_timeout <= 0:
            return
        while time.monotonic() - started < self.cfg.settle_timeout:
            before = server.cpu_s()
            time.sleep(0.5)
            if server.cpu_s() - before < 0.025:
                break
        else:
            self.notes.append(f"{key}: the server was still busy after {self.cfg.settle_timeout} s; started anyway")
        self.settles[key] = time.monotonic() - started

    def wrk(self, key, server, mode, mode_args, conns, seconds, threads=None, timeout_s=5):
        threads = threads or min(self.cfg.threads, conns)
        time.sleep(self.cfg.pause)
        self.settle(server, key)
        result = run_wrk(self.dir, key, server, mode, mode_args, threads, conns, seconds, timeout_s)
        result.update({"mode": mode, "connections": conns, "threads": threads})
        self.runs[key] = result
        cpu = result["cpu_s"]
        other = cpu["other"] / cpu["capacity"] if cpu["capacity"] else 0
        unit = "batches" if mode == "files" else "requests"
        self.log(
            f"  {key}: {result['rate']:,.0f} {unit}/s over {result['window_s']:.2f} s, "
            f"p99 {result['p99_ms']:.2f} ms, statuses {result['statuses']}, "
            f"cpu server {cpu['server']:.1f} s wrk {cpu['wrk']:.1f} s other {cpu['other']:.1f} s"
        )
        if other > 0.10:
            self.notes.append(
                f"{key}: other processes used {other:.0%} of the machine's CPU during the run"
            )
        return result

    # ------------------------------------------------------------ phases

    def prepare(self):
        self.log("data: request bodies and the SQLite insert ceiling")
        ceiling = self.binary("bench-ceiling")
        for data, sub in ((self.w1, "w1"), (self.rate, "rate")):
            out = subprocess.run(
                [ceiling, "bodies", "--out", os.path.join(self.dir, sub), "--batch",
                 str(self.cfg.batch), *data.args()],
                capture_output=True, text=True, check=True,
            )
            self.log(f"  {sub} bodies: {out.stdout.strip()}")
        if self.cfg.ab:
            return
        db = os.path.join(self.dir, "insert-ceiling.db")
        out = subprocess.run(
            [ceiling, "insert", "--db", db, "--migrations", os.path.join(ROOT, "migrations"),
             "--cache-kib", str(self.cfg.ceiling_cache_kib), *self.w1.args()],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise HarnessError(f"insert ceiling failed: {out.stderr}")
        self.insert_ceiling = json.loads(out.stdout)
        self.log(f"  insert ceiling: {self.insert_ceiling['rows_per_s']:,.0f} rows/s")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)

    def ceiling_phase(self):
        self.log("ceiling server: bench-ceiling serve")
        server = Server("ceiling", [self.binary("bench-ceiling"), "serve"], self.dir, {})
        try:
            cfg = self.cfg
            self.load_sizes["ceiling"] = len(http("GET", f"{server.url}/api/v1/servers/{self.w1.name(0)}/load?at={self.at}", cfg.check_timeout)[1])
            self.wrk("lg_ceiling", server, "health", [], cfg.w2_conns, cfg.lg_duration)
            self.wrk("ceiling_w1", server, "files",
                     [os.path.join(self.dir, "w1"), str(self.w1.files)],
                     cfg.w1_conns, cfg.backfill_timeout, threads=cfg.w1_conns, timeout_s=30)
            self.runs["ceiling_w1"]["samples_s"] = self.runs["ceiling_w1"]["ok_2xx"] * cfg.batch / self.runs["ceiling_w1"]["window_s"]
            self.wrk("ceiling_w2", server, "single", ["node-", str(cfg.w2_servers)],
                     cfg.w2_conns, cfg.duration)
            self.wrk("ceiling_w3", server, "load", [self.w1.prefix, str(self.w1.servers), str(self.at)],
                     cfg.w3_conns, cfg.duration)
            self.ceiling_rss_kib = server.memory()["VmHWM"]
        finally:
            server.stop()

    def daemon_phase(self, binary=None, db_name="sperform.db"):
        cfg = self.cfg
        binary = binary or self.binary("sperform")
        self.log(f"daemon: {binary} on a fresh database")
        self.db = os.path.join(self.dir, db_name)
        extra = {"ROCKET_DATABASE": self.db, "ROCKET_RETENTION": cfg.retention}
        if cfg.write_queue:
            extra["ROCKET_WRITE_QUEUE"] = cfg.write_queue
        daemon = Server("daemon", [binary], self.dir, extra)
        self.daemon = daemon
        try:
            self.record_phase("start")
            self.wrk("daemon_health", daemon, "health", [], cfg.w2_conns, cfg.lg_duration)

            self.log("W1: backfill through POST /api/v1/samples")
            self.backfill("w1", daemon, self.w1, "w1")
            self.verify_backfill(daemon, self.w1, "W1", self.runs["w1"])
            self.record_phase("after W1")

            self.log("W2: one sample per request")
            w2 = self.wrk("w2", daemon, "single", ["node-", str(cfg.w2_servers)], cfg.w2_conns, cfg.duration)
            self.verify_w2(daemon, w2)
            self.record_phase("after W2")

            self.log("W3: one server's load after W1")
            sample = self.fetch("W3", f"/api/v1/servers/{self.w1.name(0)}/load?at={self.at}")
            self.load_sizes["daemon"] = len(json.dumps(sample, separators=(",", ":"))) if sample else None
            w3 = self.wrk("w3", daemon, "load", [self.w1.prefix, str(self.w1.servers), str(self.at)],
                          cfg.w3_conns, cfg.duration)
            self.verify_reads("W3", w3)
            self.record_phase("after W3")

            self.log("1/s rate case: backfill, then W3 on those servers")
            self.backfill("rate_backfill", daemon, self.rate, "rate")
            self.verify_backfill(daemon, self.rate, "1/s backfill", self.runs["rate_backfill"])
            self.record_phase("after 1/s backfill")
            w3r = self.wrk("w3_rate", daemon, "load",
                           [self.rate.prefix, str(self.rate.servers), str(self.at)],
                           cfg.w3_conns, cfg.duration)
            self.verify_reads("W3 at 1/s", w3r)
            self.record_phase("after W3 at 1/s")
            self.check("daemon still running", daemon.alive())
        finally:
            daemon.stop()
            if daemon.exit_status != 0 and not daemon.died:
                self.notes.append(
                    f"the daemon exited with status {daemon.exit_status} when stopped with SIGTERM; "
                    f"its log ends: {daemon.log_tail()[-300:]!r}"
                )

    def ab_phase(self):
        """Runs the daemon phase for each build of BENCH_AB, round after
        round, reversing the order every round; keeps each run's figures."""
        self.ab_runs = []
        builds = list(self.cfg.ab)
        for n in range(self.cfg.ab_rounds):
            for label, binary in builds:
                self.log(f"A/B round {n + 1}: {label}")
                self.runs, self.phases = {}, []
                self.expected_total, self.observed_total = 0, None
                for data in (self.w1, self.rate):
                    data.acked = set(range(data.files))
                checks_before = len(self.checks)
                db_name = f"ab-{n + 1}-{label}.db"
                try:
                    self.daemon_phase(binary, db_name)
                finally:
                    for suffix in ("", "-wal", "-shm"):
                        path = os.path.join(self.dir, db_name + suffix)
                        if os.path.exists(path):
                            os.remove(path)
                for check in self.checks[checks_before:]:
                    check["check"] = f"{label} round {n + 1}: {check['check']}"
                self.ab_runs.append({
                    "label": label, "round": n + 1, "binary": binary,
                    "figures": {row["key"]: row["value"] for row in self.rows() if row.get("key")},
                    "runs": self.runs, "phases": self.phases,
                })
            builds.reverse()

    def ab_table(self):
        """One line per figure: each build's runs, their means, and the ratio
        of the last build's mean to the first's."""
        labels = [label for label, _ in self.cfg.ab]
        figures = [
            ("w1", "W1 backfill, samples/s", "{:,.0f}"),
            ("w2", "W2 single samples, samples/s", "{:,.0f}"),
            ("w2_p99", "W2 p99, ms", "{:,.2f}"),
            ("w3", "W3 after W1 (1/min), queries/s", "{:,.0f}"),
            ("w3_p99", "W3 after W1 p99, ms", "{:,.2f}"),
            ("rate_backfill", "1/s backfill, samples/s", "{:,.0f}"),
            ("w3_rate", "W3 at 1/s, queries/s", "{:,.0f}"),
            ("w3_rate_p99", "W3 at 1/s p99, ms", "{:,.2f}"),
            ("rss", "peak RSS, MiB", "{:,.1f}"),
            ("bps", "bytes per sample", "{:,.1f}"),
        ]
        head = " | ".join(f"{label} (each round)" for label in labels)
        lines = [f"| figure | {head} | {labels[-1]} / {labels[0]} (means) |",
                 "|---|" + "---|" * len(labels) + "---|"]
        for key, name, spec in figures:
            cells, means = [], []
            for label in labels:
                values = [r["figures"].get(key) for r in getattr(self, "ab_runs", []) if r["label"] == label]
                values = [v for v in values if v is not None]
                cells.append(", ".join(spec.format(v) for v in values) or "—")
                means.append(sum(values) / len(values) if values else None)
            ratio = f"{means[-1] / means[0]:.2f}×" if means[0] and means[-1] is not None else "—"
            lines.append(f"| {name} | {' | '.join(cells)} | {ratio} |")
        return "\n".join(lines)

    def backfill(self, key, daemon, data, subdir):
        cfg = self.cfg
        result = self.wrk(key, daemon, "files", [os.path.join(self.dir, subdir), str(data.files)],
                          cfg.w1_conns, cfg.backfill_timeout, threads=cfg.w1_conns, timeout_s=30)
        data.mark_acked(result["per_thread"], result["threads"])
        result["batches"] = data.files
        result["complete"] = data.complete()
        result["samples_s"] = result["ok_2xx"] * cfg.batch / result["window_s"] if result["window_s"] else 0
        self.log(f"  {key}: {result['samples_s']:,.0f} samples/s, {result['answered']} of {data.files} batches answered")
        if not data.complete():
            self.notes.append(
                f"{key}: only {result['answered']} of {data.files} batches sent within "
                f"BENCH_BACKFILL_TIMEOUT={cfg.backfill_timeout} s; checks use the batches answered"
            )

    # ------------------------------------------------------------ checks

    def record_phase(self, name):
        mem = self.daemon.memory()
        files = {}
        for suffix in ("", "-wal", "-shm"):
            path = self.db + suffix
            files["db" + suffix] = os.path.getsize(path) if os.path.exists(path) else 0
        self.phases.append({"phase": name, "rss_kib": mem["VmRSS"], "hwm_kib": mem["VmHWM"],
                            "bytes": files, "samples": self.expected_total})
        self.log(f"  {name}: RSS {mem['VmRSS'] / 1024:.1f} MiB, peak {mem['VmHWM'] / 1024:.1f} MiB, "
                 f"db {files['db'] / 2**20:.1f} MiB + wal {files['db-wal'] / 2**20:.1f} MiB")

    # Samples that must be stored: those of every 2xx answer so far.
    expected_total = 0
    # The total GET /api/v1/servers reported last, if it answered.
    observed_total = None

    def fetch(self, label, path):
        """GET path as JSON within BENCH_CHECK_TIMEOUT; a failure is a failed check."""
        started = time.monotonic()
        try:
            body = get_json(f"{self.daemon.url}{path}", timeout=self.cfg.check_timeout)
        except (OSError, HarnessError, ValueError) as err:
            self.check(f"{label}: GET {path} answers within {self.cfg.check_timeout} s", False,
                       f"{type(err).__name__}: {err} after {time.monotonic() - started:.1f} s")
            return None
        self.check_timings.append({"check": label, "path": path, "seconds": time.monotonic() - started})
        return body

    def servers(self, label):
        listing = self.fetch(label, "/api/v1/servers")
        if listing is not None:
            self.observed_total = sum(s["samples"] for s in listing)
        return listing

    def check_db_count(self, label):
        """Counts the samples in the database file directly (read-only), so a
        loss shows even when the API cannot list the servers."""
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
            try:
                (count,) = conn.execute("SELECT count(*) FROM samples").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as err:
            self.notes.append(f"{label}: could not count the samples in the database file: {err}")
            return
        self.check(f"{label}: samples in the database file (read directly) = samples acknowledged",
                   count == self.expected_total, f"{count} stored, {self.expected_total} acknowledged")

    def verify_backfill(self, daemon, data, label, result):
        self.check(f"{label}: every batch answered 2xx", result["non_2xx"] == 0 and result["socket_error_count"] == 0,
                   f"statuses {result['statuses']}, socket errors {result['socket_errors']}")
        self.check(f"{label}: all {data.files} batches sent", data.complete(),
                   f"{result['answered']} answered")
        self.expected_total += data.samples()
        listing = self.servers(label)
        if listing is not None:
            by_name = {s["name"]: s for s in listing}
            mine = [s for s in listing if s["name"].startswith(data.prefix)]
            expected_servers = data.servers if data.complete() else sum(1 for i in range(data.servers) if data.count(i))
            self.check(f"{label}: {expected_servers} servers listed", len(mine) == expected_servers, f"found {len(mine)}")
            wrong = []
            for i in range(data.servers):
                entry, want = by_name.get(data.name(i)), data.count(i)
                if want == 0:
                    continue
                got = entry["samples"] if entry else None
                if got != want:
                    wrong.append(f"{data.name(i)}: {got} samples, expected {want}")
                elif data.complete() and (entry["first_seen"], entry["last_seen"]) != (iso(data.time(0)), iso(data.at)):
                    wrong.append(f"{data.name(i)}: first/last seen {entry['first_seen']} {entry['last_seen']}")
            self.check(f"{label}: samples per server ({data.points} each when complete) and first/last seen",
                       not wrong, "; ".join(wrong[:3]))
            self.check(f"{label}: total samples listed = samples acknowledged",
                       self.observed_total == self.expected_total,
                       f"listed {self.observed_total}, acknowledged {self.expected_total}")
        self.check_db_count(label)
        middle = range(1, max(1, data.servers - 1))
        extra = random.Random(42).sample(middle, max(0, min(len(middle), self.cfg.check_servers - 2)))
        picks = sorted({0, data.servers - 1, *extra})
        bad = []
        for i in picks:
            body = self.fetch(label, f"/api/v1/servers/{data.name(i)}/load?at={self.at}")
            if body is None:
                continue
            want = {"server": data.name(i), "at": iso(self.at),
                    "by_minute": data.buckets(i, self.at, 60, 60),
                    "by_hour": data.buckets(i, self.at, 3600, 24)}
            if body != want:
                for key in ("server", "at", "by_minute", "by_hour"):
                    if body.get(key) != want[key]:
                        if isinstance(want[key], list) and isinstance(body.get(key), list):
                            diff = next((f"{key}[{n}] got {g} want {w}" for n, (g, w) in
                                         enumerate(zip(body[key], want[key])) if g != w),
                                        f"{key}: {len(body[key])} buckets")
                        else:
                            diff = f"{key} got {body.get(key)!r} want {want[key]!r}"
                        bad.append(f"{data.name(i)}: {diff}")
                        break
        self.check(f"{label}: load answers of {len(picks)} servers exactly as computed",
                   not bad, "; ".join(bad[:2]))

    def verify_w2(self, daemon, w2):
        self.check("W2: zero non-2xx answers and socket errors",
                   w2["non_2xx"] == 0 and w2["socket_error_count"] == 0,
                   f"statuses {w2['statuses']}, socket errors {w2['socket_errors']}")
        self.check("W2: every request sent was answered (drained before stopping)",
                   w2["sent"] == w2["answered"] and w2["threads_finished"] == w2["threads"],
                   f"sent {w2['sent']}, answered {w2['answered']}")
        before = self.observed_total if self.observed_total is not None else self.expected_total
        self.expected_total += w2["ok_2xx"]
        if self.servers("W2") is not None:
            self.check("W2: samples listed grew by exactly the 2xx answers",
                       self.observed_total - before == w2["ok_2xx"],
                       f"grew by {self.observed_total - before}, 2xx {w2['ok_2xx']}")
        self.check_db_count("W2")

    def verify_reads(self, label, result):
        self.check(f"{label}: only 200 answers, no socket errors",
                   set(result["statuses"]) == {"200"} and result["socket_error_count"] == 0,
                   f"statuses {result['statuses']}, socket errors {result['socket_errors']}")

    # ------------------------------------------------------------ report

    def rows(self):
        r, ins = self.runs, self.insert_ceiling

        def row(workload, figure, value, unit, target, ceiling, higher_is_better, fmt="{:,.0f}", key=None):
            if target is None:
                verdict = "info"
            elif value is None:
                verdict = "n/a"
            else:
                verdict = "PASS" if (value >= target if higher_is_better else value <= target) else "FAIL"
            ratio = value / ceiling if value is not None and ceiling else None
            return {
                "workload": workload, "figure": figure, "value": value, "unit": unit,
                "target": target, "target_op": ">=" if higher_is_better else "<=",
                "ceiling": ceiling, "ratio": ratio, "verdict": verdict, "fmt": fmt, "key": key,
            }

        get = lambda key, field: r[key][field] if key in r else None
        hwm = max((p["hwm_kib"] for p in self.phases), default=None)
        final = self.phases[-1] if self.phases else None
        bps = ((final["bytes"]["db"] + final["bytes"]["db-wal"]) / final["samples"]
               if final and final["samples"] else None)
        ceiling_bps = ins["bytes_after_checkpoint"] / ins["rows"] if ins else None
        ms = "{:,.2f}"
        return [
            row("load generator", "wrk → trivial GET /health, req/s", get("lg_ceiling", "rate"), "req/s", None, None, True),
            row("daemon GET /health", "req/s", get("daemon_health", "rate"), "req/s", None, get("lg_ceiling", "rate"), True),
            row("W1 backfill", "samples/s (vs HTTP ceiling)", get("w1", "samples_s"), "samples/s", TARGET_W1_SAMPLES_S, get("ceiling_w1", "samples_s"), True, key="w1"),
            row("W1 backfill", "samples/s (vs SQLite insert ceiling)", get("w1", "samples_s"), "samples/s", TARGET_W1_SAMPLES_S, ins and ins["rows_per_s"], True),
            row("W2 single samples", "samples/s", get("w2", "rate"), "samples/s", TARGET_W2_SAMPLES_S, get("ceiling_w2", "rate"), True, key="w2"),
            row("W2 single samples", "p99 latency, ms", get("w2", "p99_ms"), "ms", TARGET_W2_P99_MS, get("ceiling_w2", "p99_ms"), False, ms, key="w2_p99"),
            row("W2 single samples", "errors", get("w2", "errors"), "", 0, None, False),
            row("W3 load after W1", "queries/s", get("w3", "rate"), "queries/s", TARGET_W3_QUERIES_S, get("ceiling_w3", "rate"), True, key="w3"),
            row("W3 load after W1", "p99 latency, ms", get("w3", "p99_ms"), "ms", TARGET_W3_P99_MS, get("ceiling_w3", "p99_ms"), False, ms, key="w3_p99"),
            row("1/s rate backfill", "samples/s", get("rate_backfill", "samples_s"), "samples/s", None, get("ceiling_w1", "samples_s"), True, key="rate_backfill"),
            row("W3 load at 1/s rate", "queries/s", get("w3_rate", "rate"), "queries/s", TARGET_W3_QUERIES_S, get("ceiling_w3", "rate"), True, key="w3_rate"),
            row("W3 load at 1/s rate", "p99 latency, ms", get("w3_rate", "p99_ms"), "ms", TARGET_W3_P99_MS, get("ceiling_w3", "p99_ms"), False, ms, key="w3_rate_p99"),
            row("memory", "daemon peak RSS (VmHWM), MiB", hwm and hwm / 1024, "MiB", TARGET_RSS_MIB, self.ceiling_rss_kib and self.ceiling_rss_kib / 1024, False, "{:,.1f}", key="rss"),
            row("disk", "(db + wal) bytes per sample", bps, "bytes", TARGET_BYTES_PER_SAMPLE, ceiling_bps, False, "{:,.1f}", key="bps"),
        ]

    def table(self, rows):
        def fmt(value, spec):
            return "—" if value is None else spec.format(value)

        lines = [
            "| workload | figure | target | ceiling | ratio to ceiling | pass/fail |",
            "|---|---|---|---|---|---|",
        ]
        for row in rows:
            if row["target"] is None:
                target = "—"
            elif row["target"] == 0:
                target = "= 0"
            else:
                target = f"{row['target_op']} {fmt(row['target'], row['fmt'])}"
            ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}×"
            lines.append(
                f"| {row['workload']} | {row['figure']}: **{fmt(row['value'], row['fmt'])}** | {target} "
                f"| {fmt(row['ceiling'], row['fmt'])} | {ratio} | {row['verdict']} |"
            )
        return "\n".join(lines)


def git_describe():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    workdir, cfg = sys.argv[1], Config()
    bench = Bench(workdir, cfg)
    started = time.monotonic()
    load_before = os.getloadavg()
    failure = None
    try:
        bench.prepare()
        if cfg.ab:
            bench.ab_phase()
        else:
            bench.ceiling_phase()
            bench.daemon_phase()
    except (HarnessError, OSError, subprocess.CalledProcessError) as err:
        failure = f"{type(err).__name__}: {err}"
        daemon = getattr(bench, "daemon", None)
        if daemon is not None and getattr(daemon, "died", not daemon.alive()):
            # Not the harness's failure: the daemon stopped under load.
            bench.check("daemon still running", False,
                        f"exited with status {daemon.proc.returncode}; its log ends:\n{daemon.log_tail()}")
        bench.log(f"harness error: {failure}")
    except KeyboardInterrupt:
        failure = "interrupted"
    elapsed = time.monotonic() - started
    rows = bench.rows()
    failed_checks = [c for c in bench.checks if not c["ok"]]
    results = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "revision": git_describe(),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "config": cfg.as_dict(),
        "reference_at": bench.at,
        "elapsed_s": elapsed,
        "rows": [{k: v for k, v in row.items() if k != "fmt"} for row in rows],
        "checks": bench.checks,
        "phases": bench.phases,
        "runs": bench.runs,
        "insert_ceiling": bench.insert_ceiling,
        "load_answer_bytes": bench.load_sizes,
        "check_timings": bench.check_timings,
        "settle_s": bench.settles,
        "notes": bench.notes,
        "harness_error": failure,
        "ab": getattr(bench, "ab_runs", None),
    }
    os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
    with open(cfg.out, "w") as f:
        json.dump(results, f, indent=2)
    print()
    print(bench.ab_table() if cfg.ab else bench.table(rows))
    print()
    print(f"checks: {len(bench.checks) - len(failed_checks)} of {len(bench.checks)} passed; "
          f"run took {elapsed:.0f} s; load average before {load_before[0]:.2f}; results in {cfg.out}")
    for note in bench.notes:
        print(f"note: {note}")
    for c in failed_checks:
        print(f"CHECK FAILED: {c['check']}: {c['detail']}")
    if failure:
        print(f"HARNESS ERROR: {failure}")
    if failed_checks:
        return 1
    return 2 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
