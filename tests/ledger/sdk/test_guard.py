"""The spend guard on a real home: the budgets processor folds and publishes in a thread of the test (as
``tokenledger run budgets`` does in its own process), guards reserve through real emitters and wait for its
published decisions.

- a refused reservation raises ``BudgetRefused`` (reason and deciding level as evidence) before the body runs: with
  the real ``openai`` client instrumented (``ledger.sdk.instrument``) against the loopback provider server
  (``ledger.testing.provider_server``), the server sees no request;
- a granted one ends with consumed == what was spent and nothing held: the instrumented call's own action is its
  spend record, ``spent`` is committed; a lazy guard reserves the priced request at its first call and tops up
  for a later one;
- fail closed: an unpriced model, a request without a maximum output, a call the hold does not cover, no decision
  within the timeout (the hold is released);
- nesting is refused; the decorator form for sync and async functions; the guard in force is per thread;
- racing guarded agents never overspend a DENY budget, on the embedded log and on Kafka.

Where a test drives the hooks itself, ``metered`` does what an instrumented client does (``before_call``, the
call's action through the same emitter, ``after_call``).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import openai
import pytest

from ledger.errors import AdmissionError, BudgetRefused, EconomicsError, LedgerError, ValidationError
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.guard import EXCEEDS_HOLD, ActiveGuard, Hold, active_guard, settlement
from ledger.sdk.home import Home
from ledger.sdk.instrument import instrument
from ledger.sdk.views import read_view
from ledger.testing.homes import T0, make_home
from ledger.testing.provider_server import ProviderServer, chat_completion
from ledger.wire import codec
from ledger.wire.events import Action, BudgetPolicy, Context, LlmUsage, PriceSet, Reservation
from processors.host.service import open_runner
from processors.runtime.publish import Publisher

US_PER_DAY = 86_400_000_000
PROVIDER, MODEL = "openai", "test-mini-1"  # our own model name, priced below (the home has no other price)
# USD per million tokens 2 / 8 / 0.5 / 2.5: 2, 8, 0.5 and 2.5 micro-USD per token
PRICE = PriceSet(provider=PROVIDER, model=MODEL, input_micros_per_mtok=2_000_000, output_micros_per_mtok=8_000_000,
                 cache_read_micros_per_mtok=500_000, cache_write_micros_per_mtok=2_500_000, effective_from_us=T0)
# 1,200 input of which 400 cache reads, 300 output: 800 x 2 + 400 x 0.5 + 300 x 8 = 1,600 + 200 + 2,400 micro-USD
USAGE = LlmUsage(provider=PROVIDER, model=MODEL, input_tokens=1_200, output_tokens=300, cache_read_tokens=400)
USAGE_MICROS = 4_200
IDLE_S = 0.02  # the live processor's sleep between empty polls
WAIT_S = 60.0  # upper bound for a thread or processor to finish (never an assertion on time)
PROMPT = [{"role": "user", "content": "Summarise the attached notes in two sentences."}]


def control(h: Home, *bodies, t: int = T0 + 60) -> None:
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            for i, body in enumerate(bodies):
                em.emit(body, event_time_us=t + i)
    finally:
        log.close()


def policy(scope: str, scope_id: str, kind: str, allocation: int) -> BudgetPolicy:
    """A DENY budget with day-long windows anchored at T0 (the tests' hour stays inside one window)."""
    return BudgetPolicy(scope=scope, scope_id=scope_id, budget_kind=kind, allocation=allocation, soft_limit_pct=80,
                        hard_limit_pct=100, throttle_at_soft=False, suspend_at_hard=False, emergency_reserve_pct=0,
                        hard_limit_action="deny", reset_interval_us=US_PER_DAY, effective_from_us=T0)


def metered(em: Emitter, g: ActiveGuard, usage: LlmUsage, *, input_estimate: int, max_output: int | None) -> None:
    """One LLM call as an instrumented client meters it: ask the guard, record the call's action, report it."""
    g.before_call(provider=usage.provider, model=usage.model, input_tokens_estimate=input_estimate,
                  max_output_tokens=max_output)
    em.action("llm.call", provider=usage.provider, model=usage.model, input_tokens=usage.input_tokens,
              output_tokens=usage.output_tokens, cache_read_tokens=usage.cache_read_tokens,
              reasoning_tokens=usage.reasoning_tokens)
    g.after_call(usage)


class LiveBudgets:
    """The budgets processor folding the log and publishing its views in a thread, until stopped; ``stop`` then
    folds what is left and publishes once more, so the views hold everything appended before it."""

    def __init__(self, h: Home) -> None:
        self.h = h
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._published = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-budgets", daemon=True)

    def __enter__(self) -> LiveBudgets:
        self._thread.start()
        # as a running `tokenledger run budgets` that has caught up: its views (and their signed manifest) hold
        # the log's prices and policies before anyone reads them (a reader that came during the very first publish
        # would see part files without a manifest)
        self._published.wait(WAIT_S)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(WAIT_S)
            assert not self._thread.is_alive(), "the budgets processor did not stop"
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            log = self.h.open_log()
            try:
                runner, store, proc = open_runner(self.h, "budgets", log)
                assert runner.key is not None
                publisher = Publisher(store, proc, self.h.views_dir("budgets"), key=runner.key)
                try:
                    runner.run_until_caught_up()  # what was on the log at start (prices, policies) is published
                    publisher.publish(runner.positions, runner.batch_no, changed=runner.written)
                    self._published.set()
                    while not self._stop.is_set():
                        idle = runner.step() == 0
                        if publisher.due(idle):
                            publisher.publish(runner.positions, runner.batch_no, changed=runner.written)
                        if idle:
                            self._stop.wait(IDLE_S)
                    runner.run_until_caught_up()
                    publisher.publish(runner.positions, runner.batch_no, changed=runner.written)
                finally:
                    publisher.close()
                    store.close()
            finally:
                log.close()
        except BaseException as e:  # raised in the test's thread by stop()
            self._error = e
            self._published.set()


def settle(h: Home) -> None:
    """Fold and publish everything on the log (no processor thread running)."""
    with LiveBudgets(h):
        pass


def budget_row(h: Home, scope: str, scope_id: str, kind: str) -> dict:
    (row,) = [r for r in read_view(h.path, "budgets", "budgets")
              if (r["scope"], r["scope_id"], r["budget_kind"]) == (scope, scope_id, kind)]
    return row


def reservation_rows(h: Home, agent: str) -> dict[str, dict]:
    return {r["reservation_id"]: r for r in read_view(h.path, "budgets", "reservations") if r["agent_id"] == agent}


def reservation_events(h: Home, agent: str) -> list[Reservation]:
    """The agent's reservation events on the log, in order."""
    log = h.open_log()
    try:
        out = []
        for rec in read_all(log, h.topic):
            for raw in codec.decode_batch(rec.value).events:
                ev = codec.decode_event(raw).event
                if ev.signer_id == agent and isinstance(ev.body, Reservation):
                    out.append(ev.body)
        return out
    finally:
        log.close()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path / "home", agents=("alice", "bob"))
    control(h, PRICE, policy("agent", "alice", "usd", 100_000), policy("agent", "alice", "llm_tokens", 5_000))
    return h


