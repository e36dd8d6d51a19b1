"""Processors sharded through the exchange (``processors.runtime.exchange``), on real homes: 6 event partitions
(SQLite, and the Tansu test broker), agents on several partitions rating each other, so a subject's ratings come from
other partitions than its own. Three instances, each its own process through the CLI, must hold together what one
instance holds: the combined digest equals a single-instance rebuild (``service.replay``) and ``tokenledger replay``
says so; an instance SIGKILLed mid-stream and restarted loses and duplicates nothing; a forged exchange record is
quarantined and changes nothing."""

from __future__ import annotations

import json

import pytest

from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0
from ledger.wire import exchange as wire
from processors.host import service
from processors.reputation import Reputation
from processors.runtime.exchange import exchange_topic, keep_owned, owner_index
from processors.runtime.processor import Effects
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

NAME = "reputation"


# the broker form of a test marked with it runs with the slow ones (scripts/slow_tests.sh); the default suite keeps
# its SQLite form and the broker form of the three-instance test
KAFKA_SLOW = pytest.mark.parametrize(
    "home", ["sqlite", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])], indirect=True)


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def home(request, tmp_path) -> Home:
    if request.param == "kafka":
        return _home(tmp_path / "home", request.getfixturevalue("kafka_url"))
    return _home(tmp_path / "home")


def _rate(h: Home, run: str, per_agent: int = 4) -> None:
    """Each agent rates the next agents (values written here), a record per rating; and one self-rating."""
    for i, a in enumerate(AGENTS):
        with Emitter.open(a, home=h.path, background_flush=False) as em:
            for n in range(per_agent):
                em.trust(AGENTS[(i + n + 1) % len(AGENTS)], "accuracy", f"0.{25 + 5 * n + i}",
                         idempotency_key=f"{run}-{a}-{n}", event_time_us=T0 + 100 + 10 * n + i)
                em.flush()
            em.trust(a, "reliability", 0.9, idempotency_key=f"{run}-{a}-self", event_time_us=T0 + 300 + i)


def _run(h: Home) -> None:
    run_instances(h, NAME)


def _combined(h: Home) -> dict:
    return combined_digest(h, NAME)


def _single(h: Home) -> dict:
    return single_replay(h, NAME)


def _rows(h: Home, table: str, shard: Shard) -> list[tuple]:
    store = Store(service.state_file(h, NAME, shard), Reputation.views, read_only=True)
    try:
        return store.query(f"SELECT * EXCLUDE (_batch) FROM {table}" if table == "trust_history"
                           else f"SELECT * FROM {table}")
    finally:
        store.close()


def test_three_instances_hold_what_one_instance_holds(home):
    _rate(home, "r1")
    _run(home)
    live, single = _combined(home), _single(home)
    assert live["source"] == f"{INSTANCES} shards combined"
    assert live["digest"] == single["digest"] and live["tables"] == single["tables"]
    assert live["tables"]["trust_history"]["rows"] == len(AGENTS) * 5
    assert live["tables"]["reputation"]["rows"] == len(AGENTS)
    # each subject's row is on the shard owning it, once; every shard owns some
    seen: dict[str, int] = {}
    for i in range(INSTANCES):
        for row in _rows(home, "reputation", Shard(i, INSTANCES)):
            assert owner_index(row[0], INSTANCES) == i
            seen[row[0]] = seen.get(row[0], 0) + 1
    assert seen == {a: 1 for a in AGENTS}
    assert {owner_index(a, INSTANCES) for a in AGENTS} == set(range(INSTANCES))
    # tokenledger replay: one instance rebuilt to the point the shards stopped at, equal
    p = _cli("replay", NAME, "--json", "--home", str(home.path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["equal"] is True
    # more ratings, the same instances again: the union moves with them
    _rate(home, "r2")
    _run(home)
    assert _combined(home)["digest"] == _single(home)["digest"]


@KAFKA_SLOW
def test_a_killed_instance_restarted_loses_and_duplicates_nothing(home):
    """Instance 1 is SIGKILLed after its third commit (its router's or its owner's) while the others run; the others
    wait for its marks, and when it is started again all three finish with the one instance's state."""
    _rate(home, "r1")
    kill_one_and_finish(home, NAME)
    live, single = _combined(home), _single(home)
    assert live["digest"] == single["digest"]
    assert live["tables"]["trust_history"]["rows"] == len(AGENTS) * 5


def test_a_forged_exchange_record_is_quarantined_and_changes_nothing(tmp_path):
    h = _home(tmp_path / "home")
    _rate(h, "r1")
    _run(h)
    before = _combined(h)["digest"]
    log = h.open_log()
    try:
        topic = exchange_topic("ledger", NAME, Shard(1, INSTANCES), 0)
        last = read_all(log, topic)[-1]
        genuine = wire.decode(last.value)
        # the next link of the pair, with a rating routed in, signed by a key that is not the router's
        forged = wire.ExchangeRecord(sender=genuine.sender, key_id=genuine.key_id, sender_index=1, target=0,
                                     count=INSTANCES, seq=genuine.seq + 1, prev_hash=wire.record_hash(last.value),
                                     through=genuine.through, signature=b"\x00" * 64)
        log.append(topic, [(genuine.sender.encode(), wire.encode(forged))])
    finally:
        log.close()
    _rate(h, "r2")
    _run(h)
    live, single = _combined(h), _single(h)
    # every view as one instance's; the quarantine holds the forged exchange record besides (a fact of the shards)
    assert {t: v for t, v in live["tables"].items() if t != "quarantine"} == {
        t: v for t, v in single["tables"].items() if t != "quarantine"}
    assert live["digest"] != before
    assert (live["tables"]["quarantine"]["rows"], single["tables"]["quarantine"]["rows"]) == (1, 0)
    q = _rows(h, "quarantine", Shard(0, INSTANCES))
    assert [(r[0], r[3]) for r in q] == [(topic, "bad_signature")]


def test_owner_keys_are_stable_and_spread():
    assert [owner_index(f"agent-{i}", 3) for i in range(6)] == [owner_index(f"agent-{i}", 3) for i in range(6)]
    assert owner_index("agent-0", 1) == 0
    counts = [0, 0, 0]
    for i in range(300):
        counts[owner_index(f"k{i}", 3)] += 1
    assert min(counts) > 60


def test_keep_owned_keeps_the_rows_and_derived_events_of_the_shards_keys():
    proc = Reputation()
    fx = Effects()
    fx.upsert("reputation", {"agent_id": [f"agent-{i}" for i in range(8)], "as_of_us": list(range(8))})
    fx.append("reputation_grants", {"agent_id": ["g"], "capability": ["grader"]})
    kept = [keep_owned(fx, proc, Shard(i, 3)) for i in range(3)]
    got = sorted(a for k in kept for a in k.upserts["reputation"][0]["agent_id"]) if all(
        "reputation" in k.upserts for k in kept) else None
    assert got == [f"agent-{i}" for i in range(8)]
    for i, k in enumerate(kept):
        assert all(owner_index(a, 3) == i for a in k.upserts["reputation"][0]["agent_id"])
    # a row made alike from control on every shard: kept by each (a restart restores from it), shown by shard 0 only
    assert ["reputation_grants" in k.appends for k in kept] == [True, True, True]
    assert [hidden_rows(proc, Shard(i, 3), "ledger.control").get("reputation_grants") for i in range(3)] == [
        None, "TRUE", "TRUE"]
