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

Pure: no I/O. The caller does the reads (``processors.runtime.runner``, ``ledger.integrity.verify.audit``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.log.base import Record

TopicPartition = tuple[str, int]


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
