"""The rest of the interaction economics, as pure functions: spam deposits and progressive limits by
reputation, congestion pricing with QoS tiers and back-pressure, and caching economics.

Numbers
    * Money results are int micro-USD, computed exactly and rounded half-to-even once per amount;
      a total is the sum of its rounded parts (rule in ``ledger.economics.money``). Rates are int micro-USD
      per million tokens.
    * Multipliers that scale money (congestion, QoS, deposit, cache write/hit) are exact
      ``Fraction``s, so the money they produce never depends on float rounding; a float argument
      is read as the decimal it prints as (0.9 is 9/10).
    * Ratios and percentages that are only reported (ROI, compression ratio, savings %, the
      experimental position multiplier) are floats, computed exactly and converted once.

Formulas, constants and thresholds are those of the reference (context-window-economics 0.1.1),
including its quirks unless listed below: strict reputation boundaries (80 is "medium", 40 is
"low"); progressive limits that need low reputation **and** few interactions; a congestion
multiplier that is discontinuous and scales the whole utilisation (1 + k*u); "economy" is not
cheaper than "standard"; utilisation above 1 counts as 1.

Deliberate deviations, each tested:
1. Inputs are validated: negative, NaN, infinite, bool or absurd numbers are ``ValidationError``s
   naming the field (the reference computes negative deposits and prices, and reads NaN
   utilisation as 100%).
2. Unknown tier strings (reputation, QoS) are ``ValidationError``s (the reference silently uses
   1.5x, 1.0x or "standard").
3. An unknown reputation is ``None``, not a negative score; a score must be in [0, 100].
4. "No limit" and "no crossover" are ``None``, not -1.
5. A deposit quote records the effective reputation multiplier, not only the base one.
6. ``num_interactions`` and ``max_interactions`` must be at least 1 (the reference turns 0 or a
   negative count into 1, or returns empty lists).
7. ``cache_read_savings`` uses the model's real cache-read rate (the reference's tracker assumes
   every cache costs 10% of input).

Never: I/O, clock, environment, ids or timestamps (deposit records with ids live in events).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ledger.economics.money import (
    check_int,
    check_micros,
    check_rate,
    check_real,
    check_result_micros,
    check_tokens,
    cost_micros,
    exact_cost,
    exact_number,
    round_fraction,
)
from ledger.errors import ValidationError
from ledger.limits import (
    MAX_CROSSOVER_INTERACTIONS,
    MAX_INTERACTIONS,
    MAX_MONEY_MULTIPLIER,
    MAX_QUEUE_MS,
    MAX_REPUTATION_SCORE_POINTS,
)


def _choice(enum_type: type[enum.StrEnum], field: str, value: Any) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        raise ValidationError(field, value, f"unknown; one of {', '.join(m.value for m in enum_type)}") from None


# ------------------------------------------------------------------ spam deposits, reputation, limits


class ReputationTier(enum.StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    UNKNOWN = "unknown"


REPUTATION_HIGH_ABOVE = 80  # a score strictly above this is "high" (80 itself is "medium")
REPUTATION_MEDIUM_ABOVE = 40  # strictly above this is "medium" (40 itself is "low")
DEFAULT_DEPOSIT_MULTIPLIER = Fraction(3, 2)  # the responder's base multiplier on the processing cost
REPUTATION_DEPOSIT_MULTIPLIERS: dict[ReputationTier, Fraction] = {
    ReputationTier.HIGH: Fraction(0),
    ReputationTier.MEDIUM: Fraction(1),
    ReputationTier.LOW: Fraction(3),
    ReputationTier.UNKNOWN: Fraction(5),
}


@dataclass(frozen=True)
class ProgressiveLimit:
    """Requests are capped at ``max_tokens`` while reputation < ``max_reputation`` and interactions <
    ``max_interactions``."""

    max_reputation: int
    max_interactions: int
    max_tokens: int


PROGRESSIVE_REQUEST_LIMITS = (
    ProgressiveLimit(max_reputation=20, max_interactions=5, max_tokens=1_000),
    ProgressiveLimit(max_reputation=40, max_interactions=20, max_tokens=10_000),
    ProgressiveLimit(max_reputation=60, max_interactions=100, max_tokens=100_000),
)


def _check_score(field: str, score: Any) -> float | None:
    if score is None:
        return None
    return check_real(field, score, minimum=0, maximum=MAX_REPUTATION_SCORE_POINTS)


def classify_reputation(score: float | None) -> ReputationTier:
    """Tier of a 0-100 score: > 80 high, > 40 medium, else low; None (no score yet) is unknown."""
    score = _check_score("reputation_score", score)
    if score is None:
        return ReputationTier.UNKNOWN
    if score > REPUTATION_HIGH_ABOVE:
        return ReputationTier.HIGH
    if score > REPUTATION_MEDIUM_ABOVE:
        return ReputationTier.MEDIUM
    return ReputationTier.LOW


def deposit_multiplier_for_tier(tier: str) -> Fraction:
    """The reputation multiplier of a deposit: high 0, medium 1, low 3, unknown 5."""
    return REPUTATION_DEPOSIT_MULTIPLIERS[_choice(ReputationTier, "tier", tier)]


@dataclass(frozen=True, kw_only=True)
class DepositQuote:
    """What a requestor must deposit before a request, and why."""

    amount_micros: int
    tier: ReputationTier
    base_multiplier: Fraction
    reputation_multiplier: Fraction


def calculate_deposit(*, estimated_request_tokens: int, responder_input_rate: int,
                      reputation_score: float | None = None,
                      base_multiplier: float | Fraction = DEFAULT_DEPOSIT_MULTIPLIER) -> DepositQuote:
    """Deposit = the responder's cost to read the request x base multiplier x reputation multiplier.

    Computed exactly and rounded once. High reputation deposits nothing.
    """
    check_tokens("estimated_request_tokens", estimated_request_tokens)
    check_rate("responder_input_rate", responder_input_rate)
    base = exact_number("base_multiplier", base_multiplier, minimum=0, maximum=MAX_MONEY_MULTIPLIER)
    tier = classify_reputation(reputation_score)
    reputation = REPUTATION_DEPOSIT_MULTIPLIERS[tier]
    amount = round_fraction(exact_cost(estimated_request_tokens, responder_input_rate) * base * reputation)
    return DepositQuote(amount_micros=check_result_micros("amount_micros", amount), tier=tier,
                        base_multiplier=base, reputation_multiplier=reputation)


def max_request_tokens(*, reputation_score: float | None, interaction_count: int) -> int | None:
    """The request-size cap for this history, or None for no cap.

    The first level whose reputation and interaction bounds are both above the requestor's applies;
    an unknown reputation (None) is below every level. 100+ interactions lift every cap (quirk kept).
    """
    score = _check_score("reputation_score", reputation_score)
    check_int("interaction_count", interaction_count, maximum=MAX_INTERACTIONS)
    for level in PROGRESSIVE_REQUEST_LIMITS:
        if (score is None or score < level.max_reputation) and interaction_count < level.max_interactions:
            return level.max_tokens
    return None


@dataclass(frozen=True, kw_only=True)
class AccessDecision:
    """Whether a request may proceed: ``reason`` is "unlimited", "within_limits" or "exceeds_limit"."""

    allowed: bool
    reason: str
    limit_tokens: int | None
    detail: str


def check_access(*, reputation_score: float | None, interaction_count: int, request_tokens: int) -> AccessDecision:
    """Apply the progressive limit to one request (a request exactly at the cap is allowed)."""
    check_tokens("request_tokens", request_tokens)
    limit = max_request_tokens(reputation_score=reputation_score, interaction_count=interaction_count)
    if limit is None:
        return AccessDecision(allowed=True, reason="unlimited", limit_tokens=None, detail="no progressive cap applies")
    if request_tokens > limit:
        return AccessDecision(allowed=False, reason="exceeds_limit", limit_tokens=limit,
                              detail=f"{request_tokens} request tokens are over the cap of {limit} for "
                                     f"reputation {reputation_score} after {interaction_count} interactions")
    return AccessDecision(allowed=True, reason="within_limits", limit_tokens=limit,
                          detail=f"{request_tokens} request tokens are within the cap of {limit}")


# ------------------------------------------------------------------ congestion, QoS, back-pressure


class CongestionLevel(enum.StrEnum):
    ABUNDANT = "abundant"
    MODERATE = "moderate"
    HEAVY = "heavy"
    CRITICAL = "critical"


class QoSTier(enum.StrEnum):
    ECONOMY = "economy"
    STANDARD = "standard"
    PRIORITY = "priority"
    RESERVED = "reserved"


class BackPressureStatus(enum.StrEnum):
    OK = "ok"
    CONGESTED = "congested"
    OVERLOADED = "overloaded"


# (level, utilisation at which it starts, k in the multiplier 1 + k*u); u < 0.5 is abundant at 1.0.
CONGESTION_STEPS = (
    (CongestionLevel.ABUNDANT, Fraction(0), Fraction(0)),
    (CongestionLevel.MODERATE, Fraction(1, 2), Fraction(1, 2)),
    (CongestionLevel.HEAVY, Fraction(4, 5), Fraction(2)),
    (CongestionLevel.CRITICAL, Fraction(19, 20), Fraction(5)),
)
PROTOCOL_OVERHEAD_TOKENS = 500  # tokens of protocol envelope priced with every request
QOS_RATE_MULTIPLIERS: dict[QoSTier, Fraction] = {
    QoSTier.ECONOMY: Fraction(1),  # not discounted (reference quirk kept)
    QoSTier.STANDARD: Fraction(1),
    QoSTier.PRIORITY: Fraction(2),
    QoSTier.RESERVED: Fraction(3),
}


def _utilization(field: str, utilization: Any) -> Fraction:
    """A non-negative finite utilisation as an exact fraction, above 1 counted as 1."""
    check_real(field, utilization, minimum=0)
    return min(exact_number(field, utilization), Fraction(1))


def _congestion_step(utilization: Any) -> tuple[CongestionLevel, Fraction, Fraction]:
    u = _utilization("utilization", utilization)
    level, slope = CongestionLevel.ABUNDANT, Fraction(0)
    for step_level, start, step_slope in CONGESTION_STEPS:
        if u >= start:
            level, slope = step_level, step_slope
    return level, slope, u


def congestion_level(utilization: float) -> CongestionLevel:
    """abundant below 0.5, moderate below 0.8, heavy below 0.95, critical from 0.95."""
    return _congestion_step(utilization)[0]


def congestion_multiplier(utilization: float) -> Fraction:
    """1 while abundant, else 1 + k*u with k = 0.5 / 2 / 5 for moderate / heavy / critical (max 6)."""
    _, slope, u = _congestion_step(utilization)
    return 1 + slope * u


@dataclass(frozen=True, kw_only=True)
class EffectivePrice:
    """The three-component price of ``tokens``: base (with QoS) + congestion premium + protocol overhead."""

    base_cost: int
    congestion_premium: int
    protocol_overhead: int
    total: int
    congestion_multiplier: Fraction
    qos_multiplier: Fraction


def effective_token_price(*, base_rate: int, tokens: int, utilization: float = 0.0,
                          overhead_tokens: int = PROTOCOL_OVERHEAD_TOKENS,
                          qos_tier: str = QoSTier.STANDARD) -> EffectivePrice:
    """base = tokens x rate x QoS; premium = base x (congestion - 1); overhead = overhead tokens x rate.

    The overhead carries neither QoS nor congestion. Each part is rounded once; total is their sum.
    """
    check_rate("base_rate", base_rate)
    check_tokens("tokens", tokens)
    check_tokens("overhead_tokens", overhead_tokens)
    qos = QOS_RATE_MULTIPLIERS[_choice(QoSTier, "qos_tier", qos_tier)]
    multiplier = congestion_multiplier(utilization)
    exact_base = exact_cost(tokens, base_rate) * qos
    base_cost = round_fraction(exact_base)
    premium = round_fraction(exact_base * (multiplier - 1))
    overhead = cost_micros(overhead_tokens, base_rate)
    return EffectivePrice(base_cost=base_cost, congestion_premium=premium, protocol_overhead=overhead,
                          total=check_result_micros("total", base_cost + premium + overhead),
                          congestion_multiplier=multiplier, qos_multiplier=qos)


@dataclass(frozen=True, kw_only=True)
class QoSConfig:
    """A QoS tier's limits. Only request size and utilisation are checked (as in the reference)."""

    tier: QoSTier
    input_tokens_per_minute: int
    output_tokens_per_minute: int
    concurrent_interactions: int
    max_request_size_tokens: int
    max_context_utilization: Fraction


