"""Checkpoints against the log: read the signed checkpoints, rebuild the Merkle trees from the
accepted events, and name the first checkpoint that disagrees with the log (DESIGN.md, Integrity 3-4).

The trees are the notary's (processors/notary.py): one RFC 9162 tree per (topic, partition) of the
signed input topics (control and events), whose leaves are the exact bytes of every accepted
event, in log order. A ``Checkpoint`` says: the tree of that partition over the accepted events of
the records before ``next_offset`` has ``tree_size`` leaves and root ``root_hash``.

``audit_with_checkpoints`` is what ``tokenledger verify`` runs: the usual audit of the input topics
(ledger/integrity/verify.py), which also feeds every accepted event into the rebuilt trees, then each
checkpoint record (signature by a registered processor key whose signer holds the operator's
``notary`` grant — a Checkpoint by any other processor is a bad record, not a checkpoint; no chain check: on
logs an older version wrote, a processor's StateCheckpoints are links of the chain of its derived events, on
another topic; now they are a chain of their own, ``processor.<name>.checkpoints``) and each checkpoint's claims:

* ``tree_size`` ≤ the rebuilt tree's size, and the rebuilt root at ``tree_size`` equals ``root_hash``;
* the rebuilt tree over the records before ``next_offset`` has exactly ``tree_size`` leaves;
* consecutive checkpoints of a partition (by tree size) are consistent: an RFC 9162 consistency
  proof from the rebuilt tree verifies between their signed roots — which holds exactly when both are
  the rebuilt roots at their sizes, so that is what is compared (two different roots for one size —
  a forked notary — fail here).

Memory: the rebuilt trees are kept as frontiers (O(log n) hashes each); the checkpoints topic is read once
before the audit to learn which tree sizes and offsets to sample as the log streams by (``TreeBuilder``), so
``verify`` runs in the same memory at any log size.

The first divergence, in checkpoint-topic order, is reported with the checkpoint's event id,
partition, tree size and the expected (rebuilt) and actual (signed) roots.

Also here: reading the checkpoints topic for ``prove`` and ``replay`` (``read_checkpoints``), the key
ring of a control topic, the control records a proof must carry for given keys, and the signers the notary grants
name (``notary_signers``: the one notary, or each of its shards; no reader trusts a signer by its name).

Never: writes nothing, imports nothing from processors/.
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.errors import RejectError
from ledger.integrity.keyring import KeyRing
from ledger.integrity.merkle import EMPTY_ROOT, CompactTree, leaf_hash
from ledger.integrity.proofs import control_key_ids, is_notary_grant, open_record, require_notary
from ledger.integrity.verify import Accepted, AuditReport, Verifier, Where, audit
from ledger.wire import codec
from ledger.wire.events import Checkpoint, Grant, StateCheckpoint

if TYPE_CHECKING:
    from ledger.log import Log

READ_BATCH = 2_000  # records per read while scanning a topic
NOTARY_GRANT = "grant:notary"  # stands for "notary grants" among the key ids registration_records follows


@dataclass(frozen=True)
class SignedEntry:
    """One verified derived event on the checkpoints topic and the record that carries it."""

    topic: str  # where the record is (the checkpoints topic)
    partition: int
    offset: int
    index: int  # position of the event in its signed batch
    event_id: str
    signer_id: str
    event_time_us: int
    body: Checkpoint | StateCheckpoint
    record: bytes


@dataclass
class CheckpointReport:
    """What the checkpoint audit found."""

    checkpoints: int = 0
    state_checkpoints: int = 0
    partitions: int = 0
    bad_records: int = 0
    divergences: int = 0
    first_divergence: dict[str, Any] | None = None
    first_bad_record: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.divergences and not self.bad_records

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checkpoints": self.checkpoints, "state_checkpoints": self.state_checkpoints,
                "partitions": self.partitions, "bad_records": self.bad_records, "divergences": self.divergences,
                "first_divergence": self.first_divergence, "first_bad_record": self.first_bad_record}


def scan(log: Log, topic: str, fn: Callable[[Any], None], *, start: dict[int, int] | None = None) -> dict[int, int]:
    """Call ``fn(record)`` for every record of every partition of ``topic``, in partition then offset order, from
    ``start`` (partition -> first offset; default 0); return where reading stopped per partition."""
    stopped: dict[int, int] = {}
    for p in range(log.partitions(topic)):
        offset, end = (start or {}).get(p, 0), log.end_offset(topic, p)
        while offset < end:
            recs = log.read(topic, p, offset, READ_BATCH)
            if not recs:
                break
            for r in recs:
                fn(r)
            offset = recs[-1].offset + 1
        stopped[p] = offset
    return stopped


def control_keyring(log: Log, control_topic: str, anchors: dict[str, bytes]) -> KeyRing:
    """The key ring the control topic builds (every record verified, bad ones skipped)."""
    verifier = Verifier(KeyRing(anchors))

    def take(r: Any) -> None:
        # a rejected control record changes no key; `verify` reports it
        with contextlib.suppress(RejectError):
            verifier.check_record(r.value, Where.of(r))

    scan(log, control_topic, take)
    return verifier.keyring


def read_checkpoints(log: Log, topic: str, ring: KeyRing,
                     bad: Callable[[RejectError], None] | None = None) -> list[SignedEntry]:
    """Every Checkpoint / StateCheckpoint on ``topic`` whose record verifies against ``ring`` (signed by
    a registered processor key; a Checkpoint also by a holder of the notary grant in ``ring``), in
    partition then offset order; records that fail go to ``bad``."""
    out: list[SignedEntry] = []
    if topic not in log.topics():
        return out

    def take(r: Any) -> None:
        try:
            batch, decoded, _ = open_record(ring, r.value, role="processor", part="checkpoint record")
        except RejectError as e:
            if bad is not None:
                bad(e.at(topic=r.topic, partition=r.partition, offset=r.offset))
            return
        if any(isinstance(d.event.body, Checkpoint) for d in decoded):
            try:
                require_notary(ring, batch.signer_id, batch.key_id, "checkpoint record")
            except RejectError as e:
                if bad is not None:
                    bad(e.at(topic=r.topic, partition=r.partition, offset=r.offset))
                return
        for i, d in enumerate(decoded):
            if isinstance(d.event.body, (Checkpoint, StateCheckpoint)):
                out.append(SignedEntry(r.topic, r.partition, r.offset, i, d.event.event_id, batch.signer_id,
                                       d.event.event_time_us, d.event.body, r.value))

    scan(log, topic, take)
    return out


@dataclass
class _KeyRecords:
    """The control records that are about keys or the notary grant, read so far, and where reading stopped."""

    next_offsets: dict[int, int] = field(default_factory=dict)
    records: list[tuple[int, bytes, str, set[str]]] = field(default_factory=list)  # offset, value, key, about


# per open log and control topic: a prove reads only what was appended since the last one. The control topic also
# holds the price book (~1,250 events seeded by `init`): decoding all of it twice per proof was 50 ms of a 70 ms
# prove. The log is append-only, so what was read stays true; the entry goes with the log object.
_KEY_RECORDS: weakref.WeakKeyDictionary[Log, dict[str, _KeyRecords]] = weakref.WeakKeyDictionary()


def _key_records(log: Log, control_topic: str) -> list[tuple[int, bytes, str, set[str]]]:
    try:
        per_topic = _KEY_RECORDS.setdefault(log, {})
    except TypeError:  # a log object that cannot be weakly referenced: read it all, as before
        per_topic = {}
    seen = per_topic.setdefault(control_topic, _KeyRecords())

    def take(r: Any) -> None:
        try:
            batch = codec.decode_batch(r.value)
            about: set[str] = set()
            for raw in batch.events:
                body = codec.decode_event(raw).event.body
                about |= control_key_ids(body)
                if is_notary_grant(body):
                    about.add(NOTARY_GRANT)
        except RejectError:
            return
        if about:
            seen.records.append((r.offset, r.value, batch.key_id, about))

    if control_topic in log.topics():
        seen.next_offsets = scan(log, control_topic, take, start=seen.next_offsets)
    return seen.records


def registration_records(log: Log, control_topic: str, key_ids: set[str]) -> list[bytes]:
    """The control records (log order) that register, rotate or revoke the given keys — and, in turn,
    the keys that signed those records, down to keys registered by nobody (the trusted operators) —
    and every record granting or withdrawing the notary capability (with the registrations of its signer)."""
    records = _key_records(log, control_topic)
    wanted = {*key_ids, NOTARY_GRANT}
    chosen: dict[int, bytes] = {}
    while True:
        grew = False
        for offset, value, signer_key, about in records:
            if offset not in chosen and about & wanted:
                chosen[offset] = value
                if signer_key not in wanted:
                    wanted.add(signer_key)
                grew = True
        if not grew:
            break
    return [chosen[o] for o in sorted(chosen)]


def notary_signers(log: Log, control_topic: str) -> set[str]:
    """The signers a ``notary`` grant (or its withdrawal) on ``control_topic`` names — the one-instance notary
    ``processor.notary`` and each shard's ``processor.notary.shard-I-of-N`` (processors/notary.py, Sharding) — read
    unverified from the control records ``registration_records`` keeps: who may have signed a Checkpoint worth
    checking. A reader looks only at their records and then verifies the grant itself (``require_notary``)."""
    out: set[str] = set()
    for _, value, _, about in _key_records(log, control_topic):
        if NOTARY_GRANT not in about:
            continue
        for raw in codec.decode_batch(value).events:  # kept only because it decoded
            body = codec.decode_event(raw).event.body
            if isinstance(body, Grant) and is_notary_grant(body):
                out.add(body.agent_id)
    return out


class TreeBuilder:
    """Per (topic, partition): the tree over accepted events in log order, kept as its frontier only
    (``CompactTree``), and what the checkpoints need of it, sampled while the log streams by: the root at each
    tree size a checkpoint names, and the leaves before each ``next_offset`` one names. Memory: O(log n) per
    partition plus one sample per checkpoint, whatever the log's size."""

    def __init__(self, sizes: dict[tuple[str, int], set[int]] | None = None,
                 offsets: dict[tuple[str, int], set[int]] | None = None) -> None:
        self.trees: dict[tuple[str, int], CompactTree] = {}
        self._sizes = sizes or {}
        self._offsets = {tp: sorted(xs) for tp, xs in (offsets or {}).items()}
        self._next = dict.fromkeys(self._offsets, 0)  # per tp: the first wanted offset not yet passed
        self.roots: dict[tuple[str, int], dict[int, bytes]] = {}  # tp -> tree size -> root
        self.covered: dict[tuple[str, int], dict[int, int]] = {}  # tp -> next_offset -> leaves before it

    def on_accepted(self, where: Where, acc: Accepted) -> None:
        tp = (where.topic, where.partition)
        tree = self.trees.get(tp)
        if tree is None:
            tree = self.trees[tp] = CompactTree()
            roots = self.roots[tp] = {}
            if 0 in self._sizes.get(tp, ()):
                roots[0] = tree.root()
        self._pass(tp, where.offset + 1, tree.size)
        wanted = self._sizes.get(tp, ())
        roots = self.roots[tp]
        for d in acc.events:
            tree.append(leaf_hash(d.raw))
            if tree.size in wanted:
                roots[tree.size] = tree.root()

    def _pass(self, tp: tuple[str, int], upto: int, size: int) -> None:
        """Every wanted next_offset at or below ``upto`` - 1 (all records before it seen) covers ``size`` leaves."""
        xs = self._offsets.get(tp)
        if not xs:
            return
        k = self._next[tp]
        got = self.covered.setdefault(tp, {})
        while k < len(xs) and xs[k] < upto:
            got[xs[k]] = size
            k += 1
        self._next[tp] = k

    def finish(self) -> None:
        """The log has ended: every wanted offset past its last record covers the whole tree."""
        for tp in self._offsets:
            tree = self.trees.get(tp)
            self._pass(tp, 1 << 63, tree.size if tree is not None else 0)

    def size(self, tp: tuple[str, int]) -> int:
        tree = self.trees.get(tp)
        return tree.size if tree is not None else 0

    def root(self, tp: tuple[str, int], size: int) -> bytes | None:
        """The log's root at ``size`` leaves, if it was sampled (None past the end of the log)."""
        if size == 0:
            return EMPTY_ROOT
        return self.roots.get(tp, {}).get(size)

    def size_before(self, tp: tuple[str, int], next_offset: int) -> int:
        """Leaves from records at offsets below ``next_offset`` (a sampled one)."""
        return self.covered.get(tp, {}).get(next_offset, 0)


