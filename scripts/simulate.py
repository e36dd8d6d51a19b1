#!/usr/bin/env python3
"""Run the deterministic processor simulation (processors/testing/simulator.py) for one seed or many.

    python scripts/simulate.py --seed 17            # replay one seed and print its trace
    python scripts/simulate.py --seeds 0-199        # run many; print failing seeds
"""

from __future__ import annotations

import argparse
import sys
import time

from processors.testing.simulator import simulate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--seed", type=int)
    g.add_argument("--seeds", help="range A-B (inclusive)")
    ap.add_argument("--steps", type=int, default=120)
    a = ap.parse_args()
    if a.seed is not None:
        seeds = [a.seed]
    else:
        lo, _, hi = a.seeds.partition("-")
        seeds = list(range(int(lo), int(hi or lo) + 1))
    failed = []
    t0 = time.perf_counter()
    for s in seeds:
        try:
            r = simulate(s, steps=a.steps, verbose=a.seed is not None)
            print(f"seed {s}: ok  steps={r.steps} records={r.records} events={r.events} rejected={r.rejected} "
                  f"crashes={dict(r.crashes)} digest={r.digest[:16]}")
        except AssertionError as e:
            failed.append(s)
            print(f"seed {s}: FAILED: {e}")
    print(f"{len(seeds) - len(failed)}/{len(seeds)} seeds passed in {time.perf_counter() - t0:.1f}s"
          + (f"; failing: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
