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
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

DEFAULT_TOPIC = "ledger.events"
TOPICS = ("ledger.control", "ledger.events", "ledger.allocations", "ledger.settlements", "ledger.alerts", "ledger.checkpoints",
          "ledger.rejected")


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int = 0  # when the backend stored it; informational only, never used to derive state


@dataclass(frozen=True, slots=True)
class Position:
    partition: int
    offset: int


@runtime_checkable
class Log(Protocol):
    url: str

    def ensure_topic(self, topic: str, partitions: int = 1) -> int:
        """Create the topic if missing; return its partition count (an existing topic keeps its count)."""
        ...

    def topics(self) -> list[str]: ...

    def partitions(self, topic: str) -> int:
        """Partition count of an existing topic (LogError if it does not exist)."""
        ...

    def append(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Position]: ...

    def read(self, topic: str, partition: int, offset: int, max_records: int = 1000,
             timeout_s: float = 0.0) -> list[Record]: ...

    def read_key(self, topic: str, key: bytes, after_offset: int = -1, max_records: int = 1000) -> list[Record]:
        """Records of one key in its partition after an offset (a producer reconciling its chain head,
        a processor finding its own derived records after a crash)."""
        ...

    def end_offset(self, topic: str, partition: int) -> int: ...

    def close(self) -> None: ...


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
