"""The one order of a log with a total clock: which records a reader may process now, and in what order.

On a log whose append times are one strictly increasing clock (``total_order``: the embedded and the
in-memory log), the append time IS the order in which records were appended, across every topic and
partition. A processor that folds records in that order — control events interleaved with the data
around them exactly as they were appended — reaches the same state live, under any batch size and
arrival timing, as a replay from offset 0. That is the rule that lets a control event (a key
revocation, a price, a budget policy) apply to the data appended after it and never to the data
appended before it, whatever time any producer claims.

A reader cannot see the future, so it may process only a prefix of that order it knows to be complete:

1. observe the log's clock ``clock_us`` BEFORE reading (every record appended later gets a larger time);
2. read each partition from its position;
3. a partition whose read reached its end (or a replay's stop position) holds no unread record with a
   time <= the observed clock; a partition whose read was cut short by a bound holds no unread record
   with a time <= its last read record's;
4. so every record with ``append_time_us <= cut`` (the smallest of those bounds) is known, and those are
   processed, sorted by append time; the rest wait for a later poll (positions do not move past them).

Kafka (``merge_by_append_time``) has no clock over the log: each partition's leader stamps its own records,
and the test broker (Tansu) keeps the producer's CreateTime (``ledger.log.kafka``). Append times are still
fixed by the stored records (a running maximum per partition), so every reader computes the same ones, but
they may tie, and nothing about one partition's times bounds another's. The one order there is
``order_key``: (append time, topic, partition, offset) — a function of the stored log only, offset order
within a partition (its times never decrease). A control event applies to the data after it in that order.
A live reader releases a prefix of it (``ready_in_merged_order``), the embedded rule with its own clock
standing in for the log's:

1. read its clock ``horizon_us`` BEFORE reading (minus ``limits.MERGED_ORDER_MARGIN_MS``);
2. read every partition, data first and control last, each until a read comes back empty (``read`` then
   checked a high-water mark fetched after the call began) or a bound cuts it short;
3. a partition cut short holds no unread record with a key below its last read record's (the next one has a
   time >= it and a larger offset); a partition read to its end holds only records appended after the
   horizon was read, which the log's promise (below) dates at or after the horizon;
4. so every record with ``order_key <= cut`` (the smallest bound of step 3) and a time strictly before the
   horizon is known; those are processed in key order, the rest wait (positions do not move past them).

The promise: a record appended after the reader read its clock is stamped no earlier than that reading
minus the margin. It holds when the stamping clock (the broker's with ``LogAppendTime``; on Tansu the
producer's, which also stamps before the send's network delay) is at most the margin behind the reader's.
The strict "before the horizon" makes millisecond ties harmless (a later record in the same millisecond
as a released one would sort by topic name, not by arrival). A record stamped ahead of the reader's clock
(a writer whose clock runs fast) simply waits until the reader's clock passes it. Replay and ``verify`` do
not rely on the promise (they merge finished partitions by key); only a live reader does, and where it
fails a record sorts before records already folded: ``late_records`` finds it and the runner refuses to
fold past it rather than diverge from a replay silently.

Pure: no I/O. The caller does the reads (``processors.runtime.runner``, ``ledger.integrity.verify.audit``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger import limits
from ledger.log.base import Record

TopicPartition = tuple[str, int]
OrderKey = tuple[int, str, int, int]


def ready_in_log_order(reads: Mapping[TopicPartition, list[Record]], complete: set[TopicPartition],
                       clock_us: int) -> list[Record]:
    """The records of ``reads`` that come before every record not yet read, in append-time order.

    ``reads``: per partition, the records read from the reader's position, in offset order.
    ``complete``: the partitions whose read reached the end of what may be read.
    ``clock_us``: the log's clock observed before any of the reads.
    """
    cut = clock_us
    for tp, recs in reads.items():
        if tp in complete:
            continue
        if not recs:
            return []  # nothing is known of this partition's next record: nothing is safe yet
        cut = min(cut, recs[-1].append_time_us)
    ready = [r for recs in reads.values() for r in recs if r.append_time_us <= cut]
    ready.sort(key=lambda r: r.append_time_us)
    return ready


def order_key(record: Record) -> OrderKey:
    """A record's place in a merged log (Kafka): append time, then topic, partition and offset to break ties."""
    return (record.append_time_us, record.topic, record.partition, record.offset)


def ready_in_merged_order(reads: Mapping[TopicPartition, list[Record]], complete: set[TopicPartition],
                          horizon_us: int | None = None) -> list[Record]:
    """The records of ``reads`` that come before every record not yet read, in ``order_key`` order.

    ``reads``: per partition, the records read from the reader's position, in offset order.
    ``complete``: the partitions whose read ended at an empty read (or a replay's stop position).
    ``horizon_us``: the reader's clock read before its reads, less the margin (None in a replay, whose stop
    positions say everything): only records stamped strictly before it are released.
    """
    cut: OrderKey | None = None
    for tp, recs in reads.items():
        if tp in complete:
            continue
        if not recs:
            return []  # nothing is known of this partition's next record: nothing is safe yet
        last = order_key(recs[-1])
        cut = last if cut is None or last < cut else cut
    # both conditions bound a prefix of the key order (times never decrease along it), so together they do
    ready = [r for recs in reads.values() for r in recs
             if (cut is None or order_key(r) <= cut) and (horizon_us is None or r.append_time_us < horizon_us)]
    ready.sort(key=order_key)
    return ready


def late_records(records: list[Record], passed: OrderKey | None) -> list[Record]:
    """Records that sort before ``passed``, the key of the last record a reader already folded: appended after
    the reader went past their place in the order (possible only where the log's promise fails, see the module
    doc). Folding one would make live state differ from a replay."""
    if passed is None:
        return []
    return [r for r in records if order_key(r) < passed]


# The largest topic, partition and offset a key can hold: (t, TOP...) sorts after every record stamped t.
_TOP_TOPIC = "\U0010ffff"
_TOP_PARTITION = 2**31 - 1
_TOP_OFFSET = limits.INT64_MAX


def through_in_log_order(reads: Mapping[TopicPartition, list[Record]], complete: set[TopicPartition],
                         clock_us: int) -> OrderKey | None:
    """The key through which ``ready_in_log_order`` released every record of ``reads``' partitions (every record of
    them with a key at or below it was released now or before); None when nothing is known yet. A sharded
    processor's router sends it to the owners as its mark (``processors.runtime.exchange``)."""
    cut = clock_us
    for tp, recs in reads.items():
        if tp in complete:
            continue
        if not recs:
            return None
        cut = min(cut, recs[-1].append_time_us)
    return (cut, _TOP_TOPIC, _TOP_PARTITION, _TOP_OFFSET)


def through_in_merged_order(reads: Mapping[TopicPartition, list[Record]], complete: set[TopicPartition],
                            horizon_us: int | None) -> OrderKey | None:
    """Like ``through_in_log_order`` for ``ready_in_merged_order``: the smaller of the cut (the least last key of a
    partition read short) and the horizon (records stamped before it); with neither (a replay that read every
    partition to its stop), past every key."""
    cut: OrderKey | None = None
    for tp, recs in reads.items():
        if tp in complete:
            continue
        if not recs:
            return None
        last = order_key(recs[-1])
        cut = last if cut is None or last < cut else cut
    if horizon_us is not None:
        before = (horizon_us - 1, _TOP_TOPIC, _TOP_PARTITION, _TOP_OFFSET)
        cut = before if cut is None or before < cut else cut
    return (2**62, _TOP_TOPIC, _TOP_PARTITION, _TOP_OFFSET) if cut is None else cut
