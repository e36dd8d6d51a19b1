#!/usr/bin/env python3
"""Load test of ``tokenledger serve`` on loopback, beside the raw SDK rate of the same events in the same run.

Three measurements, each bounded (it stops by itself; nothing leaves 127.0.0.1):

1. **raw SDK emit** (the limit the service is compared with): the same LLM-call events through an in-process
   ``Emitter`` (batches of ``--batch``, flushed per batch: durable like an acknowledged request) on the same kind of
   home, and the bare HTTP round trip of ``GET /healthz`` with one client (the HTTP floor of this machine);
2. **JSON ingest**: ``--clients`` client processes, one agent and one keep-alive connection each, POST ``/v1/events`` in
   batches of ``--batch`` until ``--events`` are acknowledged; events/s over the whole run and p50/p99 latency per
   request;
3. **reservation decisions** with every processor running (``tokenledger run``): ``--reservations``
   reservations one after the other, each ``POST /v1/reservations`` then ``GET /v1/reservations/{id}?wait=10s``
   until decided; p50/p99 of POST-to-decision.

    python scripts/bench_serve.py                        # 100,000 events, 4 clients, batches of 100
    python scripts/bench_serve.py --events 300000 --clients 6 --reservations 300

Goals (issue 17): ingest >= 20k events/s in batches of 100; reservation decision p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from ledger.sdk.emitter import Emitter
from ledger.testing.homes import make_home
from processors.testing.serve import Served, running_service

HEALTHZ_ROUNDS = 2_000  # bare round trips timed for the HTTP floor
WARMUP_REQUESTS = 5  # per client, not timed: connection set-up, first-use imports in the service
RESERVE_WAIT = "10s"  # long-poll bound per GET
CATCH_UP_TIMEOUT_S = 600.0  # the budgets processor must have read the ingested events before reservations are timed


def event(agent: str, i: int) -> dict[str, Any]:
    return {"kind": "action", "operation": "llm.call", "provider": "openai", "model": "gpt-4.1",
            "input_tokens": 1_200 + i % 100, "output_tokens": 300, "idempotency_key": f"{agent}-resp-{i}"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def raw_sdk(home: Path, agent: str, events: int, batch: int) -> float:
    """Events per second through the SDK, each batch flushed (acknowledged) before the next."""
    with Emitter.open(agent, home=home, batch_size=batch, background_flush=False) as em:
        started = time.perf_counter()
        for start in range(0, events, batch):
            for i in range(start, min(events, start + batch)):
                e = event(agent, i)
                em.action(e["operation"], provider=e["provider"], model=e["model"], input_tokens=e["input_tokens"],
                          output_tokens=e["output_tokens"], idempotency_key=e["idempotency_key"])
            em.flush()
        return events / (time.perf_counter() - started)


def healthz_floor(served: Served) -> float:
    with httpx.Client(base_url=served.url) as c:
        for _ in range(50):
            c.get("/healthz")
        started = time.perf_counter()
        for _ in range(HEALTHZ_ROUNDS):
            c.get("/healthz")
        return HEALTHZ_ROUNDS / (time.perf_counter() - started)


def _client(url: str, token: str, bodies: list[bytes], warm: list[bytes], barrier: Any,
            out: Any) -> None:
    """One client process: warm up, wait for the others, post every body in turn; report latencies and counts."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    acked = 0
    error = None
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        for body in warm:
            c.post("/v1/events", content=body)
        barrier.wait()
        started = time.perf_counter()
        for body in bodies:
            t = time.perf_counter()
            r = c.post("/v1/events", content=body)
            latencies.append(time.perf_counter() - t)
            if r.status_code != 201:
                error = f"{r.status_code} {r.text[:200]}"
                break
            acked += r.json()["appended"]
        ended = time.perf_counter()
    out.put((latencies, acked, started, ended, error))


def ingest(served: Served, agents: list[str], events: int, batch: int) -> tuple[float, list[float], int]:
    """(events/s, per-request latencies in seconds, events acknowledged). Each client is its own process (one agent,
    one keep-alive connection): client threads in one process would share one interpreter lock and measure the
    client, not the service."""
    per_client = events // len(agents)
    tokens = [served.token(a, scopes=("ingest",), rate_per_s=100_000) for a in agents]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(agents))
    out = ctx.Queue()
    procs = []
    for k, a in enumerate(agents):
        bodies = [json.dumps({"events": [event(a, i) for i in range(s, min(per_client, s + batch))]}).encode()
                  for s in range(0, per_client, batch)]
        warm = [json.dumps({"events": [event(a + "-warm", i) for i in range(s, s + batch)]}).encode()
                for s in range(0, WARMUP_REQUESTS * batch, batch)]
        procs.append(ctx.Process(target=_client, args=(served.url, tokens[k], bodies, warm, barrier, out)))
    for p in procs:
        p.start()
    results = [out.get(timeout=CATCH_UP_TIMEOUT_S) for _ in procs]
    for p in procs:
        p.join()
    errors = [r[4] for r in results if r[4]]
    if errors:
        raise SystemExit(f"ingest failed: {errors[0]}")
    wall = max(r[3] for r in results) - min(r[2] for r in results)
    acked = sum(r[1] for r in results)
    return acked / wall, [x for r in results for x in r[0]], acked


