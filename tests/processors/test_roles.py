"""Nobody acts beyond their role: scores count only from graders, reservation ids and scopes are an
agent's own unless the operator granted more, and no valid-signed input overflows a budget counter —
each on a real home (SQLite log, the processors run inline through their runner)."""

from __future__ import annotations

from collections import Counter

import pytest
from test_budgets_processor import BACKENDS, budget, emitter, kafka_home, policy, replayed, rows, run

from ledger import limits
from ledger.economics.budget import US_PER_HOUR
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.sdk.registration import register_signer
from ledger.sdk.views import reservation
from ledger.testing.homes import T0, grant, make_home
from ledger.wire.events import Context, Data, Outcome
from processors.host.service import live_digest


@pytest.fixture(params=BACKENDS)
def backend_home(request, tmp_path) -> Home:
    agents = ("alice", "bob", "mallory", "grader")
    if request.param == "kafka":
        return kafka_home(tmp_path / "home", request.getfixturevalue("kafka_url"), agents)
    return make_home(tmp_path / "home", agents=agents)


# ------------------------------------------------------------------ finding 7: self-graded outcomes


def _rep(h: Home, agent: str) -> dict:
    (row,) = rows(h, f"SELECT * FROM reputation WHERE agent_id='{agent}'", "reputation")
    return row


def test_self_graded_outcomes_never_raise_reputation_or_budget(backend_home):
    h = backend_home
    policy(h, "agent", "mallory", "action", 100, reset_interval_us=US_PER_HOUR)
    with emitter(h, "bob") as em:  # one honest rating puts mallory at accuracy 0.69 (the 0.8x tier)
        em.trust("mallory", "accuracy", -1, event_time_us=T0 + 1_000)
    with emitter(h, "mallory") as em:
        for i in range(30):  # thirty perfect self-grades, with and without naming itself as the subject
            em.emit(Outcome(task_id=f"t{i}", score_milli=1000, subject_id="mallory" if i % 2 else None),
                    event_time_us=T0 + 2_000 + i)
    with emitter(h, "bob") as em:  # bob has no grader grant: his scores of mallory do not count either
        em.emit(Outcome(task_id="tb", score_milli=1000, subject_id="mallory"), event_time_us=T0 + 3_000)
    with emitter(h, "mallory") as em:
        em.action("next window", event_time_us=T0 + US_PER_HOUR + 10)
    run(h, "reputation")
    run(h, "budgets")
    m = _rep(h, "mallory")
    assert m["accuracy"] == pytest.approx(0.69, abs=1e-3) and m["multiplier"] == "0.8"
    assert (m["events_counted"], m["events_self"]) == (1, 31)  # every self-score kept on record, none counted
    hist = Counter((r["issuer"], r["counted"]) for r in rows(h, "SELECT * FROM trust_history", "reputation"))
    assert hist[("processor.reputation", True)] == 0
    assert budget(h, "agent", "mallory", "action")["reputation_multiplier"] == "0.8"
    assert rows(h, "SELECT count(*) AS n FROM budget_trust WHERE subject='mallory'")[0]["n"] == 1
    # the operator makes bob a grader: from there on his grades count, for the subject (never for bob)
    grant(h, "bob", "grader", t=T0 + US_PER_HOUR + 20)
    with emitter(h, "bob") as em:
        em.emit(Outcome(task_id="tc", score_milli=900, subject_id="mallory"), event_time_us=T0 + US_PER_HOUR + 30)
    run(h, "reputation")
    m = _rep(h, "mallory")
    assert m["events_counted"] == 2 and m["accuracy"] > 0.69
    assert rows(h, "SELECT count(*) AS n FROM reputation WHERE agent_id='bob'", "reputation")[0]["n"] == 0
    # a withdrawn grant stops counting again; restart and replay agree with the live state
    grant(h, "bob", "grader", active=False, t=T0 + US_PER_HOUR + 40)
    with emitter(h, "bob") as em:
        em.emit(Outcome(task_id="td", score_milli=1000, subject_id="mallory"), event_time_us=T0 + US_PER_HOUR + 50)
    run(h, "reputation")
    assert _rep(h, "mallory")["events_counted"] == 2
    run(h, "budgets")
    assert rows(h, "SELECT count(*) AS n FROM budget_trust WHERE subject='mallory'")[0]["n"] == 2  # bob's one grade
    for name in ("reputation", "budgets"):
        assert replayed(h, name)["digest"] == live_digest(h, name)["digest"]


# ------------------------------------------------------------------ finding 6: reservations


