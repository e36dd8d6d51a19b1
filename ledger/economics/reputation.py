"""Reputation: trust events that decay by event time, scores, tiers, budget multipliers, incentives.

What this module does
    A trust event says that ``issuer`` vouches for (positive value) or against (negative value)
    ``subject`` in one dimension: accuracy, compliance, feedback or reliability (seed 002's
    ``TrustToken.type``). Its weight halves every half-life of event time. The score of a subject
    in a dimension at an event time is::

        clamp(NEUTRAL_SCORE + fsum(value * 2 ** (-age_us / half_life_us)) / TRUST_TOKENS_PER_SCORE_UNIT, 0, 1)

    over the events about the subject in that dimension with ``event_time_us <= at_us``, leaving
    out self-issued ones. The overall score is the weighted mean of the four dimension scores
    (equal weights by default). The overall score picks a tier and a budget multiplier (seed 002's
    ``calculateReputationMultiplier``), and the incentive rules of seed 002 turn task outcomes,
    efficiency and anomalies into trust changes.

    ``trust_event`` and ``incentive_event`` read signed ``Trust`` and graded ``Outcome`` events into
    this model (an outcome's score counts only when a signer holding the operator's ``grader`` grant
    graded another agent: self-graded outcomes never move reputation), the one reading both the
    reputation and the budgets processors use, so the trust that scales an agent's budget is the trust
    its reputation shows.

    The bottom of the file holds the input checks the budget modules share (``require_*``): the
    three modules validate alike and raise the same ``ValidationError``.

Invariants
    * Scores lie in [0, 1]. An agent nobody has rated scores ``NEUTRAL_SCORE`` (0.7) in every
      dimension, which is exactly the start of the 1.0x multiplier tier: a newcomer gets its base
      budget, neither more nor less.
    * Trust an agent issues about itself never counts.
    * The same events give bit-identical scores in any order (``math.fsum`` is correctly rounded,
      so the sum does not depend on the order of its terms).
    * Multipliers are exact ``Decimal`` values; ``apply_multiplier`` rounds down, the one rounding
      rule for scaled token amounts (never grant more than the multiplier earns).

What it must never do
    Read a clock, the environment or any file; mutate an input; let an event from the future (after
    ``at_us``) count.

Defaults and where they come from
    * Tier thresholds and multipliers: seed 002 (>= 0.9 -> 1.5, >= 0.8 -> 1.2, >= 0.7 -> 1.0,
      >= 0.5 -> 0.8, else 0.5). The tier names are ours; the seed gives only the numbers.
    * 100 trust tokens per unit of score: seed 002 issues ``trustDelta * 100`` tokens for a score
      change of ``trustDelta``.
    * Half-lives: no seed gives numbers (seed 002 only says each token has a decay rate, and the
      trust budget resets weekly). Ours: feedback 7 days (one trust-budget window; opinions age
      fastest), accuracy and reliability 30 days, compliance 90 days (a policy breach is remembered
      longest). An event may carry its own half-life, which then wins.
    * Incentive thresholds: seed 002 (task score >= 0.8 issues ``score * 10`` accuracy tokens;
      < 0.5 is penalised; efficiency > 0.8 with no anomaly is +0.05 trust; each anomaly is -0.1).
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, TypeVar

from ledger.errors import ValidationError
from ledger.limits import (
    INT64_MAX,
    MAX_ANOMALIES,
    MAX_BUDGET_MULTIPLIER,
    MAX_HALF_LIFE_US,
    MAX_ID_CHARS,
    MAX_TRUST_VALUE,
    TRUST_RECENT_EVENTS,
)
from ledger.units import MILLI, US_PER_DAY
from ledger.wire.events import Event, Outcome, Trust
from ledger.wire.vocab import TrustDimension

NEUTRAL_SCORE = 0.7  # score with no trust events: the lower edge of the 1.0x tier (see docstring)
TRUST_TOKENS_PER_SCORE_UNIT = 100  # seed 002: a score change of d issues d * 100 trust tokens


# ---------------------------------------------------------------------------------------------
# Input checks shared by ledger.economics.budget and ledger.economics.reallocation
# ---------------------------------------------------------------------------------------------

E = TypeVar("E", bound=enum.Enum)


def require_int(field_name: str, value: object, *, low: int = 0, high: int = INT64_MAX) -> int:
    """``value`` as an int in [low, high]; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field_name, value, "must be an int")
    if value < low or value > high:
        raise ValidationError(field_name, value, f"must be between {low} and {high}")
    return value