def checkpoint_samples(log: Log, topic: str) -> tuple[dict[tuple[str, int], set[int]],
                                                         dict[tuple[str, int], set[int]]]:
    """The tree sizes and next offsets the Checkpoint events on ``topic`` name, per partition they are about —
    read before the audit streams the log, unverified: they only say where to sample the tree (the checks use
    the verified ones)."""
    sizes: dict[tuple[str, int], set[int]] = {}
    offsets: dict[tuple[str, int], set[int]] = {}
    if topic not in log.topics():
        return sizes, offsets

    def take(r: Any) -> None:
        with contextlib.suppress(RejectError):
            for raw in codec.decode_batch(r.value).events:
                body = codec.decode_event(raw).event.body
                if isinstance(body, Checkpoint):
                    tp = (body.topic, body.partition)
                    sizes.setdefault(tp, set()).add(body.tree_size)
                    offsets.setdefault(tp, set()).add(body.next_offset)

    scan(log, topic, take)
    return sizes, offsets


def audit_with_checkpoints(log: Log, topics: list[str], checkpoint_topic: str, anchors: dict[str, bytes], *,
                           progress: Callable[[int], None] | None = None) -> tuple[AuditReport, CheckpointReport]:
    """The audit of ``topics`` (control first) plus the checkpoint checks of the module docstring."""
    verifier = Verifier(KeyRing(anchors))
    trees = TreeBuilder(*checkpoint_samples(log, checkpoint_topic))
    report = audit(log, topics, anchors, progress=progress, verifier=verifier, on_accepted=trees.on_accepted)
    trees.finish()
    cr = CheckpointReport()

    def bad(e: RejectError) -> None:
        cr.bad_records += 1
        if cr.first_bad_record is None:
            cr.first_bad_record = e.to_dict()

    entries = read_checkpoints(log, checkpoint_topic, verifier.keyring, bad)
    cr.state_checkpoints = sum(isinstance(e.body, StateCheckpoint) for e in entries)
    # each entry with its body narrowed to a Checkpoint
    cps = [(e, e.body) for e in entries if isinstance(e.body, Checkpoint)]
    cr.checkpoints = len(cps)
    cr.partitions = len({(cp.topic, cp.partition) for _, cp in cps})
    found: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    for e, _ in cps:
        problem = _check_one(e, trees)
        if problem is not None:
            found.append((_pos(e), problem))
    by_tp: dict[tuple[str, int], list[tuple[SignedEntry, Checkpoint]]] = {}
    for e, cp in cps:
        by_tp.setdefault((cp.topic, cp.partition), []).append((e, cp))
    for pairs in by_tp.values():
        pairs.sort(key=lambda ec: (ec[1].tree_size, ec[0].partition, ec[0].offset))
        group = [e for e, _ in pairs]
        for old, new in itertools.pairwise(group):
            problem = _check_pair(old, new, trees)
            if problem is not None:
                found.append((max(_pos(old), _pos(new)), problem))
    found.sort(key=lambda x: x[0])
    cr.divergences = len(found)
    cr.first_divergence = found[0][1] if found else None
    return report, cr


