"""Claimed time bounded by append time: the skew window and backfill grants, end to end on the embedded log.

Every agent's event must claim a time within the skew window of its record's append time (default 5 minutes
behind, 1 minute ahead; changed only by the operator's ``clock_policy``), or, for a signer the operator
granted ``backfill``, down to its maximum age. Emitters refuse what readers would quarantine; a producer that
bypasses them gets its record quarantined as ``clock_skew``, with claimed and append time in the evidence.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from support.econ import call, control, replay_digests, rows, run
from typer.testing import CliRunner

from ledger import limits
from ledger.economics.budget import US_PER_HOUR, window_start
from ledger.economics.price_events import default_price_events, price_event_time_us
from ledger.errors import RejectCode, RejectError
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, build_record, grant, make_home
from ledger.units import US_PER_DAY
from ledger.wire.events import Action, BudgetPolicy, ClockPolicy, Context, Reservation
from processors.cli import build_app

FAR = 7_226_582_400_000_000  # 2199-01-01T00:00:00Z: a clock (or a forger) far in the future
MINUTE = 60_000_000
CTX = Context(org="acme", project="p1", task="t1")
cli = CliRunner()
app = build_app()


def now_us() -> int:
    return time.time_ns() // 1000


def tl(h: Home, *args: str):
    return cli.invoke(app, [*args, "--home", str(h.path)])


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def log_url(request: pytest.FixtureRequest) -> str | None:
    """The log the test's home uses: the embedded default (None), or the test broker (topics of its own)."""
    return request.getfixturevalue("kafka_url") if request.param == "kafka" else None


