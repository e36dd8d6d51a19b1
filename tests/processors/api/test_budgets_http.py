"""Admission, balances and usage over real HTTP: a ``tokenledger serve`` process on loopback and ``tokenledger run
journal allocations budgets`` running beside it on the same home, as an operator runs them.

- a reservation long-polls to the budgets processor's decision: granted within a DENY budget, then committed
  (balances count the commit) or released; denied over the hard limit, without a budget, against another agent's
  scope; the reserve's own checks (400 naming the field), tokens that may not (401 / 403);
- balances after ingest: the budgets that govern an agent with exact consumed / reserved / remaining per kind;
- usage: an agent's LLM calls priced by the allocations processor, totals and grouped by model and by UTC day,
  narrowed by from / to, exact micro-USD and the decimal string; unpriced calls counted, never $0;
- every read answer carries the freshness of the views it read.

The usage history lies on fixed past days (two and three days before the test's first hour): its agent holds the
operator's backfill grant, the prices are in force from ten days before (control events take effect by log order,
whatever time they claim).
"""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from support.serving import caught_up, control, eventually, problem, processors_running

from ledger.sdk.emitter import Emitter
from ledger.testing.homes import T0, make_home
from ledger.units import US_PER_DAY, US_PER_HOUR
from ledger.wire.events import BudgetPolicy, Grant, PriceSet
from processors.testing.serve import running_service

PROCESSORS = ("journal", "allocations", "budgets")
DECISION_WAIT = "30s"
# our own model names, priced below (the home has no other price)
MODEL_A, MODEL_B = ("openai", "test-mini-1"), ("anthropic", "test-small-1")
PRICED_FROM = T0 - 10 * US_PER_DAY
# USD per million tokens 2 / 8 / 0.5 (cache reads): 2, 8 and 0.5 micro-USD per token
PRICE_A = PriceSet(provider=MODEL_A[0], model=MODEL_A[1], input_micros_per_mtok=2_000_000,
                   output_micros_per_mtok=8_000_000, cache_read_micros_per_mtok=500_000,
                   cache_write_micros_per_mtok=2_500_000, effective_from_us=PRICED_FROM)
# 1 / 5: 1 and 5 micro-USD per token
PRICE_B = PriceSet(provider=MODEL_B[0], model=MODEL_B[1], input_micros_per_mtok=1_000_000,
                   output_micros_per_mtok=5_000_000, cache_read_micros_per_mtok=100_000,
                   cache_write_micros_per_mtok=1_250_000, effective_from_us=PRICED_FROM)
DAY0 = T0 - T0 % US_PER_DAY  # the UTC day of the test's first hour
DAY1, DAY2 = DAY0 - 3 * US_PER_DAY, DAY0 - 2 * US_PER_DAY  # the history's days
LIVE = T0 + 1_000
# dave's calls: (time, (provider, model), input, output, cache reads, micro-USD as priced above)
HISTORY = [
    (DAY1 + US_PER_HOUR, MODEL_A, 1_000, 200, 0, 1_000 * 2 + 200 * 8),  # 3,600
    (DAY1 + 2 * US_PER_HOUR, MODEL_B, 3_000, 500, 0, 3_000 * 1 + 500 * 5),  # 5,500
    (DAY2 + US_PER_HOUR, MODEL_A, 2_000, 100, 0, 2_000 * 2 + 100 * 8),  # 4,800
]
# live: 1,200 input of which 400 cache reads, 300 output: 800 x 2 + 400 x 0.5 + 300 x 8 = 4,200 micro-USD
LIVE_CALL = (LIVE, MODEL_A, 1_200, 300, 400, 4_200)
UNPRICED = ("acme", "no-such-model", 100, 10)  # no price: counted as unpriced, never $0


