"""The notary and the checkpoint audit, on both log backends (embedded SQLite and Kafka):

- the notary's trees equal trees rebuilt from the verified log; its cadence checkpoints are a
  function of the log (a replay from offset 0, in other batch sizes, reaches the same digest and the
  same checkpoint ids); a restart resumes the same trees; `tokenledger checkpoint` signs the current
  tree of each partition once;
- `verify` checks every checkpoint against the log and names the first divergence after history is
  rewritten, dropped or reordered behind a checkpoint. SQLite: the stored records are edited in the
  file. Kafka cannot rewrite a record, so the Kafka history is copied into a second log with the
  change applied and audited there (the same code `verify` runs), and a conflicting checkpoint —
  signed with the notary's own key, another root for an existing tree size — is appended to the
  real topic;
- derived-state checkpoints: `serve` signs (positions, digest); `replay` compares with it (match and
  a forged mismatch).
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.integrity.checkpoints import audit_with_checkpoints, control_keyring, read_checkpoints
from ledger.integrity.merkle import MerkleTree, leaf_hash
from ledger.log import Log, read_all
from ledger.log.kafka import KafkaLog
from ledger.log.memory import MemoryLog
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, TEST_WINDOW, fill, make_home
from ledger.wire import codec
from ledger.wire.events import EMPTY_CONTEXT, AgentRegistered, Checkpoint, StateCheckpoint
from processors.cli import build_app
from processors.host.service import open_runner, serve
from processors.notary import Notary
from processors.runtime.store import DIGEST_ALGORITHM

app = build_app()  # the whole `tokenledger` command, as the console script builds it

runner = CliRunner()
BACKENDS = [pytest.param("sqlite"), pytest.param("kafka", marks=pytest.mark.kafka)]
EVERY = 40  # cadence for the tests: several checkpoints per partition from a small workload


@pytest.fixture(params=BACKENDS)
def nhome(request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A home with the demo workload, a notary run to the end (cadence EVERY) and an on-demand checkpoint."""
    monkeypatch.setattr(Notary, "checkpoint_every", EVERY)
    if request.param == "kafka":
        url = request.getfixturevalue("kafka_url")
        h = Home.init(tmp_path / "home", log_url=url, topic_prefix=f"n{uuid.uuid4().hex[:10]}")
        op = h.operator_key()
        with h.open_log() as lg, Emitter.for_operator(h, lg) as em:
            em.emit(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), event_time_us=T0)
            em.emit(TEST_WINDOW, event_time_us=T0)  # as make_home: the tests' hours are live data
    else:
        h = make_home(tmp_path / "home", agents=())
    h.backend = request.param  # type: ignore[attr-defined]
    fill(h, tasks=8, batch_size=4)
    run_notary(h)
    invoke(h, "checkpoint")
    return h


def invoke(h: Home, *args: str, code: int = 0) -> Any:
    import json

    r = runner.invoke(app, [*args, "--home", str(h.path), "--json"])
    assert r.exit_code == code, r.output
    try:
        return json.loads(r.stdout)
    except ValueError:
        return r.stdout


def run_notary(h: Home, max_records: int | None = None) -> None:
    with h.open_log() as lg:
        r, store, _ = open_runner(h, "notary", lg)
        if max_records:
            r.max_records = max_records
        try:
            r.run_until_caught_up()
        finally:
            store.close()


def notary_checkpoints(h: Home, lg: Log) -> list[Any]:
    ring = control_keyring(lg, h.control_topic, h.anchors())
    return [e for e in read_checkpoints(lg, h.topic_for("checkpoints"), ring) if isinstance(e.body, Checkpoint)]


def rebuilt_trees(h: Home, lg: Log) -> dict[tuple[str, int], MerkleTree]:
    from ledger.integrity.keyring import KeyRing
    from ledger.integrity.verify import Verifier

    v = Verifier(KeyRing(h.anchors()))
    trees: dict[tuple[str, int], MerkleTree] = {}
    for topic in h.ledger_topics:
        for rec in read_all(lg, topic):
            acc = v.check_record(rec.value)
            for d in acc.events:
                trees.setdefault((topic, rec.partition), MerkleTree()).append(leaf_hash(d.raw))
    return trees


def signed_record(key: Any, bodies: list[Any], t: int, seq: int = 10**6) -> bytes:
    """A batch signed by ``key`` (chain position arbitrary: checkpoint records are checked without chains)."""
    raws, hashes = [], []
    for i, body in enumerate(bodies):
        content = codec.encode_content(t, EMPTY_CONTEXT, body)
        idem = f"test:{uuid.uuid4().hex}"
        raw = codec.assemble_event(event_id=codec.derive_event_id(key.signer_id, idem, content), signer_id=key.signer_id,
                                   seq=seq + i, prev_hash=bytes(32), idempotency_key=idem, content=content)
        raws.append(raw)
        hashes.append(codec.event_hash(raw))
    return codec.encode_batch(key.signer_id, key.key_id, raws,
                              key.sign(codec.batch_signing_bytes(key.signer_id, key.key_id, hashes)))