def skew_home(tmp_path: Path, agents: tuple[str, ...] = ("alice", "bob", "mallory"), *,
              log_url: str | None = None) -> Home:
    """A home whose records from here on are judged by the default window (make_home widened it for the other
    tests' fixed hours: this policy, appended after, takes over for the records after it)."""
    if log_url is None:
        h = make_home(tmp_path / "home", agents=agents)
    else:
        h = make_home(tmp_path / "home", agents=agents, log_url=log_url, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    control(h, default_price_events(), times=[price_event_time_us(b) for b in default_price_events()])
    control(h, [ClockPolicy(limits.DEFAULT_MAX_CLOCK_BEHIND_US, limits.DEFAULT_MAX_CLOCK_AHEAD_US)], t=now_us())
    return h


def ends(h: Home) -> dict[tuple[str, int], int]:
    log = h.open_log()
    try:
        return {(t, p): log.end_offset(t, p) for t in log.topics() for p in range(log.partitions(t))}
    finally:
        log.close()


def head(h: Home, agent: str) -> tuple[int, bytes]:
    """(seq, hash) of ``agent``'s last event on the log (0, genesis when none): a raw record continuing it."""
    from ledger.wire import codec

    log = h.open_log()
    try:
        recs = log.read_key(h.topic, agent.encode())
    finally:
        log.close()
    if not recs:
        return 0, bytes(32)
    raw = codec.decode_batch(recs[-1].value).events[-1]
    return codec.decode_event(raw).event.seq, codec.event_hash(raw)


def append_raw(h: Home, agent: str, bodies: list, t: int, *, seq: int | None = None,
               prev: bytes | None = None) -> tuple[int, bytes]:
    """A signed record built by hand (no emitter, no check) continuing ``agent``'s chain; returns the head after."""
    s, p = head(h, agent) if seq is None else (seq, prev or bytes(32))
    rec, last = build_record(h.load_key(agent), bodies, start_seq=s + 1, prev_hash=p, t=t, context=CTX)
    log = h.open_log()
    try:
        log.append(h.topic, [(agent.encode(), rec)])
    finally:
        log.close()
    return s + len(bodies), last


def emitter(h: Home, agent: str) -> Emitter:
    return Emitter.open(agent, home=h.path, context=CTX, background_flush=False, batch_size=1)


def quarantine(h: Home, name: str = "journal") -> list[tuple[str, dict]]:
    return [(code, json.loads(ev)) for code, ev in
            rows(h, name, "SELECT code, evidence_json FROM quarantine ORDER BY log_offset")]


def assert_replay_equal(h: Home, *names: str) -> None:
    for name in names:
        d = replay_digests(h, name)
        assert d["live"] is not None and d["live"] == d["replay"], (name, d)


def deny_policy(scope: str, scope_id: str, allocation: int) -> BudgetPolicy:
    return BudgetPolicy(scope=scope, scope_id=scope_id, budget_kind="action", allocation=allocation,
                        reset_interval_us=US_PER_HOUR, effective_from_us=T0, hard_limit_action="deny",
                        soft_limit_pct=80, hard_limit_pct=100, emergency_reserve_pct=0, suspend_at_hard=False)


# ------------------------------------------------------------------ the future: 2199


def test_2199_usage_and_reservation_refused_at_emit_and_quarantined_raw(tmp_path, log_url):
    h = skew_home(tmp_path, log_url=log_url)
    control(h, [deny_policy("project", "p1", 1_000)], t=now_us())
    before = ends(h)
    # the SDK refuses both, naming the field, the claimed time and the window; nothing is appended
    with emitter(h, "mallory") as em:
        for attempt in (lambda: em.action("spend", cost_weight=2_000, event_time_us=FAR),
                        lambda: em.reserve("r-future", "action", 1_000, scope="project", scope_id="p1",
                                           event_time_us=FAR)):
            with pytest.raises(RejectError) as e:
                attempt()
            ev = e.value.evidence
            assert e.value.code is RejectCode.CLOCK_SKEW and ev["field"] == "event_time_us"
            assert ev["claimed_us"] == FAR and ev["latest_us"] < FAR and ev["appended"] is False
            assert ev["max_behind_us"] == limits.DEFAULT_MAX_CLOCK_BEHIND_US
    r = tl(h, "emit", "action", "-a", "mallory", "--operation", "spend", "--time", "2199-01-01T00:00:00Z")
    assert r.exit_code == 1 and "clock_skew" in r.output and "event_time_us" in r.output
    assert ends(h) == before  # never acknowledged, never appended

    # an honest agent's hold (the project is not hers: the operator grants it), then the forger's records
    # appended raw, then the honest agent goes on
    grant(h, "alice", "reserve", "project:p1")
    with emitter(h, "alice") as em:
        em.reserve("r-alice", "action", 600, scope="project", scope_id="p1", event_time_us=now_us())
        em.emit(call("c1", "alice", "bob"), event_time_us=now_us())
    append_raw(h, "mallory", [Action("spend", cost_weight_milli=2_000_000),
                              Reservation(reservation_id="r-future", action="reserve", scope="project",
                                          scope_id="p1", budget_kind="action", amount=1_000,
                                          expires_at_us=FAR + MINUTE)], FAR)
    append_raw(h, "mallory", [call("c2", "mallory", "bob")], FAR)
    with emitter(h, "alice") as em:
        em.action("step", cost_weight=300, event_time_us=now_us())
        em.emit(call("c3", "alice", "bob"), event_time_us=now_us())
    for name in ("journal", "budgets", "allocations", "settlements"):
        run(h, name)

    log = h.open_log()
    try:
        appended = [r.append_time_us for r in log.read_key(h.topic, b"mallory")]
    finally:
        log.close()
    q = quarantine(h)
    assert [code for code, _ in q] == ["clock_skew", "clock_skew"]
    assert [ev["claimed_us"] for _, ev in q] == [FAR, FAR]
    assert [ev["append_time_us"] for _, ev in q] == appended[-2:]
    assert all(ev["latest_us"] == ev["append_time_us"] + limits.DEFAULT_MAX_CLOCK_AHEAD_US for _, ev in q)
    # the deny budget is never exceeded, the honest hold is intact
    ((consumed, reserved, window),) = rows(h, "budgets", "SELECT consumed, reserved, window_start_us FROM budgets "
                                                         "WHERE scope='project' AND scope_id='p1'")
    assert consumed + reserved <= 1_000 and reserved == 600 and window < FAR - US_PER_DAY
    assert rows(h, "budgets", "SELECT status FROM reservations WHERE reservation_id='r-alice'") == [("reserved",)]
    assert rows(h, "budgets", "SELECT count(*) FROM reservations WHERE reservation_id='r-future'") == [(0,)]
    # settlements unaffected: the watermark is live time, no allocation parked as late
    ((watermark,),) = rows(h, "settlements", "SELECT value_us FROM settlement_progress WHERE key='watermark'")
    assert watermark < now_us() + limits.DEFAULT_MAX_CLOCK_AHEAD_US
    assert rows(h, "settlements", "SELECT coalesce(sum(late_allocations), 0), sum(allocations) "
                                  "FROM pair_balances") == [(0, 2)]
    # verify agrees, and a replay reaches the live state
    r = tl(h, "verify", "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 1 and out["rejected"] == {"clock_skew": 2}
    assert out["first_error"]["claimed_us"] == FAR
    assert_replay_equal(h, "journal", "budgets", "settlements")


# ------------------------------------------------------------------ the operator's window


def test_clock_policy_changes_the_window_only_for_later_records(tmp_path):
    h = skew_home(tmp_path, agents=("alice", "bob"))
    ten_min_ago = now_us() - 10 * MINUTE
    with emitter(h, "alice") as em, pytest.raises(RejectError) as e:
        em.action("late", event_time_us=ten_min_ago)
    assert e.value.code is RejectCode.CLOCK_SKEW and e.value.evidence["claimed_us"] == ten_min_ago
    seq, prev = head(h, "bob")
    append_raw(h, "bob", [Action("before-policy")], ten_min_ago, seq=seq, prev=prev)  # default window: out
    r = tl(h, "clock", "set", "--behind", "30m", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["max_behind_us"] == 30 * MINUTE
    r = tl(h, "clock", "show", "--json")
    assert json.loads(r.stdout)["window"] == {"max_behind_us": 30 * MINUTE, "max_ahead_us": MINUTE,
                                              "behind": "30m", "ahead": "1m", "default": False}
    # the same claim, appended after the policy, is in the window (the refused record did not move the chain)
    append_raw(h, "bob", [Action("after-policy")], ten_min_ago, seq=seq, prev=prev)
    with emitter(h, "alice") as em:
        em.action("sdk-after-policy", event_time_us=now_us() - 20 * MINUTE)
    run(h, "journal")
    q = quarantine(h)
    assert [code for code, _ in q] == ["clock_skew"] and q[0][1]["max_behind_us"] == limits.DEFAULT_MAX_CLOCK_BEHIND_US
    ops = {op for (op,) in rows(h, "journal", "SELECT operation FROM events WHERE kind = 'action'")}
    assert ops == {"after-policy", "sdk-after-policy"}
    assert_replay_equal(h, "journal")
    r = tl(h, "clock", "set", "--behind", "2d")
    assert r.exit_code == 2 and "max_behind_us" in r.output  # a day at most: history is a backfill grant


# ------------------------------------------------------------------ backfill


def test_backfill_needs_a_grant_counts_in_its_window_and_moves_nothing_live(tmp_path, log_url):
    h = skew_home(tmp_path, agents=("alice", "bob"), log_url=log_url)
    agent_budget = BudgetPolicy(scope="agent", scope_id="alice", budget_kind="action", allocation=1_000_000,
                                reset_interval_us=US_PER_HOUR, effective_from_us=0, hard_limit_action="alert_only",
                                suspend_at_hard=False)
    control(h, [agent_budget], t=now_us())
    three_days_ago = now_us() - 3 * US_PER_DAY
    # without a grant: refused at emit, quarantined raw
    with emitter(h, "alice") as em, pytest.raises(RejectError) as e:
        em.action("history", cost_weight=7, event_time_us=three_days_ago)
    assert e.value.code is RejectCode.CLOCK_SKEW and "backfill_max_age_us" not in e.value.evidence
    # (raw by bob: alice's emitter continues from whatever alice has on the log, a quarantined record included)
    append_raw(h, "bob", [Action("ungranted", cost_weight_milli=7_000)], three_days_ago)

    # live traffic first: the live window, the watermark
    live_t = now_us()
    with emitter(h, "alice") as em:
        em.action("live", cost_weight=5, event_time_us=live_t)
        em.emit(call("live-call", "alice", "bob"), event_time_us=live_t)
    run(h, "allocations")
    run(h, "settlements")
    ((watermark_before,),) = rows(h, "settlements", "SELECT value_us FROM settlement_progress WHERE key='watermark'")

    # with a grant: accepted and counted in its historical window, nothing live moves
    r = tl(h, "agent", "grant", "alice", "backfill", "--max-age", "30d", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["max_age_us"] == 30 * US_PER_DAY
    with emitter(h, "alice") as em:
        em.action("history", cost_weight=7, event_time_us=three_days_ago)
        em.emit(call("old-call", "alice", "bob"), event_time_us=three_days_ago + 1)
        em.reserve("r-old", "action", 10, event_time_us=three_days_ago + 2)
        with pytest.raises(RejectError) as e:  # beyond the grant's age
            em.action("too-old", event_time_us=now_us() - 40 * US_PER_DAY)
        assert e.value.evidence["backfill_max_age_us"] == 30 * US_PER_DAY
        with pytest.raises(RejectError):  # a grant never widens the future side
            em.action("future", event_time_us=now_us() + 10 * MINUTE)
    append_raw(h, "alice", [Action("too-old-raw")], now_us() - 40 * US_PER_DAY)
    for name in ("journal", "budgets", "allocations", "settlements"):
        run(h, name)

    q = quarantine(h)
    assert [code for code, _ in q] == ["clock_skew", "clock_skew"]
    assert q[1][1]["backfill_max_age_us"] == 30 * US_PER_DAY  # the second: beyond the grant
    live = rows(h, "budgets", "SELECT window_start_us, consumed FROM budgets WHERE scope='agent' "
                              "AND scope_id='alice' AND budget_kind='action'")
    assert live == [(window_start(live_t, US_PER_HOUR), 5)]  # the live window, and only live usage in it
    back = rows(h, "budgets", "SELECT window_start_us, amount FROM budget_backfill WHERE scope='agent' "
                              "AND budget_kind='action'")
    assert back == [(window_start(three_days_ago, US_PER_HOUR), 7)]
    assert rows(h, "budgets", "SELECT status, reason FROM reservations WHERE reservation_id='r-old'") == []
    assert rows(h, "budgets", "SELECT count(*) FROM budget_alerts WHERE reason='backfilled'") == [(1,)]
    ((watermark_after,),) = rows(h, "settlements", "SELECT value_us FROM settlement_progress WHERE key='watermark'")
    assert watermark_after == watermark_before
    assert rows(h, "settlements", "SELECT sum(allocations) FROM pair_balances") == [(2,)]  # both counted
    assert_replay_equal(h, "journal", "budgets", "settlements")

    # withdrawn: the next records get the window again
    assert tl(h, "agent", "ungrant", "alice", "backfill").exit_code == 0
    with emitter(h, "alice") as em, pytest.raises(RejectError):
        em.action("history-again", event_time_us=three_days_ago)
