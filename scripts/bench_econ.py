#!/usr/bin/env python3
"""Interactions/s through the allocations and settlements processors, against the journal's events/s
measured in the same run on the same log.

The input is the demo workload (about 16% of its events are interactions) signed in batches of 100
events on the embedded log, after the default price book (price_set control events) and a one-minute
Shapley settlement rule (so windows close throughout). Each processor runs in a fresh process from
offset 0 until caught up, into a fresh DuckDB file, producing its derived events: the journal first
(the reference rate), then allocations (one `allocation` event per interaction and default method:
requestor_pays and shapley), then settlements over the allocations it produced.

    python scripts/bench_econ.py                # ~80k events
    python scripts/bench_econ.py --events 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_processors is a script in this folder
from bench_processors import measure_processor

ROOT = Path(__file__).resolve().parent.parent
# the workload starts 23 hours before the benchmark: readers judge every claimed time against its record's
# append time, and the test homes' skew window (ledger.testing.homes.TEST_WINDOW) reaches one day back
T0 = time.time_ns() // 1000 - 23 * 3_600_000_000
MINUTE_US = 60_000_000
MAX_EVENTS = 80_000  # what fits between T0 and now at 4,000 s of event time per fill run


def build_home(path: Path, events: int) -> int:
    from ledger.economics.price_events import default_price_events, price_event_time_us
    from ledger.sdk.emitter import Emitter
    from ledger.testing.homes import fill, make_home
    from ledger.wire.events import SettlementRule

    home = make_home(path, agents=())
    log = home.open_log()
    try:
        with Emitter.for_operator(home, log) as em:
            for body in default_price_events():
                em.emit(body, event_time_us=price_event_time_us(body))
            em.emit(SettlementRule(rule_id="bench-minute", tier="tier_2_rule_based", method="shapley",
                                   window_us=MINUTE_US, threshold_micros=10_000), event_time_us=T0)
    finally:
        log.close()
    n = 0
    i = 0
    while n < events:
        # each run starts 4,000 s of event time after the previous one, so windows keep closing
        n += _fill_at(home, fill, i)
        i += 1
    return n


def _fill_at(home, fill, i: int) -> int:
    from ledger.testing import homes as support

    saved = support.T0
    support.T0 = T0 + i * 4_000_000_000  # fill() starts its workload at T0 + 1 s
    try:
        return fill(home, tasks=200, batch_size=100, seed=i, run=f"bench{i}")
    finally:
        support.T0 = saved





def run(home: Path, name: str) -> dict:
    return measure_processor(home, name)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=80_000, help="agent events in the log (default 80,000, at most)")
    args = ap.parse_args()
    if not 0 < args.events <= MAX_EVENTS:
        # each ~4,000 events span 4,000 s of event time from T0 (23 h ago): more would be stamped in the future,
        # outside the skew window, and quarantined
        ap.error(f"--events must be between 1 and {MAX_EVENTS:,}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        n = build_home(home, args.events)
        journal = run(home, "journal")
        alloc = run(home, "allocations")
        settle = run(home, "settlements")
    interactions = alloc["rows"]["interactions"] + alloc["rows"]["unpriced"]
    econ_s = alloc["seconds"] + settle["seconds"]
    journal_eps = journal["events"] / journal["seconds"]
    econ_ips = interactions / econ_s
    print(f"log: {n:,} agent events, {interactions:,} interactions ({interactions / n:.1%})")
    print(f"journal:     {journal['events']:,} events in {journal['seconds']:.2f}s = {journal_eps:,.0f} events/s")
    print(f"allocations: {interactions:,} interactions -> {alloc['rows']['allocations']:,} allocations "
          f"({alloc['produced']:,} signed records) in {alloc['seconds']:.2f}s")
    print(f"settlements: {settle['events']:,} allocation events -> {settle['rows']['settlements']:,} settlements, "
          f"{settle['rows']['net_positions']:,} positions in {settle['seconds']:.2f}s")
    print(f"allocations + settlements: {econ_ips:,.0f} interactions/s")
    print(f"ratio to the journal (interactions/s ÷ journal events/s): {econ_ips / journal_eps:.3f}; "
          f"per log event (events/s ÷ journal events/s): {n / econ_s / journal_eps:.3f}")


if __name__ == "__main__":
    main()
