"""Log backends behind one interface: ``open_log(url)`` picks one from a URL-like setting.

- ``sqlite:///abs/path/log.sqlite`` or a plain path: the embedded, durable default;
- ``kafka://host:port[,host:port...]``: any Kafka-protocol cluster;
- ``memory://``: in-process, for tests and simulation.
"""

from __future__ import annotations

from pathlib import Path

from ledger.errors import RecordTooLargeError, ValidationError
from ledger.log.base import (
    DEFAULT_TOPIC,
    TOPICS,
    Log,
    Position,
    Record,
    TotalOrderLog,
    has_merged_order,
    has_total_order,
    judges_by_log_order,
    partition_for,
    read_all,
)
from ledger.log.memory import MemoryLog
from ledger.log.sqlite import SqliteLog


def open_log(url: str | Path, **options: object) -> Log:
    """Open a log from a URL-like string. Unknown schemes are a ValidationError naming the value."""
    s = str(url)
    if s.startswith("memory://"):
        return MemoryLog()
    if s.startswith("kafka://"):
        from ledger.log.kafka import KafkaLog  # imported lazily: the embedded path needs no Kafka client

        return KafkaLog(s, **options)  # type: ignore[arg-type]
    if s.startswith("sqlite://"):
        s = s[len("sqlite://"):]
    elif "://" in s:
        raise ValidationError("log", s, "unknown log URL; use sqlite:///path, kafka://host:port or memory://")
    return SqliteLog(s, **options)  # type: ignore[arg-type]


__all__ = ["DEFAULT_TOPIC", "TOPICS", "Log", "MemoryLog", "Position", "Record", "RecordTooLargeError", "SqliteLog",
           "TotalOrderLog", "has_merged_order", "has_total_order",
           "judges_by_log_order", "open_log", "partition_for", "read_all"]
