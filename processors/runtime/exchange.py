"""Sharding through an exchange: a processor whose state crosses partitions, run as N instances that fold, together,
exactly what one instance folds (Kafka Streams' repartition pattern, in the log's one order).

Each shard I of N is two runners in one process, each on its own DuckDB file and positions:

* the **router** reads the data partitions shard I owns (``p % N == I``) and control, in the log's one order
  (``ledger.log.order``), verifies them as every reader does, and sends each accepted event to the shards that own
  its keys (``Processor.route``; the owner of key k is ``owner_index(k, N)``) as signed, chained exchange records
  (``ledger.wire.exchange``) on one single-partition topic per (sender, target): ``<prefix>.<name>.exchange.
  shard-J-of-N.to-I``. Every exchange record carries the router's *mark*: the order key through which it has routed
  every record of its partitions. Records its verification refuses go to its own shard's quarantine.
* the **owner** reads the N topics addressed to it and control, and folds, in the log's one order, every control
  record and every event routed to it with a key at or below the least of its routers' marks: the events any one
  instance would fold, in the order it would fold them, so decisions that depend on order (a reservation racing
  another for an org's last budget, an alert's crossing) come out the same. It keeps only the rows and derived
  events of the keys it owns (``Processor.row_owner``, ``derived_owner``; rows every shard makes alike from control
  belong to shard 0), so the union of the shards' rows is the one instance's, and the combined state digest
  (``processors.runtime.shards.combine``) is the one instance's digest.

What a processor promises by ``exchanges = True``: every event that can change a row reaches that row's owner
(``route``), and the state of keys a shard does not own never changes the rows of keys it owns (a shard folds
events about other keys too, those keys' state there is partial).

Crash safety: each runner commits its state with its positions (``processors.runtime.runner``); an exchange record is
in the router's outbox in the same commit as the positions it covers and is produced once (found on the log after a
crash, skipped); the owner commits the exchange positions, the chain heads and marks of its routers, and the key
through which it released, with the state those made. Records read but not yet released (a router ahead of the
others) are held in memory, at most ``limits.MAX_EXCHANGE_BUFFERED_RECORDS``, and read again after a restart.

Only on logs with one order (embedded, in-memory, Kafka): the marks are keys of that order.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ledger import limits
from ledger.errors import LogError, RejectCode, RejectError, ShardingRefused
from ledger.integrity.chain import Head
from ledger.integrity.checkpoints import control_keyring
from ledger.integrity.keyring import KeyInfo, KeyRing
from ledger.integrity.keys import SigningKey
from ledger.integrity.verify import Verifier, Where
from ledger.log import Log, Record, judges_by_log_order, order
from ledger.wire import codec
from ledger.wire import exchange as wire
from processors.runtime.processor import BROADCAST, Effects, Item, Processor, Quarantined
from processors.runtime.runner import OutboxRecord, Runner, Verified, idle_pause
from processors.runtime.shards import Shard, owner_index
from processors.runtime.store import Store

ROUTER_FILE = "router.duckdb"  # the router's state file, beside the owner's in the shard's directory
SENT_MARK_META = "exchange_sent_mark"  # router: the mark of its last exchange records (JSON item key)
RELEASED_META = "exchange_released"  # owner: the item key through which it folded
_FULL = wire.LAST_INDEX


def exchange_topic(prefix: str, name: str, sender: Shard, target: int) -> str:
    """The single-partition topic from shard ``sender``'s router to shard ``target``'s owner."""
    return f"{prefix}.{name}.exchange.{sender.label}.to-{target}"


def ensure_exchange_topic(log: Log, topic: str) -> None:
    """An exchange topic has one partition (its records are one pair's chain, read in order); ``LogError`` when
    the topic exists with more (made by hand, or by a tool with another default)."""
    n = log.ensure_topic(topic, 1)
    if n != 1:
        raise LogError("an exchange topic must have exactly one partition", topic=topic, partitions=n,
                          hint="delete the topic (no processor has read it whole) and start the shards again")


def pair_chain(signer_id: str, target: int) -> str:
    """The producer-chain name of one (sender, target) pair in the router's store."""
    return f"{signer_id}>to-{target}"


def require_exchange_log(log: Log, name: str, shard: Shard) -> None:
    if not judges_by_log_order(log):
        raise ShardingRefused("processor", name, "cannot run as several instances on a log without one order",
                              shard=shard.label, log=log.url,
                              hint="use the embedded log or Kafka (both order every record)")


def _item_key(k: order.OrderKey, index: int = _FULL) -> wire.ItemKey:
    return (k[0], k[1], k[2], k[3], index)


def _key_text(k: wire.ItemKey | None) -> str:
    return "" if k is None else json.dumps(list(k))


def load_item_key(text: str | None) -> wire.ItemKey | None:
    if not text:
        return None
    t, topic, p, off, i = json.loads(text)
    return (int(t), str(topic), int(p), int(off), int(i))


# ---------------------------------------------------------------- the router


class Routing(Processor):
    """The router's processor: no views, so its fold changes nothing (``RouterRunner.step`` routes instead)."""

    name = "router"
    views = ()
    shardable = True  # it reads only its shard's partitions (and control), and keeps no view

    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        """A router keeps no views: whatever it reads changes none (``RouterRunner.step`` routes instead of folding)."""
        return Effects()


def routing_for(processor: Processor) -> Routing:
    cls: type[Routing] = type(f"{type(processor).__name__}Routing", (Routing,),
                              {"name": processor.name, "topics": processor.topics,
                               "data_records_per_poll": processor.data_records_per_poll})
    return cls()


class RouterRunner(Runner):
    """Shard I's router: reads its partitions and control, verifies, routes accepted events to their owners."""

    def __init__(self, processor: Processor, log: Log, store: Store, *, shard: Shard, key: SigningKey,
                 anchors: dict[str, bytes], topic_prefix: str = "ledger", produce: bool = True,
                 stop_at: dict[tuple[str, int], int] | None = None,
                 crash_hook: Callable[[str], None] | None = None, max_records: int | None = None) -> None:
        require_exchange_log(log, processor.name, shard)
        self.inner = processor
        self.xshard = shard
        super().__init__(routing_for(processor), log, store, anchors=anchors, topic_prefix=topic_prefix, key=key,
                         produce=produce, stop_at=stop_at, crash_hook=crash_hook, max_records=max_records,
                         shard=shard)
        self.targets = [exchange_topic(topic_prefix, processor.name, shard, t) for t in range(shard.count)]
        for t in self.targets:
            ensure_exchange_topic(log, t)
        self.heads = {t: store.producer_head(pair_chain(key.signer_id, t)) for t in range(shard.count)}
        self._observe_control_read()
        self.sent_mark = load_item_key(store.meta(SENT_MARK_META, ""))
        self._next_idle_check = 0.0

    def _observe_control_read(self) -> None:
        """The routing state ``observe_control`` keeps, rebuilt from the control records this router has read (a
        fresh verifier over them: only what every reader accepts is observed)."""
        if type(self.inner).observe_control is Processor.observe_control:
            return  # the processor's routes need no control
        verifier = Verifier(KeyRing(self.anchors, by_log_order=True))
        end = self.positions.get((self._control, 0), 0)
        nxt = 0
        while nxt < end:
            recs = self.log.read(self._control, 0, nxt, min(limits.MAX_RUNNER_CONTROL_RECORDS, end - nxt),
                                 timeout_s=0.0)
            if not recs:
                break
            for r in recs:
                if r.offset >= end:
                    return
                nxt = r.offset + 1
                try:
                    acc = verifier.check_record(r.value, Where.of(r))
                except RejectError:
                    continue
                for d in acc.events:
                    self.inner.observe_control(Item(r, acc.key_id, d, d.event.event_id in acc.backfilled))

    def _check_continues_committed(self, positions: dict[tuple[str, int], int], batch_no: int,
                                   outbox: list[OutboxRecord]) -> None:
        saved_key, self.key = self.key, None  # the pairs' chains are checked below, not the processor's own
        try:
            super()._check_continues_committed(positions, batch_no, outbox)
        finally:
            self.key = saved_key
        assert self.key is not None
        for t in range(self.xshard.count):
            mine = [r for r in outbox if r.topic == self.targets[t]]
            self._check_outbox_chain(pair_chain(self.key.signer_id, t), mine, mine[-1].head if mine else self.heads[t])

    def _save_outbox(self, outbox: list[OutboxRecord], signer_id: str | None = None, head: Head | None = None) -> None:
        if not outbox:
            return
        assert self.key is not None
        self.store.add_outbox([(r.topic, r.key, r.value) for r in outbox])
        for t in range(self.xshard.count):
            mine = [r for r in outbox if r.topic == self.targets[t]]
            if mine:
                self.store.save_producer(pair_chain(self.key.signer_id, t), mine[-1].head)

    def step(self, timeout_s: float = 0.0) -> int:
        self._require_ready()
        self.through = None
        records = self._step_poll()
        try:
            verified = self._step_verify(records)
            moved = verified.positions != self.positions
            through = None if self.through is None else _item_key(self.through)
            if self.sent_mark is not None and (through is None or through < self.sent_mark):
                through = self.sent_mark  # a mark never goes back (a clock stepping back makes the cut smaller)
            if not moved and not self._idle_mark_due(through):
                idle_pause(timeout_s)
                return 0
            assert through is not None
            outbox, heads = self._envelopes(verified, through)
            verified.meta[SENT_MARK_META] = _key_text(through)
            self.crash("before_commit")
            self._step_commit(Effects(), verified, outbox)
            self.heads, self.sent_mark = heads, through
            self.stats.records += len(records)
        except BaseException as e:
            self._fail(e)
            raise
        self.crash("after_commit")
        self._step_produce(outbox)
        return len(records)

    def _idle_mark_due(self, through: wire.ItemKey | None) -> bool:
        """An idle router sends its mark on while some input holds a record its last mark does not cover (another
        router's events wait for it at their owners); once the mark passes the inputs' last records it is quiet."""
        if through is None or (self.sent_mark is not None and through <= self.sent_mark):
            return False
        now = time.monotonic()
        if self.stop_at is None and now < self._next_idle_check:
            return False
        self._next_idle_check = now + limits.EXCHANGE_IDLE_MARK_MS / 1000
        last = last_input_key(self.log, self._input_topics(), self.stop_at)
        return last is not None and (self.sent_mark is None or self.sent_mark < last)

    def _envelopes(self, verified: Verified, through: wire.ItemKey) -> tuple[list[OutboxRecord], dict[int, Head]]:
        count = self.xshard.count
        items: dict[int, list[wire.Routed]] = {t: [] for t in range(count)}
        refused: dict[int, list[wire.Refused]] = {t: [] for t in range(count)}
        index = 0
        previous: Record | None = None
        for it in verified.items:
            rec = it.record
            index = index + 1 if rec is previous else 0
            previous = rec
            if rec.topic == self._control:
                self.inner.observe_control(it)
                continue  # every owner reads control itself, in the same order
            routed = wire.Routed(rec.topic, rec.partition, rec.offset, index, rec.append_time_us, it.key_id,
                                 it.backfilled, it.decoded.raw)
            keys = self.inner.route(it)
            targets = range(count) if BROADCAST in keys else sorted({owner_index(k, count) for k in keys})
            for t in targets:
                items[t].append(routed)
        for q in verified.quarantined:
            if q.record.topic == self._control:
                continue  # every owner quarantines it alike; shard 0 keeps it
            r = q.record
            evidence = json.dumps(q.evidence, sort_keys=True, default=str)
            refused[self.xshard.index].append(wire.Refused(r.topic, r.partition, r.offset, r.append_time_us, q.code,
                                                           q.reason, evidence, len(r.value),
                                                           r.value[:limits.MAX_EXCHANGE_REFUSED_BYTES]))
        assert self.key is not None
        out: list[OutboxRecord] = []
        heads = dict(self.heads)
        for t in range(count):
            for chunk_items, chunk_refused, mark in _chunks(items[t], refused[t], through):
                prev = heads[t]
                unsigned = wire.ExchangeRecord(sender=self.key.signer_id, key_id=self.key.key_id,
                                          sender_index=self.xshard.index, target=t, count=count, seq=prev.seq + 1,
                                          prev_hash=prev.hash, through=mark, items=chunk_items,
                                          quarantined=chunk_refused)
                signed = dataclasses.replace(unsigned, signature=self.key.sign(wire.signing_bytes(unsigned)))
                value = wire.encode(signed)
                heads[t] = Head(prev.seq + 1, wire.record_hash(value))
                out.append(OutboxRecord(self.targets[t], self.key.signer_id.encode(), value, prev=prev, head=heads[t]))
        return out, heads


def _chunks(items: list[wire.Routed], refused: list[wire.Refused],
            through: wire.ItemKey) -> list[tuple[list[wire.Routed], list[wire.Refused], wire.ItemKey]]:
    """Items and refused records cut into exchange records of at most ``MAX_EXCHANGE_RECORD_BYTES``, in key order;
    each record but the last is marked through its own last key (everything of this pair up to it is in), the last
    through the router's mark. At least one record: a mark alone tells the owner the router has moved on."""
    entries: list[tuple[wire.ItemKey, wire.Routed | wire.Refused]] = sorted(
        [(i.item_key, i) for i in items] + [(q.item_key, q) for q in refused], key=lambda e: e[0])
    out: list[tuple[list[wire.Routed], list[wire.Refused], wire.ItemKey]] = []
    cur_i: list[wire.Routed] = []
    cur_q: list[wire.Refused] = []
    size = 0
    last: wire.ItemKey | None = None
    for key, e in entries:
        n = len(e.event if isinstance(e, wire.Routed) else e.value) + len(e.topic) + 96
        if (cur_i or cur_q) and size + n > limits.MAX_EXCHANGE_RECORD_BYTES:
            assert last is not None
            out.append((cur_i, cur_q, last))
            cur_i, cur_q, size = [], [], 0
        if isinstance(e, wire.Routed):
            cur_i.append(e)
        else:
            cur_q.append(e)
        size += n
        last = key
    out.append((cur_i, cur_q, through))
    return out


def last_input_key(log: Log, topics: list[str], stop_at: dict[tuple[str, int], int] | None = None
                   ) -> wire.ItemKey | None:
    """The largest order key among the last records of every partition of ``topics`` (up to a replay's stop
    positions): what every router's mark must pass before the owners have folded everything."""
    best: wire.ItemKey | None = None
    for topic in topics:
        for p in range(log.partitions(topic)):
            end = log.end_offset(topic, p)
            if stop_at is not None:
                end = min(end, stop_at.get((topic, p), 0))
            if end <= 0:
                continue
            recs = log.read(topic, p, end - 1, 1, timeout_s=0.0)
            if recs:
                k = _item_key(order.order_key(recs[-1]))
                best = k if best is None or k > best else best
    return best


# ---------------------------------------------------------------- the owner


_Entry = tuple[wire.ItemKey, Item | None, Quarantined | None]  # one thing to fold, at its place in the order


@dataclass(frozen=True, slots=True)
class _Read:
    """One exchange record read: verified (``rec``, and the pair's chain head after it) or refused (``bad``)."""

    offset: int
    rec: wire.ExchangeRecord | None
    bad: Quarantined | None
    head: Head


@dataclass
class _Source:
    """One router's topic as the owner reads it: committed position, chain head and mark (of the last exchange
    record folded whole), and what was read and verified beyond them."""

    topic: str
    sender_index: int
    position: int
    head: Head
    mark: wire.ItemKey | None
    next_read: int = 0
    read_head: Head = field(default_factory=lambda: Head(0, wire.GENESIS))
    buffered: list[_Read] = field(default_factory=list)

    def last_mark(self) -> wire.ItemKey | None:
        for r in reversed(self.buffered):
            if r.rec is not None:
                return r.rec.through
        return self.mark


class OwnerRunner(Runner):
    """Shard I's owner: folds control and the events its routers sent it in the log's one order (module doc)."""

    def __init__(self, processor: Processor, log: Log, store: Store, *, shard: Shard, anchors: dict[str, bytes],
                 topic_prefix: str = "ledger", key: SigningKey | None = None, produce: bool = True,
                 crash_hook: Callable[[str], None] | None = None, checkpoint_key: SigningKey | None = None,
                 router: RouterRunner | None = None) -> None:
        require_exchange_log(log, processor.name, shard)
        self.xshard = shard
        self.router = router
        processor._owner_keys = lambda key: owner_index(key, shard.count) == shard.index
        self._sources_topics = [exchange_topic(topic_prefix, processor.name, Shard(j, shard.count), shard.index)
                                for j in range(shard.count)]
        for t in self._sources_topics:
            ensure_exchange_topic(log, t)
        super().__init__(processor, log, store, anchors=anchors, topic_prefix=topic_prefix, key=key, produce=produce,
                         crash_hook=crash_hook, checkpoint_key=checkpoint_key)
        self._links = None  # exchange records are not chains of events: no legacy links to fill
        self.released = load_item_key(store.meta(RELEASED_META, ""))
        self.sources: list[_Source] = []
        for j, topic in enumerate(self._sources_topics):
            head = _parse_head(store.meta(f"exchange_in_head:{j}", "") or "")
            mark = load_item_key(store.meta(f"exchange_in_mark:{j}"))
            src = _Source(topic, j, self.positions[(topic, 0)], head, mark)
            src.next_read, src.read_head = src.position, src.head
            self.sources.append(src)
        self._senders: KeyRing | None = None
        self._control_end_scanned = -1

    def _input_topics(self) -> list[str]:
        return [self.topic("control"), *self._sources_topics]

    # ------------------------------------------------------------ reading the routers

    def _fill(self) -> None:
        """Read on from the routers whose marks hold the others back (or that have nothing buffered), within the
        buffer's bound: a router ahead of the others is not read further until the slowest catches up."""
        marks = [s.last_mark() for s in self.sources]
        lowest = None if any(m is None for m in marks) else min(m for m in marks if m is not None)
        for s, m in zip(self.sources, marks, strict=True):
            # a router with records buffered is read on only while its mark is the lowest: what is buffered stays
            # within one read (MAX_EXCHANGE_READ_RECORDS) per router beyond what the cut releases
            if s.buffered and m is not None and lowest is not None and m > lowest:
                continue
            recs = self.log.read(s.topic, 0, s.next_read, limits.MAX_EXCHANGE_READ_RECORDS, timeout_s=0.0)
            for r in recs:
                if r.offset < s.next_read:
                    continue
                s.next_read = r.offset + 1
                try:
                    rec = self._check(s, r)
                except RejectError as e:
                    s.buffered.append(_Read(r.offset, None, Quarantined(r, e.code.value, e.reason, dict(e.evidence)),
                                            s.read_head))
                    continue
                s.read_head = Head(rec.seq, wire.record_hash(r.value))
                s.buffered.append(_Read(r.offset, rec, None, s.read_head))

    def _check(self, s: _Source, r: Record) -> wire.ExchangeRecord:
        """One exchange record, decoded and verified: the sender's registered processor key, its signature, this
        pair and its chain. RejectError naming what is wrong otherwise."""
        rec = wire.decode(r.value)
        expected_sender = f"processor.{self.processor.name}.{Shard(s.sender_index, self.xshard.count).label}"
        if (rec.sender, rec.sender_index, rec.target, rec.count) != (
                expected_sender, s.sender_index, self.xshard.index, self.xshard.count):
            raise RejectError(RejectCode.SIGNER_MISMATCH, "exchange record is not from this topic's router to this "
                              "shard", signer_id=rec.sender, expected=expected_sender, topic=r.topic,
                              target=rec.target, count=rec.count)
        info = self._sender_key(rec.sender, rec.key_id)
        if info.role != "processor":
            raise RejectError(RejectCode.NOT_PROCESSOR, "exchange records are signed by processor keys",
                              signer_id=rec.sender, key_id=rec.key_id, role=info.role)
        if info.revoked:
            raise RejectError(RejectCode.REVOKED_KEY, "exchange record signed with a revoked key",
                              signer_id=rec.sender, key_id=rec.key_id)
        if not info.public.verify(rec.signature, wire.signing_bytes(rec)):
            raise RejectError(RejectCode.BAD_SIGNATURE, "exchange record signature does not verify",
                              signer_id=rec.sender, key_id=rec.key_id, seq=rec.seq)
        if rec.seq != s.read_head.seq + 1 or rec.prev_hash != s.read_head.hash:
            code = RejectCode.SEQUENCE_GAP if rec.seq > s.read_head.seq + 1 else RejectCode.FORK
            raise RejectError(code, "exchange record does not continue its pair's chain", signer_id=rec.sender,
                              expected=s.read_head.seq + 1, actual=rec.seq, topic=r.topic, offset=r.offset)
        if s.last_mark() is not None and rec.through < s.last_mark():  # type: ignore[operator]
            raise RejectError(RejectCode.INVALID_FIELD, "exchange mark goes back", field="through",
                              signer_id=rec.sender, seq=rec.seq)
        return rec

    def _sender_key(self, sender: str, key_id: str) -> KeyInfo:
        """A router's key as the whole control topic registers it (the owner folds control only up to its cut, which
        may lie before the registration; read again only when control grew, so a forged key id costs no scan)."""
        try:
            if self._senders is None:
                raise RejectError(RejectCode.UNKNOWN_KEY, "no key ring read yet")
            return self._senders.check(sender, key_id, None)
        except RejectError:
            end = self.log.end_offset(self._control, 0)
            if end == self._control_end_scanned:
                raise
        self._senders = control_keyring(self.log, self._control, self.anchors)
        self._control_end_scanned = end
        return self._senders.check(sender, key_id, None)

    # ------------------------------------------------------------ the step

    def step(self, timeout_s: float = 0.0) -> int:
        routed = self.router.step() if self.router is not None else 0
        self._require_ready()
        try:
            self._fill()
            marks = [s.last_mark() for s in self.sources]
            cut = None if any(m is None for m in marks) else min(m for m in marks if m is not None)
            control, cut = self._read_control(cut)
            verified = self._release(cut, control)
            if verified is None:
                if routed == 0:
                    idle_pause(timeout_s)
                return routed
            items = verified.items
            fx = keep_owned(self.processor.fold(items, verified.quarantined), self.processor, self.xshard)
            outbox = self._step_sign(fx.derived)
            self.crash("before_commit")
            self._step_commit(fx, verified, outbox)
            self._after_commit(cut)
        except BaseException as e:
            self._fail(e)
            raise
        self.crash("after_commit")
        self._step_produce(outbox)
        return routed + len(items) + 1

    def _read_control(self, cut: wire.ItemKey | None) -> tuple[list[Record], wire.ItemKey | None]:
        """Control records at or below ``cut`` from the position on (every one of them is on the log already: a
        router's mark covers control it read); the cut lowered to the last one read when the bound stops the read."""
        tp = (self._control, 0)
        if cut is None:
            return [], None
        out: list[Record] = []
        nxt = self.positions[tp]
        while len(out) < limits.MAX_RUNNER_CONTROL_RECORDS:
            recs = self.log.read(tp[0], 0, nxt, limits.MAX_RUNNER_CONTROL_RECORDS - len(out), timeout_s=0.0)
            if not recs:
                return out, cut
            for r in recs:
                if r.offset < nxt:
                    continue
                if _item_key(order.order_key(r), 0) > cut:
                    return out, cut
                out.append(r)
                nxt = r.offset + 1
        return out, min(cut, _item_key(order.order_key(out[-1])))

    def _release(self, cut: wire.ItemKey | None, control: list[Record]) -> Verified | None:
        """What folds now: control and routed events with keys above the last release and at or below ``cut``, in
        key order, with the positions, chain heads and marks of the exchange records released whole. None when
        nothing moves."""
        if cut is None:
            return None
        v = Verified(positions=dict(self.positions))
        entries = self._control_entries(control, v)
        for s in self.sources:
            entries.extend(self._source_entries(s, cut, v))
        if v.positions == self.positions and not entries:
            return None
        entries.sort(key=lambda e: e[0])
        v.meta[RELEASED_META] = _key_text(cut if self.released is None else max(cut, self.released))
        v.items = [e[1] for e in entries if e[1] is not None]
        v.quarantined = [e[2] for e in entries if e[2] is not None]
        return v

    def _control_entries(self, control: list[Record], v: Verified) -> list[_Entry]:
        """The control records read, verified in order (the verifier's ring moves with them)."""
        entries: list[_Entry] = []
        for r in control:
            v.positions[(r.topic, 0)] = r.offset + 1
            try:
                acc = self.verifier.check_record(r.value, Where.of(r))
            except RejectError as e:
                if self.xshard.index == 0:  # every owner refuses it alike; shard 0 keeps it (and folds it)
                    entries.append((_item_key(order.order_key(r), 0), None,
                                    Quarantined(r, e.code.value, e.reason, dict(e.evidence))))
                continue
            v.touched.add(acc.signer_id)
            for i, d in enumerate(acc.events):
                entries.append((_item_key(order.order_key(r), i),
                                Item(r, acc.key_id, d, d.event.event_id in acc.backfilled), None))
                v.ring_changed = v.ring_changed or d.event.body.CONTROL
        return entries

    def _source_entries(self, s: _Source, cut: wire.ItemKey, v: Verified) -> list[_Entry]:
        """One router's events and refused records to release, and (into ``v``) the position, chain head and mark
        after the exchange records it releases whole."""
        entries: list[_Entry] = []
        released = self.released
        whole = 0
        for read in s.buffered:
            rec = read.rec
            if rec is None:
                if read.bad is not None:  # an exchange record refused: quarantined once its place is passed
                    entries.append(((-1, "", s.sender_index, read.offset, 0), None, read.bad))
                whole += 1
                continue
            for it in rec.items:
                k = it.item_key
                if (released is None or k > released) and k <= cut:
                    rec_ = Record(it.topic, it.partition, it.offset, None, b"", it.append_time_us)
                    entries.append((k, Item(rec_, it.key_id, codec.decode_event(it.event), it.backfilled), None))
            for q in rec.quarantined:
                k = q.item_key
                if (released is None or k > released) and k <= cut:
                    rec_ = Record(q.topic, q.partition, q.offset, None, q.value, q.append_time_us)
                    entries.append((k, None, Quarantined(rec_, q.code, q.reason, json.loads(q.evidence_json))))
            if _last_key(rec) > cut:
                break  # some of it waits for the other routers' marks: read again from here after a restart
            whole += 1  # folded whole (its mark may lie beyond the cut: it is kept as the router's mark)
        if whole:
            last = s.buffered[whole - 1]
            v.positions[(s.topic, 0)] = last.offset + 1
            v.meta[f"exchange_in_head:{s.sender_index}"] = f"{last.head.seq}:{last.head.hash.hex()}"
            good = next((r.rec for r in reversed(s.buffered[:whole]) if r.rec is not None), None)
            if good is not None:
                v.meta[f"exchange_in_mark:{s.sender_index}"] = _key_text(good.through)
        return entries

    def _after_commit(self, cut: wire.ItemKey | None) -> None:
        if cut is not None:
            self.released = cut if self.released is None else max(cut, self.released)
        for s in self.sources:
            pos = self.positions[(s.topic, 0)]
            while s.buffered and s.buffered[0].offset < pos:
                read = s.buffered.pop(0)
                s.head = read.head
                if read.rec is not None:
                    s.mark = read.rec.through
            s.position = pos

    # ------------------------------------------------------------ progress

    def caught_up(self) -> bool:
        """Everything on the inputs is folded: the router has read its partitions, every routed event up to the
        inputs' last record is released, and nothing is buffered."""
        if self.router is not None and not self.router.caught_up():
            return False
        if any(s.buffered for s in self.sources) or not super().caught_up():
            return False
        inputs = self.router._input_topics() if self.router is not None else []
        last = last_input_key(self.log, inputs) if inputs else None
        return last is None or (self.released is not None and self.released >= last)


def _last_key(rec: wire.ExchangeRecord) -> wire.ItemKey:
    """The largest key an exchange record carries (its items and refused records come in key order)."""
    keys = [k for k in (rec.items[-1].item_key if rec.items else None,
                        rec.quarantined[-1].item_key if rec.quarantined else None) if k is not None]
    return max(keys) if keys else (-1, "", 0, 0, 0)


def _parse_head(text: str) -> Head:
    if not text:
        return Head(0, wire.GENESIS)
    seq, _, h = text.partition(":")
    return Head(int(seq), bytes.fromhex(h))


# ---------------------------------------------------------------- keeping what a shard owns


def keep_owned(fx: Effects, processor: Processor, shard: Shard) -> Effects:
    """The effects of the rows and derived events ``shard`` owns (``Processor.row_owner``, ``derived_owner``; an
    owner key None is shard 0's). The rows of ``Processor.control_tables`` stay whole on every shard (a restart
    restores from them; the store hides them on every shard but 0), as every row of a replicated processor does."""
    def mine(key: str | None) -> bool:
        return shard.index == 0 if key is None else owner_index(key, shard.count) == shard.index

    def keeper(table: str) -> Callable[[dict[str, Any]], bool]:
        return lambda row: mine(processor.row_owner(table, row))

    out = Effects(statements=fx.statements, derived=[d for d in fx.derived if mine(processor.derived_owner(d))])
    if processor.replicated:  # every row stays: the whole state folds on, the store hides other shards' rows
        out.appends, out.upserts = fx.appends, fx.upserts
        return out
    for table, parts in fx.appends.items():
        for cols in parts:
            out.append(table, cols if table in processor.control_tables else _filter(cols, keeper(table)))
    for table, parts in fx.upserts.items():
        for cols in parts:
            out.upsert(table, cols if table in processor.control_tables else _filter(cols, keeper(table)))
    return out


def _filter(cols: dict[str, Any], keep: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    names = list(cols)
    values = [c.to_pylist() if isinstance(c, (pa.Array, pa.ChunkedArray)) else list(c) for c in cols.values()]
    mask = [keep(dict(zip(names, row, strict=True))) for row in zip(*values, strict=True)]
    if all(mask):
        return cols
    out: dict[str, Any] = {}
    for name, col, vals in zip(names, cols.values(), values, strict=True):
        if isinstance(col, (pa.Array, pa.ChunkedArray)):
            out[name] = col.filter(pa.array(mask))
        else:
            out[name] = [v for v, m in zip(vals, mask, strict=True) if m]
    return out



def positions_through(log: Log, topics: list[str], key: wire.ItemKey) -> dict[tuple[str, int], int]:
    """Per partition of ``topics``: the offset of its first record with an order key above ``key`` (its end when
    there is none), found by bisection (a partition's keys grow with its offsets)."""
    out: dict[tuple[str, int], int] = {}
    for topic in topics:
        for p in range(log.partitions(topic)):
            lo, hi = 0, log.end_offset(topic, p)
            while lo < hi:
                mid = (lo + hi) // 2
                recs = log.read(topic, p, mid, 1, timeout_s=0.0)
                if recs and _item_key(order.order_key(recs[0]), 0) <= key:
                    lo = recs[0].offset + 1
                else:
                    hi = mid
            out[(topic, p)] = lo
    return out
