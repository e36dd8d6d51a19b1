"""A realistic multi-agent workload: a planner fans tasks out to a researcher, a writer and a critic,
who call each other and LLMs, read data, burn compute and rate each other.

``workload`` is pure (seeded, no clock): it yields (signer, body, event time, context) in event-time
order. ``run_demo`` (I/O) registers the agents in a ledger home, emits the workload through one
Emitter per agent, verifies the log and returns a summary.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger import limits
from ledger.wire.events import (
    Action,
    AgentRegistered,
    Body,
    BudgetPolicy,
    ClockPolicy,
    Compute,
    Context,
    Data,
    Flow,
    Grant,
    Interaction,
    LlmUsage,
    Trust,
)

if TYPE_CHECKING:
    from ledger.sdk.home import Home

# (agent, provider, model, priority) — models from the default price book
AGENTS = (
    ("planner", "anthropic", "claude-opus-4-6", 3),
    ("researcher", "openai", "gpt-4.1", 2),
    ("writer", "anthropic", "claude-sonnet-4-6", 2),
    ("critic", "google", "gemini-2.5-pro", 1),
)
MODEL = {a: (p, m) for a, p, m, _ in AGENTS}
TASK_SPACING_US = 20_000_000  # a new task every ~20 s of event time
DEMO_CLOCK_SPARE_US = 10 * 60_000_000  # the demo's skew window reaches ten minutes past its made-up past
ORG, PROJECT = "acme", "research-assistant"


def _llm(rng: random.Random, agent: str, op: str, lo_in: int, hi_in: int, lo_out: int, hi_out: int,
         cache_share: float = 0.4) -> Action:
    provider, model = MODEL[agent]
    tin = rng.randint(lo_in, hi_in)
    tout = rng.randint(lo_out, hi_out)
    cached = int(tin * cache_share * rng.random())
    written = rng.randint(0, (tin - cached) // 4) if rng.random() < 0.2 else 0
    reasoning = rng.randint(0, tout // 3) if model in ("o3", "claude-opus-4-6") else 0
    return Action(operation=op, cost_weight_milli=rng.choice((1000, 1500, 3200)),
                  usage=LlmUsage(provider=provider, model=model, input_tokens=tin, output_tokens=tout,
                                 cache_read_tokens=cached, cache_write_tokens=written, reasoning_tokens=reasoning))


def _call(rng: random.Random, task: str, n: int, req: str, resp: str, req_tokens: int, resp_tokens: int) -> Interaction:
    rp, rm = MODEL[req]
    sp, sm = MODEL[resp]
    return Interaction(
        interaction_id=f"{task}-call{n}", requestor_id=req, responder_id=resp,
        requestor_provider=rp, requestor_model=rm, responder_provider=sp, responder_model=sm,
        request_output=Flow(req_tokens), request_input=Flow(req_tokens, int(req_tokens * 0.3 * rng.random())),
        response_output=Flow(resp_tokens), response_input=Flow(resp_tokens, int(resp_tokens * 0.2 * rng.random())))


def _task_clock(rng: random.Random, base_us: int, task: str, run: str) -> Callable[[str], tuple[int, Context]]:
    """One task's event times: each step is a random 0.05-0.9 s after the one before, from ``base_us``."""
    clock = [base_us]

    def at(stage: str) -> tuple[int, Context]:
        clock[0] += rng.randint(50_000, 900_000)
        return clock[0], Context(org=ORG, project=PROJECT, task=task, stage=stage, run=run)

    return at


