"""The allocations processor sharded through the exchange (``processors.runtime.exchange``), on real homes: 6 event
partitions (SQLite, and the Tansu test broker), the default price book and one allocation rule on control, agents on
several partitions making LLM calls and calling each other, every interaction between two agents on DIFFERENT
partitions whose rows belong to DIFFERENT shards (the requestor's interaction and allocation rows, the responder's
side of ``llm_calls`` and its ``agent_costs``). Three instances, each its own process through the CLI, hold together
what one instance holds (the combined digest equals a single-instance rebuild, and ``tokenledger replay`` says so);
an instance SIGKILLed mid-stream and restarted loses and duplicates nothing; every derived ``allocation`` event is on
the topic once, signed by the shard owning its requestor, and settlements accepts them all.

Token counts, models and prices are written here: the requestor runs openai/gpt-4.1, the responder
anthropic/claude-sonnet-4-6 (both in the default price book, ``ledger.economics.price_events``); the four flows
of an interaction differ (the responder reads the request plus its own prompt, part of it cached; the requestor reads
the response with part of it cached)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.econ import control

from ledger.economics.price_events import default_price_events, price_event_time_us
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0
from ledger.wire import codec
from ledger.wire.events import Allocation as AllocationEvent
from ledger.wire.events import AllocationRule, Context, Flow
from processors import get
from processors.allocations import Allocations
from processors.host import service
from processors.runtime.exchange import owner_index
from processors.runtime.shards import Shard, hidden_rows
from processors.runtime.store import Store
from tests.processors.host.test_sharding import (
    AGENTS,
    INSTANCES,
    _cli,
    _home,
    combined_digest,
    kill_one_and_finish,
    run_instances,
    single_replay,
)

NAME = "allocations"
REQ_MODEL = ("openai", "gpt-4.1")
RESP_MODEL = ("anthropic", "claude-sonnet-4-6")
RULE_ORG = "o-prop"  # interactions in this org are allocated by the rule below (proportional) instead of the defaults
RESPONDERS_PER_AGENT = 2
# The runtime's keep_owned drops the rows made from control (row_owner None) on every shard but 0, and an owner
# restores its state from its rows: an instance started again on shard 1 or 2 has no price book and no rules, so what
# it folds after the restart is unpriced (reputation loses its grader grants the same way). Strict: these pass, and
# fail as XPASS, once processors.runtime.exchange keeps that state on every shard.
KILL_AFTER_COMMITS = 9  # the killed instance's commits (router's and owner's) before its SIGKILL: mid-stream


# the broker form of a test marked with it runs with the slow ones (scripts/slow_tests.sh); the default suite keeps
# its SQLite form (the default suite runs reputation's and budgets' sharding on the broker)
KAFKA_SLOW = pytest.mark.parametrize(
    "home", ["sqlite", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])], indirect=True)


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def home(request, tmp_path) -> Home:
    url = request.getfixturevalue("kafka_url") if request.param == "kafka" else None
    h = _home(tmp_path / "home", url)
    events = default_price_events()
    control(h, events, times=[price_event_time_us(b) for b in events])
    control(h, [AllocationRule(rule_id="r-prop", method="proportional", org=RULE_ORG)], t=T0 + 20)
    return h


@dataclass
class Sent:
    """What was emitted, to check the shards' rows against exactly."""

    calls: int = 0
    call_input: int = 0
    call_output: int = 0
    call_cache_read: int = 0
    interactions: int = 0  # priced ones
    unpriced: int = 0
    flows: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0])  # req out, req in, cached, resp out, in, c.
    pairs: set[tuple[str, str]] = field(default_factory=set)


def _partitions(h: Home) -> dict[str, int]:
    log = h.open_log()
    try:
        return {r.key.decode(): r.partition for r in read_all(log, h.topic_for("events")) if r.key}
    finally:
        log.close()


