#!/usr/bin/env python3
"""The scale envelope: one log of N events, every figure beside a raw limit measured in the same run.

    python scripts/bench_scale.py                    # N = 1,000,000 (tens of minutes on 2 cores)
    python scripts/bench_scale.py --events 100000    # the CI-sized form (a few minutes)
    python scripts/bench_scale.py --events 10000000 --no-freshness --no-replay   # the 10M flat-memory run
    python scripts/bench_scale.py --repeat 3         # each timed phase 3 times: median and spread
    python scripts/bench_scale.py --instances 1,2,3 --events 100000   # only: processors as 1, 2, 3 instances

What it does, in order, on a fresh home in a temporary directory (``--keep DIR`` keeps it):

1. builds a log of N events: the demo workload (planner, researcher, writer, critic: LLM actions, data,
   compute, trust, agent-to-agent interactions with their cost flows, budgets and reservations), signed in
   batches of 100 on the embedded log;
2. measures the raw limits of this machine: fastavro decode of this log's events, Ed25519 verify, SHA-256
   of 300 B, DuckDB Arrow insert (1,000-row batches, one thread), SQLite append (100 rows of 300 B per
   durable transaction);
3. ``tokenledger verify`` over the whole log (a fresh process; wall and CPU seconds);
4. rebuilds every processor from offset 0 in dependency waves, each processor in a fresh process: wall and
   CPU seconds, events/s, and its peak RSS when it had read a quarter, half and all of its input;
5. disk bytes per event: the log, the processors' DuckDB files, the published Parquet views;
6. freshness: the processors run as services (``tokenledger run``) while agents emit at a steady rate
   (default 5,000 events/s); an event is visible when every processor has published views past it (a
   processor reading another's derived topic: past what that one had derived by then); p50 and p99;
7. ``tokenledger replay NAME`` for every processor: rebuilt from offset 0, compared with the live state;
8. proofs: a checkpoint, then inclusion proofs of random events: the size of a one-event file and the bytes each
   event adds to a file of many; ``prove`` latency in process (one event per call) and through the CLI; a file
   of many events proved per second end to end; proof entries built per second from the notary's evidence (the
   proof API, ``build_inclusion_proofs``) next to raw Merkle paths per second; events verified per second.

Nothing is asserted: the numbers are for reading, each next to what the machine can do.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

FILL_TASKS = 50  # demo tasks per fill call: ~1,000 events over ~17 min of event time (a task every ~20 s)
# Each fill call starts this much event time after the one before. An emitter refuses an event stamped at or before
# its idempotency window's horizon (a retry it may have forgotten), and past MAX_IDEMPOTENCY_WINDOW_EVENTS per
# signer the horizon moves to the newest time it forgot: the calls still in a busy signer's window (~2,000 of
# ~500 events) must span more event time (~33 min) than one call (~17 min). 10M events are ~10,000 calls: ~2.8 h of
# event time, inside the test homes' day-wide skew window from T0 (six hours before the run).
FILL_STEP_US = 1_000_000
RSS_SAMPLE_S = 0.2  # how often a processor run notes its events read and peak RSS
VISIBILITY_POLL_S = 0.02  # how often the freshness probe reads every processor's published state
FRESHNESS_TICK_S = 0.02  # the emitters flush this often at the steady rate
WARMUP_S = 5.0  # seconds of emitting at the steady rate before probes are taken
PROOFS_IN_PROCESS = 200  # random events proved in one file (and verified)
PROOFS_SINGLE = 50  # of them proved one per call (`prove_event`: the latency of one proof)
API_PROOFS = 10_000  # proof entries built through the proof API alone
PROOFS_CLI = 5  # proofs through the whole `tokenledger prove` command
TOKENLEDGER = [sys.executable, "-c", "import sys; from processors.cli import main; sys.exit(main())"]
# The command again, writing its own peak RSS (VmHWM) to the file named by $TL_BENCH_HWM at exit. Not rusage's
# ru_maxrss: Linux carries a process's maxrss across fork and exec, so a child of a big benchmark process would
# report the parent's size (every processor showed this script's 689 MB at 10M until this was fixed).
HWM_READ = ("int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) / 1024")
TOKENLEDGER_HWM = [sys.executable, "-c",
                   "import atexit, os, sys\n"
                   "atexit.register(lambda: open(os.environ['TL_BENCH_HWM'], 'w').write(str(" + HWM_READ + ")))\n"
                   "from processors.cli import main\nsys.exit(main())"]


# ---------------------------------------------------------------------------------------------- helpers


def cli(*args: str, home: Path, timeout: float | None = None) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``tokenledger ARGS --home HOME``; (result, wall s, CPU s of the child)."""
    p, wall, cpu, _ = cli_rss(*args, home=home, timeout=timeout)
    return p, wall, cpu


