"""The processor runtime: poll → verify → fold → one DuckDB transaction → produce → flush.

``Runner.step`` is one turn of the loop, in numbered steps (the comments ``# Step N`` match):

1. Poll a bounded batch of records from the processor's own positions (never broker offsets).
2. Verify each record (schema, signature, registered and unrevoked key, chain): accepted records
   become items, bad ones become quarantined entries (processing continues).
3. ``fold`` (pure) turns the batch into effects: rows to append, statements, derived events.
4. Sign the derived events with the processor's key, chained, into outbox records.
5. One DuckDB transaction: the effects, the quarantine rows, the verifier's new state, the outbox
   records, the new positions. Commit.
6. Produce the outbox records to the log (skipping any already there), then clear them: a bounded chunk
   (``limits.MAX_OUTBOX_CHUNK_RECORDS``) at a time, so memory holds one chunk whatever the batch derived.

Each step is a method (``_step_poll``, ``_step_verify``, ``fold``, ``_step_sign``, ``_step_commit``,
``_step_produce``); ``step`` lists them. The named crash points (before_commit, inside_commit,
after_commit, before_produce, after_produce) are where a crash hook may stop the runner dead.

A step that fails after verification began leaves the runner FAILED: the verifier's chain heads (and
the producer head, and the processor's memory) may be ahead of what was committed, so it refuses to
step on (``RunnerFailedError``) and the process restarts from its tracking rows. Inside the commit
the runner checks that the batch continues the committed state (positions only move forward, batch
numbers go up by one, derived records continue the committed producer chain) and raises
``RunnerInvariantError`` with the evidence otherwise.

Delivery guarantee (exactly-once *effect*): the state and the positions it reflects commit together,
so a crash before step 5 redoes the batch from the old positions, and a crash after it resumes after
the batch. Derived records are in the outbox from the same commit; on start the runner produces any
that are not yet on the log (step 6 again), so none is lost and none is produced twice.

Chains: the processor's derived events (fold's, and ``emit``'s) are one chain, signed by ``key``
(``processor.<name>``) onto its derived topic; its state checkpoints are another, signed by ``checkpoint_key``
(``processor.<name>.checkpoints``) onto ``<prefix>.checkpoints`` (``emit_state``). Each chain on one topic, so a
reader of a derived topic sees its producer's whole chain. A gap that state checkpoints of an older version fill
is closed by ``processors.runtime.links`` (step 2).

Wall-clock time is used only for pacing (publish cadence, rates in the status file), never for state.
"""

from __future__ import annotations

import enum
import gc
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ledger import limits
from ledger.errors import LogRewoundError, RejectCode, RejectError, RunnerFailedError, RunnerInvariantError
from ledger.integrity.chain import Head
from ledger.integrity.keys import SigningKey
from ledger.integrity.verify import Accepted, Verifier, Where
from ledger.log import Log, Record, has_merged_order, judges_by_log_order, order
from ledger.wire import codec
from ledger.wire.events import EMPTY_CONTEXT
from processors.runtime.links import LegacyLinks
from processors.runtime.processor import Derived, Effects, Item, Processor, Quarantined
from processors.runtime.shards import Shard, require_shardable
from processors.runtime.store import Store

GC_GEN0_THRESHOLD = 200_000  # allocations between young-generation collections (default 700)
PASSED_META = "merged_order_passed"  # store meta: order key of the last record folded (merged-order logs)


@runtime_checkable
class ClockedLog(Protocol):
    """A log with one clock over all its partitions (``total_order = True``: embedded, in-memory): the
    largest append time given so far, which ``ledger.log.order`` needs to read in the log's one order."""

    def clock_us(self) -> int: ...


class Crash(BaseException):
    """Raised by a simulation's crash hook to stop the runner dead at a named point."""


class RunnerState(enum.Enum):
    """READY: in-memory state equals the committed state, ``step`` may run. FAILED: a step failed after
    verification began, so the verifier, the producer head and the processor's memory may be ahead of
    the file; the runner refuses to step (or emit) again, and a new one resumes from the tracking rows."""

    READY = "ready"
    FAILED = "failed"


@dataclass
class Verified:
    """What step 2 made of a polled batch: items to fold, quarantined records, the positions after it,
    and what the verifier state to save covers (signers whose chains moved, whether the key ring did)."""

    positions: dict[tuple[str, int], int]
    items: list[Item] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    ring_changed: bool = False
    passed: order.OrderKey | None = None  # merged-order logs: the key of the batch's last record
    meta: dict[str, str] = field(default_factory=dict)  # more store meta committed with the batch (exchange marks)


@dataclass(frozen=True)
class OutboxRecord:
    """One signed record of derived events, with the producer chain head before and after its events:
    the commit checks that each record continues the previous one and the first the committed head."""

    topic: str
    key: bytes | None
    value: bytes
    prev: Head
    head: Head


