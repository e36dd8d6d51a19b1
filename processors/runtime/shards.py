"""Sharded processors: one processor run as N instances, each owning a fixed subset of the partitions of its data
input topics (``tokenledger run NAME --instances N`` on one machine, ``--shard I/N`` across machines).

Ownership: instance I of N owns partition p of every input topic but control when ``p % N == I``. Control (one
partition) is read by every instance: every instance needs every registration, revocation and grant to verify and
fold its own partitions in the log's order. A signer's records live in one partition (records are keyed by signer),
so its chain is checked whole by the one instance that owns the partition.

Which processors can shard, and how: those whose state is partition-local (``Processor.shardable``: every row of
every view is a function of one data partition plus control; the journal, the notary) run as shards of their
partitions: each shard holds exactly the rows a single instance holds for its partitions. Those whose state crosses
partitions (a roll-up by org, a pair's allocations, a subject rated from other partitions, a rule's netting set)
shard through the exchange (``Processor.exchanges``, ``processors.runtime.exchange``): each shard's router reads its
partitions and sends every event to the shards owning its keys, and each shard's owner folds what it was sent in the
log's one order. Either way the union of the shards' rows is the single instance's. Any other is refused
(``ShardingRefused``) with its ``shard_refusal`` reason.

Control rows: every shard reads control, so every shard folds the same control rows (the journal's rows for control
events, its grants, quarantined control records). Shard 0 owns them: the other shards keep them in their state (their
``restore`` may need them) but hide them from everything they publish, digest or send (``Processor.control_rows``
names, per table, the column that holds a row's input topic; ``hidden_rows`` makes the store's filter).

Digest: the state digest (``processors.runtime.store``) is per table a row count and exact sums of the rows'
SHA-256 lanes, a multiset hash, so the digest of the union of the shards is computed exactly from the shards' sums
(``combine``): N instances and one instance give the same combined digest at the same positions.

Signers: each shard signs as ``processor.<name>.shard-I-of-N`` (derived events, views' manifests) and
``processor.<name>.shard-I-of-N.checkpoints`` (state checkpoints): two instances signing as one signer would fork
its chain. A notary shard's signer holds the operator's notary grant of its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ledger import limits
from ledger.errors import ShardingRefused, ValidationError
from processors.runtime.processor import Processor
from processors.runtime.store import QUARANTINE, TableSums, digest_from_sums

SHARD_LABEL = "shard-{index}-of-{count}"  # a shard's directory and signer suffix
_SPEC = re.compile(r"(\d{1,4})/(\d{1,4})")


@dataclass(frozen=True, slots=True, order=True)
class Shard:
    """Instance ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    @property
    def label(self) -> str:
        """``shard-I-of-N``: the shard's directory under the processor's, and its signers' suffix."""
        return SHARD_LABEL.format(index=self.index, count=self.count)

    def owns(self, partition: int) -> bool:
        """Whether this instance reads ``partition`` of a data input topic (control is read by every instance)."""
        return partition % self.count == self.index

    @property
    def owns_control_rows(self) -> bool:
        """Shard 0 publishes, digests and sends what control records make (module docstring)."""
        return self.index == 0


def parse_shard(text: str, field: str = "--shard") -> Shard:
    """``"I/N"`` as a Shard; ``ValidationError`` naming ``field`` unless 0 <= I < N <= ``limits.MAX_SHARDS``."""
    m = _SPEC.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValidationError(field, text, "must be I/N: this instance's number I (from 0) of N instances, e.g. 0/3")
    index, count = int(m.group(1)), int(m.group(2))
    if not 1 <= count <= limits.MAX_SHARDS:
        raise ValidationError(field, text, f"N (instances) must be between 1 and {limits.MAX_SHARDS}")
    if index >= count:
        raise ValidationError(field, text, f"I must be below N (instances are numbered 0 to {count - 1})")
    return Shard(index, count)


def check_instances(value: int, field: str = "--instances") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limits.MAX_SHARDS:
        raise ValidationError(field, value, f"must be a whole number of instances from 1 to {limits.MAX_SHARDS}")
    return value


def all_shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(check_instances(count))]


def require_shardable(processor: type[Processor] | Processor, shard: Shard) -> None:
    """``ShardingRefused`` unless ``processor`` is partition-local (its ``shard_refusal`` says why not)."""
    if shard.count == 1 and shard.index == 0:
        return  # one instance of one: the processor as it always ran (but in a shard's directory)
    if not (processor.shardable or processor.exchanges):
        raise ShardingRefused(
            "processor", processor.name,
            f"cannot run as several instances: {processor.shard_refusal}",
            shard=shard.label,
            hint="run it as one instance (without --instances/--shard); splitting it needs its inputs re-keyed by "
                 "the roll-up key (repartition topics), which is not built yet")


def shard_signer_suffix(shard: Shard | None) -> str:
    """``.shard-I-of-N`` (appended to ``processor.<name>``), or "" for the unsharded processor."""
    return "" if shard is None else f".{shard.label}"


def hidden_rows(processor: Processor, shard: Shard | None, control_topic: str) -> dict[str, str]:
    """Per table, the SQL condition of the rows this shard keeps but never publishes, digests or sends: the rows
    control records made, on every shard but shard 0 (module docstring). The topic is a SQL string literal.

    A replicated processor's shard (``Processor.replicated``, ``processors.runtime.exchange``) keeps every row of
    the whole state and hides those whose owner key (``row_owner_sql``) is another shard's; rows without one are
    shard 0's. An exchange-sharded processor's ``control_tables`` are kept whole on every shard and shown by 0."""
    hidden: dict[str, str] = {}
    if shard is not None and not shard.owns_control_rows:
        for table in processor.control_tables:
            hidden[table] = "TRUE"
    if shard is not None and processor.replicated:
        for v in processor.views:
            expr = processor.row_owner_sql(v.name)
            if expr is not None:
                hidden[v.name] = f"{owner_sql(expr, shard.count)} <> {shard.index}"
            elif not shard.owns_control_rows:
                hidden[v.name] = "TRUE"
    if shard is None or shard.owns_control_rows:
        return hidden
    literal = "'" + control_topic.replace("'", "''") + "'"
    hidden[QUARANTINE.name] = f"topic = {literal}"
    for table, column in processor.control_rows.items():
        hidden[table] = f"{column} = {literal}"
    return hidden


def owner_index(key: str, count: int) -> int:
    """The shard (0 .. count-1) that owns ``key``: the first 8 bytes of its SHA-256, big-endian, modulo ``count``
    (stable across processes, machines and Python versions, unlike ``hash``); ``owner_sql`` is the same in SQL."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count


def owner_sql(key_expr: str, count: int) -> str:
    """``owner_index`` of the VARCHAR SQL expression ``key_expr``, in DuckDB."""
    return f"(('0x' || substr(sha256({key_expr}), 1, 16))::UBIGINT % {int(count)})"


def combine(parts: Iterable[Mapping[str, TableSums]]) -> dict[str, object]:
    """The state digest of the union of the shards' rows, from each shard's per-table sums (``Store.table_sums``):
    row counts and lane sums add, exactly (no modulus), so the result is the digest one instance holding every
    row would compute."""
    total: dict[str, TableSums] = {}
    for part in parts:
        for table, (n, sums) in part.items():
            t_n, t_sums = total.get(table, (0, [0] * len(sums)))
            total[table] = (t_n + n, [a + b for a, b in zip(t_sums, sums, strict=True)])
    return digest_from_sums(total)
