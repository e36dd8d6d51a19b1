"""``ledger.sdk.govern`` and ``ActiveGuard.spent_text`` on a real home with the budgets processor folding and publishing
in a thread: the hold is reserved from the estimator before the call, a refusal keeps the function from running,
an unmetered call is committed at its estimate, confidence closes the processor's gate for the next call.

Without tiktoken installed (this environment) the estimator is the word heuristic: max(1, floor(words * 1.3))."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path

import pytest

from ledger.errors import BudgetRefused, ValidationError
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.govern import govern
from ledger.sdk.guard import ActiveGuard
from ledger.sdk.home import Home
from ledger.sdk.views import read_view
from ledger.testing.homes import T0, make_home
from ledger.wire import codec
from ledger.wire.events import BudgetPolicy, Outcome, Reservation
from processors.host.service import open_runner
from processors.runtime.publish import Publisher

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tiktoken") is not None,
                                reason="the expected counts are the word heuristic's")
US_PER_DAY = 86_400_000_000
IDLE_S = 0.02  # the processor thread's sleep between empty polls
WAIT_S = 60.0  # upper bound for the processor thread to start or stop (never an assertion on time)


class LiveBudgets:
    """The budgets processor folding and publishing in a thread until the block ends (then once more)."""

    def __init__(self, h: Home) -> None:
        self.h = h
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveBudgets:
        self._thread.start()
        self._ready.wait(WAIT_S)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            log = self.h.open_log()
            try:
                runner, store, proc = open_runner(self.h, "budgets", log)
                publisher = Publisher(store, proc, self.h.views_dir("budgets"), key=runner.key)
                try:
                    runner.run_until_caught_up()
                    publisher.publish(runner.positions, runner.batch_no, changed=runner.written)
                    self._ready.set()
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
        except BaseException as e:  # re-raised in the test's thread
            self._error = e
            self._ready.set()


def make(tmp_path: Path, allocation: int, threshold_milli: int | None = None) -> Home:
    h = make_home(tmp_path / "home", agents=("alice",))
    body = BudgetPolicy(scope="agent", scope_id="alice", budget_kind="llm_tokens", allocation=allocation,
                        soft_limit_pct=80, hard_limit_pct=100, throttle_at_soft=False, suspend_at_hard=False,
                        emergency_reserve_pct=0, hard_limit_action="deny", reset_interval_us=US_PER_DAY,
                        effective_from_us=T0, confidence_threshold_milli=threshold_milli)
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            em.emit(body, event_time_us=T0 + 60)
    finally:
        log.close()
    return h


def budget_row(h: Home) -> dict:
    (row,) = [r for r in read_view(h.path, "budgets", "budgets")
              if (r["scope"], r["scope_id"], r["budget_kind"]) == ("agent", "alice", "llm_tokens")]
    return row


def alice_bodies(h: Home, kind: type) -> list:
    log = h.open_log()
    try:
        return [ev.body for rec in read_all(log, h.topic) for raw in codec.decode_batch(rec.value).events
                if isinstance((ev := codec.decode_event(raw).event).body, kind) and ev.signer_id == "alice"]
    finally:
        log.close()


def test_the_hold_is_the_arguments_estimate_plus_the_output_bound_and_the_estimate_is_committed(tmp_path):
    h = make(tmp_path, 5_000)
    ran = []
    with Emitter.open("alice", home=h.path) as em, LiveBudgets(h):
        @govern(em, max_output_tokens=100)
        def answer(question: str, style: str = "", n: int = 0) -> str:
            ran.append(question)
            return "four words of reply"

        assert answer("one two three", style="short please", n=9) == "four words of reply"
    # hold: 3 + 2 (the str arguments) + 100; spent: 3 + 2 + 5 ("four words of reply": floor(4 * 1.3))
    assert [r.amount for r in alice_bodies(h, Reservation)][:1] == [105]
    row = budget_row(h)
    assert (row["consumed"], row["reserved"]) == (10, 0)
    assert ran == ["one two three"]


def test_a_refused_hold_keeps_the_function_from_running(tmp_path):
    h = make(tmp_path, 50)
    ran = []
    with Emitter.open("alice", home=h.path) as em, LiveBudgets(h):
        @govern(em, max_output_tokens=100)
        def answer(question: str) -> str:
            ran.append(question)
            return "never"

        with pytest.raises(BudgetRefused):
            answer("a question")
    assert ran == []
    assert budget_row(h)["consumed"] == 0


def test_confidence_closes_the_processors_gate_for_the_next_call(tmp_path):
    h = make(tmp_path, 5_000, threshold_milli=800)
    ran = []
    with Emitter.open("alice", home=h.path) as em, LiveBudgets(h):
        @govern(em, max_output_tokens=10, confidence_fn=lambda reply: 0.9, task_id="t-42")
        def check(question: str) -> str:
            ran.append(question)
            return "sure"

        check("first")
        with pytest.raises(BudgetRefused) as e:
            check("second")
    assert "confidence_gate" in str(e.value.evidence)
    assert ran == ["first"]
    assert [(o.task_id, o.confidence_milli) for o in alice_bodies(h, Outcome)] == [("t-42", 900)]
    assert budget_row(h)["consumed"] == 1 + 1  # "first" and "sure"


def test_async_functions_are_governed_and_spent_text_estimates(tmp_path):
    h = make(tmp_path, 5_000)
    with Emitter.open("alice", home=h.path) as em, LiveBudgets(h):
        @govern(em, max_output_tokens=20)
        async def summarise(text: str) -> str:
            return "a b c d e f g h i j"  # 10 words: 13

        assert asyncio.run(summarise("x y")) == "a b c d e f g h i j"
        with em.guard("llm_tokens", estimate_tokens=100) as g:
            assert g.spent_text("one two", "three four five six seven eight nine ten eleven twelve") == 2 + 13
        usd_block = ActiveGuard(em.guard("usd", estimate_micros=1))  # not entered: nothing reserved
        with pytest.raises(ValidationError) as bad:
            usd_block.spent_text("text")
        assert bad.value.field == "kind" and usd_block.used == 0
    assert budget_row(h)["consumed"] == 2 + 13 + 15


def test_bad_arguments_are_refused(tmp_path):
    h = make(tmp_path, 5_000)
    with Emitter.open("alice", home=h.path) as em:
        with pytest.raises(ValidationError) as e:
            govern(em, max_output_tokens=-1)
        assert e.value.field == "max_output_tokens"
        with pytest.raises(ValidationError) as e:
            govern(em, max_output_tokens=1, confidence_fn="high")  # type: ignore[arg-type]
        assert e.value.field == "confidence_fn"
        with pytest.raises(ValidationError) as e:
            govern(em, max_output_tokens=1, scope="galaxy")
        assert e.value.field == "scope"
    log = h.open_log()
    try:
        with Emitter(log, h.load_key("alice"), topic=h.topic, state_dir=h.state_dir) as homeless:
            with pytest.raises(ValidationError) as e:
                govern(homeless, max_output_tokens=1)
            assert e.value.field == "home"
    finally:
        log.close()


def test_a_confidence_that_is_not_a_probability_is_refused(tmp_path):
    h = make(tmp_path, 5_000)
    with Emitter.open("alice", home=h.path) as em, LiveBudgets(h):
        @govern(em, max_output_tokens=5, confidence_fn=lambda reply: 1.5)
        def check(question: str) -> str:
            return "ok"

        with pytest.raises(ValidationError) as e:
            check("q")
        assert (e.value.field, e.value.value) == ("confidence", 1.5)
    assert alice_bodies(h, Outcome) == []
    assert budget_row(h)["consumed"] == 1 + 1  # the call ran: its estimate is committed
