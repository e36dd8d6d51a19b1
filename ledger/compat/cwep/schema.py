"""CWEP's constants, vocabularies and records, with the reference's field names and float-USD money.

Records are plain dataclasses with ``to_dict()`` / ``from_dict()`` (unknown keys in a dict are refused, not
ignored). Costs are computed by the ledger's four-flow metering (``ledger.economics.metering``) in integer micro-USD
and shown here as float USD; token counts must be non-negative ints and cached tokens part of their flow.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from ledger.economics import econ
from ledger.economics.metering import InteractionFlows, meter_interaction
from ledger.economics.pricing import ModelPrice
from ledger.errors import ValidationError
from ledger.limits import MAX_CMR_SIZE_BYTES as MAX_CMR_SIZE_BYTES  # the protocol constant, re-exported

from . import _units

PROTOCOL_VERSION = "1.0.0"
SCHEMA_VERSION = "1.0.0"

DEFAULT_SETTLEMENT_THRESHOLD = 0.01  # USD: smaller interactions and transfers are not settled
DEFAULT_DEPOSIT_MULTIPLIER = float(econ.DEFAULT_DEPOSIT_MULTIPLIER)
DEFAULT_BATCH_WINDOW_SECONDS = 3600
DEFAULT_BATCH_THRESHOLD_USD = 1.00
PROTOCOL_OVERHEAD_TOKENS = econ.PROTOCOL_OVERHEAD_TOKENS
DEFAULT_CONTEXT_WINDOW_TOKENS = 1_000_000

# USD per million tokens (input, output, cache read), the protocol's published table
DEFAULT_PROVIDER_PRICING: dict[str, dict[str, dict[str, float]]] = {
    "anthropic": {
        "claude-opus-4-6": {"input": 5.00, "output": 25.00, "cache_hit": 0.50},
        "claude-sonnet-4-6": {"input": 3.00, "output": 15.00, "cache_hit": 0.30},
        "claude-haiku-4-5": {"input": 0.25, "output": 1.25, "cache_hit": 0.025},
    },
    "openai": {
        "gpt-4.1": {"input": 2.00, "output": 8.00, "cache_hit": 0.50},
        "gpt-4.1-mini": {"input": 0.40, "output": 1.60, "cache_hit": 0.10},
        "o3": {"input": 2.00, "output": 8.00, "cache_hit": 0.50},
    },
    "google": {
        "gemini-2.5-pro": {"input": 1.25, "output": 10.00, "cache_hit": 0.3125},
    },
}

QOS_RATE_MULTIPLIERS = {str(tier): float(m) for tier, m in econ.QOS_RATE_MULTIPLIERS.items()}
REPUTATION_DEPOSIT_MULTIPLIERS = {str(tier): float(m) for tier, m in econ.REPUTATION_DEPOSIT_MULTIPLIERS.items()}
REPUTATION_THRESHOLDS = {"high": econ.REPUTATION_HIGH_ABOVE, "medium": econ.REPUTATION_MEDIUM_ABOVE, "low": 0}
PROGRESSIVE_REQUEST_LIMITS = [dataclasses.asdict(level) for level in econ.PROGRESSIVE_REQUEST_LIMITS]


class CostFlow(enum.StrEnum):
    REQUEST_OUTPUT = "request_output"
    REQUEST_INPUT = "request_input"
    RESPONSE_OUTPUT = "response_output"
    RESPONSE_INPUT = "response_input"


class AllocationMethod(enum.StrEnum):
    REQUESTOR_PAYS = "requestor_pays"
    RESPONDER_PAYS = "responder_pays"
    EQUAL_SPLIT = "equal_split"
    PROPORTIONAL = "proportional"
    BENEFICIARY_PAYS = "beneficiary_pays"  # named by the protocol; refused by the ledger (see the package doc)
    SHAPLEY = "shapley"
    NASH_BARGAINING = "nash_bargaining"


class SettlementTier(enum.StrEnum):
    TIER_1_METERING = "tier_1_metering"
    TIER_2_RULE_BASED = "tier_2_rule_based"
    TIER_3_DYNAMIC = "tier_3_dynamic"


class QoSTier(enum.StrEnum):
    ECONOMY = "economy"
    STANDARD = "standard"
    PRIORITY = "priority"
    RESERVED = "reserved"


class CongestionLevel(enum.StrEnum):
    ABUNDANT = "abundant"
    MODERATE = "moderate"
    HEAVY = "heavy"
    CRITICAL = "critical"


class ReputationTier(enum.StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    UNKNOWN = "unknown"


class DepositStatus(enum.StrEnum):
    COMMITTED = "committed"
    REFUNDED = "refunded"
    FORFEITED = "forfeited"
    DISPUTED = "disputed"


class BackPressureStatus(enum.StrEnum):
    OK = "ok"
    CONGESTED = "congested"
    OVERLOADED = "overloaded"


FLOW_KEYS = tuple(f.value for f in CostFlow)

R = TypeVar("R", bound="_Record")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _new_id() -> str:
    return str(uuid.uuid4())


class _Record:
    """``to_dict`` / ``from_dict`` for the flat records (nested ones override them)."""

    NESTED: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        return _build(cls, data)


def _build(cls: type[R], data: Any) -> R:
    """``cls(**data)``, refusing a non-dict and keys that are not fields."""
    if not isinstance(data, dict):
        raise ValidationError(cls.__name__, data, "must be a dict")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValidationError(f"{cls.__name__}.{unknown[0]}", data[unknown[0]], "is not a field of this record")
    return cls(**data)


@dataclasses.dataclass
class AgentPricing(_Record):
    """One agent's rates in USD per million tokens; costs are computed exactly in micro-USD, shown as float USD."""

    input_rate_per_mtok: float
    output_rate_per_mtok: float
    cache_hit_rate_per_mtok: float = 0.0
    currency: str = "USD"

    def model_price(self, provider: str = "cwep", model: str = "agent") -> ModelPrice:
        """The ledger price-book line of these rates (cache writes billed as input, as CWEP has no write rate)."""
        if self.currency != "USD":
            raise ValidationError("pricing.currency", self.currency, "only USD is supported")
        rate_in = _units.rate_micros("pricing.input_rate_per_mtok", self.input_rate_per_mtok)
        return ModelPrice(provider=provider, model=model, input=rate_in,
                          output=_units.rate_micros("pricing.output_rate_per_mtok", self.output_rate_per_mtok),
                          cache_read=_units.rate_micros("pricing.cache_hit_rate_per_mtok",
                                                        self.cache_hit_rate_per_mtok),
                          cache_write=rate_in)

    def input_cost(self, tokens: int, cached_tokens: int = 0) -> float:
        """(tokens - cached) at the input rate plus cached at the cache-hit rate, each rounded to the micro-USD."""
        flows = InteractionFlows.from_counts(request_output_tokens=0, request_input_tokens=tokens,
                                             response_output_tokens=0, response_input_tokens=0,
                                             request_input_cached_tokens=cached_tokens)
        price = self.model_price()
        return _units.usd(meter_interaction(flows, requestor_price=price, responder_price=price).request_input.cost)

    def output_cost(self, tokens: int) -> float:
        flows = InteractionFlows.from_counts(request_output_tokens=tokens, request_input_tokens=0,
                                             response_output_tokens=0, response_input_tokens=0)
        price = self.model_price()
        return _units.usd(meter_interaction(flows, requestor_price=price, responder_price=price).request_output.cost)

    @classmethod
    def from_provider(cls, provider: str, model: str) -> AgentPricing:
        """The table's rates for (provider, model); anything else is a ValidationError (a ValueError)."""
        rates = DEFAULT_PROVIDER_PRICING.get(provider, {}).get(model) if isinstance(provider, str) else None
        if rates is None:
            raise ValidationError("model", f"{provider}/{model}", "Unknown provider/model: not in "
                                  "DEFAULT_PROVIDER_PRICING; pass pricing=AgentPricing(...)")
        return cls(rates["input"], rates["output"], rates["cache_hit"])