@pytest.fixture
def alice(home: Home):
    with Emitter.open("alice", home=home.path) as em:
        yield em


@pytest.fixture
def server():
    with ProviderServer() as s:
        yield s


@pytest.fixture
def client(server, alice):
    """The real openai client, pointed at the loopback server, metered into alice's emitter."""
    return instrument(openai.OpenAI(base_url=server.openai_url, api_key="test-key", max_retries=0), alice)


def actions(h: Home, agent: str) -> list[Action]:
    log = h.open_log()
    try:
        return [ev.body for rec in read_all(log, h.topic) for raw in codec.decode_batch(rec.value).events
                if (ev := codec.decode_event(raw).event).signer_id == agent and isinstance(ev.body, Action)]
    finally:
        log.close()


# ------------------------------------------------------------------ refused: nothing is sent, no body runs


def test_a_refused_reservation_raises_before_the_instrumented_call_is_sent(home, alice, server, client):
    server.reply_json("/v1/chat/completions", chat_completion("chatcmpl-1", MODEL, 10, 10), repeat=True)
    ran = []

    @alice.guard("usd", estimate_micros=150_000)  # more than the 100,000 the budget allows
    def call_llm() -> None:
        ran.append("decorated")
        client.chat.completions.create(model=MODEL, messages=PROMPT, max_completion_tokens=100)

    with LiveBudgets(home):
        with pytest.raises(BudgetRefused) as refused, alice.guard("usd", estimate_micros=150_000):
            ran.append("with")
            client.chat.completions.create(model=MODEL, messages=PROMPT, max_completion_tokens=100)
        with pytest.raises(BudgetRefused):
            call_llm()
        # a lazy guard reserves at the call, before it is sent: 20,000 output tokens x 8 > 100,000 micro-USD
        with alice.guard("usd"), pytest.raises(BudgetRefused) as lazy:
            client.chat.completions.create(model=MODEL, messages=PROMPT, max_completion_tokens=20_000)
    assert ran == [] and server.requests == [], "no body ran, no request reached the provider"
    assert actions(home, "alice") == []
    ev = refused.value.evidence
    assert ev["reason"] == "hard_limit" and ev["scope"] == "agent:alice" and ev["status"] == "refused"
    assert ev["kind"] == "usd" and ev["amount"] == 150_000 and ev["reservation_id"].startswith("guard-")
    assert refused.value.hint and "budget show --kind usd" in refused.value.hint
    # the prompt's strings are 4 + 46 characters: 12 tokens by the client's rough rule; 12 x 2 + 20,000 x 8
    assert lazy.value.evidence["amount"] == 160_024 and lazy.value.evidence["reason"] == "hard_limit"
    assert active_guard() is None
    rows = reservation_rows(home, "alice")
    assert len(rows) == 3 and {r["status"] for r in rows.values()} == {"refused"}
    assert rows[ev["reservation_id"]]["amount"] == 150_000
    b = budget_row(home, "agent", "alice", "usd")
    assert (b["consumed"], b["reserved"]) == (0, 0)
    # a refused reservation holds nothing: no commit or release follows it
    assert [e.action for e in reservation_events(home, "alice")] == ["reserve"] * 3


