"""Merkle proofs for users and auditors, and the check of a replay against signed StateCheckpoints.

``prove_event`` and ``prove_consistency`` need no running system: they read the notary's index (its
DuckDB file read-only when the notary is not running, else its published Parquet views), the signed
checkpoints and the event's record from the log, build a self-contained proof document
(ledger/integrity/proofs.py) and check it before handing it out; ``write_proof`` also writes it to a
file.

``prove_event`` costs O(log n): it finds the event's leaf by id, reads only the stored leaves and
subtree roots its path needs (``merkle_leaves`` and ``merkle_nodes``, see processors/notary.py), takes
the newest notary checkpoint covering the leaf from the tail of the checkpoints topic, and lets the final
``verify_proof`` check every signature (checkpoint and registration signatures are cached per process).
A notary file from before ``merkle_nodes`` lacks the index of its older leaves: those proofs fall back to
rebuilding the partition's tree from all its leaves.

``check_proof_file`` needs only the file and the operator's public keys. ``checkpoint_now`` runs
the notary until it has caught up and signs a checkpoint of every partition's current tree (the notary
must not be running: it holds its state file; while it runs it checkpoints every
``CHECKPOINT_EVERY_EVENTS`` events by itself).

Also here: ``check_state_checkpoints``, which ``replay`` uses to compare a rebuilt digest with the
StateCheckpoints the processor signed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.errors import LedgerError, RejectCode, RejectError, StoreError, ValidationError
from ledger.files import read_bounded
from ledger.integrity.checkpoints import (
    SignedEntry,
    StateCheck,
    check_state,
    control_keyring,
    read_checkpoints,
    registration_records,
)
from ledger.integrity.merkle import IndexedTree, MerkleTree, fold_complete
from ledger.integrity.proofs import (
    CheckpointRef,
    ProofReport,
    build_consistency_proof,
    build_inclusion_proof,
    load_proof,
    verify_proof,
)
from ledger.log import Log
from ledger.sdk.home import Home
from ledger.wire import codec
from ledger.wire.events import Checkpoint
from processors import views
from processors.host.service import open_runner, signer_id, state_file
from processors.notary import CHECKPOINT_EVERY_EVENTS, NODE_STRIDE, NOTARY_SIGNER, Notary
from processors.runtime.publish import Publisher
from processors.runtime.store import Store

# ``query(sql, params) -> rows`` over the notary's merkle_leaves (its Store, or its published Parquet)
LeafQuery = Callable[..., list[tuple[Any, ...]]]
ProofDocument = dict[str, Any]  # the JSON document of ledger/integrity/proofs.py (a file format, not a result)
CHECKPOINT_TAIL_RECORDS = 200  # records of the checkpoints topic read per step while looking back for a checkpoint


@dataclass(frozen=True)
class CheckpointRow:
    """The current signed tree head of one partition after ``checkpoint_now`` (``new``: signed just now)."""

    topic: str
    partition: int
    tree_size: int
    root_hash: str
    next_offset: int
    checkpoint_event_id: str
    new: bool


@dataclass(frozen=True)
class WrittenProof:
    """A proof document written to ``file`` and the report of checking it."""

    file: Path
    document: ProofDocument
    report: ProofReport


@contextlib.contextmanager
def notary_leaves(h: Home) -> Iterator[LeafQuery]:
    """``query(sql, params)`` over the notary's ``merkle_leaves``: its state file when it is not running,
    else the Parquet files it published."""
    path = state_file(h, Notary.name)
    store = None
    if path.exists():
        try:
            store = Store(path, Notary.views, read_only=True)
        except StoreError:
            store = None  # the notary is running: use what it published
    if store is not None:
        try:
            yield store.query
        finally:
            store.close()
        return
    parts = h.view_dir(Notary.name, "merkle_leaves")
    if not any(parts.glob("*.parquet")):
        raise ValidationError("notary", str(parts), "has no Merkle leaves yet",
                              hint="run the notary first: tokenledger checkpoint")
    with views.connect() as con:
        views.create_parquet_view(con, "merkle_leaves", parts, union_by_name=False)

        def query(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
            return list(views.run(con, sql, list(params)).rows)

        yield query


def _ref(e: SignedEntry) -> CheckpointRef:
    assert isinstance(e.body, Checkpoint)
    return CheckpointRef(event_id=e.event_id, topic=e.body.topic, partition=e.body.partition, offset=e.offset,
                         index=e.index, record=e.record)


def _notary_checkpoints(h: Home, lg: Log) -> list[SignedEntry]:
    ring = control_keyring(lg, h.control_topic, h.anchors())
    return [e for e in read_checkpoints(lg, h.topic_for("checkpoints"), ring)
            if isinstance(e.body, Checkpoint) and e.signer_id == NOTARY_SIGNER]


def _tree(q: LeafQuery, topic: str, partition: int, size: int, cp: SignedEntry) -> MerkleTree:
    """The notary's tree of a partition at ``size`` leaves, checked against the signed root."""
    hashes = [bytes(r[0]) for r in q("SELECT leaf_hash FROM merkle_leaves WHERE topic = ? AND log_partition = ? "
                                      "AND leaf_index < ? ORDER BY leaf_index", [topic, partition, size])]
    if len(hashes) != size:
        raise ValidationError("checkpoint", cp.event_id, f"the notary's view holds {len(hashes)} of its {size} leaves",
                              hint="let the notary publish its views (it does so every second), then retry")
    tree = MerkleTree.from_leaf_hashes(hashes)
    assert isinstance(cp.body, Checkpoint)
    if tree.root() != cp.body.root_hash:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the notary's leaves do not give the signed root",
                          checkpoint_event_id=cp.event_id, topic=topic, partition=partition, tree_size=size,
                          expected=cp.body.root_hash.hex(), actual=tree.root().hex())
    return tree


