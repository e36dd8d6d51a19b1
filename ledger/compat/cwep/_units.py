"""The layer's boundary conversions: the reference's float USD and float USD-per-MTok rates <-> the ledger's integer
micro-USD, the reference's ``-1`` sentinels <-> ``None``, and the ledger's transfer direction ``none`` <-> ``""``.

A float is read as the decimal it prints as (``0.3`` is three tenths), so ``3.0`` USD/MTok is exactly 3_000_000
micro-USD/MTok. A value finer than one micro-USD (or one micro-USD per MTok) cannot be represented exactly and is a
``ValidationError`` (never rounded); so are negatives, NaN, infinities, booleans and strings.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from ledger.economics.allocation import NO_TRANSFER
from ledger.errors import ValidationError
from ledger.units import MICROS_PER_USD, MILLI

NO_LIMIT = -1  # the reference's "unlimited" / "never" / "no score yet"
NO_DIRECTION = ""  # the reference's direction of a proposal that moves no money


def _decimal(field: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, value, f"must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(field, value, "must be finite")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def usd_micros(field: str, value: Any, *, signed: bool = False) -> int:
    """A USD amount as exact micro-USD (refused if negative, unless ``signed``, or finer than a micro)."""
    scaled = _decimal(field, value) * MICROS_PER_USD
    if scaled != scaled.to_integral_value():
        raise ValidationError(field, value, "has more precision than one micro-USD (the ledger's unit of money)")
    if scaled < 0 and not signed:
        raise ValidationError(field, value, "must not be negative")
    return int(scaled)


def rate_micros(field: str, value: Any) -> int:
    """A USD-per-million-tokens rate as micro-USD per million tokens (the ledger's rate unit)."""
    return usd_micros(field, value)


def thousandths(field: str, value: Any) -> int:
    """A non-negative multiplier as exact thousandths (the ledger's unit for ratios on the log)."""
    scaled = _decimal(field, value) * MILLI
    if scaled != scaled.to_integral_value() or scaled < 0:
        raise ValidationError(field, value, "must be a non-negative number exact to the thousandth")
    return int(scaled)


def usd(micros: int) -> float:
    """Micro-USD as the nearest float USD (what the reference's callers read)."""
    return micros / MICROS_PER_USD


def tokens(field: str, value: Any) -> int:
    """A token count: a non-negative int (floats and negatives are refused, never truncated)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, value, f"must be a whole number of tokens, not {type(value).__name__}")
    if value < 0:
        raise ValidationError(field, value, "must not be negative")
    return value


def score(field: str, value: Any) -> float | None:
    """A reputation score; the reference's negative "no score yet" becomes None. NaN is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, value, f"must be a number, not {type(value).__name__}")
    if math.isnan(value):
        raise ValidationError(field, value, "is not a number")
    return None if value < 0 else float(value)


def limit(value: int | None) -> int:
    """None ("no limit", "never") as the reference's -1."""
    return NO_LIMIT if value is None else value


def direction(value: str) -> str:
    """The ledger's direction as the reference names it (``none`` -> ``""``)."""
    return NO_DIRECTION if value == NO_TRANSFER else value