def test_an_agent_with_no_budget_of_the_kind_is_refused(home):
    with (Emitter.open("bob", home=home.path) as bob, LiveBudgets(home), pytest.raises(BudgetRefused) as refused,
          bob.guard("llm_tokens", estimate_tokens=10)):
        raise AssertionError("not reached")
    assert refused.value.evidence["reason"] == "not_budgeted"
    assert "budget set" in (refused.value.hint or "")


# ------------------------------------------------------------------ granted: consumed == spent, nothing held


def test_a_granted_guard_with_an_instrumented_client_ends_with_consumed_equal_to_the_spend(home, alice, server,
                                                                                            client):
    # 1,200 prompt tokens of which 400 cached, 300 completion tokens: USAGE, 4,200 micro-USD
    server.reply_json("/v1/chat/completions", chat_completion("chatcmpl-7", MODEL, 1_200, 300, cached_tokens=400))
    with LiveBudgets(home):
        with alice.guard("usd", estimate_micros=10_000) as g:
            assert active_guard() is g and g.held == 10_000
            client.chat.completions.create(model=MODEL, messages=PROMPT, max_completion_tokens=300)
            assert g.used == USAGE_MICROS and g.reported == 0  # the call's action is its spend record
            g.spent(300)  # e.g. a tool the body paid for: no event of its own, so the guard commits it
            assert (g.used, g.reported) == (USAGE_MICROS + 300, 300)
            (rid,) = g.reservation_ids
        assert active_guard() is None
    assert len(server.requests) == 1
    (action,) = actions(home, "alice")
    assert action.usage == USAGE
    b = budget_row(home, "agent", "alice", "usd")
    assert (b["consumed"], b["reserved"]) == (USAGE_MICROS + 300, 0)
    row = reservation_rows(home, "alice")[rid]
    assert (row["status"], row["amount"], row["committed"]) == ("committed", 10_000, 300)
    # the commit frees the rest of the hold: no release follows it
    assert [(e.action, e.amount) for e in reservation_events(home, "alice")] == [("reserve", 10_000),
                                                                                  ("commit", 300)]


def test_a_lazy_guard_reserves_the_priced_request_and_tops_up_for_a_later_call(home, alice):
    with LiveBudgets(home), alice.guard("usd") as g:
        assert g.held == 0  # nothing reserved before the first call
        # 1,000 input x 2 + 500 output x 8 = 6,000 micro-USD
        metered(alice, g, USAGE, input_estimate=1_000, max_output=500)  # 4,200: 1,800 left
        assert g.held == 6_000
        # 6,000 asked, 1,800 left: a second hold of the 4,200 short, decided before the call is sent
        second = LlmUsage(provider=PROVIDER, model=MODEL, input_tokens=500, output_tokens=100)  # 1,000 + 800
        metered(alice, g, second, input_estimate=1_000, max_output=500)
        assert [h.amount for h in g.holds] == [6_000, 4_200]
        g.spent(2_000)  # reported: committed, on the first hold (it covers it)
        assert g.used == USAGE_MICROS + 1_800 + 2_000
        first, top_up = g.reservation_ids
    rows = reservation_rows(home, "alice")
    assert (rows[first]["status"], rows[first]["committed"]) == ("committed", 2_000)
    assert (rows[top_up]["status"], rows[top_up]["committed"], rows[top_up]["amount"]) == ("released", 0, 4_200)
    b = budget_row(home, "agent", "alice", "usd")
    assert (b["consumed"], b["reserved"]) == (USAGE_MICROS + 1_800 + 2_000, 0)