def _indexed_tree(q: LeafQuery, topic: str, partition: int, size: int, index: int) -> MerkleTree | None:
    """The part of a partition's tree at ``size`` leaves that the inclusion path of ``index`` and the root
    read, from the notary's stored leaves and subtree roots; None when the index lacks some of them."""
    needed = IndexedTree.needed(size, inclusion=index)
    spans: dict[int, list[tuple[int, int, int, int]]] = {}  # stored height -> (height, position, first, last)
    for height, position in needed:
        base = height - height % NODE_STRIDE
        first = position << (height - base)
        spans.setdefault(base, []).append((height, position, first, first + (1 << (height - base)) - 1))
    roots: dict[tuple[int, int], bytes] = {}
    for base, wanted in spans.items():
        ranges = sorted({(a, b) for _, _, a, b in wanted})
        where = " OR ".join(["x BETWEEN ? AND ?"] * len(ranges))
        flat = [v for r in ranges for v in r]
        if base == 0:
            # only "? AND ?" placeholders are joined into the text; every value is a parameter
            sql = ("SELECT leaf_index, leaf_hash FROM merkle_leaves WHERE topic = ? AND log_partition = ? AND ("  # noqa: S608
                   + where.replace("x ", "leaf_index ") + ")")
            rows = q(sql, [topic, partition, *flat])
        else:
            sql = ("SELECT position, node_hash FROM merkle_nodes WHERE topic = ? AND log_partition = ? "  # noqa: S608
                   "AND height = ? AND (" + where.replace("x ", "position ") + ")")
            rows = q(sql, [topic, partition, base, *flat])
        got = {int(p): bytes(h) for p, h in rows}
        for height, position, first, last in wanted:
            hashes = [got.get(i) for i in range(first, last + 1)]
            if any(h is None for h in hashes):
                return None
            roots[(height, position)] = fold_complete([h for h in hashes if h is not None])
    return IndexedTree(size, roots)


def _newest_checkpoints(h: Home, lg: Log, topic: str, partition: int, leaf_index: int,
                        checkpoint_id: str | None) -> Iterator[SignedEntry]:
    """Notary checkpoints of (topic, partition) covering ``leaf_index`` (or the one named), newest first, read
    back from the end of the checkpoints topic. Not verified here: the proof built on one is."""
    cp_topic = h.topic_for("checkpoints")
    if cp_topic not in lg.topics():
        return
    for p in range(lg.partitions(cp_topic)):
        end = lg.end_offset(cp_topic, p)
        while end > 0:
            start = max(0, end - CHECKPOINT_TAIL_RECORDS)
            recs = lg.read(cp_topic, p, start, end - start)
            for r in reversed(recs):
                try:
                    batch = codec.decode_batch(r.value)
                    if batch.signer_id != NOTARY_SIGNER:
                        continue
                    decoded = [codec.decode_event(raw) for raw in batch.events]
                except RejectError:
                    continue  # `verify` reports a bad record; it proves nothing here
                for i in reversed(range(len(decoded))):
                    ev = decoded[i].event
                    body = ev.body
                    if (isinstance(body, Checkpoint) and (body.topic, body.partition) == (topic, partition)
                            and body.tree_size > leaf_index and checkpoint_id in (None, ev.event_id)):
                        yield SignedEntry(r.topic, r.partition, r.offset, i, ev.event_id, batch.signer_id,
                                          ev.event_time_us, body, r.value)
            end = start


