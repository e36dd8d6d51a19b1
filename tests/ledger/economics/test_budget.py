"""Budgets: policies, windows, admission, spends, reservations, hierarchy, reallocation glue.

Method: examples pin the seed defaults and every threshold to the unit; hypothesis checks the
invariants over random event sequences (windows start exactly on boundaries of event time; a
refused request changes no consumption; admission equals what the spend would decide; under any
interleaving of reserve / commit / release / spend / advance, consumed + reserved never exceeds a
level's ceiling, and an org's consumption is the sum of its agents'). Deliberate deviations from
the seeds and from token-budget-contracts (the oracle, imported only here) are named
``test_deviation_*``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tbcontracts import BudgetManager
from tbcontracts.exceptions import BudgetExceededError

from ledger.economics.budget import (
    DEFAULT_POLICIES,
    DEFAULT_RESERVATION_TTL_US,
    MAX_THROTTLE_LEVEL,
    THROTTLE_MAX_DELAY_US,
    US_PER_DAY,
    US_PER_HOUR,
    US_PER_S,
    US_PER_WEEK,
    AlertKind,
    BudgetKind,
    BudgetPolicy,
    BudgetRefused,
    BudgetState,
    BudgetStatus,
    HardLimitAction,
    OveragePolicy,
    Reason,
    Reservation,
    Scope,
    ScopeLevel,
    Verdict,
    adjust_allocation,
    admission,
    admission_chain,
    advance,
    apply_spend,
    apply_spend_chain,
    backoff_delay_us,
    commit,
    commit_chain,
    default_policy,
    open_budget,
    participant,
    reallocatable,
    reallocate,
    record_confidence,
    record_usage,
    release,
    reserve,
    reserve_chain,
    resume,
    scale_policy,
    scope_chain,
    shortfall,
    view,
    window_start,
)
from ledger.economics.reallocation import Refusal, Transfer
from ledger.errors import ValidationError

AGENT = Scope(ScopeLevel.AGENT, "agent-1")
T0 = 1_700_000_000 * US_PER_S  # an event time well inside a day


def day_start(t: int) -> int:
    return t - t % US_PER_DAY


def spend_all(state: BudgetState, policy: BudgetPolicy, amounts: list[int], t: int = T0):
    results = []
    for amount in amounts:
        result = apply_spend(state, policy, amount, t)
        state = result.state
        results.append(result)
    return state, results


def kinds(alerts) -> list[AlertKind]:
    return [a.kind for a in alerts]


# --- policies and defaults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "allocation", "interval", "soft", "hard", "throttle", "suspend", "emergency", "action"),
    [
        (BudgetKind.ACTION, 5_000, US_PER_DAY, 80, 100, True, True, 10, HardLimitAction.DENY),
        (BudgetKind.DATA, 2_000_000, US_PER_DAY, 85, 100, True, False, 5, HardLimitAction.DENY),
        (BudgetKind.COMPUTE, 500, US_PER_HOUR, 75, 90, True, True, 15, HardLimitAction.DENY),
        (BudgetKind.TRUST, 1_000, US_PER_WEEK, 90, 100, False, False, 0, HardLimitAction.DENY),
        (BudgetKind.LLM_TOKENS, 1_000_000, US_PER_DAY, 80, 100, False, False, 0, HardLimitAction.THROTTLE),
        (BudgetKind.USD, 100_000_000, US_PER_DAY, 80, 100, False, False, 0, HardLimitAction.THROTTLE),
    ],
)
def test_seed_defaults(kind, allocation, interval, soft, hard, throttle, suspend, emergency, action) -> None:
    policy = DEFAULT_POLICIES[kind]
    assert (policy.allocation, policy.reset_interval_us) == (allocation, interval)
    o = policy.overage
    assert (o.soft_limit_pct, o.hard_limit_pct, o.throttle_at_soft, o.suspend_at_hard, o.emergency_reserve_pct) == (
        soft,
        hard,
        throttle,
        suspend,
        emergency,
    )
    assert policy.hard_limit_action is action
    assert policy.min_reserve == allocation // 10  # the reference's 10% default
    assert (policy.priority, policy.confidence_threshold, policy.anchor_us) == (1, None, 0)


def test_default_policy_changes_and_units() -> None:
    policy = default_policy("action", allocation=200, priority=3, confidence_threshold=0.85)
    assert (policy.allocation, policy.min_reserve, policy.priority) == (200, 20, 3)
    assert BudgetKind.USD.unit == "micro-USD" and BudgetKind.DATA.unit == "bytes"
    with pytest.raises(ValidationError):
        default_policy("action", colour="red")
    with pytest.raises(ValidationError):
        default_policy("action", kind="data")
    with pytest.raises(ValidationError):
        default_policy("gold")


def test_scale_policy_by_reputation_multiplier() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    assert scale_policy(policy, Decimal("1.5")).allocation == 7_500
    assert scale_policy(policy, Decimal("1.5")).min_reserve == 500
    halved = scale_policy(default_policy("action", allocation=5, min_reserve=5), Decimal("0.5"))
    assert (halved.allocation, halved.min_reserve) == (2, 2)  # floor(2.5); reserve clipped to fit
    with pytest.raises(ValidationError):
        scale_policy(policy, 1.5)  # binary float


BAD_POLICIES = [
    dict(kind="gold", allocation=1, reset_interval_us=1),
    dict(kind="action", allocation=-1, reset_interval_us=1),
    dict(kind="action", allocation=True, reset_interval_us=1),
    dict(kind="action", allocation=1.0, reset_interval_us=1),
    dict(kind="action", allocation=1, reset_interval_us=0),
    dict(kind="action", allocation=1, reset_interval_us=1, hard_limit_action="explode"),
    dict(kind="action", allocation=1, reset_interval_us=1, min_reserve=2),
    dict(kind="action", allocation=1, reset_interval_us=1, priority=0),
    dict(kind="action", allocation=1, reset_interval_us=1, confidence_threshold=1.5),
    dict(kind="action", allocation=1, reset_interval_us=1, confidence_threshold=float("nan")),
    dict(kind="action", allocation=1, reset_interval_us=1, anchor_us=-1),
    dict(kind="action", allocation=1, reset_interval_us=1, overage="strict"),
    dict(kind="action", allocation=1, reset_interval_us=1, overage=OveragePolicy(suspend_at_hard=True), hard_limit_action="throttle"),
]


@pytest.mark.parametrize("fields", BAD_POLICIES)
def test_bad_policies_rejected(fields: dict) -> None:
    with pytest.raises(ValidationError):
        BudgetPolicy(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        dict(soft_limit_pct=90, hard_limit_pct=80),
        dict(hard_limit_pct=0),
        dict(soft_limit_pct=80.0),
        dict(hard_limit_pct=Decimal("NaN")),
        dict(emergency_reserve_pct=-1),
        dict(hard_limit_pct=1001),
        dict(throttle_at_soft=1),
    ],
)
def test_bad_overage_policies_rejected(fields: dict) -> None:
    with pytest.raises(ValidationError):
        OveragePolicy(**fields)


def test_decimal_percentages_are_exact() -> None:
    policy = BudgetPolicy("llm_tokens", 1000, US_PER_DAY, OveragePolicy(Decimal("33.3"), Decimal("66.7"), False, False, Decimal("0.1")))
    assert (policy.hard_cap(1000), policy.emergency_allowance(1000), policy.ceiling(1000)) == (667, 1, 668)
    assert policy.status(333, 1000) is BudgetStatus.WARNING
    assert policy.status(332, 1000) is BudgetStatus.HEALTHY  # soft below 50%: "normal" never shows


# --- windows -----------------------------------------------------------------------------------


def test_window_start_examples() -> None:
    assert window_start(T0, US_PER_DAY) == day_start(T0)
    assert window_start(day_start(T0), US_PER_DAY) == day_start(T0)  # a boundary opens its window
    assert window_start(day_start(T0) - 1, US_PER_DAY) == day_start(T0) - US_PER_DAY
    assert window_start(5, 10, anchor_us=7) == -3  # before the anchor: floor, not truncation
    assert window_start(17, 10, anchor_us=7) == 17
    with pytest.raises(ValidationError):
        window_start(-1, 10)
    with pytest.raises(ValidationError):
        window_start(5, 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**62), st.integers(1, 10 * 366 * US_PER_DAY), st.integers(0, 2**62))
def test_window_start_is_the_boundary_at_or_before(t: int, interval: int, anchor: int) -> None:
    start = window_start(t, interval, anchor)
    assert (start - anchor) % interval == 0
    assert start <= t < start + interval


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5_000),
    st.integers(0, 20_000),
    st.lists(st.tuples(st.integers(0, 60_000), st.integers(0, 400)), min_size=1, max_size=40),
)
def test_resets_land_exactly_on_window_boundaries(interval: int, anchor: int, events: list[tuple[int, int]]) -> None:
    # ALLOW admits everything, so the model is only about windows: a spend counts in the window of
    # the latest event time seen (late events in the current one), and nothing carries over a reset.
    policy = BudgetPolicy("llm_tokens", 1_000, interval, OveragePolicy(80, 100, False, False, 0), HardLimitAction.ALLOW, anchor_us=anchor)
    state = open_budget(AGENT, policy, events[0][0])
    model_start, model_consumed, latest = window_start(events[0][0], interval, anchor), 0, events[0][0]
    for t, amount in events:
        latest = max(latest, t)
        if window_start(latest, interval, anchor) != model_start:
            model_start, model_consumed = window_start(latest, interval, anchor), 0
        model_consumed += amount
        state = apply_spend(state, policy, amount, t).state
        assert state.window_start_us == model_start
        assert (state.window_start_us - anchor) % interval == 0
        assert state.window_start_us <= latest < state.window_start_us + interval
        assert state.consumed == model_consumed


def test_reset_exactly_at_the_boundary_and_not_a_microsecond_before() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    end = day_start(T0) + US_PER_DAY
    state = apply_spend(open_budget(AGENT, policy, T0), policy, 3_000, T0).state
    assert apply_spend(state, policy, 1, end - 1).state.consumed == 3_001
    after = apply_spend(state, policy, 1, end).state
    assert (after.window_start_us, after.consumed) == (end, 1)


def test_late_event_counts_in_the_current_window() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    state = apply_spend(open_budget(AGENT, policy, T0), policy, 10, T0 + US_PER_DAY).state
    late = apply_spend(state, policy, 5, T0).state  # a day late: the closed window never reopens
    assert (late.window_start_us, late.consumed) == (state.window_start_us, 15)


# --- status, emergency reserve, suspension ------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "consumed", "status"),
    [
        (BudgetKind.ACTION, 0, BudgetStatus.HEALTHY),
        (BudgetKind.ACTION, 2_499, BudgetStatus.HEALTHY),
        (BudgetKind.ACTION, 2_500, BudgetStatus.NORMAL),
        (BudgetKind.ACTION, 3_999, BudgetStatus.NORMAL),
        (BudgetKind.ACTION, 4_000, BudgetStatus.WARNING),
        (BudgetKind.ACTION, 4_999, BudgetStatus.WARNING),
        (BudgetKind.ACTION, 5_000, BudgetStatus.CRITICAL),
        (BudgetKind.COMPUTE, 374, BudgetStatus.NORMAL),
        (BudgetKind.COMPUTE, 375, BudgetStatus.WARNING),
        (BudgetKind.COMPUTE, 449, BudgetStatus.WARNING),
        (BudgetKind.COMPUTE, 450, BudgetStatus.CRITICAL),
    ],
)
def test_status_thresholds(kind: BudgetKind, consumed: int, status: BudgetStatus) -> None:
    policy = DEFAULT_POLICIES[kind]
    state = BudgetState(AGENT, kind, policy.window_start(T0), policy.allocation, consumed)
    row = view(state, policy)
    assert row.status is status
    assert row.utilisation == consumed / policy.allocation
    assert row.remaining == policy.allocation - consumed


def test_zero_allocation_is_critical_and_admits_nothing() -> None:
    policy = default_policy("trust", allocation=0)
    state = open_budget(AGENT, policy, T0)
    assert view(state, policy).status is BudgetStatus.CRITICAL
    assert view(state, policy).utilisation == 0.0
    assert admission(state, policy, 1, T0).verdict is Verdict.DENY
    assert admission(state, policy, 0, T0).verdict is Verdict.ALLOW


def test_action_budget_walk_soft_hard_emergency_suspend_resume() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]  # 5000/day, soft 80 throttle, hard 100 suspend, emergency 10
    state = open_budget(AGENT, policy, T0)
    state, results = spend_all(state, policy, [3_999, 1, 1_000, 500, 1, 1])
    verdicts = [(r.decision.verdict, r.decision.reason) for r in results]
    assert verdicts == [
        (Verdict.ALLOW, Reason.WITHIN_BUDGET),
        (Verdict.THROTTLE, Reason.SOFT_LIMIT),
        (Verdict.THROTTLE, Reason.SOFT_LIMIT),
        (Verdict.THROTTLE, Reason.EMERGENCY_RESERVE),
        (Verdict.DENY, Reason.HARD_LIMIT),
        (Verdict.DENY, Reason.SUSPENDED),
    ]
    assert [kinds(r.alerts) for r in results] == [
        [],
        [AlertKind.SOFT_LIMIT],
        [AlertKind.HARD_LIMIT],
        [AlertKind.EMERGENCY_RESERVE],
        [AlertKind.SUSPENDED],
        [],
    ]
    assert [r.decision.delay_us for r in results[1:4]] == [1 * US_PER_S, 2 * US_PER_S, 4 * US_PER_S]
    window_end = day_start(T0) + US_PER_DAY
    assert results[4].decision.delay_us == results[5].decision.delay_us == window_end - T0  # retry after the reset
    assert (state.consumed, state.emergency_used, state.suspended) == (5_500, 500, True)
    assert results[3].alerts[0].amount == 500
    reset = apply_spend(state, policy, 10, window_end)
    assert kinds(reset.alerts) == [AlertKind.RESUMED]
    assert (reset.state.consumed, reset.state.suspended, reset.state.throttle_level, reset.state.emergency_used) == (10, False, 0, 0)


def test_deviation_from_seed_reaching_the_hard_limit_exactly_is_within_budget() -> None:
    """Seed 002 treats utilisation >= hard% as an overage (a spend landing exactly on 100% uses the
    emergency reserve or suspends). Ours: the hard limit itself is spendable; only beyond it is over."""
    policy = default_policy("action", overage=OveragePolicy(80, 100, False, True, 10))
    result = apply_spend(open_budget(AGENT, policy, T0), policy, 5_000, T0)
    assert (result.decision.verdict, result.decision.reason) == (Verdict.ALLOW, Reason.WITHIN_BUDGET)
    assert result.state.emergency_used == 0 and not result.state.suspended
    assert view(result.state, policy).status is BudgetStatus.CRITICAL  # status still follows the seed


def test_deviation_from_seed_emergency_reserve_is_drawn_once_per_window() -> None:
    """Seed 002 compares each spend alone with the whole reserve, so the reserve never runs out.
    Ours: the reserve is a per-window amount; what is drawn is gone until the reset."""
    policy = default_policy("action", overage=OveragePolicy(80, 100, False, False, 10))
    state, results = spend_all(open_budget(AGENT, policy, T0), policy, [5_000, 300, 300])
    assert [r.decision.reason for r in results] == [Reason.WITHIN_BUDGET, Reason.EMERGENCY_RESERVE, Reason.HARD_LIMIT]
    assert (state.consumed, state.emergency_used) == (5_300, 300)


def test_deviation_from_seed_suspension_only_where_the_policy_says_so() -> None:
    """Seed 002 suspends at the hard limit whatever suspendAtHard says. Ours: data budgets
    (suspendAtHard false) refuse the overage but stay open."""
    policy = DEFAULT_POLICIES[BudgetKind.DATA]  # 2,000,000 B/day, emergency 5% = 100,000
    state, results = spend_all(open_budget(AGENT, policy, T0), policy, [2_100_000, 1, 0])
    assert [r.decision.verdict for r in results] == [Verdict.THROTTLE, Verdict.DENY, Verdict.THROTTLE]
    assert not state.suspended and AlertKind.SUSPENDED not in kinds(results[1].alerts)


def test_compute_budget_hard_limit_below_100_percent() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.COMPUTE]  # 500/hour, hard 90% = 450, emergency 15% = 75
    state = open_budget(AGENT, policy, T0)
    assert admission(state, policy, 450, T0).reason is Reason.SOFT_LIMIT
    assert admission(state, policy, 525, T0).reason is Reason.EMERGENCY_RESERVE
    assert admission(state, policy, 526, T0).reason is Reason.HARD_LIMIT
    hourly = apply_spend(state, policy, 100, T0 + US_PER_HOUR)
    assert hourly.state.window_start_us == window_start(T0 + US_PER_HOUR, US_PER_HOUR)


def test_trust_budget_never_throttles_and_has_no_reserve() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.TRUST]
    state, results = spend_all(open_budget(AGENT, policy, T0), policy, [950, 50, 1])
    assert [r.decision.verdict for r in results] == [Verdict.ALLOW, Verdict.ALLOW, Verdict.DENY]
    assert kinds(results[0].alerts) == [AlertKind.SOFT_LIMIT] and kinds(results[1].alerts) == [AlertKind.HARD_LIMIT]
    assert not state.suspended and state.consumed == 1_000


def test_operator_resume_lifts_a_suspension() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    state, _ = spend_all(open_budget(AGENT, policy, T0), policy, [6_000])
    assert state.suspended
    resumed = resume(state, policy, T0 + 5)
    assert not resumed.state.suspended and kinds(resumed.alerts) == [AlertKind.RESUMED]
    assert resume(resumed.state, policy, T0 + 6).alerts == ()


# --- throttle backoff ---------------------------------------------------------------------------


def test_backoff_delays_follow_seed_003() -> None:
    assert [backoff_delay_us(level) for level in range(MAX_THROTTLE_LEVEL + 1)] == [
        0,
        1 * US_PER_S,
        2 * US_PER_S,
        4 * US_PER_S,
        8 * US_PER_S,
        16 * US_PER_S,
        32 * US_PER_S,
        THROTTLE_MAX_DELAY_US,
    ]
    with pytest.raises(ValidationError):
        backoff_delay_us(MAX_THROTTLE_LEVEL + 1)


def test_hard_limit_throttle_refuses_with_growing_backoff_until_budget_returns() -> None:
    policy = default_policy("llm_tokens", allocation=1_000)  # hard-limit action THROTTLE
    state = apply_spend(open_budget(AGENT, policy, T0), policy, 1_000, T0).state
    delays = []
    for i in range(9):
        result = apply_spend(state, policy, 10, T0 + i)
        assert (result.decision.verdict, result.decision.reason) == (Verdict.DENY, Reason.HARD_LIMIT)
        assert result.state.consumed == 1_000
        delays.append(result.decision.delay_us // US_PER_S)
        state = result.state
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    more = adjust_allocation(state, policy, 100, T0 + 10).state  # a transfer in
    allowed = apply_spend(more, policy, 10, T0 + 11)
    assert allowed.decision.verdict is Verdict.ALLOW and allowed.state.throttle_level == 0


def test_soft_throttle_level_drops_when_the_budget_is_healthy_again() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    state, _results = spend_all(open_budget(AGENT, policy, T0), policy, [4_000, 10, 10])
    assert state.throttle_level == 3
    bigger = adjust_allocation(state, policy, 5_000, T0).state
    result = apply_spend(bigger, policy, 10, T0)
    assert result.decision.verdict is Verdict.ALLOW and result.state.throttle_level == 0


# --- hard-limit actions ALLOW and ALERT_ONLY ----------------------------------------------------


def test_deviation_from_seed_allow_action_admits_the_overage() -> None:
    """Seed 003's check_budget refuses every over-budget request unless the action is alert_only,
    so "allow" refuses. Ours: ALLOW admits silently, ALERT_ONLY admits with a BREACH alert."""
    for action, breach in ((HardLimitAction.ALLOW, False), (HardLimitAction.ALERT_ONLY, True)):
        policy = default_policy("usd", allocation=1_000, hard_limit_action=action)
        state, results = spend_all(open_budget(AGENT, policy, T0), policy, [1_000, 5, 5])
        assert [r.decision.reason for r in results] == [Reason.WITHIN_BUDGET, Reason.OVER_CEILING, Reason.OVER_CEILING]
        assert state.consumed == 1_010 and view(state, policy).available == 0
        assert [AlertKind.BREACH in kinds(r.alerts) for r in results] == [False, breach, breach]


# --- admission is the spend's own decision, and refusals change nothing ------------------------


POLICY_STRATEGY = st.builds(
    lambda alloc, soft, extra, throttle, emergency, action, suspend: BudgetPolicy(
        "compute",
        alloc,
        US_PER_HOUR,
        OveragePolicy(soft, soft + extra, throttle, suspend and action is HardLimitAction.DENY, emergency),
        action,
    ),
    st.integers(0, 2_000),
    st.integers(0, 100),
    st.integers(1, 60),
    st.booleans(),
    st.integers(0, 30),
    st.sampled_from(list(HardLimitAction)),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(POLICY_STRATEGY, st.lists(st.tuples(st.integers(0, 800), st.integers(0, 2 * US_PER_HOUR)), max_size=25))
def test_admission_equals_the_spends_decision_and_refusals_change_nothing(policy: BudgetPolicy, events) -> None:
    state = open_budget(AGENT, policy, T0)
    for amount, dt in events:
        t = T0 + dt
        decision = admission(state, policy, amount, t)
        result = apply_spend(state, policy, amount, t)
        assert result.decision == decision
        rolled = advance(state, policy, t).state
        if decision.admitted:
            assert result.state.consumed == rolled.consumed + amount
        else:
            assert result.state.consumed == rolled.consumed
            assert result.state.reservations == rolled.reservations
        if policy.hard_limit_action in (HardLimitAction.DENY, HardLimitAction.THROTTLE):
            assert result.state.consumed <= policy.ceiling(result.state.allocation)
        state = result.state


def test_replay_is_deterministic() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    events = [(700, T0 + i * US_PER_HOUR) for i in range(40)]

    def fold():
        state, out = open_budget(AGENT, policy, T0), []
        for amount, t in events:
            result = apply_spend(state, policy, amount, t)
            state = result.state
            out.append(result)
        return out

    assert fold() == fold()


# --- usage facts ---------------------------------------------------------------------------------


def test_record_usage_counts_a_fact_and_flags_what_admission_would_refuse() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    state = apply_spend(open_budget(AGENT, policy, T0), policy, 5_000, T0).state
    fact = record_usage(state, policy, 1_000, T0)  # beyond the 5,500 ceiling: it happened anyway
    assert fact.state.consumed == 6_000
    assert fact.decision.reason is Reason.HARD_LIMIT
    assert kinds(fact.alerts) == [AlertKind.EMERGENCY_RESERVE, AlertKind.BREACH, AlertKind.SUSPENDED]
    assert fact.alerts[1].reason is Reason.HARD_LIMIT
    assert fact.state.suspended and fact.state.emergency_used == 500
    within = record_usage(open_budget(AGENT, policy, T0), policy, 10, T0)
    assert within.alerts == () and within.decision.verdict is Verdict.ALLOW


# --- confidence gating in budgets ---------------------------------------------------------------


def gated_policy() -> BudgetPolicy:
    return default_policy("llm_tokens", allocation=3_000, confidence_threshold=0.85, priority=2)


def test_gate_closes_at_threshold_and_reopens_on_lower_confidence() -> None:
    policy = gated_policy()
    state = record_confidence(open_budget(AGENT, policy, T0), 0.9)
    refused = apply_spend(state, policy, 10, T0)
    assert (refused.decision.verdict, refused.decision.reason) == (Verdict.DENY, Reason.CONFIDENCE_GATE)
    assert refused.state.consumed == 0
    assert record_confidence(state, None).last_confidence == 0.9  # nothing reported, nothing changes
    reopened = record_confidence(state, 0.5)
    assert apply_spend(reopened, policy, 10, T0).decision.verdict is Verdict.ALLOW
    assert apply_spend(record_confidence(state, 0.85), policy, 10, T0).decision.reason is Reason.CONFIDENCE_GATE
    # the gate is about results, not budget periods: it stays closed across a reset
    assert admission(state, policy, 10, T0 + US_PER_DAY).reason is Reason.CONFIDENCE_GATE


def test_deviation_gate_is_checked_on_every_spend_path() -> None:
    """Reference: record_usage ignores the gate (quirk 19), so a gated agent's spend is recorded.
    Ours: apply_spend refuses it, and a usage fact that slipped through is flagged as a breach."""
    manager = BudgetManager()
    manager.register_agent("checker", priority=2, max_tokens=3_000, confidence_threshold=0.85)
    manager.record_usage("checker", 100, confidence=0.9)
    manager.record_usage("checker", 100)  # gate closed, recorded anyway
    assert manager.report()["checker"]["consumed"] == 200
    policy = gated_policy()
    state = record_confidence(apply_spend(open_budget(AGENT, policy, T0), policy, 100, T0).state, 0.9)
    assert apply_spend(state, policy, 100, T0).state.consumed == 100
    fact = record_usage(state, policy, 100, T0)
    assert fact.state.consumed == 200 and fact.alerts[-1].kind is AlertKind.BREACH
    assert fact.alerts[-1].reason is Reason.CONFIDENCE_GATE


def test_deviation_gate_refusal_names_the_request() -> None:
    """Reference: a gate block is reported as BudgetExceededError(requested=0). Ours: the decision
    carries the requested amount and says it was the gate."""
    manager = BudgetManager()
    manager.register_agent("checker", max_tokens=3_000, confidence_threshold=0.85)
    manager.record_usage("checker", 0, confidence=0.9)

    @manager.govern("checker")
    def call(prompt: str) -> str:
        return prompt

    with pytest.raises(BudgetExceededError) as blocked:
        call("one two three")
    assert (blocked.value.requested, blocked.value.available) == (0, 3_000)
    policy = gated_policy()
    decision = admission(record_confidence(open_budget(AGENT, policy, T0), 0.9), policy, 4, T0)
    assert (decision.requested, decision.reason) == (4, Reason.CONFIDENCE_GATE)
    with pytest.raises(BudgetRefused) as refused:
        decision.require()
    assert refused.value.evidence["reason"] is Reason.CONFIDENCE_GATE
    assert refused.value.evidence["requested"] == 4


def test_deviation_budget_is_checked_before_the_call() -> None:
    """Reference: govern runs the call first and checks the budget after (quirk 18): the tokens
    were spent, the result is thrown away and the spend is never recorded. Ours: the call is
    reserved first (reserve -> call -> commit), so an over-budget call never runs."""
    manager = BudgetManager()
    manager.register_agent("writer", max_tokens=3, min_reserve=0)
    calls: list[str] = []

    @manager.govern("writer")
    def write(prompt: str) -> str:
        calls.append(prompt)
        return prompt

    with pytest.raises(BudgetExceededError):
        write("one two three four five")  # estimated at int(5 words * 1.3) = 6 tokens > 3
    assert calls == ["one two three four five"] and manager.report()["writer"]["consumed"] == 0

    def governed(state: BudgetState, policy: BudgetPolicy, estimate: int, prompt: str) -> tuple[BudgetState, str | None]:
        held = reserve(state, policy, "call-1", estimate, T0)
        if not held.decision.admitted:
            return held.state, None
        result = write.__wrapped__(prompt)  # the undecorated call
        return commit(held.state, policy, "call-1", estimate, T0 + 1).state, result

    calls.clear()
    policy = default_policy("llm_tokens", allocation=3, hard_limit_action="deny")
    state, result = governed(open_budget(AGENT, policy, T0), policy, 6, "one two three four five")
    assert (result, calls, state.consumed, state.reserved) == (None, [], 0, 0)
    state, result = governed(state, policy, 3, "one two")
    assert (result, calls, state.consumed) == ("one two", ["one two"], 3)


# --- reservations --------------------------------------------------------------------------------


def race_policy() -> BudgetPolicy:
    return default_policy("llm_tokens", allocation=5_000, hard_limit_action="deny")


def test_racing_reservations_second_is_refused() -> None:
    policy = race_policy()
    state = open_budget(AGENT, policy, T0)
    first = reserve(state, policy, "r-a", 3_000, T0)
    second = reserve(first.state, policy, "r-b", 3_000, T0)
    assert first.decision.admitted and not second.decision.admitted
    assert second.decision.available == 2_000
    assert second.state.reserved == 3_000 and second.state.consumed == 0
    smaller = reserve(second.state, policy, "r-b", 2_000, T0)
    assert smaller.decision.admitted and smaller.state.reserved == 5_000
    assert apply_spend(smaller.state, policy, 1, T0).decision.verdict is Verdict.DENY  # holds count


def test_commit_and_release() -> None:
    policy = race_policy()
    state = reserve(open_budget(AGENT, policy, T0), policy, "r-1", 1_000, T0).state
    state = reserve(state, policy, "r-0", 500, T0).state
    assert [r.reservation_id for r in state.reservations] == ["r-0", "r-1"]  # sorted by id
    with pytest.raises(ValidationError):
        commit(state, policy, "r-1", 1_001, T0 + 1)
    with pytest.raises(ValidationError):
        reserve(state, policy, "r-1", 1, T0)  # already live
    done = commit(state, policy, "r-1", 600, T0 + 1)
    assert (done.decision.reason, done.state.consumed, done.state.reserved) == (Reason.RESERVED, 600, 500)
    again = commit(done.state, policy, "r-1", 600, T0 + 2)
    assert (again.decision.verdict, again.decision.reason, again.state.consumed) == (Verdict.DENY, Reason.NOT_RESERVED, 600)
    freed = release(done.state, policy, "r-0", T0 + 3)
    assert freed.reservation == Reservation("r-0", 500, T0, T0 + DEFAULT_RESERVATION_TTL_US)
    assert freed.state.reserved == 0
    assert release(freed.state, policy, "r-0", T0 + 4).reservation is None


def test_reservations_expire_by_event_time() -> None:
    policy = race_policy()
    state = reserve(open_budget(AGENT, policy, T0), policy, "r", 100, T0, ttl_us=1_000).state
    assert commit(state, policy, "r", 100, T0 + 999).decision.admitted
    assert commit(state, policy, "r", 100, T0 + 1_000).decision.reason is Reason.NOT_RESERVED
    gone = advance(state, policy, T0 + 1_000)
    assert gone.expired == state.reservations and gone.state.reserved == 0


def test_reservation_never_outlives_its_window() -> None:
    policy = race_policy()
    end = day_start(T0) + US_PER_DAY
    held = reserve(open_budget(AGENT, policy, end - 10), policy, "r", 100, end - 10).state
    assert held.reservations[0].expires_us == end
    after = advance(held, policy, end)
    assert after.expired == held.reservations and after.state.consumed == 0 and after.state.window_start_us == end


def test_throttled_reservation_is_held_with_its_delay() -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    result = reserve(open_budget(AGENT, policy, T0), policy, "r", 4_500, T0)
    assert (result.decision.verdict, result.decision.delay_us) == (Verdict.THROTTLE, US_PER_S)
    assert result.state.reserved == 4_500 and result.state.throttle_level == 1


# --- hierarchy -----------------------------------------------------------------------------------


def chain_for(agent: str, org_allocation: int, agent_allocation: int):
    org, ag = scope_chain(org="acme", agent=agent)
    org_policy = default_policy("llm_tokens", allocation=org_allocation, hard_limit_action="deny")
    agent_policy = default_policy("llm_tokens", allocation=agent_allocation, hard_limit_action="deny")
    return [(open_budget(org, org_policy, T0), org_policy), (open_budget(ag, agent_policy, T0), agent_policy)]


def test_scope_chain() -> None:
    assert scope_chain(org="o", task="t", agent="a") == (
        Scope(ScopeLevel.ORG, "o"),
        Scope(ScopeLevel.TASK, "t"),
        Scope(ScopeLevel.AGENT, "a"),
    )
    with pytest.raises(ValidationError):
        scope_chain()
    with pytest.raises(ValidationError):
        Scope("team", "x")
    with pytest.raises(ValidationError):
        Scope(ScopeLevel.ORG, "")


def test_spend_must_pass_every_level_and_counts_at_all_or_none() -> None:
    levels = chain_for("a1", org_allocation=100, agent_allocation=1_000)
    refused = apply_spend_chain(levels, 150, T0)
    assert (refused.decision.verdict, refused.decision.scope) == (Verdict.DENY, Scope(ScopeLevel.ORG, "acme"))
    assert [s.consumed for s in refused.states] == [0, 0]
    assert admission_chain(levels, 150, T0) == refused.decision
    ok = apply_spend_chain(levels, 60, T0)
    assert ok.decision.verdict is Verdict.ALLOW and [s.consumed for s in ok.states] == [60, 60]
    assert ok.decision.scope.level is ScopeLevel.ORG  # the binding level: least left


def test_org_rolls_up_its_agents() -> None:
    (org, org_policy), (a1, policy) = chain_for("a1", 10_000, 1_000)
    a2 = open_budget(Scope(ScopeLevel.AGENT, "a2"), policy, T0)
    first = apply_spend_chain([(org, org_policy), (a1, policy)], 300, T0)
    second = apply_spend_chain([(first.states[0], org_policy), (a2, policy)], 200, T0 + 1)
    assert second.states[0].consumed == first.states[1].consumed + second.states[1].consumed == 500


def test_chain_takes_the_longest_throttle() -> None:
    org, ag = scope_chain(org="o", agent="a")
    slow = default_policy("action", allocation=100)
    state = apply_spend(open_budget(org, slow, T0), slow, 85, T0).state
    state = apply_spend(state, slow, 1, T0).state  # org throttle level 2 now
    fast = default_policy("action", allocation=10_000)
    result = apply_spend_chain([(state, slow), (open_budget(ag, fast, T0), fast)], 1, T0)
    assert (result.decision.verdict, result.decision.delay_us, result.decision.scope) == (Verdict.THROTTLE, 4 * US_PER_S, org)


def test_bad_chains_rejected() -> None:
    levels = chain_for("a1", 100, 100)
    with pytest.raises(ValidationError):
        apply_spend_chain([], 1, T0)
    with pytest.raises(ValidationError):
        apply_spend_chain(list(reversed(levels)), 1, T0)
    with pytest.raises(ValidationError):
        apply_spend_chain([levels[0], levels[0]], 1, T0)
    action = DEFAULT_POLICIES[BudgetKind.ACTION]
    with pytest.raises(ValidationError):
        apply_spend_chain([levels[0], (open_budget(AGENT, action, T0), action)], 1, T0)
    with pytest.raises(ValidationError):
        apply_spend(levels[0][0], action, 1, T0)  # an llm_tokens state with an action policy


# --- reservations under any interleaving (property) -------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "commit", "release", "spend", "advance"]),
        st.integers(0, 2),  # which agent
        st.integers(0, 4),  # which reservation slot
        st.integers(0, 700),  # amount
        st.integers(-3, 400),  # time step in seconds (negative: a late event)
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(POLICY_STRATEGY.filter(lambda p: p.hard_limit_action in (HardLimitAction.DENY, HardLimitAction.THROTTLE)), min_size=4, max_size=4), OPS)
def test_reservations_never_let_any_level_exceed_its_ceiling(policies: list[BudgetPolicy], ops) -> None:
    org_policy, agent_policies = policies[0], policies[1:]
    org = open_budget(Scope(ScopeLevel.ORG, "o"), org_policy, T0)
    agents = [open_budget(Scope(ScopeLevel.AGENT, f"a{i}"), p, T0) for i, p in enumerate(agent_policies)]
    t, latest, late = T0, T0, False
    for op, who, slot, amount, step in ops:
        t = max(0, t + step * US_PER_S)
        late = late or t < latest
        latest = max(latest, t)
        levels = [(org, org_policy), (agents[who], agent_policies[who])]
        rid = f"a{who}-r{slot}"
        if op == "reserve":
            if advance(agents[who], agent_policies[who], t).state.reservation(rid) is not None:
                continue
            org, agents[who] = reserve_chain(levels, rid, amount, t, ttl_us=120 * US_PER_S).states
        elif op == "commit":
            held = advance(agents[who], agent_policies[who], t).state.reservation(rid)
            org, agents[who] = commit_chain(levels, rid, min(amount, held.amount) if held else amount, t).states
        elif op == "release":
            org = release(org, org_policy, rid, t).state
            agents[who] = release(agents[who], agent_policies[who], rid, t).state
        elif op == "spend":
            org, agents[who] = apply_spend_chain(levels, amount, t).states
        else:
            org, agents[who] = advance(org, org_policy, t).state, advance(agents[who], agent_policies[who], t).state
        for state, policy in [(org, org_policy), *zip(agents, agent_policies, strict=True)]:
            assert state.consumed + state.reserved <= policy.ceiling(state.allocation)
    if not late:  # roll-up: with every level advanced to the same time, the org is the sum of its agents
        end = latest + 1
        org_now = advance(org, org_policy, end).state
        agents_now = [advance(a, p, end).state for a, p in zip(agents, agent_policies, strict=True)]
        if len({p.reset_interval_us for p in policies}) == 1:
            assert org_now.consumed == sum(a.consumed for a in agents_now)
            assert org_now.reservations == tuple(sorted((r for a in agents_now for r in a.reservations), key=lambda r: r.reservation_id))


# --- reallocation between sibling budgets -------------------------------------------------------


def siblings():
    def budget(agent: str, priority: int, allocation: int, consumed: int):
        policy = default_policy("llm_tokens", allocation=allocation, priority=priority, hard_limit_action="deny")
        state = BudgetState(Scope(ScopeLevel.AGENT, agent), "llm_tokens", policy.window_start(T0), allocation, consumed)
        return state, policy

    return [budget("critic", 1, 2_000, 0), budget("researcher", 3, 4_000, 3_900), budget("writer", 2, 1_000, 0)]


def test_reallocate_covers_a_shortfall_with_transfers() -> None:
    budgets = siblings()
    assert shortfall(*budgets[1], 600) == 500
    moved = reallocate(budgets, "researcher", 600, T0)
    assert moved.transfers == (Transfer("critic", "researcher", 500),)
    assert [s.allocation for s in moved.states] == [1_500, 4_500, 1_000]
    assert sum(s.allocation for s in moved.states) == sum(s.allocation for s, _ in budgets)
    spent = apply_spend(moved.states[1], budgets[1][1], 600, T0)
    assert spent.decision.verdict is Verdict.ALLOW and spent.state.consumed == 4_500


def test_reallocate_refuses_atomically() -> None:
    budgets = siblings()
    refused = reallocate(budgets, "researcher", 10_000, T0)
    assert refused == Refusal("researcher", 9_900, 2_700)


def test_deviation_lent_tokens_return_at_the_window_reset() -> None:
    """Reference: reallocated tokens never come back (quirk 23: no periods). Ours: a transfer
    moves this window's allocation; every budget starts the next window from its policy."""
    manager = BudgetManager()
    manager.register_agent("critic", priority=1, max_tokens=2_000)
    manager.register_agent("researcher", priority=3, max_tokens=4_000)
    manager.reallocator.reallocate("researcher", 500)
    assert manager.report()["critic"]["allocated"] == 1_500  # and so it stays
    budgets = siblings()
    moved = reallocate(budgets, "researcher", 600, T0)
    tomorrow = [advance(s, p, T0 + US_PER_DAY).state.allocation for s, (_, p) in zip(moved.states, budgets, strict=True)]
    assert tomorrow == [2_000, 4_000, 1_000]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 3), st.integers(0, 3_000), st.integers(0, 3_000), st.integers(0, 100), st.integers(50, 150)), min_size=2, max_size=5),
    st.integers(0, 4),
    st.integers(0, 5_000),
)
def test_reallocation_keeps_every_donor_within_reserve_and_hard_cap(rows, needy_index: int, amount: int) -> None:
    budgets = []
    for i, (priority, allocation, consumed, reserve_pct, hard) in enumerate(rows):
        policy = BudgetPolicy(
            "compute", allocation, US_PER_HOUR, OveragePolicy(min(80, hard), hard, False, False, 0), priority=priority,
            min_reserve=allocation * reserve_pct // 100,
        )
        budgets.append((BudgetState(Scope(ScopeLevel.AGENT, f"a{i}"), "compute", policy.window_start(T0), allocation, consumed), policy))
    needy = f"a{needy_index % len(rows)}"
    result = reallocate(budgets, needy, amount, T0)
    if isinstance(result, Refusal):
        return
    before = {s.scope.id: (s, p) for s, p in budgets}
    assert sum(s.allocation for s in result.states) == sum(s.allocation for s, _ in budgets)
    for state in result.states:
        old, policy = before[state.scope.id]
        if state.allocation < old.allocation:  # a donor
            assert policy.priority <= before[needy][1].priority
            assert reallocatable(state, policy) >= policy.min_reserve
            assert state.consumed <= policy.hard_cap(state.allocation) or old.consumed > policy.hard_cap(old.allocation)
    needy_state = next(s for s in result.states if s.scope.id == needy)
    assert shortfall(needy_state, before[needy][1], amount) == 0