def _pos(e: SignedEntry) -> tuple[int, int, int]:
    """Where a checkpoint is on the checkpoints topic (several can share one signed record)."""
    return (e.partition, e.offset, e.index)


def _divergence(e: SignedEntry, reason: str, **facts: Any) -> dict[str, Any]:
    cp = e.body
    assert isinstance(cp, Checkpoint)
    return {"checkpoint_event_id": e.event_id, "signer_id": e.signer_id, "checkpoint_offset": e.offset,
            "topic": cp.topic, "partition": cp.partition, "tree_size": cp.tree_size, "next_offset": cp.next_offset,
            "actual_root": cp.root_hash.hex(), "reason": reason, **facts}


def _check_one(e: SignedEntry, trees: TreeBuilder) -> dict[str, Any] | None:
    cp = e.body
    assert isinstance(cp, Checkpoint)
    tp = (cp.topic, cp.partition)
    size = trees.size(tp)
    if cp.tree_size > size:
        return _divergence(e, "the checkpoint covers more events than the log holds", expected_root=None,
                           log_tree_size=size)
    expected = trees.root(tp, cp.tree_size)
    assert expected is not None  # sampled: the checkpoint named this size
    if expected != cp.root_hash:
        return _divergence(e, "root differs from the tree rebuilt from the log", expected_root=expected.hex(),
                           log_tree_size=size)
    covered = trees.size_before(tp, cp.next_offset)
    if covered != cp.tree_size:
        return _divergence(e, "the records before next_offset hold another number of accepted events",
                           expected_root=expected.hex(), expected_tree_size=covered)
    return None