QOS_CONFIGS: dict[QoSTier, QoSConfig] = {
    config.tier: config for config in (
        QoSConfig(tier=QoSTier.ECONOMY, input_tokens_per_minute=500_000, output_tokens_per_minute=100_000,
                  concurrent_interactions=5, max_request_size_tokens=200_000,
                  max_context_utilization=Fraction(3, 5)),
        QoSConfig(tier=QoSTier.STANDARD, input_tokens_per_minute=1_000_000, output_tokens_per_minute=200_000,
                  concurrent_interactions=10, max_request_size_tokens=500_000,
                  max_context_utilization=Fraction(4, 5)),
        QoSConfig(tier=QoSTier.PRIORITY, input_tokens_per_minute=2_000_000, output_tokens_per_minute=500_000,
                  concurrent_interactions=20, max_request_size_tokens=800_000,
                  max_context_utilization=Fraction(9, 10)),
        QoSConfig(tier=QoSTier.RESERVED, input_tokens_per_minute=5_000_000, output_tokens_per_minute=1_000_000,
                  concurrent_interactions=50, max_request_size_tokens=1_000_000,
                  max_context_utilization=Fraction(19, 20)),
    )
}


def qos_config_for_tier(tier: str) -> QoSConfig:
    """The limits of a QoS tier; an unknown tier is a ValidationError (never silently "standard")."""
    return QOS_CONFIGS[_choice(QoSTier, "tier", tier)]


