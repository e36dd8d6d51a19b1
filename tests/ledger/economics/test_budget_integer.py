"""Budgets in integer arithmetic: the limits equal the exact Fraction rules they replaced.

Method: the rules as they were written with ``fractions.Fraction`` (floor / ceil of exact rationals,
thresholds compared as rationals) are kept here as a tiny reference, and hypothesis compares the
integer implementation of ``BudgetPolicy`` with it over whole and Decimal percentages (up to 30
decimal places, 0 and 1000% included) and allocations and totals from 0 past ``MAX_BUDGET_COUNTER``.
A second property drives the operations that copy states without validating them again and checks
that every state they return still passes the full validation and that counters saturate.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.economics.budget import (
    BudgetPolicy,
    BudgetState,
    BudgetStatus,
    HardLimitAction,
    OveragePolicy,
    Scope,
    ScopeLevel,
    commit,
    open_budget,
    record_usage,
    release,
    reserve,
)
from ledger.limits import MAX_BUDGET_COUNTER, MAX_BUDGET_PERCENT, MAX_THROTTLE_LEVEL
from ledger.units import US_PER_HOUR

T0 = 1_700_000_000_000_000
AGENT = Scope(ScopeLevel.AGENT, "a1")


# ---------------------------------------------------------------- the Fraction reference (the rules as they were)


def ref_hard_cap(allocation: int, hard: Fraction) -> int:
    return math.floor(allocation * hard / 100)


def ref_ceiling(allocation: int, hard: Fraction, emergency: Fraction) -> int:
    return math.floor(allocation * hard / 100) + math.floor(allocation * emergency / 100)


def ref_in_soft_zone(total: int, allocation: int, soft: Fraction) -> bool:
    return total * 100 >= soft * allocation


def ref_allocation_needed(total: int, hard: Fraction) -> int:
    return math.ceil(Fraction(100 * total) / hard)


def ref_status(consumed: int, allocation: int, soft: Fraction, hard: Fraction) -> BudgetStatus:
    used = consumed * 100
    if used >= hard * allocation:
        return BudgetStatus.CRITICAL
    if used >= soft * allocation:
        return BudgetStatus.WARNING
    if used >= 50 * allocation:
        return BudgetStatus.NORMAL
    return BudgetStatus.HEALTHY


# ---------------------------------------------------------------- strategies


@st.composite
def percent(draw: st.DrawFn, low: Fraction = Fraction(0), high: Fraction = Fraction(MAX_BUDGET_PERCENT)) -> int | Decimal:
    """A percentage in [low, high]: a whole one, or a Decimal with 1..30 places (extremes included)."""
    places = draw(st.sampled_from([0, 0, 1, 2, 3, 6, 13, 30]))
    scale = 10**places
    lo, hi = math.ceil(low * scale), math.floor(high * scale)
    n = draw(st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi)))
    return n if places == 0 else Decimal(n).scaleb(-places)


@st.composite
def overage(draw: st.DrawFn) -> OveragePolicy:
    hard = draw(percent(low=Fraction(1, 10**30)))
    soft = draw(percent(high=Fraction(hard)))
    emergency = draw(percent())
    return OveragePolicy(soft, hard, draw(st.booleans()), False, emergency)


AMOUNTS = st.one_of(
    st.sampled_from([0, 1, 99, 100, 101, MAX_BUDGET_COUNTER - 1, MAX_BUDGET_COUNTER, 3 * MAX_BUDGET_COUNTER]),
    st.integers(0, 10_000),
    st.integers(0, 3 * MAX_BUDGET_COUNTER),
)


# ---------------------------------------------------------------- properties


@settings(max_examples=600, deadline=None)
@given(overage(), AMOUNTS, AMOUNTS)
def test_integer_limits_equal_the_fraction_rules(o: OveragePolicy, allocation: int, total: int) -> None:
    allocation = min(allocation, MAX_BUDGET_COUNTER)  # a policy's allocation is an int64
    policy = BudgetPolicy("compute", allocation, US_PER_HOUR, o)
    soft, hard, emergency = Fraction(o.soft_limit_pct), Fraction(o.hard_limit_pct), Fraction(o.emergency_reserve_pct)
    assert policy.hard_cap(allocation) == ref_hard_cap(allocation, hard)
    assert policy.emergency_allowance(allocation) == math.floor(allocation * emergency / 100)
    assert policy.ceiling(allocation) == ref_ceiling(allocation, hard, emergency)
    assert policy.caps(allocation) == (ref_hard_cap(allocation, hard), ref_ceiling(allocation, hard, emergency))
    assert policy.in_soft_zone(total, allocation) is ref_in_soft_zone(total, allocation, soft)
    assert policy.allocation_needed(total) == ref_allocation_needed(total, hard)
    assert policy.status(total, allocation) is ref_status(total, allocation, soft, hard)


def test_rounding_at_the_unit_for_a_decimal_percentage() -> None:
    """hard 33.3333%: the cap rounds down, the allocation needed rounds up, the soft zone is exact."""
    policy = BudgetPolicy("compute", 1_000_000, US_PER_HOUR, OveragePolicy(Decimal("33.3333"), Decimal("33.3333")))
    assert policy.hard_cap(1_000_000) == 333_333  # 333,333.0 exactly
    assert policy.hard_cap(999_999) == 333_332  # 333,332.666...: down
    assert policy.allocation_needed(333_333) == 1_000_000  # exactly
    assert policy.allocation_needed(333_334) == 1_000_004  # 1,000,003.0000300...: up
    assert policy.in_soft_zone(333_333, 1_000_000)  # equal counts as reached
    assert not policy.in_soft_zone(333_332, 1_000_000)


OPS = st.lists(
    st.tuples(st.sampled_from(["usage", "reserve", "commit", "release"]), AMOUNTS.map(lambda a: min(a, MAX_BUDGET_COUNTER)),
              st.integers(0, 3),
              st.integers(0, 3 * US_PER_HOUR)),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(overage(), st.integers(0, MAX_BUDGET_COUNTER), st.sampled_from(list(HardLimitAction)), OPS)
def test_states_the_operations_derive_pass_full_validation_and_counters_saturate(
    o: OveragePolicy, allocation: int, action: HardLimitAction, ops: list[tuple[str, int, int, int]]
) -> None:
    """The operations copy states without re-validating them; every state they return must still be one
    the validating constructor accepts, field for field, and the counters stop at their bounds."""
    policy = BudgetPolicy("compute", allocation, US_PER_HOUR, o, action)
    state = open_budget(AGENT, policy, T0)
    t = T0
    for op, amount, slot, dt in ops:
        t += dt
        rid = f"r{slot}"
        if op == "usage":
            state = record_usage(state, policy, amount, t).state
        elif op == "reserve" and state.reservation(rid) is None:
            state = reserve(state, policy, rid, amount, t).state
        elif op == "commit" and (held := state.reservation(rid)) is not None:
            state = commit(state, policy, rid, min(amount, held.amount), t).state
        elif op == "release":
            state = release(state, policy, rid, t).state
        assert isinstance(state, BudgetState)
        assert replace(state) == state  # replace() runs the full validation of every field
        assert 0 <= state.consumed <= MAX_BUDGET_COUNTER
        assert 0 <= state.emergency_used <= MAX_BUDGET_COUNTER
        assert 0 <= state.throttle_level <= MAX_THROTTLE_LEVEL


def test_a_saturated_counter_stays_saturated() -> None:
    policy = BudgetPolicy("compute", 100, US_PER_HOUR, OveragePolicy(80, 100, False, False, 10),
                          HardLimitAction.ALERT_ONLY)
    state = open_budget(AGENT, policy, T0)
    state = record_usage(state, policy, MAX_BUDGET_COUNTER - 5, T0 + 1).state
    state = record_usage(state, policy, 3, T0 + 2).state
    assert state.consumed == MAX_BUDGET_COUNTER - 2  # not there yet: counted exactly
    for amount in (3, MAX_BUDGET_COUNTER, 1, 0):
        state = record_usage(state, policy, amount, T0 + 2).state
        assert state.consumed == MAX_BUDGET_COUNTER
    assert state.emergency_used == 10  # exactly the reserve: the draw between the hard cap and the ceiling
    assert replace(state) == state
