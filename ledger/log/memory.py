"""A deterministic in-memory log for tests and the simulator (a seam we own, beside the real backends).

Same contract as the other backends except durability: nothing survives the process. Append times come
from the wall clock, held strictly above the last one given in the whole log (``next_append_time_us``),
under the lock that orders appends: like the embedded log, they are the log's total order. ``read`` never
sleeps unless asked; there is no background thread, so a simulation is fully reproducible.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ledger.errors import LogError, ValidationError
from ledger.log.base import Position, Record, check_records, next_append_time_us, partition_for


class MemoryLog:
    total_order = True  # append times strictly increase over the whole log
    records_per_append = 1  # an append is one local transaction: nothing to gain from more

    def __init__(self, *, wall_clock_us: Callable[[], int] | None = None) -> None:
        """``wall_clock_us``: the clock append times follow (default: the machine's). A simulation passes its
        own, so append times, and with them every skew-window verdict, are fixed by its seed."""
        self.url = "memory://"
        self._wall_clock_us = wall_clock_us
        self._clock_us = 0
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
            if self._wall_clock_us is None:
                t_us = next_append_time_us(self._clock_us + 1)
            else:  # the same rule over the given clock: never below the last append time + 1
                t_us = max(self._wall_clock_us(), self._clock_us + 1)
            for key, value in records:
                p = partition_for(key, n)
                off = len(parts[p])
                parts[p].append(Record(topic, p, off, key, bytes(value), t_us))
                out.append(Position(p, off, t_us))
                self._clock_us = t_us
                t_us += 1
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

    def clock_us(self) -> int:
        """The largest append time given so far: every record appended after this call gets a larger one."""
        with self._cond:
            return self._clock_us

    def end_offset(self, topic: str, partition: int) -> int:
        return len(self._topics[topic][partition]) if topic in self._topics else 0

    def replace(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        """Rewrite one stored record's value in place (tamper tests); its append time stays."""
        rec = self._topics[topic][partition][offset]
        self._topics[topic][partition][offset] = Record(rec.topic, rec.partition, rec.offset, rec.key, value,
                                                        rec.append_time_us)

    def close(self) -> None:
        """Nothing to release: the records live as long as this object."""