@dataclass(frozen=True, kw_only=True)
class QoSCheck:
    size_ok: bool
    utilization_ok: bool
    allowed: bool


def check_qos_limits(config: QoSConfig, *, request_tokens: int, current_utilization: float) -> QoSCheck:
    """Request size <= the tier's max and utilisation <= the tier's max (both inclusive)."""
    if not isinstance(config, QoSConfig):
        raise ValidationError("config", config, "must be a QoSConfig")
    check_tokens("request_tokens", request_tokens)
    check_real("current_utilization", current_utilization, minimum=0)
    size_ok = request_tokens <= config.max_request_size_tokens
    utilization_ok = exact_number("current_utilization", current_utilization) <= config.max_context_utilization
    return QoSCheck(size_ok=size_ok, utilization_ok=utilization_ok, allowed=size_ok and utilization_ok)


@dataclass(frozen=True, kw_only=True)
class BackPressureSignal:
    status: BackPressureStatus
    current_utilization: float  # as given, before counting values above 1 as 1
    estimated_queue_ms: int
    available_tiers: tuple[QoSTier, ...]
    economy_queue_depth: int


def back_pressure(utilization: float, *, queue_depth: int = 0, estimated_queue_ms: int = 0) -> BackPressureSignal:
    """ok (all tiers) while abundant; congested (standard and up) while moderate or heavy;
    overloaded (priority and reserved only) when critical."""
    level = congestion_level(utilization)
    check_int("queue_depth", queue_depth, maximum=MAX_INTERACTIONS)
    check_int("estimated_queue_ms", estimated_queue_ms, maximum=MAX_QUEUE_MS)
    if level is CongestionLevel.ABUNDANT:
        status, tiers = BackPressureStatus.OK, tuple(QoSTier)
    elif level is CongestionLevel.CRITICAL:
        status, tiers = BackPressureStatus.OVERLOADED, (QoSTier.PRIORITY, QoSTier.RESERVED)
    else:
        status, tiers = BackPressureStatus.CONGESTED, (QoSTier.STANDARD, QoSTier.PRIORITY, QoSTier.RESERVED)
    return BackPressureSignal(status=status, current_utilization=utilization, estimated_queue_ms=estimated_queue_ms,
                              available_tiers=tiers, economy_queue_depth=queue_depth)


