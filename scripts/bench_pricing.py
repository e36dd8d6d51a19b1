#!/usr/bin/env python3
"""LLM calls priced per second: through the allocations processor, through the price book in-process, and the raw
limit — the same formula in plain Decimal arithmetic on rates already looked up — in the same run, on the same
calls.

The book is the installed catalog's (what `tokenledger init` seeds: ~800 price lines and ~460 match rules). The calls
are a realistic mix of the ids providers really report: exact ids, dated ids (resolved by a match rule), Bedrock and
Vertex ids, batch and priority service tiers, prompts past the 200k-token tier, cache reads and 1-hour cache writes.

    python scripts/bench_pricing.py                 # 50,000 calls
    python scripts/bench_pricing.py --calls 200000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_processors is a script in this folder
from bench_processors import measure_processor

# (provider, model id as reported, service tier)
IDS = [("anthropic", "claude-sonnet-4-5", ""), ("anthropic", "claude-haiku-4-5-20251001", ""),
       ("anthropic", "claude-sonnet-4-5-20250929", "batch"), ("openai", "gpt-4.1-2025-04-14", ""),
       ("openai", "gpt-5", "priority"), ("openai", "gpt-4.1-mini", "batch"), ("google", "gemini-2.5-pro", ""),
       ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", ""), ("vertex_ai", "claude-sonnet-4-5@20250929", ""),
       ("litellm", "openai/gpt-4.1", "")]
MICROS = Decimal(1_000_000)


def calls(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        provider, model, tier = rng.choice(IDS)
        tin = rng.choice([800, 4_000, 12_000, 60_000, 250_000])
        read = rng.randrange(0, tin // 2)
        write = rng.randrange(0, (tin - read) // 4 + 1)
        out.append({"provider": provider, "model": model, "service_tier": tier, "input_tokens": tin,
                    "output_tokens": rng.randrange(10, 4_000), "cache_read_tokens": read, "cache_write_tokens": write,
                    "cache_write_1h_tokens": write // 2})
    return out


def seeded_book():
    from ledger.economics.price_events import price_event_time_us, seed_events
    from ledger.economics.pricing import PriceBook
    from ledger.wire.events import PriceSet

    book = PriceBook()
    for body in seed_events():
        apply = book.apply_price_set if isinstance(body, PriceSet) else book.apply_price_match
        apply(body, price_event_time_us(body))
    return book


def in_process(book, work: list[dict], at_us: int) -> tuple[float, list]:
    from ledger.economics.pricing import usage_cost

    prices = []
    t = time.perf_counter()
    for c in work:
        q = book.quote(c["provider"], c["model"], at_us, service_tier=c["service_tier"], input_tokens=c["input_tokens"])
        usage_cost(q.entry.price, input_tokens=c["input_tokens"], output_tokens=c["output_tokens"],
                   cache_read_tokens=c["cache_read_tokens"], cache_write_tokens=c["cache_write_tokens"],
                   cache_write_1h_tokens=c["cache_write_1h_tokens"])
        prices.append(q.entry.price)
    return time.perf_counter() - t, prices


def raw_decimal(work: list[dict], prices: list) -> float:
    """The formula with nothing of ours: each part tokens x rate / 1e6 in Decimal, rounded half to even, summed."""
    rates = [tuple(Decimal(r) for r in (p.input, p.cache_read, p.cache_write, p.cache_write_1h, p.output))
             for p in prices]
    t = time.perf_counter()
    for c, (r_in, r_read, r_write, r_1h, r_out) in zip(work, rates, strict=True):
        parts = ((c["input_tokens"] - c["cache_read_tokens"] - c["cache_write_tokens"], r_in),
                 (c["cache_read_tokens"], r_read), (c["cache_write_tokens"] - c["cache_write_1h_tokens"], r_write),
                 (c["cache_write_1h_tokens"], r_1h), (c["output_tokens"], r_out))
        sum((Decimal(n) * r / MICROS).to_integral_value(rounding=ROUND_HALF_EVEN) for n, r in parts)
    return time.perf_counter() - t


def build_home(path: Path, work: list[dict]) -> None:
    from ledger.sdk.emitter import Emitter
    from ledger.sdk.home import Home
    from ledger.sdk.registration import bootstrap, register_signer
    from ledger.wire.events import Context

    home = Home.init(path)
    log = home.open_log()
    try:
        bootstrap(home, log)
        register_signer(home, log, "caller")
    finally:
        log.close()
    t0 = time.time_ns() // 1000 - 10_000_000
    with Emitter.open("caller", home=path, context=Context(org="o", project="p")) as em:
        for i, c in enumerate(work):
            em.action("llm", **c, event_time_us=t0 + i)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=50_000, help="LLM calls to price (default 50,000)")
    args = ap.parse_args()
    work = calls(args.calls)
    book = seeded_book()
    now = time.time_ns() // 1000
    print(f"pricing benchmark — Python {sys.version.split()[0]}, {args.calls:,} calls, book: {book!r}")
    dt_book, prices = in_process(book, work, now)
    dt_raw = raw_decimal(work, prices)
    print(f"  raw limit: Decimal arithmetic of the formula, rates looked up already: {args.calls / dt_raw:>12,.0f} "
          "calls/s")
    print(f"  price book in-process (resolve + tiers + usage_cost):                 {args.calls / dt_book:>12,.0f} "
          f"calls/s  ({dt_raw / dt_book:.2f}x raw)")
    with tempfile.TemporaryDirectory(prefix="tl-bench-pricing-") as tmp:
        home = Path(tmp) / "home"
        build_home(home, work)
        journal = measure_processor(home, "journal")
        alloc = measure_processor(home, "allocations")
        priced = alloc["rows"]["llm_calls"]
        print(f"  journal (verify + decode + insert, the reference processor rate):      "
              f"{journal['events'] / journal['seconds']:>12,.0f} events/s")
        print(f"  allocations processor, offset 0 -> caught up ({priced:,} calls priced, "
              f"{alloc['rows']['unpriced']:,} unpriced): {priced / alloc['seconds']:>10,.0f} calls/s  "
              f"({alloc['events'] / alloc['seconds']:,.0f} events/s, peak RSS {alloc['peak_rss_mb']:.0f} MB)")
        if priced != args.calls:
            print(f"  NOTE: {args.calls - priced:,} calls were not priced (see the unpriced view)")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
