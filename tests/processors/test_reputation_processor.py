"""The reputation processor end to end: its scores equal ledger/economics/reputation.py's pure results bit for
bit; self-issued trust is recorded but never counts; graded outcomes become incentive trust; a
restart (restore from the views) and a replay reach the live digest, on both log backends."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from test_budgets_processor import BACKENDS, kafka_home, replayed, rows, run

from ledger.economics.reputation import US_PER_DAY, TrustEvent, reputation
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, fill, grant, make_home
from ledger.wire.events import Context, Grant, Outcome
from processors.host.service import live_digest

CTX = Context(org="acme", project="p1")


@pytest.fixture(params=BACKENDS)
def backend_home(request, tmp_path) -> Home:
    agents = ("alice", "bob", "carol")
    if request.param == "kafka":
        return kafka_home(tmp_path / "home", request.getfixturevalue("kafka_url"), agents)
    return make_home(tmp_path / "home", agents=agents)


def test_scores_equal_the_pure_function_and_self_trust_is_ignored(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice", "bob", "carol"))
    # ten days of ratings, ending at T0: older than any skew window, so the raters hold backfill grants
    base = T0 - 10 * US_PER_DAY
    t1, t2, t3 = base + 1_000, base + 3 * US_PER_DAY, base + 10 * US_PER_DAY
    grant(h, "carol", "grader", t=base)  # in force from before the first rating
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as op:
            for agent in ("alice", "bob", "carol"):
                op.emit(Grant(agent, "backfill", max_age_us=30 * US_PER_DAY))
    finally:
        log.close()
    ids = {}
    with Emitter.open("alice", home=h.path, context=CTX, background_flush=False) as em:
        ids["a1"] = em.trust("bob", "accuracy", 5, event_time_us=t1)
        ids["a2"] = em.trust("bob", "reliability", "2.5", half_life_us=US_PER_DAY, event_time_us=t2)
    with Emitter.open("carol", home=h.path, context=CTX, background_flush=False) as em:
        ids["c1"] = em.trust("bob", "feedback", -3, event_time_us=t2 + 5)
    with Emitter.open("bob", home=h.path, context=CTX, background_flush=False) as em:
        em.trust("bob", "accuracy", 100, event_time_us=t2 + 6)  # about itself: ignored
    with Emitter.open("carol", home=h.path, context=CTX, background_flush=False) as em:  # the grader grades bob
        ids["o1"] = em.emit(Outcome(task_id="t9", confidence_milli=500, score_milli=900, subject_id="bob"),
                            event_time_us=t3)
    run(h, "reputation")
    (row,) = rows(h, "SELECT * FROM reputation WHERE agent_id='bob'", "reputation")
    expected = reputation([
        TrustEvent(ids["a1"], "alice", "bob", "accuracy", 5.0, t1),
        TrustEvent(ids["a2"], "alice", "bob", "reliability", 2.5, t2, US_PER_DAY),
        TrustEvent(ids["c1"], "carol", "bob", "feedback", -3.0, t2 + 5),
        TrustEvent("self", "bob", "bob", "accuracy", 100.0, t2 + 6),  # the pure function ignores it too
        TrustEvent(ids["o1"], "processor.reputation", "bob", "accuracy", 9.0, t3),  # 0.9 * 10 incentive
    ], "bob", t3)
    assert row["as_of_us"] == t3
    for d, score in expected.scores:
        assert row[d.value] == score  # bit for bit
    assert row["overall"] == expected.overall and row["tier"] == expected.tier.value
    assert Decimal(row["multiplier"]) == expected.multiplier
    assert (row["events_counted"], row["events_self"]) == (4, 1)
    hist = rows(h, "SELECT * FROM trust_history ORDER BY event_time_us", "reputation")
    assert [r["counted"] for r in hist] == [True, True, True, False, True]
    assert hist[-1]["source"] == "incentive:task_reward" and hist[-1]["value_milli"] == 9_000


def test_restart_and_replay_reach_the_live_digest(backend_home):
    h = backend_home
    fill(h, tasks=10, batch_size=5)
    grant(h, "carol", "grader")
    with Emitter.open("alice", home=h.path, context=CTX, background_flush=False) as em:
        em.trust("bob", "compliance", -4, event_time_us=T0 + 9_000_000_000)
    with Emitter.open("carol", home=h.path, context=CTX, background_flush=False) as em:
        em.emit(Outcome(task_id="t1", score_milli=200, subject_id="alice"), event_time_us=T0 + 9_000_000_001)  # penalty
    run(h, "reputation", max_records=4)
    with Emitter.open("carol", home=h.path, context=CTX, background_flush=False) as em:
        em.trust("alice", "feedback", 2, event_time_us=T0 + 9_100_000_000)
    run(h, "reputation", max_records=2)  # a second process: state restored from the views
    live = live_digest(h, "reputation")
    assert live["tables"]["reputation"]["rows"] >= 4 and live["tables"]["trust_history"]["rows"] > 10
    assert replayed(h, "reputation")["digest"] == live["digest"]
    (alice,) = rows(h, "SELECT * FROM reputation WHERE agent_id='alice'", "reputation")
    assert alice["accuracy"] < 0.7  # the graded 0.2 cost accuracy


def test_reputation_show_cli(tmp_path):
    from typer.testing import CliRunner

    from processors.cli import build_app
    app = build_app()

    h = make_home(tmp_path / "home", agents=("alice", "bob"))
    with Emitter.open("alice", home=h.path, background_flush=False) as em:
        em.trust("bob", "accuracy", 10, event_time_us=T0 + 1_000)
    run(h, "reputation", publish=True)
    r = CliRunner().invoke(app, ["reputation", "show", "--home", str(h.path), "--json"])
    assert r.exit_code == 0, r.output
    (bob,) = json.loads(r.stdout)
    assert bob["agent_id"] == "bob" and bob["accuracy"] == pytest.approx(0.8) and bob["multiplier"] == "1.0"


def test_a_long_history_is_settled_into_sums_restored_and_replayed_to_the_same_bits(tmp_path):
    """Past TRUST_RECENT_EVENTS ratings about one subject, the older ones live as decayed sums (reputation_decay,
    budget_trust_decay): scores stay within rounding of the pure function, and a restart part-way and a replay
    from offset 0 reach the live digest — the sums are carried bit for bit, never refolded in another order."""
    from ledger.limits import TRUST_RECENT_EVENTS

    h = make_home(tmp_path / "home", agents=("alice", "bob", "carol"))
    rng = __import__("random").Random(5)
    sent: list[TrustEvent] = []
    n = 2 * TRUST_RECENT_EVENTS + 40
    for part in range(3):
        for issuer in ("alice", "carol"):
            with Emitter.open(issuer, home=h.path, context=CTX, background_flush=False) as em:
                for i in range(n // 6):
                    t = T0 + 1_000 * (part * n + i) + (7 if issuer == "carol" else 0)
                    dim, value = rng.choice(["accuracy", "feedback"]), rng.randrange(-5_000, 8_001)
                    eid = em.trust("bob", dim, f"{value / 1000}", event_time_us=t)
                    sent.append(TrustEvent(eid, issuer, "bob", dim, value / 1000, t))
        for name in ("reputation", "budgets"):
            run(h, name, max_records=3)  # a new process each part: state restored from the views
    (row,) = rows(h, "SELECT * FROM reputation WHERE agent_id='bob'", "reputation")
    want = reputation(sent, "bob", row["as_of_us"])
    assert row["events_counted"] == len(sent) > TRUST_RECENT_EVENTS
    for d, score in want.scores:
        assert row[d.value] == pytest.approx(score, rel=1e-12)
    settled = rows(h, "SELECT sum(events) AS n FROM reputation_decay WHERE subject='bob'", "reputation")
    assert settled[0]["n"] == len(sent) - TRUST_RECENT_EVENTS
    assert rows(h, "SELECT sum(events) AS n FROM budget_trust_decay WHERE subject='bob'")[0]["n"] == settled[0]["n"]
    for name in ("reputation", "budgets"):
        assert replayed(h, name)["digest"] == live_digest(h, name)["digest"]