def workload(*, tasks: int, seed: int = 7, start_us: int, run: str) -> Iterator[tuple[str, Body, int, Context]]:
    """The demo's events in event-time order. Same arguments, same events."""
    rng = random.Random(seed)
    for t in range(tasks):
        task = f"{run}-task{t:04d}"
        at = _task_clock(rng, start_us + t * TASK_SPACING_US, task, run)
        out: list[tuple[str, Body, int, Context]] = []
        tm, ctx = at("plan")
        out.append(("planner", _llm(rng, "planner", "plan", 2_000, 6_000, 300, 1_200), tm, ctx))
        tm, ctx = at("research")
        out.append(("planner", _call(rng, task, 1, "planner", "researcher", rng.randint(600, 2_000),
                                     rng.randint(2_000, 7_000)), tm, ctx))
        for _ in range(rng.randint(2, 6)):
            tm, ctx = at("research")
            out.append(("researcher", Action(operation="web.search", cost_weight_milli=1000), tm, ctx))
            tm, ctx = at("research")
            data = Data(bytes_read=rng.randint(10_000, 2_000_000), bytes_written=rng.randint(0, 50_000),
                        source_hash=f"sha256:{rng.getrandbits(64):016x}", duration_us=rng.randint(10_000, 900_000))
            out.append(("researcher", data, tm, ctx))
        for _ in range(rng.randint(1, 3)):
            tm, ctx = at("research")
            out.append(("researcher", _llm(rng, "researcher", "summarize", 4_000, 20_000, 400, 2_000, 0.6), tm, ctx))
        tm, ctx = at("draft")
        out.append(("planner", _call(rng, task, 2, "planner", "writer", rng.randint(1_500, 5_000),
                                     rng.randint(1_000, 4_000)), tm, ctx))
        for _ in range(rng.randint(1, 3)):
            tm, ctx = at("draft")
            out.append(("writer", _llm(rng, "writer", "draft", 3_000, 12_000, 800, 4_000, 0.5), tm, ctx))
        tm, ctx = at("draft")
        out.append(("writer", Compute(node_id=f"node-{rng.randint(1, 4)}", cpu_time_slices=rng.randint(5, 120),
                                      gpu_time_slices=rng.randint(0, 8), peak_memory_mb=rng.randint(200, 4_000),
                                      parallel_jobs=rng.randint(1, 4)), tm, ctx))
        tm, ctx = at("review")
        out.append(("writer", _call(rng, task, 3, "writer", "critic", rng.randint(1_000, 4_000),
                                    rng.randint(200, 1_500)), tm, ctx))
        tm, ctx = at("review")
        out.append(("critic", _llm(rng, "critic", "review", 2_000, 8_000, 200, 1_000), tm, ctx))
        tm, ctx = at("review")
        out.append(("critic", Trust(subject_id="writer", dimension="accuracy", value_milli=rng.randint(-400, 1_000),
                                    source="critic-review"), tm, ctx))
        tm, ctx = at("review")
        out.append(("planner", Trust(subject_id="researcher", dimension=rng.choice(("reliability", "feedback")),
                                     value_milli=rng.randint(-200, 1_000), source="planner"), tm, ctx))
        if rng.random() < 0.15:  # sometimes the critic sends the draft back
            tm, ctx = at("revise")
            out.append(("critic", _call(rng, task, 4, "critic", "writer", rng.randint(300, 1_200),
                                        rng.randint(1_000, 3_000)), tm, ctx))
        out.sort(key=lambda e: e[2])
        yield from out


@dataclass
class DemoSummary:
    home: str
    log: str
    run: str
    tasks: int
    events: int
    records: int
    seconds: float
    per_agent: dict[str, dict[str, int]] = field(default_factory=dict)
    verify: dict[str, object] = field(default_factory=dict)


def demo_policies(*, start_us: int) -> list[BudgetPolicy]:
    """Budgets for the demo: the project's USD per hour, and each agent's LLM tokens per hour (sized
    so the busiest agents cross their soft limit and the budgets view has something to say)."""
    hour = 3_600_000_000
    out = [BudgetPolicy(scope="project", scope_id=PROJECT, budget_kind="usd", allocation=150_000_000,
                        reset_interval_us=hour, effective_from_us=start_us - start_us % hour,
                        hard_limit_action="alert_only", suspend_at_hard=False)]
    per_agent = {"planner": 1_000_000, "researcher": 6_000_000, "writer": 4_000_000, "critic": 1_500_000}
    for agent, tokens in per_agent.items():
        out.append(BudgetPolicy(scope="agent", scope_id=agent, budget_kind="llm_tokens", allocation=tokens,
                                reset_interval_us=hour, effective_from_us=start_us - start_us % hour,
                                hard_limit_action="alert_only", suspend_at_hard=False))
    return out