def require_real(field_name: str, value: object, *, low: float, high: float) -> float:
    """``value`` (int or float, finite) as a float in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field_name, value, "must be a number")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise ValidationError(field_name, value, "is too large") from None
    if not math.isfinite(number):
        raise ValidationError(field_name, value, "must be finite")
    if number < low or number > high:
        raise ValidationError(field_name, value, f"must be between {low} and {high}")
    return number


def require_exact(field_name: str, value: object, *, low: int, high: int) -> Fraction:
    """``value`` (int or Decimal) as an exact Fraction in [low, high].

    Binary floats are refused: 0.1 is not one tenth, and percentages and multipliers decide
    integer token limits, which must not depend on float rounding.
    """
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValidationError(field_name, value, "must be an int or a Decimal (binary floats are not exact)")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValidationError(field_name, value, "must be finite")
    exact = Fraction(value)
    if exact < low or exact > high:
        raise ValidationError(field_name, value, f"must be between {low} and {high}")
    return exact


def require_id(field_name: str, value: object) -> str:
    """A non-empty printable string of at most MAX_ID_CHARS characters."""
    if not isinstance(value, str):
        raise ValidationError(field_name, value, "must be a string")
    if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
        raise ValidationError(field_name, value, f"must be 1..{MAX_ID_CHARS} printable characters")
    return value


def require_choice(choices: type[E], field_name: str, value: object) -> E:
    """A member of the enum ``choices``, given as the member or its string value."""
    if isinstance(value, choices):
        return value
    if isinstance(value, str):
        for member in choices:
            if member.value == value:
                return member
    raise ValidationError(field_name, value, f"must be one of {[m.value for m in choices]}")


def require_time(field_name: str, value: object) -> int:
    """An event time: integer microseconds since the Unix epoch."""
    return require_int(field_name, value, low=0, high=INT64_MAX)


# ---------------------------------------------------------------------------------------------
# Trust events and scores
# ---------------------------------------------------------------------------------------------


DEFAULT_HALF_LIFE_US: Mapping[TrustDimension, int] = MappingProxyType(
    {
        TrustDimension.ACCURACY: 30 * US_PER_DAY,
        TrustDimension.COMPLIANCE: 90 * US_PER_DAY,
        TrustDimension.FEEDBACK: 7 * US_PER_DAY,
        TrustDimension.RELIABILITY: 30 * US_PER_DAY,
    }
)

DEFAULT_WEIGHTS: Mapping[TrustDimension, float] = MappingProxyType({d: 1.0 for d in TrustDimension})


@dataclass(frozen=True)
class TrustEvent:
    """One trust token: ``issuer`` rates ``subject`` by ``value`` trust tokens in ``dimension``.

    ``half_life_us`` is the event's own decay (seed 002's per-token ``decay``); None means the
    dimension's default half-life applies.
    """

    event_id: str
    issuer: str
    subject: str
    dimension: TrustDimension
    value: float
    event_time_us: int
    half_life_us: int | None = None

    def __post_init__(self) -> None:
        require_id("event_id", self.event_id)
        require_id("issuer", self.issuer)
        require_id("subject", self.subject)
        object.__setattr__(self, "dimension", require_choice(TrustDimension, "dimension", self.dimension))
        value = require_real("value", self.value, low=-MAX_TRUST_VALUE, high=MAX_TRUST_VALUE)
        object.__setattr__(self, "value", value)  # ints become floats so every sum is a float sum
        require_time("event_time_us", self.event_time_us)
        if self.half_life_us is not None:
            require_int("half_life_us", self.half_life_us, low=1, high=MAX_HALF_LIFE_US)

    @property
    def counts(self) -> bool:
        """False for self-issued trust, which never counts."""
        return self.issuer != self.subject


def decayed_value(event: TrustEvent, at_us: int, half_life_us: int) -> float:
    """The event's value at ``at_us``: halved every ``half_life_us``; 0.0 before the event happened."""
    require_time("at_us", at_us)
    require_int("half_life_us", half_life_us, low=1, high=MAX_HALF_LIFE_US)
    age_us = at_us - event.event_time_us
    if age_us < 0:
        return 0.0
    # int / int is correctly rounded, and 2 ** -1.0 is exact: at one half-life the value is halved exactly.
    # float ** float is typed Any (a negative base could give a complex); the base here is 2.0
    factor: float = 2.0 ** (-(age_us / half_life_us))
    return event.value * factor


