"""Exact money and checked numbers for the economics math: integer micro-USD and one rounding rule.

Units
    * Money is an ``int`` of micro-USD: ``1`` is $0.000001. Money is never a binary float.
    * A price (rate) is an ``int`` of micro-USD per million tokens (MTok): $3.00/MTok is
      ``3_000_000``, $0.025/MTok is ``25_000``, $0.3125/MTok is ``312_500``.
    * Times are ``int`` microseconds since the Unix epoch (UTC).

The rounding rule (the only one the ledger uses)
    1. **Pricing.** The cost of one priced token class (uncached input, cache read, cache write,
       output, reasoning; or one flow priced at one rate) is ``tokens * rate / 1_000_000``,
       computed exactly with integers and rounded **half-to-even** to a whole micro-USD. Any other
       derived amount (a deposit, a congestion premium, an average) is likewise computed exactly,
       with integers and fractions, and rounded half-to-even **once**.
    2. **Totals.** A total is the sum of already-rounded parts, so a total always equals the sum of
       its parts, to the micro.
    3. **Splits.** An integer total is split into shares by the **largest-remainder method**: each
       share first gets the floor of its exact share; the micros left over go, one each, to the
       shares with the largest fractional remainders; equal remainders are broken by position,
       lower index first (in a two-party allocation index 0 is the requestor). The shares
       therefore sum to the total exactly, and each is less than one micro from its exact share.

Exact numbers
    Non-money inputs that scale money (multipliers, alpha, utilisation) are turned into exact
    rationals with ``exact_number``. A ``float`` is read as the decimal it prints as (its shortest
    round-trip ``repr``), so ``0.6`` means 3/5 exactly, as the caller wrote it, not the nearest
    binary fraction. NaN, infinities and ``bool`` are refused everywhere.

Invariants: every function is pure and exact; results never depend on float rounding.
Never: I/O, clock or environment; a float as money; silently clamping or rounding away a bad
input (a bad input is a ``ValidationError`` naming the field and the value).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ledger.errors import EconomicsError, ValidationError
from ledger.limits import (  # re-exported: callers of the money rules name the bounds from here too
    MAX_EVENT_TIME_US,
    MAX_MICROS,
    MAX_RATE_MICROS_PER_MTOK,
    MAX_SPLIT_PARTS,
    MAX_TOKENS,
    MAX_USD_TEXT_CHARS,
)
from ledger.units import MICROS_PER_USD, TOKENS_PER_MTOK
from ledger.wire import events

_USD_TEXT = re.compile(r"(-)?\$?([0-9]+)(?:\.([0-9]+))?")


# ------------------------------------------------------------------ checks (each names its field)


def check_int(field: str, value: Any, *, minimum: int = 0, maximum: int) -> int:
    """``value`` as an exact ``int`` in [minimum, maximum]; bool, float (even 3.0) and str refused.

    The event model's check, so a count is refused the same way on the log and in the math.
    """
    return events.check_int(field, value, minimum, maximum)


def check_tokens(field: str, value: Any) -> int:
    """A token count: an int in [0, MAX_TOKENS]."""
    return check_int(field, value, maximum=MAX_TOKENS)


def check_rate(field: str, value: Any) -> int:
    """A price in micro-USD per MTok: an int in [0, MAX_RATE_MICROS_PER_MTOK]."""
    return check_int(field, value, maximum=MAX_RATE_MICROS_PER_MTOK)


def check_micros(field: str, value: Any, *, signed: bool = False) -> int:
    """An amount of micro-USD: an int in [0, MAX_MICROS], or in [-MAX_MICROS, MAX_MICROS] if signed."""
    return check_int(field, value, minimum=-MAX_MICROS if signed else 0, maximum=MAX_MICROS)


def check_event_time_us(field: str, value: Any) -> int:
    """An event time in microseconds since the epoch: an int in [0, MAX_EVENT_TIME_US]."""
    return check_int(field, value, maximum=MAX_EVENT_TIME_US)


def check_result_micros(field: str, micros: int) -> int:
    """A computed amount must fit one money field (|amount| <= MAX_MICROS); beyond is refused, never wrapped.

    An ``EconomicsError``, not a ValidationError: each input was valid, only their product is absurd.
    """
    if abs(micros) > MAX_MICROS:
        raise EconomicsError("computed amount exceeds the largest amount one money field holds",
                             field=field, value=micros, limit=MAX_MICROS)
    return micros


def check_real(field: str, value: Any, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """A finite real (int or float, not bool) in [minimum, maximum], returned as it was given."""
    if type(value) is bool or not isinstance(value, (int, float)):
        raise ValidationError(field, value, f"must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(field, value, "must be finite, not NaN or infinity")
    if minimum is not None and value < minimum:
        raise ValidationError(field, value, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ValidationError(field, value, f"must be at most {maximum}")
    return value


def exact_number(field: str, value: Any, *, minimum: Fraction | int | None = None,
                 maximum: Fraction | int | None = None) -> Fraction:
    """``value`` (int, float, Decimal or Fraction) as an exact Fraction, optionally range-checked.

    A float is read through its shortest ``repr`` (``0.6`` -> 3/5), so the number means what the
    caller wrote; int, Decimal and Fraction convert exactly.
    """
    if type(value) is bool or not isinstance(value, (int, float, Decimal, Fraction)):
        raise ValidationError(field, value, f"must be a number, got {type(value).__name__}")
    if (isinstance(value, float) and not math.isfinite(value)) or (
            isinstance(value, Decimal) and not value.is_finite()):
        raise ValidationError(field, value, "must be finite, not NaN or infinity")
    exact = Fraction(Decimal(repr(value))) if isinstance(value, float) else Fraction(value)
    if minimum is not None and exact < minimum:
        raise ValidationError(field, value, f"must be at least {minimum}")
    if maximum is not None and exact > maximum:
        raise ValidationError(field, value, f"must be at most {maximum}")
    return exact


def decimal_text(value: Fraction) -> str:
    """An exact Fraction as plain decimal text when it has a finite decimal expansion, else "p/q".

    Used to record parameters (alpha, multipliers) in allocations and events without a float.
    """
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = value.numerator * 10**places // value.denominator  # exact: 10**places is a multiple
    digits = str(abs(scaled)).rjust(places + 1, "0")
    text = digits if places == 0 else digits[:-places] + "." + digits[-places:]
    return "-" + text if scaled < 0 else text


# ------------------------------------------------------------------ the rounding rule


def round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest int, ties to the even one (exact, any sign)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")  # a programming error, never user input
    quotient, remainder = divmod(numerator, denominator)  # floor division: 0 <= remainder < denominator
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def round_fraction(value: Fraction) -> int:
    """An exact Fraction rounded half-to-even to a whole number (micro-USD when it is money)."""
    return round_half_even(value.numerator, value.denominator)


def cost_micros(tokens: int, rate_micros_per_mtok: int) -> int:
    """The cost of ``tokens`` at ``rate_micros_per_mtok``: tokens * rate / 1e6, half-to-even."""
    check_tokens("tokens", tokens)
    check_rate("rate_micros_per_mtok", rate_micros_per_mtok)
    return checked_cost_micros(tokens, rate_micros_per_mtok)


def checked_cost_micros(tokens: int, rate_micros_per_mtok: int) -> int:
    """``cost_micros`` of a count and a rate the caller has already checked (``check_tokens``, and a rate
    from a validated ``ModelPrice``): the same rule, without checking both again for every token class of
    every call on a processor's per-event path."""
    return round_half_even(tokens * rate_micros_per_mtok, TOKENS_PER_MTOK)


