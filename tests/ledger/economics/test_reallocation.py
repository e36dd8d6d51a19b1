"""Reallocation and confidence gating, against token-budget-contracts 0.3.0 as the oracle.

Method: each scenario is run twice, once through the reference package (register the agents in
agent-id order, set their consumption with a raw ledger write, call ``Reallocator.reallocate``) and
once through ``plan_reallocation``; where we match, the per-agent allocation changes must be
equal. Where we deviate on purpose, one named ``test_deviation_*`` shows the reference's behaviour
and ours side by side. Properties (hypothesis) cover conservation, reserves, no uphill flow,
atomicity and order independence. The reference is imported only here, never from ledger/.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tbcontracts import BudgetManager, ConfidenceGate
from tbcontracts.contract import BudgetContract
from tbcontracts.exceptions import BudgetExceededError

from ledger.economics.reallocation import (
    Participant,
    Refusal,
    Transfer,
    apply_transfers,
    eligible_donors,
    gate_allows,
    next_confidence,
    plan_reallocation,
    reputation_allocation,
)
from ledger.errors import ValidationError

# (agent_id, priority, max_tokens, consumed, min_reserve or None for the 10% default)
Agent = tuple[str, int, int, int, "int | None"]


def reference_reallocate(agents: list[Agent], needy: str, shortfall: int) -> tuple[int, dict[str, int]]:
    """What the reference moves: (tokens recovered, allocation change per agent)."""
    manager = BudgetManager()
    for agent_id, priority, max_tokens, consumed, min_reserve in agents:
        manager.register_agent(agent_id, priority=priority, max_tokens=max_tokens, min_reserve=min_reserve)
        manager.ledger.record(agent_id, consumed)  # raw write, as the reference's README suggests
    before = {a: v["allocated"] for a, v in manager.report().items()}
    recovered = manager.reallocator.reallocate(needy, shortfall)
    after = {a: v["allocated"] for a, v in manager.report().items()}
    return recovered, {a: after[a] - before[a] for a in before if after[a] != before[a]}


def participants_of(agents: list[Agent]) -> list[Participant]:
    out = []
    for agent_id, priority, max_tokens, consumed, min_reserve in agents:
        reserve = BudgetContract(agent_id, priority, max_tokens, min_reserve).min_reserve  # the reference's default rule
        out.append(Participant(agent_id, priority, max(0, max_tokens - consumed), reserve))
    return out


def deltas_of(transfers: tuple[Transfer, ...]) -> dict[str, int]:
    delta: dict[str, int] = {}
    for t in transfers:
        delta[t.donor] = delta.get(t.donor, 0) - t.amount
        delta[t.recipient] = delta.get(t.recipient, 0) + t.amount
    return {a: d for a, d in delta.items() if d}


def assert_matches_reference(agents: list[Agent], needy: str, shortfall: int) -> tuple[Transfer, ...]:
    recovered, reference_delta = reference_reallocate(agents, needy, shortfall)
    assert recovered == shortfall, "scenario must be coverable to compare moves"
    plan = plan_reallocation(participants_of(agents), needy, shortfall)
    assert not isinstance(plan, Refusal)
    assert deltas_of(plan) == reference_delta
    return plan


# --- the reference's scenarios (SEEDS.md §2.3 and the package README) -------------------------

QUICKSTART: list[Agent] = [
    ("critic", 1, 2000, 0, None),
    ("researcher", 3, 4000, 0, None),
    ("writer", 2, 1000, 0, None),
]


def test_lowest_priority_donates_first() -> None:
    plan = assert_matches_reference(QUICKSTART, "researcher", 1500)
    assert plan == (Transfer("critic", "researcher", 1500),)


def test_next_priority_after_lowest_is_drained_to_its_reserve() -> None:
    plan = assert_matches_reference(QUICKSTART, "researcher", 2500)
    # critic (priority 1) gives down to its 200 reserve, then writer (priority 2) the rest
    assert plan == (Transfer("critic", "researcher", 1800), Transfer("writer", "researcher", 700))


def test_most_idle_first_among_equal_priority() -> None:
    agents: list[Agent] = [("a", 1, 1000, 900, 0), ("b", 1, 1000, 100, 0), ("needy", 2, 100, 100, 0)]
    plan = assert_matches_reference(agents, "needy", 950)
    assert plan == (Transfer("b", "needy", 900), Transfer("a", "needy", 50))


def test_equal_priority_donates() -> None:
    agents: list[Agent] = [("peer", 2, 1000, 0, 100), ("needy", 2, 10, 10, 1)]
    assert assert_matches_reference(agents, "needy", 900) == (Transfer("peer", "needy", 900),)


def test_higher_priority_never_donates() -> None:
    agents: list[Agent] = [("boss", 5, 10_000, 0, 0), ("low", 1, 1000, 0, 0), ("needy", 2, 0, 0, 0)]
    assert assert_matches_reference(agents, "needy", 1000) == (Transfer("low", "needy", 1000),)
    assert [p.agent_id for p in eligible_donors(participants_of(agents), "needy")] == ["low"]


def test_donor_at_or_below_reserve_is_skipped() -> None:
    # "over" overdrew through a raw ledger write (remaining -50); "at" sits exactly on its reserve.
    agents: list[Agent] = [("at", 1, 1000, 900, 100), ("ok", 1, 500, 0, 50), ("over", 1, 1000, 1050, 100), ("needy", 3, 0, 0, 0)]
    assert assert_matches_reference(agents, "needy", 450) == (Transfer("ok", "needy", 450),)


def test_shortfall_zero_moves_nothing() -> None:
    assert reference_reallocate(QUICKSTART, "researcher", 0) == (0, {})
    assert plan_reallocation(participants_of(QUICKSTART), "researcher", 0) == ()


# --- deliberate deviations ---------------------------------------------------------------------


def test_deviation_reallocation_is_atomic() -> None:
    """Reference: a shortfall it cannot cover still moves what it found (SEEDS §4 quirk 17).
    Ours: a Refusal naming what was available, and nothing moves."""
    recovered, moved = reference_reallocate(QUICKSTART, "researcher", 5000)
    assert recovered == 2700 < 5000
    assert moved == {"critic": -1800, "writer": -900, "researcher": 2700}  # left behind after the failure
    plan = plan_reallocation(participants_of(QUICKSTART), "researcher", 5000)
    assert plan == Refusal("researcher", 5000, 2700)


def test_deviation_ties_broken_by_agent_id_not_registration_order() -> None:
    """Reference: equal priority and balance go in registration order. Ours: by agent id, which
    every processor shard agrees on without knowing the registration order."""
    registered_z_first: list[Agent] = [("z", 1, 500, 0, 0), ("a", 1, 500, 0, 0), ("needy", 2, 0, 0, 0)]
    _, moved = reference_reallocate(registered_z_first, "needy", 300)
    assert moved == {"z": -300, "needy": 300}
    assert plan_reallocation(participants_of(registered_z_first), "needy", 300) == (Transfer("a", "needy", 300),)


def test_deviation_negative_shortfall_and_float_priority_rejected() -> None:
    """Reference: a negative shortfall returns 0 and float priorities are accepted (quirk 22).
    Ours: both are input errors."""
    assert reference_reallocate(QUICKSTART, "researcher", -5) == (0, {})
    with pytest.raises(ValidationError) as bad:
        plan_reallocation(participants_of(QUICKSTART), "researcher", -5)
    assert bad.value.field == "shortfall"
    assert BudgetContract("x", priority=1.5).priority == 1.5
    with pytest.raises(ValidationError):
        Participant("x", 1.5, 10, 0)  # type: ignore[arg-type]


# --- the reference as an oracle over random scenarios -----------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Agent], str, int]:
    n = draw(st.integers(2, 7))
    agents: list[Agent] = []
    for i in range(n):
        max_tokens = draw(st.integers(0, 2000))
        consumed = draw(st.integers(0, max_tokens + 200))  # may overdraw, as a raw ledger write can
        reserve = draw(st.one_of(st.none(), st.integers(0, max_tokens)))
        agents.append((f"agent-{i:02d}", draw(st.integers(1, 4)), max_tokens, consumed, reserve))
    needy = draw(st.sampled_from([a[0] for a in agents]))
    return agents, needy, draw(st.integers(0, 6000))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_matches_reference_where_coverable_and_refuses_where_not(case: tuple[list[Agent], str, int]) -> None:
    agents, needy, shortfall = case
    recovered, moved = reference_reallocate(agents, needy, shortfall)
    plan = plan_reallocation(participants_of(agents), needy, shortfall)
    if recovered == shortfall:
        assert not isinstance(plan, Refusal)
        assert deltas_of(plan) == moved
    else:
        # The reference moved every spare token it could find, then failed; we move none.
        assert plan == Refusal(needy, shortfall, recovered)


# --- properties ---------------------------------------------------------------------------------


@st.composite
def participant_sets(draw: st.DrawFn) -> tuple[list[Participant], str, int]:
    ids = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=8, unique=True))
    people = [Participant(i, draw(st.integers(1, 5)), draw(st.integers(0, 10_000)), draw(st.integers(0, 3_000))) for i in ids]
    return people, draw(st.sampled_from(ids)), draw(st.integers(0, 30_000))


@settings(max_examples=300, deadline=None)
@given(participant_sets())
def test_transfers_conserve_respect_reserves_and_never_flow_uphill(case: tuple[list[Participant], str, int]) -> None:
    people, needy, shortfall = case
    plan = plan_reallocation(people, needy, shortfall)
    by_id = {p.agent_id: p for p in people}
    if isinstance(plan, Refusal):
        assert plan.available < shortfall
        assert plan.available == sum(p.spare for p in eligible_donors(people, needy))
        return
    after = {p.agent_id: p for p in apply_transfers(people, plan)}
    assert sum(t.amount for t in plan) == shortfall  # exactly the shortfall, no more
    assert sum(p.remaining for p in after.values()) == sum(p.remaining for p in people)  # conservation
    assert after[needy].remaining == by_id[needy].remaining + shortfall
    for t in plan:
        assert t.recipient == needy
        assert by_id[t.donor].priority <= by_id[needy].priority  # nothing flows uphill
        assert after[t.donor].remaining >= by_id[t.donor].min_reserve  # no donor below its reserve
    assert len({t.donor for t in plan}) == len(plan)  # each donor at most once


@settings(max_examples=150, deadline=None)
@given(participant_sets(), st.randoms(use_true_random=False))
def test_plan_does_not_depend_on_input_order(case: tuple[list[Participant], str, int], rng) -> None:
    people, needy, shortfall = case
    shuffled = list(people)
    rng.shuffle(shuffled)
    assert plan_reallocation(shuffled, needy, shortfall) == plan_reallocation(people, needy, shortfall)


def test_bad_reallocation_inputs() -> None:
    people = [Participant("a", 1, 100, 10), Participant("b", 2, 0, 0)]
    with pytest.raises(ValidationError):
        plan_reallocation(people, "nobody", 5)
    with pytest.raises(ValidationError):
        plan_reallocation([*people, Participant("a", 1, 1, 0)], "b", 5)
    with pytest.raises(ValidationError):
        plan_reallocation(people, "b", True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        plan_reallocation(people, "b", 2.0)  # type: ignore[arg-type]
    for bad in [("", 1, 1, 0), ("a", 0, 1, 0), ("a", 1, -1, 0), ("a", 1, 1, -1), ("a", True, 1, 0), ("a", 1, math.nan, 0)]:
        with pytest.raises(ValidationError):
            Participant(*bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Transfer("a", "a", 5)
    with pytest.raises(ValidationError):
        Transfer("a", "b", 0)
    with pytest.raises(ValidationError):
        apply_transfers(people, [Transfer("b", "a", 1)])  # b has nothing left
    with pytest.raises(ValidationError):
        apply_transfers(people, [Transfer("a", "zed", 1)])


# --- confidence gating (reference: ConfidenceGate.allow_further_retrieval) --------------------

THRESHOLDS = [None, 0.0, 0.5, 0.85, 1.0]
CONFIDENCES = [None, 0.0, 0.3, 0.5, 0.849, 0.85, 0.851, 1.0]


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_gate_matches_reference(threshold: float | None, confidence: float | None) -> None:
    contract = BudgetContract("agent", confidence_threshold=threshold)
    assert gate_allows(threshold, confidence) is ConfidenceGate.allow_further_retrieval(contract, confidence)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.floats(0, 1)), st.one_of(st.none(), st.floats(0, 1)))
def test_gate_matches_reference_everywhere_in_range(threshold: float | None, confidence: float | None) -> None:
    contract = BudgetContract("agent", confidence_threshold=threshold)
    assert gate_allows(threshold, confidence) is ConfidenceGate.allow_further_retrieval(contract, confidence)


def test_gate_equal_confidence_blocks_and_zero_threshold_blocks_zero() -> None:
    assert gate_allows(0.85, 0.85) is False
    assert gate_allows(0.0, 0.0) is False
    assert gate_allows(0.85, None) is True  # fail open before any signal
    assert gate_allows(None, 1.0) is True  # gating off


def test_recording_a_lower_confidence_reopens_the_gate_as_in_the_reference() -> None:
    manager = BudgetManager()
    manager.register_agent("checker", priority=2, max_tokens=3000, confidence_threshold=0.85)
    calls: list[float] = []

    @manager.govern("checker", confidence_fn=lambda result: result)
    def check(confidence: float) -> float:
        calls.append(confidence)
        return confidence

    check(0.9)
    with pytest.raises(BudgetExceededError):
        check(0.1)
    manager.record_usage("checker", 0, confidence=0.5)
    check(0.2)
    assert calls == [0.9, 0.2]
    # ours: the same transitions on the recorded confidence
    last = next_confidence(None, 0.9)
    assert not gate_allows(0.85, last)
    last = next_confidence(last, 0.5)
    assert gate_allows(0.85, last)


def test_unreported_confidence_keeps_the_last_one() -> None:
    """As the reference's record_usage(confidence=None): nothing reported, nothing changes."""
    manager = BudgetManager()
    manager.register_agent("checker", confidence_threshold=0.85)
    manager.record_usage("checker", 5, confidence=0.9)
    manager.record_usage("checker", 5)
    assert manager.contracts["checker"].last_confidence == 0.9
    assert next_confidence(0.9, None) == 0.9
    assert not gate_allows(0.85, next_confidence(0.9, None))
    assert next_confidence(None, None) is None


