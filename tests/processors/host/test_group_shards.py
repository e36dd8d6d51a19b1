"""``tokenledger run journal --instances 3 --group``: the journal's 3 shards shared out by a Kafka consumer group (the
Tansu test broker), on real homes and real processes through the CLI.

Method: the home, agents and events of ``test_sharding`` (6 event partitions, agents on several of them, token counts
written there). One member alone takes the 3 slots and catches up. Two members share them; more events are emitted;
one is SIGKILLed and the survivor takes its slots after the session timeout. Each time the combined digest of the
shards (``tokenledger digest journal --json``) equals a single-instance rebuild of the same log (``service.replay``),
and the events' rows hold each emitted event once with its exact input tokens: nothing lost, nothing duplicated.
Which process ran which shard comes from the shards' status files (pid, group) and the members' messages. Also:
reputation, which shards through the exchange, run by one member; a one-slot group (the unsharded processor); and
``--group`` refused without ``--instances``, a Kafka log or exactly one processor. No timed assertions: conditions
are polled with generous deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.sdk.home import Home
from processors.host import group, service
from processors.journal import EVENTS
from processors.runtime.shards import Shard
from tests.processors.host.test_exchange_sharding import _rate
from tests.processors.host.test_sharding import (
    AGENTS,
    INSTANCES,
    PARTITIONS,
    ROOT,
    _cli,
    _digest,
    _emit,
    _home,
    _single,
)

NAME = "journal"
DEADLINE_S = 90.0  # per condition: a join on Tansu takes 3 s, a dead member is dropped after 6 s; this is headroom
POLL_S = 0.2


def _prefix(h: Home) -> str:
    return str(h.config["topic_prefix"])


def _start(h: Home, err: Path) -> subprocess.Popen[bytes]:
    with err.open("wb") as f:
        return subprocess.Popen([sys.executable, "-m", "processors.cli", "run", NAME, "--instances", str(INSTANCES),
                                 "--group", "--home", str(h.path)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f,
                                start_new_session=True)


def _statuses(h: Home) -> list[dict[str, Any]]:
    return [service.read_status(h, NAME, Shard(i, INSTANCES)) for i in range(INSTANCES)]


def _running(h: Home) -> list[int | None]:
    """Per shard, the pid of the process running it (None when its status does not say running)."""
    return [s.get("pid") if s.get("state") == "running" else None for s in _statuses(h)]


def _ends(h: Home) -> dict[str, int]:
    log = h.open_log()
    try:
        topic = h.topic_for("events")
        return {f"{topic}/{p}": log.end_offset(topic, p) for p in range(PARTITIONS)}
    finally:
        log.close()


def _caught_up(h: Home, ends: dict[str, int]) -> bool:
    """Every shard's status says it has read each of its events partitions to ``ends``."""
    for i, s in enumerate(_statuses(h)):
        mine = {k: v for k, v in ends.items() if int(k.rpartition("/")[2]) % INSTANCES == i}
        if any(s.get("positions", {}).get(k) != v for k, v in mine.items()):
            return False
    return True


def _wait(what: str, condition: Callable[[], bool], procs: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        for name, (p, err) in procs.items():
            assert p.poll() is None, f"member {name} exited with {p.returncode} while waiting for {what}:\n" \
                                     f"{err.read_text()[-3000:]}"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}:\n{e.read_text()[-3000:]}" for n, (_, e) in procs.items())
            pytest.fail(f"not within {DEADLINE_S} s: {what}\n{logs}")
        time.sleep(POLL_S)


def _check_equals_single(h: Home, runs: int) -> None:
    """The shards' combined digest is the single-instance rebuild's, and each emitted event is there once."""
    live = _digest(h)
    assert live["source"] == f"{INSTANCES} shards combined"
    single, rows = _single(h)
    assert live["digest"] == single["digest"]
    assert live["tables"] == single["tables"]
    events = rows["events"]
    cols = EVENTS.public_columns
    ids = [r[cols.index("event_id")] for r in events]
    assert len(ids) == len(set(ids))
    kind, signer, tokens = cols.index("kind"), cols.index("signer_id"), cols.index("input_tokens")
    for i, a in enumerate(AGENTS):
        mine = [r for r in events if r[signer] == a]
        assert sorted(r[kind] for r in mine) == sorted((["action"] * 5 + ["data"]) * runs)
        assert sorted(r[tokens] for r in mine if r[kind] == "action") == sorted(
            [1_000 * (i + 1) + n for n in range(5)] * runs)


