"""The log interface every backend implements (embedded SQLite, Kafka, in-memory).

A log is a set of topics; a topic has a fixed number of partitions; a partition is an append-only
sequence of records numbered from offset 0 with no gaps. A record has an optional key and a value
(bytes). Records with the same key always land in the same partition, so one signer's batches stay
in order. Positions belong to the readers (processors keep their own offsets); a backend keeps no
consumer state.

Contract (tests/contract runs the same suite against every backend):
- ``append`` returns only after every record is durable in the backend's sense (fsync'd SQLite
  transaction; acks=all in Kafka), with the assigned (partition, offset) of each, in input order.
  If it raises, the caller must assume any subset may have been appended (retry is safe: readers
  detect duplicates by content).
- ``read`` returns records of one partition with offset >= ``offset``, in offset order, at most
  ``max_records``; if none are available it waits up to ``timeout_s`` for some, then returns [].
- ``end_offset`` is the high-water mark: the offset the next appended record will get.
- Append time: every record carries ``append_time_us`` (microseconds since the epoch), assigned by the
  log when the record is appended, never by the producer, stored with the record, and returned by
  every read of it unchanged (so a replay sees the same values). Per partition it never decreases:
  a record's append time is >= the append time of the record before it in that partition (records
  of one append, or of one clock tick, may share a value; the offset orders them). ``append`` returns
  each record's append time in its Position, equal to what every read of that record returns.
- Total order: a log with ``total_order = True`` (embedded, in-memory) gives every record a distinct
  append time, strictly increasing over the whole log in append order, and ``clock_us()`` returns the
  largest given so far (every later record gets a larger one). Readers then process the log in one
  order that no batch size or arrival timing changes: ``ledger.log.order``. A Kafka cluster has no
  such clock across partitions (``total_order = False``); it declares ``merge_by_append_time = True``
  instead: readers merge its partitions by (append time, topic, partition, offset), the order
  ``ledger.log.order`` defines for it. A log that declares neither is read control first.
- Size: the key plus value of one record is at most ``limits.MAX_RECORD_BYTES``; every backend refuses a
  larger one at append with ``RecordTooLargeError`` (a ValidationError naming the size), before writing
  any record of the call. One number for all backends, below Kafka's default message size, so a log that
  works embedded also works on a Kafka cluster with default settings.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Protocol, TypeGuard, runtime_checkable

from ledger import limits
from ledger.errors import RecordTooLargeError, ValidationError

DEFAULT_TOPIC = "ledger.events"
TOPICS = ("ledger.control", "ledger.events", "ledger.allocations", "ledger.settlements", "ledger.alerts",
          "ledger.checkpoints", "ledger.rejected", "ledger.events.flat")


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    append_time_us: int  # assigned by the log at append (see the module doc); identical on every read

    @property
    def timestamp_ms(self) -> int:
        """The append time in milliseconds (what processors read before append_time_us existed)."""
        return self.append_time_us // 1000


@dataclass(frozen=True, slots=True)
class Position:
    partition: int
    offset: int
    append_time_us: int  # the append time the log assigned this record: what every read of it returns


def check_records(topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """What every backend checks before it writes anything: types, and the size limit per record."""
    for i, (key, value) in enumerate(records):
        if not isinstance(value, (bytes, bytearray)) or (key is not None and not isinstance(key, (bytes, bytearray))):
            raise ValidationError("record", i, "key must be bytes or None and value bytes", topic=topic)
        size = len(value) + (len(key) if key else 0)
        if size > limits.MAX_RECORD_BYTES:
            raise RecordTooLargeError(size, limits.MAX_RECORD_BYTES, topic=topic, index=i)


def next_append_time_us(previous_us: int) -> int:
    """The append time for a record that follows one appended at ``previous_us`` in its partition: the wall
    clock, held at ``previous_us`` while the clock is behind it (a step back, or another writer's clock), so a
    partition's append times never decrease."""
    return max(time.time_ns() // 1000, previous_us)


@runtime_checkable
class Log(Protocol):
    """What every log backend offers: topics of partitions of records, appended and read by offset."""

    url: str
    total_order: bool  # see the module doc: append times are one strictly increasing clock over the log
    records_per_append: int  # signed records an emitter hands to one append (more where it is a round trip)

    def ensure_topic(self, topic: str, partitions: int = 1) -> int:
        """Create the topic if missing; return its partition count (an existing topic keeps its count)."""
        ...

    def topics(self) -> list[str]: ...

    def partitions(self, topic: str) -> int:
        """Partition count of an existing topic (LogError if it does not exist)."""
        ...

    def append(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Position]:
        """Append in order; the (partition, offset, append time) of each record, in input order."""
        ...

    def read(self, topic: str, partition: int, offset: int, max_records: int = 1000,
             timeout_s: float = 0.0) -> list[Record]: ...

    def read_key(self, topic: str, key: bytes, after_offset: int = -1, max_records: int = 1000) -> list[Record]:
        """Records of one key in its partition after an offset (a producer reconciling its chain head,
        a processor finding its own derived records after a crash)."""
        ...

    def end_offset(self, topic: str, partition: int) -> int: ...

    def close(self) -> None: ...


class TotalOrderLog(Log, Protocol):
    """A log with ``total_order = True``: its append times are one clock over the whole log."""

    def clock_us(self) -> int:
        """The largest append time given so far; every record appended later gets a larger one."""
        ...


def has_total_order(log: Log) -> TypeGuard[TotalOrderLog]:
    """Whether ``log`` keeps one clock over the whole log (and so has ``clock_us``)."""
    return bool(getattr(log, "total_order", False))


def has_merged_order(log: Log) -> bool:
    """Whether readers merge ``log``'s partitions by append time without a clock over it (Kafka)."""
    return bool(getattr(log, "merge_by_append_time", False))


def judges_by_log_order(log: Log) -> bool:
    """Whether readers of ``log`` fold control and data in one append order (so a key ring judges revocations
    by that order, ``KeyRing(by_log_order=True)``), rather than control first by event time."""
    return has_total_order(log) or has_merged_order(log)


def partition_for(key: bytes | None, partitions: int) -> int:
    """Embedded/in-memory partitioner: CRC-32 of the key (Kafka uses murmur2; any stable hash works)."""
    if partitions <= 1 or key is None:
        return 0
    return zlib.crc32(key) % partitions


def read_all(log: Log, topic: str, *, batch: int = 5000) -> list[Record]:
    """Every record of a topic, partition by partition (tests, audits of small logs)."""
    out: list[Record] = []
    for p in range(log.partitions(topic)):
        offset = 0
        end = log.end_offset(topic, p)
        while offset < end:
            recs = log.read(topic, p, offset, batch)
            if not recs:
                break
            out.extend(recs)
            offset = recs[-1].offset + 1
    return out