def _day(us: int) -> str:
    return dt.datetime.fromtimestamp(us // 1_000_000, dt.UTC).date().isoformat()


def _policy(agent: str, kind: str, allocation: int) -> BudgetPolicy:
    """A DENY budget with day-long windows anchored at T0 (the tests' hours stay inside one window)."""
    return BudgetPolicy(scope="agent", scope_id=agent, budget_kind=kind, allocation=allocation, soft_limit_pct=80,
                        hard_limit_pct=100, throttle_at_soft=False, suspend_at_hard=False, emergency_reserve_pct=0,
                        hard_limit_action="deny", reset_interval_us=US_PER_DAY, effective_from_us=T0)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("budgets-http")
    h = make_home(tmp / "home", agents=("alice", "bob", "carol", "dave", "erin", "frank"))
    control(h, [(PRICE_A, PRICED_FROM), (PRICE_B, PRICED_FROM),
                (_policy("alice", "llm_tokens", 10_000), T0 + 60), (_policy("bob", "llm_tokens", 1_000), T0 + 61),
                (_policy("dave", "llm_tokens", 100_000), T0 + 62), (_policy("dave", "usd", 1_000_000), T0 + 63),
                (_policy("erin", "llm_tokens", 10_000), T0 + 64), (_policy("frank", "llm_tokens", 10_000), T0 + 65),
                (Grant(agent_id="dave", capability="backfill", max_age_us=30 * US_PER_DAY), T0 + 66)])
    with Emitter.open("dave", home=h.path, background_flush=False) as em:
        for t, (provider, model), tin, tout, cached, _ in [*HISTORY, LIVE_CALL]:
            em.action("llm.call", provider=provider, model=model, input_tokens=tin, output_tokens=tout,
                      cache_read_tokens=cached, event_time_us=t)
        provider, model, tin, tout = UNPRICED
        em.action("llm.call", provider=provider, model=model, input_tokens=tin, output_tokens=tout,
                  event_time_us=LIVE + 1)
    with processors_running(h, PROCESSORS, tmp / "run.log") as proc:
        eventually(lambda: proc.poll() is None and caught_up(h, PROCESSORS), "the processors to publish the log")
        with running_service(h.path) as s:
            yield s


def _reserve(served, token, **body) -> httpx.Response:
    return httpx.post(served.url + "/v1/reservations", json=body, headers=served.auth(token))


def _decision(served, token, rid, *, agent=None, until=("pending",)) -> dict:
    """The reservation's answer once its status is not in ``until`` (long-polls; asks again while it is)."""
    params = {"wait": DECISION_WAIT, **({"agent": agent} if agent else {})}

    def ask():
        r = httpx.get(f"{served.url}/v1/reservations/{rid}", params=params, headers=served.auth(token), timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        return None if body["status"] in until else body

    return eventually(ask, f"reservation {rid} to leave {until}")


def _budget(served, token, agent, kind) -> dict:
    r = httpx.get(f"{served.url}/v1/agents/{agent}/budgets", params={"kind": kind}, headers=served.auth(token))
    assert r.status_code == 200, r.text
    (row,) = r.json()["budgets"]
    return row


# ------------------------------------------------------------------ reservations


def test_a_granted_reservation_is_committed_and_counted(served):
    alice = served.token("alice", scopes=("reserve", "read"))
    r = _reserve(served, alice, kind="llm_tokens", amount=4_000, ttl_s=600)
    assert r.status_code == 202, r.text
    made = r.json()
    rid = made["reservation_id"]
    assert len(rid) == 32 and int(rid, 16) >= 0  # a uuid4 hex when none is given
    assert made["status"] == "pending" and made["agent"] == "alice" and made["scope_id"] == "alice"
    assert made["expires_us"] - made["created_us"] == 600_000_000
    assert r.headers["location"] == f"/v1/reservations/{rid}"
    # one long-poll is answered with the decision (the processor decides within seconds, well inside the wait)
    got = httpx.get(served.url + r.headers["location"], params={"wait": DECISION_WAIT}, headers=served.auth(alice),
                    timeout=60).json()
    assert (got["status"], got["reason"], got["kind"], got["amount"], got["committed"]) == (
        "granted", "within_budget", "llm_tokens", 4_000, 0)
    assert got["levels"] == ["agent:alice"] and got["freshness"]["budgets"]["age_s"] >= 0
    held = _budget(served, alice, "alice", "llm_tokens")  # the decision's publish holds it
    assert (held["consumed"], held["reserved"], held["available"]) == (0, 4_000, 6_000)

    r = httpx.post(f"{served.url}/v1/reservations/{rid}/commit", json={"amount": 3_000},
                   headers=served.auth(alice))
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["kind"], r.json()["amount"]) == ("accepted", "llm_tokens", 3_000)
    # the same commit again appends nothing (its idempotency key); another amount is a conflict
    again = httpx.post(f"{served.url}/v1/reservations/{rid}/commit", json={"amount": 3_000},
                       headers=served.auth(alice))
    assert again.status_code == 202 and again.json()["event_id"] == r.json()["event_id"]
    problem(httpx.post(f"{served.url}/v1/reservations/{rid}/commit", json={"amount": 2_999, "kind": "llm_tokens"},
                       headers=served.auth(alice)), 409, "idempotency_conflict")
    done = _decision(served, alice, rid, until=("pending", "granted"))
    assert (done["status"], done["committed"]) == ("committed", 3_000)
    row = eventually(lambda: (b := _budget(served, alice, "alice", "llm_tokens"))["reserved"] == 0 and b,
                     "alice's hold to be settled")
    # the commit is the spend: 3,000 consumed, the rest of the hold freed
    assert (row["allocation"], row["consumed"], row["reserved"], row["remaining"], row["available"]) == (
        10_000, 3_000, 0, 7_000, 7_000)


def test_a_released_reservation_frees_its_hold(served):
    erin = served.token("erin", scopes=("reserve", "read"))
    r = _reserve(served, erin, reservation_id="release-me", kind="llm_tokens", amount=1_000)
    assert r.status_code == 202 and r.json()["reservation_id"] == "release-me"
    assert _decision(served, erin, "release-me")["status"] == "granted"
    # a token that may only reserve may still poll its own decision
    only_reserve = served.token("erin", scopes=("reserve",))
    assert _decision(served, only_reserve, "release-me")["status"] == "granted"
    # a retry of the same reserve (its answer lost) is answered with the published reservation, appending nothing
    again = _reserve(served, erin, reservation_id="release-me", kind="llm_tokens", amount=1_000)
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["status"] == "granted"
    # the id is taken: a reserve of it for another amount is refused before anything is appended
    problem(_reserve(served, erin, reservation_id="release-me", kind="llm_tokens", amount=1_001), 409,
            "idempotency_conflict")
    r = httpx.post(f"{served.url}/v1/reservations/release-me/release", headers=served.auth(erin))
    assert r.status_code == 202 and r.json()["kind"] == "llm_tokens"  # the kind from the published reservation
    done = _decision(served, erin, "release-me", until=("pending", "granted"))
    assert (done["status"], done["committed"]) == ("released", 0)


def test_denied_reservations_name_their_reason(served):
    bob = served.token("bob", scopes=("reserve", "read"))
    carol = served.token("carol", scopes=("reserve", "read"))
    # beyond bob's 1,000 and all his siblings could lend him (reallocation is all or nothing)
    over = _reserve(served, bob, kind="llm_tokens", amount=10**9).json()["reservation_id"]
    got = _decision(served, bob, over)
    assert (got["status"], got["reason"], got["amount"]) == ("denied", "hard_limit", 10**9)
    unbudgeted = _reserve(served, carol, kind="llm_tokens", amount=1).json()["reservation_id"]
    assert (d := _decision(served, carol, unbudgeted))["status"] == "denied" and d["reason"] == "not_budgeted"
    # bob naming alice's agent scope: only the operator's reserve grant would let him
    foreign = _reserve(served, bob, kind="llm_tokens", amount=1, scope="agent", scope_id="alice").json()
    assert foreign["scope_id"] == "alice"
    assert (d := _decision(served, bob, foreign["reservation_id"]))["status"] == "denied"
    assert d["reason"] == "not_permitted"
    # the operator reserves for bob: the same budget decides
    r = _reserve(served, None, agent="bob", kind="llm_tokens", amount=1_000)
    assert r.status_code == 202 and r.json()["agent"] == "bob"
    assert r.headers["location"] == f"/v1/reservations/{r.json()['reservation_id']}?agent=bob"
    assert _decision(served, None, r.json()["reservation_id"], agent="bob")["status"] == "granted"


def test_an_undecided_reservation_is_pending_and_ids_are_per_agent(served):
    erin = served.token("erin", scopes=("reserve", "read"))
    bob = served.token("bob", scopes=("reserve", "read"))
    # nothing to decide: the long-poll ends at its wait, still pending
    r = httpx.get(f"{served.url}/v1/reservations/never-made", params={"wait": "500ms"}, headers=served.auth(erin))
    assert r.status_code == 200 and r.json()["status"] == "pending" and r.json()["reason"] is None
    assert set(r.json()["freshness"]) == {"budgets"}
    assert _decision(served, erin, _reserve(served, erin, reservation_id="mine", kind="llm_tokens",
                                             amount=10).json()["reservation_id"])["status"] == "granted"
    # bob's "mine" is bob's own: not erin's row
    r = httpx.get(f"{served.url}/v1/reservations/mine", headers=served.auth(bob))
    assert r.status_code == 200 and r.json()["status"] == "pending"
    # no published reservation and no kind: nothing to release
    problem(httpx.post(f"{served.url}/v1/reservations/never-made/release", headers=served.auth(erin)), 404,
            "reservation_not_found", "reservation_id")


def test_a_hold_past_its_expiry_is_expired_and_a_late_commit_still_counts(served):
    frank = served.token("frank", scopes=("reserve", "read"))
    r = _reserve(served, frank, reservation_id="short", kind="llm_tokens", amount=100, ttl_s=1)
    assert r.status_code == 202
    # granted at its event time; once the service's clock passes its expiry it is no longer held
    first = _decision(served, frank, "short")
    assert first["status"] in ("granted", "expired") and first["reason"] == "within_budget"
    assert first["expires_us"] - first["created_us"] == 1_000_000
    assert _decision(served, frank, "short", until=("pending", "granted"))["status"] == "expired"
    r = httpx.post(f"{served.url}/v1/reservations/short/commit", json={"amount": 50}, headers=served.auth(frank))
    assert r.status_code == 202
    # the processor expires the hold at the commit's time and counts the spend all the same
    row = eventually(lambda: (b := _budget(served, frank, "frank", "llm_tokens"))["consumed"] == 50 and b,
                     "frank's late commit to be counted")
    assert (row["reserved"], row["remaining"]) == (0, 9_950)
    assert _decision(served, frank, "short", until=("pending", "granted"))["committed"] == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "llm_tokens", "amount": "5"}, "amount"),  # a count as text is not a count
    ({"kind": "llm_tokens", "amount": 5.0}, "amount"),
    ({"kind": "llm_tokens", "amount": True}, "amount"),
    ({"kind": "llm_tokens", "amount": 0}, "amount"),
    ({"kind": "llm_tokens", "amount": 10**15 + 1}, "amount"),
    ({"kind": "llm_tokens"}, "amount"),
    ({"kind": "gold", "amount": 5}, "kind"),
    ({"kind": "llm_tokens", "amount": 5, "ttl_s": 0}, "ttl_s"),
    ({"kind": "llm_tokens", "amount": 5, "scope": "galaxy"}, "scope"),
    ({"kind": "llm_tokens", "amount": 5, "scope": "project"}, "scope_id"),
    ({"kind": "llm_tokens", "amount": 5, "reservation_id": "a\nb"}, "reservation_id"),
    ({"kind": "llm_tokens", "amount": 5, "reservation_id": "x" * 300}, "reservation_id"),
    ({"kind": "llm_tokens", "amount": 5, "colour": "red"}, "colour"),
])
def test_a_bad_reserve_is_a_400_naming_the_field(served, body, field):
    alice = served.token("alice", scopes=("reserve",))
    problem(_reserve(served, alice, **body), 400, "invalid_field", field)


