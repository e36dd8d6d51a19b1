"""Overdraw in the budget views: ``remaining`` is allocation - consumed, negative past the allocation, and the status
says ``overdrawn`` (token-budget-contracts reports an overdraw as negative remaining; seed 002 clamped it at 0)."""

from __future__ import annotations

import pytest
import tbcontracts

from ledger.economics.budget import (
    BudgetStatus,
    OveragePolicy,
    Scope,
    default_policy,
    open_budget,
    record_usage,
    view,
    view_status,
)
from ledger.wire.vocab import BudgetKind, ScopeLevel

T0 = 1_700_000_000_000_000
AGENT = Scope(ScopeLevel.AGENT, "writer")


def _spent(policy, amounts):
    state = open_budget(AGENT, policy, T0)
    for i, amount in enumerate(amounts):
        state = record_usage(state, policy, amount, T0 + i).state
    return state


@pytest.mark.parametrize(("amounts", "remaining", "status"), [
    ([999], 1, BudgetStatus.WARNING),  # 99.9%: the seed's warning
    ([1_000], 0, BudgetStatus.CRITICAL),  # exactly spent: critical, not overdrawn
    ([1_000, 1], -1, BudgetStatus.OVERDRAWN),
    ([700, 700], -400, BudgetStatus.OVERDRAWN),
])
def test_usage_past_the_allocation_is_negative_remaining_and_overdrawn(amounts: list[int], remaining: int,
                                                                      status: BudgetStatus) -> None:
    policy = default_policy(BudgetKind.LLM_TOKENS, allocation=1_000,
                            overage=OveragePolicy(80, 100, False, False, 0))
    row = view(_spent(policy, amounts), policy)
    assert (row.consumed, row.remaining, row.status) == (sum(amounts), remaining, status)
    assert row.available == 0 or row.remaining > 0  # admission still never goes below 0


def test_overdrawn_follows_the_allocation_not_the_hard_limit() -> None:
    # hard limit 120%: 1,100 of 1,000 is within the hard cap (warning by the seed) but past the allocation
    policy = default_policy(BudgetKind.LLM_TOKENS, allocation=1_000,
                            overage=OveragePolicy(80, 120, False, False, 0))
    row = view(_spent(policy, [1_100]), policy)
    assert (row.remaining, row.status, row.available) == (-100, BudgetStatus.OVERDRAWN, 100)
    assert policy.status(1_100, 1_000) is BudgetStatus.WARNING  # the fold's own status (alerts) is unchanged
    assert view_status(policy, 1_100, 1_000) is BudgetStatus.OVERDRAWN
    assert view_status(policy, 0, 0) is BudgetStatus.CRITICAL  # a zero allocation, unused: the seed's critical


def test_negative_remaining_agrees_with_the_reference_ledger() -> None:
    ref = tbcontracts.Ledger()
    ref.register("writer", 1_000)
    ref.record("writer", 1_250)
    policy = default_policy(BudgetKind.LLM_TOKENS, allocation=1_000,
                            overage=OveragePolicy(80, 100, False, False, 0))
    assert view(_spent(policy, [1_250]), policy).remaining == ref.remaining("writer") == -250