def _emit(h: Home, run: str, sent: Sent) -> None:
    """Per agent: two LLM calls (a record each), then interactions with the next agents that live on another
    partition AND belong to another shard, in two orgs (one allocated by the rule); agent-1 also calls an unknown
    model once (unpriced, never $0)."""
    for i, a in enumerate(AGENTS):
        with Emitter.open(a, home=h.path, background_flush=False) as em:
            for n in range(2):
                em.action("draft", provider=RESP_MODEL[0], model=RESP_MODEL[1], input_tokens=2_000 + 100 * i + n,
                          output_tokens=300 + n, cache_read_tokens=500 + n, idempotency_key=f"{run}-{a}-call-{n}",
                          event_time_us=T0 + 100 + 10 * n + i)
                em.flush()
                sent.calls += 1
                sent.call_input += 2_000 + 100 * i + n
                sent.call_output += 300 + n
                sent.call_cache_read += 500 + n
    parts = _partitions(h)
    assert set(parts) == set(AGENTS)
    assert len(set(parts.values())) >= 4, parts  # the agents live on several partitions
    for i, a in enumerate(AGENTS):
        others = [AGENTS[(i + k) % len(AGENTS)] for k in range(1, len(AGENTS))]
        responders = [b for b in others if parts[b] != parts[a]
                      and owner_index(b, INSTANCES) != owner_index(a, INSTANCES)][:RESPONDERS_PER_AGENT]
        assert len(responders) == RESPONDERS_PER_AGENT, (a, parts)
        with Emitter.open(a, home=h.path, background_flush=False) as em:
            for k, b in enumerate(responders):
                req, resp = 1_000 + 10 * i + k, 4_000 + 20 * i + k
                flows = (req, req + 200, 150 + k, resp, resp + 50, 40 + i)
                em.interaction(responder_id=b, interaction_id=f"{run}-{a}-{b}", requestor_provider=REQ_MODEL[0],
                               requestor_model=REQ_MODEL[1], responder_provider=RESP_MODEL[0],
                               responder_model=RESP_MODEL[1], request_output=Flow(flows[0]),
                               request_input=Flow(flows[1], flows[2]), response_output=Flow(flows[3]),
                               response_input=Flow(flows[4], flows[5]),
                               context=Context(org=RULE_ORG if k % 2 else "o-plain"),
                               idempotency_key=f"{run}-{a}-{b}", event_time_us=T0 + 200 + 10 * k + i)
                em.flush()
                sent.interactions += 1
                sent.flows = [s + f for s, f in zip(sent.flows, flows, strict=True)]
                sent.pairs.add((a, b))
            if a == "agent-1":
                em.interaction(responder_id=responders[0], interaction_id=f"{run}-{a}-unknown",
                               requestor_provider=REQ_MODEL[0], requestor_model=REQ_MODEL[1],
                               responder_provider="acme", responder_model="no-such-model", request_tokens=10,
                               response_tokens=20, idempotency_key=f"{run}-{a}-unknown",
                               event_time_us=T0 + 290)
                sent.unpriced += 1


def _run(h: Home) -> None:
    run_instances(h, NAME)


def _combined(h: Home) -> dict:
    return combined_digest(h, NAME)


def _single(h: Home) -> dict:
    return single_replay(h, NAME)


def _query(path: str | Path, sql: str) -> list[tuple]:
    store = Store(path, get(NAME).views, read_only=True)
    try:
        return store.query(sql)
    finally:
        store.close()


def _union(h: Home, sql: str) -> list[tuple]:
    """``sql`` on every shard's state file, the rows together."""
    return [r for i in range(INSTANCES) for r in _query(service.state_file(h, NAME, Shard(i, INSTANCES)), sql)]


def _check_rows(h: Home, sent: Sent) -> None:
    """The union of the shards' rows: exact token counts per kind, each row on the shard owning its agent, once."""
    flows = _union(h, "SELECT request_output_tokens, request_input_tokens, request_input_cached_tokens, "
                      "response_output_tokens, response_input_tokens, response_input_cached_tokens FROM interactions")
    assert len(flows) == sent.interactions
    assert [sum(col) for col in zip(*flows, strict=True)] == sent.flows
    calls = _union(h, "SELECT input_tokens, output_tokens, cache_read_tokens FROM llm_calls WHERE side = 'call'")
    assert len(calls) == sent.calls
    assert [sum(col) for col in zip(*calls, strict=True)] == [sent.call_input, sent.call_output, sent.call_cache_read]
    sides = _union(h, "SELECT side, sum(input_tokens), sum(output_tokens), sum(cache_read_tokens) FROM llm_calls "
                      "WHERE side <> 'call' GROUP BY 1")
    got: dict[str, list[int]] = {}
    for side, *sums in sides:
        got[side] = [a + b for a, b in zip(got.get(side, [0, 0, 0]), sums, strict=True)]
    f = sent.flows
    assert got == {"requestor": [f[4], f[0], f[5]], "responder": [f[1], f[3], f[2]]}
    assert len(_union(h, "SELECT 1 FROM unpriced WHERE code = 'unknown_model'")) == sent.unpriced
    for i in range(INSTANCES):
        path = service.state_file(h, NAME, Shard(i, INSTANCES))
        owners = [r[0] for r in _query(path, "SELECT requestor_id FROM allocations UNION ALL SELECT requestor_id "
                                             "FROM interactions UNION ALL SELECT agent_id FROM llm_calls UNION ALL "
                                             "SELECT agent_id FROM agent_costs")]
        assert owners and {owner_index(a, INSTANCES) for a in owners} == {i}
        # the prices come from control alike on every shard: each keeps them (its restart restores them), shard 0
        # alone shows them
        assert _query(path, "SELECT count(*) FROM prices")[0][0] > 0
        assert ("prices" in hidden_rows(Allocations(), Shard(i, INSTANCES), h.control_topic)) == (i != 0)
    keys = _union(h, "SELECT agent_id, method FROM agent_costs")
    assert len(keys) == len(set(keys))
    # per method, allocated = incurred over all agents (money neither made nor lost), across the shards
    per_method: dict[str, int] = {}
    for method, diff in _union(h, "SELECT method, sum(allocated_micros - incurred_micros) FROM agent_costs GROUP BY 1"):
        per_method[method] = per_method.get(method, 0) + diff
    assert per_method == {"proportional": 0, "requestor_pays": 0, "shapley": 0}