def test_who_may_reserve_and_read_reservations(served):
    reader = served.token("alice", scopes=("read",))
    alice = served.token("alice", scopes=("reserve", "read"))
    problem(httpx.post(served.url + "/v1/reservations", json={"kind": "llm_tokens", "amount": 1}), 401,
            "unauthorized")
    problem(_reserve(served, reader, kind="llm_tokens", amount=1), 403, "missing_scope")
    problem(_reserve(served, alice, kind="llm_tokens", amount=1, agent="bob"), 403, "forbidden_agent", "agent")
    problem(_reserve(served, None, kind="llm_tokens", amount=1), 400, "invalid_field", "agent")
    problem(httpx.get(f"{served.url}/v1/reservations/x", params={"agent": "bob"}, headers=served.auth(alice)), 403,
            "forbidden_agent")
    problem(httpx.get(f"{served.url}/v1/reservations/x", headers=served.auth()), 400, "invalid_field", "agent")
    for wait in ("31s", "5", "-1s", "soon"):
        problem(httpx.get(f"{served.url}/v1/reservations/x", params={"wait": wait}, headers=served.auth(alice)),
                400, "invalid_field", "wait")
    problem(httpx.post(f"{served.url}/v1/reservations/x/commit", json={"amount": -1, "kind": "llm_tokens"},
                       headers=served.auth(alice)), 400, "invalid_field", "amount")
    problem(httpx.post(f"{served.url}/v1/reservations/x/commit", json={"amount": 1, "kind": "llm_tokens",
                                                                       "agent": "bob"},
                       headers=served.auth(alice)), 403, "forbidden_agent")


