"""Publishing the rows of an append-only view as plain records on a topic of their own, once per row.

The journal uses it for ``<prefix>.events.flat`` (``processors.journal.FlatEvents``): every row of its ``events``
view becomes one unsigned record. A runtime hook of its own, not a step of ``Runner``: it runs at the service's edge
(``processors.host.service.serve`` calls ``tick`` after every step and ``drain`` when stopping; a replay never opens
it), reading rows the runner has COMMITTED, so nothing in the runner changes.

Exactly once per row, and why (the runner's outbox keeps signed records until they are produced; here the view's
rows, committed with the positions they reflect, are that outbox, and a cursor says how far they were published):

1. Order. Rows go out in (``_batch``, input topic, partition, offset, seq) order, in chunks of ``FLAT_CHUNK_ROWS``.
   For one record key (the agent) and one input partition, that is increasing (offset, seq): batches advance every
   input partition monotonically, whatever their boundaries, so a rebuild of the state with other batches produces
   each (key, input partition) sequence in the same order.
2. Confirmation. After an append returns (durable: the log's contract), one store transaction saves the cursor
   (the last row published), the flat topic's end offsets as the scan marks, and the pending set (3). A crash
   before it leaves records on the log past the marks that the cursor does not cover.
3. Start: every record past the marks is read back and decoded to (key, input topic, partition, offset, seq); per
   (key, input partition) the largest (offset, seq) is kept in the pending set (with the saved one). A row whose
   (offset, seq) is at or below its pending entry is already on the log: skipped. The entry goes once a row reaches
   it. Sound because an append that fails leaves, per log partition, a prefix of what it was given (SQLite: one
   transaction; Kafka: the idempotent producer keeps each partition in order), and each key lives in one partition,
   so per (key, input partition) the records on the log are always a prefix of the sequence in 1.
4. Failure: an append or a confirmation that raises ends the edge (``FlatPublisherFailed`` from then on); the
   service fails and restarts from the saved cursor, marks and pending set (3 again).

A rebuild from an empty state file on a log that already has the flat topic scans it whole once (no marks yet) and
republishes nothing that is there. A replay (``tokenledger replay``) never publishes. Crash points (the service's
``--crash-at``): ``before_flat_produce``, ``after_flat_produce``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.errors import FlatPublisherFailed
from ledger.log import Record
from processors.runtime.runner import Runner
from processors.runtime.view import View

FLAT_CHUNK_ROWS = 5_000  # rows read, encoded and appended at a time: memory holds one chunk
FLAT_SCAN_READ_RECORDS = 5_000  # records read back per call when scanning past the marks
META_CURSOR = "flat_cursor:{topic}"  # store meta: JSON [batch, topic, partition, offset, seq] of the last row sent
META_MARKS = "flat_marks:{topic}"  # store meta: JSON {log partition: end offset} at the last confirmation
META_PENDING = "flat_pending:{topic}"  # store meta: JSON [[key, topic, partition, offset, seq], ...] (see 3)
ORDER = ("_batch", "topic", "log_partition", "log_offset", "seq")  # the publishing order (1): columns of the view

# (record key, input topic, input partition) -> the largest (offset, seq) of it on the flat topic, not yet reached
Pending = dict[tuple[str, str, int], tuple[int, int]]


@dataclass(frozen=True)
class FlatFormat:
    """How rows become records: ``encode(values) -> (key, value)`` with ``values`` the view's public columns in
    order; ``position(record) -> (key, input topic, input partition, offset, seq)`` reads one back."""

    encode: Callable[[tuple[Any, ...]], tuple[bytes, bytes]]
    position: Callable[[Record], tuple[str, str, int, int, int]]
    describe: str  # for the status and errors: "confluent schema id 3 at URL" / "avro single-object"


class FlatPublisher:
    """The edge publishing ``view``'s committed rows to ``topic`` (see the module docstring)."""

    def __init__(self, runner: Runner, view: View, topic: str, fmt: FlatFormat, partitions: int) -> None:
        self.runner = runner
        self.store = runner.store
        self.log = runner.log
        self.view = view
        self.topic = topic
        self.fmt = fmt
        self.columns = view.public_columns
        self.failed: str | None = None
        self.published = 0
        self.log.ensure_topic(topic, partitions)
        self._meta = {k: m.format(topic=topic) for k, m in
                      (("cursor", META_CURSOR), ("marks", META_MARKS), ("pending", META_PENDING))}
        self.cursor: list[Any] | None = _loads(self.store.meta(self._meta["cursor"]))
        self.marks: dict[int, int] = {int(p): int(o) for p, o in (_loads(self.store.meta(self._meta["marks"]))
                                                                    or {}).items()}
        self.pending: Pending = {(k, t, int(p)): (int(o), int(s)) for k, t, p, o, s in
                                 _loads(self.store.meta(self._meta["pending"])) or []}
        self._scan()

    # ------------------------------------------------------------ the edge (processors.host.service.NoEdge)

    def tick(self, idle: bool) -> None:
        """After a runner step: publish every row committed since the cursor."""
        self.publish()

    def drain(self) -> None:
        """Stopping normally: publish what is committed."""
        self.publish()

    def stop(self) -> None:
        """Stopping after a failure: nothing is under way between calls."""

    # ------------------------------------------------------------ publishing

    def publish(self) -> int:
        """Publish every committed row after the cursor, a chunk at a time; the records appended."""
        if self.failed is not None:
            raise FlatPublisherFailed("the flat topic's publisher failed earlier and refuses to go on",
                                      topic=self.topic, cause=self.failed,
                                      hint="restart the processor: it resumes from its saved cursor")
        sent = 0
        try:
            while True:
                rows = self._next_rows()
                if not rows:
                    return sent
                sent += self._publish_chunk(rows)
        except BaseException as e:
            self.failed = f"{type(e).__name__}: {e}"
            raise

    def _next_rows(self) -> list[tuple[Any, ...]]:
        order = ", ".join(ORDER)
        cols = ", ".join((*ORDER, *self.columns))
        where = "_batch <= ?"
        params: list[Any] = [self.runner.batch_no]
        if self.cursor is not None:
            # _batch >= first: lets DuckDB skip row groups of published batches by their min/max
            where += f" AND _batch >= ? AND ({order}) > (?, ?, ?, ?, ?)"
            params += [self.cursor[0], *self.cursor]
        # a shard's hidden rows (processors.runtime.shards: control rows, published by shard 0 only) are skipped
        return self.store.query(f"SELECT {cols} FROM {self.store.visible(self.view.name)} WHERE {where} "  # noqa: S608  (names from code)
                                f"ORDER BY {order} LIMIT ?", [*params, FLAT_CHUNK_ROWS])

    def _publish_chunk(self, rows: list[tuple[Any, ...]]) -> int:
        n = len(ORDER)
        out: list[tuple[bytes | None, bytes]] = []
        for r in rows:
            key, value = self.fmt.encode(r[n:])
            where = (key.decode(), str(r[1]), int(r[2]))
            seen = self.pending.get(where)
            if seen is not None:
                if (int(r[3]), int(r[4])) >= seen:
                    del self.pending[where]  # reached: every later row of it is after what is on the log
                if (int(r[3]), int(r[4])) <= seen:
                    continue  # already on the log (module docstring, 3)
            out.append((key, value))
        self.runner.crash("before_flat_produce")
        marks = dict(self.marks)
        if out:
            for pos in self.log.append(self.topic, out):
                marks[pos.partition] = max(marks.get(pos.partition, 0), pos.offset + 1)
        self.runner.crash("after_flat_produce")
        cursor = [int(rows[-1][0]), str(rows[-1][1]), int(rows[-1][2]), int(rows[-1][3]), int(rows[-1][4])]
        with self.store.transaction():
            self.store.set_meta(self._meta["cursor"], json.dumps(cursor))
            self.store.set_meta(self._meta["marks"], json.dumps({str(p): o for p, o in sorted(marks.items())}))
            self.store.set_meta(self._meta["pending"], json.dumps(
                [[k, t, p, o, s] for (k, t, p), (o, s) in sorted(self.pending.items())]))
        self.cursor, self.marks = cursor, marks
        self.published += len(out)
        return len(out)

    def _scan(self) -> None:
        """Module docstring, 3: what is on the topic past the marks, as pending entries (only for the input
        partitions this runner reads: records of another instance's partitions are never ours to skip)."""
        mine = {tp for tp in self.runner.positions}
        for p in range(self.log.partitions(self.topic)):
            offset = self.marks.get(p, 0)
            end = self.log.end_offset(self.topic, p)
            while offset < end:
                recs = self.log.read(self.topic, p, offset, FLAT_SCAN_READ_RECORDS)
                if not recs:
                    break
                for rec in recs:
                    if rec.offset < offset:
                        continue
                    key, topic, partition, off, seq = self.fmt.position(rec)
                    if (topic, partition) in mine:
                        k = (key, topic, partition)
                        self.pending[k] = max(self.pending.get(k, (-1, -1)), (off, seq))
                offset = recs[-1].offset + 1

    def status(self) -> dict[str, Any]:
        return {"topic": self.topic, "format": self.fmt.describe, "published": self.published,
                "cursor": self.cursor, "pending": len(self.pending), "failed": self.failed}


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None
