"""The notary run as N instances (``tokenledger run notary --instances 3`` / ``--shard I/N``), on real homes: 6 event
partitions (SQLite, and the Tansu test broker), agents whose records land on several partitions (``_home`` and
``_emit`` of test_sharding; in the kill test also one forged record, which is no leaf).

What must hold: the shards' combined digest is a single-instance rebuild's (``service.replay``) and ``tokenledger
replay notary`` says so; the union of their Merkle leaves is every accepted event once, each partition's leaves
numbered 0..n-1; each shard's signer holds the operator's ``notary`` grant, and an event's proof (``prove``, checked
offline by ``verify-proof``) verifies against the checkpoint signed by the shard owning its partition, while a
tampered proof fails; ``verify`` passes; the cadence checkpoints of the shards are the one notary's, per partition,
and a checkpoint id read from the ``checkpoints`` view proves against the shard-signed checkpoint; an instance
SIGKILLed mid-stream and restarted loses and duplicates nothing.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.integrity.checkpoints import control_keyring, read_checkpoints
from ledger.integrity.proofs import verify_proof
from ledger.log import read_all
from ledger.sdk.home import Home
from ledger.wire import codec
from ledger.wire.events import Checkpoint
from processors.cli import build_app
from processors.host import service
from processors.notary import CHECKPOINTS, Notary
from processors.runtime.shards import Shard, all_shards
from processors.runtime.store import Store
from processors.services.proofs import notary_leaves, prove_consistency, prove_event
from tests.processors.host.test_sharding import (
    AGENTS,
    INSTANCES,
    PARTITIONS,
    ROOT,
    _emit,
    _forge,
    _home,
    run_instances,
    single_replay,
)

NAME = "notary"
PER_AGENT = 5  # _emit: per agent this many LLM calls (a record each) and one data event
EVENTS_PER_AGENT = PER_AGENT + 1
SMALL_CADENCE = 2  # in-process runs: a cadence checkpoint each time a partition's tree passes a multiple of 2
cli = CliRunner()
app = build_app()


# the broker form of a test marked with it runs with the slow ones (scripts/slow_tests.sh); the default suite keeps
# its SQLite form (the default suite runs reputation's and budgets' sharding on the broker)
KAFKA_SLOW = pytest.mark.parametrize(
    "home", ["sqlite", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])], indirect=True)


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def home(request, tmp_path) -> Home:
    if request.param == "kafka":
        return _home(tmp_path / "home", request.getfixturevalue("kafka_url"))
    return _home(tmp_path / "home")


def _invoke(h: Home, *args: str, code: int = 0) -> Any:
    r = cli.invoke(app, [*args, "--home", str(h.path), "--json"])
    assert r.exit_code == code, r.output
    return json.loads(r.stdout) if code == 0 else r.output


def _run_sharded(h: Home) -> None:
    run_instances(h, NAME)


def _owner(h: Home, topic: str, partition: int) -> str:
    """The signer of the shard that owns a partition: control's is shard 0's, an events partition p's is p % N's."""
    index = 0 if topic == h.control_topic else partition % INSTANCES
    return service.signer_id(NAME, Shard(index, INSTANCES))


def _accepted(h: Home) -> dict[tuple[str, int], list[str]]:
    """The ids of the signed events on control and the events topic, per partition in log order (the forged record
    is no signed batch: it is no event, hence no leaf)."""
    out: dict[tuple[str, int], list[str]] = {}
    log = h.open_log()
    try:
        for topic in (h.control_topic, h.topic_for("events")):
            for rec in read_all(log, topic):
                if rec.value == b"not a signed batch":
                    continue
                ids = [codec.decode_event(raw).event.event_id for raw in codec.decode_batch(rec.value).events]
                out.setdefault((topic, rec.partition), []).extend(ids)
    finally:
        log.close()
    return out


def _union_leaves(h: Home) -> dict[tuple[str, int], list[tuple[int, str]]]:
    """(leaf index, event id) per partition, as an analyst reads the published views (the union of the shards)."""
    rows = _invoke(h, "query", "SELECT topic, log_partition, leaf_index, event_id FROM merkle_leaves "
                               "ORDER BY topic, log_partition, leaf_index")
    out: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for r in rows:
        out.setdefault((r["topic"], r["log_partition"]), []).append((r["leaf_index"], r["event_id"]))
    return out


def _single(h: Home) -> dict[str, Any]:
    return single_replay(h, NAME)


def _check_union_is_the_single_notary(h: Home) -> None:
    live = _invoke(h, "digest", NAME)
    assert live["source"] == f"{INSTANCES} shards combined"
    single = _single(h)
    assert live["digest"] == single["digest"] and live["tables"] == single["tables"]
    # every accepted event is a leaf once, in log order, numbered from 0 in its partition's tree
    leaves = _union_leaves(h)
    accepted = _accepted(h)
    assert {tp: [eid for _, eid in v] for tp, v in leaves.items()} == accepted
    assert all([i for i, _ in v] == list(range(len(v))) for v in leaves.values())
    events = [eid for (t, _), ids in accepted.items() if t == h.topic_for("events") for eid in ids]
    assert len(events) == len(set(events)) == len(AGENTS) * EVENTS_PER_AGENT
    doc = _invoke(h, "replay", NAME)
    assert doc["equal"] is True


@KAFKA_SLOW
def test_three_notary_instances_are_one_notary_and_their_proofs_verify(home, tmp_path):
    h = home
    _emit(h, "r1", per_agent=PER_AGENT)
    _run_sharded(h)
    _check_union_is_the_single_notary(h)
    # each shard read its own partitions of the events topic (and control)
    for i in range(INSTANCES):
        st = json.loads(service.status_file(h, NAME, Shard(i, INSTANCES)).read_text())
        parts = [int(k.rpartition("/")[2]) for k in st["positions"] if k.startswith(h.topic_for("events") + "/")]
        assert sorted(parts) == [p for p in range(PARTITIONS) if p % INSTANCES == i]
    # each shard's signer holds the operator's notary grant; no unsharded notary was ever granted here
    log = h.open_log()
    try:
        ring = control_keyring(log, h.control_topic, h.anchors())
    finally:
        log.close()
    for sh in all_shards(INSTANCES):
        assert ring.granted(service.signer_id(NAME, sh), "notary") is not None
        assert ring.granted(service.checkpoint_signer_id(NAME, sh), "notary") is None  # state checkpoints: no grant
    assert ring.granted("processor.notary", "notary") is None
    # checkpoints now: each partition's current tree, signed by the shard owning it (control: shard 0)
    rows = _invoke(h, "checkpoint")
    sizes = {(r["topic"], r["partition"]): r["tree_size"] for r in rows}
    assert sizes == {tp: len(ids) for tp, ids in _accepted(h).items()}
    assert all(r["new"] for r in rows)
    log = h.open_log()
    try:
        ring = control_keyring(log, h.control_topic, h.anchors())
        cps = [e for e in read_checkpoints(log, h.topic_for("checkpoints"), ring) if isinstance(e.body, Checkpoint)]
    finally:
        log.close()
    assert sorted((e.body.topic, e.body.partition) for e in cps) == sorted(sizes)  # one each, no shard twice
    assert all(e.signer_id == _owner(h, e.body.topic, e.body.partition) for e in cps)
    # a proof of an event on a partition of each shard, and of a control event: against its owner's checkpoint
    leaves = _union_leaves(h)
    picks = {}
    for (topic, part), v in sorted(leaves.items()):
        picks.setdefault(_owner(h, topic, part), (topic, part, v[-1][1]))
    assert len(picks) == INSTANCES  # every shard owns some partition with events
    op_key = h.anchors()["operator"].hex()
    for signer, (topic, part, eid) in picks.items():
        f = tmp_path / f"{eid}.json"
        made = _invoke(h, "prove", eid, "--out", str(f))
        assert made["event_id"] == eid and made["checkpoint_signer"] == signer
        checked = _invoke(h, "verify-proof", str(f), "--operator-key", op_key)
        assert checked["ok"] and checked["event_id"] == eid and checked["checkpoint_signer"] == signer
        assert checked["tree_size"] == sizes[(topic, part)] and checked["leaf_index"] == sizes[(topic, part)] - 1
    # while a shard runs (it holds its state file), what it published stands in for its file: the same index, and a
    # proof of its event still holds
    sql = "SELECT topic, log_partition, leaf_index, leaf_hash, event_id FROM merkle_leaves ORDER BY ALL"
    with notary_leaves(h) as q:
        from_files = q(sql)
    shard1 = Shard(1, INSTANCES)
    held = Store(service.state_file(h, NAME, shard1), Notary.views)
    try:
        with notary_leaves(h) as q:
            assert q(sql) == from_files and len(from_files) == sum(len(v) for v in leaves.values())
        log = h.open_log()
        try:
            doc = prove_event(h, log, picks[service.signer_id(NAME, shard1)][2])
        finally:
            log.close()
        assert verify_proof(doc, h.anchors()).checkpoint_signer == service.signer_id(NAME, shard1)
    finally:
        held.close()
    control_eid = leaves[(h.control_topic, 0)][0][1]
    made = _invoke(h, "prove", control_eid, "--out", str(tmp_path / "control.json"))
    assert made["checkpoint_signer"] == _owner(h, h.control_topic, 0)
    # a tampered proof fails: one bit of the inclusion path of the shard-1 event
    eid = picks[service.signer_id(NAME, Shard(1, INSTANCES))][2]
    doc = json.loads((tmp_path / f"{eid}.json").read_text())
    path = bytearray(base64.b64decode(doc["events"][0]["path"]))
    assert path, "a partition of several events: its path is not empty"
    path[0] ^= 1
    doc["events"][0]["path"] = base64.b64encode(bytes(path)).decode()
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc))
    r = cli.invoke(app, ["verify-proof", str(bad), "--operator-key", op_key, "--home", str(h.path)])
    assert r.exit_code == 1 and "checkpoint_mismatch" in r.output, r.output
    # the whole-log audit passes: every record, and every shard's checkpoint against the trees rebuilt from the log
    verdict = _invoke(h, "verify")
    assert verdict["ok"] and verdict["checkpoints"]["checkpoints"] == len(cps)
    assert verdict["checkpoints"]["partitions"] == len(sizes) and verdict["checkpoints"]["bad_records"] == 0


def test_cadence_checkpoints_of_the_shards_are_the_one_notarys(tmp_path, monkeypatch):
    """In process (cadence SMALL_CADENCE: several checkpoints on every partition): the shards' checkpoints view is the single notary's, row for row; each
    events partition's cadence checkpoints are signed once, by its owner; an id read from the view proves."""
    monkeypatch.setattr(Notary, "checkpoint_every", SMALL_CADENCE)
    h = _home(tmp_path / "home")
    _emit(h, "r1", per_agent=PER_AGENT)
    shards = all_shards(INSTANCES)
    log = h.open_log()
    try:
        for sh in shards:  # every signer (and grant) on control first, as `run --instances` does
            service.ensure_processor_key(h, NAME, log, sh)
        for sh in shards:
            runner, store, _ = service.open_runner(h, NAME, log, shard=sh)
            try:
                runner.run_until_caught_up()
            finally:
                store.close()
        single = service.replay(h, NAME, log)
        ring = control_keyring(log, h.control_topic, h.anchors())
        signed = [e for e in read_checkpoints(log, h.topic_for("checkpoints"), ring) if isinstance(e.body, Checkpoint)]
    finally:
        log.close()
    combined = service.combined_digest([service.shard_live_digest(h, NAME, sh) for sh in shards])
    assert combined["digest"] == single["digest"]
    cols = ", ".join(CHECKPOINTS.public_columns)
    union: list[tuple[Any, ...]] = []
    for sh in shards:
        store = Store(service.state_file(h, NAME, sh), Notary.views, read_only=True)
        try:
            topic = "" if sh.owns_control_rows else h.control_topic  # control's rows: shard 0's
            union += store.query(f"SELECT {cols} FROM checkpoints WHERE topic <> ?", [topic])
        finally:
            store.close()
    store = Store(Path(single["file"]), Notary.views, read_only=True)
    try:
        one = store.query(f"SELECT {cols} FROM checkpoints")
    finally:
        store.close()
    assert sorted(union) == sorted(one)
    expected = {(t, p): len(ids) // SMALL_CADENCE for (t, p), ids in _accepted(h).items()}
    events_topic = h.topic_for("events")
    assert sorted((r[0], r[1]) for r in one if r[0] == events_topic) == sorted(
        tp for tp, n in expected.items() if tp[0] == events_topic for _ in range(n))
    # on the log: each events partition's cadence checkpoints once, by its owner; control's by shard 0 (among others)
    on_log = [(e.body.topic, e.body.partition, e.body.tree_size, e.signer_id) for e in signed]
    assert sorted(x[:3] for x in on_log if x[0] == events_topic) == sorted(
        (r[0], r[1], r[2]) for r in one if r[0] == events_topic)
    assert all(s == _owner(h, t, p) for t, p, _, s in on_log if t == events_topic)
    control_sizes = {r[2] for r in one if r[0] == h.control_topic}
    assert control_sizes and {x[2] for x in on_log if x[0] == h.control_topic and x[3] == _owner(h, x[0], 0)} == \
        control_sizes
    # an id from the view (the one-instance notary's id of the checkpoint) proves against the shard-signed one
    part = next(p for p in range(PARTITIONS) if p % INSTANCES == 1 and expected.get((events_topic, p), 0) >= 2)
    mine = sorted((r for r in one if (r[0], r[1]) == (events_topic, part)), key=lambda r: r[2])
    view_id = mine[0][CHECKPOINTS.public_columns.index("checkpoint_event_id")]
    first_leaf = _accepted(h)[(events_topic, part)][0]
    log = h.open_log()
    try:
        doc = prove_event(h, log, first_leaf, checkpoint_id=view_id)
        consistency = prove_consistency(h, log, mine[0][-1], mine[-1][-1])
    finally:
        log.close()
    report = verify_proof(doc, h.anchors())
    assert report.checkpoint_signer == _owner(h, events_topic, part) and report.tree_size == mine[0][2]
    assert report.checkpoint_event_id != view_id  # the shard's own id for the same checkpoint
    c = verify_proof(consistency, h.anchors())
    assert (c.old_tree_size, c.tree_size) == (mine[0][2], mine[-1][2])


@KAFKA_SLOW
def test_a_killed_notary_instance_restarted_loses_and_duplicates_nothing(home):
    h = home
    _emit(h, "r1", per_agent=PER_AGENT)
    _forge(h)
    p = subprocess.run([sys.executable, "-m", "processors.host.worker", NAME, "--home", str(h.path),
                        "--shard", f"1/{INSTANCES}", "--until-caught-up", "--max-records", "2", "--crash-at",
                        "after_commit:2"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    killed = service.shard_live_digest(h, NAME, Shard(1, INSTANCES))["positions"]
    log = h.open_log()
    try:
        ends = {f"{h.topic_for('events')}/{q}": log.end_offset(h.topic_for("events"), q)
                for q in range(PARTITIONS) if q % INSTANCES == 1}
    finally:
        log.close()
    assert 0 < sum(killed.get(k, 0) for k in ends) < sum(ends.values()), "killed mid-stream: some read, some not"
    _run_sharded(h)
    _check_union_is_the_single_notary(h)