@pytest.mark.kafka
def test_one_member_takes_every_slot_and_catches_up(kafka_url, tmp_path):
    h = _home(tmp_path / "home", kafka_url)
    _emit(h, "r1")
    p = _cli("run", NAME, "--instances", str(INSTANCES), "--group", "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    gid = group.group_id(_prefix(h), NAME, INSTANCES)
    assert f"joining consumer group {gid}" in p.stderr
    for i in range(INSTANCES):
        assert f"running shard-{i}-of-{INSTANCES} here" in p.stderr, p.stderr
    statuses = _statuses(h)
    assert [s["state"] for s in statuses] == ["stopped"] * INSTANCES
    assert len({s["pid"] for s in statuses}) == 1  # one process ran the three
    assert {s["group"] for s in statuses} == {gid}
    assert _caught_up(h, _ends(h))
    _check_equals_single(h, runs=1)


@pytest.mark.kafka
def test_a_one_slot_group_runs_the_processor_as_one_instance(kafka_url, tmp_path):
    """--instances 1 --group: the slot is the unsharded processor (its own directory), as `run` without --group."""
    h = _home(tmp_path / "home", kafka_url)
    _emit(h, "r1", per_agent=1)
    p = _cli("run", NAME, "--instances", "1", "--group", "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    assert f"running {group.UNSHARDED_LABEL} here" in p.stderr, p.stderr
    status = service.read_status(h, NAME)
    assert status["state"] == "stopped" and status["group"] == group.group_id(_prefix(h), NAME, 1)
    assert not list(h.processor_dir(NAME).glob("shard-*"))
    live = _digest(h)
    single, _ = _single(h)
    assert live["digest"] == single["digest"] and live["positions"] == single["positions"]


@pytest.mark.kafka
@pytest.mark.slow  # scripts/slow_tests.sh
def test_one_member_runs_an_exchange_processors_shards(kafka_url, tmp_path):
    """reputation shards through the exchange: its 3 shards' routers and owners in one process hold together what
    one instance holds."""
    h = _home(tmp_path / "home", kafka_url)
    _rate(h, "r1")
    p = _cli("run", "reputation", "--instances", str(INSTANCES), "--group", "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    assert [s["state"] for s in (service.read_status(h, "reputation", Shard(i, INSTANCES)) for i in range(INSTANCES))
            ] == ["stopped"] * INSTANCES
    d = _cli("digest", "reputation", "--json", "--home", str(h.path))
    assert d.returncode == 0, d.stderr
    live = json.loads(d.stdout)
    log = h.open_log()
    try:
        single = service.replay(h, "reputation", log)
    finally:
        log.close()
    assert live["source"] == f"{INSTANCES} shards combined"
    assert live["digest"] == single["digest"] and live["tables"] == single["tables"]
    assert live["tables"]["trust_history"]["rows"] == len(AGENTS) * 5  # 4 ratings and 1 self-rating per agent
    assert live["tables"]["reputation"]["rows"] == len(AGENTS)


@pytest.mark.kafka
@pytest.mark.slow  # scripts/slow_tests.sh
def test_two_members_share_the_slots_and_the_survivor_takes_a_killed_ones(kafka_url, tmp_path):
    h = _home(tmp_path / "home", kafka_url)
    _emit(h, "r1")
    a = _start(h, tmp_path / "a.err")
    procs = {"a": (a, tmp_path / "a.err")}
    b: subprocess.Popen[bytes] | None = None
    try:
        _wait("member a running the 3 shards", lambda: _running(h) == [a.pid] * INSTANCES, procs)
        b = _start(h, tmp_path / "b.err")
        procs["b"] = (b, tmp_path / "b.err")
        _wait("both members running shards", lambda: None not in _running(h) and set(_running(h)) == {a.pid, b.pid},
              procs)
        held_by_b = [i for i, pid in enumerate(_running(h)) if pid == b.pid]
        assert 0 < len(held_by_b) < INSTANCES
        for i in held_by_b:
            assert f"releasing shard-{i}-of-{INSTANCES} (revoked by a rebalance)" in (tmp_path / "a.err").read_text()
            assert f"running shard-{i}-of-{INSTANCES} here" in (tmp_path / "b.err").read_text()
        _emit(h, "r2")
        os.kill(b.pid, signal.SIGKILL)
        assert b.wait(timeout=30) == -signal.SIGKILL
        del procs["b"]
        ends = _ends(h)
        _wait("member a running every shard again, caught up with the second run",
              lambda: _running(h) == [a.pid] * INSTANCES and _caught_up(h, ends), procs)
        a.send_signal(signal.SIGTERM)
        assert a.wait(timeout=60) == 0, (tmp_path / "a.err").read_text()
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    statuses = _statuses(h)
    assert [(s["state"], s["pid"]) for s in statuses] == [("stopped", a.pid)] * INSTANCES
    _check_equals_single(h, runs=2)


def test_group_is_refused_without_instances_a_kafka_log_or_one_processor(tmp_path):
    h = _home(tmp_path / "home")  # an embedded (SQLite) log
    for args, words in [
        (("run", NAME, "--group"), "needs --instances N"),
        (("run", NAME, "--instances", "3", "--group"), "needs a Kafka log"),
        (("run", NAME, "--shard", "1/3", "--group"), "needs --instances N"),
        (("run", NAME, "--instances", "3", "--shard", "1/3", "--group"), "the group assigns the shards"),
        (("run", NAME, "reputation", "--instances", "3", "--group"), "runs one processor per process"),
        (("run", "--instances", "3", "--group"), "runs one processor per process"),
    ]:
        p = _cli(*args, "--home", str(h.path))
        assert p.returncode != 0, args
        assert "--group" in p.stderr and words in p.stderr, (args, p.stderr)
    assert not h.processor_dir(NAME).exists(), "refused before anything was created"
