"""Event times as people write them: ISO-8601 text <-> integer microseconds since the Unix epoch (UTC);
durations as people write them (``5m``, ``30d``) <-> integer microseconds.

Pure (no clock, no I/O), so the CLI, the importers and the report share one reading and one
rendering of a time. ``parse_time`` raises ``ValidationError`` naming the field it was given.
"""

from __future__ import annotations

import datetime as dt
import re

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


# the units a duration may be written in, largest first (the order fmt_duration picks from)
DURATION_UNITS_US = {"w": 7 * 86_400 * US_PER_S, "d": 86_400 * US_PER_S, "h": 3_600 * US_PER_S, "m": 60 * US_PER_S,
                     "s": US_PER_S, "ms": 1_000, "us": 1}
_DURATION = re.compile(r"^(\d{1,12})(w|d|h|m|s|ms|us)$")


def parse_duration(value: str, field: str = "duration") -> int:
    """A duration like ``90s``, ``5m``, ``2h``, ``30d``, ``1w`` (or ``ms``/``us``) in microseconds. A bare
    number is refused: without a unit, seconds and microseconds are one typo apart."""
    m = _DURATION.match(value.strip())
    if m is None:
        raise ValidationError(field, value, "must be a whole number with a unit: us, ms, s, m, h, d or w (like 5m)")
    return int(m.group(1)) * DURATION_UNITS_US[m.group(2)]


def fmt_duration(us: int) -> str:
    """``us`` microseconds in the largest unit that divides it exactly (``300000000`` -> ``5m``)."""
    if us == 0:
        return "0s"
    for unit, size in DURATION_UNITS_US.items():
        if us % size == 0:
            return f"{us // size}{unit}"
    raise AssertionError("unreachable: every integer is a whole number of microseconds")