def test_deviation_out_of_range_confidence_rejected() -> None:
    """Reference: any float is accepted as a confidence (5.0 closes every gate). Ours: an error."""
    assert ConfidenceGate.allow_further_retrieval(BudgetContract("a", confidence_threshold=0.9), 5.0) is False
    for bad in [5.0, -0.1, math.nan, math.inf, True, "0.5"]:
        with pytest.raises(ValidationError):
            gate_allows(0.9, bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            next_confidence(None, bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        gate_allows(1.5, 0.2)


# --- reputation multipliers scaling allocations (seed 002) -------------------------------------


@pytest.mark.parametrize(
    ("score", "expected"),
    [(1.0, 7500), (0.9, 7500), (0.89, 6000), (0.8, 6000), (0.7, 5000), (0.69, 4000), (0.5, 4000), (0.49, 2500), (0.0, 2500)],
)
def test_reputation_scales_allocation(score: float, expected: int) -> None:
    assert reputation_allocation(5000, score) == expected


def test_reputation_scaling_rounds_down() -> None:
    assert reputation_allocation(3, 0.95) == 4  # 4.5 -> 4
    assert reputation_allocation(7, 0.85) == 8  # 8.4 -> 8
    with pytest.raises(ValidationError):
        reputation_allocation(100, 1.01)
    with pytest.raises(ValidationError):
        reputation_allocation(-1, 0.8)
