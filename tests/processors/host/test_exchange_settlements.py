"""Settlements sharded through the exchange (``processors.runtime.exchange``; processors/settlements.py, Sharding), on
real homes: 6 event partitions (SQLite, and the Tansu test broker), agents on several partitions calling each other
(interactions written here), the allocations processor run as one instance to derive the allocations topic (made
with 6 partitions; its one signer's records land on one of them), two settlement rules owned by different shards
and the default rule (in force before them) owned by a third. Three settlements instances, each its own process
through the CLI, must hold together what one instance holds: the combined digest equals a single-instance rebuild
(``service.replay``) and ``tokenledger replay`` says so; each settlement event is on the settlements topic once,
signed by the shard owning its rule; an instance SIGKILLed mid-stream and restarted loses and duplicates nothing."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from support.econ import call, control, run

from ledger.economics.price_events import default_price_events, price_event_time_us
from ledger.log import partition_for, read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0
from ledger.wire import codec
from ledger.wire.events import Settlement, SettlementRule
from processors.host import service
from processors.runtime.shards import Shard, hidden_rows, owner_index, owner_sql
from processors.runtime.store import Store
from processors.settlements import ALLOWED_LATENESS_US, DEFAULT_RULE, WATERMARK_OWNER, Settlements, rule_key
from tests.processors.host.test_sharding import (
    AGENTS,
    INSTANCES,
    PARTITIONS,
    _cli,
    _home,
    combined_digest,
    kill_one_and_finish,
    run_instances,
    single_replay,
)

NAME = "settlements"
SECOND_US = 1_000_000
PAIRS, RP = "pairs", "rp-2m"  # owned by shards 0 and 1 of 3 (asserted below); the default rule by shard 2
RULES_FROM_US = T0 + 240 * SECOND_US  # before it no rule is in force: the default rule takes the shapley allocations
ROUND_US = 30 * SECOND_US  # event time between two rounds of calls
ROUNDS = 24  # 12 minutes of calls: the one-minute windows close up to the watermark less ALLOWED_LATENESS_US
# the second batch of calls starts past the default rule's hourly window's end plus the lateness: it closes it
SECOND_START_US = T0 + DEFAULT_RULE.window_us + ALLOWED_LATENESS_US + 60 * SECOND_US
STRAGGLERS = 3  # calls per batch stamped back at its start


# the broker form of a test marked with it runs with the slow ones (scripts/slow_tests.sh); the default suite keeps
# its SQLite form (the default suite runs reputation's and budgets' sharding on the broker)
KAFKA_SLOW = pytest.mark.parametrize(
    "home", ["sqlite", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])], indirect=True)


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def home(request, tmp_path) -> Home:
    url = request.getfixturevalue("kafka_url") if request.param == "kafka" else None
    h = _home(tmp_path / "home", url)
    control(h, default_price_events(), times=[price_event_time_us(b) for b in default_price_events()])
    control(h, [SettlementRule(rule_id=PAIRS, tier="tier_2_rule_based", method="shapley", window_us=60 * SECOND_US,
                               threshold_micros=20_000, effective_from_us=RULES_FROM_US),
                SettlementRule(rule_id=RP, tier="tier_2_rule_based", method="requestor_pays",
                               window_us=120 * SECOND_US, threshold_micros=0, effective_from_us=RULES_FROM_US)],
            t=T0 + 50)
    log = h.open_log()
    try:  # the allocations topic over as many partitions as the events (it would get one otherwise)
        log.ensure_topic(h.topic_for("allocations"), PARTITIONS)
    finally:
        log.close()
    return h


def _calls(h: Home, run_label: str, start_us: int, rounds: int = ROUNDS) -> list[int]:
    """Per round, each agent calls a peer (a record each, so allocations arrive interleaved across agents); request
    and response sizes vary by agent and round so pair balances do not cancel; then ``STRAGGLERS`` calls stamped at
    the first round's time (or the rules' start): late for the rules once the watermark has closed those windows.
    Returns the calls' event times."""
    log = h.open_log()
    times = []
    try:
        ems = {a: Emitter(log, h.load_key(a), topic=h.topic, state_dir=h.state_dir, background_flush=False)
               for a in AGENTS}
        try:
            for n in range(rounds):
                for i, a in enumerate(AGENTS):
                    peer = AGENTS[(i + 1 + n % 3) % len(AGENTS)]
                    t = start_us + n * ROUND_US + i * SECOND_US
                    ems[a].emit(call(f"{run_label}-{a}-{n}", a, peer, request=1_000 + 150 * i + 10 * n,
                                     response=2_000 + 300 * ((i + n) % 5)), event_time_us=t)
                    ems[a].flush()
                    times.append(t)
            for i, a in enumerate(AGENTS[:STRAGGLERS]):
                t = max(start_us, RULES_FROM_US) + i * SECOND_US
                ems[a].emit(call(f"{run_label}-{a}-late", a, AGENTS[-1], request=1_700 + 100 * i), event_time_us=t)
                ems[a].flush()
                times.append(t)
        finally:
            for em in ems.values():
                em.close()
    finally:
        log.close()
    return times