def position_multiplier(*, position: int, window_size: int, beta: float = 0.3) -> float:
    """Experimental: min(position / window, 1) ** beta; 0.0 when position or window is 0."""
    check_tokens("position", position)
    check_tokens("window_size", window_size)
    check_real("beta", beta, minimum=0, maximum=MAX_MONEY_MULTIPLIER)
    if position == 0 or window_size == 0:
        return 0.0
    # float ** float is typed Any (a negative base could give a complex); the base here is in (0, 1]
    multiplier: float = float(min(Fraction(position, window_size), Fraction(1))) ** beta
    return multiplier


# ------------------------------------------------------------------ caching economics

DEFAULT_CACHE_WRITE_MULTIPLIER = Fraction(5, 4)  # first use writes the cache at 1.25x input
DEFAULT_CACHE_HIT_FRACTION = Fraction(1, 10)  # later uses read it at 10% of input
DEFAULT_AMORTIZATION_INTERACTIONS = 10
DEFAULT_MEMORY_WRITE_COST_MICROS = 10_000  # $0.01 once, to store the context in a memory system
DEFAULT_MEMORY_READ_COST_MICROS = 5_000  # $0.005 per interaction, to read it back
DEFAULT_CROSSOVER_MAX_INTERACTIONS = 50
MEMORY_NOW_MAX_INTERACTIONS = 5  # a crossover this early recommends memory outright


