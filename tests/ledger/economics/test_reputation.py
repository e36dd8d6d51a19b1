"""Reputation: decay by event time, scores, tiers, multipliers, incentive rules, bad input.

Method: examples pin the seed-002 thresholds and the decay arithmetic to exact values (a value is
halved exactly at one half-life); hypothesis checks that scores stay in [0, 1], ignore
self-issued trust and events from the future, and are bit-identical in any order of the events.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.economics.reputation import (
    DEFAULT_HALF_LIFE_US,
    DEFAULT_WEIGHTS,
    INCENTIVE_ISSUER,
    NEUTRAL_SCORE,
    US_PER_DAY,
    ReputationTier,
    TrustChange,
    TrustDimension,
    TrustEvent,
    apply_multiplier,
    budget_multiplier,
    decayed_value,
    incentive_event,
    reputation,
    reputation_tier,
    task_incentive,
    trust_event,
    usage_trust_change,
)
from ledger.errors import ValidationError
from ledger.wire.events import Body, Context, Event, Outcome, Trust

T0 = 1_700_000_000_000_000
ACC, COMP, FEED, REL = TrustDimension.ACCURACY, TrustDimension.COMPLIANCE, TrustDimension.FEEDBACK, TrustDimension.RELIABILITY


def ev(value: float, dimension: TrustDimension = ACC, *, t: int = T0, issuer: str = "peer", subject: str = "agent", half_life_us: int | None = None, n: int = 0) -> TrustEvent:
    return TrustEvent(f"e{n}-{issuer}-{t}", issuer, subject, dimension, value, t, half_life_us)


def test_newcomer_scores_neutral_and_keeps_its_base_budget() -> None:
    rep = reputation([], "agent", T0)
    assert rep.scores == tuple((d, NEUTRAL_SCORE) for d in TrustDimension)
    assert (rep.overall, rep.tier, rep.multiplier) == (0.7, ReputationTier.STANDARD, Decimal("1.0"))


def test_value_halves_exactly_at_each_half_life() -> None:
    event = ev(10.0)
    hl = DEFAULT_HALF_LIFE_US[ACC]
    assert decayed_value(event, T0, hl) == 10.0
    assert decayed_value(event, T0 + hl, hl) == 5.0
    assert decayed_value(event, T0 + 2 * hl, hl) == 2.5
    assert decayed_value(event, T0 - 1, hl) == 0.0  # not yet happened
    assert reputation([event], "agent", T0 + hl).score(ACC) == NEUTRAL_SCORE + 5.0 / 100


def test_half_lives_per_dimension_and_per_event() -> None:
    assert DEFAULT_HALF_LIFE_US == {ACC: 30 * US_PER_DAY, COMP: 90 * US_PER_DAY, FEED: 7 * US_PER_DAY, REL: 30 * US_PER_DAY}
    week = 7 * US_PER_DAY
    rep = reputation([ev(20.0, FEED), ev(20.0, COMP), ev(20.0, ACC, half_life_us=week)], "agent", T0 + week)
    assert rep.score(FEED) == NEUTRAL_SCORE + 0.1  # feedback halves in a week
    assert rep.score(ACC) == NEUTRAL_SCORE + 0.1  # the event's own half-life wins
    assert rep.score(COMP) == NEUTRAL_SCORE + 20.0 * 2.0 ** (-week / (90 * US_PER_DAY)) / 100


def test_self_issued_other_subjects_and_future_events_do_not_count() -> None:
    events = [ev(30.0, issuer="agent"), ev(30.0, subject="someone-else"), ev(30.0, t=T0 + 1)]
    assert reputation(events, "agent", T0).score(ACC) == NEUTRAL_SCORE
    assert not events[0].counts and events[1].counts


def test_scores_clamp_to_unit_interval() -> None:
    rep = reputation([ev(1000.0, ACC), ev(-1000.0, COMP)], "agent", T0)
    assert (rep.score(ACC), rep.score(COMP)) == (1.0, 0.0)
    assert rep.overall == pytest.approx((1.0 + 0.0 + 0.7 + 0.7) / 4)


def test_overall_is_the_weighted_mean() -> None:
    events = [ev(30.0, ACC)]  # accuracy 1.0, the others neutral
    weights = {ACC: 3.0, COMP: 1.0, FEED: 0.0, REL: 0.0}
    assert reputation(events, "agent", T0, weights=weights).overall == pytest.approx((3 * 1.0 + 0.7) / 4)
    with pytest.raises(ValidationError):
        reputation(events, "agent", T0, weights={ACC: 1.0})
    with pytest.raises(ValidationError):
        reputation(events, "agent", T0, weights=dict.fromkeys(TrustDimension, 0.0))
    with pytest.raises(ValidationError):
        reputation(events, "agent", T0, weights={**DEFAULT_WEIGHTS, ACC: math.nan})
    with pytest.raises(ValidationError):
        reputation(events, "agent", T0, half_lives={**DEFAULT_HALF_LIFE_US, ACC: 0})


@pytest.mark.parametrize(
    ("score", "tier", "multiplier"),
    [
        (1.0, ReputationTier.EXCELLENT, "1.5"),
        (0.9, ReputationTier.EXCELLENT, "1.5"),
        (0.8999, ReputationTier.GOOD, "1.2"),
        (0.8, ReputationTier.GOOD, "1.2"),
        (0.7, ReputationTier.STANDARD, "1.0"),
        (0.6999, ReputationTier.PROBATION, "0.8"),
        (0.5, ReputationTier.PROBATION, "0.8"),
        (0.4999, ReputationTier.RESTRICTED, "0.5"),
        (0.0, ReputationTier.RESTRICTED, "0.5"),
    ],
)
def test_tiers_and_multipliers_follow_seed_002(score: float, tier: ReputationTier, multiplier: str) -> None:
    assert reputation_tier(score) is tier
    assert budget_multiplier(score) == Decimal(multiplier)


def test_apply_multiplier_rounds_down_exactly() -> None:
    assert apply_multiplier(5_000, Decimal("1.2")) == 6_000
    assert apply_multiplier(3, Decimal("0.5")) == 1
    assert apply_multiplier(2**62, Decimal("1.5")) == 3 * 2**61  # no float rounding on large amounts
    with pytest.raises(ValidationError):
        apply_multiplier(10, 1.2)  # binary float
    with pytest.raises(ValidationError):
        apply_multiplier(2**63 - 1, 2)  # result beyond the largest amount


# --- incentives (seed 002) ------------------------------------------------------------------------


def test_task_reward_penalty_and_neutral_band() -> None:
    good = task_incentive("agent", 0.85, base_reward=100, multiplier=Decimal("1.2"))
    assert good.trust == TrustChange("agent", ACC, 8.5, "task_reward") and good.reward == 120 and not good.penalised
    assert task_incentive("agent", 0.8).trust.value == 8.0
    middle = task_incentive("agent", 0.79)
    assert middle.trust is None and not middle.penalised
    assert task_incentive("agent", 0.5).trust is None
    bad = task_incentive("agent", 0.4)
    assert bad.penalised and bad.trust == TrustChange("agent", ACC, -6.0, "task_penalty")
    assert task_incentive("agent", 0.0).trust.value == -10.0  # the mirror of a perfect score's +10


def test_usage_trust_changes() -> None:
    assert usage_trust_change("agent", 0.8, 0) is None  # the seed's threshold is strict
    assert usage_trust_change("agent", 0.81, 0) == TrustChange("agent", REL, 5.0, "efficiency")
    assert usage_trust_change("agent", 0.99, 2) == TrustChange("agent", COMP, -20.0, "anomaly")
    assert usage_trust_change("agent", 0.5, 10_000).value == -1000.0  # one event's limit


def test_trust_change_becomes_a_counting_event() -> None:
    change = usage_trust_change("agent", 0.9, 0)
    event = change.to_event(event_id="x1", issuer="reputation-processor", event_time_us=T0)
    assert event.counts and reputation([event], "agent", T0).score(REL) == NEUTRAL_SCORE + 0.05
    with pytest.raises(ValidationError):
        change.to_event(event_id="x2", issuer="agent", event_time_us=T0)


# --- properties ---------------------------------------------------------------------------------

EVENTS = st.lists(
    st.builds(
        TrustEvent,
        event_id=st.text("abcdef0123", min_size=1, max_size=6),
        issuer=st.sampled_from(["agent", "peer", "user", "system"]),
        subject=st.sampled_from(["agent", "other"]),
        dimension=st.sampled_from(list(TrustDimension)),
        value=st.floats(-1000, 1000, allow_nan=False),
        event_time_us=st.integers(T0 - 400 * US_PER_DAY, T0 + US_PER_DAY),
        half_life_us=st.one_of(st.none(), st.integers(1, 400 * US_PER_DAY)),
    ),
    max_size=30,
)


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.randoms(use_true_random=False))
def test_scores_are_bit_identical_in_any_order(events: list[TrustEvent], rng) -> None:
    shuffled = list(events)
    rng.shuffle(shuffled)
    a, b = reputation(events, "agent", T0), reputation(shuffled, "agent", T0)
    assert [bits(s) for _, s in a.scores] == [bits(s) for _, s in b.scores]
    assert bits(a.overall) == bits(b.overall) and a.tier is b.tier


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_scores_in_range_and_blind_to_self_and_future(events: list[TrustEvent]) -> None:
    rep = reputation(events, "agent", T0)
    assert all(0.0 <= s <= 1.0 for _, s in rep.scores) and 0.0 <= rep.overall <= 1.0
    counted = [e for e in events if e.counts and e.event_time_us <= T0]
    assert reputation(counted, "agent", T0) == rep


@settings(max_examples=200, deadline=None)
@given(st.floats(-1000, 1000, allow_nan=False), st.integers(0, 10**15), st.integers(0, 10**15), st.integers(1, 10**14))
def test_decay_never_grows(value: float, age1: int, extra: int, half_life: int) -> None:
    event = ev(value)
    early, late = decayed_value(event, T0 + age1, half_life), decayed_value(event, T0 + age1 + extra, half_life)
    assert abs(late) <= abs(early) <= abs(value)
    assert math.copysign(1.0, early) == math.copysign(1.0, value) or early == 0.0


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        dict(event_id=""),
        dict(issuer=7),
        dict(subject="x" * 257),
        dict(dimension="efficiency"),
        dict(value=math.nan),
        dict(value=math.inf),
        dict(value=True),
        dict(value=1000.5),
        dict(value="5"),
        dict(event_time_us=-1),
        dict(event_time_us=1.0),
        dict(half_life_us=0),
    ],
)
def test_bad_trust_events_rejected(fields: dict) -> None:
    base = dict(event_id="e", issuer="peer", subject="agent", dimension="accuracy", value=1.0, event_time_us=T0)
    with pytest.raises(ValidationError):
        TrustEvent(**{**base, **fields})


def test_bad_reputation_and_incentive_inputs_rejected() -> None:
    with pytest.raises(ValidationError):
        reputation([ev(1.0)], "agent", -5)
    with pytest.raises(ValidationError):
        reputation(["not an event"], "agent", T0)  # type: ignore[list-item]
    for bad in [-0.1, 1.1, math.nan, None]:
        with pytest.raises(ValidationError):
            reputation_tier(bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            task_incentive("agent", bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        usage_trust_change("agent", 0.9, -1)
    with pytest.raises(ValidationError):
        task_incentive("agent", 0.9, base_reward=-1)
    with pytest.raises(ValidationError):
        reputation([], "agent", T0).score("efficiency")


# ------------------------------------------------------------------ signed events into the model


def signed(signer: str, body: Body, *, event_id: str = "ab" * 16, t: int = T0) -> Event:
    return Event(event_id=event_id, signer_id=signer, seq=1, prev_hash=bytes(32), idempotency_key=None,
                 event_time_us=t, context=Context(), body=body)


def test_trust_event_reads_a_signed_trust_body() -> None:
    body = Trust(subject_id="agent", dimension="compliance", value_milli=-2_500, half_life_us=US_PER_DAY)
    assert trust_event(signed("peer", body), body) == TrustEvent("ab" * 16, "peer", "agent", COMP, -2.5, T0,
                                                                 US_PER_DAY)


def test_trust_event_leaves_out_self_issued_and_out_of_range_trust() -> None:
    own = Trust(subject_id="agent", dimension="accuracy", value_milli=5_000)
    assert trust_event(signed("agent", own), own) is None  # an agent never rates itself
    huge = Trust(subject_id="agent", dimension="accuracy", value_milli=1_000_001)  # 1000.001 > one event's limit
    assert trust_event(signed("peer", huge), huge) is None


@pytest.mark.parametrize(("score_milli", "expected"), [
    (900, (9.0, "task_reward")),  # >= 0.8: score * 10 accuracy trust
    (200, (-8.0, "task_penalty")),  # < 0.5: -(1 - score) * 10
    (600, None),  # in between: no change
    (None, None),  # not graded
])
def test_incentive_event_is_issued_by_the_reputation_processor_about_the_subject(
        score_milli: int | None, expected: tuple[float, str] | None) -> None:
    body = Outcome(task_id="t1", score_milli=score_milli, subject_id="agent")
    got = incentive_event(signed("grader", body), body, {"grader"})
    if expected is None:
        assert got is None
        return
    assert got is not None
    te, rule = got
    assert (te.value, rule) == expected
    assert (te.issuer, te.subject, te.dimension, te.event_time_us) == (INCENTIVE_ISSUER, "agent", ACC, T0)


def test_incentive_value_is_rounded_to_thousandths_as_stored() -> None:
    body = Outcome(task_id="t1", score_milli=810, subject_id="agent")  # 0.81 * 10 is 8.100000000000001 in floats
    change = task_incentive("agent", 0.81).trust
    assert change is not None and change.value != 8.1  # the pure rule's float, before rounding
    got = incentive_event(signed("grader", body), body, {"grader"})
    assert got is not None and got[0].value == 8.1  # what trust_history stores (8100 milli) and restores


@pytest.mark.parametrize(("signer", "subject", "graders"), [
    ("agent", None, {"agent"}),  # a self-report (no subject), even by a grader
    ("agent", "agent", {"agent"}),  # a grader grading itself
    ("peer", "agent", set()),  # a score from someone without the grader grant
])
def test_a_score_counts_only_as_a_graders_grade_of_another_agent(signer: str, subject: str | None,
                                                                  graders: set[str]) -> None:
    body = Outcome(task_id="t1", score_milli=1000, subject_id=subject)
    assert incentive_event(signed(signer, body), body, graders) is None