def cli_rss(*args: str, home: Path,
            timeout: float | None = None) -> tuple[subprocess.CompletedProcess[str], float, float, float]:
    """``cli`` and the child's peak RSS in MB (its own VmHWM, written at exit; see TOKENLEDGER_HWM)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r", suffix=".hwm") as hwm:
        proc = subprocess.Popen([*TOKENLEDGER_HWM, *args, "--home", str(home)], stdout=out, stderr=err, text=True,
                                cwd=ROOT, env={**os.environ, "TL_BENCH_HWM": hwm.name})
        _, status, usage = os.wait4(proc.pid, 0) if timeout is None else _wait4_within(proc, timeout)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        p = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
        peak = float(hwm.read() or "nan")
    return p, wall, usage.ru_utime + usage.ru_stime, peak


def _wait4_within(proc: subprocess.Popen[str], timeout: float) -> tuple[int, int, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return pid, status, usage
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise subprocess.TimeoutExpired(proc.args, timeout)


def median_spread(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.median(xs):.2f} (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def dir_bytes(path: Path, suffixes: tuple[str, ...] = ()) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and (not suffixes or f.name.endswith(suffixes)))


def progress(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------- 1. the log


def build(home_path: Path, events: int) -> int:
    from ledger.economics.price_events import price_event_time_us, seed_events
    from ledger.sdk.emitter import Emitter
    from ledger.testing.homes import T0, Filler, make_home

    home = make_home(home_path, agents=())
    # the price book `tokenledger init` seeds (the catalog's lines and match rules), so allocations and budgets
    # price every call as they would in a real home (without it every call is unpriced: cheap, and not the work)
    log = home.open_log()
    try:
        with Emitter.for_operator(home, log) as em:
            for body in seed_events():
                em.emit(body, event_time_us=price_event_time_us(body))
    finally:
        log.close()
    n, i, step = 0, 0, max(events // 10, 1)
    next_report = step
    t = time.perf_counter()
    with Filler(home, batch_size=100) as f:
        while n < events:
            n += f.run(tasks=FILL_TASKS, seed=i, run=f"scale{i}", start_us=T0 + 1_000_000 + i * FILL_STEP_US)
            i += 1
            if n >= next_report:
                progress(f"log: {n:,} events ({n / (time.perf_counter() - t):,.0f} events/s)")
                next_report += step
    return n


def count_events(home_path: Path) -> int:
    """Agent events on the log of an earlier run's home (``--reuse``); its processors are reset."""
    from ledger.errors import RejectError
    from ledger.sdk.home import Home
    from ledger.wire import codec

    home = Home.open(home_path)
    shutil.rmtree(home.path / "processors", ignore_errors=True)
    shutil.rmtree(home.views_root, ignore_errors=True)
    log = home.open_log()
    n, offset = 0, 0
    try:
        end = log.end_offset(home.topic, 0)
        while offset < end:
            recs = log.read(home.topic, 0, offset, 1_000)
            for r in recs:
                with contextlib.suppress(RejectError):  # a record readers quarantine holds no event
                    n += len(codec.decode_batch(r.value).events)
            offset = recs[-1].offset + 1
    finally:
        log.close()
    return n


# ---------------------------------------------------------------------------------------------- 2. raw limits