def _derived(h: Home) -> list[tuple[str, str, AllocationEvent]]:
    """(signer, event id, body) of every event on the allocations topic."""
    log = h.open_log()
    try:
        out = []
        for rec in read_all(log, h.topic_for("allocations")):
            batch = codec.decode_batch(rec.value)
            for raw in batch.events:
                ev = codec.decode_event(raw).event
                assert isinstance(ev.body, AllocationEvent)
                out.append((batch.signer_id, ev.event_id, ev.body))
        return out
    finally:
        log.close()


def _check_derived(h: Home, single: dict) -> None:
    """Each allocation event once (by event id), as many as the single instance's allocation rows, for the same
    (interaction, method) pairs, signed by the shard owning its requestor."""
    events = _derived(h)
    ids = [e for _, e, _ in events]
    assert len(ids) == len(set(ids))
    expected = sorted(_query(single["file"], "SELECT interaction_event_id, method FROM allocations"))
    assert sorted((b.interaction_event_id, b.method) for _, _, b in events) == expected
    for signer, _, b in events:
        assert signer == f"processor.{NAME}.shard-{owner_index(b.requestor_id, INSTANCES)}-of-{INSTANCES}"
    assert {s for s, _, _ in events} == {f"processor.{NAME}.shard-{i}-of-{INSTANCES}" for i in range(INSTANCES)}


@KAFKA_SLOW
def test_three_instances_hold_what_one_instance_holds(home):
    sent = Sent()
    _emit(home, "r1", sent)
    _run(home)
    live, single = _combined(home), _single(home)
    assert live["source"] == f"{INSTANCES} shards combined"
    assert live["digest"] == single["digest"] and live["tables"] == single["tables"]
    # 8 agents x 2 interactions: half in the rule's org (proportional), half by the defaults (two methods)
    assert live["tables"]["interactions"]["rows"] == sent.interactions == len(AGENTS) * RESPONDERS_PER_AGENT
    assert live["tables"]["allocations"]["rows"] == len(AGENTS) * (1 + 2)
    assert live["tables"]["llm_calls"]["rows"] == sent.calls + 2 * sent.interactions
    _check_rows(home, sent)
    p = _cli("replay", NAME, "--json", "--home", str(home.path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["equal"] is True
    _check_derived(home, single)


@KAFKA_SLOW
def test_the_instances_started_again_move_with_the_log(home):
    """More calls and interactions, the same instances started again (each restores its state): the union moves with
    them."""
    sent = Sent()
    _emit(home, "r1", sent)
    _run(home)
    _emit(home, "r2", sent)
    _run(home)
    single = _single(home)
    assert _combined(home)["digest"] == single["digest"]
    _check_rows(home, sent)
    _check_derived(home, single)


@KAFKA_SLOW
def test_a_killed_instance_restarted_loses_and_duplicates_nothing(home):
    """Instance 1 is SIGKILLed after its ninth commit (its router's or its owner's: its router alone, reading two
    records a step, makes fewer) while the others run, so its owner has committed state, control (the price book)
    included; the others wait for its marks, and when it is started again (restoring that state) all three finish
    with the one instance's state, and every allocation event is on the topic once."""
    sent = Sent()
    _emit(home, "r1", sent)
    def folded_control() -> None:
        store = Store(service.state_file(home, NAME, Shard(1, INSTANCES)), get(NAME).views, read_only=True)
        try:
            assert store.positions()[(home.control_topic, 0)] > 0, "killed before its owner folded anything"
        finally:
            store.close()

    kill_one_and_finish(home, NAME, crash_after=KILL_AFTER_COMMITS, check_killed=folded_control)
    live, single = _combined(home), _single(home)
    assert live["digest"] == single["digest"]
    _check_rows(home, sent)
    _check_derived(home, single)


def test_settlements_accepts_the_allocations_of_every_shard_signer(tmp_path):
    """settlements reads <prefix>.allocations: the allocation events the three shards signed all verify there (none
    quarantined) and it reads the topic to its end."""
    h = _home(tmp_path / "home")
    events = default_price_events()
    control(h, events, times=[price_event_time_us(b) for b in events])
    _emit(h, "r1", Sent())
    _run(h)
    p = _cli("run", "settlements", "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    log = h.open_log()
    try:
        topic = h.topic_for("allocations")
        ends = {(topic, p): log.end_offset(topic, p) for p in range(log.partitions(topic))}
    finally:
        log.close()
    store = Store(service.state_file(h, "settlements"), get("settlements").views, read_only=True)
    try:
        assert store.query("SELECT count(*) FROM quarantine") == [(0,)]
        assert {tp: store.positions()[tp] for tp in ends} == ends
    finally:
        store.close()
    assert len({s for s, _, _ in _derived(h)}) == INSTANCES
