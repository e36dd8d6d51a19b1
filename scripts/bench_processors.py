#!/usr/bin/env python3
"""Journal throughput against the machine's raw limit for the same work, and peak RSS at two log sizes.

The input is the demo workload signed in batches of 100 events on the embedded log. Each measurement
runs in a fresh process (one core's worth of Python; DuckDB with one thread):

- journal: the real runtime (poll → verify → fold → one DuckDB transaction per batch → publish-free)
  from offset 0 until caught up;
- raw: the same work with nothing of ours — fastavro decode of every batch and event into dicts, one
  Ed25519 verify per batch, the same flattened rows built with dict lookups, Arrow bulk insert into
  DuckDB in the same batch size — its events/s is the limit the runtime is compared with.

    python scripts/bench_processors.py                  # 80k and 320k events (~2 min)
    python scripts/bench_processors.py --small 20000 --large 80000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_home(path: Path, events: int) -> int:
    from ledger.testing.homes import fill, make_home

    home = make_home(path, agents=())
    n = 0
    i = 0
    while n < events:
        n += fill(home, tasks=200, batch_size=100, seed=i, run=f"bench{i}")
        i += 1
    return n


PROCESSOR_RUN = r"""
import json, resource, sys, time
from ledger.sdk.home import Home
from processors.host.service import open_runner
home = Home.open(sys.argv[1])
log = home.open_log()
runner, store, proc = open_runner(home, sys.argv[2], log)
t = time.perf_counter()
runner.run_until_caught_up()
dt = time.perf_counter() - t
counts = {v.name: store.query(f"SELECT count(*) FROM {v.name}")[0][0] for v in proc.views}
store.close()
log.close()
print(json.dumps({"events": runner.stats.events, "produced": runner.stats.produced, "seconds": dt, "rows": counts,
                  "peak_rss_mb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
                                 / 1024}))  # VmHWM: ru_maxrss would carry the parent's size across fork and exec
"""


def measure_processor(home: Path, name: str) -> dict:
    """Run one processor from offset 0 until caught up, in a fresh process; its events, time, rows, RSS."""
    return run(PROCESSOR_RUN, str(home), name)

RAW = r"""
import io, json, resource, sys, time
import duckdb, fastavro, pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ledger.wire import codec
from ledger.wire import schemas
from ledger.sdk.home import Home
from ledger.log import read_all
home = Home.open(sys.argv[1])
log = home.open_log()
records = [r for t in home.ledger_topics for r in read_all(log, t)]
ev_schema = schemas.current()["Event"].parsed
b_schema = schemas.current()["SignedBatch"].parsed
# public keys by key id, from the key files (the raw path skips the key ring)
keys = {}
for name in home.key_names():
    k = home.load_key(name)
    keys[k.key_id] = Ed25519PublicKey.from_public_bytes(k.public.raw)
con = duckdb.connect(sys.argv[2], config={"threads": 1})
cols = ["event_id", "signer_id", "key_id", "seq", "kind", "event_time_us", "org", "project", "task", "stage", "run",
        "operation", "cost_weight_milli", "provider", "model", "input_tokens", "output_tokens", "cache_read_tokens",
        "bytes_read", "bytes_written", "subject_id", "dimension", "trust_value_milli", "requestor_id", "responder_id",
        "request_output_tokens", "request_input_tokens", "response_output_tokens", "response_input_tokens",
        "log_partition", "log_offset"]
INTEGER_SUFFIXES = ("tokens", "seq", "_us", "_milli", "offset", "partition", "read", "written")
con.execute("CREATE TABLE events (" + ", ".join(f"{c} {'BIGINT' if c.endswith(INTEGER_SUFFIXES) else 'VARCHAR'}"
                                                for c in cols) + ")")