def raw_limits(home_path: Path, tmp: Path) -> dict[str, float]:
    import duckdb
    import fastavro
    import pyarrow as pa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.sdk.home import Home
    from ledger.wire import codec, schemas

    home = Home.open(home_path)
    log = home.open_log()
    try:
        raws = [raw for r in log.read(home.topic, 0, 0, 200) for raw in codec.decode_batch(r.value).events]
    finally:
        log.close()
    # each event with the schema it was written with (a reused log may predate the current one), header stripped
    samples = []
    for raw in raws:
        writer, at = schemas.writer_schema(raw, expected="Event")
        samples.append((raw[at:], writer.parsed))
    out: dict[str, float] = {}

    def rate(fn: Any, n: int) -> float:
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            fn(n)
            best = max(best, n / (time.perf_counter() - t))
        return best

    def decode(n: int) -> None:
        for i in range(n):
            body, writer = samples[i % len(samples)]
            fastavro.schemaless_reader(io.BytesIO(body), writer)

    out["fastavro_decode"] = rate(decode, 20_000)
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    msg = os.urandom(300)
    sig = key.sign(msg)
    out["ed25519_verify"] = rate(lambda n: [pub.verify(sig, msg) for _ in range(n)], 5_000)
    out["sha256_300B"] = rate(lambda n: [hashlib.sha256(msg).digest() for _ in range(n)], 200_000)

    con = duckdb.connect(str(tmp / "raw.duckdb"), config={"threads": 1})
    con.execute("CREATE TABLE t (a BIGINT, b VARCHAR, c VARCHAR, d BIGINT, e BIGINT, f VARCHAR, g BIGINT, h BIGINT)")
    rows = 1_000
    batch = pa.table({"a": list(range(rows)), "b": ["agent-x"] * rows, "c": ["claude-sonnet-4-6"] * rows,
                      "d": list(range(rows)), "e": [7] * rows, "f": ["0123456789abcdef0123456789abcdef"] * rows,
                      "g": list(range(rows)), "h": [1] * rows})

    def insert(n: int) -> None:
        for _ in range(n // rows):
            con.execute("BEGIN")
            con.register("x", batch)
            con.execute("INSERT INTO t SELECT * FROM x")
            con.unregister("x")
            con.execute("COMMIT")

    out["duckdb_arrow_insert"] = rate(insert, 200_000)
    con.close()

    def sqlite_append(n: int) -> None:
        db = sqlite3.connect(tmp / f"raw-{time.perf_counter_ns()}.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE r (o INTEGER PRIMARY KEY, v BLOB)")
        blob = os.urandom(300)
        for s in range(0, n, 100):
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO r VALUES (?, ?)", [(s + i, blob) for i in range(100)])
            db.execute("COMMIT")
        db.close()

    out["sqlite_append"] = rate(sqlite_append, 50_000)
    return out


# ---------------------------------------------------------------------------------------------- 4. rebuild

PROCESSOR_RUN = r"""
import json, resource, sys, threading, time
from ledger.sdk.home import Home
from processors.host.service import open_runner
home = Home.open(sys.argv[1])
sample_s = float(sys.argv[3])
log = home.open_log()
runner, store, proc = open_runner(home, sys.argv[2], log)
samples = []
stop = threading.Event()
def peak_mb():  # this process's own high-water RSS (ru_maxrss would carry the parent's across fork and exec)
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith("VmHWM:")).split()[1]) / 1024
def watch():
    while not stop.wait(sample_s):
        samples.append((runner.stats.events, peak_mb()))
threading.Thread(target=watch, daemon=True).start()
t = time.perf_counter()
runner.run_until_caught_up()
wall = time.perf_counter() - t
stop.set()
events = runner.stats.events
samples.append((events, peak_mb()))
def at(share):
    return next((mb for ev, mb in samples if ev >= share * events), samples[-1][1])
ru = resource.getrusage(resource.RUSAGE_SELF)
digest = store.digest()["digest"]
store.close()
log.close()
print(json.dumps({"events": events, "produced": runner.stats.produced, "wall_s": wall,
                  "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": {"n/4": at(0.25), "n/2": at(0.5), "n": at(1.0)},
                  "digest": digest}))
"""


def rebuild(home_path: Path) -> tuple[float, dict[str, dict[str, Any]]]:
    """Every processor from offset 0, in dependency waves, each in its own process; (wall s, per processor)."""
    from processors import order_by_topics

    results: dict[str, dict[str, Any]] = {}
    t = time.perf_counter()
    for wave in order_by_topics():
        procs = {n: subprocess.Popen([sys.executable, "-c", PROCESSOR_RUN, str(home_path), n, str(RSS_SAMPLE_S)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                 for n in wave}
        for n, p in procs.items():
            out, err = p.communicate()
            if p.returncode != 0:
                results[n] = {"error": (err.strip().splitlines() or [f"exit {p.returncode}"])[-1],
                              "exit": p.returncode}
            else:
                results[n] = json.loads(out.strip().splitlines()[-1])
        progress(f"rebuilt {', '.join(wave)} ({time.perf_counter() - t:.1f}s so far)")
    return time.perf_counter() - t, results


# ---------------------------------------------------------------------------------------------- --instances


def build_partitioned(home_path: Path, events: int, partitions: int) -> int:
    """A log like ``build``'s, on a home whose events topic has ``partitions`` partitions (agents spread by key)."""
    from ledger.economics.price_events import price_event_time_us, seed_events
    from ledger.sdk.emitter import Emitter
    from ledger.sdk.home import OPERATOR_ID, Home
    from ledger.testing.homes import T0, TEST_WINDOW, Filler
    from ledger.wire.events import AgentRegistered

    home = Home.init(home_path, partitions=partitions)
    op = home.operator_key()
    log = home.open_log()
    try:
        with Emitter.for_operator(home, log) as em:
            em.emit(AgentRegistered(agent_id=OPERATOR_ID, key_id=op.key_id, public_key=op.public.raw,
                                    role="operator"), event_time_us=T0)
            em.emit(TEST_WINDOW, event_time_us=T0 + 1)
            # the seeded price book, as ``build`` has it: allocations price every call and interaction (without it
            # they are all unpriced, and settlements gets nothing to settle)
            for body in seed_events():
                em.emit(body, event_time_us=price_event_time_us(body))
    finally:
        log.close()
    n, i = 0, 0
    with Filler(home, batch_size=100) as f:
        while n < events:
            n += f.run(tasks=FILL_TASKS, seed=i, run=f"scale{i}", start_us=T0 + 1_000_000 + i * FILL_STEP_US)
            i += 1
    return n


def instances(home_path: Path, counts: list[int], n_events: int) -> dict[str, dict[int, dict[str, Any]]]:
    """Every processor from offset 0 as 1, 2, 3... instances (``tokenledger run NAME --instances N
    --until-caught-up``, a fresh state each time): wall and CPU seconds (supervisor and workers), events/s (the
    events view's rows of the combined digest / wall; rows of all views for the others), the combined digest; a
    processor that cannot shard: why."""
    from ledger.sdk.home import Home
    from processors import get, order_by_topics
    from processors.host.service import ensure_processor_key
    from processors.runtime.shards import all_shards

    h = Home.open(home_path)
    names = [n for wave in order_by_topics() for n in wave]
    # every key any run will register, registered first: a registration is a control event, which the journal
    # records, so registering during the runs would give each instance count another log to digest
    log = h.open_log()
    try:
        for name in names:
            ensure_processor_key(h, name, log)
            for count in counts:
                if count > 1 and (get(name).shardable or get(name).exchanges):
                    for sh in all_shards(count):
                        ensure_processor_key(h, name, log, sh)
    finally:
        log.close()
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for name in names:
        out[name] = {}
        for count in counts:
            if count > 1 and not (get(name).shardable or get(name).exchanges):
                out[name][count] = {"refused": get(name).shard_refusal}
                continue
            shutil.rmtree(h.processor_dir(name), ignore_errors=True)
            shutil.rmtree(h.views_dir(name), ignore_errors=True)
            extra = ("--instances", str(count)) if count > 1 else ()
            p, wall, cpu = cli("run", name, *extra, "--until-caught-up", home=home_path)
            if p.returncode != 0:
                out[name][count] = {"error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]}
                continue
            d, _, _ = cli("digest", name, "--json", home=home_path)
            doc = json.loads(d.stdout)
            # every processor reads the whole log (settlements: the allocations derived from it): log events per
            # second of wall time, so the counts compare across processors and instance counts
            out[name][count] = {"wall_s": wall, "cpu_s": cpu, "per_s": n_events / max(wall, 1e-9),
                                "digest": doc["digest"], "rows": sum(t["rows"] for t in doc["tables"].values())}
        progress(f"{name}: ran as {', '.join(map(str, counts))} instance(s)")
    return out


def print_instances(res: dict[str, dict[int, dict[str, Any]]], n: int, partitions: int) -> None:
    print(f"processors as N instances ({n:,} events on {partitions} partitions; log events per second of wall "
          "time, process start included; CPU: supervisor and workers)")
    for name, by_count in res.items():
        digests = {r["digest"] for r in by_count.values() if "digest" in r}
        for count, r in by_count.items():
            if "refused" in r:
                print(f"  {name:<12} x{count}: refused ({r['refused']})")
            elif "error" in r:
                print(f"  {name:<12} x{count}: FAILED: {r['error']}")
            else:
                print(f"  {name:<12} x{count}: wall {r['wall_s']:>7.1f} s, CPU {r['cpu_s']:>7.1f} s, "
                      f"{r['per_s']:>9,.0f} events/s, {r['rows']:,} rows")
        if len(digests) > 1:
            print(f"  {name:<12} THE COMBINED DIGESTS DIFFER: {sorted(digests)}")
        elif digests:
            print(f"  {name:<12} one combined digest for every instance count")


# ---------------------------------------------------------------------------------------------- 6. freshness


def topic_end(log: Any, topic: str) -> int:
    """Records on a topic (0 before its first: a derived topic exists once something was derived)."""
    from ledger.errors import LogError

    try:
        return sum(log.end_offset(topic, p) for p in range(log.partitions(topic)))
    except LogError:
        return 0


class Visibility:
    """When each probe (an appended events-topic offset) became visible in every processor's published views."""

    def __init__(self, home: Any, names: list[str]) -> None:
        from processors import get

        prefix = home.config.get("topic_prefix", "ledger")
        self.home = home
        self.names = names
        self.events = home.topic
        self.inputs = {n: [f"{prefix}.{t}" for t in get(n).topics if t != "control"] for n in names}
        self.producer = {f"{prefix}.{t}": n for n in names for t in get(n).derived_topics}
        self.probes: list[tuple[float, int]] = []  # (time appended, offset) on the events topic
        self.seen: dict[tuple[int, str], float] = {}  # (probe, processor) -> time visible
        self.derived_end: dict[tuple[int, str], int] = {}  # (probe, derived topic) -> its end when its producer saw it
        self.lock = threading.Lock()

    def positions(self, name: str) -> dict[str, int]:
        try:
            state = json.loads((self.home.views_dir(name) / "_state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        out: dict[str, int] = {}
        for k, v in state.get("positions", {}).items():
            topic, _, _ = k.rpartition("/")
            out[topic] = max(out.get(topic, 0), int(v))
        return out

    def caught_up(self, log: Any, since: float) -> bool:
        """Every processor has published, since ``since`` (wall clock), up to the end of what it reads: a
        restarted service first re-exports its views whole, and only then is its freshness steady."""
        for n in self.names:
            try:
                if (self.home.views_dir(n) / "_state.json").stat().st_mtime < since:
                    return False
            except FileNotFoundError:
                return False
            pos = self.positions(n)
            for topic in self.inputs[n]:
                if pos.get(topic, 0) < topic_end(log, topic):
                    return False
        return True

    def poll(self, log: Any) -> None:
        now = time.perf_counter()
        pos = {n: self.positions(n) for n in self.names}
        with self.lock:
            probes = list(enumerate(self.probes))
        for i, (_, offset) in probes:
            progressed = True
            while progressed:  # a producer seen now can make its consumers visible in the same poll
                progressed = False
                for n in self.names:
                    if (i, n) in self.seen:
                        continue
                    ok = True
                    for topic in self.inputs[n]:
                        if topic == self.events:
                            ok = ok and pos[n].get(topic, 0) > offset
                        else:
                            end = self.derived_end.get((i, topic))
                            ok = ok and end is not None and pos[n].get(topic, 0) >= end
                    if ok:
                        self.seen[(i, n)] = now
                        progressed = True
                        for topic, producer in self.producer.items():
                            if producer == n:
                                self.derived_end[(i, topic)] = topic_end(log, topic)

    def latencies(self) -> list[float]:
        out = []
        for i, (t, _) in enumerate(self.probes):
            seen = [self.seen.get((i, n)) for n in self.names]
            if all(s is not None for s in seen):
                out.append(max(s for s in seen if s is not None) - t)
        return out


def worker_cpu(supervisor: int, names: list[str]) -> dict[str, float]:
    """CPU seconds (user + system) each processor's worker process has used so far: the children of the
    ``tokenledger run`` supervisor, named by the processor in their command line (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != supervisor:  # ppid
                continue
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        name = next((n for n in names if n.encode() in argv), None)
        if name is not None:
            out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def freshness(home_path: Path, rate: int, seconds: float) -> dict[str, Any]:
    from ledger import Emitter
    from ledger.sdk.home import Home
    from ledger.testing.workload import AGENTS, workload
    from processors import REGISTRY

    home = Home.open(home_path)
    names = sorted(REGISTRY)
    vis = Visibility(home, names)
    started = time.time()
    sup = subprocess.Popen([*TOKENLEDGER, "run", "--home", str(home_path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    log = home.open_log()
    ems = {a: Emitter.open(a, home=home_path, batch_size=1000, background_flush=False) for a, *_ in AGENTS}
    try:
        deadline = time.perf_counter() + 900  # a restart re-exports every view whole first
        while not vis.caught_up(log, started):  # every processor has published up to the end of what it reads
            if time.perf_counter() > deadline or sup.poll() is not None:
                raise SystemExit("processors did not catch up before the freshness run: "
                                 f"{sup.stderr.read() if sup.poll() is not None and sup.stderr else 'still running'}")
            time.sleep(0.2)
        bodies = workload(tasks=10**9, seed=99, start_us=0, run="fresh")
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(VISIBILITY_POLL_S):
                vis.poll(log)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        per_tick = max(1, round(rate * FRESHNESS_TICK_S))
        emitted = 0
        t0 = time.perf_counter()
        tick = 0
        warm_until = t0 + WARMUP_S  # the first seconds are not probed: publishers and pacing settle
        cpu_from: dict[str, float] | None = None
        emitted_from = 0
        while time.perf_counter() - t0 < seconds + WARMUP_S:
            if cpu_from is None and time.perf_counter() >= warm_until:
                cpu_from, emitted_from = worker_cpu(sup.pid, names), emitted
            for _ in range(per_tick):
                agent, body, _, ctx = next(bodies)
                ems[agent].emit(body, context=ctx)  # stamped now: the log vouches for it within the skew window
            for em in ems.values():
                em.flush()
            emitted += per_tick
            if time.perf_counter() >= warm_until:
                with vis.lock:
                    vis.probes.append((time.perf_counter(), log.end_offset(home.topic, 0) - 1))
            tick += 1
            time.sleep(max(0.0, t0 + tick * FRESHNESS_TICK_S - time.perf_counter()))
        sent_s = time.perf_counter() - t0
        cpu_to = worker_cpu(sup.pid, names)
        live_cpu = {n: cpu_to.get(n, 0.0) - (cpu_from or {}).get(n, 0.0) for n in names}
        live_events = emitted - emitted_from
        wait_until = time.perf_counter() + 60
        while len(vis.latencies()) < len(vis.probes) and time.perf_counter() < wait_until:
            time.sleep(0.1)
        stop.set()
        watcher.join()
        lat = sorted(vis.latencies())
    finally:
        for em in ems.values():
            em.close()
        log.close()
        sup.send_signal(signal.SIGINT)
        try:
            sup.wait(60)
        except subprocess.TimeoutExpired:
            sup.kill()
    cpu = {"cpu_s": live_cpu, "cpu_events": live_events}
    if not lat:
        return {"rate": emitted / sent_s, "probes": len(vis.probes), "visible": 0, **cpu}
    return {"rate": emitted / sent_s, "probes": len(vis.probes), "visible": len(lat), **cpu,
            "p50": lat[len(lat) // 2], "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))], "max": lat[-1]}


# ---------------------------------------------------------------------------------------------- 8. proofs


def proofs(home_path: Path) -> dict[str, Any]:
    from ledger.errors import RejectError
    from ledger.integrity.checkpoints import registration_records
    from ledger.integrity.merkle import leaf_hash, verify_inclusion
    from ledger.integrity.proofs import EventEvidence, build_inclusion_proofs, verify_proofs
    from ledger.sdk.home import Home
    from ledger.wire import codec
    from ledger.wire.events import Checkpoint
    from processors.services.proofs import checkpoint_now, prove_event, prove_events

    home = Home.open(home_path)
    log = home.open_log()
    try:
        checkpoint_now(home, log)
        end = log.end_offset(home.topic, 0)
        rng = random.Random(7)
        ids: list[str] = []
        while len(ids) < PROOFS_IN_PROCESS:
            rec = log.read(home.topic, 0, rng.randrange(end), 1)[0]
            try:
                batch = codec.decode_batch(rec.value)
            except RejectError:
                continue  # a record readers quarantine holds no provable event
            ids.append(codec.decode_event(rng.choice(batch.events)).event.event_id)
        t = time.perf_counter()
        prove_event(home, log, ids[0])  # the first prove copies every leaf id into the event-id index
        first_s = time.perf_counter() - t
        singles, single_s = [], []
        for i in ids[1:PROOFS_SINGLE + 1]:
            t = time.perf_counter()
            singles.append(prove_event(home, log, i))
            single_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        many = prove_events(home, log, ids)
        many_s = time.perf_counter() - t
        anchors = home.anchors()
        t = time.perf_counter()
        verify_proofs(many, anchors)
        ver_s = time.perf_counter() - t
        # the proof API alone: entries built from evidence already read (record, leaf, path, checkpoint)
        cps = {c["event_id"]: c for c in many["checkpoints"]}
        assert len(cps) == 1
        from processors.services.proofs import _newest_checkpoints, _ref

        e0 = many["events"][0]
        cp = next(_newest_checkpoints(home, log, home.topic, 0, e0["leaf_index"], many["checkpoints"][0]["event_id"]))
        records = {e["offset"]: log.read(home.topic, 0, e["offset"], 1)[0].value for e in many["events"]}
        evidence = [EventEvidence(e["event_id"], home.topic, 0, e["offset"], records[e["offset"]], e["leaf_index"],
                                  _split(e["path"]), _ref(cp), e.get("index")) for e in many["events"]]
        regs = registration_records(log, home.control_topic, {codec.decode_batch(r).key_id for r in records.values()}
                                    | {codec.decode_batch(cp.record).key_id})
        rounds = max(1, API_PROOFS // len(evidence))
        t = time.perf_counter()
        for _ in range(rounds):
            build_inclusion_proofs(evidence, regs)
        api_s = time.perf_counter() - t
        # raw: the partition paths alone, verified (what any proof of these events must at least do)
        body = cp.body
        assert isinstance(body, Checkpoint)
        leaves = [(leaf_hash(_event_raw(e)), e["leaf_index"], _split(e["path"]))
                  for e in many["events"]]
        t = time.perf_counter()
        for _ in range(rounds):
            for lh, i, path in leaves:
                verify_inclusion(lh, i, body.tree_size, path, body.root_hash)
        raw_s = time.perf_counter() - t
    finally:
        log.close()
    sizes = sorted(len(json.dumps(d, separators=(",", ":"))) for d in singles)
    many_b = len(json.dumps(many, separators=(",", ":")))
    shared_b = len(json.dumps({k: many[k] for k in ("checkpoints", "registrations")}, separators=(",", ":")))
    cli_s = []
    for i in ids[:PROOFS_CLI]:
        with tempfile.TemporaryDirectory() as out_dir:
            p, wall, _ = cli("prove", i, "--out", str(Path(out_dir) / "p.json"), home=home_path)
            if p.returncode != 0:
                raise SystemExit(f"tokenledger prove failed: {p.stderr}")
            cli_s.append(wall)
    n = len(ids)
    return {"proofs": n, "tree_size": body.tree_size, "single_median_b": sizes[len(sizes) // 2],
            "per_event_b": (many_b - shared_b) / n, "shared_b": shared_b,
            "prove_ms": statistics.median(single_s) * 1000, "prove_max_ms": max(single_s) * 1000,
            "many_per_s": n / many_s, "api_per_s": rounds * n / api_s, "raw_paths_per_s": rounds * n / raw_s,
            "verify_per_s": n / ver_s, "cli_prove_s": statistics.median(cli_s), "first_s": first_s}


def _split(text: str) -> tuple[bytes, ...]:
    b = base64.b64decode(text)
    return tuple(b[i:i + 32] for i in range(0, len(b), 32))


def _event_raw(entry: dict[str, Any]) -> bytes:
    from ledger.wire import codec

    if "event" in entry:
        return base64.b64decode(entry["event"])
    raw: bytes = codec.decode_batch(base64.b64decode(entry["record"])).events[entry["index"]]
    return raw


# ---------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events on the log (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each timed phase (verify, rebuild): median, spread")
    ap.add_argument("--rate", type=int, default=5_000, help="events/s during the freshness run")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the freshness run")
    ap.add_argument("--no-freshness", action="store_true", help="skip the freshness run")
    ap.add_argument("--no-replay", action="store_true", help="skip replaying every processor")
    ap.add_argument("--no-proofs", action="store_true", help="skip the proof measurements")
    ap.add_argument("--keep", type=Path, help="build the home here and keep it (default: a temporary directory)")
    ap.add_argument("--reuse", action="store_true", help="with --keep: use the log already there (built by an "
                    "earlier run) instead of building one; its processors start again from nothing")
    ap.add_argument("--instances", help="only this: every processor run as each of these instance counts, e.g. "
                                        "1,2,3 (sharded processors; the others are run once and say why not)")
    ap.add_argument("--partitions", type=int, default=6, help="with --instances: partitions of the events topic")
    a = ap.parse_args()
    if a.instances is not None:
        counts = sorted({int(x) for x in a.instances.split(",") if x.strip()})
        if not counts or counts[0] < 1:
            ap.error("--instances takes instance counts from 1, e.g. 1,2,3")
        with tempfile.TemporaryDirectory() as d:
            home = a.keep if a.keep is not None else Path(d) / "home"
            n = build_partitioned(home, a.events, a.partitions)
            progress(f"built {n:,} events on {a.partitions} partitions")
            print(f"tokenledger scale-out benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
                  flush=True)
            raw = raw_limits(home, Path(d))
            print("raw limits of this machine (one core, this run): " + ", ".join(
                f"{k} {v:,.0f}/s" for k, v in raw.items()), flush=True)
            print_instances(instances(home, counts, n), n, a.partitions)
        return 0
    if a.reuse and a.keep is None:
        ap.error("--reuse needs --keep DIR (the home of an earlier run)")
    print(f"tokenledger scale benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"N = {a.events:,} events, signed in batches of 100 on the embedded log", flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        home = a.keep if a.keep is not None else tmp / "home"
        t = time.perf_counter()
        n = count_events(home) if a.reuse else build(home, a.events)
        build_s = time.perf_counter() - t
        progress(f"{'found' if a.reuse else 'built'} {n:,} events in {build_s:.1f}s")
        raw = raw_limits(home, tmp)
        progress("raw limits measured")

        verify_runs = []
        verify_rss = 0.0
        for _ in range(a.repeat):
            p, wall, cpu, rss = cli_rss("verify", "--json", home=home)
            verify_runs.append((wall, cpu, p.returncode))
            verify_rss = max(verify_rss, rss)
        progress(f"verify: {median_spread([w for w, _, _ in verify_runs])} s")

        rebuilds = []
        from ledger.sdk.home import Home

        h = Home.open(home)
        for r in range(a.repeat):
            if r:  # a fresh start for every processor: state files and published views gone
                shutil.rmtree(h.path / "processors", ignore_errors=True)
                shutil.rmtree(h.views_root, ignore_errors=True)
            rebuilds.append(rebuild(home))
        per = rebuilds[-1][1]

        fresh = None if a.no_freshness else freshness(home, a.rate, a.seconds)
        if fresh is not None:
            progress(f"freshness: {fresh}")
        # after the services ran (they publish the views; the rebuild runs do not); per event of the whole log
        n_all = n + (round(fresh["rate"] * a.seconds) if fresh is not None else 0)
        disk = {"log": sum(f.stat().st_size for f in h.path.glob(h.log_file.name + "*")),
                "duckdb": dir_bytes(h.path / "processors", (".duckdb", ".duckdb.wal")),
                "parquet": dir_bytes(h.views_root, (".parquet",))}

        replays: dict[str, str] = {}
        if not a.no_replay:
            for name in sorted(per):
                p, wall, _ = cli("replay", name, "--json", home=home)
                replays[name] = ("EQUAL" if p.returncode == 0 else f"DIFFERENT/exit {p.returncode}") + f" ({wall:.1f}s)"
            progress("replayed every processor")
        prf = None if a.no_proofs else proofs(home)

    print()
    print("raw limits of this machine (same run)")
    print(f"  fastavro decode (this log's events)     {raw['fastavro_decode']:>12,.0f} events/s")
    print(f"  Ed25519 verify                          {raw['ed25519_verify']:>12,.0f} verifies/s")
    print(f"  SHA-256 of 300 B                        {raw['sha256_300B']:>12,.0f} hashes/s")
    print(f"  DuckDB Arrow insert, 1,000-row batches  {raw['duckdb_arrow_insert']:>12,.0f} rows/s")
    print(f"  SQLite append, 100 x 300 B per txn      {raw['sqlite_append']:>12,.0f} rows/s")
    print()
    if a.reuse:
        print(f"log: {n:,} events, built by an earlier run")
    else:
        print(f"log: {n:,} events built in {build_s:.1f}s ({n / build_s:,.0f} events/s)")
    walls = [w for w, _, _ in verify_runs]
    print(f"verify: wall {median_spread(walls)} s, CPU {verify_runs[-1][1]:.1f} s, exit {verify_runs[-1][2]}; "
          f"{n / statistics.median(walls):,.0f} events/s = {n / statistics.median(walls) / raw['fastavro_decode']:.2f}"
          f" x raw decode, peak RSS {verify_rss:,.0f} MB   (goal <= 20 s at 1M)")
    print(f"rebuild, all processors from offset 0 in waves: wall {median_spread([w for w, _ in rebuilds])} s   "
          "(goal <= 60 s at 1M)")
    print(f"  {'processor':<12} {'events':>10} {'wall s':>8} {'CPU s':>8} {'ev/CPU-s':>9} "
          f"{'RSS n/4':>8} {'n/2':>6} {'n':>6}  replay")
    for name, res in sorted(per.items()):
        if "error" in res:
            print(f"  {name:<12} FAILED (exit {res['exit']}): {res['error']}")
            continue
        rss = res["rss_mb"]
        print(f"  {name:<12} {res['events']:>10,} {res['wall_s']:>8.1f} {res['cpu_s']:>8.1f} "
              f"{res['events'] / max(res['cpu_s'], 1e-9):>9,.0f} {rss['n/4']:>6.0f}MB {rss['n/2']:>4.0f}MB "
              f"{rss['n']:>4.0f}MB  {replays.get(name, '-')}")
    print("  (goal: peak RSS <= 300 MB per processor, flat from n/4 to n)")
    print(f"disk per event ({n_all:,} events): log {disk['log'] / n_all:,.0f} B, "
          f"DuckDB {disk['duckdb'] / n_all:,.0f} B, "
          f"Parquet views {disk['parquet'] / n_all:,.0f} B")
    if fresh is not None:
        if fresh.get("visible"):
            print(f"freshness at {fresh['rate']:,.0f} events/s sustained for {a.seconds:.0f}s: emit -> visible in "
                  f"every processor's views p50 {fresh['p50']:.2f}s, p99 {fresh['p99']:.2f}s, max {fresh['max']:.2f}s "
                  f"({fresh['visible']}/{fresh['probes']} probes)   (goal p99 <= 1 s at 5k events/s)")
            live = fresh["cpu_s"]
            n_ev = max(fresh["cpu_events"], 1)
            def us_per_event(cpu_s: float, events: int) -> str:
                return f"{cpu_s / max(events, 1) * 1e6:,.0f} us"

            print(f"  live CPU per event while probed ({fresh['cpu_events']:,} events): " + ", ".join(
                f"{name} {us_per_event(live[name], n_ev)} "
                f"(rebuild {us_per_event(per[name]['cpu_s'], per[name]['events'])})"
                for name in sorted(live) if name in per and "error" not in per[name]) +
                f"; all processors {sum(live.values()):,.1f} CPU-s over {a.seconds:.0f}s")
        else:
            print(f"freshness: no probe became visible in every processor ({fresh})")
    if prf is not None:
        print(f"proofs at {prf['tree_size']:,} leaves: a one-event file {prf['single_median_b']:,} B (median); "
              f"in a file of {prf['proofs']} events {prf['per_event_b']:,.0f} B per event plus "
              f"{prf['shared_b']:,} B once (checkpoint, registrations)   (goal <= 2 KB)")
        print(f"  prove one event: {prf['prove_ms']:.1f} ms median, {prf['prove_max_ms']:.1f} ms max in process "
              f"(goal <= 50 ms), {prf['cli_prove_s']:.2f}s through the CLI (process start included); the first "
              f"prove {prf['first_s']:.1f}s (it builds the event-id index of all {prf['tree_size']:,} leaves)")
        print(f"  a file of {prf['proofs']} events: {prf['many_per_s']:,.0f} events/s end to end; proof API "
              f"{prf['api_per_s']:,.0f} entries/s (raw: {prf['raw_paths_per_s']:,.0f} partition paths verified/s); "
              f"verify {prf['verify_per_s']:,.0f} events/s   (goals 10k/s, 5k/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
