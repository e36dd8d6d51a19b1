"""ledger.economics.money: the rounding rule, largest-remainder splits, exact USD text, and the input checks.

Method: properties over random integers compared with exact Fraction arithmetic (Python's
``round(Fraction)`` is half-to-even), plus pinned examples for every tie and edge.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.economics.money import (
    MAX_EVENT_TIME_US,
    MAX_MICROS,
    MAX_RATE_MICROS_PER_MTOK,
    MAX_TOKENS,
    check_event_time_us,
    check_micros,
    check_rate,
    check_real,
    check_result_micros,
    check_tokens,
    cost_micros,
    decimal_text,
    exact_number,
    format_usd,
    micros_to_usd,
    parse_usd,
    round_half_even,
    split_largest_remainder,
    usd_to_micros,
)
from ledger.errors import EconomicsError, ValidationError

FAST = settings(max_examples=200, deadline=None)
tokens = st.integers(0, MAX_TOKENS)
rates = st.integers(0, MAX_RATE_MICROS_PER_MTOK)


# ------------------------------------------------------------------ rounding


@FAST
@given(st.integers(-10**30, 10**30), st.integers(1, 10**18))
def test_round_half_even_equals_exact_rounding(numerator: int, denominator: int) -> None:
    assert round_half_even(numerator, denominator) == round(Fraction(numerator, denominator))


@pytest.mark.parametrize(("numerator", "denominator", "expected"), [
    (5, 2, 2), (7, 2, 4), (-5, 2, -2), (-7, 2, -4), (3, 2, 2), (1, 2, 0), (-1, 2, 0), (1, 3, 0), (2, 3, 1),
    (-2, 3, -1), (0, 7, 0),
])
def test_round_half_even_ties_and_signs(numerator: int, denominator: int, expected: int) -> None:
    assert round_half_even(numerator, denominator) == expected


@FAST
@given(tokens, rates)
def test_cost_micros_is_the_written_rule(count: int, rate: int) -> None:
    cost = cost_micros(count, rate)
    exact = Fraction(count * rate, 1_000_000)
    assert cost == round(exact)  # half-to-even
    assert abs(cost - exact) <= Fraction(1, 2)


@pytest.mark.parametrize(("count", "rate", "expected"), [
    (10_000, 15_000_000, 150_000),  # 10k tokens at $15/MTok = $0.15
    (1, 312_500, 0),  # 0.3125 micro rounds down
    (2, 750_000, 2),  # 1.5 micro: tie to even (2)
    (1, 2_500_000, 2),  # 2.5 micro: tie to even (2)
    (1, 3_500_000, 4),  # 3.5 micro: tie to even (4)
    (0, MAX_RATE_MICROS_PER_MTOK, 0),
])
def test_cost_micros_examples(count: int, rate: int, expected: int) -> None:
    assert cost_micros(count, rate) == expected


# ------------------------------------------------------------------ splits

weights_int = st.lists(st.integers(0, 10**9), min_size=1, max_size=12)


@FAST
@given(st.integers(0, MAX_MICROS), weights_int)
def test_split_conserves_and_each_part_is_within_one_micro(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    parts = split_largest_remainder(total, weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, sum(weights))
        assert part >= 0
        assert abs(part - exact) < 1


@FAST
@given(st.integers(0, 10**12),
       st.lists(st.fractions(min_value=0, max_value=10**6, max_denominator=10**6), min_size=1, max_size=8))
def test_split_with_fraction_weights_conserves(total: int, weights: list[Fraction]) -> None:
    if sum(weights) == 0:
        weights = [*weights[:-1], Fraction(1)]
    parts = split_largest_remainder(total, weights)
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part - total * weight / sum(weights)) < 1


@FAST
@given(st.integers(0, 10**12), weights_int)
def test_split_is_deterministic_and_scale_free(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    assert split_largest_remainder(total, weights) == split_largest_remainder(total, [w * 7 for w in weights])


def test_split_ties_go_to_the_lower_index() -> None:
    assert split_largest_remainder(1, [1, 1]) == [1, 0]
    assert split_largest_remainder(2, [1, 1, 1]) == [1, 1, 0]
    assert split_largest_remainder(5, [Fraction(5, 2), Fraction(5, 2)]) == [3, 2]
    assert split_largest_remainder(10, [1, 1, 1]) == [4, 3, 3]
    assert split_largest_remainder(7, [0, 1]) == [0, 7]


def test_split_over_zero_weights() -> None:
    assert split_largest_remainder(0, [0, 0]) == [0, 0]
    with pytest.raises(EconomicsError):
        split_largest_remainder(5, [0, 0])


@pytest.mark.parametrize("weights", [[-1, 2], [1.5, 1], [True, 1], [], "ab", [Decimal(1)]])
def test_split_refuses_bad_weights(weights: object) -> None:
    with pytest.raises(ValidationError):
        split_largest_remainder(10, weights)  # type: ignore[arg-type]


@pytest.mark.parametrize("total", [-1, 1.0, True, MAX_MICROS + 1, float("nan")])
def test_split_refuses_bad_totals(total: object) -> None:
    with pytest.raises(ValidationError) as caught:
        split_largest_remainder(total, [1, 1])  # type: ignore[arg-type]
    assert caught.value.field == "total"


# ------------------------------------------------------------------ USD text


@FAST
@given(st.integers(-MAX_MICROS, MAX_MICROS))
def test_format_then_parse_round_trips(micros: int) -> None:
    text = format_usd(micros)
    assert parse_usd(text) == micros
    assert usd_to_micros(micros_to_usd(micros)) == micros
    assert text.count(".") == 1 and len(text.split(".")[1]) == 6


@pytest.mark.parametrize(("text", "micros"), [
    ("$1.234567", 1_234_567), ("1.5", 1_500_000), ("-$0.000001", -1), ("$0", 0), ("0.3125", 312_500),
    ("$1.2345670000", 1_234_567), ("-1", -1_000_000), ("25.00", 25_000_000),
])
def test_parse_usd_examples(text: str, micros: int) -> None:
    assert parse_usd(text) == micros


@pytest.mark.parametrize("text", ["$1.2345678", "abc", "", "1e3", "$ 1", "1.", ".5", "--1", "$-1", "1,000",
                                  "NaN", "inf", " 1", "1" * 100, "$1000000000.000001"])
def test_parse_usd_refuses_inexact_or_malformed(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_usd(text)
    assert caught.value.field == "usd"


def test_usd_conversions() -> None:
    assert usd_to_micros(Decimal("0.025")) == 25_000
    assert usd_to_micros(3) == 3_000_000
    assert usd_to_micros("$2") == 2_000_000
    assert micros_to_usd(1_500_000) == Decimal("1.500000")
    assert format_usd(-1_234_567) == "-$1.234567"
    for bad in (Decimal("0.0000001"), Decimal("NaN"), Decimal("Infinity"), 1.5):
        with pytest.raises(ValidationError):
            usd_to_micros(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------ exact numbers and checks


def test_exact_number_reads_floats_as_written() -> None:
    assert exact_number("x", 0.1) == Fraction(1, 10)
    assert exact_number("x", 0.6) == Fraction(3, 5)
    assert exact_number("x", Decimal("0.125")) == Fraction(1, 8)
    assert exact_number("x", Fraction(1, 3)) == Fraction(1, 3)
    assert exact_number("x", 2) == 2
    for bad in (float("nan"), float("inf"), -float("inf"), True, "0.5", None, Decimal("NaN")):
        with pytest.raises(ValidationError) as caught:
            exact_number("x", bad)
        assert caught.value.field == "x"
    with pytest.raises(ValidationError):
        exact_number("alpha", 1.5, minimum=0, maximum=1)


@pytest.mark.parametrize(("value", "text"), [
    (Fraction(1, 2), "0.5"), (Fraction(3, 5), "0.6"), (Fraction(-1, 4), "-0.25"), (Fraction(2), "2"),
    (Fraction(1, 3), "1/3"), (Fraction(1, 1_000_000), "0.000001"), (Fraction(0), "0"),
])
def test_decimal_text(value: Fraction, text: str) -> None:
    assert decimal_text(value) == text


BAD_COUNTS = [-1, 1.0, 3.5, True, False, float("nan"), float("inf"), "1", None, "above_limit"]
LIMITS = {check_tokens: MAX_TOKENS, check_rate: MAX_RATE_MICROS_PER_MTOK, check_micros: MAX_MICROS,
          check_event_time_us: MAX_EVENT_TIME_US}


@pytest.mark.parametrize("value", BAD_COUNTS)
@pytest.mark.parametrize("check", list(LIMITS))
def test_checks_refuse_bad_values_and_name_the_field(check: object, value: object) -> None:
    if value == "above_limit":
        value = LIMITS[check] + 1  # type: ignore[index]
    with pytest.raises(ValidationError) as caught:
        check("some_field", value)  # type: ignore[operator]
    assert caught.value.field == "some_field"
    assert "some_field" in str(caught.value)


def test_absurd_token_counts_are_refused() -> None:
    assert MAX_TOKENS < 10**15
    with pytest.raises(ValidationError):
        check_tokens("input_tokens", 10**15 + 1)


def test_check_real() -> None:
    assert check_real("u", 0.5, minimum=0) == 0.5
    assert check_real("u", 2) == 2
    for bad in (float("nan"), float("inf"), True, "0.5", None):
        with pytest.raises(ValidationError):
            check_real("u", bad)
    with pytest.raises(ValidationError):
        check_real("u", -0.1, minimum=0)
    assert math.isfinite(check_real("u", 1e300))


def test_computed_amounts_beyond_one_field_are_refused() -> None:
    assert check_result_micros("total", MAX_MICROS) == MAX_MICROS
    with pytest.raises(EconomicsError) as caught:
        check_result_micros("total", MAX_MICROS + 1)
    assert caught.value.evidence["field"] == "total"