@dataclass
class Stats:
    batches: int = 0
    records: int = 0
    events: int = 0
    rejected: int = 0
    produced: int = 0
    started: float = field(default_factory=time.monotonic)
    last_error: str | None = None


class Runner:
    def __init__(self, processor: Processor, log: Log, store: Store, *, anchors: dict[str, bytes],
                 topic_prefix: str = "ledger", key: SigningKey | None = None, produce: bool = True,
                 stop_at: dict[tuple[str, int], int] | None = None,
                 crash_hook: Callable[[str], None] | None = None,
                 max_records: int | None = None, checkpoint_key: SigningKey | None = None,
                 shard: Shard | None = None) -> None:
        if shard is not None:
            require_shardable(processor, shard)
        self.shard = shard  # None: every partition; else only the data partitions this instance owns
        self.processor = processor
        self.log = log
        self.prefix = topic_prefix
        self.store = store
        self.anchors = anchors
        self.key = key
        # signs the processor's StateCheckpoints, on a chain of their own (``emit_state`` says why)
        self.checkpoint_key = checkpoint_key
        self.produce = produce
        self.stop_at = stop_at  # replay: never read past these positions
        self.crash = crash_hook or (lambda point: None)
        self.max_records = processor.data_records_per_poll if max_records is None else max_records
        self.stats = Stats()
        self.state = RunnerState.READY
        self.failure: str | None = None  # what put the runner in FAILED
        ring, chains = store.load_verifier(anchors)
        ring.by_log_order = judges_by_log_order(log)  # the order _step_poll reads in
        self.verifier = Verifier(ring, chains)
        declared = set(self._input_topics())
        # the topics the processor reads, and only those: a position its file kept for a topic this version no
        # longer reads (deliveries read <prefix>.checkpoints until state checkpoints had a chain of their own)
        # stays in the file and is never read on
        self._control = self.topic("control")
        self.positions = {tp: o for tp, o in store.positions().items() if tp[0] in declared and self.owns(tp)}
        self.batch_no = store.batch()
        for topic in self._input_topics():
            log.ensure_topic(topic)
            for p in range(log.partitions(topic)):
                if self.owns((topic, p)):
                    self.positions.setdefault((topic, p), 0)
        self.producer_head = store.producer_head(key.signer_id) if key else Head(0, bytes(32))
        self._merged = not getattr(log, "total_order", False) and has_merged_order(log)
        self._passed = _load_key(store.meta(PASSED_META, "")) if self._merged else None
        # the key through which the last poll released every record of the inputs (None: nothing known, or a log
        # without one order): a sharded processor's router sends it on (processors.runtime.exchange)
        self.through: order.OrderKey | None = None
        # legacy links (processors.runtime.links): gaps in a chain read on a derived topic may be state checkpoints
        # an older version signed on that chain; a reader of the checkpoints topic reads them in order anyway
        derived_inputs = declared - {self._control, self.topic("events")}
        self._links = (LegacyLinks(log, self.topic("checkpoints"))
                       if derived_inputs and "checkpoints" not in processor.topics else None)
        self._derived_inputs = derived_inputs
        rank = {t: i for i, t in enumerate(self._input_topics())}
        self._order = sorted(self.positions, key=lambda tp: (rank.get(tp[0], len(rank)), tp[1]))
        # append-mode views carry the commit batch number, so publishing can export only new rows
        self._batched = {v.name for v in processor.views if any(c.name == "_batch" for c in v.columns)}
        # publishing: table -> the last batch (of this runner) that wrote it, so an unchanged snapshot-mode
        # view is not re-exported; "*" when a batch ran SQL statements (they may write any table)
        self.written: dict[str, int] = {}
        processor.restore(store.query)
        if produce:
            self.flush_outbox()
        _tune_gc()

    def topic(self, logical: str) -> str:
        return f"{self.prefix}.{logical}"

    def _input_topics(self) -> list[str]:
        """The topics this runner reads, control first (an exchange owner reads its routers' topics instead of the
        processor's data topics: ``processors.runtime.exchange``)."""
        return [self.topic(t) for t in self.processor.topics]

    def owns(self, tp: tuple[str, int]) -> bool:
        """Whether this runner reads ``tp``: every partition, or a shard's own data partitions and control."""
        return self.shard is None or tp[0] == self._control or self.shard.owns(tp[1])

    # ------------------------------------------------------------ the loop

    def lag(self) -> dict[tuple[str, int], int]:
        return {tp: max(0, self._end(tp) - off) for tp, off in self.positions.items()}

    def _end(self, tp: tuple[str, int]) -> int:
        end = self._checked_end(tp)
        if self.stop_at is not None:
            end = min(end, self.stop_at.get(tp, 0))
        return end

    def _checked_end(self, tp: tuple[str, int]) -> int:
        """The log's end of ``tp``; ``LogRewoundError`` if it is below the committed position: the log went
        backwards (a broker restarted empty, a topic recreated). Reading on would skip the records that new
        appends put at offsets this processor counts as read, so it stops and says so."""
        end = self.log.end_offset(*tp)
        if end < self.positions.get(tp, 0):
            raise LogRewoundError(
                "the log ends before this processor's committed position: it went backwards",
                processor=self.processor.name, topic=tp[0], partition=tp[1], position=self.positions[tp],
                end_offset=end, log=self.log.url,
                hint="was the broker restarted without its data, or the topic deleted and recreated? restore the "
                     "log, or rebuild this processor from the log as it is now (move its state directory away)")
        return end

    def caught_up(self) -> bool:
        return all(v == 0 for v in self.lag().values())

    def step(self, timeout_s: float = 0.0) -> int:
        """One batch. Returns the number of records consumed (0 when there was nothing to read).

        Raises ``RunnerFailedError`` once an earlier step failed between verifying and committing."""
        self._require_ready()
        records = self._step_poll()  # reads only: a failure here leaves the runner as it was
        try:
            verified = self._step_verify(records)
            if verified.positions == self.positions:
                idle_pause(timeout_s)
                return 0
            fx = self.processor.fold(verified.items, self._quarantined_to_fold(verified))  # Step 3: fold (pure)
            outbox = self._step_sign(fx.derived)
            self.crash("before_commit")
            self._step_commit(fx, verified, outbox)
            self.stats.records += len(records)
        except BaseException as e:
            self._fail(e)
            raise
        self.crash("after_commit")
        self._step_produce(outbox)
        return len(records)

    # ------------------------------------------------------------ the steps

    def _step_poll(self) -> list[Record]:
        """Step 1: poll a bounded batch.

        On a log with a total clock (embedded, in-memory): the next records in the log's one order, control
        and data interleaved exactly as appended (``ledger.log.order``), so a control event applies to the
        data appended after it and to nothing before it, live and in a replay alike.

        On Kafka (no clock across partitions, ``merge_by_append_time``): merged by (append time, topic,
        partition, offset) the same way, a data record held back until control was read past it
        (``ledger.log.order``, ``_poll_in_merged_order``).

        On a log that declares neither: control first, then data partitions in a fixed order, then control
        again: every control event appended before a data record we read is applied before that record is
        judged (a key's registration always precedes its first verdict)."""
        if getattr(self.log, "total_order", False):
            return self._poll_in_log_order()
        if self._merged:
            return self._poll_in_merged_order()
        next_read = dict(self.positions)
        control = [tp for tp in self._order if tp[0] == self._control]
        data = [tp for tp in self._order if tp[0] != self._control]
        records = self._poll(control, next_read, limits.MAX_RUNNER_CONTROL_RECORDS)
        got_data = self._poll(data, next_read, self.max_records)
        if got_data:
            records += self._poll(control, next_read, limits.MAX_RUNNER_CONTROL_RECORDS)
        return records + got_data

    def _step_verify(self, records: list[Record]) -> Verified:
        """Step 2: verify each record. Accepted records become items, bad ones quarantined entries
        (processing continues). Advances the in-memory verifier: from here until the commit, a
        failure leaves it ahead of the committed state, which is why ``step`` then refuses to go on."""
        v = Verified(positions=dict(self.positions))
        if self._merged and records:
            v.passed = order.order_key(records[-1])  # records come in key order on a merged log
        for rec in records:
            tp = (rec.topic, rec.partition)
            if rec.offset < v.positions[tp]:
                # a client re-delivering what we already have: positions are ours, so it is ignored,
                # never applied twice (a gap is fine: Kafka offsets need not be contiguous)
                continue
            v.positions[tp] = rec.offset + 1
            try:
                acc = self.verifier.check_record(rec.value, Where.of(rec))
            except RejectError as e:
                try:
                    acc = self._across_legacy_links(rec, e, v)
                except RejectError as again:
                    v.quarantined.append(Quarantined(rec, again.code.value, again.reason, dict(again.evidence)))
                    continue
            v.touched.add(acc.signer_id)
            for d in acc.events:
                v.items.append(Item(rec, acc.key_id, d, d.event.event_id in acc.backfilled))
                if d.event.body.CONTROL:
                    v.ring_changed = True
        return v

    def _across_legacy_links(self, rec: Record, gap: RejectError, v: Verified) -> Accepted:
        """A record refused for a ``sequence_gap`` on a derived topic, checked again once the signer's legacy state
        checkpoint links that fill the gap (``processors.runtime.links``) are verified into the chain; ``gap``
        re-raised when there are none (a record really missing is still a gap, and everything after it too)."""
        if gap.code is not RejectCode.SEQUENCE_GAP or self._links is None or rec.topic not in self._derived_inputs:
            raise gap
        signer, expected, actual = (gap.evidence.get(k) for k in ("signer_id", "expected", "actual"))
        if not (isinstance(signer, str) and isinstance(expected, int) and isinstance(actual, int)):
            raise gap
        if expected != self.verifier.chains.head(signer).seq + 1:
            raise gap  # a gap inside the record, not at its committed chain head: no link can be meant
        if self._links.fill(self.verifier, signer, expected, actual):
            v.touched.add(signer)  # the links moved its chain head: saved with the batch
        return self.verifier.check_record(rec.value, Where.of(rec))

    def _quarantined_to_fold(self, verified: Verified) -> list[Quarantined]:
        """The quarantined records fold sees: on a shard but shard 0, not those of control, which shard 0 folds
        (its dead letters would otherwise be sent once per shard, by different signers: processors.runtime.shards)."""
        if self.shard is None or self.shard.owns_control_rows:
            return verified.quarantined
        return [q for q in verified.quarantined if q.record.topic != self._control]

    def _step_sign(self, derived: list[Derived]) -> list[OutboxRecord]:
        """Step 4: sign the derived events with the processor's key, chained, into outbox records."""
        return self._sign(derived) if self.key is not None else []

    def _step_commit(self, fx: Effects, verified: Verified, outbox: list[OutboxRecord]) -> None:
        """Step 5: one transaction — the effects, the quarantine rows, the verifier's new state, the
        outbox records, the new positions and the batch number — after checking, against what is
        committed, that this batch continues it (positions, batch number, producer chain)."""
        batch_no = self.batch_no + 1
        st = self.store
        with st.transaction():
            self._check_continues_committed(verified.positions, batch_no, outbox)
            for table, parts in fx.appends.items():
                for cols in parts:
                    if table in self._batched:
                        cols = {**cols, "_batch": [batch_no] * len(next(iter(cols.values())))}
                    st.append(table, cols)
            for table, parts in fx.upserts.items():
                for cols in parts:
                    st.append(table, cols, replace=True)
            for sql, params in fx.statements:
                st.execute(sql, params)
            if verified.quarantined:
                st.append("quarantine", _quarantine_columns(verified.quarantined, batch_no))
            st.save_verifier(self.verifier.chains, verified.touched,
                             self.verifier.keyring if verified.ring_changed else None)
            self._save_outbox(outbox)
            st.save_positions({tp: o for tp, o in verified.positions.items() if o != self.positions.get(tp)})
            st.set_meta("batch", str(batch_no))
            if verified.passed is not None:
                st.set_meta(PASSED_META, json.dumps(verified.passed))
            for k, v in verified.meta.items():
                st.set_meta(k, v)
            self.crash("inside_commit")
        self.positions = verified.positions
        if verified.passed is not None:
            self._passed = verified.passed
        self.batch_no = batch_no
        for table in (*fx.appends, *fx.upserts, *(["*"] if fx.statements else []),
                      *(["quarantine"] if verified.quarantined else [])):
            self.written[table] = batch_no
        self.stats.batches += 1
        self.stats.events += len(verified.items)
        self.stats.rejected += len(verified.quarantined)

    def _step_produce(self, outbox: list[OutboxRecord]) -> None:
        """Step 6: produce the derived records, then forget them. A failure here loses nothing: the
        records stay in the committed outbox and the next flush (or the next start) sends them."""
        if self.produce and outbox:
            self.flush_outbox()

    # ------------------------------------------------------------ state and invariants

    def _require_ready(self) -> None:
        if self.state is not RunnerState.READY:
            raise RunnerFailedError(
                "the runner failed mid-batch and refuses to go on", processor=self.processor.name,
                batch=self.batch_no, cause=self.failure,
                hint="start a new runner on the store: it resumes from the committed tracking rows")

    def _fail(self, e: BaseException) -> None:
        """The verifier (and the producer head, and the processor's in-memory state) may now be ahead
        of what is committed: stepping on would judge later records against uncommitted chain heads."""
        self.state = RunnerState.FAILED
        self.failure = f"{type(e).__name__}: {e}"

    def _violation(self, invariant: str, message: str, **evidence: Any) -> RunnerInvariantError:
        return RunnerInvariantError(message, processor=self.processor.name, invariant=invariant, **evidence)

    def _check_continues_committed(self, positions: dict[tuple[str, int], int], batch_no: int,
                                   outbox: list[OutboxRecord]) -> None:
        """Inside the batch's transaction, before writing: the batch starts where the last commit ended.
        Positions only move forward from the committed ones, batch numbers go up by one, and the
        derived records continue the committed producer chain link by link. A violation means the
        in-memory state and the file disagree (a second writer, a runner stepping past a failure):
        committing would fork the state, so the transaction is rolled back instead."""
        committed = self.store.positions()
        for tp, after in sorted(positions.items()):
            before = committed.get(tp, 0)
            if before != self.positions.get(tp, 0) or after < before:
                raise self._violation("positions_monotonic", "a position would not continue the committed one",
                                      topic=tp[0], partition=tp[1], before=before, after=after,
                                      in_memory=self.positions.get(tp, 0))
        stored_batch = self.store.batch()
        if stored_batch != self.batch_no or batch_no != stored_batch + 1:
            raise self._violation("batch_monotonic", "the batch number would not follow the committed one",
                                  before=stored_batch, after=batch_no)
        if self.key is not None:
            self._check_outbox_chain(self.key.signer_id, outbox, self.producer_head)

    def _check_outbox_chain(self, signer_id: str, outbox: list[OutboxRecord], last: Head) -> None:
        """The records continue ``signer_id``'s committed producer chain link by link and end at ``last``."""
        if not outbox:
            return
        head = self.store.producer_head(signer_id)
        for rec in outbox:
            if rec.prev != head or rec.head.seq < rec.prev.seq + 1:
                raise self._violation("outbox_head_continuity", "a derived record does not continue the producer "
                                      "chain", topic=rec.topic, before=_head_text(head), after=_head_text(rec.prev))
            head = rec.head
        if head != last:
            raise self._violation("outbox_head_continuity", "the producer head to commit is not the outbox's last",
                                  before=_head_text(head), after=_head_text(last))

    def _save_outbox(self, outbox: list[OutboxRecord], signer_id: str | None = None, head: Head | None = None) -> None:
        """The records into the outbox and the chain head after them (default: the processor's own chain)."""
        if outbox:
            assert self.key is not None  # only a runner with a key signs derived records
            self.store.add_outbox([(r.topic, r.key, r.value) for r in outbox])
            self.store.save_producer(signer_id or self.key.signer_id, self.producer_head if head is None else head)

    def _poll_in_log_order(self) -> list[Record]:
        log = self.log
        assert isinstance(log, ClockedLog), "a log with total_order has a clock"  # _step_poll checked total_order
        clock_us = log.clock_us()  # before any read: see ledger.log.order, step 1
        data = [tp for tp in self._order if tp[0] != self._control]
        # every partition is read each poll (a partition left unread would bound nothing and stall the order)
        data_share = max(1, self.max_records // max(1, len(data)))
        byte_share = max(1, limits.MAX_RUNNER_BATCH_BYTES // len(self._order))
        reads: dict[tuple[str, int], list[Record]] = {}
        complete: set[tuple[str, int]] = set()
        for tp in self._order:
            pos = self.positions[tp]
            want = limits.MAX_RUNNER_CONTROL_RECORDS if tp[0] == self._control else data_share
            # the end, measured after the clock, covers every record the clock has seen (an empty read
            # alone proves nothing: a client may come back empty-handed while records exist)
            end = self._checked_end(tp)
            if self.stop_at is not None:
                end = min(end, self.stop_at.get(tp, 0))
            want = min(want, end - pos)
            kept: list[Record] = []
            if want > 0:
                size = 0
                for r in self.log.read(tp[0], tp[1], pos, want, timeout_s=0.0):
                    if r.offset < pos + len(kept):
                        continue  # a re-delivery of what we already have
                    size += len(r.value)
                    if (size > byte_share and kept) or len(kept) == want:
                        break  # the rest waits for a later poll: memory per batch stays bounded
                    kept.append(r)
            reads[tp] = kept
            if (kept[-1].offset + 1 if kept else pos) >= end:
                complete.add(tp)
        self.through = order.through_in_log_order(reads, complete, clock_us)
        return order.ready_in_log_order(reads, complete, clock_us)

    def _poll_in_merged_order(self) -> list[Record]:
        """The next records in a merged log's order (``ledger.log.order``): the clock read first, every data
        partition read to an empty read or its share, then control likewise (so control's end is observed
        after every data record was read); released: the known prefix stamped before the clock reading.
        Refuses records appended behind what was already folded."""
        data = [tp for tp in self._order if tp[0] != self._control]
        control = [tp for tp in self._order if tp[0] == self._control]
        data_share = max(1, self.max_records // max(1, len(data)))
        byte_share = max(1, limits.MAX_RUNNER_BATCH_BYTES // len(self._order))
        # before any read (ledger.log.order, step 1): a replay's stop positions say everything, so it has none
        horizon_us = (None if self.stop_at is not None
                      else time.time_ns() // 1000 - limits.MERGED_ORDER_MARGIN_MS * 1000)
        reads: dict[tuple[str, int], list[Record]] = {}
        complete: set[tuple[str, int]] = set()
        for tp in data + control:  # control last: see the docstring
            want = limits.MAX_RUNNER_CONTROL_RECORDS if tp[0] == self._control else data_share
            reads[tp], ended = self._read_until_empty(tp, want, byte_share)
            if ended:
                complete.add(tp)
        late = order.late_records([r for recs in reads.values() for r in recs], self._passed)
        if late:
            r = late[0]
            raise self._violation(
                "merged_order", "a record was appended behind records already folded (its append time is earlier): "
                "folding it would make this state differ from a replay", topic=r.topic, partition=r.partition,
                offset=r.offset, append_time_us=r.append_time_us, folded_up_to=list(self._passed or ()),
                hint="the writers' clocks disagree (ledger.log.kafka, One order); rebuild this processor's state "
                     "with a replay from offset 0")
        self.through = order.through_in_merged_order(reads, complete, horizon_us)
        return order.ready_in_merged_order(reads, complete, horizon_us)

    def _read_until_empty(self, tp: tuple[str, int], want: int, byte_share: int) -> tuple[list[Record], bool]:
        """Up to ``want`` records (``byte_share`` bytes) of ``tp`` from its position, and whether the reading
        ended at an empty read or the replay's stop position (the partition holds nothing more for now)."""
        nxt = self.positions[tp]
        stop = self.stop_at.get(tp, 0) if self.stop_at is not None else None
        kept: list[Record] = []
        size = 0
        while True:
            if stop is not None and nxt >= stop:
                return kept, True
            n = want - len(kept) if stop is None else min(want - len(kept), stop - nxt)
            if n <= 0:
                return kept, False
            recs = self.log.read(tp[0], tp[1], nxt, n, timeout_s=0.0)
            if not recs:
                return kept, True  # read checked a fresh high-water mark: nothing at nxt when it began
            for r in recs:
                if r.offset < nxt:
                    continue  # a re-delivery of what we already have
                if stop is not None and r.offset >= stop:
                    return kept, True
                size += len(r.value)
                if size > byte_share and kept:
                    return kept, False  # the rest waits for a later poll: memory per batch stays bounded
                kept.append(r)
                nxt = r.offset + 1

    def _poll(self, tps: list[tuple[str, int]], next_read: dict[tuple[str, int], int], budget: int) -> list[Record]:
        out: list[Record] = []
        for tp in tps:
            want = budget - len(out)
            if want <= 0:
                break
            if self.stop_at is not None:
                want = min(want, self.stop_at.get(tp, 0) - next_read[tp])
                if want <= 0:
                    continue
            recs = self.log.read(tp[0], tp[1], next_read[tp], want, timeout_s=0.0)
            size = 0
            for i, r in enumerate(recs):
                size += len(r.value)
                if size > limits.MAX_RUNNER_BATCH_BYTES and i > 0:
                    recs = recs[:i]  # the rest waits for the next batch: memory per batch stays bounded
                    break
            fresh = [r for r in recs if r.offset >= next_read[tp]]
            if fresh:
                next_read[tp] = fresh[-1].offset + 1
            out.extend(recs)
            if size > limits.MAX_RUNNER_BATCH_BYTES:
                break
        return out

    def run_until_caught_up(self, *, max_steps: int | None = None) -> None:
        """Step until a poll finds nothing and the log's ends confirm it (the end check costs a round
        trip on Kafka, so it is made only when a poll comes back empty)."""
        steps = 0
        while True:
            if self.step() == 0 and self.caught_up():
                return
            steps += 1
            if max_steps is not None and steps >= max_steps:
                return

    # ------------------------------------------------------------ derived events

    def emit(self, derived: list[Derived], meta: dict[str, str] | None = None) -> int:
        """Derived events made between batches (on-demand checkpoints, delivery attempts): signed on the
        same producer chain as fold's, committed to the outbox with the chain head (and ``meta``) in one
        transaction, then produced like any batch's. Changes no view. Returns the records produced."""
        if self.key is None or not derived:
            return 0
        self._require_ready()
        head = self.producer_head
        outbox = self._sign(derived)
        try:
            with self.store.transaction():
                self._check_outbox_chain(self.key.signer_id, outbox, self.producer_head)
                self._save_outbox(outbox)
                for k, v in (meta or {}).items():
                    self.store.set_meta(k, v)
        except BaseException:
            self.producer_head = head  # nothing was committed: the chain must not skip ahead
            raise
        if self.produce:
            self.flush_outbox()
        return len(outbox)

    def emit_state(self, derived: list[Derived], meta: dict[str, str] | None = None) -> int:
        """State checkpoints: like ``emit``, but signed with ``checkpoint_key`` on its own chain, whose head lives
        in the store only. Returns the records produced (0 without that key: a replay signs nothing).

        Why a chain of their own: a processor's derived events go to its derived topic, and their readers
        (settlements reads allocations) read that topic, not ``<prefix>.checkpoints``. A state checkpoint signed
        as a link of the same chain was a link those readers never saw: a ``sequence_gap`` at the next derived
        record, and every later record refused after it. One signer id per chain, each chain on one topic, so
        every reader of a topic sees whole chains in partition order, on every log (Kafka's order between topics
        is by append time, which need not be one producer's order: ``processors.host.service``)."""
        if self.key is None or self.checkpoint_key is None or not derived:
            return 0
        self._require_ready()
        signer = self.checkpoint_key.signer_id
        outbox, head = self._sign_chain(derived, self.checkpoint_key, self.store.producer_head(signer))
        with self.store.transaction():
            self._check_outbox_chain(signer, outbox, head)
            self._save_outbox(outbox, signer, head)
            for k, v in (meta or {}).items():
                self.store.set_meta(k, v)
        if self.produce:
            self.flush_outbox()
        return len(outbox)

    def _sign(self, derived: list[Derived]) -> list[OutboxRecord]:
        """The derived events signed on the processor's own chain, which moves ahead in memory (``producer_head``)."""
        assert self.key is not None
        out, self.producer_head = self._sign_chain(derived, self.key, self.producer_head)
        return out

    def _sign_chain(self, derived: list[Derived], key: SigningKey, start: Head) -> tuple[list[OutboxRecord], Head]:
        """The derived events signed by ``key``, chained from ``start``, as outbox records; and the head after them."""
        by_topic: dict[str, list[Derived]] = {}
        for d in derived:
            by_topic.setdefault(d.topic, []).append(d)
        out: list[OutboxRecord] = []
        head = prev = start
        signer = key.signer_id
        v = codec.BATCH_VERSION
        overhead = codec.batch_overhead_bytes(signer, key.key_id, v)

        def seal(topic: str, raws: list[bytes], hashes: list[bytes], prev: Head, head: Head) -> None:
            sig = key.sign(codec.signing_bytes(v, signer, key.key_id, hashes))
            out.append(OutboxRecord(topic, signer.encode(), codec.encode_batch(signer, key.key_id, raws, sig, v),
                                    prev=prev, head=head))

        for logical in sorted(by_topic):
            topic = self.topic(logical)
            raws: list[bytes] = []
            hashes: list[bytes] = []
            size = overhead
            for d in by_topic[logical]:
                content = codec.encode_content(d.event_time_us, EMPTY_CONTEXT, d.body)
                eid = codec.derive_event_id(signer, d.idempotency_key, content)
                raw = codec.assemble_event(event_id=eid, signer_id=signer, seq=head.seq + 1, prev_hash=head.hash,
                                           idempotency_key=d.idempotency_key, content=content)
                item = codec.batch_item_bytes(raw)
                # a record holds at most MAX_BATCH_EVENTS events and MAX_RECORD_BYTES bytes (the log refuses a
                # larger one): a burst of large derived events (dead letters carry their originals) is cut
                if raws and (len(raws) == limits.MAX_BATCH_EVENTS or size + item > limits.MAX_RECORD_BYTES):
                    seal(topic, raws, hashes, prev, head)
                    prev, raws, hashes, size = head, [], [], overhead
                h = codec.event_hash(raw)
                head = Head(head.seq + 1, h)
                raws.append(raw)
                hashes.append(h)
                size += item
            if raws:
                seal(topic, raws, hashes, prev, head)
                prev = head
        return out, head

    def flush_outbox(self) -> None:
        """Produce committed-but-unsent derived records that are not on the log yet, then clear them: one
        chunk of ``limits.MAX_OUTBOX_CHUNK_RECORDS`` records at a time, in outbox order, each chunk cleared
        (with where its records landed) before the next is read, so memory holds one chunk whatever the
        outbox's size, and a crash re-sends at most the chunk in flight (found on the log, skipped).

        "Found on the log" walks our own records past the topic's ``produced_scan`` mark in step with the
        outbox (``_ProducedScan``), a chunk at a time: one producer appends a topic's records in outbox
        order, so a record already there is the next one of ours. A set of every record past the mark held
        them all at once: a rebuild from offset 0 on a log that already carries this processor's output
        (same key, same records) read the whole topic into memory (+250 MB at 1M events)."""
        pending = self.store.outbox()
        # one scan per topic and record key (= signer: the processor's own chain and its state checkpoints' chain
        # may share a topic, the notary's do), each matching that signer's records in outbox order
        scans: dict[tuple[str, bytes | None], _ProducedScan] = {}
        while pending:
            by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
            for _, topic, key, value in pending:
                scan = scans.get((topic, key))
                if scan is None:
                    # positioned once per flush, before this flush produced anything to the topic
                    scan = scans[(topic, key)] = self._produced_scan(topic, key)
                if not scan.already_there(value):
                    by_topic.setdefault(topic, []).append((key, value))
            self.crash("before_produce")
            for topic, recs in by_topic.items():
                self.log.ensure_topic(topic)
                positions = self.log.append(topic, recs)
                last: dict[bytes | None, int] = {}
                for (key, _), pos in zip(recs, positions, strict=True):
                    last[key] = max(last.get(key, -1), pos.offset)
                for key, offset in last.items():
                    scans[(topic, key)].produced(offset)
                self.stats.produced += len(recs)
            self.crash("after_produce")
            upto = pending[-1][0]
            with self.store.transaction():
                self.store.clear_outbox(upto)
                for (topic, key), scan in scans.items():
                    if scan.moved:
                        # where to start looking for our own records if we crash before the next clear
                        self.store.set_meta(self._scan_meta(topic, key), str(scan.mark))
                        scan.moved = False
            pending = self.store.outbox(after=upto)

    def _scan_meta(self, topic: str, key: bytes | None) -> str:
        """The store meta holding a scan's mark: ``produced_scan:<topic>`` for the processor's own chain (as before
        state checkpoints had a chain of their own), ``produced_scan:<topic>:<signer>`` for another signer's."""
        own = None if self.key is None else self.key.signer_id.encode()
        if key == own or key is None:
            return f"produced_scan:{topic}"
        return f"produced_scan:{topic}:{key.decode()}"

    def _produced_scan(self, topic: str, key: bytes | None) -> _ProducedScan:
        self.log.ensure_topic(topic)
        after = int(self.store.meta(self._scan_meta(topic, key), "-1") or -1)
        return _ProducedScan(self.log, topic, None if self.key is None else key, after)

    # ------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        lag = self.lag()
        elapsed = max(time.monotonic() - self.stats.started, 1e-9)
        return {"processor": self.processor.name, "pid": os.getpid(), "batches": self.stats.batches,
                "events": self.stats.events, "records": self.stats.records, "rejected": self.stats.rejected,
                "produced": self.stats.produced, "events_per_s": round(self.stats.events / elapsed, 1),
                "positions": {f"{t}/{p}": o for (t, p), o in sorted(self.positions.items())},
                "lag": sum(lag.values()), "last_error": self.stats.last_error}


class _ProducedScan:
    """Our records on one topic past its ``produced_scan`` mark, read a chunk at a time
    (``limits.MAX_OUTBOX_CHUNK_RECORDS``) and matched against the outbox in order. A match is a record
    produced before a crash (or by an earlier run of this processor with the same key, whose output a
    rebuild re-derives byte for byte): skipped, and the mark moves past it. The first mismatch ends the
    matching for this flush: later records of ours are chained to different predecessors, so none of
    them can equal what we are about to produce."""

    __slots__ = ("_buffer", "_done", "key", "log", "mark", "moved", "topic")

    def __init__(self, log: Log, topic: str, key: bytes | None, mark: int) -> None:
        self.log, self.topic, self.key, self.mark = log, topic, key, mark
        self.moved = False
        self._buffer: list[Record] = []
        self._done = key is None  # without a key we never produced anything to find

    def already_there(self, value: bytes) -> bool:
        if self._done:
            return False
        if not self._buffer:
            assert self.key is not None
            self._buffer = self.log.read_key(self.topic, self.key, self.mark, limits.MAX_OUTBOX_CHUNK_RECORDS)
            self._buffer.reverse()  # popped from the end, oldest first
            if not self._buffer:
                self._done = True
                return False
        if self._buffer[-1].value != value:
            self._done = True
            return False
        self.mark = self._buffer.pop().offset
        self.moved = True
        return True

    def produced(self, last_offset: int) -> None:
        self.mark, self.moved, self._done = last_offset, True, True


def _load_key(text: str | None) -> order.OrderKey | None:
    """The order key saved under PASSED_META ("" before the first batch)."""
    if not text:
        return None
    t, topic, partition, offset = json.loads(text)
    return (int(t), str(topic), int(partition), int(offset))


def idle_pause(timeout_s: float) -> None:
    """After a poll that read nothing: wait up to ``timeout_s`` (at most 50 ms). Pacing only, never state."""
    if timeout_s > 0:
        time.sleep(min(timeout_s, 0.05))  # pacing only: an empty poll must not spin


def _head_text(h: Head) -> str:
    return f"{h.seq}:{h.hash.hex()}"


def _tune_gc() -> None:
    """The runtime allocates tens of thousands of short-lived, acyclic objects per batch (frozen
    events); the cyclic collector scanning them is pure overhead (~20% of a batch). Move what exists
    at start-up out of its sight and collect less often; reference counting still frees everything."""
    gc.freeze()
    if gc.get_threshold()[0] < GC_GEN0_THRESHOLD:
        gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)


def _quarantine_columns(qs: list[Quarantined], batch_no: int) -> dict[str, list[Any]]:
    return {
        "topic": [q.record.topic for q in qs], "log_partition": [q.record.partition for q in qs],
        "log_offset": [q.record.offset for q in qs], "code": [q.code for q in qs], "reason": [q.reason for q in qs],
        "evidence_json": [json.dumps(q.evidence, sort_keys=True, default=str) for q in qs],
        "signer_id": [q.evidence.get("signer_id") for q in qs], "event_id": [q.evidence.get("event_id") for q in qs],
        "original": [q.record.value for q in qs], "original_size": [len(q.record.value) for q in qs],
        "_batch": [batch_no] * len(qs),
    }
