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

A notary run as N shards (processors/notary.py, Sharding): the index is the union of the shards' (each shard's
state file, or what it published while it runs, without the control rows every shard but shard 0 keeps to itself);
a checkpoint counts from any signer holding the operator's ``notary`` grant — the one notary's or a shard's, each
checked by the proof's own verification, never trusted by its name — and ``checkpoint_now`` drives every shard, each
signing its own partitions (control: shard 0). A checkpoint id may be the signed event's or the one the
``checkpoints`` view records (the one-instance notary's id for the same idempotency key).

Also here: ``check_state_checkpoints``, which ``replay`` uses to compare a rebuilt digest with the
StateCheckpoints the processor signed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
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
    notary_signers,
    read_checkpoints,
    registration_records,
)
from ledger.integrity.merkle import IndexedTree, MerkleTree
from ledger.integrity.proofs import (
    CheckpointRef,
    EventEvidence,
    ProofReport,
    build_consistency_proof,
    build_inclusion_proofs,
    load_proof,
    verify_proof,
    verify_proofs,
)
from ledger.log import Log
from ledger.sdk.home import Home
from ledger.wire import codec
from ledger.wire.events import Checkpoint
from processors import views
from processors.host.service import (
    checkpoint_signer_id,
    open_runner,
    shard_count,
    signer_id,
    state_file,
)
from processors.notary import CHECKPOINT_EVERY_EVENTS, LEAVES, NODES, Notary, checkpoint_event_id, subtree_roots
from processors.runtime.publish import Publisher
from processors.runtime.shards import Shard, all_shards, hidden_rows, shard_signer_suffix
from processors.runtime.store import Store
from processors.services.leaf_index import LEAF_INDEX_FILE, LeafIndex

# ``query(sql, params) -> rows`` over the notary's merkle_leaves (its Store, or its published Parquet)
LeafQuery = Callable[..., list[tuple[Any, ...]]]
ProofDocument = dict[str, Any]  # the JSON document of ledger/integrity/proofs.py (a file format, not a result)
CHECKPOINT_TAIL_RECORDS = 200  # records of the checkpoints topic read per step while looking back for a checkpoint
LEAF_LOOKUP_IDS = 1_000  # event ids looked up in the notary's leaves per query


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
    """A proof document written to ``file`` and the reports of checking it (one per event it proves)."""

    file: Path
    document: ProofDocument
    reports: list[ProofReport]


@contextlib.contextmanager
def notary_leaves(h: Home) -> Iterator[LeafQuery]:
    """``query(sql, params)`` over the notary's ``merkle_leaves``: its state file when it is not running,
    else the Parquet files it published; of a notary run as shards, the union of the shards' (``_shard_leaves``)."""
    n = shard_count(h, Notary.name)
    if n is not None:
        with _shard_leaves(h, all_shards(n)) as q:
            yield q
        return
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