@dataclasses.dataclass
class AgentInfo(_Record):
    agent_id: str = ""
    model: str = "claude-sonnet-4-6"
    provider: str = "anthropic"
    pricing: AgentPricing = dataclasses.field(default_factory=lambda: AgentPricing(3.0, 15.0, 0.3))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentInfo:
        data = dict(data) if isinstance(data, dict) else data
        if isinstance(data, dict) and isinstance(data.get("pricing"), dict):
            data["pricing"] = AgentPricing.from_dict(data["pricing"])
        return _build(cls, data)


@dataclasses.dataclass
class TokenFlow(_Record):
    """One flow: ``cached_tokens`` is the part of ``tokens`` read from a cache (never on top of it)."""

    tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0


@dataclasses.dataclass
class InteractionTotals(_Record):
    total_tokens: int = 0
    total_cost_usd: float = 0.0
    requestor_incurred_usd: float = 0.0
    responder_incurred_usd: float = 0.0


@dataclasses.dataclass
class ContextState(_Record):
    responder_utilization_pre: float = 0.0
    responder_utilization_post: float = 0.0
    responder_window_size: int = DEFAULT_CONTEXT_WINDOW_TOKENS


@dataclasses.dataclass
class SettlementProposal(_Record):
    """A cost split: direction ``requestor_to_responder``, ``responder_to_requestor``, or ``""`` (no transfer)."""

    method: str = ""
    requestor_pays_usd: float = 0.0
    responder_pays_usd: float = 0.0
    net_transfer_usd: float = 0.0
    transfer_direction: str = ""
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DepositRecord(_Record):
    """A spam deposit; ``multiplier`` is the effective one (base x reputation), see the package doc."""

    deposit_id: str = dataclasses.field(default_factory=_new_id)
    requestor_id: str = ""
    responder_id: str = ""
    amount_usd: float = 0.0
    status: str = DepositStatus.COMMITTED.value
    interaction_id: str | None = None
    timestamp: str = dataclasses.field(default_factory=_now)
    multiplier: float = DEFAULT_DEPOSIT_MULTIPLIER
    reputation_tier: str = ReputationTier.UNKNOWN.value


