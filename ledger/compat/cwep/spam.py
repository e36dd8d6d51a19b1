"""CWEP spam prevention over ``ledger.economics.econ``: reputation tiers, deposits, progressive request limits.

A negative reputation score (the reference's "no score yet") is read as unknown; NaN is refused.
"""

from __future__ import annotations

from ledger.economics import econ
from ledger.errors import ValidationError

from . import _units
from .schema import DEFAULT_DEPOSIT_MULTIPLIER, DepositRecord, DepositStatus

NO_SCORE = -1.0


def classify_reputation(score: float) -> str:
    """> 80 high, > 40 medium, >= 0 low, negative unknown."""
    return econ.classify_reputation(_units.score("reputation_score", score)).value


def deposit_multiplier_for_tier(tier: str) -> float:
    """high 0, medium 1, low 3, unknown 5; any other name is a ValidationError."""
    return float(econ.deposit_multiplier_for_tier(tier))


def _quote(estimated_request_tokens: int, responder_input_rate_per_mtok: float, reputation_score: float,
           base_multiplier: float) -> econ.DepositQuote:
    return econ.calculate_deposit(
        estimated_request_tokens=_units.tokens("estimated_request_tokens", estimated_request_tokens),
        responder_input_rate=_units.rate_micros("responder_input_rate_per_mtok", responder_input_rate_per_mtok),
        reputation_score=_units.score("reputation_score", reputation_score), base_multiplier=base_multiplier)


def calculate_deposit(estimated_request_tokens: int, responder_input_rate_per_mtok: float,
                      reputation_score: float = NO_SCORE,
                      base_multiplier: float = DEFAULT_DEPOSIT_MULTIPLIER) -> tuple[float, str]:
    """(amount in USD, reputation tier): the responder's cost to read the request x base x reputation multiplier."""
    quote = _quote(estimated_request_tokens, responder_input_rate_per_mtok, reputation_score, base_multiplier)
    return _units.usd(quote.amount_micros), quote.tier.value


def max_request_tokens(reputation_score: float, interaction_count: int) -> int:
    """The progressive request cap, or -1 when none applies."""
    return _units.limit(econ.max_request_tokens(reputation_score=_units.score("reputation_score", reputation_score),
                                                interaction_count=interaction_count))


def check_access(reputation_score: float, interaction_count: int, request_tokens: int) -> tuple[bool, str]:
    """(allowed, reason): "unlimited", "within_limits", or a sentence starting "exceeds_limit:"."""
    decision = econ.check_access(reputation_score=_units.score("reputation_score", reputation_score),
                                 interaction_count=interaction_count, request_tokens=request_tokens)
    return decision.allowed, decision.reason if decision.allowed else f"{decision.reason}: {decision.detail}"


def create_deposit(requestor_id: str, responder_id: str, estimated_request_tokens: int,
                   responder_input_rate_per_mtok: float, reputation_score: float = NO_SCORE,
                   base_multiplier: float = DEFAULT_DEPOSIT_MULTIPLIER,
                   interaction_id: str | None = None) -> DepositRecord:
    """A committed deposit; ``multiplier`` records the effective multiplier (base x reputation)."""
    quote = _quote(estimated_request_tokens, responder_input_rate_per_mtok, reputation_score, base_multiplier)
    return DepositRecord(requestor_id=requestor_id, responder_id=responder_id,
                         amount_usd=_units.usd(quote.amount_micros), status=DepositStatus.COMMITTED.value,
                         interaction_id=interaction_id,
                         multiplier=float(quote.base_multiplier * quote.reputation_multiplier),
                         reputation_tier=quote.tier.value)


def resolve_deposit(deposit: DepositRecord, is_spam: bool) -> DepositRecord:
    """Forfeit (spam) or refund a committed deposit, in place; a deposit already resolved is refused."""
    if not isinstance(deposit, DepositRecord):
        raise ValidationError("deposit", deposit, "must be a DepositRecord")
    if deposit.status != DepositStatus.COMMITTED.value:
        raise ValidationError("deposit.status", deposit.status, "only a committed deposit can be resolved")
    if not isinstance(is_spam, bool):
        raise ValidationError("is_spam", is_spam, "must be True or False")
    deposit.status = (DepositStatus.FORFEITED if is_spam else DepositStatus.REFUNDED).value
    return deposit