class ReputationTier(str, enum.Enum):  # noqa: UP042 - str() and format() of members must stay
    """Seed 002's multiplier brackets, named (the names are ours)."""

    EXCELLENT = "excellent"  # >= 0.9, budget x1.5
    GOOD = "good"  # >= 0.8, x1.2
    STANDARD = "standard"  # >= 0.7, x1.0
    PROBATION = "probation"  # >= 0.5, x0.8
    RESTRICTED = "restricted"  # below 0.5, x0.5


# Highest bracket first: the first lower bound the score reaches decides (seed 002 uses >=).
_TIERS: tuple[tuple[float, ReputationTier, Decimal], ...] = (
    (0.9, ReputationTier.EXCELLENT, Decimal("1.5")),
    (0.8, ReputationTier.GOOD, Decimal("1.2")),
    (0.7, ReputationTier.STANDARD, Decimal("1.0")),
    (0.5, ReputationTier.PROBATION, Decimal("0.8")),
    (0.0, ReputationTier.RESTRICTED, Decimal("0.5")),
)


def _bracket(score: float) -> tuple[ReputationTier, Decimal]:
    score = require_real("score", score, low=0.0, high=1.0)
    for lower, tier, multiplier in _TIERS:
        if score >= lower:
            return tier, multiplier
    raise AssertionError("unreachable: the last bracket starts at 0.0")


def reputation_tier(score: float) -> ReputationTier:
    """The tier of an overall score in [0, 1]."""
    return _bracket(score)[0]


def budget_multiplier(score: float) -> Decimal:
    """Seed 002's budget multiplier for an overall score in [0, 1], as an exact Decimal."""
    return _bracket(score)[1]


def apply_multiplier(amount: int, multiplier: int | Decimal) -> int:
    """``floor(amount * multiplier)``, exactly. The one rounding rule for scaled token amounts."""
    amount = require_int("amount", amount)
    factor = require_exact("multiplier", multiplier, low=0, high=MAX_BUDGET_MULTIPLIER)
    scaled = math.floor(amount * factor)
    return require_int("scaled amount", scaled)


@dataclass(frozen=True)
class Reputation:
    """A subject's scores at one event time. ``scores`` is in TrustDimension order."""

    subject: str
    at_us: int
    scores: tuple[tuple[TrustDimension, float], ...]
    overall: float
    tier: ReputationTier
    multiplier: Decimal

    def score(self, dimension: TrustDimension | str) -> float:
        wanted = require_choice(TrustDimension, "dimension", dimension)
        return next(s for d, s in self.scores if d is wanted)


def _check_half_lives(half_lives: Mapping[TrustDimension, int]) -> dict[TrustDimension, int]:
    if set(half_lives) != set(TrustDimension):
        raise ValidationError("half_lives", sorted(str(k) for k in half_lives), "must name every dimension")
    return {
        d: require_int(f"half_lives[{d.value}]", half_lives[d], low=1, high=MAX_HALF_LIFE_US) for d in TrustDimension
    }


def _check_weights(weights: Mapping[TrustDimension, float]) -> dict[TrustDimension, float]:
    if set(weights) != set(TrustDimension):
        raise ValidationError("weights", sorted(str(k) for k in weights), "must name every dimension")
    checked = {d: require_real(f"weights[{d.value}]", weights[d], low=0.0, high=1e6) for d in TrustDimension}
    if not any(checked.values()):
        raise ValidationError("weights", dict(weights), "must not all be zero")
    return checked