@dataclasses.dataclass
class QoSConfig(_Record):
    tier: str = QoSTier.STANDARD.value
    input_tokens_per_minute: int = 1_000_000
    output_tokens_per_minute: int = 200_000
    concurrent_interactions: int = 10
    max_request_size_tokens: int = 500_000
    max_context_utilization: float = 0.80


@dataclasses.dataclass
class BackPressureSignal(_Record):
    cwep_status: str = BackPressureStatus.OK.value
    current_utilization: float = 0.0
    estimated_queue_time_ms: int = 0
    available_tiers: list[str] = dataclasses.field(default_factory=lambda: [t.value for t in QoSTier])
    economy_queue_depth: int = 0


@dataclasses.dataclass
class ContextReservation(_Record):
    """A reserved slice of a responder's context window (a record only: nothing enforces it)."""

    reservation_id: str = dataclasses.field(default_factory=_new_id)
    requestor_id: str = ""
    responder_id: str = ""
    capacity_tokens: int = 100_000
    duration_seconds: int = 3600
    price_usd: float = 0.0
    qos_tier: str = QoSTier.RESERVED.value
    auto_renew: bool = False
    timestamp: str = dataclasses.field(default_factory=_now)


def _zero_flows() -> dict[str, TokenFlow]:
    return {key: TokenFlow() for key in FLOW_KEYS}