def _run(h: Home) -> None:
    run_instances(h, NAME)


def _combined(h: Home) -> dict:
    return combined_digest(h, NAME)


def _single(h: Home) -> tuple[dict, list[tuple]]:
    """One instance rebuilt from the log: its digest, and per rule (allocations taken, of which late), and the
    settlement ids."""
    r = single_replay(h, NAME)
    store = Store(r["file"], Settlements.views, read_only=True)
    try:
        taken = store.query("SELECT rule_id, (sum(allocations), sum(late_allocations)) FROM pair_balances "
                            "GROUP BY 1 ORDER BY 1")
        ids = sorted(x for (x,) in store.query("SELECT settlement_id FROM settlements"))
    finally:
        store.close()
    return r, [*taken, ("settlement_ids", ids)]


def _visible(h: Home, table: str, shard: Shard, cols: str) -> list[tuple]:
    """Rows of ``table`` that ``shard`` shows (publishes and digests): its hidden rows left out."""
    store = Store(service.state_file(h, NAME, shard), Settlements.views, read_only=True,
                  hidden=hidden_rows(Settlements(), shard, h.control_topic))
    try:
        return store.query(f"SELECT {cols} FROM {store.visible(table)}")
    finally:
        store.close()


def _settlement_events(h: Home) -> list[tuple[str, str, str]]:
    """(settlement id, rule id, signer) of every event on the settlements topic."""
    log = h.open_log()
    try:
        out = []
        for rec in read_all(log, h.topic_for("settlements")):
            for raw in codec.decode_batch(rec.value).events:
                ev = codec.decode_event(raw).event
                if isinstance(ev.body, Settlement):
                    out.append((ev.body.settlement_id, dict(ev.body.params)["rule_id"], ev.signer_id))
        return out
    finally:
        log.close()


def _expected_taken(times: list[int]) -> dict[str, tuple[int, int]]:
    """(allocations, late) each rule takes (every call is above both thresholds): the default rule the shapley ones
    before the rules are in force, ``pairs`` the shapley ones after, ``rp-2m`` the requestor_pays ones after; the
    first batch's stragglers are late for both rules."""
    before = sum(1 for t in times if t < RULES_FROM_US)
    return {DEFAULT_RULE.rule_id: (before, 0), PAIRS: (len(times) - before, STRAGGLERS),
            RP: (len(times) - before, STRAGGLERS)}


def _check_union(h: Home, times: list[int]) -> None:
    live, (single, facts) = _combined(h), _single(h)
    assert live["source"] == f"{INSTANCES} shards combined"
    assert live["digest"] == single["digest"] and live["tables"] == single["tables"]
    *taken, (_, ids) = facts
    assert dict(taken) == _expected_taken(times)
    # every rule's rows are shown by the shard owning it, once; the rules by shard 0, the watermark by its owner
    for i in range(INSTANCES):
        sh = Shard(i, INSTANCES)
        for (rid,) in _visible(h, "pair_balances", sh, "DISTINCT rule_id"):
            assert owner_index(rule_key(rid), INSTANCES) == i
        progress = dict(_visible(h, "settlement_progress", sh, "key, value_us"))
        assert ("watermark" in progress) == (owner_index(WATERMARK_OWNER, INSTANCES) == i)
        assert len(_visible(h, "settlement_rules", sh, "rule_id")) == (2 if i == 0 else 0)
    # each settlement event once, signed by the shard owning its rule, and they are the one instance's settlements
    events = _settlement_events(h)
    assert sorted(e[0] for e in events) == ids and len(ids) == len(set(ids)) > 0
    for _, rid, signer in events:
        assert signer == f"processor.{NAME}.{Shard(owner_index(rule_key(rid), INSTANCES), INSTANCES).label}"


