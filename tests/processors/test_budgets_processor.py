"""The budgets processor end to end on a real home: policies from the operator, events from agents'
Emitters, the processor run inline, then its views and the derived events on ``<prefix>.alerts``.

- consumption per kind and status; resets exactly at event-time window boundaries;
- alerts published once (a second run and a replay mint none);
- reservations: granted, committed, released, expired, refused (with an alert);
- confidence gating; priority-weighted reallocation as BudgetTransfer events;
- admission (``Emitter.check`` and ``tokenledger budget check``) from the published views;
- replay equality on both log backends;
- the race: N emitter processes reserving from one budget never exceed its hard limit, on both backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from support.econ import control
from typer.testing import CliRunner

from ledger.economics.budget import US_PER_HOUR, window_start
from ledger.economics.price_events import default_price_events, price_event_time_us
from ledger.integrity.keys import SigningKey, save_key
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, TEST_WINDOW, fill, grant, make_home
from ledger.wire import codec
from ledger.wire.events import AgentRegistered, BudgetPolicy, Context, Outcome
from processors.host.service import live_digest, open_runner, replay, state_file
from processors.runtime.publish import Publisher

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [pytest.param("sqlite"), pytest.param("kafka", marks=pytest.mark.kafka)]
CTX = Context(org="acme", project="p1", task="t1")
cli = CliRunner()


def kafka_home(path: Path, url: str, agents: tuple[str, ...]) -> Home:
    h = Home.init(path, log_url=url, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    op = h.operator_key()
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            em.emit(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), event_time_us=T0)
            for i, a in enumerate(agents):
                k = SigningKey.generate(a)
                save_key(h.key_path(a), k)
                em.emit(AgentRegistered(agent_id=a, key_id=k.key_id, public_key=k.public.raw, priority=i + 1),
                        event_time_us=T0 + 1 + i)
            em.emit(TEST_WINDOW, event_time_us=T0 + 1 + len(agents))  # as make_home: the tests' hours are live
    finally:
        log.close()
    return h


@pytest.fixture(params=BACKENDS)
def backend_home(request, tmp_path) -> Home:
    agents = (*(f"racer{i}" for i in range(6)), "alice", "bob")
    if request.param == "kafka":
        return kafka_home(tmp_path / "home", request.getfixturevalue("kafka_url"), agents)
    return make_home(tmp_path / "home", agents=agents)


def policy(h: Home, scope: str, scope_id: str, kind: str, allocation: int, t: int = T0 + 100, **kw) -> None:
    fields = dict(soft_limit_pct=80, hard_limit_pct=100, throttle_at_soft=False, suspend_at_hard=False,
                  emergency_reserve_pct=0, hard_limit_action="deny", reset_interval_us=US_PER_HOUR,
                  effective_from_us=T0)
    fields.update(kw)
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            em.emit(BudgetPolicy(scope=scope, scope_id=scope_id, budget_kind=kind, allocation=allocation, **fields),
                    event_time_us=t)
    finally:
        log.close()


def emitter(h: Home, agent: str) -> Emitter:
    return Emitter.open(agent, home=h.path, context=CTX, background_flush=False)


def run(h: Home, name: str = "budgets", *, publish: bool = False, max_records: int | None = None) -> None:
    log = h.open_log()
    try:
        r, store, proc = open_runner(h, name, log)
        try:
            if max_records:
                r.max_records = max_records
            r.run_until_caught_up()
            if publish:
                Publisher(store, proc, h.views_dir(name), key=r.key).publish(r.positions, r.batch_no)
        finally:
            store.close()
    finally:
        log.close()


def rows(h: Home, sql: str, name: str = "budgets") -> list[dict]:
    from processors import get
    from processors.runtime.store import Store

    store = Store(state_file(h, name), get(name)().views, read_only=True)
    try:
        cur = store.con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        store.close()


def replayed(h: Home, name: str) -> dict:
    """The digest of a rebuild from offset 0 into a fresh file (processors.host.service.replay)."""
    log = h.open_log()
    try:
        return replay(h, name, log)
    finally:
        log.close()


def derived(h: Home, topic: str = "alerts") -> list:
    log = h.open_log()
    try:
        log.ensure_topic(h.topic_for(topic))
        return [codec.decode_event(raw).event for rec in read_all(log, h.topic_for(topic))
                for raw in codec.decode_batch(rec.value).events]
    finally:
        log.close()


def budget(h: Home, scope: str, scope_id: str, kind: str) -> dict:
    (row,) = rows(h, f"SELECT * FROM budgets WHERE scope='{scope}' AND scope_id='{scope_id}' AND budget_kind='{kind}'")
    return row


# ------------------------------------------------------------------ consumption, windows, alerts


def test_consumption_status_resets_and_alerts_once(tmp_path):
    h = make_home(tmp_path / "home")
    # the shipped price book reaches the processor only as price_set control events (as `init` appends them)
    control(h, default_price_events(), times=[price_event_time_us(b) for b in default_price_events()])
    policy(h, "agent", "alice", "action", 10)
    policy(h, "project", "p1", "data", 1_000)
    policy(h, "agent", "alice", "llm_tokens", 100_000)
    policy(h, "agent", "alice", "usd", 10_000_000)
    with emitter(h, "alice") as em:
        for i in range(9):
            em.action("step", cost_weight=1, event_time_us=T0 + 1_000 + i)
        em.action("odd", cost_weight="0.2", event_time_us=T0 + 2_000)  # rounds up to 1 unit
        em.data(bytes_read=300, bytes_written=200, event_time_us=T0 + 2_001)
        em.action("llm", provider="anthropic", model="claude-sonnet-4-6", input_tokens=1_000, output_tokens=500,
                  event_time_us=T0 + 2_002)
        em.action("llm", provider="nobody", model="unknown-9", input_tokens=10, output_tokens=5,
                  event_time_us=T0 + 2_003)
    run(h)
    a = budget(h, "agent", "alice", "action")
    # 12 of 10 consumed (usage is a fact, recorded past the limit): an overdraw, reported as such and as negative
    # remaining (token-budget-contracts' convention), no longer clamped to 0 / "critical"
    assert (a["consumed"], a["status"], a["parent_scope"], a["parent_id"]) == (12, "overdrawn", "task", "t1")
    assert a["remaining"] == -2
    assert budget(h, "project", "p1", "data")["consumed"] == 500
    assert budget(h, "agent", "alice", "llm_tokens")["consumed"] == 1_515  # an unpriced call still has tokens
    usd = budget(h, "agent", "alice", "usd")
    assert usd["consumed"] > 0 and usd["unpriced_calls"] == 1
    alerts = Counter(r["alert"] for r in rows(h, "SELECT alert FROM budget_alerts WHERE budget_kind='action'"))
    assert alerts["soft_limit"] == 1 and alerts["hard_limit"] == 1 and alerts["breach"] == 2
    # a second run adds nothing; the derived events on the log equal the view, once each
    run(h)
    view_n = rows(h, "SELECT count(*) AS n FROM budget_alerts")[0]["n"]
    ids = [e.event_id for e in derived(h)]
    assert len(ids) == view_n == len(set(ids))
    # the next window (event time) starts from zero, exactly at the boundary
    boundary = window_start(T0 + 2_003, US_PER_HOUR, T0) + US_PER_HOUR
    with emitter(h, "alice") as em:
        em.action("late", cost_weight=1, event_time_us=boundary - 1)
        em.action("next", cost_weight=2, event_time_us=boundary)
    run(h)
    a = budget(h, "agent", "alice", "action")
    assert (a["window_start_us"], a["consumed"], a["status"]) == (boundary, 2, "healthy")


# ------------------------------------------------------------------ reservations and gating


def test_reservations_refusal_expiry_and_confidence_gate(tmp_path):
    h = make_home(tmp_path / "home")
    policy(h, "agent", "alice", "action", 10, confidence_threshold_milli=800)
    t = T0 + 10_000
    with emitter(h, "alice") as em:
        em.reserve("r1", "action", 6, event_time_us=t)
        em.reserve("r2", "action", 6, event_time_us=t + 1)  # 6 + 6 > 10: refused
        em.commit("r1", "action", 4, event_time_us=t + 2)
        em.reserve("r3", "action", 5, ttl_us=10, event_time_us=t + 3)
        em.reserve("r4", "action", 1, event_time_us=t + 20)  # r3 expired by then
        em.release("r4", "action", event_time_us=t + 21)
        em.emit(Outcome(task_id="t1", confidence_milli=900), event_time_us=t + 30)
        em.reserve("r5", "action", 1, event_time_us=t + 31)  # gate closed
        em.action("after", event_time_us=t + 32)  # counted, flagged as gated
        em.emit(Outcome(task_id="t1", confidence_milli=100), event_time_us=t + 40)
        em.reserve("r6", "action", 1, event_time_us=t + 41)  # gate open again
    run(h)
    st = {r["reservation_id"]: (r["status"], r["reason"]) for r in rows(h, "SELECT * FROM reservations")}
    assert st["r1"][0] == "committed" and st["r2"] == ("refused", "hard_limit")
    assert st["r3"][0] == "expired" and st["r4"][0] == "released"
    assert st["r5"] == ("refused", "confidence_gate") and st["r6"][0] == "reserved"
    a = budget(h, "agent", "alice", "action")
    assert (a["consumed"], a["reserved"], a["last_confidence_milli"]) == (5, 1, 100)
    alerts = Counter((r["alert"], r["reason"]) for r in rows(h, "SELECT * FROM budget_alerts"))
    assert alerts[("reservation_refused", "hard_limit")] == 1
    assert alerts[("reservation_refused", "confidence_gate")] == 1 and alerts[("gated", "confidence_gate")] == 1


def test_reallocation_moves_idle_budget_downhill_only(tmp_path):
    h = make_home(tmp_path / "home")
    policy(h, "agent", "alice", "action", 10, priority=2)
    policy(h, "agent", "bob", "action", 100, priority=1, min_reserve=10)
    with emitter(h, "bob") as em:
        em.action("warm", event_time_us=T0 + 500)  # bob now has a parent (the same task as alice)
    with emitter(h, "alice") as em:
        em.reserve("big", "action", 30, event_time_us=T0 + 1_000)
    run(h)
    (tr,) = rows(h, "SELECT * FROM transfers")
    assert (tr["donor_id"], tr["recipient_id"], tr["amount"]) == ("bob", "alice", 20)
    assert budget(h, "agent", "alice", "action")["allocation"] == 30
    assert budget(h, "agent", "bob", "action")["allocation"] == 80
    assert rows(h, "SELECT status FROM reservations")[0]["status"] == "reserved"
    kinds = Counter(e.body.KIND for e in derived(h))
    assert kinds["budget_transfer"] == 1
    # bob (lower priority) short: alice may not give uphill, so bob's reserve is refused
    with emitter(h, "bob") as em:
        em.reserve("bob-big", "action", 200, event_time_us=T0 + 2_000)
    run(h)
    assert len(rows(h, "SELECT * FROM transfers")) == 1
    assert rows(h, "SELECT status FROM reservations WHERE reservation_id='bob-big'")[0]["status"] == "refused"


def test_reputation_scales_an_agents_next_window(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice", "carol"))
    policy(h, "agent", "alice", "action", 100)
    with emitter(h, "carol") as em:
        em.trust("alice", "accuracy", 30, event_time_us=T0 + 200)
        em.trust("alice", "reliability", 30, event_time_us=T0 + 201)
    with emitter(h, "alice") as em:
        em.trust("alice", "compliance", 1000, event_time_us=T0 + 202)  # about itself: never counts
        em.action("now", event_time_us=T0 + 300)
    run(h)
    a = budget(h, "agent", "alice", "action")
    assert (a["allocation"], a["reputation_multiplier"]) == (100, "1.0")  # this window keeps its allocation
    with emitter(h, "alice") as em:
        em.action("later", event_time_us=T0 + US_PER_HOUR + 1)
    run(h)
    a = budget(h, "agent", "alice", "action")
    assert (a["allocation"], a["reputation_multiplier"]) == (120, "1.2")  # overall 0.85: seed 002's 1.2x


def test_a_refused_policy_is_reported_not_applied(tmp_path):
    h = make_home(tmp_path / "home")
    policy(h, "agent", "alice", "action", 10, priority=0)
    run(h)
    assert rows(h, "SELECT count(*) AS n FROM budgets")[0]["n"] == 0
    (a,) = rows(h, "SELECT * FROM budget_alerts")
    assert a["alert"] == "policy_refused" and "priority" in a["reason"]


# ------------------------------------------------------------------ admission and the CLI


def test_admission_from_published_views_and_cli(tmp_path):
    from processors.cli import build_app
    app = build_app()

    h = make_home(tmp_path / "home")
    policy(h, "project", "p1", "action", 10, throttle_at_soft=True)
    with emitter(h, "alice") as em:
        assert em.check("action", 5).verdict == "allow"  # nothing published yet: not budgeted
        for i in range(7):
            em.action("x", event_time_us=T0 + 1_000 + i)
    run(h, publish=True)
    with emitter(h, "alice") as em:
        assert em.check("action", 1, at_us=T0 + 2_000).verdict == "throttle"  # 8 of 10: soft zone
        ans = em.check("action", 4, at_us=T0 + 2_000)
        assert ans.verdict == "deny" and ans.reason == "hard_limit" and ans.scope == "project:p1"
    r = cli.invoke(app, ["budget", "check", "--agent", "alice", "--kind", "action", "--amount", "1", "--project", "p1",
                         "--at-us", str(T0 + 2_000), "--home", str(h.path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["verdict"] == "throttle"
    r = cli.invoke(app, ["budget", "show", "--home", str(h.path), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["consumed"] == 7
    r = cli.invoke(app, ["budget", "set", "agent", "alice", "--kind", "usd", "--allocation", "5000000",
                         "--home", str(h.path), "--json"])
    assert r.exit_code == 0, r.output
    run(h)
    assert budget(h, "agent", "alice", "usd")["policy_allocation"] == 5_000_000
    r = cli.invoke(app, ["budget", "check", "--agent", "alice", "--kind", "bogus", "--amount", "1",
                         "--home", str(h.path)])
    assert r.exit_code == 2


# ------------------------------------------------------------------ replay equality, both backends


def test_replay_equals_live(backend_home):
    h = backend_home
    policy(h, "project", "research-assistant", "action", 200, throttle_at_soft=True)
    for agent in ("planner", "researcher", "writer", "critic"):
        policy(h, "agent", agent, "llm_tokens", 150_000, hard_limit_action="throttle")
        policy(h, "agent", agent, "usd", 2_000_000, emergency_reserve_pct=10)
    policy(h, "org", "acme", "compute", 1_000, reset_interval_us=US_PER_HOUR // 6)
    fill(h, tasks=8, batch_size=5)
    run(h, max_records=3)  # small batches live, one pass in the replay: the digests must still agree
    fill(h, tasks=4, batch_size=5, seed=5, run="r2")
    run(h, max_records=7)  # a second process: the state restored from the views goes on from there
    live = live_digest(h, "budgets")
    assert live["tables"]["budgets"]["rows"] >= 9 and live["tables"]["budget_alerts"]["rows"] > 0
    assert live["digest"] == replayed(h, "budgets")["digest"]


# ------------------------------------------------------------------ the race, both backends

RACERS = 6
ATTEMPTS = 12  # reserve attempts per racer, 3 units each: 216 asked of a budget of 100
HARD_LIMIT = 100


def race(h: Home, phase: str) -> None:
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "budget_racer.py"), str(h.path), f"racer{i}",
                               str(ATTEMPTS), phase], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for i in range(RACERS)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()


def test_racing_emitters_never_overspend(backend_home):
    h = backend_home
    policy(h, "project", "shared", "action", HARD_LIMIT, emergency_reserve_pct=0, suspend_at_hard=False)
    for i in range(RACERS):  # "shared" is nobody's registered project: reserving against it takes a grant
        grant(h, f"racer{i}", "reserve", "project:shared")
    race(h, "reserve")
    run(h, publish=True)  # the processor decides every reservation in log order and publishes
    race(h, "commit")  # each racer spends and commits only what it was granted
    run(h)
    res = rows(h, "SELECT status, amount, committed FROM reservations")
    assert len(res) == RACERS * ATTEMPTS
    granted = [r for r in res if r["status"] == "committed"]
    refused = [r for r in res if r["status"] == "refused"]
    assert len(granted) + len(refused) == len(res)
    assert sum(r["committed"] for r in granted) <= HARD_LIMIT
    assert len(granted) == HARD_LIMIT // 3  # everything that fits was granted, nothing more
    b = budget(h, "project", "shared", "action")
    assert b["consumed"] + b["reserved"] <= HARD_LIMIT
    n_refusal_alerts = rows(h, "SELECT count(*) AS n FROM budget_alerts WHERE alert='reservation_refused'")[0]["n"]
    assert n_refusal_alerts == len(refused)
    assert live_digest(h, "budgets")["digest"] == replayed(h, "budgets")["digest"]