def reputation(
    events: Iterable[TrustEvent],
    subject: str,
    at_us: int,
    *,
    half_lives: Mapping[TrustDimension, int] = DEFAULT_HALF_LIFE_US,
    weights: Mapping[TrustDimension, float] = DEFAULT_WEIGHTS,
) -> Reputation:
    """The subject's per-dimension and overall scores, tier and budget multiplier at ``at_us``.

    ``events`` may hold events about other subjects (they are skipped), self-issued events (they
    never count) and events after ``at_us`` (not yet in force). The order of ``events`` does not
    change the result by a single bit.
    """
    require_id("subject", subject)
    require_time("at_us", at_us)
    default_half_life = _check_half_lives(half_lives)
    weight = _check_weights(weights)
    terms: dict[TrustDimension, list[float]] = {d: [] for d in TrustDimension}
    for event in events:
        if not isinstance(event, TrustEvent):
            raise ValidationError("events", event, "must hold TrustEvent values")
        if event.subject != subject or not event.counts or event.event_time_us > at_us:
            continue
        half_life = event.half_life_us if event.half_life_us is not None else default_half_life[event.dimension]
        terms[event.dimension].append(decayed_value(event, at_us, half_life))
    return _scored(subject, at_us, terms, weight)


def _scored(subject: str, at_us: int, terms: Mapping[TrustDimension, list[float]],
            weight: Mapping[TrustDimension, float]) -> Reputation:
    """Scores from each dimension's decayed terms: ``math.fsum`` is correctly rounded, so the order of the
    terms never changes a bit."""
    scores = tuple(
        (d, min(1.0, max(0.0, NEUTRAL_SCORE + math.fsum(terms[d]) / TRUST_TOKENS_PER_SCORE_UNIT)))
        for d in TrustDimension
    )
    overall = math.fsum(weight[d] * s for d, s in scores) / math.fsum(weight.values())
    overall = min(1.0, max(0.0, overall))  # a weighted mean of [0, 1] values; guard the last ulp
    tier, multiplier = _bracket(overall)
    return Reputation(subject, at_us, scores, overall, tier, multiplier)


# ---------------------------------------------------------------------------------------------
# Trust in bounded memory: the latest events one by one, the rest as decayed sums
# ---------------------------------------------------------------------------------------------


@dataclass
class DecayedSum:
    """Settled trust of one subject in one (dimension, half-life): ``total`` is the sum of the settled
    events' values decayed to ``ref_us``, the latest event time among them."""

    ref_us: int
    total: float
    events: int

    def settle(self, event: TrustEvent, half_life_us: int) -> None:
        """Add one event. A later one first decays the sum to its time (weights halve per half-life, so
        decaying a sum decays every term in it); an earlier one is decayed to ``ref_us`` and added."""
        if event.event_time_us >= self.ref_us:
            factor: float = 2.0 ** (-((event.event_time_us - self.ref_us) / half_life_us))
            self.total = self.total * factor + event.value
            self.ref_us = event.event_time_us
        else:
            self.total += decayed_value(event, self.ref_us, half_life_us)
        self.events += 1

    def at(self, at_us: int, half_life_us: int) -> float:
        """The sum's value at ``at_us``. Asked about a time before ``ref_us`` it answers its value at
        ``ref_us``: the settled events are never grown back (see ``TrustFold``)."""
        if at_us <= self.ref_us:
            return self.total
        factor: float = 2.0 ** (-((at_us - self.ref_us) / half_life_us))
        return self.total * factor