# ------------------------------------------------------------------ balances and usage


def test_balances_after_ingest(served):
    dave = served.token("dave", scopes=("read",))
    r = httpx.get(served.url + "/v1/agents/dave/budgets", headers=served.auth(dave))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["freshness"]) == {"budgets"} and body["freshness"]["budgets"]["age_s"] >= 0
    rows = {b["kind"]: b for b in body["budgets"]}
    assert set(rows) == {"llm_tokens", "usd"} and {b["scope"] for b in rows.values()} == {"agent"}
    # the live calls only (history lands in its own windows): 1,200 + 300 and the unpriced call's 100 + 10 tokens
    tokens = rows["llm_tokens"]
    assert (tokens["allocation"], tokens["consumed"], tokens["reserved"], tokens["remaining"]) == (
        100_000, 1_610, 0, 98_390)
    assert (tokens["status"], tokens["throttle_level"], tokens["throttle_delay_us"], tokens["suspended"]) == (
        "healthy", 0, 0, False)
    assert tokens["window_start_us"] == T0 and tokens["window_end_us"] == T0 + US_PER_DAY
    usd = rows["usd"]
    assert (usd["unit"], usd["consumed"], usd["remaining"], usd["unpriced_calls"]) == ("micro-USD", 4_200, 995_800, 1)
    assert usd["usd"] == {"allocation": "1.000000", "consumed": "0.004200", "reserved": "0.000000",
                          "remaining": "0.995800", "available": "0.995800"}
    # the operator reads anyone's; another agent's token reads nobody else's
    assert httpx.get(served.url + "/v1/agents/dave/budgets", headers=served.auth()).json()["budgets"] == body["budgets"]
    problem(httpx.get(served.url + "/v1/agents/dave/budgets", headers=served.auth(served.token("bob"))), 403,
            "forbidden_agent")
    problem(httpx.get(served.url + "/v1/agents/dave/budgets", params={"kind": "gold"}, headers=served.auth(dave)),
            400, "invalid_field", "kind")
    problem(httpx.get(served.url + "/v1/agents/dave/budgets", headers=served.auth(served.token("dave", ("ingest",)))),
            403, "missing_scope")