def test_a_snapshot_id_the_book_cannot_price_is_counted_at_the_requested_models_line(home, alice):
    with LiveBudgets(home), alice.guard("usd", estimate_micros=10_000) as g:
        g.before_call(provider=PROVIDER, model=MODEL, input_tokens_estimate=1_200, max_output_tokens=300)
        g.after_call(LlmUsage(provider=PROVIDER, model=MODEL + "-snapshot-7", input_tokens=1_200, output_tokens=300,
                              cache_read_tokens=400))
        assert g.used == USAGE_MICROS
        with pytest.raises(EconomicsError):  # another provider's unknown model: nothing to fall back on
            g.after_call(LlmUsage(provider="other-ai", model="x-1", input_tokens=1, output_tokens=1))
        assert g.used == USAGE_MICROS


def test_llm_tokens_count_input_plus_output(home, alice):
    with LiveBudgets(home), alice.guard("llm_tokens", estimate_tokens=2_000) as g:
        metered(alice, g, USAGE, input_estimate=1_200, max_output=300)  # 1,500: cache reads are inside the input
        # tokens need no price; reasoning tokens are inside the output count
        metered(alice, g, LlmUsage(provider="other-ai", model="never-priced", input_tokens=10, output_tokens=5,
                                   reasoning_tokens=5), input_estimate=10, max_output=5)
        assert g.used == 1_515
    b = budget_row(home, "agent", "alice", "llm_tokens")
    assert (b["consumed"], b["reserved"]) == (1_515, 0)


def test_an_exception_in_the_body_commits_what_was_spent_and_is_re_raised(home, alice):
    class Boom(Exception):
        pass

    with LiveBudgets(home), pytest.raises(Boom), alice.guard("usd", estimate_micros=10_000) as g:
        metered(alice, g, USAGE, input_estimate=1_200, max_output=300)
        g.spent(1_500)
        raise Boom
    assert g.used == USAGE_MICROS + 1_500
    b = budget_row(home, "agent", "alice", "usd")
    assert (b["consumed"], b["reserved"]) == (USAGE_MICROS + 1_500, 0)
    assert active_guard() is None


# ------------------------------------------------------------------ fail closed


def test_an_unpriced_model_or_an_unbounded_request_reserves_nothing(home, alice):
    with alice.guard("usd") as g:
        with pytest.raises(EconomicsError) as unpriced:
            g.before_call(provider=PROVIDER, model="test-mini-9", input_tokens_estimate=10, max_output_tokens=10)
        assert unpriced.value.evidence["code"] == "unknown_model"
        assert unpriced.value.evidence["model"] == "test-mini-9"
        with pytest.raises(ValidationError) as unbounded:
            g.before_call(provider=PROVIDER, model=MODEL, input_tokens_estimate=10, max_output_tokens=None)
        assert unbounded.value.field == "max_output_tokens"
        for bad in ({"input_tokens_estimate": -1, "max_output_tokens": 1},
                    {"input_tokens_estimate": 1.5, "max_output_tokens": 1},
                    {"input_tokens_estimate": 1, "max_output_tokens": True}):
            with pytest.raises(ValidationError) as e:
                g.before_call(provider=PROVIDER, model=MODEL, **bad)
            assert e.value.field in bad
        with pytest.raises(ValidationError) as e:
            g.after_call({"input_tokens": 5})  # type: ignore[arg-type]
        assert e.value.field == "usage"
        with pytest.raises(ValidationError) as e:
            g.spent(-1)
        assert e.value.field == "amount"
    assert g.held == 0 and reservation_events(home, "alice") == []