def test_reservation_ids_are_per_agent_so_nobody_can_squat_one(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice", "mallory"))
    policy(h, "agent", "alice", "action", 10)
    policy(h, "agent", "mallory", "action", 10)
    with emitter(h, "mallory") as em:  # mallory takes alice's id first
        em.reserve("job-1", "action", 1, event_time_us=T0 + 1_000)
    with emitter(h, "alice") as em:
        em.reserve("job-1", "action", 9, event_time_us=T0 + 2_000)
    run(h, publish=True)
    mine = reservation(h.path, "job-1", "alice")
    assert mine is not None and (mine["agent_id"], mine["status"], mine["amount"]) == ("alice", "reserved", 9)
    theirs = reservation(h.path, "job-1", "mallory")
    assert theirs is not None and theirs["agent_id"] == "mallory"
    assert budget(h, "agent", "alice", "action")["reserved"] == 9
    # mallory cannot settle alice's hold by naming the id either: the key is (signer, id)
    with emitter(h, "mallory") as em:
        em.release("job-1", "action", event_time_us=T0 + 3_000)
    run(h)
    assert budget(h, "agent", "alice", "action")["reserved"] == 9
    assert budget(h, "agent", "mallory", "action")["reserved"] == 0


def test_an_agent_reserves_only_its_own_scopes_unless_granted(backend_home):
    h = backend_home
    policy(h, "agent", "alice", "action", 10)
    policy(h, "project", "p1", "action", 10)
    log = h.open_log()
    try:  # alice's registration puts her under project p1; mallory's does not
        register_signer(h, log, "alice", project="p1")
    finally:
        log.close()
    with emitter(h, "mallory") as em:
        em.reserve("starve-alice", "action", 10, scope="agent", scope_id="alice", event_time_us=T0 + 1_000)
        em.reserve("starve-p1", "action", 10, scope="project", scope_id="p1", event_time_us=T0 + 1_001)
    run(h)
    res = {r["reservation_id"]: r for r in rows(h, "SELECT * FROM reservations WHERE agent_id='mallory'")}
    assert {k: (v["status"], v["reason"]) for k, v in res.items()} == {
        "starve-alice": ("refused", "not_permitted"), "starve-p1": ("refused", "not_permitted")}
    alerts = rows(h, "SELECT * FROM budget_alerts WHERE alert='reservation_refused' AND agent_id='mallory'")
    assert sorted((a["scope"], a["scope_id"], a["reason"]) for a in alerts) == [
        ("agent", "alice", "not_permitted"), ("project", "p1", "not_permitted")]
    assert budget(h, "agent", "alice", "action")["reserved"] == 0 == budget(h, "project", "p1", "action")["reserved"]
    with emitter(h, "alice") as em:  # her own agent scope and her registered project
        em.reserve("a1", "action", 3, event_time_us=T0 + 2_000)
        em.reserve("a2", "action", 3, scope="project", scope_id="p1", event_time_us=T0 + 2_001)
    grant(h, "mallory", "reserve", "project:p1", t=T0 + 2_500)
    with emitter(h, "mallory") as em:  # granted by the operator: now it may
        em.reserve("m1", "action", 2, scope="project", scope_id="p1", event_time_us=T0 + 3_000)
    run(h)
    status = {(r["agent_id"], r["reservation_id"]): r["status"] for r in rows(h, "SELECT * FROM reservations")}
    assert status[("alice", "a1")] == status[("alice", "a2")] == status[("mallory", "m1")] == "reserved"
    assert replayed(h, "budgets")["digest"] == live_digest(h, "budgets")["digest"]


# ------------------------------------------------------------------ finding 8: counters


def test_a_flood_of_valid_maximal_data_events_saturates_instead_of_crashing(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice", "bob"))
    policy(h, "agent", "alice", "data", 10**6, hard_limit_action="alert_only")
    policy(h, "org", "acme", "data", 10**6, hard_limit_action="alert_only")
    big = Data(bytes_read=limits.MAX_DATA_BYTES, bytes_written=limits.MAX_DATA_BYTES)
    n = limits.INT64_MAX // (2 * limits.MAX_DATA_BYTES) + 1  # 4,612 events: past 2**63 - 1 together
    assert n == 4_612
    with Emitter.open("alice", home=h.path, context=Context(org="acme"), background_flush=False,
                      batch_size=limits.MAX_BATCH_EVENTS) as em:
        for i in range(n):
            em.emit(big, event_time_us=T0 + 1_000 + i)
    with emitter(h, "bob") as em:  # someone else's events after the flood still get counted
        em.emit(Data(bytes_read=5, bytes_written=0), event_time_us=T0 + 10_000)
    run(h)
    a = budget(h, "agent", "alice", "data")
    # saturated far past its allocation: an overdraw, reported as such with negative remaining (not clamped to 0)
    assert a["consumed"] == limits.MAX_BUDGET_COUNTER and a["status"] == "overdrawn"
    assert a["remaining"] == 10**6 - limits.MAX_BUDGET_COUNTER
    assert budget(h, "org", "acme", "data")["consumed"] == limits.MAX_BUDGET_COUNTER
    assert replayed(h, "budgets")["digest"] == live_digest(h, "budgets")["digest"]


# ------------------------------------------------------------------ every grant is visible


def test_the_journal_lists_every_grant_and_withdrawal_in_log_order(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice", "bob"))
    g1 = grant(h, "bob", "grader", t=T0 + 10)
    g2 = grant(h, "alice", "reserve", "project:p9", t=T0 + 20)
    g3 = grant(h, "bob", "grader", active=False, t=T0 + 30)
    run(h, "journal")
    got = rows(h, "SELECT * FROM grants ORDER BY append_time_us", "journal")
    assert [(r["event_id"], r["agent_id"], r["capability"], r["scope"], r["active"]) for r in got] == [
        (g1, "bob", "grader", "", True), (g2, "alice", "reserve", "project:p9", True), (g3, "bob", "grader", "", False)]
    assert got[0]["append_time_us"] < got[1]["append_time_us"] < got[2]["append_time_us"]
    assert replayed(h, "journal")["digest"] == live_digest(h, "journal")["digest"]