def test_adjust_allocation_guards_the_reserve() -> None:
    state, policy = siblings()[0]  # critic: 2,000, reserve 200
    assert participant(state, policy).spare == 1_800
    assert adjust_allocation(state, policy, -1_800, T0).state.allocation == 200
    with pytest.raises(ValidationError):
        adjust_allocation(state, policy, -1_801, T0)
    with pytest.raises(ValidationError):
        reallocate([siblings()[0]], "nobody", 5, T0)


# --- bad inputs to operations -------------------------------------------------------------------


@pytest.mark.parametrize("amount", [-1, True, 1.5, float("nan"), "10", None, 2**63])
def test_bad_amounts_rejected(amount) -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    state = open_budget(AGENT, policy, T0)
    for call in (admission, apply_spend, record_usage):
        with pytest.raises(ValidationError):
            call(state, policy, amount, T0)
    with pytest.raises(ValidationError):
        reserve(state, policy, "r", amount, T0)


@pytest.mark.parametrize("t", [-1, 1.0, True, None, 2**63])
def test_bad_event_times_rejected(t) -> None:
    policy = DEFAULT_POLICIES[BudgetKind.ACTION]
    state = open_budget(AGENT, policy, T0)
    with pytest.raises(ValidationError):
        apply_spend(state, policy, 1, t)
    with pytest.raises(ValidationError):
        advance(state, policy, t)


def test_bad_states_and_reservation_inputs_rejected() -> None:
    policy = race_policy()
    state = open_budget(AGENT, policy, T0)
    with pytest.raises(ValidationError):
        BudgetState(AGENT, "action", 0, 10, consumed=-1)
    with pytest.raises(ValidationError):
        BudgetState(AGENT, "action", 0, 10, reservations=(Reservation("b", 1, 0, 5), Reservation("a", 1, 0, 5)))
    with pytest.raises(ValidationError):
        Reservation("r", 1, 10, 10)  # expires when made
    with pytest.raises(ValidationError):
        reserve(state, policy, "", 1, T0)
    with pytest.raises(ValidationError):
        reserve(state, policy, "r", 1, T0, ttl_us=0)
    with pytest.raises(ValidationError):
        record_confidence(state, 1.2)
    with pytest.raises(ValidationError):
        record_confidence("state", 0.5)  # type: ignore[arg-type]