@dataclasses.dataclass
class CostMeteringRecord(_Record):
    """The CMR: one interaction's four flows, each side's pricing (embedded), totals and context state.

    ``compute_costs()`` prices the flows with the ledger's metering: costs are whole micro-USD, so
    ``total_cost_usd == requestor_incurred_usd + responder_incurred_usd`` exactly.
    """

    requestor: AgentInfo = dataclasses.field(default_factory=AgentInfo)
    responder: AgentInfo = dataclasses.field(default_factory=AgentInfo)
    flows: dict[str, TokenFlow] = dataclasses.field(default_factory=_zero_flows)
    totals: InteractionTotals = dataclasses.field(default_factory=InteractionTotals)
    context_state: ContextState = dataclasses.field(default_factory=ContextState)
    interaction_id: str = dataclasses.field(default_factory=_new_id)
    timestamp: str = dataclasses.field(default_factory=_now)
    cwep_version: str = PROTOCOL_VERSION
    coc_chain_ref: str | None = None
    settlement: SettlementProposal | None = None

    def interaction_flows(self) -> InteractionFlows:
        """The ledger's flows of this record (counts checked: non-negative ints, cached within tokens)."""
        missing = [k for k in FLOW_KEYS if not isinstance(self.flows.get(k), TokenFlow)]
        if missing:
            raise ValidationError(f"flows.{missing[0]}", self.flows.get(missing[0]), "must be a TokenFlow")
        counts = {f"{k}_tokens": _units.tokens(f"flows.{k}.tokens", self.flows[k].tokens) for k in FLOW_KEYS}
        for k in ("request_output", "response_output"):
            if self.flows[k].cached_tokens:
                raise ValidationError(f"flows.{k}.cached_tokens", self.flows[k].cached_tokens,
                                      "output tokens are generated, never read from a cache")
        return InteractionFlows.from_counts(
            **counts,
            request_input_cached_tokens=_units.tokens("flows.request_input.cached_tokens",
                                                      self.flows["request_input"].cached_tokens),
            response_input_cached_tokens=_units.tokens("flows.response_input.cached_tokens",
                                                       self.flows["response_input"].cached_tokens))

    def metered(self) -> Any:
        """The ledger's ``MeteredInteraction`` of this record, priced with its embedded rates."""
        return meter_interaction(self.interaction_flows(),
                                 requestor_price=self.requestor.pricing.model_price(),
                                 responder_price=self.responder.pricing.model_price())

    def compute_costs(self) -> CostMeteringRecord:
        m = self.metered()
        for key, cost in m.flow_costs().items():
            self.flows[key].cost_usd = _units.usd(cost)
        self.totals = InteractionTotals(total_tokens=m.total_tokens, total_cost_usd=_units.usd(m.total),
                                        requestor_incurred_usd=_units.usd(m.requestor_incurred),
                                        responder_incurred_usd=_units.usd(m.responder_incurred))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"cwep_version": self.cwep_version, "interaction_id": self.interaction_id,
                "timestamp": self.timestamp, "requestor": self.requestor.to_dict(),
                "responder": self.responder.to_dict(),
                "flows": {k: v.to_dict() for k, v in self.flows.items()}, "totals": self.totals.to_dict(),
                "context_state": self.context_state.to_dict(), "coc_chain_ref": self.coc_chain_ref,
                "settlement": None if self.settlement is None else self.settlement.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostMeteringRecord:
        if not isinstance(data, dict):
            raise ValidationError("cmr", data, "must be a dict")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"cmr.{unknown[0]}", data[unknown[0]], "is not a field of a CMR")
        d = dict(data)
        for name, kind in (("requestor", AgentInfo), ("responder", AgentInfo), ("totals", InteractionTotals),
                           ("context_state", ContextState)):
            if name in d:
                d[name] = kind.from_dict(d[name])
        if "flows" in d:
            if not isinstance(d["flows"], dict):
                raise ValidationError("cmr.flows", d["flows"], "must be a dict of flows")
            d["flows"] = {k: TokenFlow.from_dict(v) for k, v in d["flows"].items()}
        if d.get("settlement") is not None:
            d["settlement"] = SettlementProposal.from_dict(d["settlement"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> CostMeteringRecord:
        return cls.from_dict(json.loads(text))