t = time.perf_counter()
n = 0
for start in range(0, len(records), 200):
    data = {c: [] for c in cols}
    for rec in records[start:start + 200]:
        b = fastavro.schemaless_reader(io.BytesIO(rec.value[10:]), b_schema)
        hashes = []
        for raw in b["events"]:
            d = fastavro.schemaless_reader(io.BytesIO(raw[10:]), ev_schema, return_record_name=True,
                                           return_record_name_override=True)
            hashes.append(codec.event_hash(raw))
            kind, body = d["body"]
            ctx = d["context"]
            u = body.get("usage") or {}
            row = {"event_id": d["event_id"], "signer_id": d["signer_id"], "key_id": b["key_id"], "seq": d["seq"],
                   "kind": kind, "event_time_us": d["event_time_us"],
                   **{k: ctx[k] for k in ("org", "project", "task", "stage", "run")},
                   "operation": body.get("operation"), "cost_weight_milli": body.get("cost_weight_milli"),
                   "provider": u.get("provider"), "model": u.get("model"), "input_tokens": u.get("input_tokens"),
                   "output_tokens": u.get("output_tokens"), "cache_read_tokens": u.get("cache_read_tokens"),
                   "bytes_read": body.get("bytes_read"), "bytes_written": body.get("bytes_written"),
                   "subject_id": body.get("subject_id"), "dimension": body.get("dimension"),
                   "trust_value_milli": body.get("value_milli"), "requestor_id": body.get("requestor_id"),
                   "responder_id": body.get("responder_id"),
                   "request_output_tokens": (body.get("request_output") or {}).get("tokens"),
                   "request_input_tokens": (body.get("request_input") or {}).get("tokens"),
                   "response_output_tokens": (body.get("response_output") or {}).get("tokens"),
                   "response_input_tokens": (body.get("response_input") or {}).get("tokens"),
                   "log_partition": rec.partition, "log_offset": rec.offset}
            for c in cols:
                data[c].append(row[c])
            n += 1
        keys[b["key_id"]].verify(b["signature"], codec.signing_bytes(b["version"], b["signer_id"], b["key_id"], hashes))
    tbl = pa.table(data)
    con.execute("BEGIN")
    con.register("x", tbl)
    con.execute("INSERT INTO events SELECT * FROM x")
    con.unregister("x")
    con.execute("COMMIT")
dt = time.perf_counter() - t
con.close()
peak_rss_mb = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) / 1024
print(json.dumps({"events": n, "seconds": dt, "peak_rss_mb": peak_rss_mb}))
"""


def run(code: str, *args: str) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=80_000)
    ap.add_argument("--large", type=int, default=320_000)
    a = ap.parse_args()
    print(f"tokenledger processor benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          "each run in a fresh process, DuckDB threads=1, input signed in batches of 100 events")
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for label, n in (("small", a.small), ("large", a.large)):
            home = Path(d) / label
            t = time.perf_counter()
            events = build_home(home, n)
            print(f"  built a log of {events:,} events in {time.perf_counter() - t:.1f}s")
            j = measure_processor(home, "journal")
            r = run(RAW, str(home), str(Path(d) / f"raw-{label}.duckdb"))
            assert j["rows"]["events"] == j["events"]
            results[label] = (events, j, r)
    print()
    print(f"{'log size':>10} {'journal ev/s':>13} {'raw ev/s':>10} {'ratio':>6} {'journal peak RSS':>17} "
          f"{'raw peak RSS':>13}")
    for events, j, r in results.values():
        je, re_ = j["events"] / j["seconds"], r["events"] / r["seconds"]
        print(f"{events:>10,} {je:>13,.0f} {re_:>10,.0f} {je / re_:>6.2f} {j['peak_rss_mb']:>14.0f} MB "
              f"{r['peak_rss_mb']:>10.0f} MB")
    (s_ev, s_j, _), (l_ev, l_j, _) = results["small"], results["large"]
    growth = l_j["peak_rss_mb"] / s_j["peak_rss_mb"]
    print(f"journal RSS {s_j['peak_rss_mb']:.0f} MB at {s_ev:,} events -> {l_j['peak_rss_mb']:.0f} MB at {l_ev:,} "
          f"events (x{growth:.2f} for x{l_ev / s_ev:.1f} the log)")
    best = max(e["events"] / e["seconds"] for _, e, _ in results.values())
    print(f"target >= 30,000 events/s per processor core: {'met' if best >= 30_000 else 'NOT met'} ({best:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
