"""A deterministic in-memory log for tests and the simulator (a seam we own, beside the real backends).

Same contract as the other backends except durability: nothing survives the process. Append times come
from the wall clock held per partition (``next_append_time_us``), under the lock that orders appends. ``read`` never
sleeps unless asked; there is no background thread, so a simulation is fully reproducible.
"""

from __future__ import annotations

import threading
import time

from ledger.errors import LogError, ValidationError
from ledger.log.base import Position, Record, check_records, next_append_time_us, partition_for


class MemoryLog:
    def __init__(self) -> None:
        self.url = "memory://"
        self._topics: dict[str, list[list[Record]]] = {}
        self._cond = threading.Condition()

    def ensure_topic(self, topic: str, partitions: int = 1) -> int:
        if not isinstance(partitions, int) or partitions < 1:
            raise ValidationError("partitions", partitions, "must be a positive integer")
        with self._cond:
            parts = self._topics.setdefault(topic, [[] for _ in range(partitions)])
            return len(parts)

    def topics(self) -> list[str]:
        return sorted(self._topics)

    def partitions(self, topic: str) -> int:
        parts = self._topics.get(topic)
        if parts is None:
            raise LogError("topic does not exist", topic=topic)
        return len(parts)

    def append(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Position]:
        n = self.partitions(topic)
        check_records(topic, records)
        out = []
        with self._cond:
            parts = self._topics[topic]
            times: dict[int, int] = {}  # one append time per partition per call, taken under the lock
            for key, value in records:
                p = partition_for(key, n)
                if p not in times:
                    times[p] = next_append_time_us(parts[p][-1].append_time_us if parts[p] else 0)
                off = len(parts[p])
                parts[p].append(Record(topic, p, off, key, bytes(value), times[p]))
                out.append(Position(p, off, times[p]))
            self._cond.notify_all()
        return out

    def read(self, topic: str, partition: int, offset: int, max_records: int = 1000,
             timeout_s: float = 0.0) -> list[Record]:
        n = self.partitions(topic)
        if not 0 <= partition < n:
            raise ValidationError("partition", partition, f"topic {topic} has partitions 0..{n - 1}")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                recs = self._topics[topic][partition][max(offset, 0): max(offset, 0) + max_records]
                remaining = deadline - time.monotonic()
                if recs or remaining <= 0:
                    return list(recs)
                self._cond.wait(remaining)

    def read_key(self, topic: str, key: bytes, after_offset: int = -1, max_records: int = 1000) -> list[Record]:
        """Records of one key after an offset (the Emitter reconciles its chain head with it)."""
        p = partition_for(key, self.partitions(topic))
        with self._cond:
            recs = [r for r in self._topics[topic][p][after_offset + 1:] if r.key == key]
        return recs[:max_records]

    def end_offset(self, topic: str, partition: int) -> int:
        return len(self._topics[topic][partition]) if topic in self._topics else 0

    def replace(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        """Rewrite one stored record's value in place (tamper tests); its append time stays."""
        rec = self._topics[topic][partition][offset]
        self._topics[topic][partition][offset] = Record(rec.topic, rec.partition, rec.offset, rec.key, value,
                                                        rec.append_time_us)

    def close(self) -> None:
        """Nothing to release: the records live as long as this object."""

