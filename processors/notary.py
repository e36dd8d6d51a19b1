"""The notary: an RFC 9162 Merkle tree over each input partition's accepted events, and signed
checkpoints (tree heads) of them on ``<prefix>.checkpoints`` (DESIGN.md, Integrity 3).

Trees: one per (topic, partition) of both inputs — the control topic's one partition and every
partition of the events topic — so a registration is as provable as a usage event. Leaf data is the
event's exact bytes (``Item.decoded.raw``), leaves in consumption order, which within one partition
is log order: the tree is a function of the log alone.

Cadence (deterministic, never the wall clock): after each record, if the partition's tree size has
crossed a multiple of ``checkpoint_every`` (``CHECKPOINT_EVERY_EVENTS``) since the previous record,
a ``Checkpoint`` of the tree at that record boundary is emitted (``next_offset`` = the record's offset
+ 1). Batch boundaries therefore do not matter: a replay emits the same checkpoints with the same
event ids (idempotency key ``checkpoint:<topic>:<partition>:<tree size>``). On demand,
``tokenledger checkpoint`` catches the notary up and signs a checkpoint of the current tree of each
partition (``checkpoint_now``; idempotency key ``checkpoint:demand:...``); those change no view, so
the state digest stays a function of the log.

Which time: none. The cadence counts events, so no claimed time (live, backfilled or skewed) and no
append time moves it; ``last_event_time_us`` of a checkpoint is reported, never used to decide.

Memory: the notary keeps each tree's frontier only (``CompactTree``: one hash per set bit of its size), so it runs in
the same memory at any log size; on start it reads each frontier back from its index (``subtree_roots``).

Views: ``merkle_leaves`` (append: one row per leaf),
``merkle_nodes`` (append: the root of every complete subtree whose height is a multiple of
``NODE_STRIDE``, one row per 2**NODE_STRIDE leaves) and ``checkpoints`` (append: one row per cadence
checkpoint). Leaves and nodes together are the on-disk index ``tokenledger prove`` reads: any subtree
root the RFC 9162 recursion visits is a fold of at most 2**NODE_STRIDE stored hashes, so a proof
reads O(2**NODE_STRIDE * log n) hashes instead of the whole partition.

Sharding (``tokenledger run notary --instances N`` / ``--shard I/N``, processors.runtime.shards): every tree, its
leaves, nodes and cadence are a function of one partition's records, so instance I of N holds exactly the rows one
instance holds for the partitions ``p % N == I`` of the events topic, and the union of the shards is the one
instance's (same combined digest). Control is read by every shard: each builds the control tree alike, and only
shard 0 publishes, digests and sends its rows (``control_rows``); the others keep them, which ``restore`` needs. Each
shard signs its Checkpoints as its own signer ``processor.notary.shard-I-of-N``, which the operator grants the
``notary`` capability when the shard first starts (``processors.host.service.ensure_processor_key``): readers
(``verify``, ``prove``, ``verify-proof``) take a Checkpoint from any signer holding that grant, so an event's proof
verifies against the checkpoint of the shard owning its partition. A Checkpoint's idempotency key names only its
partition and size, so its body and key are the same at any instance count; its event id is derived from its
signer, so the ``checkpoints`` view records the id the one-instance signer ``processor.notary`` gives it
(``checkpoint_event_id``): a row is the same at any instance count, and ``prove --checkpoint`` / ``--consistency``
resolve that id to the checkpoint whichever granted signer signed it. One cost: the runtime gives a processor no
way to tell which shard it is, so every shard signs the cadence checkpoints of the control tree (the same tree
heads, each under its own signer; on-demand ones only shard 0).

Never: no wall clock, no reading of the log outside ``fold``'s input, no checkpoint that is not the
current tree at a record boundary.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, ClassVar

from ledger.integrity.merkle import CompactTree, MerkleTree, fold_complete, frontier, leaf_hash
from ledger.wire import codec
from ledger.wire.events import Checkpoint
from processors.runtime.processor import Column, Derived, Effects, Item, Processor, Quarantined, View

CHECKPOINT_EVERY_EVENTS = 1_000  # a cadence checkpoint each time a partition's tree grows past a multiple of this
NOTARY_SIGNER = "processor.notary"  # the key the runtime signs the notary's derived events with

LEAVES = View(
    name="merkle_leaves",
    doc="One row per Merkle leaf: every accepted event of each input partition, in log order (the notary's trees).",
    columns=(
        Column("topic", "VARCHAR", "input topic the event was read from"),
        Column("log_partition", "INTEGER", "input partition (one tree per topic and partition)"),
        Column("leaf_index", "BIGINT", "position of the leaf in the partition's tree (0-based)"),
        Column("leaf_hash", "BLOB", "RFC 9162 leaf hash: SHA-256(0x00 || event bytes), 32 bytes"),
        Column("event_id", "VARCHAR", "the event's id"),
        Column("log_offset", "BIGINT", "offset of the signed batch that carried the event"),
        Column("event_time_us", "BIGINT", "the event's time, microseconds since the Unix epoch"),
        Column("_batch", "BIGINT", "commit batch (internal: incremental publishing)"),
    ),
)
NODE_STRIDE = 8  # merkle_nodes holds subtree roots at heights 8, 16, 24, ... (one row per 256 leaves)
NODES = View(
    name="merkle_nodes",
    doc="Roots of the complete subtrees of each partition's tree at heights NODE_STRIDE, 2*NODE_STRIDE, ... "
        "(with merkle_leaves, the index proofs are read from).",
    columns=(
        Column("topic", "VARCHAR", "input topic the tree is over"),
        Column("log_partition", "INTEGER", "input partition the tree is over"),
        Column("height", "INTEGER", "subtree height: it covers 2**height leaves"),
        Column("position", "BIGINT", "subtree number at its height: it starts at leaf position * 2**height"),
        Column("node_hash", "BLOB", "RFC 9162 root of the subtree, 32 bytes"),
        Column("_batch", "BIGINT", "commit batch (internal: incremental publishing)"),
    ),
)
CHECKPOINTS = View(
    name="checkpoints",
    doc="Signed tree heads the notary published at its cadence (on-demand ones are only on the log).",
    columns=(
        Column("topic", "VARCHAR", "input topic the tree is over"),
        Column("log_partition", "INTEGER", "input partition the tree is over"),
        Column("tree_size", "BIGINT", "leaves covered (accepted events of the partition before next_offset)"),
        Column("root_hash", "VARCHAR", "RFC 9162 root of the tree at tree_size, hex"),
        Column("next_offset", "BIGINT", "the checkpoint covers every record before this offset"),
        Column("last_event_time_us", "BIGINT", "latest event time among the covered events (µs)"),
        Column("checkpoint_event_id", "VARCHAR", "id of the Checkpoint event on <prefix>.checkpoints as the one-"
                                                 "instance notary processor.notary signs it; shard I of N signs it as "
                                                 "processor.notary.shard-I-of-N (another id): prove takes either"),
        Column("_batch", "BIGINT", "commit batch (internal: incremental publishing)"),
    ),
)


def checkpoint_event_id(idempotency_key: str) -> str:
    """The id the runtime gives a derived event of the one-instance notary (it depends on the key alone); a shard's
    Checkpoint with this key has the id ``derive_event_id(its signer, key)``, the same checkpoint under another id."""
    return codec.derive_event_id(NOTARY_SIGNER, idempotency_key, b"")


class Notary(Processor):
    name = "notary"
    derived_topics = ("checkpoints",)
    doc = "RFC 9162 Merkle trees over each input partition's accepted events; signed checkpoints"
    views = (LEAVES, NODES, CHECKPOINTS)
    checkpoint_every: ClassVar[int] = CHECKPOINT_EVERY_EVENTS
    # one tree per partition: a shard holds the one instance's rows of its partitions (module docstring, Sharding)
    shardable = True
    shard_refusal = ""
    control_rows: ClassVar[dict[str, str]] = {"merkle_leaves": "topic", "merkle_nodes": "topic", "checkpoints": "topic"}

    def __init__(self) -> None:
        self.trees: dict[tuple[str, int], CompactTree] = {}
        self.latest_time: dict[tuple[str, int], int] = {}
        self.next_offset: dict[tuple[str, int], int] = {}

    def restore(self, query: Any) -> None:
        self.trees = {}
        for topic, part, size, t, off in query("SELECT topic, log_partition, max(leaf_index) + 1, max(event_time_us), "
                                               "max(log_offset) FROM merkle_leaves GROUP BY ALL"):
            tp = (str(topic), int(part))
            self.latest_time[tp] = int(t)
            self.next_offset[tp] = int(off) + 1
            roots = subtree_roots(query, tp[0], tp[1], frontier(int(size)))
            if roots is None:  # a notary file from before merkle_nodes: the frontier from all the leaves, once
                rows = query("SELECT leaf_hash FROM merkle_leaves WHERE topic = ? AND log_partition = ? "
                             "ORDER BY leaf_index", [tp[0], tp[1]])
                full = MerkleTree.from_leaf_hashes(bytes(r[0]) for r in rows)
                roots = {(h, p): full.subtree_root(h, p) for h, p in frontier(full.size)}
            self.trees[tp] = CompactTree.from_frontier(int(size), roots)

    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        fx = Effects()
        cols: dict[str, list[Any]] = {c.name: [] for c in LEAVES.columns if c.name != "_batch"}
        cps: dict[str, list[Any]] = {c.name: [] for c in CHECKPOINTS.columns if c.name != "_batch"}
        nodes: dict[str, list[Any]] = {c.name: [] for c in NODES.columns if c.name != "_batch"}
        stride_mask = (1 << NODE_STRIDE) - 1
        every = self.checkpoint_every
        n = len(items)
        for i, it in enumerate(items):
            rec = it.record
            tp = (rec.topic, rec.partition)
            tree = self.trees.get(tp)
            if tree is None:
                tree = self.trees[tp] = CompactTree()
            ev = it.decoded.event
            leaf = leaf_hash(it.decoded.raw)
            cols["topic"].append(rec.topic)
            cols["log_partition"].append(rec.partition)
            cols["leaf_index"].append(tree.size)
            cols["leaf_hash"].append(leaf)
            done = tree.append(leaf)
            if not tree.size & stride_mask:
                self._stored_nodes(nodes, tp, done)
            cols["event_id"].append(ev.event_id)
            cols["log_offset"].append(rec.offset)
            cols["event_time_us"].append(ev.event_time_us)
            self.latest_time[tp] = max(self.latest_time.get(tp, 0), ev.event_time_us)
            self.next_offset[tp] = rec.offset + 1
            last_of_record = i + 1 == n or items[i + 1].record is not rec
            if last_of_record:
                first_size = tree.size - _events_in_record(items, i)
                if tree.size // every > first_size // every:
                    self._checkpoint(fx, cps, tp, "checkpoint")
        fx.append("merkle_leaves", cols)
        fx.append("merkle_nodes", nodes)
        fx.append("checkpoints", cps)
        return fx

    @staticmethod
    def _stored_nodes(nodes: dict[str, list[Any]], tp: tuple[str, int], done: list[tuple[int, int, bytes]]) -> None:
        """The subtrees of the stored heights (multiples of NODE_STRIDE) that the last append completed."""
        for height, position, root in done:
            if height % NODE_STRIDE == 0:
                for name, v in (("topic", tp[0]), ("log_partition", tp[1]), ("height", height),
                                ("position", position), ("node_hash", root)):
                    nodes[name].append(v)

    def _checkpoint(self, fx: Effects, cps: dict[str, list[Any]] | None, tp: tuple[str, int], prefix: str) -> Derived:
        tree = self.trees[tp]
        body = Checkpoint(topic=tp[0], partition=tp[1], tree_size=tree.size, root_hash=tree.root(),
                          next_offset=self.next_offset[tp], last_event_time_us=self.latest_time[tp])
        key = f"{prefix}:{tp[0]}:{tp[1]}:{tree.size}"
        d = Derived(topic="checkpoints", body=body, event_time_us=self.latest_time[tp], idempotency_key=key)
        fx.derived.append(d)
        if cps is not None:
            for name, v in (("topic", tp[0]), ("log_partition", tp[1]), ("tree_size", tree.size),
                            ("root_hash", body.root_hash.hex()), ("next_offset", body.next_offset),
                            ("last_event_time_us", body.last_event_time_us),
                            ("checkpoint_event_id", checkpoint_event_id(key))):
                cps[name].append(v)
        return d

    def checkpoint_now(self, positions: dict[tuple[str, int], int], skip: set[tuple[str, int, int]],
                       skip_topics: Collection[str] = ()) -> list[Derived]:
        """On-demand checkpoints of every non-empty tree at the notary's positions (its tree covers every
        record before them), except (topic, partition, size) already checkpointed (``skip``) and the trees of
        ``skip_topics`` (a shard but shard 0 leaves control's tree to shard 0)."""
        out: list[Derived] = []
        for tp in sorted(self.trees):
            tree = self.trees[tp]
            if tree.size == 0 or (tp[0], tp[1], tree.size) in skip or tp[0] in skip_topics:
                continue
            self.next_offset[tp] = max(self.next_offset.get(tp, 0), positions.get(tp, 0))
            out.append(self._checkpoint(Effects(), None, tp, "checkpoint:demand"))
        return out


def subtree_roots(query: Any, topic: str, partition: int,
                  needed: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes] | None:
    """The roots of the complete subtrees ``needed`` ``{(height, position)}`` of a partition's tree, each folded from
    at most 2**NODE_STRIDE hashes of the notary's index (``merkle_leaves`` below the first stored height,
    ``merkle_nodes`` above); None when the index lacks some (a notary file from before ``merkle_nodes``).
    ``query(sql, params)``: over the notary's Store or its published Parquet."""
    spans: dict[int, list[tuple[int, int, int, int]]] = {}  # stored height -> (height, position, first, last)
    for height, position in needed:
        base = height - height % NODE_STRIDE
        first = position << (height - base)
        spans.setdefault(base, []).append((height, position, first, first + (1 << (height - base)) - 1))
    roots: dict[tuple[int, int], bytes] = {}
    for base, wanted in spans.items():
        ranges = sorted({(a, b) for _, _, a, b in wanted})
        got = {int(p): bytes(h) for p, h in _stored(query, topic, partition, base, ranges)}
        for height, position, first, last in wanted:
            hashes = [got.get(i) for i in range(first, last + 1)]
            if any(h is None for h in hashes):
                return None
            roots[(height, position)] = fold_complete([h for h in hashes if h is not None])
    return roots


MANY_RANGES = 32  # past this many ranges of stored hashes, one query selects their 256-wide blocks instead


def _stored(query: Any, topic: str, partition: int, base: int, ranges: list[tuple[int, int]]) -> list[tuple[Any, ...]]:
    """(position, hash) of the stored hashes at height ``base`` (leaves at 0) covering ``ranges`` (each inside one
    block of 2**NODE_STRIDE positions). A few ranges: one query of OR'ed ranges, pruned by the stored order. Many
    (the paths of a file of many events): one query for their blocks as a list, scanning the column once."""
    if base == 0:
        table, col, extra, params = "merkle_leaves", "leaf_index", "", [topic, partition]
        cols = "leaf_index, leaf_hash"
    else:
        table, col, extra, params = "merkle_nodes", "position", " AND height = ?", [topic, partition, base]
        cols = "position, node_hash"
    head = f"SELECT {cols} FROM {table} WHERE topic = ? AND log_partition = ?{extra} AND "  # noqa: S608
    if len(ranges) <= MANY_RANGES:
        # only fixed names and "? AND ?" placeholders are joined into the text; every value is a parameter
        where = " OR ".join([f"{col} BETWEEN ? AND ?"] * len(ranges))
        return list(query(head + "(" + where + ")", [*params, *(v for r in ranges for v in r)]))
    blocks = sorted({a >> NODE_STRIDE for a, _ in ranges})
    return list(query(head + f"{col} >> {NODE_STRIDE} IN (SELECT unnest(?::BIGINT[]))", [*params, blocks]))


def _events_in_record(items: list[Item], last: int) -> int:
    """How many items, ending at index ``last``, came from the same record."""
    rec = items[last].record
    k = last
    while k > 0 and items[k - 1].record is rec:
        k -= 1
    return last - k + 1
