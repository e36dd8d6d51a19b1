"""Proof files, on both log backends: `prove` / `verify-proof` round trips for the first, last and
middle events of each partition, against the latest checkpoint and against a later one after more
events arrived; files proving many events at once; consistency proofs between checkpoints; and every listed
mutation of a proof file (event bytes, batch signature, path element, leaf index ±1, checkpoint, registrations,
wrong operator key, truncated file — and every byte of every hash, signature and event) fails with a typed error
naming the part. Files of the earlier formats (v1, v2) still verify.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_notary import EVERY, invoke, nhome, notary_checkpoints, run_notary  # noqa: F401  (nhome: fixture)

from ledger.errors import RejectCode, RejectError
from ledger.integrity.keys import SigningKey
from ledger.integrity.proofs import load_proof, verify_proof, verify_proofs
from ledger.sdk.home import Home
from ledger.testing.homes import fill
from processors.services.proofs import notary_leaves, prove_consistency, prove_event, prove_events
from processors.testing.proofs import proof_as_v1, proof_as_v2


def _leaf_ids(h: Home) -> dict[str, list[str]]:
    """Event ids by topic, in leaf order."""
    with notary_leaves(h) as q:
        rows = q("SELECT topic, event_id FROM merkle_leaves ORDER BY topic, log_partition, leaf_index")
    out: dict[str, list[str]] = {}
    for topic, eid in rows:
        out.setdefault(topic, []).append(eid)
    return out


def test_prove_and_verify_round_trip(nhome: Home, tmp_path: Path) -> None:
    ids = _leaf_ids(nhome)
    events = ids[nhome.topic]
    picks = [events[0], events[EVERY - 1], events[len(events) // 2], events[-1], ids[nhome.control_topic][0]]
    op_key = nhome.anchors()["operator"].hex()
    for eid in picks:
        f = tmp_path / f"{eid}.json"
        made = invoke(nhome, "prove", eid, "--out", str(f))
        assert made["proofs"][0]["event_id"] == eid and made["file"] == str(f) and made["bytes"] == f.stat().st_size
        # offline: nothing but the file and the operator's public key
        checked = invoke(nhome, "verify-proof", str(f), "--operator-key", op_key)
        assert checked["ok"] and checked["event_id"] == eid and checked["checkpoint_signer"] == "processor.notary"
        keys = checked["keys"]
        assert {v["role"] for v in keys.values()} == {"agent", "processor"} or eid in ids[nhome.control_topic]
    first = json.loads((tmp_path / f"{events[0]}.json").read_text())
    last = json.loads((tmp_path / f"{events[-1]}.json").read_text())
    first_size = verify_proof(first, nhome.anchors()).tree_size
    assert first["events"][0]["leaf_index"] == 0
    assert last["events"][0]["leaf_index"] == verify_proof(last, nhome.anchors()).tree_size - 1 == len(events) - 1
    # more events arrive, the notary checkpoints again: a new proof uses the later checkpoint, the old holds
    fill(nhome, tasks=3, batch_size=4, seed=11, run="later")
    run_notary(nhome)
    invoke(nhome, "checkpoint")
    with nhome.open_log() as lg:
        later = prove_event(nhome, lg, events[0])
        cps = sorted((e for e in notary_checkpoints(nhome, lg) if e.body.topic == nhome.topic),
                     key=lambda e: e.body.tree_size)
        pinned = prove_event(nhome, lg, events[0], checkpoint_id=cps[0].event_id)
    assert verify_proof(later, nhome.anchors()).tree_size > first_size
    assert later["checkpoints"][0]["event_id"] == cps[-1].event_id
    assert verify_proof(pinned, nhome.anchors()).tree_size == cps[0].body.tree_size
    for doc in (later, pinned, first):
        assert verify_proof(doc, nhome.anchors()).event_id == events[0]
    # a checkpoint that does not cover the event is refused with a hint
    with nhome.open_log() as lg, pytest.raises(Exception, match="no signed checkpoint covers"):
        prove_event(nhome, lg, events[-1], checkpoint_id=cps[0].event_id)


def test_consistency_proofs(nhome: Home, tmp_path: Path) -> None:
    with nhome.open_log() as lg:
        cps = sorted((e for e in notary_checkpoints(nhome, lg) if e.body.topic == nhome.topic),
                     key=lambda e: e.body.tree_size)
    assert len(cps) >= 3
    for old, new in [(cps[0], cps[-1]), (cps[0], cps[1]), (cps[1], cps[1])]:
        f = tmp_path / "c.json"
        made = invoke(nhome, "prove", "--consistency", old.event_id, new.event_id, "--out", str(f))
        assert made["old_tree_size"] == old.body.tree_size and made["tree_size"] == new.body.tree_size
        checked = invoke(nhome, "verify-proof", str(f))
        assert checked["ok"] and checked["kind"] == "consistency"
    with nhome.open_log() as lg:
        doc = prove_consistency(nhome, lg, cps[0].event_id, cps[-1].event_id)
        with pytest.raises(Exception, match="later checkpoint of the same partition"):
            prove_consistency(nhome, lg, cps[-1].event_id, cps[0].event_id)
    # swapping old and new in the file, or a path element flipped, fails
    swapped = {**doc, "old": doc["new"], "new": doc["old"]}
    with pytest.raises(RejectError):
        verify_proof(swapped, nhome.anchors())
    bad = copy.deepcopy(doc)
    bad["path"] = _flip(bad["path"], 0)
    with pytest.raises(RejectError) as e:
        verify_proof(bad, nhome.anchors())
    assert e.value.code is RejectCode.CHECKPOINT_MISMATCH
    # the same proof in format v2 still verifies, and fails the same way
    v2 = proof_as_v2(doc)
    assert verify_proof(v2, nhome.anchors()).old_tree_size == cps[0].body.tree_size
    v2["path"][0] = _flip(v2["path"][0])
    with pytest.raises(RejectError) as e:
        verify_proof(v2, nhome.anchors())
    assert e.value.code is RejectCode.CHECKPOINT_MISMATCH


def test_one_file_proves_many_events_sharing_its_checkpoints_and_registrations(nhome: Home, tmp_path: Path) -> None:
    """`prove ID ID ... --ids FILE` writes one file: each event's entry, and the checkpoint and registrations once.
    Every event verifies; the file is far smaller than the single-event files together; a damaged entry fails
    naming its index; `verify_proof` (one thing) refuses a file of many, `verify_proofs` reports each."""
    ids = _leaf_ids(nhome)
    events = ids[nhome.topic]
    picks = events[:: max(1, len(events) // 40)]
    listed = tmp_path / "ids.txt"
    listed.write_text("# a run's events\n" + "\n".join(picks[10:]) + "\n\n")
    f = tmp_path / "many.json"
    made = invoke(nhome, "prove", *picks[:10], "--ids", str(listed), "--out", str(f))
    assert [p["event_id"] for p in made["proofs"]] == picks
    doc = json.loads(f.read_text())
    assert len(doc["events"]) == len(picks) and len(doc["checkpoints"]) == 1
    checked = invoke(nhome, "verify-proof", str(f), "--operator-key", nhome.anchors()["operator"].hex())
    assert checked["ok"] and [p["event_id"] for p in checked["proofs"]] == picks
    with nhome.open_log() as lg:
        singles = [prove_event(nhome, lg, e) for e in picks[:5]]
        both = prove_events(nhome, lg, [events[0], ids[nhome.control_topic][0]])  # two partitions' checkpoints
    assert len(both["checkpoints"]) == 2
    assert [r.event_id for r in verify_proofs(both, nhome.anchors())] == [events[0], ids[nhome.control_topic][0]]
    single = statistics.mean(len(json.dumps(d)) for d in singles)
    assert f.stat().st_size < 0.6 * single * len(picks)
    with pytest.raises(RejectError) as e:
        verify_proof(doc, nhome.anchors())
    assert e.value.code is RejectCode.BAD_SCHEMA and e.value.evidence["part"] == "events"
    bad = copy.deepcopy(doc)
    bad["events"][7]["signature"] = _flip(bad["events"][7]["signature"], -1)
    with pytest.raises(RejectError) as e:
        verify_proofs(bad, nhome.anchors())
    assert e.value.code is RejectCode.BAD_SIGNATURE and e.value.evidence["part"] == "events[7]"
    bad = copy.deepcopy(doc)
    bad["events"][3]["checkpoint"] = 1
    with pytest.raises(RejectError) as e:
        verify_proofs(bad, nhome.anchors())
    assert e.value.evidence["part"] == "events[3].checkpoint"
    with nhome.open_log() as lg, pytest.raises(Exception, match="not among the events the notary has accepted"):
        prove_events(nhome, lg, [events[0], "0" * 32])


def _flip(text: str, at: int | None = None) -> str:
    """Flip one bit of the byte at ``at`` (default: the middle) of a base64 string (proof v2 byte strings)."""
    b = bytearray(base64.b64decode(text))
    i = len(b) // 2 if at is None else at
    b[i] ^= 0x01
    return base64.b64encode(bytes(b)).decode()


def _set(path: str, fn: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        d: Any = doc
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        if isinstance(d, list):
            d[int(leaf)] = fn(d[int(leaf)])
        else:
            d[leaf] = fn(d[leaf])
    return apply


def _drop_hash(text: str) -> str:
    """A v3 path (hashes back to back) without its last hash."""
    return base64.b64encode(base64.b64decode(text)[:-32]).decode()


ANY = set(RejectCode)  # a flipped byte inside an event may break its schema, its id, its path or its signature
MISMATCH = {RejectCode.CHECKPOINT_MISMATCH}
SIGNED = {RejectCode.BAD_SIGNATURE}  # a v3 batch root is never written: a wrong path gives a root the signature refuses
MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], set[RejectCode]]] = {
    "event bytes": (_set("events.0.event", _flip), ANY),
    "event index in its batch": (_set("events.0.index", lambda v: v ^ 1), MISMATCH | SIGNED),
    "event count of its batch": (_set("events.0.count", lambda v: v + 1), MISMATCH | SIGNED),
    "batch path element": (_set("events.0.batch_path", _flip), SIGNED),
    "batch path element dropped": (_set("events.0.batch_path", _drop_hash), MISMATCH | SIGNED),
    "batch path not whole hashes": (_set("events.0.batch_path", lambda v: base64.b64encode(
        base64.b64decode(v)[:-1]).decode()), {RejectCode.BAD_SCHEMA}),
    "batch signature": (_set("events.0.signature", lambda h: _flip(h, -1)), SIGNED),
    "batch key id": (_set("events.0.key_id", lambda v: v[:-1] + ("1" if v.endswith("0") else "0")),
                     {RejectCode.UNKNOWN_KEY}),
    "path element": (_set("events.0.path", lambda v: _flip(v, 0)), MISMATCH),
    "path element dropped": (_set("events.0.path", _drop_hash), MISMATCH),
    "leaf index +1": (_set("events.0.leaf_index", lambda v: v + 1), MISMATCH),
    "leaf index -1": (_set("events.0.leaf_index", lambda v: v - 1), MISMATCH),
    "leaf index past the tree": (_set("events.0.leaf_index", lambda v: 10**9), MISMATCH),
    "event id": (_set("events.0.event_id", lambda v: "0" * 32), MISMATCH),
    "event offset past the checkpoint": (_set("events.0.offset", lambda v: 10**12), MISMATCH),
    "checkpoint index": (_set("events.0.checkpoint", lambda v: v + 1), {RejectCode.BAD_SCHEMA}),
    "checkpoint index as text": (_set("events.0.checkpoint", str), {RejectCode.BAD_SCHEMA}),
    "checkpoints dropped": (lambda d: d["checkpoints"].clear(), {RejectCode.BAD_SCHEMA}),
    "events dropped": (lambda d: d["events"].clear(), {RejectCode.BAD_SCHEMA}),
    "checkpoint event": (_set("checkpoints.0.event", _flip), ANY),
    "checkpoint root in its event": (_set("checkpoints.0.event", lambda h: _flip(h, -40)), ANY),
    "checkpoint batch path one hash longer": (_set("checkpoints.0.batch_path", lambda v: base64.b64encode(
        base64.b64decode(v) + bytes(32)).decode()), MISMATCH | SIGNED),
    "checkpoint signature": (_set("checkpoints.0.signature", lambda h: _flip(h, -1)), SIGNED),
    "checkpoint event id": (_set("checkpoints.0.event_id", lambda v: "0" * 32), MISMATCH),
    "registrations dropped": (lambda d: d["registrations"].clear(), {RejectCode.UNKNOWN_KEY}),
    "registration event": (_set("registrations.0.event", _flip), ANY),
    "registration signature": (_set("registrations.0.signature", lambda h: _flip(h, -1)), SIGNED),
    "version": (_set("version", lambda v: v + 1), {RejectCode.BAD_SCHEMA}),
    "path not base64": (_set("events.0.path", lambda v: "!" + v[1:]), {RejectCode.BAD_SCHEMA}),
}


@pytest.fixture
def proof(nhome: Home) -> tuple[Home, dict[str, Any]]:
    events = _leaf_ids(nhome)[nhome.topic]
    with nhome.open_log() as lg:
        return nhome, prove_event(nhome, lg, events[len(events) // 3])


def test_every_mutation_fails(proof: tuple[Home, dict[str, Any]], tmp_path: Path) -> None:
    h, doc = proof
    leaf = doc["events"][0]["leaf_index"]
    assert leaf > 0 and leaf + 1 < verify_proof(doc, h.anchors()).tree_size
    for name, (mutate, codes) in MUTATIONS.items():
        bad = copy.deepcopy(doc)
        mutate(bad)
        assert bad != doc, name
        with pytest.raises(RejectError) as e:
            verify_proof(bad, h.anchors())
        assert e.value.code in codes, (name, e.value)
        assert "part" in e.value.evidence or e.value.code is RejectCode.CHECKPOINT_MISMATCH, (name, e.value)
    # every byte of every hash, signature and event in the file (the checked parts are cached per process:
    # a changed byte is never served from the cache)
    def byte_strings(d: Any, at: str = "") -> Iterator[str]:
        if isinstance(d, dict):
            for k, v in d.items():
                if k in ("event", "signature", "path", "batch_path") and isinstance(v, str) and v:
                    yield f"{at}{k}"
                elif isinstance(v, (dict, list)):
                    yield from byte_strings(v, f"{at}{k}.")
        elif isinstance(d, list):
            for i, v in enumerate(d):
                yield from byte_strings(v, f"{at}{i}.")
    fields = list(byte_strings(doc))
    assert {"events.0.event", "events.0.signature", "events.0.path", "events.0.batch_path", "checkpoints.0.signature",
            "registrations.0.event"} <= set(fields)
    flips = 0
    for where in fields:
        *parents, leaf = where.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        size = len(base64.b64decode(node[int(leaf)] if isinstance(node, list) else node[leaf]))
        for i in range(size):
            bad = copy.deepcopy(doc)
            _set(where, lambda v, i=i: _flip(v, i))(bad)
            with pytest.raises(RejectError):
                verify_proof(bad, h.anchors())
            flips += 1
    assert flips > 1_000
    # a wrong operator key: nothing registered by it
    stranger = SigningKey.generate("operator").public.raw
    with pytest.raises(RejectError) as e:
        verify_proof(doc, {"operator": stranger})
    assert e.value.code is RejectCode.UNKNOWN_KEY
    # a truncated file
    text = json.dumps(doc)
    with pytest.raises(RejectError) as e:
        verify_proof(load_proof(text[: len(text) // 2]), h.anchors())
    assert e.value.code is RejectCode.TRUNCATED
    # the CLI: exit 1 and the failed check, for a mutated file and for the wrong key
    f = tmp_path / "bad.json"
    bad = copy.deepcopy(doc)
    MUTATIONS["path element"][0](bad)
    f.write_text(json.dumps(bad))
    from typer.testing import CliRunner

    from processors.cli import build_app
    app = build_app()

    r = CliRunner().invoke(app, ["verify-proof", str(f), "--home", str(h.path)])
    assert r.exit_code == 1 and "checkpoint_mismatch" in r.output and "path" in r.output
    f.write_text(json.dumps(doc))
    r = CliRunner().invoke(app, ["verify-proof", str(f), "--operator-key", stranger.hex()])
    assert r.exit_code == 1 and "unknown_key" in r.output


# ---------------------------------------------------------------- old envelopes, old proof files, size


def test_events_of_v1_envelope_batches_still_prove(tmp_path: Path) -> None:
    """A log holding records written before the v2 envelope (signature over every event hash): the notary
    indexes them like any other, and their proofs embed the whole record and verify."""
    from ledger.testing.homes import T0, build_record, make_home
    from ledger.wire import codec
    from ledger.wire.events import Action

    h = make_home(tmp_path / "home", agents=("alice",))
    alice = h.load_key("alice")
    record, _ = build_record(alice, [Action(f"op-{i}") for i in range(5)], t=T0 + 10)
    assert codec.decode_batch(record).version == codec.BATCH_V1
    with h.open_log() as lg:
        lg.append(h.topic, [(b"alice", record)])
    fill(h, tasks=2, batch_size=4)  # v2 records after the v1 one
    run_notary(h)
    invoke(h, "checkpoint")
    ids = _leaf_ids(h)[h.topic]
    with h.open_log() as lg:
        old = prove_event(h, lg, ids[2])  # inside the v1 record
        new = prove_event(h, lg, ids[-1])
    entry = old["events"][0]
    assert set(entry) >= {"record", "index"} and "signature" not in entry
    assert entry["index"] == 2 and base64.b64decode(entry["record"]) == record
    assert "record" not in new["events"][0] and new["events"][0]["count"] >= 1
    for doc, eid in ((old, ids[2]), (new, ids[-1]), (proof_as_v2(old), ids[2])):
        assert verify_proof(doc, h.anchors()).event_id == eid
    bad = copy.deepcopy(old)
    bad["events"][0]["record"] = _flip(entry["record"], -1)  # the v1 batch signature
    with pytest.raises(RejectError) as e:
        verify_proof(bad, h.anchors())
    assert e.value.code is RejectCode.BAD_SIGNATURE and e.value.evidence["part"] == "events[0]"


def test_version_1_and_2_proof_files_still_verify(proof: tuple[Home, dict[str, Any]]) -> None:
    h, doc = proof
    v2 = proof_as_v2(doc)
    v1 = proof_as_v1(h, v2)
    leaf = doc["events"][0]["leaf_index"]
    assert verify_proof(v2, h.anchors()).leaf_index == verify_proof(v1, h.anchors()).leaf_index == leaf
    for key, mutate in (("root_hash", lambda v: "00" + v[2:]), ("tree_size", lambda v: v + 1)):
        bad = copy.deepcopy(v1)
        bad[key] = mutate(bad[key])
        with pytest.raises(RejectError) as e:
            verify_proof(bad, h.anchors())
        assert e.value.code is RejectCode.CHECKPOINT_MISMATCH and e.value.evidence["part"] == key
    for where, codes in (("event.root", MISMATCH), ("event.path.0", MISMATCH), ("path.0", MISMATCH),
                         ("checkpoint.signature", SIGNED), ("registrations.0.event", ANY)):
        bad = copy.deepcopy(v2)
        _set(where, _flip)(bad)
        with pytest.raises(RejectError) as e:
            verify_proof(bad, h.anchors())
        assert e.value.code in codes, (where, e.value)
    assert len(json.dumps(v2)) < len(json.dumps(v1)) / 2  # v2 carries one event, not its batch
    assert len(json.dumps(doc)) < len(json.dumps(v2))  # v3 writes no roots, signers or per-hash strings


def test_proof_size_at_a_million_leaves_and_100_event_batches(proof: tuple[Home, dict[str, Any]]) -> None:
    """A real proof's event entry stretched to a 100-event batch (7 hashes in its batch path) and a tree of
    2**20 + 1 leaves (21 hashes, the real path of such a tree) is at most 2 KB of JSON: the size of each further
    event in a file of many. The checkpoint and the registrations, once per file, are printed next to it."""
    from ledger.integrity.merkle import MerkleTree

    _, doc = proof
    n = (1 << 20) + 1
    tree = MerkleTree.from_leaf_hashes(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n))
    entry = copy.deepcopy(doc["events"][0])
    entry["path"] = base64.b64encode(b"".join(tree.inclusion_proof(n // 3, n))).decode()
    entry["batch_path"] = base64.b64encode(bytes(32 * 7)).decode()  # ceil(log2 100)
    entry["count"], entry["leaf_index"], entry["index"], entry["offset"] = 100, n // 3, 99, 10 * n
    assert len(base64.b64decode(entry["path"])) == 21 * 32
    event_bytes = len(base64.b64decode(entry["event"]))
    assert 150 <= event_bytes <= 400  # a realistic event, as the demo workload writes
    size = len(json.dumps(entry, separators=(",", ":")))
    shared = {k: len(json.dumps(doc[k], separators=(",", ":"))) for k in ("checkpoints", "registrations")}
    print(f"\nproof entry at 2**20+1 leaves, 100-event batch, {event_bytes} B event: {size} B; once per file: "
          f"checkpoint {shared['checkpoints']} B, registrations {shared['registrations']} B "
          f"({len(doc['registrations'])} items)")
    # base64 of the event, the two paths and the signature, plus ~250 B of names, ids and numbers
    assert size <= 4 * (event_bytes + 32 * (21 + 7) + 64) // 3 + 250
    assert size <= 2048


def test_prove_reads_the_path_from_the_notarys_index() -> None:
    """merkle_leaves + merkle_nodes (as the notary writes them) answer any inclusion path and root of any past
    size, reading O(2**NODE_STRIDE * log n) rows; a gap in the index is reported (None), never a wrong path."""
    import duckdb
    import pyarrow as pa

    from ledger.integrity.merkle import CompactTree, MerkleTree
    from processors.notary import LEAVES, NODES, Notary
    from processors.services.proofs import _indexed_tree

    n = 70_000  # past 2**16: stored heights 8 and 16
    con = duckdb.connect()
    for view in (LEAVES, NODES):
        con.execute(view.ddl())
    tree = MerkleTree()
    compact = CompactTree()
    nodes: dict[str, list[Any]] = {c.name: [] for c in NODES.columns if c.name != "_batch"}
    leaves = []
    for i in range(n):
        leaf = hashlib.sha256(i.to_bytes(4, "big")).digest()
        tree.append(leaf)
        leaves.append(("t", 0, i, leaf, f"e{i}", i, i, 0))
        Notary._stored_nodes(nodes, ("t", 0), compact.append(leaf))
    leaf_table = pa.table(dict(zip([c.name for c in LEAVES.columns], map(list, zip(*leaves, strict=True)),
                                   strict=True)))
    node_table = pa.table({**nodes, "_batch": [0] * len(nodes["topic"])})
    con.register("leaf_table", leaf_table)  # bulk (executemany is ~1k rows/s)
    con.register("node_table", node_table)
    con.execute("INSERT INTO merkle_leaves SELECT * FROM leaf_table")
    con.execute("INSERT INTO merkle_nodes SELECT * FROM node_table")
    assert con.execute("SELECT count(*), max(height) FROM merkle_nodes").fetchone() == (n // 256 + n // 65536, 16)

    reads: list[int] = []

    def q(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        rows = con.execute(sql, list(params)).fetchall()
        reads.append(len(rows))
        return rows

    for size, index in [(n, 0), (n, n - 1), (n, 12_345), (65_536, 65_535), (257, 3), (1, 0), (69_999, 40_000)]:
        reads.clear()
        indexed = _indexed_tree(q, "t", 0, size, index)
        assert indexed is not None
        assert indexed.root() == tree.root(size)
        assert indexed.inclusion_proof(index, size) == tree.inclusion_proof(index, size), (size, index)
        assert sum(reads) <= 2 * 256 * 4, (size, index, reads)  # never the partition
    # the paths of many leaves at once (a proof file of many events): one read per stored height, the same paths
    many = [0, 1, 255, 256, 12_345, 40_000, 65_535, 65_536, n - 1, *range(100, 6_100, 150)]
    reads.clear()
    indexed = _indexed_tree(q, "t", 0, n, many)
    assert indexed is not None and len(reads) <= 3, reads
    for i in many:
        assert indexed.inclusion_proof(i, n) == tree.inclusion_proof(i, n), i
    # the notary restarts from its index: each tree's frontier (one subtree per set bit of its size), reading
    # O(2**NODE_STRIDE * log n) rows past the one aggregate over the leaves, never the leaf hashes of the partition
    reads.clear()
    restored = Notary()
    restored.restore(q)
    assert restored.trees[("t", 0)].size == n and restored.trees[("t", 0)].root() == tree.root()
    assert sum(reads) <= 1 + 2 * 256 * 4, reads
    more = hashlib.sha256(b"one more").digest()
    tree.append(more)
    restored.trees[("t", 0)].append(more)
    assert restored.trees[("t", 0)].root() == tree.root()  # and goes on appending
    con.execute("DELETE FROM merkle_nodes WHERE height = 16")  # a notary file from before the index
    assert _indexed_tree(q, "t", 0, n, 5) is None
    old = Notary()
    old.restore(q)  # from every leaf, once
    assert old.trees[("t", 0)].root() == tree.root(n)


def test_prove_finds_leaves_through_the_event_id_index_and_never_trusts_it(nhome: Home) -> None:
    """`prove` keeps an event-id index of the notary's leaves (<home>/state/leaf-index.sqlite), caught up on each
    use; an answer that does not hold on the log (a wrong row, as two ids sharing 64 bits would give) falls back to
    the view, and a home whose state directory cannot hold the index still proves."""
    import sqlite3

    from processors.services.leaf_index import LEAF_INDEX_FILE

    events = _leaf_ids(nhome)[nhome.topic]
    path = nhome.state_dir / LEAF_INDEX_FILE
    path.unlink(missing_ok=True)
    with nhome.open_log() as lg:
        doc = prove_event(nhome, lg, events[5])
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM leaf_ids").fetchone()[0] >= len(events)
    marks = dict(((t, p), n) for t, p, n in db.execute("SELECT * FROM marks"))
    assert marks[(nhome.topic, 0)] == len(events)
    # more events: `checkpoint` catches the index up with the notary; a prove would too, before it looks
    fill(nhome, tasks=2, batch_size=4, seed=5, run="more")
    run_notary(nhome)
    invoke(nhome, "checkpoint")
    newest = _leaf_ids(nhome)[nhome.topic][-1]
    with sqlite3.connect(path) as fresh:
        (mark,) = fresh.execute("SELECT next_leaf FROM marks WHERE topic = ? AND log_partition = 0",
                                (nhome.topic,)).fetchone()
    assert mark == len(_leaf_ids(nhome)[nhome.topic])
    with nhome.open_log() as lg:
        assert verify_proof(prove_event(nhome, lg, newest), nhome.anchors()).event_id == newest
    # a wrong row: event 5's entry points at event 6's leaf and record
    prefix = int(events[5][:16], 16)
    prefix -= (1 << 64) if prefix >= 1 << 63 else 0
    other = int(events[6][:16], 16)
    other -= (1 << 64) if other >= 1 << 63 else 0
    (leaf, off) = db.execute("SELECT leaf_index, log_offset FROM leaf_ids WHERE prefix = ?", (other,)).fetchone()
    db.execute("UPDATE leaf_ids SET leaf_index = ?, log_offset = ? WHERE prefix = ?", (leaf, off + 1, prefix))
    db.commit()
    db.close()
    with nhome.open_log() as lg:
        again = prove_event(nhome, lg, events[5])
    assert again["events"][0]["leaf_index"] == doc["events"][0]["leaf_index"] == 5
    assert verify_proof(again, nhome.anchors()).event_id == events[5]
    # a wrong leaf inside the right record: the proof built on it does not verify, so the view decides
    db = sqlite3.connect(path)
    db.execute("UPDATE leaf_ids SET leaf_index = ? WHERE prefix = ?", (leaf, prefix))
    db.commit()
    db.close()
    with nhome.open_log() as lg:
        assert prove_event(nhome, lg, events[5])["events"][0]["leaf_index"] == 5
    # no index at all: the state directory holds a directory where the file should be
    path.unlink()
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.mkdir()
    with nhome.open_log() as lg:
        assert verify_proof(prove_event(nhome, lg, events[7]), nhome.anchors()).event_id == events[7]
