"""The closed vocabularies of the wire format, each defined once, as ``str`` enums.

The event model (``ledger.wire.events``) validates fields against them and the economics
(``ledger.economics``) computes with them, so a word is added or renamed in one place. Where an Avro
schema declares the field as an enum, its symbols equal these values, in this order
(tests/ledger/wire/test_vocab.py checks it).

They are ``(str, Enum)``, not ``StrEnum``: a member compares and hashes like its value, and
``.value`` is what is written to the log, views and JSON. The ``*_VALUES`` tuples are the plain
strings, for validation messages and for code that wants no enum.

Pure: no I/O.
"""

# ruff: noqa: UP042 - (str, Enum) on purpose: str() and format() of members must stay as they are (see above)
from __future__ import annotations

import enum


class Role(str, enum.Enum):
    """Who a registered key signs for (Avro ``Role``)."""

    AGENT = "agent"
    OPERATOR = "operator"
    PROCESSOR = "processor"


class ScopeLevel(str, enum.Enum):
    """The budget hierarchy, outermost first (seed 003 BudgetLevel; Avro ``BudgetScope``)."""

    ORG = "org"
    PROJECT = "project"
    TASK = "task"
    AGENT = "agent"

    @property
    def depth(self) -> int:
        return list(ScopeLevel).index(self)


class BudgetKind(str, enum.Enum):
    """What a budget counts. Amounts are non-negative ints in the kind's ``unit``."""

    ACTION = "action"
    DATA = "data"
    COMPUTE = "compute"
    TRUST = "trust"
    LLM_TOKENS = "llm_tokens"
    USD = "usd"

    @property
    def unit(self) -> str:
        return _UNITS[self]


_UNITS = {
    BudgetKind.ACTION: "action cost units",  # seed 002 ActionToken.costWeight (1 = a simple call)
    BudgetKind.DATA: "bytes",  # seed 002 DataToken bytesRead + bytesWritten
    BudgetKind.COMPUTE: "time slices",  # seed 002 ComputeToken cpu/gpu time slices
    BudgetKind.TRUST: "trust tokens",  # seed 002 TrustToken
    BudgetKind.LLM_TOKENS: "tokens",  # seed 003 limit_tokens
    BudgetKind.USD: "micro-USD",  # seed 003 limit_usd, as integer micro-dollars
}


class HardLimitAction(str, enum.Enum):
    """What happens to a spend beyond the ceiling (seed 003 BudgetAction)."""

    ALLOW = "allow"  # admit it; only the threshold alerts are raised
    THROTTLE = "throttle"  # refuse it with an exponential-backoff retry delay
    DENY = "deny"  # refuse it (and suspend, if the overage policy says so)
    ALERT_ONLY = "alert_only"  # admit it, with a BREACH alert every time


class ReservationAction(str, enum.Enum):
    """The life of a budget reservation (Avro ``ReservationAction``)."""

    RESERVE = "reserve"
    COMMIT = "commit"
    RELEASE = "release"


class TrustDimension(str, enum.Enum):
    """What a trust event is about (seed 002 ``TrustToken.type``)."""

    ACCURACY = "accuracy"
    COMPLIANCE = "compliance"
    FEEDBACK = "feedback"
    RELIABILITY = "reliability"


class AllocationMethod(str, enum.Enum):
    """How one interaction's cost is split between requestor and responder."""

    REQUESTOR_PAYS = "requestor_pays"
    RESPONDER_PAYS = "responder_pays"
    EQUAL_SPLIT = "equal_split"
    PROPORTIONAL = "proportional"
    SHAPLEY = "shapley"
    NASH_BARGAINING = "nash_bargaining"


class TransferDirection(str, enum.Enum):
    """Which way an allocation's settlement transfer goes."""

    REQUESTOR_TO_RESPONDER = "requestor_to_responder"
    RESPONDER_TO_REQUESTOR = "responder_to_requestor"
    NONE = "none"


class SettlementTier(str, enum.Enum):
    TIER_1_METERING = "tier_1_metering"  # meter only; never settles
    TIER_2_RULE_BASED = "tier_2_rule_based"  # settles with a static rule
    TIER_3_DYNAMIC = "tier_3_dynamic"  # settles with a dynamic method (Shapley, Nash)


class Capability(str, enum.Enum):
    """What an operator ``grant`` adds to a signer's role (Avro ``Capability``)."""

    BACKFILL = "backfill"  # may append events claiming times up to the grant's max age before their append time
    NOTARY = "notary"  # its checkpoints count (a processor key without it proves nothing)
    GRADER = "grader"  # its outcome scores count for the agents it grades
    RESERVE = "reserve"  # may reserve against the grant's scope although it is not its own


class SettlementStatus(str, enum.Enum):
    PROPOSED = "proposed"
    SETTLED = "settled"


class DepositAction(str, enum.Enum):
    """A spam deposit's life cycle (``Deposit``): the requestor commits it, the responder refunds or forfeits it."""

    CREATE = "create"
    REFUND = "refund"
    FORFEIT = "forfeit"


class DepositTier(str, enum.Enum):
    """The reputation tier a deposit was priced at (``ledger.economics.econ.ReputationTier``)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    UNKNOWN = "unknown"


class WebhookEvent(str, enum.Enum):
    """What a webhook sink subscribes to: the budget alerts by name (``BudgetAlert.alert``) and ``rejections``
    (the journal's dead letters)."""

    SOFT_LIMIT = "soft_limit"
    HARD_LIMIT = "hard_limit"
    EMERGENCY_RESERVE = "emergency_reserve"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    BREACH = "breach"
    GATED = "gated"
    RESERVATION_REFUSED = "reservation_refused"
    POLICY_REFUSED = "policy_refused"
    REJECTIONS = "rejections"


class DeliveryOutcome(str, enum.Enum):
    """What became of one webhook delivery attempt."""

    DELIVERED = "delivered"  # the receiver answered 2xx
    RETRYING = "retrying"  # another attempt is scheduled
    FAILED = "failed"  # no further attempt


def values(vocabulary: type[enum.Enum]) -> tuple[str, ...]:
    """The plain string values of a vocabulary, in declaration order."""
    return tuple(str(member.value) for member in vocabulary)


ROLE_VALUES = values(Role)
SCOPE_LEVEL_VALUES = values(ScopeLevel)
BUDGET_KIND_VALUES = values(BudgetKind)
HARD_LIMIT_ACTION_VALUES = values(HardLimitAction)
RESERVATION_ACTION_VALUES = values(ReservationAction)
TRUST_DIMENSION_VALUES = values(TrustDimension)
ALLOCATION_METHOD_VALUES = values(AllocationMethod)
TRANSFER_DIRECTION_VALUES = values(TransferDirection)
SETTLEMENT_TIER_VALUES = values(SettlementTier)
SETTLEMENT_STATUS_VALUES = values(SettlementStatus)
CAPABILITY_VALUES = values(Capability)
WEBHOOK_EVENT_VALUES = values(WebhookEvent)
DEPOSIT_ACTION_VALUES = values(DepositAction)
DEPOSIT_TIER_VALUES = values(DepositTier)
DELIVERY_OUTCOME_VALUES = values(DeliveryOutcome)

VOCABULARIES: tuple[type[enum.Enum], ...] = (
    Role, ScopeLevel, BudgetKind, HardLimitAction, ReservationAction, TrustDimension, AllocationMethod,
    TransferDirection, SettlementTier, SettlementStatus, Capability, WebhookEvent, DeliveryOutcome, DepositAction,
    DepositTier,
)