@contextlib.contextmanager
def _shard_leaves(h: Home, shards: list[Shard]) -> Iterator[LeafQuery]:
    """``query(sql, params)`` over ``merkle_leaves`` and ``merkle_nodes`` of a notary run as ``shards``: each shard's
    state file (read-only) without the rows it keeps but does not publish (control's, on every shard but shard 0:
    ``shards.hidden_rows``), or the Parquet files it published while it runs (which hold none of those). Every
    partition's tree is then one shard's, and control's shard 0's, as a single notary's index holds it."""
    with views.connect() as con:
        sources: dict[str, list[str]] = {LEAVES.name: [], NODES.name: []}
        for sh in shards:
            alias = f"notary_shard_{sh.index}"
            attached = views.attach(con, state_file(h, Notary.name, sh), alias)
            hidden = hidden_rows(Notary(), sh, h.control_topic)
            for v in (LEAVES, NODES):
                cols = ", ".join(v.public_columns)
                if attached:
                    where = f" WHERE NOT ({hidden[v.name]})" if v.name in hidden else ""
                    sources[v.name].append(f"SELECT {cols} FROM {alias}.{v.name}{where}")  # noqa: S608 (names, escaped topic)
                    continue
                parts = h.views_dir(Notary.name, sh.label) / v.name
                if not any(parts.glob("*.parquet")):
                    if v is LEAVES:
                        raise ValidationError("notary", str(parts), "has no Merkle leaves yet",
                                              hint="run the notary first: tokenledger checkpoint")
                    continue  # no stored subtree roots: proofs of its partitions fold their leaves instead
                views.create_parquet_view(con, f"{alias}_{v.name}", parts, union_by_name=False)
                sources[v.name].append(f"SELECT {cols} FROM {alias}_{v.name}")  # noqa: S608 (names from code)
        for v in (LEAVES, NODES):
            empty = "SELECT " + ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in v.columns
                                          if not c.name.startswith("_")) + " WHERE false"
            con.execute(f"CREATE VIEW {v.name} AS " + (" UNION ALL ".join(sources[v.name]) or empty))

        def query(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
            return list(views.run(con, sql, list(params)).rows)

        yield query


def _ref(e: SignedEntry) -> CheckpointRef:
    assert isinstance(e.body, Checkpoint)
    return CheckpointRef(event_id=e.event_id, topic=e.body.topic, partition=e.body.partition, offset=e.offset,
                         index=e.index, record=e.record)


def _notary_checkpoints(h: Home, lg: Log) -> list[SignedEntry]:
    """Every Checkpoint on the checkpoints topic whose signer holds the operator's notary grant (``read_checkpoints``
    refuses the others): the one notary's and its shards' alike."""
    ring = control_keyring(lg, h.control_topic, h.anchors())
    return [e for e in read_checkpoints(lg, h.topic_for("checkpoints"), ring) if isinstance(e.body, Checkpoint)]


def _names(e: SignedEntry) -> set[str]:
    """The ids a checkpoint goes by: its signed event's, and the one the notary's ``checkpoints`` view records for
    it (the one-instance notary's id of its idempotency key: processors/notary.py, Sharding)."""
    ev = codec.decode_event(codec.decode_batch(e.record).events[e.index]).event
    return {e.event_id} | ({checkpoint_event_id(ev.idempotency_key)} if ev.idempotency_key is not None else set())


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


def _indexed_tree(q: LeafQuery, topic: str, partition: int, size: int, index: int | Sequence[int]) -> MerkleTree | None:
    """The part of a partition's tree at ``size`` leaves that the inclusion paths of ``index`` (one leaf or several)
    and the root read, from the notary's stored leaves and subtree roots; None when the index lacks some of them."""
    needed: set[tuple[int, int]] = set()
    for i in [index] if isinstance(index, int) else index:
        needed |= IndexedTree.needed(size, inclusion=i)
    roots = subtree_roots(q, topic, partition, needed)
    return None if roots is None else IndexedTree(size, roots)


def _newest_checkpoints(h: Home, lg: Log, topic: str, partition: int, leaf_index: int,
                        checkpoint_id: str | None) -> Iterator[SignedEntry]:
    """Notary checkpoints of (topic, partition) covering ``leaf_index`` (or the one named, by either of its ids:
    ``_names``), newest first, read back from the end of the checkpoints topic, from the signers a notary grant names
    (the one notary, its shards). Not verified here: the proof built on one is (the grant included)."""
    cp_topic = h.topic_for("checkpoints")
    if cp_topic not in lg.topics():
        return
    signers = notary_signers(lg, h.control_topic)
    for p in range(lg.partitions(cp_topic)):
        end = lg.end_offset(cp_topic, p)
        while end > 0:
            start = max(0, end - CHECKPOINT_TAIL_RECORDS)
            recs = lg.read(cp_topic, p, start, end - start)
            for r in reversed(recs):
                try:
                    batch = codec.decode_batch(r.value)
                    if batch.signer_id not in signers:
                        continue
                    decoded = [codec.decode_event(raw) for raw in batch.events]
                except RejectError:
                    continue  # `verify` reports a bad record; it proves nothing here
                for i in reversed(range(len(decoded))):
                    ev = decoded[i].event
                    body = ev.body
                    named = checkpoint_id is None or checkpoint_id == ev.event_id or (
                        ev.idempotency_key is not None and checkpoint_id == checkpoint_event_id(ev.idempotency_key))
                    if (isinstance(body, Checkpoint) and (body.topic, body.partition) == (topic, partition)
                            and body.tree_size > leaf_index and named):
                        yield SignedEntry(r.topic, r.partition, r.offset, i, ev.event_id, batch.signer_id,
                                          ev.event_time_us, body, r.value)
            end = start


def prove_event(h: Home, lg: Log, event_id: str, checkpoint_id: str | None = None) -> ProofDocument:
    """The inclusion proof of ``event_id`` in the newest notary checkpoint covering it (or the one named)."""
    return prove_events(h, lg, [event_id], checkpoint_id)


def _leaves(q: LeafQuery, event_ids: Sequence[str]) -> dict[str, tuple[str, int, int, int]]:
    """event id -> (topic, partition, leaf index, log offset) of its first leaf, for the ids the notary holds."""
    found: dict[str, tuple[str, int, int, int]] = {}
    for k in range(0, len(event_ids), LEAF_LOOKUP_IDS):
        chunk = list(dict.fromkeys(event_ids[k:k + LEAF_LOOKUP_IDS]))
        marks = ", ".join("?" * len(chunk))  # placeholders only: every id is a parameter
        rows = q("SELECT event_id, topic, log_partition, leaf_index, log_offset FROM merkle_leaves "  # noqa: S608
                 f"WHERE event_id IN ({marks}) ORDER BY topic, log_partition, leaf_index", chunk)
        for eid, topic, part, index, offset in rows:
            found.setdefault(eid, (topic, int(part), int(index), int(offset)))
    return found


def _open_index(h: Home, lg: Log, q: LeafQuery) -> LeafIndex | None:
    """The home's event-id index, caught up with the notary's view; None when the home cannot hold it."""
    try:
        index = LeafIndex(h.state_dir / LEAF_INDEX_FILE)
    except (sqlite3.Error, OSError):
        return None
    try:
        topics = set(lg.topics())
        index.catch_up(q, [(t, p) for t in (h.control_topic, h.topic) if t in topics for p in range(lg.partitions(t))])
    except BaseException:
        index.close()
        raise
    return index


def _catch_up_index(h: Home, lg: Log, q: LeafQuery) -> None:
    index = _open_index(h, lg, q)
    if index is not None:
        index.close()


def _indexed_leaves(h: Home, lg: Log, q: LeafQuery, event_ids: Sequence[str],
                    records: dict[tuple[str, int, int], bytes]) -> dict[str, tuple[str, int, int, int]]:
    """The leaves of ``event_ids`` the event-id index knows (caught up first), each checked against the log: the
    record at its offset holds the event (read into ``records``). An unwritable home indexes nothing."""
    index = _open_index(h, lg, q)
    if index is None:
        return {}
    try:
        found = index.find(event_ids)
    finally:
        index.close()
    out = {}
    for eid, (topic, part, leaf, offset) in found.items():
        if (topic, part, offset) not in records:
            recs = lg.read(topic, part, offset, 1)
            if not recs or recs[0].offset != offset:
                continue
            records[(topic, part, offset)] = recs[0].value
        if _holds(records[(topic, part, offset)], eid):
            out[eid] = (topic, part, leaf, offset)
    return out


def _holds(record: bytes, event_id: str) -> bool:
    try:
        batch = codec.decode_batch(record)
    except RejectError:
        return False
    tag = event_id.encode()
    return any(tag in raw[:64] and codec.decode_event(raw).event.event_id == event_id for raw in batch.events)


def prove_events(h: Home, lg: Log, event_ids: Sequence[str], checkpoint_id: str | None = None) -> ProofDocument:
    """One proof file for every event of ``event_ids``, each against the newest notary checkpoint of its partition
    covering all of them there (or the one named): the checkpoints and registrations are in the file once."""
    if not 1 <= len(event_ids) <= limits.MAX_PROOF_FILE_EVENTS:
        raise ValidationError("event_id", len(event_ids), f"give 1..{limits.MAX_PROOF_FILE_EVENTS:,} event ids",
                              hint="split the ids over several proof files")
    event_ids = list(dict.fromkeys(event_ids))
    try:
        return _prove_events(h, lg, event_ids, checkpoint_id, use_index=True)
    except RejectError as e:
        if e.code is not RejectCode.CHECKPOINT_MISMATCH:
            raise
        # a leaf the event-id index misplaced inside the right record (never seen, but the index is a cache):
        # the notary's view alone decides
        return _prove_events(h, lg, event_ids, checkpoint_id, use_index=False)


def _prove_events(h: Home, lg: Log, event_ids: list[str], checkpoint_id: str | None, *,
                  use_index: bool) -> ProofDocument:
    with notary_leaves(h) as q:
        records: dict[tuple[str, int, int], bytes] = {}
        leaves = _indexed_leaves(h, lg, q, event_ids, records) if use_index else {}
        rest = [e for e in event_ids if e not in leaves]
        if rest:
            leaves.update(_leaves(q, rest))
        missing = [e for e in event_ids if e not in leaves]
        if missing:
            raise ValidationError("event_id", missing[0], "is not among the events the notary has accepted"
                                  + (f" ({len(missing)} of the ids are not)" if len(missing) > 1 else ""),
                                  hint="check the id (tokenledger tail), or let the notary catch up: "
                                       "tokenledger checkpoint")
        by_partition: dict[tuple[str, int], list[str]] = {}
        for eid in event_ids:
            topic, part, _, _ = leaves[eid]
            by_partition.setdefault((topic, part), []).append(eid)
        for eid in event_ids:
            topic, part, _, offset = leaves[eid]
            if (topic, part, offset) not in records:
                recs = lg.read(topic, part, offset, 1)
                if not recs or recs[0].offset != offset:
                    raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the event's record is no longer on the log",
                                      event_id=eid, topic=topic, partition=part, offset=offset)
                records[(topic, part, offset)] = recs[0].value
        evidence: dict[str, EventEvidence] = {}
        for (topic, part), ids in by_partition.items():
            evidence.update(_partition_evidence(h, lg, q, topic, part, ids, leaves, records, checkpoint_id))
    key_ids = {codec.decode_batch(ev.record).key_id for ev in evidence.values()}
    key_ids |= {codec.decode_batch(ev.checkpoint.record).key_id for ev in evidence.values()}
    doc = build_inclusion_proofs([evidence[e] for e in event_ids],
                                 registration_records(lg, h.control_topic, key_ids))
    verify_proofs(doc, h.anchors())  # never hand out a proof that does not verify
    return doc


