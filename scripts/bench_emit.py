#!/usr/bin/env python3
"""Emit throughput (encode + chain + sign + append) against the machine's own raw limits, same run.

Prints events/s for the Emitter at batch sizes 1 and 100 on the embedded SQLite log (WAL,
synchronous=FULL: every append is durable) and, measured right before, the raw Ed25519 signs/s and
the raw SQLite appends/s of the same record sizes, with ratios. One process, one thread.

    python scripts/bench_emit.py                 # default sizes (~30 s)
    python scripts/bench_emit.py --events 200000 # longer run
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ledger import Emitter, SigningKey
from ledger.log import SqliteLog
from ledger.wire.events import Context

T0 = 1_767_225_600_000_000


def best(fn, repeat: int = 3) -> float:
    return max(fn() for _ in range(repeat))


def raw_sign(n: int) -> float:
    key = SigningKey.generate("bench")
    msg = os.urandom(300)
    t = time.perf_counter()
    for _ in range(n):
        key.sign(msg)
    return n / (time.perf_counter() - t)


def raw_sqlite(n: int, rows_per_txn: int, size: int, tmp: Path) -> float:
    """Rows/s appending `size`-byte blobs, `rows_per_txn` per transaction, WAL + synchronous=FULL."""
    path = tmp / f"raw-{rows_per_txn}-{size}-{time.perf_counter_ns()}.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE r (topic TEXT, partition INT, offset INT, key BLOB, value BLOB, ts INT, "
               "PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID")
    blob = os.urandom(size)
    t = time.perf_counter()
    off = 0
    for _ in range(n // rows_per_txn):
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO r VALUES ('t', 0, ?, x'00', ?, 0)", [(off + i, blob) for i in range(rows_per_txn)])
        db.execute("COMMIT")
        off += rows_per_txn
    rate = off / (time.perf_counter() - t)
    db.close()
    return rate


def emit_rate(n: int, batch: int, tmp: Path) -> tuple[float, int]:
    log = SqliteLog(tmp / f"emit-{batch}-{time.perf_counter_ns()}.sqlite")
    log.ensure_topic("ledger.events")
    key = SigningKey.generate("bench-agent")
    ctx = Context(org="acme", project="bench", task="t1")
    em = Emitter(log, key, batch_size=batch, background_flush=False, context=ctx)
    t = time.perf_counter()
    for i in range(n):
        em.action("llm.call", provider="anthropic", model="claude-sonnet-4-6", input_tokens=1000 + i % 5000,
                  output_tokens=200 + i % 700, cache_read_tokens=i % 400, event_time_us=T0 + i)
    em.close()
    rate = n / (time.perf_counter() - t)
    rec = log.read("ledger.events", 0, 0, 1)[0]
    log.close()
    return rate, len(rec.value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="events per batch-100 run")
    ap.add_argument("--events-batch1", type=int, default=6_000, help="events per batch-1 run (fsync-bound)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"tokenledger emit benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, one thread, "
              f"SQLite {sqlite3.sqlite_version} WAL synchronous=FULL, best of 3")
        sign = best(lambda: raw_sign(20_000))
        e1, size1 = 0.0, 0
        rates1 = []
        for _ in range(3):
            r, size1 = emit_rate(a.events_batch1, 1, tmp)
            rates1.append(r)
        e1 = max(rates1)
        raw1 = best(lambda: raw_sqlite(a.events_batch1, 1, size1, tmp))
        rates100 = []
        for _ in range(3):
            r, size100 = emit_rate(a.events, 100, tmp)
            rates100.append(r)
        e100 = max(rates100)
        raw100_txn = best(lambda: raw_sqlite(4_000, 1, size100, tmp))
        raw_rows_100 = best(lambda: raw_sqlite(200_000, 100, 300, tmp))
        print()
        print("raw limits of this machine (same run)")
        print(f"  Ed25519 sign, cryptography, 300 B message          {sign:>12,.0f} signs/s")
        print(f"  SQLite append, 1 row of {size1:>5} B per transaction   {raw1:>12,.0f} rows/s   (fsync-bound)")
        print(f"  SQLite append, 1 row of {size100:>5} B per transaction   {raw100_txn:>12,.0f} rows/s")
        print(f"  SQLite append, 100 rows of 300 B per transaction   {raw_rows_100:>12,.0f} rows/s")
        print()
        print("emit = validate + encode + chain + sign + durable append, one signed record per batch")
        print(f"  batch 1    {e1:>10,.0f} events/s   = {e1 / raw1:5.2f} x raw 1-row txn rate, "
              f"{e1 / sign:5.2f} x raw sign rate   (record {size1} B; median {statistics.median(rates1):,.0f})")
        print(f"  batch 100  {e100:>10,.0f} events/s   = {e100 / (raw100_txn * 100):5.2f} x raw txn rate x 100, "
              f"{e100 / sign:5.2f} x raw sign rate, {e100 / raw_rows_100:5.2f} x raw 300 B row rate   "
              f"(record {size100:,} B; median {statistics.median(rates100):,.0f})")
        target = 50_000
        print(f"  target >= {target:,} events/s at batch 100: {'met' if e100 >= target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
