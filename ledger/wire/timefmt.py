"""Event times as people write them: ISO-8601 text <-> integer microseconds since the Unix epoch (UTC).

Pure (no clock, no I/O), so the CLI, the importers and the report share one reading and one
rendering of a time. ``parse_time`` raises ``ValidationError`` naming the field it was given.
"""

from __future__ import annotations

import datetime as dt

from ledger.errors import ValidationError

US_PER_S = 1_000_000


def parse_time(value: str | None, field: str = "time") -> int | None:
    """ISO-8601 (``2026-01-01T12:00:00Z``; no zone means UTC) or integer microseconds since the epoch."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(field, value, "must be ISO-8601 like 2026-01-01T12:00:00Z, or microseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * US_PER_S)


def fmt_time(us: int) -> str:
    """``us`` microseconds since the epoch as ISO-8601 UTC with milliseconds (``2026-01-01T12:00:00.000Z``)."""
    return dt.datetime.fromtimestamp(us / US_PER_S, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