class TrustFold:
    """Every counted trust event about every subject, in memory bounded per subject, scored like ``reputation``.

    The latest ``recent`` events of a subject (by event time, then event id) are kept one by one; an older one
    is settled into the subject's ``DecayedSum`` for its (dimension, half-life). So a subject costs at most
    ``recent`` events plus a few sums, however long the log grows, and a score costs O(recent), not O(history).

    Exactness: while a subject has at most ``recent`` counted events, ``score`` equals ``reputation`` over
    them bit for bit. Past that, the settled sums agree with it to within float rounding (about 1e-15
    relative per event settled) and, asked about a time before a sum's ``ref_us`` (a time earlier than the
    subject's ``recent`` latest ratings), count the settled events as of ``ref_us`` instead of leaving out
    the ones claimed after the time asked about. Which event settles when depends only on the order the
    events are added: the log's order; ``rows``/``restore`` carry the sums bit for bit, so a restart and a
    replay reach the same bits.
    """

    def __init__(self, recent: int = TRUST_RECENT_EVENTS, *,
                 half_lives: Mapping[TrustDimension, int] = DEFAULT_HALF_LIFE_US,
                 weights: Mapping[TrustDimension, float] = DEFAULT_WEIGHTS) -> None:
        self.recent = require_int("recent", recent, low=1, high=1_000_000)
        self.half_lives = _check_half_lives(half_lives)
        self.weights = _check_weights(weights)
        self._recent: dict[str, list[tuple[int, str, TrustEvent]]] = {}  # min-heap by (event time, event id)
        self._sums: dict[str, dict[tuple[TrustDimension, int], DecayedSum]] = {}
        self._changed: set[tuple[str, TrustDimension, int]] = set()

    def half_life(self, event: TrustEvent) -> int:
        return event.half_life_us if event.half_life_us is not None else self.half_lives[event.dimension]

    def add(self, event: TrustEvent) -> None:
        """Count one trust event (self-issued ones never count and are ignored)."""
        if not event.counts:
            return
        heap = self._recent.setdefault(event.subject, [])
        heapq.heappush(heap, (event.event_time_us, event.event_id, event))
        if len(heap) > self.recent:
            self._settle(heapq.heappop(heap)[2])

    def _settle(self, event: TrustEvent) -> None:
        h = self.half_life(event)
        sums = self._sums.setdefault(event.subject, {})
        acc = sums.get((event.dimension, h))
        if acc is None:
            sums[(event.dimension, h)] = DecayedSum(event.event_time_us, event.value, 1)
        else:
            acc.settle(event, h)
        self._changed.add((event.subject, event.dimension, h))

    def counted(self, subject: str) -> int:
        """How many trust events about ``subject`` count."""
        return len(self._recent.get(subject, ())) + sum(s.events for s in self._sums.get(subject, {}).values())

    def score(self, subject: str, at_us: int) -> Reputation:
        """``reputation`` of ``subject`` at ``at_us`` over everything added (see the class note on exactness)."""
        require_id("subject", subject)
        require_time("at_us", at_us)
        terms: dict[TrustDimension, list[float]] = {d: [] for d in TrustDimension}
        for (dimension, h), acc in self._sums.get(subject, {}).items():
            terms[dimension].append(acc.at(at_us, h))
        for t, _, event in self._recent.get(subject, ()):
            if t <= at_us:
                terms[event.dimension].append(decayed_value(event, at_us, self.half_life(event)))
        return _scored(subject, at_us, terms, self.weights)

    def changed_rows(self) -> list[dict[str, Any]]:
        """The settled sums changed since the last call, as rows (subject, dimension, half_life_us, ref_us,
        total, events) to keep; ``restore`` takes them back."""
        out: list[dict[str, Any]] = []
        for subject, dimension, h in sorted(self._changed, key=lambda k: (k[0], k[1].value, k[2])):
            acc = self._sums[subject][(dimension, h)]
            out.append({"subject": subject, "dimension": dimension.value, "half_life_us": h,
                        "ref_us": acc.ref_us, "total": acc.total, "events": acc.events})
        self._changed.clear()
        return out

    def restore(self, sums: Iterable[tuple[str, str, int, int, float, int]], recent: Iterable[TrustEvent]) -> None:
        """Back to a kept state: the settled sums (rows as ``changed_rows`` gave them) and each subject's latest
        ``recent`` counted events (by event time, then event id), in any order."""
        for subject, dimension, h, ref_us, total, events in sums:
            dim = require_choice(TrustDimension, "dimension", dimension)
            self._sums.setdefault(subject, {})[(dim, h)] = DecayedSum(ref_us, total, events)
        for event in recent:
            heap = self._recent.setdefault(event.subject, [])
            heap.append((event.event_time_us, event.event_id, event))
        for heap in self._recent.values():
            heapq.heapify(heap)
            if len(heap) > self.recent:
                raise ValidationError("recent", len(heap), f"at most {self.recent} events per subject")