def _check_pair(old: SignedEntry, new: SignedEntry, trees: TreeBuilder) -> dict[str, Any] | None:
    """Whether the later-sized checkpoint extends the other: checked as RFC 9162 consistency with the log's own
    tree as the proof's source, which holds exactly when both roots are the log's roots at their sizes (the log's
    tree is kept as a frontier, so the two sampled roots are compared directly)."""
    a, b = old.body, new.body
    assert isinstance(a, Checkpoint) and isinstance(b, Checkpoint)
    if a.tree_size == 0:
        return None  # the empty tree is a prefix of every tree
    tp = (b.topic, b.partition)
    if b.tree_size > trees.size(tp):
        consistent = a.tree_size == b.tree_size and a.root_hash == b.root_hash  # an empty proof: equal trees only
        detail = "the later one covers more events than the log holds"
    else:
        consistent = trees.root(tp, a.tree_size) == a.root_hash and trees.root(tp, b.tree_size) == b.root_hash
        detail = "their roots are not both the log's roots at their sizes"
    if consistent:
        return None
    # blame the one published later: the earlier one stood alone until it came
    late, early = (new, old) if _pos(new) > _pos(old) else (old, new)
    size = late.body.tree_size  # type: ignore[union-attr]
    expected = trees.root(tp, size)
    return _divergence(late, "not consistent with another checkpoint of this partition",
                       other_checkpoint_event_id=early.event_id,
                       other_tree_size=early.body.tree_size,  # type: ignore[union-attr]
                       other_root=early.body.root_hash.hex(),  # type: ignore[union-attr]
                       expected_root=expected.hex() if expected is not None else None, detail=detail)