def _partition_evidence(h: Home, lg: Log, q: LeafQuery, topic: str, part: int, ids: list[str],
                        leaves: dict[str, tuple[str, int, int, int]], records: dict[tuple[str, int, int], bytes],
                        checkpoint_id: str | None) -> dict[str, EventEvidence]:
    """Evidence for the events of one partition, against its newest checkpoint covering them all whose signature
    holds (an older one when a newer record on the checkpoints topic is not the notary's)."""
    top = max(leaves[e][2] for e in ids)
    last: RejectError | None = None
    for cp in _newest_checkpoints(h, lg, topic, part, top, checkpoint_id):
        assert isinstance(cp.body, Checkpoint)
        size = cp.body.tree_size
        # every path from the notary's index at once (one read for a file of many events), else the whole tree
        tree = _indexed_tree(q, topic, part, size, [leaves[e][2] for e in ids]) or _tree(q, topic, part, size, cp)
        out = {}
        for eid in ids:
            _, _, index, offset = leaves[eid]
            out[eid] = EventEvidence(eid, topic, part, offset, records[(topic, part, offset)], index,
                                     tuple(tree.inclusion_proof(index, size)), _ref(cp))
        first = out[ids[0]]
        regs = registration_records(lg, h.control_topic, {codec.decode_batch(first.record).key_id,
                                                          codec.decode_batch(cp.record).key_id})
        try:  # the checkpoint's signature and grant, on the first event's proof
            verify_proofs(build_inclusion_proofs([first], regs), h.anchors())
        except RejectError as e:
            if not str(e.evidence.get("part", "")).startswith("checkpoint"):
                raise
            last = e  # a checkpoint record that does not hold (not the notary's): try an older one
            continue
        return out
    if last is not None:
        raise last
    raise ValidationError("event_id", ids[0], "no signed checkpoint covers this event yet"
                          + (f" (or {checkpoint_id} does not)" if checkpoint_id else "")
                          + (f" (nor all {len(ids)} ids of its partition)" if len(ids) > 1 else ""),
                          topic=topic, partition=part, leaf_index=top,
                          hint="publish one now: tokenledger checkpoint")


