#!/usr/bin/env python3
"""Run the deterministic processor simulation (processors/testing/simulator.py) for one seed or many.

    python scripts/simulate.py --seed 17 --processor budgets     # replay one seed and print its trace
    python scripts/simulate.py --seeds 0-99                      # every processor; print failing seeds
    python scripts/simulate.py --seeds 0-99 --backdate none      # control events dated "now"
    python scripts/simulate.py --seeds 0-99 --backdate price_set --processor allocations

Exit status 1 when any seed failed. Seeds run in ``--jobs`` worker processes (default 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from processors import REGISTRY
from processors.testing.simulator import CONTROL_KINDS, ECONOMIC_KINDS, Knobs, simulate

# a name for a set of control kinds on the command line
KIND_SETS = {"all": CONTROL_KINDS, "none": (), "economic": ECONOMIC_KINDS, "keys": ("key_rotated", "key_revoked")}


def kinds(text: str) -> tuple[str, ...]:
    if text in KIND_SETS:
        return KIND_SETS[text]
    out = tuple(k for k in text.split(",") if k)
    unknown = [k for k in out if k not in CONTROL_KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown control kind(s) {unknown}; known: {', '.join(CONTROL_KINDS)}")
    return out


def seed_range(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def one(job: tuple[str, int, Knobs, bool]) -> tuple[str, int, str | None, str]:
    name, seed, knobs, verbose = job
    try:
        r = simulate(seed, processor=name, knobs=knobs, verbose=verbose)
    except AssertionError as e:
        return name, seed, str(e), ""
    return name, seed, None, (f"steps={r.steps} records={r.records} events={r.events} rejected={r.rejected} "
                              f"crashes={sum(r.crashes.values())} controls={sum(r.controls.values())} "
                              f"digest={r.digest[:16]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--seed", type=int)
    g.add_argument("--seeds", type=seed_range, help="range A-B (inclusive)")
    ap.add_argument("--processor", default="all", choices=["all", *sorted(REGISTRY)])
    ap.add_argument("--steps", type=int, default=Knobs.steps)
    ap.add_argument("--control", type=kinds, default=CONTROL_KINDS,
                    help="control kinds the operator appends: all, none, economic, keys or a comma list")
    ap.add_argument("--backdate", type=kinds, default=CONTROL_KINDS,
                    help="control kinds whose event time lies before the data they concern (same choices)")
    ap.add_argument("--skew-us", type=int, default=Knobs.clock_skew_us, help="max producer clock skew")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    a = ap.parse_args()
    seeds = [a.seed] if a.seed is not None else a.seeds
    names = sorted(REGISTRY) if a.processor == "all" else [a.processor]
    knobs = replace(Knobs(), steps=a.steps, control_kinds=a.control, backdated=frozenset(a.backdate),
                    clock_skew_us=a.skew_us)
    verbose = a.seed is not None
    jobs = [(n, s, knobs, verbose) for n in names for s in seeds]
    failed: dict[str, list[int]] = {n: [] for n in names}
    t0 = time.perf_counter()
    results: Iterable[tuple[str, int, str | None, str]]
    if a.jobs > 1 and len(jobs) > 1:
        pool = ProcessPoolExecutor(a.jobs)
        results = pool.map(one, jobs, chunksize=4)
    else:
        pool, results = None, map(one, jobs)
    try:
        for name, seed, error, summary in results:
            if error is None:
                print(f"{name} seed {seed}: ok  {summary}", flush=True)
            else:
                failed[name].append(seed)
                print(f"{name} seed {seed}: FAILED: {error}", flush=True)
    finally:
        if pool is not None:
            pool.shutdown()
    print(f"\n{len(seeds)} seeds x {len(names)} processors in {time.perf_counter() - t0:.1f}s")
    for n in names:
        bad = failed[n]
        print(f"  {n:12s} {len(seeds) - len(bad)}/{len(seeds)} passed" + (f"; failing: {bad}" if bad else ""))
    return 1 if any(failed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