def exact_cost(tokens: int, rate_micros_per_mtok: int) -> Fraction:
    """The unrounded cost of ``tokens`` at a rate, in micro-USD, for amounts derived from it."""
    return Fraction(tokens * rate_micros_per_mtok, TOKENS_PER_MTOK)


def split_largest_remainder(total: int, weights: Sequence[int | Fraction]) -> list[int]:
    """Split ``total`` micro-USD in proportion to ``weights``; the parts always sum to ``total``.

    Largest-remainder method: floors first, then one micro each to the largest fractional
    remainders, equal remainders to the lower index first. Weights are non-negative ints or
    Fractions (exact). All-zero weights split a zero total into zeros; a nonzero total over
    all-zero weights has no answer and is an ``EconomicsError``.
    """
    check_micros("total", total)
    if not isinstance(weights, Sequence) or isinstance(weights, (str, bytes)):
        raise ValidationError("weights", weights, "must be a sequence of numbers")
    if not 1 <= len(weights) <= MAX_SPLIT_PARTS:
        raise ValidationError("weights", len(weights), f"must have between 1 and {MAX_SPLIT_PARTS:,} parts")
    for index, weight in enumerate(weights):
        if type(weight) is not int and not isinstance(weight, Fraction):
            raise ValidationError(f"weights[{index}]", weight, "must be an int or a Fraction (exact)")
        if weight < 0:
            raise ValidationError(f"weights[{index}]", weight, "must not be negative")
    # Bring the weights to one integer scale so every comparison below is integer arithmetic.
    scale = math.lcm(*(Fraction(w).denominator for w in weights))
    scaled = [int(Fraction(w) * scale) for w in weights]
    weight_sum = sum(scaled)
    if weight_sum == 0:
        if total != 0:
            raise EconomicsError("cannot split a nonzero total over all-zero weights", total=total)
        return [0] * len(weights)
    parts: list[int] = []
    remainders: list[int] = []
    for weight in scaled:
        part, remainder = divmod(total * weight, weight_sum)
        parts.append(part)
        remainders.append(remainder)
    leftover = total - sum(parts)  # 0 <= leftover < len(weights): each floor lost less than one micro
    for index in sorted(range(len(parts)), key=lambda i: (-remainders[i], i))[:leftover]:
        parts[index] += 1
    assert sum(parts) == total
    return parts