def prove_consistency(h: Home, lg: Log, old_id: str, new_id: str) -> ProofDocument:
    """The consistency proof between two notary checkpoints of one partition (by event id: either of ``_names``)."""
    entries = _notary_checkpoints(h, lg)
    cps = {e.event_id: e for e in entries}
    for e in entries:
        if not {old_id, new_id} <= cps.keys():
            for name in _names(e):
                cps.setdefault(name, e)  # a view's id: any granted signer's checkpoint with that key (the same body)
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
    that size), publish its views. One row per partition. A notary run as shards: each shard in turn, for its own
    partitions (control: shard 0), signed by its own signer."""
    n = shard_count(h, Notary.name)
    current: dict[tuple[str, int], tuple[int, str]] = {}  # partition -> (its tree's size, the signer owning it)
    made: set[tuple[str, int, int]] = set()
    for shard in [None] if n is None else all_shards(n):
        trees, signed = _checkpoint_shard(h, lg, shard)
        current.update({tp: (size, signer_id(Notary.name, shard)) for tp, size in trees.items()})
        made |= signed
    if n is not None:
        with notary_leaves(h) as q:
            _catch_up_index(h, lg, q)  # the next `prove` finds its leaves without copying them first
    rows: dict[tuple[str, int], tuple[bool, CheckpointRow]] = {}
    for entry in _notary_checkpoints(h, lg):
        cp = entry.body
        assert isinstance(cp, Checkpoint)
        tp = (cp.topic, cp.partition)
        if tp not in current or cp.tree_size != current[tp][0]:
            continue  # not the current tree of its partition
        owner = entry.signer_id == current[tp][1]
        if tp in rows and rows[tp][0] and not owner:
            continue  # the owning shard's checkpoint, when other shards signed one too (control's cadence)
        rows[tp] = (owner, CheckpointRow(topic=cp.topic, partition=cp.partition, tree_size=cp.tree_size,
                                         root_hash=cp.root_hash.hex(), next_offset=cp.next_offset,
                                         checkpoint_event_id=entry.event_id, new=(*tp, cp.tree_size) in made))
    return [rows[k][1] for k in sorted(rows)]


def _checkpoint_shard(h: Home, lg: Log, shard: Shard | None) -> tuple[dict[tuple[str, int], int],
                                                                        set[tuple[str, int, int]]]:
    """``checkpoint_now`` of the one notary (``shard`` None) or of one shard: the sizes of the trees it owns, and the
    (topic, partition, size) it signed now."""
    try:
        runner, store, proc = open_runner(h, Notary.name, lg, shard=shard)
    except StoreError as e:
        raise LedgerError("the notary is running, so it cannot be driven from here", path=e.evidence.get("path"),
                          hint=f"it checkpoints every {CHECKPOINT_EVERY_EVENTS:,} events on its own; for one now, "
                               "stop it and run `tokenledger checkpoint`") from None
    assert isinstance(proc, Notary)
    # every shard reads control; its tree is shard 0's to sign on demand (processors.runtime.shards: control rows)
    others = () if shard is None or shard.owns_control_rows else (h.control_topic,)
    try:
        runner.run_until_caught_up()
        existing = {(e.body.topic, e.body.partition, e.body.tree_size): e  # type: ignore[union-attr]
                    for e in _notary_checkpoints(h, lg)}
        derived = proc.checkpoint_now(runner.positions, set(existing), others)
        runner.emit(derived)
        assert runner.key is not None  # open_runner produces, so the notary has its key
        Publisher(store, proc, h.views_dir(Notary.name, None if shard is None else shard.label), key=runner.key,
                  label=None if shard is None else f"{Notary.name}{shard_signer_suffix(shard)}",
                  ).publish(runner.positions, runner.batch_no)
        if shard is None:
            _catch_up_index(h, lg, store.query)  # the next `prove` finds its leaves without copying them first
    finally:
        store.close()
    made = {(d.body.topic, d.body.partition, d.body.tree_size) for d in derived}  # type: ignore[attr-defined]
    return {tp: tree.size for tp, tree in proc.trees.items() if tp[0] not in others}, made


def check_state_checkpoints(h: Home, lg: Log, name: str, positions: dict[str, int], digest: str) -> StateCheck:
    """``replay``'s check: a rebuilt digest at ``positions`` against NAME's signed StateCheckpoints there."""
    ring = control_keyring(lg, h.control_topic, h.anchors())
    entries = read_checkpoints(lg, h.topic_for("checkpoints"), ring)
    return check_state(entries, name, (checkpoint_signer_id(name), signer_id(name)), positions, digest)


def require_one_target(event_ids: Sequence[str], consistency: tuple[str, str] | None) -> None:
    """A proof file is of events or of two checkpoints' consistency, never both or neither."""
    if bool(event_ids) == (consistency is not None):
        raise ValidationError("event_id", ", ".join(event_ids) or None,
                              "give either EVENT_ID ... (one or more) or --consistency OLD NEW")