# ---------------------------------------------------------------------------------------------
# Incentive rules (seed 002, TokenEconomicEngine and TrustTokenIntegration)
# ---------------------------------------------------------------------------------------------

TASK_REWARD_MIN_SCORE = 0.8  # seed 002: performance.score >= 0.8 issues accuracy trust
TASK_PENALTY_BELOW_SCORE = 0.5  # seed 002: performance.score < 0.5 applies a penalty
TASK_TRUST_PER_SCORE = 10.0  # seed 002: issueTrustTokens(agent, 'accuracy', score * 10)
EFFICIENCY_REWARD_ABOVE = 0.8  # seed 002: patterns.efficiency > 0.8 (strictly) with no anomaly
EFFICIENCY_TRUST_REWARD = 5.0  # seed 002: trustDelta 0.05, issued as 0.05 * 100 tokens
ANOMALY_TRUST_PENALTY = 10.0  # seed 002: trustDelta -0.1 per anomaly, revoked as 0.1 * 100 tokens


@dataclass(frozen=True)
class TrustChange:
    """A trust change an incentive rule decided; ``to_event`` makes it a trust event to sign."""

    subject: str
    dimension: TrustDimension
    value: float
    rule: str  # which rule decided it: "task_reward", "task_penalty", "efficiency", "anomaly"

    def to_event(
        self, *, event_id: str, issuer: str, event_time_us: int, half_life_us: int | None = None
    ) -> TrustEvent:
        """The trust event that records this change, issued by ``issuer`` (never the subject)."""
        if issuer == self.subject:
            raise ValidationError("issuer", issuer, "must differ from the subject: self-issued trust does not count")
        return TrustEvent(event_id, issuer, self.subject, self.dimension, self.value, event_time_us, half_life_us)


@dataclass(frozen=True)
class TaskIncentive:
    """What a completed task earns: a reward amount, an optional trust change, a penalty flag."""

    subject: str
    performance_score: float
    reward: int  # floor(base_reward * multiplier), in the units of the rewarded budget kind
    trust: TrustChange | None
    penalised: bool


def task_incentive(
    subject: str, performance_score: float, *, base_reward: int = 0, multiplier: int | Decimal = 1
) -> TaskIncentive:
    """Seed 002's ``evaluatePerformanceIncentives`` for one task outcome.

    * score >= 0.8: ``+score * 10`` accuracy trust (seed 002).
    * score < 0.5: penalised with ``-(1 - score) * 10`` accuracy trust. The seed only says a
      penalty applies; the amount is ours, the mirror image of the reward (distance from a perfect
      score, on the same 10-tokens-per-point scale), so a score of 0 costs as much as 1 earns.
    * otherwise no trust change.
    The reward is ``floor(base_reward * multiplier)`` (seed: base reward times the active
    multipliers, for example ``budget_multiplier(score)``); how the base reward is priced is the
    caller's.
    """
    require_id("subject", subject)
    score = require_real("performance_score", performance_score, low=0.0, high=1.0)
    reward = apply_multiplier(require_int("base_reward", base_reward), multiplier)
    trust: TrustChange | None = None
    if score >= TASK_REWARD_MIN_SCORE:
        trust = TrustChange(subject, TrustDimension.ACCURACY, score * TASK_TRUST_PER_SCORE, "task_reward")
    elif score < TASK_PENALTY_BELOW_SCORE:
        trust = TrustChange(subject, TrustDimension.ACCURACY, -(1.0 - score) * TASK_TRUST_PER_SCORE, "task_penalty")
    return TaskIncentive(subject, score, reward, trust, penalised=score < TASK_PENALTY_BELOW_SCORE)