def prove_event(h: Home, lg: Log, event_id: str, checkpoint_id: str | None = None) -> ProofDocument:
    """The inclusion proof of ``event_id`` in the newest notary checkpoint covering it (or the one named)."""
    with notary_leaves(h) as q:
        rows = q("SELECT topic, log_partition, leaf_index, log_offset FROM merkle_leaves WHERE event_id = ? "
                 "ORDER BY topic, log_partition, leaf_index LIMIT 1", [event_id])
        if not rows:
            raise ValidationError("event_id", event_id, "is not among the events the notary has accepted",
                                  hint="check the id (tokenledger tail), or let the notary catch up: "
                                       "tokenledger checkpoint")
        topic, part, index, offset = rows[0]
        recs = lg.read(topic, part, offset, 1)
        if not recs or recs[0].offset != offset:
            raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the event's record is no longer on the log",
                              event_id=event_id, topic=topic, partition=part, offset=offset)
        registrations: dict[frozenset[str], list[bytes]] = {}
        last: RejectError | None = None
        for cp in _newest_checkpoints(h, lg, topic, part, index, checkpoint_id):
            assert isinstance(cp.body, Checkpoint)
            size = cp.body.tree_size
            tree = _indexed_tree(q, topic, part, size, index) or _tree(q, topic, part, size, cp)
            key_ids = frozenset({codec.decode_batch(recs[0].value).key_id, codec.decode_batch(cp.record).key_id})
            if key_ids not in registrations:
                registrations[key_ids] = registration_records(lg, h.control_topic, set(key_ids))
            doc = build_inclusion_proof(event_id=event_id, topic=topic, partition=part, offset=offset,
                                        record=recs[0].value, leaf_index=index, tree_size=size,
                                        path=tree.inclusion_proof(index, size), checkpoint=_ref(cp),
                                        registrations=registrations[key_ids])
            try:
                verify_proof(doc, h.anchors())  # never hand out a proof that does not verify
            except RejectError as e:
                if not str(e.evidence.get("part", "")).startswith("checkpoint"):
                    raise
                last = e  # a checkpoint record that does not hold (not the notary's): try an older one
                continue
            return doc
    if last is not None:
        raise last
    raise ValidationError("event_id", event_id, "no signed checkpoint covers this event yet"
                          + (f" (or {checkpoint_id} does not)" if checkpoint_id else ""),
                          topic=topic, partition=part, leaf_index=index,
                          hint="publish one now: tokenledger checkpoint")


def prove_consistency(h: Home, lg: Log, old_id: str, new_id: str) -> ProofDocument:
    """The consistency proof between two notary checkpoints of one partition (by event id)."""
    cps = {e.event_id: e for e in _notary_checkpoints(h, lg)}
    for cid in (old_id, new_id):
        if cid not in cps:
            raise ValidationError("checkpoint", cid, "is not a notary checkpoint on the log",
                                  hint="list them: tokenledger query \"SELECT * FROM checkpoints\"")
    old, new = cps[old_id], cps[new_id]
    a, b = old.body, new.body
    assert isinstance(a, Checkpoint) and isinstance(b, Checkpoint)
    if (a.topic, a.partition) != (b.topic, b.partition) or a.tree_size > b.tree_size:
        raise ValidationError("checkpoint", new_id, "must be a later checkpoint of the same partition as OLD",
                              old=f"{a.topic}/{a.partition}@{a.tree_size}",
                              new=f"{b.topic}/{b.partition}@{b.tree_size}")
    with notary_leaves(h) as q:
        tree = _tree(q, b.topic, b.partition, b.tree_size, new)
    if tree.root(a.tree_size) != a.root_hash:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "OLD's signed root is not the tree's root at its size",
                          checkpoint_event_id=old_id, expected=tree.root(a.tree_size).hex(), actual=a.root_hash.hex())
    key_ids = {codec.decode_batch(old.record).key_id, codec.decode_batch(new.record).key_id}
    path = tree.consistency_proof(a.tree_size, b.tree_size) if a.tree_size < b.tree_size else []
    doc = build_consistency_proof(old=_ref(old), new=_ref(new), path=path,
                                  registrations=registration_records(lg, h.control_topic, key_ids))
    verify_proof(doc, h.anchors())
    return doc