def read_event_ids(file: Path) -> list[str]:
    """Event ids from a text file, one per line (blank lines and ``#`` comments skipped), size-bounded."""
    text = read_bounded(file, limits.MAX_PROOF_FILE_EVENTS * 80, field="ids", limit_name="MAX_PROOF_FILE_EVENTS")
    return [t for line in text.decode("utf-8", "replace").splitlines() if (t := line.split("#")[0].strip())]


def write_proof(h: Home, lg: Log, *, event_ids: Sequence[str] = (), consistency: tuple[str, str] | None = None,
                checkpoint_id: str | None = None, out: Path | None = None) -> WrittenProof:
    """One proof file: the inclusion proof of every event of ``event_ids`` or, instead, the consistency proof of the
    two checkpoints in ``consistency`` (OLD, NEW), written to ``out`` (default in the working directory:
    ``proof-<id>.json`` for one event, ``proofs-<first id>-<n>.json`` for several)."""
    require_one_target(event_ids, consistency)
    if consistency is not None:
        doc = prove_consistency(h, lg, consistency[0], consistency[1])
        name = f"proof-consistency-{consistency[0][:12]}-{consistency[1][:12]}"
    else:
        doc = prove_events(h, lg, event_ids, checkpoint_id)
        name = f"proof-{event_ids[0]}" if len(event_ids) == 1 else f"proofs-{event_ids[0][:12]}-{len(event_ids)}"
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n"
    if len(text) > limits.MAX_PROOF_FILE_BYTES:
        raise ValidationError("event_id", len(event_ids), f"the proof file would be {len(text):,} bytes, over the "
                              f"{limits.MAX_PROOF_FILE_BYTES:,} a verifier reads", hint="prove fewer events per file")
    path = out or Path(f"{name}.json")
    path.write_text(text)
    return WrittenProof(file=path, document=doc, reports=verify_proofs(doc, h.anchors()))


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
    """Check a proof file's bytes offline against ``trusted`` operator keys (raises the failed check); the file
    must prove one thing."""
    return verify_proof(load_proof(data), trusted)


def check_proofs(data: bytes, trusted: dict[str, bytes]) -> list[ProofReport]:
    """Check a proof file's bytes offline against ``trusted`` operator keys: one report per event it proves (one for
    a consistency proof); raises the first failed check."""
    return verify_proofs(load_proof(data), trusted)