def digest_algorithm(digest: str) -> str:
    """The algorithm a state digest names before its last ``:`` ("" for the unnamed first one, bare hex).
    Digests of different algorithms say nothing about each other: they are never compared."""
    return digest.rpartition(":")[0]


@dataclass
class StateCheck:
    """A replay's digest against the StateCheckpoints its processor signed at the same positions.
    ``other_algorithm``: checkpoints there whose digest another algorithm computed (not compared)."""

    processor: str
    checked: list[dict[str, Any]] = field(default_factory=list)
    latest: dict[str, Any] | None = None
    other_algorithm: list[dict[str, Any]] = field(default_factory=list)

    @property
    def match(self) -> bool | None:
        """True: every checkpoint at these positions agrees; False: one does not; None: none to compare."""
        if not self.checked:
            return None
        return all(c["equal"] for c in self.checked)

    def to_dict(self) -> dict[str, Any]:
        return {"processor": self.processor, "match": self.match, "checked": self.checked, "latest": self.latest,
                "other_algorithm": self.other_algorithm}


def check_state(entries: list[SignedEntry], processor: str, signer_ids: Collection[str], positions: dict[str, int],
                digest: str) -> StateCheck:
    """Compare a rebuilt digest at ``positions`` with the processor's signed StateCheckpoints there: those signed by
    one of ``signer_ids`` (the processor's signers: its checkpoint chain's, and its own, which signed them before
    they had a chain of their own)."""
    out = StateCheck(processor)
    signers = frozenset(signer_ids)
    for e in entries:
        body = e.body
        if not isinstance(body, StateCheckpoint) or body.processor != processor or e.signer_id not in signers:
            continue
        summary = {"event_id": e.event_id, "offset": e.offset, "positions": dict(body.positions),
                   "digest": body.digest}
        out.latest = summary
        if dict(body.positions) != positions:
            continue
        if digest_algorithm(body.digest) != digest_algorithm(digest):
            out.other_algorithm.append(summary)  # signed before an upgrade of the digest: not a disagreement
        else:
            out.checked.append({**summary, "equal": body.digest == digest})
    return out


__all__ = ["CheckpointReport", "SignedEntry", "StateCheck", "TreeBuilder", "audit_with_checkpoints", "check_state",
           "control_keyring", "digest_algorithm", "notary_signers", "read_checkpoints", "registration_records"]
