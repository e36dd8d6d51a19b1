"""Sharded processors (``tokenledger run NAME --instances N`` / ``--shard I/N``), on real homes.

Method: a home with 6 event partitions (SQLite, and the Tansu test broker), agents whose records land on several
partitions, events of several kinds with token counts written here, and one forged record (a dead letter). The
journal runs as 3 instances (each its own process, through the CLI); then the combined digest of the shards is
compared with a single-instance rebuild of the same log (``service.replay``, which produces nothing), the union of
the shards' published views with that rebuild's rows, and the flat topic with the events. A SIGKILLed instance
restarted loses and duplicates nothing. Processors whose state crosses partitions are refused, naming why.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from ledger.integrity.keys import SigningKey, save_key
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, TEST_WINDOW
from ledger.wire.events import AgentRegistered
from processors import REGISTRY, get, views
from processors.api.state import published_state
from processors.cli import build_app
from processors.host import service
from processors.journal import EVENTS, GRANTS
from processors.runtime.processor import Processor
from processors.runtime.publish import REJECTIONS
from processors.runtime.shards import Shard, ShardingRefused, parse_shard, require_shardable
from processors.runtime.store import Store

ROOT = Path(__file__).resolve().parents[3]
PARTITIONS = 6
INSTANCES = 3
AGENTS = tuple(f"agent-{i}" for i in range(8))
cli = CliRunner()
app = build_app()


def _home(path: Path, log_url: str | None = None) -> Home:
    prefix = f"t{uuid.uuid4().hex[:10]}" if log_url else "ledger"
    h = Home.init(path, log_url=log_url, topic_prefix=prefix, partitions=PARTITIONS)
    op = h.operator_key()
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            em.emit(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), event_time_us=T0)
            for i, a in enumerate(AGENTS):
                k = SigningKey.generate(a)
                save_key(h.key_path(a), k)
                em.emit(AgentRegistered(agent_id=a, key_id=k.key_id, public_key=k.public.raw, priority=i + 1),
                        event_time_us=T0 + 1 + i)
            em.emit(TEST_WINDOW, event_time_us=T0 + 1 + len(AGENTS))
    finally:
        log.close()
    return h


def _emit(h: Home, run: str, per_agent: int = 5) -> None:
    """Per agent: LLM calls with input tokens 1000 * (agent number + 1) + call number, each in a record of its own,
    and one data event."""
    for i, a in enumerate(AGENTS):
        with Emitter.open(a, home=h.path, background_flush=False) as em:
            for n in range(per_agent):
                em.action("summarize", provider="anthropic", model="claude-sonnet-4-6",
                          input_tokens=1_000 * (i + 1) + n, output_tokens=100 + n, cache_read_tokens=n,
                          idempotency_key=f"{run}-{a}-{n}", event_time_us=T0 + 100 + n)
                em.flush()  # a record each: many records per partition, so a crash can come mid-stream
            em.data(bytes_read=4_096 + i, bytes_written=512, idempotency_key=f"{run}-{a}-data",
                    event_time_us=T0 + 200)


def _forge(h: Home) -> None:
    """A record no one signed, on agent-0's partition: quarantined, and one dead letter."""
    log = h.open_log()
    try:
        log.append(h.topic_for("events"), [(b"agent-0", b"not a signed batch")])
    finally:
        log.close()


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def home(request, tmp_path) -> Home:
    if request.param == "kafka":
        return _home(tmp_path / "home", request.getfixturevalue("kafka_url"))
    return _home(tmp_path / "home")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processors.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def run_instances(h: Home, name: str, count: int = INSTANCES) -> None:
    """``tokenledger run NAME --instances COUNT --until-caught-up`` through the CLI, in a process of its own."""
    p = _cli("run", name, "--instances", str(count), "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr


def combined_digest(h: Home, name: str) -> dict[str, Any]:
    """``tokenledger digest NAME --json``: the shards' combined digest."""
    p = _cli("digest", name, "--json", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    return out


def single_replay(h: Home, name: str) -> dict[str, Any]:
    """One instance rebuilt from the log (``service.replay``, which produces nothing): digest, tables, file."""
    log = h.open_log()
    try:
        return service.replay(h, name, log)
    finally:
        log.close()


def start_worker(h: Home, name: str, index: int, *extra: str) -> subprocess.Popen[str]:
    """Instance ``index`` of INSTANCES of ``name`` in a worker process of its own, until caught up."""
    return subprocess.Popen([sys.executable, "-m", "processors.host.worker", name, "--home", str(h.path), "--shard",
                             f"{index}/{INSTANCES}", "--until-caught-up", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def kill_one_and_finish(h: Home, name: str, *, crash_after: int = 3, max_records: int = 2,
                        check_killed: Callable[[], None] | None = None) -> None:
    """Instance 1 of an exchange-sharded ``name`` SIGKILLed after its ``crash_after``-th commit (its router's or its
    owner's) while the others run; they cannot finish without its marks; started again, all three finish."""
    others = [start_worker(h, name, i) for i in (0, 2)]
    killed = start_worker(h, name, 1, "--max-records", str(max_records), "--crash-at", f"after_commit:{crash_after}")
    assert killed.wait(timeout=300) == -signal.SIGKILL
    assert all(o.poll() is None for o in others), "the others cannot finish without instance 1's marks"
    if check_killed is not None:
        check_killed()
    again = start_worker(h, name, 1)
    for p in (again, *others):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


def _run_sharded(h: Home, *extra: str) -> None:
    p = _cli("run", "journal", "--instances", str(INSTANCES), "--until-caught-up", "--home", str(h.path), *extra)
    assert p.returncode == 0, p.stderr


def _single(h: Home) -> tuple[dict[str, Any], dict[str, list[tuple[Any, ...]]]]:
    """A single instance rebuilt from the log (it produces nothing): its digest, and its views' public rows."""
    log = h.open_log()
    try:
        r = service.replay(h, "journal", log)
    finally:
        log.close()
    store = Store(r["file"], get("journal").views, read_only=True)
    try:
        rows = {v.name: sorted(store.query(f"SELECT {', '.join(v.public_columns)} FROM {t}"), key=repr)
                for v, t in ((EVENTS, "events"), (GRANTS, "grants"), (REJECTIONS, "quarantine"))}
    finally:
        store.close()
    return r, rows


def _union(h: Home) -> dict[str, list[tuple[Any, ...]]]:
    """The published views, read like any analyst reads them (``tokenledger query``): the union of the shards."""
    out = {}
    for v in (EVENTS, GRANTS, REJECTIONS):
        r = cli.invoke(app, ["query", f"SELECT {', '.join(v.public_columns)} FROM {v.name}", "--home", str(h.path),
                             "--json"])
        assert r.exit_code == 0, r.output
        out[v.name] = sorted((tuple(row[c] for c in v.public_columns) for row in json.loads(r.stdout)), key=repr)
    return out


def _digest(h: Home) -> dict[str, Any]:
    r = cli.invoke(app, ["digest", "journal", "--home", str(h.path), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _comparable(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[str]]:
    """Rows as JSON text, without the events' event_time (the query's JSON renders the timestamp as text, the store
    gives a datetime; event_time_us, compared, holds the same instant); bytes as the query's JSON gives them (hex)."""
    skip = EVENTS.public_columns.index("event_time")
    return {k: sorted(json.dumps([None if x is None else x.hex() if isinstance(x, bytes) else str(x)
                                  for i, x in enumerate(r)
                                  if not (k == "events" and i == skip)]) for r in v) for k, v in rows.items()}


def _check_union_equals_single(h: Home) -> None:
    live = _digest(h)
    assert live["source"] == f"{INSTANCES} shards combined"
    assert sorted(live["shards"]) == [f"shard-{i}-of-{INSTANCES}" for i in range(INSTANCES)]
    single, rows = _single(h)
    assert live["digest"] == single["digest"]
    assert live["tables"] == single["tables"]
    union = _union(h)
    assert _comparable(union) == _comparable(rows)
    events = union["events"]
    ids = [r[0] for r in events]
    assert len(ids) == len(set(ids)), "an event is in the union twice"
    # what was emitted: per agent 5 LLM calls and one data event, each once; the agents' exact input tokens
    cols = EVENTS.public_columns
    kind, signer, tokens = cols.index("kind"), cols.index("signer_id"), cols.index("input_tokens")
    for i, a in enumerate(AGENTS):
        mine = [r for r in events if r[signer] == a]
        assert sorted(r[kind] for r in mine) == ["action"] * 5 + ["data"]
        assert sorted(r[tokens] for r in mine if r[kind] == "action") == [1_000 * (i + 1) + n for n in range(5)]
    assert len(union["rejections"]) == 1  # the forged record, once, though every shard read control


def test_the_agents_are_spread_over_several_partitions(home):
    _emit(home, "r1", per_agent=1)
    log = home.open_log()
    try:
        assert log.partitions(home.topic_for("events")) == PARTITIONS
        used = {r.partition for r in read_all(log, home.topic_for("events"))}
    finally:
        log.close()
    # every shard owns some: otherwise the test would prove nothing about the union
    assert {p % INSTANCES for p in used} == set(range(INSTANCES))


def test_three_instances_reach_the_single_instances_digest_and_views(home):
    _emit(home, "r1")
    _forge(home)
    _run_sharded(home)
    _check_union_equals_single(home)
    # each shard read only its own partitions of the events topic (and control)
    for i in range(INSTANCES):
        st = json.loads(service.status_file(home, "journal", Shard(i, INSTANCES)).read_text())
        events = [k for k in st["positions"] if k.startswith(home.topic_for("events") + "/")]
        assert sorted(int(k.rpartition("/")[2]) for k in events) == [p for p in range(PARTITIONS)
                                                                      if p % INSTANCES == i]
    # tokenledger status: a row per shard
    r = cli.invoke(app, ["status", "--home", str(home.path), "--json"])
    assert r.exit_code == 0, r.output
    states = {row["processor"]: row["state"] for row in json.loads(r.stdout)}
    assert {k: v for k, v in states.items() if k.startswith("journal")} == {
        f"journal/shard-{i}-of-{INSTANCES}": "stopped" for i in range(INSTANCES)}
    # replay of the shards: each rebuilt to its positions, combined, equal; and equal to their signed checkpoints
    r = cli.invoke(app, ["replay", "journal", "--home", str(home.path), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["equal"] is True
    assert doc["state_checkpoint"]["checked"], "every shard signed a state checkpoint at its positions"
    # more events, the same instances again: only they are added
    _emit(home, "r2")
    _run_sharded(home)
    live = _digest(home)
    single, rows = _single(home)
    assert live["digest"] == single["digest"]
    assert len(rows["events"]) == len(_union(home)["events"])


def test_the_flat_topic_gets_every_event_once_from_the_shards(home):
    _emit(home, "r1")
    _run_sharded(home)
    log = home.open_log()
    try:
        flat = read_all(log, home.topic_for("events.flat"))
    finally:
        log.close()
    union = _union(home)["events"]
    assert len(flat) == len(union)  # control events too, published by shard 0 alone
    # the dead letters of each shard are signed by that shard's own signer, and accepted by the ledger's readers
    assert {r.key for r in flat} >= {a.encode() for a in AGENTS}
    # the service's freshness (tokenledger serve, /metrics): the shards' published states together
    state = published_state(home, "journal")
    assert state is not None and state["shards"] == [f"shard-{i}-of-{INSTANCES}" for i in range(INSTANCES)]
    assert sorted(k for k in state["positions"] if k.startswith(home.topic_for("events") + "/")) == sorted(
        f"{home.topic_for('events')}/{p}" for p in range(PARTITIONS))


def test_a_killed_instance_restarted_loses_and_duplicates_nothing(home):
    h = home
    _emit(h, "r1")
    _forge(h)
    p = subprocess.run([sys.executable, "-m", "processors.host.worker", "journal", "--home", str(h.path),
                        "--shard", f"1/{INSTANCES}", "--until-caught-up", "--max-records", "2", "--crash-at",
                        "after_commit:2"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    killed = service.shard_live_digest(h, "journal", Shard(1, INSTANCES))["positions"]
    log = h.open_log()
    try:
        ends = {f"{h.topic_for('events')}/{q}": log.end_offset(h.topic_for("events"), q) for q in (1, 4)}
    finally:
        log.close()
    assert 0 < sum(killed.get(k, 0) for k in ends) < sum(ends.values()), "killed mid-stream: some read, some not"
    _run_sharded(h)
    _check_union_equals_single(h)
    log = h.open_log()
    try:
        flat = read_all(log, h.topic_for("events.flat"))
        dead = read_all(log, h.topic_for("rejected"))
    finally:
        log.close()
    assert len(flat) == len(_union(h)["events"])
    assert len(dead) == 1  # the forged record's dead letter, once


def test_every_processor_shards_and_one_that_cannot_is_refused(tmp_path):
    # every processor shards: by partition (its state is partition-local) or through the exchange
    assert sorted(n for n in REGISTRY if get(n).shardable) == ["journal", "notary"]
    assert sorted(n for n in REGISTRY if get(n).exchanges) == [
        "allocations", "budgets", "deliveries", "reputation", "settlements"]

    class Roll(Processor):  # state that crosses partitions, and no exchange routes
        name = "roll"
        shard_refusal = "it sums every partition into one row"

        def fold(self, items, quarantined):  # pragma: no cover - never folds
            raise AssertionError

    with pytest.raises(ShardingRefused) as e:
        require_shardable(Roll(), Shard(0, 2))
    assert e.value.field == "processor" and e.value.value == "roll"
    assert Roll.shard_refusal in str(e.value)
    require_shardable(Roll(), Shard(0, 1))  # one instance of one: as it always ran
    h = _home(tmp_path / "home")
    p = _cli("run", "journal", "--shard", "3/3", "--until-caught-up", "--home", str(h.path))
    assert p.returncode != 0 and "--shard" in p.stderr
    assert not h.processor_dir("journal").exists(), "refused before anything was created"


@pytest.mark.parametrize("text", ["", "1", "3/3", "-1/2", "0/0", "a/b", "1/999"])
def test_a_bad_shard_spec_names_the_field(text):
    with pytest.raises(Exception) as e:
        parse_shard(text)
    assert getattr(e.value, "field", None) == "--shard"


def test_shard_specs():
    assert parse_shard("2/3") == Shard(2, 3)
    assert [Shard(i, 3).owns(p) for i in range(3) for p in range(6)] == [
        True, False, False, True, False, False, False, True, False, False, True, False,
        False, False, True, False, False, True]


def test_a_processor_does_not_start_in_a_layout_beside_another(tmp_path):
    h = _home(tmp_path / "home")
    _emit(h, "r1", per_agent=1)
    _run_sharded(h)
    for args in (("run", "journal"), ("run", "journal", "--instances", "2"), ("run", "journal", "--shard", "0/2")):
        p = _cli(*args, "--until-caught-up", "--home", str(h.path))
        assert p.returncode != 0, args
        assert "it has state here as shard-0-of-3" in p.stderr, p.stderr
    assert not (h.processor_dir("journal") / service.STATE_FILE).exists()
    assert not h.processor_dir("journal", "shard-0-of-2").exists()
    _check_layout_refused_for_shards_beside_one(tmp_path / "other")


def _check_layout_refused_for_shards_beside_one(path: Path) -> None:
    h = _home(path)
    p = _cli("run", "journal", "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    p = _cli("run", "journal", "--instances", "3", "--until-caught-up", "--home", str(h.path))
    assert p.returncode != 0 and "it has state here as one instance" in p.stderr, p.stderr


def test_the_union_is_checked_shard_by_shard_and_whole(tmp_path):
    h = _home(tmp_path / "home")
    _emit(h, "r1", per_agent=2)
    _run_sharded(h)
    # a shard's part changed after it was published (before any reader kept a checked copy): refused, naming it
    part = next(h.views_dir("journal", "shard-2-of-3").glob("events/*.parquet"))
    original = part.read_bytes()
    part.write_bytes(original + b"x")
    r = cli.invoke(app, ["query", "SELECT count(*) FROM events", "--home", str(h.path), "--json"])
    assert r.exit_code != 0 and "journal.shard-2-of-3" in r.output, r.output
    part.write_bytes(original)
    n_events = len(_union(h)["events"])
    # per agent 2 calls and 1 data event; on control: the operator's, the agents' and each shard's 2 signers'
    # registrations, and the test window, each once though every shard read control
    assert n_events == len(AGENTS) * 3 + (1 + len(AGENTS) + 2 * INSTANCES + 1)
    # plain DuckDB over views.sql: every shard's parts
    con = duckdb.connect()
    try:
        con.execute(views.views_sql(h))
        assert con.execute("SELECT count(*) FROM events").fetchone() == (n_events,)
    finally:
        con.close()
    # a shard's views missing: refused, never a union of part of the data
    shard1 = h.views_dir("journal", "shard-1-of-3")
    shard1.rename(tmp_path / "moved")
    r = cli.invoke(app, ["query", "SELECT count(*) FROM events", "--home", str(h.path), "--json"])
    assert r.exit_code != 0 and "shard-1-of-3" in r.output, r.output
    (tmp_path / "moved").rename(shard1)
    assert len(_union(h)["events"]) == n_events


def test_readers_of_the_dead_letters_accept_every_shard_signer(tmp_path):
    """deliveries reads <prefix>.rejected: the dead letters two shards signed verify there (none quarantined)."""
    h = _home(tmp_path / "home")
    _emit(h, "r1", per_agent=1)
    log = h.open_log()
    try:
        # forged records on two agents' partitions owned by two different shards
        parts = {a: next(r.partition for r in read_all(log, h.topic_for("events")) if r.key == a.encode())
                 for a in AGENTS}
        chosen = {}
        for a, p in parts.items():
            chosen.setdefault(p % INSTANCES, a)
        assert len(chosen) >= 2
        for a in chosen.values():
            log.append(h.topic_for("events"), [(a.encode(), b"not a signed batch")])
    finally:
        log.close()
    _run_sharded(h)
    p = _cli("run", "deliveries", "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    log = h.open_log()
    try:
        dead = read_all(log, h.topic_for("rejected"))
        end = log.end_offset(h.topic_for("rejected"), 0)
    finally:
        log.close()
    assert len(dead) == len(chosen)
    assert {r.key.decode() for r in dead} == {f"processor.journal.shard-{i}-of-{INSTANCES}" for i in chosen}
    store = Store(service.state_file(h, "deliveries"), get("deliveries").views, read_only=True)
    try:
        assert store.query("SELECT count(*) FROM quarantine") == [(0,)]
        assert store.positions()[(h.topic_for("rejected"), 0)] == end
    finally:
        store.close()