def test_an_unpriced_model_through_the_instrumented_client_is_never_sent(home, alice, server, client):
    with alice.guard("usd"), pytest.raises(EconomicsError):
        client.chat.completions.create(model="test-mini-9", messages=PROMPT, max_completion_tokens=10)
    assert server.requests == [] and reservation_events(home, "alice") == [] and actions(home, "alice") == []


def test_a_call_an_explicit_hold_does_not_cover_is_not_sent(home, alice):
    with LiveBudgets(home), alice.guard("llm_tokens", estimate_tokens=1_000) as g:
        with pytest.raises(BudgetRefused) as refused:
            g.before_call(provider=PROVIDER, model=MODEL, input_tokens_estimate=800, max_output_tokens=300)
        (rid,) = g.reservation_ids
    ev = refused.value.evidence
    assert (ev["reason"], ev["amount"], ev["held"], ev["used"], ev["reservation_id"]) == (EXCEEDS_HOLD, 1_100, 1_000,
                                                                                           0, rid)
    assert reservation_rows(home, "alice")[rid]["status"] == "released"  # nothing used: the hold is freed
    assert [e.action for e in reservation_events(home, "alice")] == ["reserve", "release"]


def test_no_decision_within_the_timeout_releases_the_hold_and_raises(home, alice):
    ran = []
    with pytest.raises(AdmissionError) as undecided, alice.guard("usd", estimate_micros=1_000, timeout_s=0.3):
        ran.append(1)  # no processor is running: nobody decides
    assert ran == []
    ev = undecided.value.evidence
    assert ev["released"] is True and ev["amount"] == 1_000 and "tokenledger run budgets" in undecided.value.hint
    assert [(e.action, e.reservation_id) for e in reservation_events(home, "alice")] == [
        ("reserve", ev["reservation_id"]), ("release", ev["reservation_id"])]
    settle(home)  # the processor grants it late and the release frees it
    assert reservation_rows(home, "alice")[ev["reservation_id"]]["status"] == "released"
    assert budget_row(home, "agent", "alice", "usd")["reserved"] == 0


# ------------------------------------------------------------------ forms and scoping


def test_nested_guards_are_refused_before_anything_is_reserved(home, alice):
    with LiveBudgets(home), alice.guard("llm_tokens", estimate_tokens=100) as outer:
        with pytest.raises(ValidationError) as nested, alice.guard("llm_tokens", estimate_tokens=100):
            pass
        assert nested.value.field == "guard"
        assert active_guard() is outer
    assert [e.action for e in reservation_events(home, "alice")] == ["reserve", "release"]


def test_the_guard_in_force_is_per_thread(home, alice):
    seen = []
    with LiveBudgets(home), alice.guard("llm_tokens", estimate_tokens=100) as g:
        t = threading.Thread(target=lambda: seen.append(active_guard()))
        t.start()
        t.join(WAIT_S)
        assert active_guard() is g
    assert seen == [None]


def test_decorated_sync_and_async_functions_each_hold_their_own_reservation(home, alice):
    guarded = alice.guard("llm_tokens", estimate_tokens=1_000)

    @guarded
    def sync_call(n: int) -> int:
        g = active_guard()
        assert isinstance(g, ActiveGuard)
        g.spent(n)
        return n

    @guarded
    async def async_call(n: int) -> int:
        g = active_guard()
        assert isinstance(g, ActiveGuard)
        await asyncio.sleep(0)
        g.spent(n)
        return n

    async def both() -> list[int]:
        return list(await asyncio.gather(async_call(200), async_call(300)))

    with LiveBudgets(home):
        assert sync_call(100) == 100
        assert asyncio.run(both()) == [200, 300]
    assert active_guard() is None
    rows = reservation_rows(home, "alice")
    assert sorted(r["committed"] for r in rows.values()) == [100, 200, 300]
    assert {r["status"] for r in rows.values()} == {"committed"}
    b = budget_row(home, "agent", "alice", "llm_tokens")
    assert (b["consumed"], b["reserved"]) == (600, 0)