@dataclass(frozen=True, kw_only=True)
class CacheAmortization:
    first_cost: int  # the use that writes the cache
    subsequent_cost: int  # each later use that reads it
    amortized_cost: int  # total_cached / n, rounded once
    uncached_cost: int  # one use without a cache
    total_cached: int  # first + (n - 1) x subsequent
    total_uncached: int  # n x uncached
    savings_pct: float  # 100 x (1 - cached / uncached), from exact amounts; 0.0 when nothing is spent


def cache_amortized_cost(*, context_tokens: int, input_rate: int,
                         cache_write_multiplier: float | Fraction = DEFAULT_CACHE_WRITE_MULTIPLIER,
                         cache_hit_rate: float | Fraction = DEFAULT_CACHE_HIT_FRACTION,
                         num_interactions: int = DEFAULT_AMORTIZATION_INTERACTIONS) -> CacheAmortization:
    """Per-use cost of a cached context over ``num_interactions`` uses (>= 1).

    Multipliers are fractions of the input rate; for a price-book entry they are
    ``Fraction(price.cache_write, price.input)`` and ``Fraction(price.cache_read, price.input)``.
    """
    check_tokens("context_tokens", context_tokens)
    check_rate("input_rate", input_rate)
    write = exact_number("cache_write_multiplier", cache_write_multiplier, minimum=0, maximum=MAX_MONEY_MULTIPLIER)
    hit = exact_number("cache_hit_rate", cache_hit_rate, minimum=0, maximum=MAX_MONEY_MULTIPLIER)
    uses = check_int("num_interactions", num_interactions, minimum=1, maximum=MAX_INTERACTIONS)
    base = exact_cost(context_tokens, input_rate)
    first, subsequent, uncached = round_fraction(base * write), round_fraction(base * hit), round_fraction(base)
    total_cached = check_result_micros("total_cached", first + (uses - 1) * subsequent)
    total_uncached = check_result_micros("total_uncached", uses * uncached)
    savings = float((1 - (write + (uses - 1) * hit) / uses) * 100) if base > 0 else 0.0
    return CacheAmortization(first_cost=first, subsequent_cost=subsequent,
                             amortized_cost=round_fraction(Fraction(total_cached, uses)), uncached_cost=uncached,
                             total_cached=total_cached, total_uncached=total_uncached, savings_pct=savings)


