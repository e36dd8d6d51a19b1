#!/usr/bin/env python3
"""Per-call overhead of ``ledger.sdk.instrument``: an instrumented client call vs the bare client call, in the same
run, against the same loopback fake provider (``ledger.testing.provider_server``), sync and not streaming, for the
real ``openai`` and ``anthropic`` client libraries.

Each round times one bare and one instrumented call per provider (alternating which goes first, so drift and
cache warmth hit both alike), with a monotonic clock around the ``create`` call only. Every response has its own id,
so each instrumented call emits a new signed event through a real ``Emitter`` on a temporary home (SQLite log,
background flush: what an agent runs). The overhead is the instrumented time minus the bare time, per statistic.

    python scripts/bench_instrument.py               # 500 calls per provider and mode
    python scripts/bench_instrument.py --calls 2000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import openai

from ledger.sdk.emitter import Emitter
from ledger.sdk.instrument import instrument
from ledger.testing import provider_server as ps
from ledger.testing.homes import make_home

WARMUP_CALLS = 20  # per provider and mode, not timed: connection set-up, first-use imports, pydantic models
NS_PER_US = 1_000
MESSAGES = [{"role": "user", "content": "Name one prime number."}]


def queue(server: ps.ProviderServer, n: int) -> None:
    """``n`` distinct replies per endpoint (a response id repeated would be metered once, not every call)."""
    for i in range(n):
        server.reply_json("/v1/chat/completions", ps.chat_completion(
            f"chatcmpl-bench{i}", "gpt-4.1-2025-04-14", 1_200, 80, cached_tokens=1_024, reasoning_tokens=0),
            headers={"x-request-id": f"req_oa{i}"})
        server.reply_json("/v1/messages", ps.anthropic_message(
            f"msg_bench{i}", "claude-sonnet-4-6", ps.anthropic_usage(200, 80, cache_write_5m=500, cache_read=3_000)),
            headers={"request-id": f"req_an{i}"})


def timed(call: Callable[[], Any]) -> int:
    start = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - start


def run(calls: int) -> dict[str, dict[str, list[int]]]:
    times: dict[str, dict[str, list[int]]] = {p: {"bare": [], "instrumented": []} for p in ("openai", "anthropic")}
    with tempfile.TemporaryDirectory() as tmp, ps.ProviderServer() as server:
        home = make_home(Path(tmp) / "home", agents=("bench",))
        queue(server, 2 * (calls + WARMUP_CALLS))
        with Emitter.open("bench", home=home.path) as em:
            clients = {
                "openai": {
                    "bare": openai.OpenAI(base_url=server.openai_url, api_key="bench", max_retries=0),
                    "instrumented": instrument(openai.OpenAI(base_url=server.openai_url, api_key="bench",
                                                             max_retries=0), em)},
                "anthropic": {
                    "bare": anthropic.Anthropic(base_url=server.anthropic_url, api_key="bench", max_retries=0),
                    "instrumented": instrument(anthropic.Anthropic(base_url=server.anthropic_url, api_key="bench",
                                                                   max_retries=0), em)}}
            call = {
                "openai": lambda c: c.chat.completions.create(model="gpt-4.1", messages=MESSAGES),
                "anthropic": lambda c: c.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                                                         messages=MESSAGES)}
            for i in range(WARMUP_CALLS + calls):
                for provider in ("openai", "anthropic"):
                    modes = ("bare", "instrumented") if i % 2 == 0 else ("instrumented", "bare")
                    for mode in modes:
                        client = clients[provider][mode]
                        ns = timed(lambda client=client, provider=provider: call[provider](client))
                        if i >= WARMUP_CALLS:
                            times[provider][mode].append(ns)
            em.flush()
            stats = em.stats()
        metered = stats.emitted
        expected = 2 * (WARMUP_CALLS + calls)
        if metered != expected:
            raise SystemExit(f"metered {metered} calls, expected {expected}: the instrumented path is broken")
    return times


def us(ns: float) -> str:
    return f"{ns / NS_PER_US:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="timed calls per provider and mode (default 500)")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    times = run(args.calls)
    print(f"instrument overhead per call, sync, not streaming, {args.calls:,} calls per provider and mode (µs)")
    header = f"{'provider':<10} {'statistic':<9} {'bare':>10} {'instrumented':>13} {'overhead':>10}"
    print(header)
    print("-" * len(header))
    for provider, modes in times.items():
        for name, stat in (("min", min), ("median", statistics.median)):
            bare, inst = stat(modes["bare"]), stat(modes["instrumented"])
            print(f"{provider:<10} {name:<9} {us(bare):>10} {us(inst):>13} {us(inst - bare):>10}")


if __name__ == "__main__":
    main()