def tokenledger(home: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "processors.cli", *args, "--home", str(home)], check=True,
                   capture_output=True, timeout=300)


def wait_caught_up(home: Path, processor: str) -> None:
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-m", "processors.cli", "status", "--json", "--home", str(home)],
                             capture_output=True, text=True, timeout=60)
        rows = {r["processor"]: r for r in json.loads(out.stdout or "[]")}
        row = rows.get(processor, {})
        if row.get("state") == "running" and row.get("lag") == 0:
            return
        time.sleep(0.5)
    raise SystemExit(f"{processor} did not catch up within {CATCH_UP_TIMEOUT_S:.0f} s")


def reservations(served: Served, agent: str, n: int) -> tuple[list[float], dict[str, int]]:
    token = served.token(agent, scopes=("reserve", "read"), rate_per_s=100_000)
    times: list[float] = []
    outcomes: dict[str, int] = {}
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        for _ in range(n):
            rid = uuid.uuid4().hex
            t = time.perf_counter()
            r = c.post("/v1/reservations", json={"reservation_id": rid, "kind": "usd", "amount": 1_000, "ttl_s": 60})
            if r.status_code != 202:
                raise SystemExit(f"reserve failed: {r.status_code} {r.text[:300]}")
            while True:
                g = c.get(f"/v1/reservations/{rid}", params={"wait": RESERVE_WAIT})
                status = g.json().get("status")
                if status != "pending":
                    break
            times.append(time.perf_counter() - t)
            outcomes[status] = outcomes.get(status, 0) + 1
            c.post(f"/v1/reservations/{rid}/release", json={"kind": "usd"})
    return times, outcomes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events to ingest over HTTP (and emit raw)")
    ap.add_argument("--batch", type=int, default=100, help="events per request (and per SDK flush)")
    ap.add_argument("--clients", type=int, default=4, help="client processes, one agent each")
    ap.add_argument("--reservations", type=int, default=200, help="reservation decisions timed")
    a = ap.parse_args()
    agents = [f"agent{k}" for k in range(a.clients)]
    with tempfile.TemporaryDirectory() as tmp:
        raw_home = make_home(Path(tmp) / "raw", agents=("raw",))
        sdk_rate = raw_sdk(raw_home.path, "raw", a.events, a.batch)
        print(f"raw SDK emit (1 agent, flushed per {a.batch}): {sdk_rate:,.0f} events/s", flush=True)
        home = make_home(Path(tmp) / "home", agents=(*agents, "reserver"))
        tokenledger(home.path, "budget", "set", "agent", "reserver", "--kind", "usd", "--allocation", "1000000000")
        with running_service(home.path) as served:
            floor = healthz_floor(served)
            print(f"HTTP floor (GET /healthz, 1 client, keep-alive): {floor:,.0f} requests/s", flush=True)
            rate, lat, acked = ingest(served, agents, a.events, a.batch)
            print(f"JSON ingest ({a.clients} clients, batches of {a.batch}): {rate:,.0f} events/s "
                  f"({acked:,} acknowledged) = {rate / sdk_rate:.2f} x raw SDK; request latency "
                  f"p50 {pct(lat, 0.5) * 1e3:.1f} ms, p99 {pct(lat, 0.99) * 1e3:.1f} ms "
                  f"(goal >= 20,000 events/s)", flush=True)
            # every processor runs (as `tokenledger run` starts them): the decision competes with all of them
            run = subprocess.Popen([sys.executable, "-m", "processors.cli", "run", "--home", str(home.path)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for name in ("journal", "budgets", "allocations"):
                    wait_caught_up(home.path, name)
                times, outcomes = reservations(served, "reserver", a.reservations)
            finally:
                run.terminate()
                run.wait(60)
            print(f"reservation decision (all processors running, {len(times)} sequential): p50 "
                  f"{statistics.median(times) * 1e3:.0f} ms, p99 {pct(times, 0.99) * 1e3:.0f} ms, max "
                  f"{max(times) * 1e3:.0f} ms; outcomes {outcomes} (goal p99 <= 250 ms)", flush=True)


if __name__ == "__main__":
    main()