def demo_clock(span_us: int, agents: list[str]) -> list[Body]:
    """The control events that let a demo append ``span_us`` of made-up past: a skew window reaching back over
    it (ten minutes spare for the emitters' linger), and backfill grants when it is longer than any window."""
    behind = min(span_us + DEMO_CLOCK_SPARE_US, limits.MAX_CLOCK_SKEW_US)
    out: list[Body] = [ClockPolicy(max_behind_us=behind, max_ahead_us=limits.DEFAULT_MAX_CLOCK_AHEAD_US)]
    if behind < span_us + DEMO_CLOCK_SPARE_US:
        out += [Grant(agent_id=a, capability="backfill", max_age_us=span_us + DEMO_CLOCK_SPARE_US) for a in agents]
    return out


def registration(agent: str, public_key: bytes, key_id: str, priority: int) -> AgentRegistered:
    return AgentRegistered(agent_id=agent, key_id=key_id, public_key=public_key, role="agent", priority=priority,
                           org=ORG, project=PROJECT)


def run_demo(home: Home, *, tasks: int = 200, seed: int = 7, log_url: str | None = None,
             progress: Callable[[int], None] | None = None, batch_size: int = 100) -> DemoSummary:
    from ledger.integrity.keys import SigningKey, save_key
    from ledger.integrity.verify import audit
    from ledger.sdk.emitter import Emitter

    log = home.open_log(log_url)
    try:
        keys = {}
        with Emitter.for_operator(home, log) as op:
            for agent, _, _, prio in AGENTS:
                path = home.key_path(agent)
                if path.exists():
                    keys[agent] = home.load_key(agent)
                    continue
                keys[agent] = SigningKey.generate(agent)
                save_key(path, keys[agent])
                op.emit(registration(agent, keys[agent].public.raw, keys[agent].key_id, prio))
        now_us = time.time_ns() // 1000
        span = tasks * TASK_SPACING_US
        run = f"run-{now_us // 1_000_000:x}"
        with Emitter.for_operator(home, log) as op:
            # the demo writes a made-up past of ``span``: its operator widens the skew window to cover it (up to
            # the largest window; an older past is backfill, granted to the demo's agents), so readers take the
            # demo's history as live data instead of quarantining it as clock_skew
            for body in demo_clock(span, list(keys)):
                op.emit(body)
            for policy in demo_policies(start_us=now_us - span):
                op.emit(policy, event_time_us=now_us - span)
        emitters = {a: Emitter(log, keys[a], topic=home.topic, state_dir=home.state_dir, batch_size=batch_size,
                               linger_ms=50) for a in keys}
        per_agent: dict[str, dict[str, int]] = {a: {"events": 0, "llm_input_tokens": 0, "llm_output_tokens": 0,
                                                    "interactions": 0, "bytes_read": 0} for a in keys}
        n = 0
        t0 = time.perf_counter()
        try:
            for agent, body, tm, ctx in workload(tasks=tasks, seed=seed, start_us=now_us - span, run=run):
                emitters[agent].emit(body, event_time_us=tm, context=ctx)
                s = per_agent[agent]
                s["events"] += 1
                if isinstance(body, Action) and body.usage:
                    s["llm_input_tokens"] += body.usage.input_tokens
                    s["llm_output_tokens"] += body.usage.output_tokens
                elif isinstance(body, Interaction):
                    s["interactions"] += 1
                elif isinstance(body, Data):
                    s["bytes_read"] += body.bytes_read
                n += 1
                if progress and n % 100 == 0:
                    progress(100)
        finally:
            for em in emitters.values():
                em.close()
        seconds = time.perf_counter() - t0
        if progress:
            progress(n % 100)
        records = sum(em.stats().appended_records for em in emitters.values())
        report = audit(log, home.ledger_topics, home.anchors())
        return DemoSummary(home=str(home.path), log=log.url, run=run, tasks=tasks, events=n, records=records,
                           seconds=seconds, per_agent=per_agent, verify=report.to_dict())
    finally:
        log.close()

