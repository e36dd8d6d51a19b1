#!/usr/bin/env python3
"""Crash run: SIGKILL emitter and processor processes many times on both log backends and print what
was acknowledged, lost and duplicated (processors/testing/crash.py says what each figure means).

    python scripts/crash.py                                   # 60+60 processor kills, 30+30 emitter kills
    python scripts/crash.py --backends sqlite --processor-kills 20 --emitter-kills 10
    python scripts/crash.py --kafka 127.0.0.1:9092            # an existing cluster instead of a local Tansu

Kills are per backend. For Kafka, a Tansu broker is started on a free loopback port (and stopped at
the end) unless --kafka names one. Exit status 1 if anything acknowledged was lost or doubled, a
replay differed, or a bad record was not dead-lettered exactly once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ledger.testing.broker import Broker
from processors.testing.crash import crash_home, emitter_kills, processor_kills


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,kafka", help="comma-separated: sqlite, kafka")
    ap.add_argument("--processor-kills", type=int, default=60, help="processor SIGKILLs per backend")
    ap.add_argument("--emitter-kills", type=int, default=30, help="emitter SIGKILLs per backend")
    ap.add_argument("--events", type=int, default=10_000, help="events the killed emitter must append")
    ap.add_argument("--processors", default="journal,allocations", help="processors killed in turn")
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--kafka", default=None, help="bootstrap servers of a cluster to use instead of a local Tansu")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - {"sqlite", "kafka"}
    if unknown:
        ap.error(f"unknown backend(s) {sorted(unknown)}")
    names = tuple(n for n in args.processors.split(",") if n)

    broker = None
    ok = True
    with tempfile.TemporaryDirectory(prefix="tokenledger-crash-") as tmp:
        try:
            for backend in backends:
                url = None
                if backend == "kafka":
                    if args.kafka:
                        url = f"kafka://{args.kafka}"
                    else:
                        broker = Broker(directory=Path(tmp) / "broker").start()
                        url = broker.url
                t0 = time.monotonic()
                em = emitter_kills(crash_home(Path(tmp) / f"{backend}-emitter", url, agents=("alice",)),
                                   args.emitter_kills, total=args.events, seed=args.seed)
                t1 = time.monotonic()
                print(f"{backend:6} emitter   kills={em.kills:4}  acknowledged={em.acknowledged:6}  "
                      f"on_log={em.on_log:6}  lost={em.lost}  duplicated={em.duplicated}  chain_ok={em.chain_ok}  "
                      f"({t1 - t0:.0f} s)", flush=True)
                pr = processor_kills(crash_home(Path(tmp) / f"{backend}-processors", url), args.processor_kills,
                                     seed=args.seed, names=names)
                t2 = time.monotonic()
                print(f"{backend:6} processor kills={pr.kills:4}  accepted={pr.accepted:6}  in_view={pr.in_view:6}  "
                      f"lost={pr.lost}  duplicated={pr.duplicated}  bad_records={pr.bad_records}  "
                      f"dead_letters_once={pr.dead_letters_once}  replay_equal={pr.replay_equal}  "
                      f"[{','.join(names)}] ({t2 - t1:.0f} s)", flush=True)
                ok = ok and em.ok and pr.ok
                if broker is not None:
                    broker.stop()
                    broker = None
        finally:
            if broker is not None:
                broker.stop()
    print("OK: nothing acknowledged was lost or doubled" if ok else "FAILED: see the figures above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
