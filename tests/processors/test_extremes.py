"""No valid-signed input crashes a processor: every agent kind with every numeric field at its extremes,
repeated past the 64-bit range, folded through every processor — no exception escapes and every integer
a processor would store stays an Avro long / DuckDB BIGINT (hypothesis over the combinations).

The folds are the processors' own (``Processor.fold``), fed verified items built from real signed
records; the views' store is not involved, so each example is cheap, and the bound check covers
exactly what the store would be asked to write."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger import limits
from ledger.economics.price_events import default_price_events
from ledger.integrity.keys import SigningKey
from ledger.log.base import Record
from ledger.testing.homes import T0, build_record
from ledger.wire import codec
from ledger.wire.events import (
    Action,
    AgentRegistered,
    Body,
    BudgetPolicy,
    Compute,
    Context,
    Data,
    Flow,
    Grant,
    Interaction,
    LlmUsage,
    Outcome,
    Reservation,
    Trust,
)
from processors import get
from processors.runtime.processor import Effects, Item

PROCESSORS = ("journal", "notary", "budgets", "reputation", "allocations", "settlements")
KINDS = ("action", "data", "compute", "llm_tokens", "usd", "trust")
OP = SigningKey.generate("operator")
AGENT = SigningKey.generate("alice")
PEER = SigningKey.generate("bob")
CTX = Context(org="acme", project="p1", task="t1")
REPEAT = 4_700  # past INT64_MAX / (2 * MAX_DATA_BYTES) = 4,611 maximal events of one kind


def _lo_hi(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.sampled_from((lo, hi))


TOK = _lo_hi(0, limits.MAX_TOKENS)
COUNT = _lo_hi(0, limits.MAX_COUNT)


@st.composite
def agent_bodies(draw: st.DrawFn) -> Body:
    kind = draw(st.sampled_from(("action", "data", "compute", "trust", "interaction", "outcome", "reservation")))
    if kind == "action":
        inp, out = draw(TOK), draw(TOK)
        usage = draw(st.none() | st.just(LlmUsage("anthropic", "claude-sonnet-4", inp, out, inp, 0, out)))
        return Action("op", draw(COUNT), None, usage)
    if kind == "data":
        return Data(draw(_lo_hi(0, limits.MAX_DATA_BYTES)), draw(_lo_hi(0, limits.MAX_DATA_BYTES)),
                    duration_us=draw(_lo_hi(0, limits.MAX_DURATION_US)))
    if kind == "compute":
        return Compute("n1", draw(COUNT), draw(COUNT), draw(COUNT), draw(_lo_hi(1, limits.INT32_MAX)))
    if kind == "trust":
        return Trust("bob", draw(st.sampled_from(("accuracy", "feedback"))),
                     draw(_lo_hi(-limits.MAX_COUNT, limits.MAX_COUNT)),
                     draw(st.none() | _lo_hi(0, limits.MAX_DURATION_US)))
    if kind == "interaction":
        a, b = draw(TOK), draw(TOK)
        return Interaction("i1", "alice", "bob", "anthropic", "claude-sonnet-4", "openai", "gpt-4o",
                           Flow(a), Flow(a, a), Flow(b), Flow(b, b))
    if kind == "outcome":
        return Outcome("t1", draw(_lo_hi(0, 1000)), draw(_lo_hi(0, 1000)), True, draw(st.sampled_from((None, "bob"))))
    return Reservation(draw(st.sampled_from(("r1", "r2"))), draw(st.sampled_from(("reserve", "commit", "release"))),
                       "agent", "alice", draw(st.sampled_from(KINDS)), draw(_lo_hi(0, limits.MAX_MICROS)),
                       T0 + draw(_lo_hi(1, limits.MAX_DURATION_US)))


def _items(key: SigningKey, bodies: list[Body], topic: str, offset: int, t: int, seq: int) -> list[Item]:
    out = []
    for start in range(0, len(bodies), limits.MAX_BATCH_EVENTS):
        chunk = bodies[start:start + limits.MAX_BATCH_EVENTS]
        value, _ = build_record(key, chunk, start_seq=seq + start, t=t + start, context=CTX)
        rec = Record(topic, 0, offset + start // limits.MAX_BATCH_EVENTS, key.signer_id.encode(), value,
                     t + start)
        out.extend(Item(rec, key.key_id, codec.decode_event(raw)) for raw in codec.decode_batch(value).events)
    return out


def _control() -> list[Body]:
    regs: list[Body] = [AgentRegistered("operator", OP.key_id, OP.public.raw, "operator"),
                        AgentRegistered("alice", AGENT.key_id, AGENT.public.raw, org="acme", project="p1"),
                        AgentRegistered("bob", PEER.key_id, PEER.public.raw), Grant("bob", "grader")]
    policies: list[Body] = [
        BudgetPolicy(scope=lvl, scope_id=sid, budget_kind=k, allocation=limits.MAX_MICROS, soft_limit_pct=80,
                     hard_limit_pct=limits.MAX_BUDGET_PERCENT, throttle_at_soft=True, suspend_at_hard=False,
                     emergency_reserve_pct=100, hard_limit_action=action,
                     reset_interval_us=limits.MAX_DURATION_US, effective_from_us=T0)
        for lvl, sid, action in (("org", "acme", "alert_only"), ("agent", "alice", "deny")) for k in KINDS]
    return [*regs, *default_price_events()[:50], *policies]


def _check_bounds(fx: Effects, name: str) -> None:
    for table, parts in (*fx.appends.items(), *fx.upserts.items()):
        for cols in parts:
            for col, values in cols.items():
                for v in (values.to_pylist() if hasattr(values, "to_pylist") else values):
                    if isinstance(v, int) and not isinstance(v, bool):
                        assert -limits.INT64_MAX - 1 <= v <= limits.INT64_MAX, (name, table, col, v)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(agent_bodies(), min_size=1, max_size=2), peer=agent_bodies())
@example(bodies=[Data(limits.MAX_DATA_BYTES, limits.MAX_DATA_BYTES)], peer=Data(5, 0))  # the reported flood
@pytest.mark.parametrize("name", PROCESSORS)
def test_extreme_valid_events_never_escape_a_processor(name: str, bodies: list[Body], peer: Body) -> None:
    proc = get(name)()
    control = _items(OP, _control(), "ledger.control", 0, T0, 1)
    flood = _items(AGENT, [b for b in bodies for _ in range(REPEAT)], "ledger.events", 0,
                   T0 + 10_000, 1)
    after = _items(PEER, [peer], "ledger.events", len(flood), T0 + 10**9, 1)  # someone else, after the flood
    for batch in (control, flood, after):
        _check_bounds(proc.fold(batch, []), name)