@dataclass(frozen=True, kw_only=True)
class CompressionROI:
    savings: int  # input cost avoided; negative if "compression" made the context longer
    cost: int  # what the compressor's output cost
    net_savings: int  # savings - cost
    roi: float  # net savings per unit of cost, from exact amounts; 0.0 when the compressor is free
    compression_ratio: float  # uncompressed / compressed; 0.0 when compressed is 0


def compression_roi(*, uncompressed_tokens: int, compressed_tokens: int, input_rate: int,
                    compressor_output_rate: int = 0, compressor_tokens: int = 0) -> CompressionROI:
    """Is compressing a context worth what the compressor costs?"""
    check_tokens("uncompressed_tokens", uncompressed_tokens)
    check_tokens("compressed_tokens", compressed_tokens)
    check_rate("input_rate", input_rate)
    check_rate("compressor_output_rate", compressor_output_rate)
    check_tokens("compressor_tokens", compressor_tokens)
    exact_savings = exact_cost(uncompressed_tokens - compressed_tokens, input_rate)
    exact_spent = exact_cost(compressor_tokens, compressor_output_rate)
    savings, cost = round_fraction(exact_savings), cost_micros(compressor_tokens, compressor_output_rate)
    return CompressionROI(savings=savings, cost=cost, net_savings=savings - cost,
                          roi=float((exact_savings - exact_spent) / exact_spent) if exact_spent > 0 else 0.0,
                          compression_ratio=(float(Fraction(uncompressed_tokens, compressed_tokens))
                                             if compressed_tokens > 0 else 0.0))


@dataclass(frozen=True, kw_only=True)
class MemoryCrossover:
    crossover_point: int | None  # first n at which memory costs no more than context; None if never
    memory_costs: tuple[int, ...]  # n = 1, 2, ...: write + n x read
    context_costs: tuple[int, ...]  # n = 1, 2, ...: n x (context tokens at the input rate)
    recommendation: str  # "long_context", "memory", or "memory_after_<n>"


def memory_vs_context_crossover(*, context_tokens: int, input_rate: int,
                                memory_write_cost: int = DEFAULT_MEMORY_WRITE_COST_MICROS,
                                memory_read_cost: int = DEFAULT_MEMORY_READ_COST_MICROS,
                                max_interactions: int = DEFAULT_CROSSOVER_MAX_INTERACTIONS) -> MemoryCrossover:
    """When does keeping a context in memory become cheaper than re-sending it each time?"""
    check_tokens("context_tokens", context_tokens)
    check_rate("input_rate", input_rate)
    check_micros("memory_write_cost", memory_write_cost)
    check_micros("memory_read_cost", memory_read_cost)
    check_int("max_interactions", max_interactions, minimum=1, maximum=MAX_CROSSOVER_INTERACTIONS)
    per_use = cost_micros(context_tokens, input_rate)
    memory = tuple(memory_write_cost + n * memory_read_cost for n in range(1, max_interactions + 1))
    context = tuple(n * per_use for n in range(1, max_interactions + 1))
    crossover = next((n for n, (m, c) in enumerate(zip(memory, context, strict=True), start=1) if m <= c), None)
    if crossover is None:
        recommendation = "long_context"
    elif crossover <= MEMORY_NOW_MAX_INTERACTIONS:
        recommendation = "memory"
    else:
        recommendation = f"memory_after_{crossover}"
    return MemoryCrossover(crossover_point=crossover, memory_costs=memory, context_costs=context,
                           recommendation=recommendation)


def cache_read_savings(*, cached_tokens: int, input_rate: int, cache_read_rate: int) -> int:
    """What reading ``cached_tokens`` from the cache saved against reading them uncached (may be negative)."""
    return cost_micros(cached_tokens, input_rate) - cost_micros(cached_tokens, cache_read_rate)
