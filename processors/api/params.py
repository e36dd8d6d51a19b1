"""Reading query parameters of the read endpoints: RFC 3339 times, durations with a unit, time ranges.

Each reader takes the parameter's name and its raw text and returns an exact integer (microseconds), or raises
``ValidationError(name, text, reason)``, which the app answers with 400 naming the parameter. Pure: no clock.

* ``rfc3339``: ``2026-05-01T12:00:00Z``, ``2026-05-01T14:00:00.250+02:00`` — a date, ``T`` (or ``t`` or a space), a
  time with seconds, at most six decimals (a microsecond: more would be rounded, and we never round), and a zone
  (``Z`` or ``±hh:mm``, as RFC 3339 requires: a time without one names no instant). Converted exactly (integer
  arithmetic on the parsed fields, never through a float).
* ``duration``: a whole number with a unit (``5s``, ``250ms``, ``2m``; ``ledger.wire.timefmt.parse_duration``),
  bounded by the caller's maximum: a bare number is refused (seconds and milliseconds are one typo apart).
* ``time_range``: ``from`` inclusive, ``to`` exclusive (event time); either may be absent; ``to`` after ``from``.
"""

from __future__ import annotations

from ledger import limits
from ledger.errors import ValidationError
from ledger.wire.timefmt import fmt_duration, parse_duration, parse_rfc3339


def rfc3339(name: str, text: str) -> int:
    """``text`` (RFC 3339, see the module doc) as microseconds since the Unix epoch."""
    if not isinstance(text, str) or len(text) > limits.MAX_TIME_TEXT_CHARS:
        raise ValidationError(name, text, "must be an RFC 3339 time with a zone and at most six decimals, like "
                              "2026-05-01T12:00:00Z")
    return parse_rfc3339(text, name)


def duration(name: str, text: str, max_us: int) -> int:
    """``text`` (a whole number with a unit) as microseconds, at most ``max_us``."""
    if not isinstance(text, str) or len(text) > limits.MAX_TIME_TEXT_CHARS:
        raise ValidationError(name, text, "must be a whole number with a unit, like 5s")
    us = parse_duration(text, name)
    if us > max_us:
        raise ValidationError(name, text, f"must be at most {fmt_duration(max_us)}")
    return us


def time_range(from_text: str | None, to_text: str | None) -> tuple[int | None, int | None]:
    """(from, to) in microseconds from the ``from`` and ``to`` parameters (module doc); None where absent."""
    start = None if from_text is None else rfc3339("from", from_text)
    end = None if to_text is None else rfc3339("to", to_text)
    if start is not None and end is not None and end <= start:
        raise ValidationError("to", to_text, "must be after from (the range is from inclusive, to exclusive)")
    return start, end


__all__ = ["duration", "rfc3339", "time_range"]