def _usage(served, token, **params) -> dict:
    r = httpx.get(served.url + "/v1/agents/dave/usage", params=params, headers=served.auth(token))
    assert r.status_code == 200, r.text
    return r.json()


def test_usage_totals_by_model_and_by_day(served):
    dave = served.token("dave", scopes=("read",))
    calls = [*HISTORY, LIVE_CALL]
    total = _usage(served, dave)
    assert set(total["freshness"]) == {"allocations"} and "groups" not in total
    t = total["totals"]
    assert (t["calls"], t["input_tokens"], t["output_tokens"], t["cache_read_tokens"], t["reasoning_tokens"]) == (
        4, 7_200, 1_100, 400, 0)
    assert t["cost_micros"] == sum(c[5] for c in calls) == 18_100 and t["cost_usd"] == "0.018100"
    assert (t["unpriced_calls"], t["unpriced_interactions"], t["estimated_calls"]) == (1, 0, 0)

    by_model = {(g["provider"], g["model"]): g for g in _usage(served, dave, group_by="model")["groups"]}
    assert set(by_model) == {MODEL_A, MODEL_B, UNPRICED[:2]}
    a, b, unpriced = by_model[MODEL_A], by_model[MODEL_B], by_model[UNPRICED[:2]]
    assert (a["calls"], a["input_tokens"], a["output_tokens"], a["cost_micros"], a["cost_usd"]) == (
        3, 4_200, 600, 3_600 + 4_800 + 4_200, "0.012600")
    assert (b["calls"], b["input_tokens"], b["output_tokens"], b["cost_micros"]) == (1, 3_000, 500, 5_500)
    assert (unpriced["calls"], unpriced["cost_micros"], unpriced["unpriced_calls"]) == (0, 0, 1)

    days = {g["day"]: g for g in _usage(served, dave, group_by="day")["groups"]}
    assert set(days) == {_day(DAY1), _day(DAY2), _day(LIVE)}
    assert (days[_day(DAY1)]["calls"], days[_day(DAY1)]["cost_micros"]) == (2, 9_100)
    assert (days[_day(DAY2)]["calls"], days[_day(DAY2)]["cost_micros"]) == (1, 4_800)
    assert (days[_day(LIVE)]["calls"], days[_day(LIVE)]["cost_micros"], days[_day(LIVE)]["unpriced_calls"]) == (
        1, 4_200, 1)

    # from inclusive, to exclusive: the second history day only
    frm, to = _day(DAY2) + "T00:00:00Z", _day(DAY2 + US_PER_DAY) + "T00:00:00Z"
    narrow = _usage(served, dave, **{"from": frm, "to": to, "group_by": "model"})
    assert narrow["from"] == frm.replace("Z", ".000Z") and [(g["model"], g["calls"], g["cost_micros"])
                                                            for g in narrow["groups"]] == [(MODEL_A[1], 1, 4_800)]
    # a time with an offset is the same instant
    shifted = _usage(served, dave, **{"from": _day(DAY2) + "T02:00:00+02:00", "to": to})
    assert shifted["totals"]["cost_micros"] == 4_800


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-05-01"}, "from"),  # a date names no instant
    ({"from": "2026-05-01T00:00:00"}, "from"),  # nor does a time without a zone
    ({"to": "2026-02-30T00:00:00Z"}, "to"),
    ({"to": "2026-05-01T00:00:00.1234567Z"}, "to"),  # finer than a microsecond would be rounded
    ({"from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "to"),
    ({"group_by": "week"}, "group_by"),
])
def test_bad_usage_parameters_are_400s_naming_them(served, params, field):
    dave = served.token("dave", scopes=("read",))
    problem(httpx.get(served.url + "/v1/agents/dave/usage", params=params, headers=served.auth(dave)), 400,
            "invalid_field", field)


def test_usage_of_another_agent_is_forbidden(served):
    problem(httpx.get(served.url + "/v1/agents/dave/usage", headers=served.auth(served.token("alice"))), 403,
            "forbidden_agent")
    problem(httpx.get(served.url + "/v1/agents/dave/usage"), 401, "unauthorized")
    assert _usage(served, None)["totals"]["calls"] == 4  # the operator reads anyone's
