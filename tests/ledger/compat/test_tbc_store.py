"""ledger.compat.tbc persisted to a real ledger home (SQLite log): registrations and policies signed by the operator,
usage and confidences signed by the agent, retries deduplicated, refusals appending nothing, and the budgets
processor folding what the layer wrote into the same numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.importing import audit_ok, events_of, log_ends

from ledger.compat import tbc
from ledger.compat.tbc.store import HomeStore, policy_event
from ledger.errors import ValidationError
from ledger.sdk.home import Home
from ledger.testing.homes import make_home
from ledger.wire.events import Action, AgentRegistered, BudgetPolicy, Outcome
from processors.host.service import open_runner, state_file


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path / "home", agents=("alice",))


def control_events(home: Home) -> list:
    return events_of_topic(home, home.control_topic, "operator")


def events_of_topic(home: Home, topic: str, signer: str) -> list:
    from ledger.sources.importers import imported_events

    log = home.open_log()
    try:
        return list(imported_events(log, topic, signer))
    finally:
        log.close()


def test_register_and_usage_are_signed_events(home: Home) -> None:
    with tbc.BudgetManager(home=home.path, provider="anthropic", model="claude-sonnet-4-6") as m:
        m.register_agent("alice", priority=2, max_tokens=5_000, min_reserve=400, confidence_threshold=0.85)
        m.register_agent("carol", max_tokens=1_000)  # no key yet: made and registered
        m.record_usage("alice", 1_200, note="draft", confidence=0.4, output_tokens=200)
        m.record_usage("carol", 300)
    assert home.key_path("carol").exists()
    bodies = [e.body for e in control_events(home)]
    regs = {b.agent_id: b for b in bodies if isinstance(b, AgentRegistered)}
    assert regs["alice"].priority == 2 and regs["carol"].priority == 1
    (alice_policy,) = [b for b in bodies if isinstance(b, BudgetPolicy) and b.scope_id == "alice"]
    assert (alice_policy.scope, alice_policy.budget_kind, alice_policy.allocation, alice_policy.min_reserve,
            alice_policy.priority, alice_policy.confidence_threshold_milli, alice_policy.hard_limit_action,
            alice_policy.suspend_at_hard, alice_policy.emergency_reserve_pct) == (
        "agent", "llm_tokens", 5_000, 400, 2, 850, "deny", False, 0)
    alice = [e.body for e in events_of_topic(home, home.topic, "alice")]
    action, outcome = alice
    assert isinstance(action, Action) and isinstance(outcome, Outcome)
    assert action.operation == "draft"
    u = action.usage
    assert (u.provider, u.model, u.input_tokens, u.output_tokens, u.cache_read_tokens) == (
        "anthropic", "claude-sonnet-4-6", 1_000, 200, 0)
    assert (outcome.task_id, outcome.confidence_milli) == ("draft", 400)
    (carol,) = [e.body for e in events_of_topic(home, home.topic, "carol")]
    assert (carol.usage.input_tokens, carol.usage.output_tokens, carol.usage.provider) == (300, 0, "anthropic")
    assert audit_ok(home)


def test_retry_with_key_appends_once_and_refusal_appends_nothing(home: Home) -> None:
    with tbc.BudgetManager(home=home.path) as m:
        m.register_agent("alice", priority=3, max_tokens=100, min_reserve=0)
        m.register_agent("bob", priority=1, max_tokens=60, min_reserve=20)
        m.record_usage("alice", 90, idempotency_key="call-7")
        m.record_usage("alice", 90, idempotency_key="call-7")
        ends = log_ends(home)
        with pytest.raises(tbc.BudgetExceededError):
            m.record_usage("alice", 60)  # needs 50, bob can spare 40: all or nothing
        assert log_ends(home) == ends
        assert m.report()["bob"]["allocated"] == 60
    # a second manager (another process, after a crash) retrying the same key appends nothing either
    with tbc.BudgetManager(home=home.path) as again:
        again.register_agent("alice", priority=3, max_tokens=100, min_reserve=0)
        again.record_usage("alice", 90, idempotency_key="call-7")
    actions = [e for e in events_of(home, "alice") if isinstance(e.body, Action)]
    assert [a.body.usage.input_tokens for a in actions] == [90]


def test_budgets_processor_folds_what_the_layer_wrote(home: Home) -> None:
    with tbc.BudgetManager(home=home.path) as m:
        m.register_agent("alice", max_tokens=1_000)
        m.record_usage("alice", 700)
        m.ledger.record("alice", 450)  # a raw write: the in-memory view overdraws, nothing appended
    log = home.open_log()
    try:
        runner, store, _ = open_runner(home, "budgets", log)
        try:
            runner.run_until_caught_up()
        finally:
            store.close()
    finally:
        log.close()
    from processors import get
    from processors.runtime.store import Store

    s = Store(state_file(home, "budgets"), get("budgets")().views, read_only=True)
    try:
        row = s.con.execute("SELECT allocation, consumed, remaining, status, priority, min_reserve FROM budgets "
                            "WHERE scope = 'agent' AND scope_id = 'alice' AND budget_kind = 'llm_tokens'").fetchone()
    finally:
        s.close()
    assert row == (1_000, 700, 300, "normal", 1, 100)


def test_store_refuses_bad_input(home: Home) -> None:
    with pytest.raises(ValidationError):
        HomeStore(home.path, provider="")
    with HomeStore(home.path) as store:
        with pytest.raises(ValidationError) as e:
            store.usage("nobody", 5, "x")
        assert e.value.field == "agent_name"
        with pytest.raises(ValidationError) as e:
            store.usage("alice", 5, "x", output_tokens=6)
        assert e.value.field == "output_tokens"
    assert policy_event(tbc.BudgetContract("z", max_tokens=10)).min_reserve == 1


def test_a_usage_the_home_refuses_undoes_its_reallocation(home: Home) -> None:
    with tbc.BudgetManager(home=home.path) as m:
        m.register_agent("alice", priority=2, max_tokens=100, min_reserve=0)
        m.register_agent("bob", priority=1, max_tokens=500, min_reserve=0)
        ends = log_ends(home)
        with pytest.raises(ValidationError) as e:
            m.record_usage("alice", 300, note="n" * 2_000)  # an operation name longer than the log takes
        assert e.value.field == "operation"
        assert m.report() == {"alice": {"allocated": 100, "consumed": 0, "remaining": 100},
                              "bob": {"allocated": 500, "consumed": 0, "remaining": 500}}
        assert log_ends(home) == ends
        m.record_usage("alice", 300, note="fits")
        assert m.report()["bob"]["allocated"] == 300
