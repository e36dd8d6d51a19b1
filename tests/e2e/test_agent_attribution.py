"""Attribution: an importer records calls on the behalf of the agents that made them (``Context.agent``), and every
view counts them under that agent. Only a signer with a backfill grant may name another agent: anyone else would be
charging that agent's budget with its own claims, so emitters refuse it before appending and readers quarantine a
record that bypasses them. An agent nobody registered is listed as named, never invented or merged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.econ import control, econ_home, rows, run

from ledger.errors import RejectCode, RejectError
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, build_record, grant
from ledger.wire.events import Action, BudgetPolicy, Context, LlmUsage

CTX = Context(org="acme", project="p1", task="t1")


def _usage(tokens: int) -> Action:
    return Action("llm.call", usage=LlmUsage("openai", "gpt-4.1", tokens, 0))


def _emit(h: Home, signer: str, bodies: list[tuple[Action, Context]]) -> None:
    log = h.open_log()
    try:
        with Emitter(log, h.load_key(signer), topic=h.topic, state_dir=h.state_dir, background_flush=False,
                     control_topic=h.control_topic, anchors=h.anchors()) as em:
            for i, (body, ctx) in enumerate(bodies):
                em.emit(body, event_time_us=T0 + 100 + i, context=ctx)
    finally:
        log.close()


def test_a_signer_without_a_backfill_grant_cannot_name_another_agent(tmp_path: Path):
    h = econ_home(tmp_path, agents=("alice", "mallory"))
    log = h.open_log()
    try:
        before = len(read_all(log, h.topic)) if h.topic in log.topics() else 0
        with Emitter(log, h.load_key("mallory"), topic=h.topic, state_dir=h.state_dir, background_flush=False,
                     control_topic=h.control_topic, anchors=h.anchors()) as em:
            with pytest.raises(RejectError) as e:
                em.emit(_usage(5_000), event_time_us=T0 + 100, context=Context(agent="alice"))
            em.emit(_usage(7), event_time_us=T0 + 101, context=Context(agent="mallory"))  # naming itself is fine
        assert e.value.code is RejectCode.NOT_GRANTED
        assert e.value.evidence["field"] == "context.agent" and e.value.evidence["agent"] == "alice"
        assert e.value.evidence["appended"] is False and "grant mallory backfill" in (e.value.hint or "")
        assert len(read_all(log, h.topic)) == before + 1
        # a record built by hand, past the emitter, is quarantined by readers with the same reason
        rec, _ = build_record(h.load_key("mallory"), [_usage(5_000)], start_seq=2, prev_hash=_head(h, "mallory"),
                              t=T0 + 200, context=Context(agent="alice"))
        log.append(h.topic, [(b"mallory", rec)])
    finally:
        log.close()
    run(h, "journal")
    assert rows(h, "journal", "SELECT code FROM quarantine") == [("not_granted",)]
    assert rows(h, "journal", "SELECT agent, input_tokens FROM events WHERE kind = 'action'") == [("mallory", 7)]


def _head(h: Home, agent: str) -> bytes:
    from ledger.wire import codec

    log = h.open_log()
    try:
        raw = codec.decode_batch(log.read_key(h.topic, agent.encode())[-1].value).events[-1]
    finally:
        log.close()
    return codec.event_hash(raw)


def test_attributed_calls_count_under_their_agent_in_budgets_costs_journal_and_report(tmp_path: Path):
    h = econ_home(tmp_path, agents=("alice", "importer"))
    grant(h, "importer", "backfill", max_age_us=30 * 86_400_000_000)
    control(h, [BudgetPolicy("agent", "alice", "llm_tokens", 1_000_000, 86_400_000_000),
                BudgetPolicy("agent", "ghost", "llm_tokens", 1_000_000, 86_400_000_000)])
    _emit(h, "importer", [(_usage(1_000), Context(org="acme", agent="alice")),
                          (_usage(2_000), Context(org="acme", agent="alice")),
                          (_usage(400), Context(org="acme", agent="ghost")),  # nobody registered "ghost"
                          (_usage(30), Context(org="acme"))])  # the importer's own call
    _emit(h, "alice", [(_usage(5), CTX)])
    for name in ("journal", "budgets", "allocations", "reputation", "settlements"):
        run(h, name, publish=True)  # the report reads what is published
    assert rows(h, "journal", "SELECT agent, signer_id, agent_registered, sum(input_tokens) FROM events "
                              "WHERE kind = 'action' GROUP BY ALL ORDER BY agent, signer_id") == [
        ("alice", "alice", True, 5), ("alice", "importer", True, 3_000), ("ghost", "importer", False, 400),
        ("importer", "importer", True, 30)]
    consumed = dict(rows(h, "budgets", "SELECT scope_id, consumed FROM budgets WHERE scope = 'agent' "
                                       "AND budget_kind = 'llm_tokens' QUALIFY row_number() OVER "
                                       "(PARTITION BY scope_id ORDER BY window_start_us DESC) = 1"))
    assert consumed == {"alice": 3_005, "ghost": 400}
    per_agent = dict(rows(h, "allocations", "SELECT agent_id, sum(input_tokens) FROM llm_calls GROUP BY ALL"))
    assert per_agent == {"alice": 3_005, "ghost": 400, "importer": 30}

    from processors.report.model import build

    model = build(h)
    # alice, ghost, importer, and the operator (its control events)
    assert model["totals"]["agents"] == 4 and model["totals"]["unregistered_agents"] == 1
    assert model["unregistered_agents"] == [{"agent": "ghost", "recorded_by": ["importer"], "events": 1}]