def test_bad_guard_arguments_raise_validation_errors(home, alice):
    cases = [
        (lambda: alice.guard("action", estimate_tokens=1), "kind"),
        (lambda: alice.guard("usd", estimate_tokens=1), "estimate_tokens"),
        (lambda: alice.guard("llm_tokens", estimate_micros=1), "estimate_micros"),
        (lambda: alice.guard("usd", estimate_micros=-1), "estimate_micros"),
        (lambda: alice.guard("usd", estimate_micros=1.0), "estimate_micros"),
        (lambda: alice.guard("usd", estimate_micros=1, timeout_s=0), "timeout_s"),
        (lambda: alice.guard("usd", estimate_micros=1, timeout_s=float("nan")), "timeout_s"),
        (lambda: alice.guard("usd", estimate_micros=1, ttl_us=0), "ttl_us"),
        (lambda: alice.guard("usd", estimate_micros=1, scope="galaxy"), "scope"),
    ]
    for make, field in cases:
        with pytest.raises(ValidationError) as e:
            make()
        assert e.value.field == field
    log = home.open_log()
    try:
        with Emitter(log, home.load_key("bob"), topic=home.topic) as no_home, pytest.raises(ValidationError) as e:
            no_home.guard("usd", estimate_micros=1)
        assert e.value.field == "home"
    finally:
        log.close()
    with alice.guard("usd") as g:  # lazy: nothing reserved, nothing used, nothing appended
        pass
    with pytest.raises(ValidationError):
        g.spent(1)  # the block is closed: its spend was committed


def test_settlement_fills_each_hold_in_order_and_the_last_takes_the_excess():
    holds = (Hold("a", 100), Hold("b", 50))
    assert settlement(holds, 0) == [("a", None), ("b", None)]
    assert settlement(holds, 100) == [("a", 100), ("b", None)]
    assert settlement(holds, 120) == [("a", 100), ("b", 20)]
    assert settlement(holds, 400) == [("a", 100), ("b", 300)]
    assert settlement((), 10) == []


# ------------------------------------------------------------------ the race, both log backends

RACERS = 4
ATTEMPTS = 5  # guards per racer
HOLD = 1_500  # tokens each guard reserves
SPEND = 1_000  # tokens each granted guard spends (700 in + 300 out)
SHARED = 10_000  # the shared project's DENY budget: 20 attempts x 1,000 would be twice as much


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("kafka", marks=pytest.mark.kafka)])
def race_home(request, tmp_path) -> Home:
    agents = tuple(f"racer{i}" for i in range(RACERS))
    if request.param == "kafka":
        h = make_home(tmp_path / "home", agents=agents, log_url=request.getfixturevalue("kafka_url"),
                      topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    else:
        h = make_home(tmp_path / "home", agents=agents)
    control(h, policy("project", "shared", "llm_tokens", SHARED))
    return h


def test_racing_guarded_agents_never_overspend_a_deny_budget(race_home):
    h = race_home
    outcomes: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    usage = LlmUsage(provider=PROVIDER, model=MODEL, input_tokens=700, output_tokens=300)

    def racer(agent: str) -> None:
        got = outcomes.setdefault(agent, [])
        try:
            with Emitter.open(agent, home=h.path, context=Context(org="acme", project="shared")) as em:
                for i in range(ATTEMPTS):
                    try:
                        with em.guard("llm_tokens", estimate_tokens=HOLD) as g:
                            if i % 2:  # an instrumented call: its action records the spend
                                got.append("metered")
                                metered(em, g, usage, input_estimate=700, max_output=300)
                            else:  # spend no event records: the guard commits it
                                got.append("spent")
                                g.spent(SPEND)
                    except BudgetRefused:
                        got.append("refused")
        except LedgerError as e:
            errors.append(e)

    with LiveBudgets(h):
        threads = [threading.Thread(target=racer, args=(f"racer{i}",)) for i in range(RACERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S * 4)
        assert not any(t.is_alive() for t in threads)
    assert errors == []
    n = {k: sum(o.count(k) for o in outcomes.values()) for k in ("metered", "spent", "refused")}
    ran = n["metered"] + n["spent"]
    assert ran + n["refused"] == RACERS * ATTEMPTS
    b = budget_row(h, "project", "shared", "llm_tokens")
    assert b["consumed"] == ran * SPEND <= SHARED, "every granted guard spent 1,000 and nothing more was admitted"
    assert b["reserved"] == 0
    assert n["refused"] >= RACERS * ATTEMPTS - SHARED // SPEND  # the budget covers at most 10 spends
    assert ran >= SHARED // HOLD  # six holds fit whatever the order: nothing was refused while they did
    rows = read_view(h.path, "budgets", "reservations")
    assert len(rows) == RACERS * ATTEMPTS
    assert sorted(r["status"] for r in rows) == sorted(["released"] * n["metered"] + ["committed"] * n["spent"]
                                                       + ["refused"] * n["refused"])
    assert sum(r["committed"] for r in rows) == n["spent"] * SPEND