# ---------------------------------------------------------------- the notary


def test_trees_and_checkpoints_match_the_log(nhome: Home) -> None:
    with nhome.open_log() as lg:
        trees = rebuilt_trees(nhome, lg)
        cps = notary_checkpoints(nhome, lg)
        report, cr = audit_with_checkpoints(lg, nhome.ledger_topics, nhome.topic_for("checkpoints"), nhome.anchors())
    assert report.ok and cr.ok, cr.to_dict()
    events_tp = (nhome.topic, 0)
    sizes = sorted(e.body.tree_size for e in cps if (e.body.topic, e.body.partition) == events_tp)
    total = trees[events_tp].size
    # cadence: one at the record boundary crossing each multiple of EVERY, plus the on-demand one at the end
    assert {s // EVERY for s in sizes} == set(range(1, total // EVERY + 1))
    assert sizes[-1] == total and all(b > a for a, b in itertools.pairwise(sizes))
    for e in cps:
        tree = trees[(e.body.topic, e.body.partition)]
        assert tree.root(e.body.tree_size) == e.body.root_hash
    assert {(e.body.topic, e.body.partition) for e in cps} == {events_tp, (nhome.control_topic, 0)}
    assert cr.checkpoints == len(cps) and cr.partitions == 2
    verdict = invoke(nhome, "verify")
    assert verdict["ok"] and verdict["checkpoints"]["checkpoints"] == len(cps)


def test_replay_reaches_the_same_state_and_checkpoints(nhome: Home, tmp_path: Any) -> None:
    """Deterministic: a rebuild in other batch sizes gives the same digest and the same checkpoint rows."""
    from processors.runtime.store import Store

    with nhome.open_log() as lg:
        live = Store(nhome.path / "processors" / "notary" / "state.duckdb", Notary.views, read_only=True)
        try:
            rows = live.query("SELECT * EXCLUDE (_batch) FROM checkpoints ORDER BY topic, tree_size")
            positions = {f"{t}/{p}": o for (t, p), o in live.positions().items()}
            digest = live.digest()["digest"]
        finally:
            live.close()
        target = tmp_path / "replay.duckdb"
        store = Store(target, Notary.views)
        from processors.runtime.publish import parse_positions
        from processors.runtime.runner import Runner

        r = Runner(Notary(), lg, store, anchors=nhome.anchors(), produce=False, max_records=3,
                   stop_at=parse_positions({"positions": positions}), topic_prefix=nhome.config["topic_prefix"])
        while r.step():
            pass
        again = store.query("SELECT * EXCLUDE (_batch) FROM checkpoints ORDER BY topic, tree_size")
        assert store.digest()["digest"] == digest
        store.close()
        cps = {e.event_id for e in notary_checkpoints(nhome, lg)}
    assert again == rows and len(rows) >= 3
    assert {row[6] for row in rows} <= cps  # the view's ids are the signed events' ids


def test_restart_resumes_the_trees_and_checkpoint_once(nhome: Home) -> None:
    fill(nhome, tasks=3, batch_size=4, seed=9, run="r2")
    run_notary(nhome)
    with nhome.open_log() as lg:
        trees = rebuilt_trees(nhome, lg)
        before = len(notary_checkpoints(nhome, lg))
    first = invoke(nhome, "checkpoint")
    assert {(r["topic"], r["tree_size"]) for r in first} == {(t, tr.size) for (t, _), tr in trees.items()}
    again = invoke(nhome, "checkpoint")
    assert not any(r["new"] for r in again) and [r["checkpoint_event_id"] for r in again] == [
        r["checkpoint_event_id"] for r in first]
    with nhome.open_log() as lg:
        after = notary_checkpoints(nhome, lg)
        _, cr = audit_with_checkpoints(lg, nhome.ledger_topics, nhome.topic_for("checkpoints"), nhome.anchors())
    assert len(after) == before + sum(r["new"] for r in first)
    assert cr.ok, cr.to_dict()


# ---------------------------------------------------------------- tampering behind a checkpoint


def _events(h: Home, lg: Log) -> list[Any]:
    return read_all(lg, h.topic)


def _first_events_checkpoint(h: Home, lg: Log, covering: int = 0) -> Any:
    """The first checkpoint of the events partition that covers the record at offset ``covering``."""
    cps = [e for e in notary_checkpoints(h, lg) if e.body.topic == h.topic and e.body.next_offset > covering]
    return min(cps, key=lambda e: e.body.tree_size)


def _swap_pair(recs: list[Any], below: int) -> tuple[int, int]:
    """Two adjacent records of different signers below ``below``: swapping them keeps every chain valid."""
    for a, b in itertools.pairwise(recs):
        if b.offset < below and codec.decode_batch(a.value).signer_id != codec.decode_batch(b.value).signer_id:
            return a.offset, b.offset
    raise AssertionError("no adjacent records of two signers")


def _shortened(h: Home, rec: Any) -> bytes:
    """The record re-signed by its own signer without its last event (a signer rewriting its history)."""
    batch = codec.decode_batch(rec.value)
    key = h.load_key(batch.signer_id)
    events = batch.events[:-1]
    hashes = [codec.event_hash(e) for e in events]
    return codec.encode_batch(key.signer_id, key.key_id, events,
                              key.sign(codec.batch_signing_bytes(key.signer_id, key.key_id, hashes)))


def _last_multi_event_record(h: Home, recs: list[Any]) -> Any:
    """A signer's last record (no later record of it: its chain stays valid if shortened)."""
    last: dict[str, Any] = {}
    for r in recs:
        last[codec.decode_batch(r.value).signer_id] = r
    cands = [r for r in last.values() if len(codec.decode_batch(r.value).events) > 1]
    assert cands, "no signer's last record has several events"
    return min(cands, key=lambda r: r.offset)


def _diverges(h: Home, lg: Log, cp: Any, *, audit_ok: bool) -> dict[str, Any]:
    report, cr = audit_with_checkpoints(lg, h.ledger_topics, h.topic_for("checkpoints"), h.anchors())
    assert report.ok is audit_ok, report.to_dict()
    assert not cr.ok and cr.first_divergence is not None
    d = cr.first_divergence
    assert d["topic"] == h.topic and d["partition"] == 0
    assert d["checkpoint_event_id"] == cp.event_id and d["tree_size"] == cp.body.tree_size
    assert d["actual_root"] == cp.body.root_hash.hex() and d["expected_root"] != d["actual_root"]
    return d


@pytest.mark.parametrize("how", ["reorder", "drop", "rewrite_bytes", "resign_shorter"])
def test_sqlite_tamper_is_named(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setattr(Notary, "checkpoint_every", EVERY)
    h = make_home(tmp_path / "home", agents=())
    fill(h, tasks=8, batch_size=4)
    run_notary(h)
    with h.open_log() as lg:
        recs = _events(h, lg)
        cp = _first_events_checkpoint(h, lg)
    below = cp.body.next_offset
    db = sqlite3.connect(h.path / "log.sqlite", isolation_level=None)
    upd = "UPDATE records SET value=? WHERE topic=? AND offset=?"
    by_off = {r.offset: r for r in recs}
    if how == "reorder":
        a, b = _swap_pair(recs, below)
        db.execute(upd, (by_off[b].value, h.topic, a))
        db.execute(upd, (by_off[a].value, h.topic, b))
    elif how == "drop":
        db.execute("DELETE FROM records WHERE topic=? AND offset=?", (h.topic, recs[1].offset))
    elif how == "rewrite_bytes":
        v = bytearray(recs[2].value)
        v[len(v) // 2] ^= 0x01
        db.execute(upd, (bytes(v), h.topic, recs[2].offset))
    else:
        r = _last_multi_event_record(h, recs)
        db.execute(upd, (_shortened(h, r), h.topic, r.offset))
        with h.open_log() as lg:
            cp = _first_events_checkpoint(h, lg, covering=r.offset)
    db.close()
    with h.open_log() as lg:
        # reordering two signers' records and a signer re-signing its own tail keep every chain valid:
        # only the checkpoint can tell
        d = _diverges(h, lg, cp, audit_ok=how in ("reorder", "resign_shorter"))
    out = invoke(h, "verify", code=1)
    assert out["checkpoints"]["first_divergence"]["checkpoint_event_id"] == d["checkpoint_event_id"]
    r = runner.invoke(app, ["verify", "--home", str(h.path)])
    assert r.exit_code == 1 and "FIRST DIVERGING CHECKPOINT" in r.output and cp.event_id in r.output


@pytest.mark.kafka
def test_kafka_rewritten_copy_and_conflicting_checkpoint(kafka_url: str, tmp_path: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Notary, "checkpoint_every", EVERY)
    # one signed record per append, so the agents' records interleave below the first checkpoint (the swap below
    # needs two adjacent records of two signers; with several records per append one agent's come in a run)
    monkeypatch.setattr(KafkaLog, "records_per_append", 1)
    h = Home.init(tmp_path / "home", log_url=kafka_url, topic_prefix=f"n{uuid.uuid4().hex[:10]}")
    op = h.operator_key()
    with h.open_log() as lg, Emitter.for_operator(h, lg) as em:
        em.emit(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), event_time_us=T0)
        em.emit(TEST_WINDOW, event_time_us=T0)  # as make_home: the tests' hours are live data
    fill(h, tasks=8, batch_size=4)
    run_notary(h)
    with h.open_log() as lg:
        topics = {t: read_all(lg, t) for t in (*h.ledger_topics, h.topic_for("checkpoints"))}
        cp = _first_events_checkpoint(h, lg)
        for how in ("reorder", "resign_shorter"):
            copy = MemoryLog()
            for t, recs in topics.items():
                copy.ensure_topic(t, 1)
                values = [r.value for r in recs]
                at = {r.offset: i for i, r in enumerate(recs)}
                if t == h.topic and how == "reorder":
                    a, b = _swap_pair(recs, cp.body.next_offset)
                    values[at[a]], values[at[b]] = values[at[b]], values[at[a]]
                elif t == h.topic:
                    r = _last_multi_event_record(h, recs)
                    values[at[r.offset]] = _shortened(h, r)
                    expect = _first_events_checkpoint(h, lg, covering=r.offset)
                copy.append(t, [(None, v) for v in values])
            _diverges(h, copy, cp if how == "reorder" else expect, audit_ok=True)
        # a conflicting checkpoint on the real topic: the notary's key, an existing size, another root
        notary = h.load_key("processor.notary")
        forged = Checkpoint(topic=cp.body.topic, partition=0, tree_size=cp.body.tree_size, root_hash=bytes(32),
                            next_offset=cp.body.next_offset, last_event_time_us=cp.body.last_event_time_us)
        lg.append(h.topic_for("checkpoints"), [(b"processor.notary", signed_record(notary, [forged], T0 + 10**6))])
        report, cr = audit_with_checkpoints(lg, h.ledger_topics, h.topic_for("checkpoints"), h.anchors())
    assert report.ok and not cr.ok and cr.divergences == 3  # its root; inconsistent with the true one and the next
    d = cr.first_divergence
    assert d is not None and d["actual_root"] == "00" * 32 and d["tree_size"] == cp.body.tree_size
    assert d["expected_root"] == cp.body.root_hash.hex()


# ---------------------------------------------------------------- derived-state checkpoints


def test_replay_checks_the_signed_state_checkpoint(nhome: Home) -> None:
    with nhome.open_log() as lg:
        serve(nhome, "journal", lg, exit_when_caught_up=True)
        states = [e for e in read_checkpoints(lg, nhome.topic_for("checkpoints"),
                                              control_keyring(lg, nhome.control_topic, nhome.anchors()))
                  if isinstance(e.body, StateCheckpoint) and e.body.processor == "journal"]
    # once, though digested twice; on the chain of its own (the journal's key signed them before: still compared)
    assert len(states) == 1 and states[0].signer_id == "processor.journal.checkpoints"
    ok = invoke(nhome, "replay", "journal")
    assert ok["equal"] and ok["state_checkpoint"]["match"] is True
    assert ok["state_checkpoint"]["checked"][0]["digest"] == ok["replay"]["digest"]
    body = states[0].body
    key = nhome.load_key("processor.journal")
    # one signed with the first digest algorithm (bare hex, before an upgrade) is listed, never compared
    older = StateCheckpoint(processor="journal", positions=dict(body.positions), digest="0" * 64)
    with nhome.open_log() as lg:
        lg.append(nhome.topic_for("checkpoints"), [(b"processor.journal", signed_record(key, [older], T0 + 10**6))])
    upgraded = invoke(nhome, "replay", "journal")
    assert upgraded["equal"] and upgraded["state_checkpoint"]["match"] is True
    assert [c["digest"] for c in upgraded["state_checkpoint"]["other_algorithm"]] == ["0" * 64]
    # a forged state checkpoint (the journal's key, same positions, another digest of the same algorithm) is caught
    forged = StateCheckpoint(processor="journal", positions=dict(body.positions), digest=f"{DIGEST_ALGORITHM}:{'0' * 64}")
    with nhome.open_log() as lg:
        lg.append(nhome.topic_for("checkpoints"), [(b"processor.journal", signed_record(key, [forged], T0 + 10**6))])
    bad = invoke(nhome, "replay", "journal", code=1)
    assert not bad["equal"] and bad["state_checkpoint"]["match"] is False
    assert bad["replay"]["digest"] == bad["live"]["digest"]  # the state is fine; the signed claim is not