def usage_trust_change(subject: str, efficiency: float, anomaly_count: int) -> TrustChange | None:
    """Seed 002's ``updateTrustBasedOnTokenUsage``: efficiency- and anomaly-driven trust.

    * any anomaly: ``-10`` trust tokens per anomaly (seed: -0.1 score each, times 100 tokens), in
      the compliance dimension, at most MAX_TRUST_VALUE in one change (one event's limit);
    * no anomaly and efficiency > 0.8: ``+5`` tokens (seed: +0.05, times 100), in reliability;
    * otherwise no change.
    The seed files both under a fifth type, "efficiency", that its own ``TrustToken.type`` does
    not have; we file the reward under reliability (efficient, predictable use) and the anomaly
    penalty under compliance (suspicious use is a policy matter). ``efficiency`` is a fraction in
    [0, 1] the caller measures; this function applies the seed's thresholds to it.
    """
    require_id("subject", subject)
    efficiency = require_real("efficiency", efficiency, low=0.0, high=1.0)
    anomalies = require_int("anomaly_count", anomaly_count, high=MAX_ANOMALIES)
    if anomalies > 0:
        penalty = min(ANOMALY_TRUST_PENALTY * anomalies, MAX_TRUST_VALUE)
        return TrustChange(subject, TrustDimension.COMPLIANCE, -penalty, "anomaly")
    if efficiency > EFFICIENCY_REWARD_ABOVE:
        return TrustChange(subject, TrustDimension.RELIABILITY, EFFICIENCY_TRUST_REWARD, "efficiency")
    return None


# ---------------------------------------------------------------------------------------------
# Signed events into the model: the one reading the reputation and budgets processors share
# ---------------------------------------------------------------------------------------------

# The issuer recorded on incentive trust: the reputation processor's signer, never an agent, so it is
# never self-issued. Budgets records the same issuer, so both count the same events.
INCENTIVE_ISSUER = "processor.reputation"


def trust_event(ev: Event, body: Trust) -> TrustEvent | None:
    """The trust event of a signed ``Trust`` body (issuer = its signer), or None when it does not count:
    self-issued, or outside the model's range (|value| above one event's limit, ``MAX_TRUST_VALUE``)."""
    if ev.signer_id == body.subject_id:
        return None
    try:
        dimension = require_choice(TrustDimension, "dimension", body.dimension)
        return TrustEvent(ev.event_id, ev.signer_id, body.subject_id, dimension, body.value_milli / MILLI,
                          ev.event_time_us, body.half_life_us)
    except ValidationError:
        return None


def incentive_event(ev: Event, body: Outcome, graders: Container[str]) -> tuple[TrustEvent, str] | None:
    """The incentive trust of a graded ``Outcome`` (``task_incentive``) and the rule that decided it,
    issued by ``INCENTIVE_ISSUER`` about the outcome's ``subject_id``, its value rounded to thousandths as
    it is stored.

    A score counts only as a grade: signed by a signer in ``graders`` (those holding the operator's
    ``grader`` grant when the outcome was read) about another agent. A self-report (no subject, or the
    signer itself) or a score from a non-grader is None here: it still carries a confidence (the
    budgets processor's gate reads that), but an agent can never raise its own reputation.
    None also when the outcome has no score or its score earns no trust change."""
    if body.score_milli is None or not is_grade(ev, body, graders):
        return None
    assert body.subject_id is not None  # is_grade
    change = task_incentive(body.subject_id, body.score_milli / MILLI).trust
    if change is None:
        return None
    value = round(change.value * MILLI) / MILLI
    event = TrustEvent(ev.event_id, INCENTIVE_ISSUER, body.subject_id, change.dimension, value, ev.event_time_us)
    return event, change.rule


def is_grade(ev: Event, body: Outcome, graders: Container[str]) -> bool:
    """Whether an outcome's score is a grade that counts: a grader's, about someone else."""
    return body.subject_id is not None and body.subject_id != ev.signer_id and ev.signer_id in graders
