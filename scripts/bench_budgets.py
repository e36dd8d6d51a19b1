#!/usr/bin/env python3
"""Budgets and reputation throughput, each as a ratio to the journal's rate measured in the same run.

The input is the demo workload (~80k events, signed in batches of 100 on the embedded log, built like
scripts/bench_processors.py) plus a few budget policies: the project's action budget, each agent's
LLM-token and USD budgets (USD priced from the default price book, on the log as price_set control events
as `tokenledger init` appends them), the org's compute budget, all with
one-hour windows so resets, limits and alerts happen. Each processor runs in a fresh process with a
fresh DuckDB file from offset 0 until caught up (the real runtime: poll → verify → fold → one DuckDB
transaction per batch → derived events produced), so the ratio compares the processors' own work
(fold, views, alerts) on top of the same verification and I/O.

    python scripts/bench_budgets.py               # ~80k events (~1 min)
    python scripts/bench_budgets.py --events 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_processors import measure_processor

ROOT = Path(__file__).resolve().parent.parent
from ledger.units import US_PER_HOUR  # noqa: E402


def build_home(path: Path, events: int) -> int:
    from ledger.economics.price_events import default_price_events, price_event_time_us
    from ledger.sdk.emitter import Emitter
    from ledger.testing.homes import T0, fill, make_home
    from ledger.testing.workload import AGENTS, ORG, PROJECT
    from ledger.wire.events import BudgetPolicy

    home = make_home(path, agents=())
    common = dict(reset_interval_us=US_PER_HOUR, effective_from_us=T0, suspend_at_hard=False, throttle_at_soft=False)
    policies = [BudgetPolicy(scope="project", scope_id=PROJECT, budget_kind="action", allocation=2_000, **common),
                BudgetPolicy(scope="org", scope_id=ORG, budget_kind="compute", allocation=50_000, **common)]
    for agent, _, _, prio in AGENTS:
        policies.append(BudgetPolicy(scope="agent", scope_id=agent, budget_kind="llm_tokens", allocation=2_000_000,
                                     priority=prio, hard_limit_action="throttle", **common))
        policies.append(BudgetPolicy(scope="agent", scope_id=agent, budget_kind="usd", allocation=20_000_000,
                                     priority=prio, **common))
    log = home.open_log()
    try:
        with Emitter.for_operator(home, log) as em:
            for body in default_price_events():  # the processors price from the log only
                em.emit(body, event_time_us=price_event_time_us(body))
            for i, p in enumerate(policies):
                em.emit(p, event_time_us=T0 + 100 + i)
    finally:
        log.close()
    n, i = 0, 0
    while n < events:
        n += fill(home, tasks=200, batch_size=100, seed=i, run=f"bench{i}")
        i += 1
    return n


def measure(home: Path, name: str) -> dict:
    r = measure_processor(home, name)
    r["events_per_s"] = r["events"] / r["seconds"]
    return r



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=80_000, help="approximate number of demo events")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-budgets-") as tmp:
        home = Path(tmp) / "home"
        n = build_home(home, args.events)
        print(f"log: {n:,} agent events + 10 budget policies (embedded SQLite log)")
        journal = measure(home, "journal")
        print(f"{'journal':<11} {journal['events_per_s']:>10,.0f} events/s  ({journal['seconds']:.2f} s)  "
              f"ratio 1.00 (the reference)")
        for name in ("budgets", "reputation"):
            r = measure(home, name)
            print(f"{name:<11} {r['events_per_s']:>10,.0f} events/s  ({r['seconds']:.2f} s)  "
                  f"ratio {r['events_per_s'] / journal['events_per_s']:.2f} of the journal  "
                  f"({r['produced']:,} derived records produced)")


if __name__ == "__main__":
    main()