@KAFKA_SLOW
def test_three_instances_hold_what_one_instance_holds(home):
    assert [owner_index(rule_key(r), INSTANCES) for r in (PAIRS, RP, DEFAULT_RULE.rule_id)] == [0, 1, 2]
    times = _calls(home, "r1", T0 + 100 * SECOND_US)
    run(home, "allocations")
    _run(home)
    _check_union(home, times)
    # tokenledger replay: one instance rebuilt to the point the shards stopped at, equal
    p = _cli("replay", NAME, "--json", "--home", str(home.path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["equal"] is True
    # more calls, past the default rule's hourly window: the same instances restart from their files (each restores
    # every rule and the watermark) and the default's owner closes its window when the watermark passes it
    times += _calls(home, "r2", SECOND_START_US, rounds=4)
    run(home, "allocations")
    _run(home)
    _check_union(home, times)
    default_windows = _visible(home, "pair_balances", Shard(2, INSTANCES), "DISTINCT window_start_us, status")
    assert default_windows == [(T0 - T0 % DEFAULT_RULE.window_us, "closed")]


@KAFKA_SLOW
def test_a_killed_instance_restarted_loses_and_duplicates_nothing(home):
    """Instance 1 (the router of the allocations topic's partition, the owner of ``rp-2m`` and of the watermark row)
    is SIGKILLed after its third commit while the others run; they wait for its marks, and when it is started again
    (its router broadcasting from a watermark of 0 again) all three finish with the one instance's state."""
    assert partition_for(b"processor.allocations", PARTITIONS) % INSTANCES == 1
    times = _calls(home, "r1", T0 + 100 * SECOND_US)
    run(home, "allocations")
    kill_one_and_finish(home, NAME)
    _check_union(home, times)


def test_row_owners_in_python_and_sql_agree(tmp_path: Path):
    """``row_owner`` (what a shard keeps) and ``row_owner_sql`` (what its store shows) name the same shard for
    every kind of row; the rules are shown by shard 0 alone."""
    proc = Settlements()
    con = duckdb.connect()
    con.execute("CREATE TABLE settlement_progress (key VARCHAR, value_us BIGINT)")
    con.execute("CREATE TABLE carried (rule_id VARCHAR, agent_a VARCHAR, agent_b VARCHAR, a_owes_b_micros BIGINT)")
    progress = [("watermark", 1), *[(f"closed_until:{r}", 2) for r in (PAIRS, RP, "default", "x:y")]]
    con.executemany("INSERT INTO settlement_progress VALUES (?, ?)", progress)
    carried = [(r, "a", "b", 3) for r in (PAIRS, RP, "default", "x:y")]
    con.executemany("INSERT INTO carried VALUES (?, ?, ?, ?)", carried)
    for count in (2, 3, 5):
        for table, cols in (("settlement_progress", "key, value_us"), ("carried", "*")):
            expr = owner_sql(proc.row_owner_sql(table) or "", count)
            got = con.execute(f"SELECT {expr}, {cols} FROM {table}").fetchall()
            names = [d[0] for d in con.execute(f"SELECT {cols} FROM {table}").description]
            for owner, *row in got:
                key = proc.row_owner(table, dict(zip(names, row, strict=True)))
                assert key is not None and owner == owner_index(key, count)
    assert proc.row_owner("settlement_rules", {"rule_id": PAIRS}) is None
    assert [hidden_rows(proc, Shard(i, 3), "ledger.control").get("settlement_rules") for i in range(3)] == [
        None, "TRUE", "TRUE"]
