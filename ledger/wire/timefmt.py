"""Event times as people write them: ISO-8601 text <-> integer microseconds since the Unix epoch (UTC);
durations as people write them (``5m``, ``30d``) <-> integer microseconds.

Pure (no clock, no I/O), so the CLI, the importers and the report share one reading and one
rendering of a time. ``parse_time`` raises ``ValidationError`` naming the field it was given.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ledger import limits
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


# RFC 3339 date-time with an offset, at most microsecond precision (digits 7-9 of a fraction only zeros)
RFC3339_PATTERN = ("^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\\.([0-9]{1,6})0{0,3})?"
                   "([Zz]|([+-])([0-9]{2}):([0-9]{2}))$")
_RFC3339 = re.compile(RFC3339_PATTERN)
_RFC3339_ANY_FRACTION = re.compile(r"^[0-9T:tZz+.-]*\.[0-9]{7,}")  # for the message when only the fraction is wrong
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_rfc3339(value: Any, field: str = "event_time") -> int:
    """An RFC 3339 date-time with an offset (``2026-05-01T12:00:00.25+02:00``; ``Z`` for UTC; at most 6 nonzero
    fraction digits) as integer microseconds since the epoch, exactly (no float arithmetic), within the ledger's
    event-time bounds."""
    if not isinstance(value, str):
        raise ValidationError(field, value, f"must be an RFC 3339 date-time string, got {type(value).__name__}")
    m = _RFC3339.fullmatch(value)
    if m is None:
        if _RFC3339_ANY_FRACTION.match(value):
            raise ValidationError(field, value, "has more than microsecond precision (nonzero digits after the "
                                  "sixth of the fraction): the ledger keeps microseconds and never rounds")
        raise ValidationError(field, value, "must be RFC 3339 with an offset, like 2026-05-01T12:00:00Z or "
                              "2026-05-01T14:00:00.250+02:00")
    y, mo, d, h, mi, s, frac, zone, sign, oh, om = m.groups()
    try:
        offset = dt.timedelta(0)
        if zone not in ("Z", "z"):
            if int(oh) > 23 or int(om) > 59:
                raise ValueError(f"offset {zone} out of range")
            offset = dt.timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
        t = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=dt.timezone(offset))
    except ValueError as e:
        raise ValidationError(field, value, f"is not a valid date-time ({e}; a leap second :60 is not "
                              "representable)") from None
    us = (t - _EPOCH) // dt.timedelta(microseconds=1) + (int(frac.ljust(6, "0")) if frac else 0)
    if not limits.MIN_EVENT_TIME_US <= us <= limits.MAX_EVENT_TIME_US:
        raise ValidationError(field, value, "must lie between 2000-01-01 and 2200-01-01 (limits.MIN_EVENT_TIME_US, "
                              "MAX_EVENT_TIME_US)")
    return us