def checkpoint_now(h: Home, lg: Log) -> list[CheckpointRow]:
    """Catch the notary up, sign a checkpoint of each partition's current tree (unless one exists at
    that size), publish its views. One row per partition."""
    try:
        runner, store, proc = open_runner(h, Notary.name, lg)
    except StoreError as e:
        raise LedgerError("the notary is running, so it cannot be driven from here", path=e.evidence.get("path"),
                          hint=f"it checkpoints every {CHECKPOINT_EVERY_EVENTS:,} events on its own; for one now, "
                               "stop it and run `tokenledger checkpoint`") from None
    assert isinstance(proc, Notary)
    try:
        runner.run_until_caught_up()
        existing = {(e.body.topic, e.body.partition, e.body.tree_size): e  # type: ignore[union-attr]
                    for e in _notary_checkpoints(h, lg)}
        derived = proc.checkpoint_now(runner.positions, set(existing))
        runner.emit(derived)
        assert runner.key is not None  # open_runner produces, so the notary has its key
        Publisher(store, proc, h.views_dir(Notary.name), key=runner.key).publish(runner.positions, runner.batch_no)
    finally:
        store.close()
    made = {(d.body.topic, d.body.partition, d.body.tree_size) for d in derived}  # type: ignore[attr-defined]
    rows = []
    for entry in _notary_checkpoints(h, lg):
        cp = entry.body
        assert isinstance(cp, Checkpoint)
        tree = proc.trees.get((cp.topic, cp.partition))
        if tree is None or cp.tree_size != tree.size:
            continue  # not the current tree of its partition
        rows.append(CheckpointRow(topic=cp.topic, partition=cp.partition, tree_size=cp.tree_size,
                                  root_hash=cp.root_hash.hex(), next_offset=cp.next_offset,
                                  checkpoint_event_id=entry.event_id,
                                  new=(cp.topic, cp.partition, cp.tree_size) in made))
    uniq = {(r.topic, r.partition): r for r in rows}
    return [uniq[k] for k in sorted(uniq)]


def check_state_checkpoints(h: Home, lg: Log, name: str, positions: dict[str, int], digest: str) -> StateCheck:
    """``replay``'s check: a rebuilt digest at ``positions`` against NAME's signed StateCheckpoints there."""
    ring = control_keyring(lg, h.control_topic, h.anchors())
    entries = read_checkpoints(lg, h.topic_for("checkpoints"), ring)
    return check_state(entries, name, signer_id(name), positions, digest)


def require_one_target(event_id: str | None, consistency: tuple[str, str] | None) -> None:
    """A proof is of one event or of two checkpoints' consistency, never both or neither."""
    if (event_id is None) == (consistency is None):
        raise ValidationError("event_id", event_id, "give either EVENT_ID or --consistency OLD NEW")


def write_proof(h: Home, lg: Log, *, event_id: str | None = None, consistency: tuple[str, str] | None = None,
                checkpoint_id: str | None = None, out: Path | None = None) -> WrittenProof:
    """The inclusion proof of ``event_id`` or, instead, the consistency proof of the two checkpoints in
    ``consistency`` (OLD, NEW), written to ``out`` (default: ``proof-<id>.json`` in the working directory)."""
    require_one_target(event_id, consistency)
    if consistency is not None:
        doc = prove_consistency(h, lg, consistency[0], consistency[1])
        name = f"consistency-{consistency[0][:12]}-{consistency[1][:12]}"
    else:
        assert event_id is not None
        doc = prove_event(h, lg, event_id, checkpoint_id)
        name = event_id
    path = out or Path(f"proof-{name}.json")
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return WrittenProof(file=path, document=doc, report=verify_proof(doc, h.anchors()))


def parse_operator_keys(texts: Sequence[str]) -> dict[str, bytes]:
    """Trusted operator public keys given as 64 hex chars each, named ``operator-key-<i>``."""
    trusted = {}
    for i, k in enumerate(texts):
        try:
            raw = bytes.fromhex(k)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValidationError("operator_key", k, "must be 64 hex chars (a raw Ed25519 public key)")
        trusted[f"operator-key-{i}"] = raw
    return trusted


def read_proof_file(file: Path) -> bytes:
    # bounded (and regular files only): `verify-proof /dev/zero` is refused, not read until memory runs out
    return read_bounded(file, limits.MAX_PROOF_FILE_BYTES, field="file", limit_name="MAX_PROOF_FILE_BYTES")


def check_proof(data: bytes, trusted: dict[str, bytes]) -> ProofReport:
    """Check a proof file's bytes offline against ``trusted`` operator keys (raises the failed check)."""
    return verify_proof(load_proof(data), trusted)