# ------------------------------------------------------------------ USD text <-> micro-USD


def usd_to_micros(amount: Decimal | int | str) -> int:
    """An exact USD amount (Decimal, int dollars, or text for ``parse_usd``) as micro-USD.

    More than six decimal places is refused unless the extra digits are zeros: converting must
    never round.
    """
    if isinstance(amount, str):
        return parse_usd(amount)
    if type(amount) is int:
        return check_micros("amount", amount * MICROS_PER_USD, signed=True)
    if not isinstance(amount, Decimal):
        raise ValidationError("amount", amount, f"must be a Decimal, int or str, not {type(amount).__name__}")
    if not amount.is_finite():
        raise ValidationError("amount", amount, "must be finite")
    scaled = amount * MICROS_PER_USD
    if scaled != scaled.to_integral_value():
        raise ValidationError("amount", amount, "has more precision than one micro-USD")
    return check_micros("amount", int(scaled), signed=True)


def parse_usd(text: str) -> int:
    """``"$1.234567"``, ``"1.5"``, ``"-$0.000001"`` -> micro-USD, exactly; anything else refused."""
    if not isinstance(text, str):
        raise ValidationError("usd", text, f"must be a string, got {type(text).__name__}")
    match = _USD_TEXT.fullmatch(text) if len(text) <= MAX_USD_TEXT_CHARS else None
    if match is None:
        raise ValidationError("usd", text, "must look like $1.234567 (optional '-' and '$', digits, "
                                           "optional '.' and decimals)")
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if len(fraction) > 6 and fraction[6:].strip("0"):
        raise ValidationError("usd", text, "has more precision than one micro-USD")
    micros = int(whole) * MICROS_PER_USD + int(fraction[:6].ljust(6, "0"))
    return check_micros("usd", -micros if sign else micros, signed=True)


def micros_to_usd(micros: int) -> Decimal:
    """Micro-USD as an exact Decimal number of dollars with six places (1_500_000 -> 1.500000)."""
    check_micros("micros", micros, signed=True)
    return Decimal(micros).scaleb(-6).quantize(Decimal("0.000001"))


def format_usd(micros: int) -> str:
    """Micro-USD as ``"$1.234567"`` (always six places; ``"-$0.000001"`` for negatives)."""
    usd = micros_to_usd(micros)
    return f"-${-usd}" if usd < 0 else f"${usd}"
