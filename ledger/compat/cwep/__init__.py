"""Drop-in layer for context-window-economics 0.1.1 ("CWEP", module ``context_window_economics``).

The public names and submodules of the package (``schema``, ``metering``, ``allocation``, ``settlement``, ``spam``,
``congestion``, ``caching``, ``store``, ``cli``), backed by the ledger: metering by ``ledger.economics.metering``,
allocation by ``ledger.economics.allocation``, settlement by ``ledger.economics.proposals`` and ``netting``,
deposits, congestion and caching by ``ledger.economics.econ`` and ``cache_tracker``. CMRs persist as signed,
idempotent ``interaction`` events in a ledger home (``store.CWEPStore``). The command line is
``python -m ledger.compat.cwep`` (the ``cwep`` command). At the boundary: float USD <-> integer micro-USD, ``-1``
<-> ``None``, direction ``none`` <-> ``""``.

To run code written for the package unchanged, call ``install()`` once before it imports
``context_window_economics``: the package name and each submodule name then resolve to this layer.

Deviations from the reference, each the ledger's documented behaviour:

1. Exact money: every cost is whole micro-USD, rounded once per flow (the reference sums binary floats); so
   ``total == requestor_incurred + responder_incurred`` and every allocation's two shares sum to the total exactly.
   USD inputs and rates finer than one micro-USD (per MTok) are refused, not rounded.
2. Negative or non-integer token counts, cached tokens above their flow, cached output tokens, negative rates,
   amounts and utilisations, NaN, and unknown QoS / reputation tiers are ``ValidationError`` (a ``ValueError``)
   naming the field; the reference computes negative costs and deposits and silently defaults unknown tiers.
3. Netting per agent pair: ``SettlementBatch`` nets A->B against B->A and lists its transfers with payer and payee
   (the reference nets by role, so those add up and the result names no agents); its window runs on the CMRs'
   timestamps, not the wall clock.
4. Nash bargaining without ``value_a``/``value_b`` is an error (the reference defaults them to 0 and always returns
   a proportional split). With values but no surplus, the proportional fallback is kept and named in
   ``parameters["requested_method"]`` and ``parameters["outcome"]``. ``alpha`` must be in [0, 1].
5. ``beneficiary_pays`` is refused (the reference computes proportional under that name), and so are parameters a
   method does not take (the reference ignores them).
6. Clamped Shapley keeps the budget balanced: the other side pays the rest (the reference's clamp creates money).
7. A zero net transfer has direction ``""`` for every method (the reference says ``requestor_to_responder`` for
   some methods and ``""`` for others).
8. An unknown settlement tier is refused (the reference settles under any other string, typos included).
9. ``resolve_deposit`` refuses a deposit that is not committed (the reference re-resolves); ``DepositRecord``
   ``multiplier`` is the effective multiplier (base x reputation), not the base one.
10. ``check_access`` denies with the reason ``"exceeds_limit: ..."`` (a sentence saying the size and the cap).
11. ``CacheTracker.record_hit`` takes the real cache-read rate (``cache_rate_per_mtok``); only without it does it
    assume, as the reference always does, that a cache read costs 10% of input.
12. ``verify_cmr_pair`` also compares the agents and the cached tokens (the reference ignores both).
13. ``CWEPStore`` is a ledger home: CMRs are signed ``interaction`` events and deposits signed ``deposit`` events
    (create by the requestor, refund or forfeit by the responder; a ``disputed`` record is refused), read back
    through the ledger's verifier; appending one twice stores it once; the log is transactional, so no torn line
    breaks a read; ``read_cmrs(limit)`` gives the last ``limit`` in log order, as the reference does. Settlement
    records stay JSON lines (free-form dicts). ``cwep settle`` records each (interaction, method) once, however
    often it runs. The empty store's ``total_cost_usd`` is ``0.0``.
14. ``__version__`` is this layer's reference version, ``"0.1.1"`` (the reference reports ``"0.1.0"``).
"""

from .allocation import (
    allocate,
    allocate_equal_split,
    allocate_nash,
    allocate_proportional,
    allocate_requestor_pays,
    allocate_responder_pays,
    allocate_shapley,
)
from .caching import CacheTracker, cache_amortized_cost, compression_roi, memory_vs_context_crossover
from .congestion import (
    check_qos_limits,
    congestion_level,
    congestion_multiplier,
    effective_token_price,
    generate_back_pressure,
    position_multiplier,
    qos_config_for_tier,
)
from .metering import Meter, compute_flow_cost, estimate_interaction_cost
from .schema import (
    DEFAULT_BATCH_THRESHOLD_USD,
    DEFAULT_BATCH_WINDOW_SECONDS,
    DEFAULT_DEPOSIT_MULTIPLIER,
    DEFAULT_PROVIDER_PRICING,
    DEFAULT_SETTLEMENT_THRESHOLD,
    MAX_CMR_SIZE_BYTES,
    PROGRESSIVE_REQUEST_LIMITS,
    PROTOCOL_OVERHEAD_TOKENS,
    PROTOCOL_VERSION,
    QOS_RATE_MULTIPLIERS,
    REPUTATION_DEPOSIT_MULTIPLIERS,
    REPUTATION_THRESHOLDS,
    SCHEMA_VERSION,
    AgentInfo,
    AgentPricing,
    AllocationMethod,
    BackPressureSignal,
    BackPressureStatus,
    CongestionLevel,
    ContextReservation,
    ContextState,
    CostFlow,
    CostMeteringRecord,
    DepositRecord,
    DepositStatus,
    InteractionTotals,
    QoSConfig,
    QoSTier,
    ReputationTier,
    SettlementProposal,
    SettlementTier,
    TokenFlow,
)
from .settlement import (
    PaymentRail,
    SettlementBatch,
    SettlementEngine,
    SettlementReceipt,
    cmr_hash,
    verify_cmr_pair,
)
from .spam import (
    calculate_deposit,
    check_access,
    classify_reputation,
    create_deposit,
    deposit_multiplier_for_tier,
    max_request_tokens,
    resolve_deposit,
)
from .store import CWEPStore

__version__ = "0.1.1"

PACKAGE_NAME = "context_window_economics"  # the reference's module name
SUBMODULES = ("schema", "metering", "allocation", "settlement", "spam", "congestion", "caching", "store", "cli")


def install() -> None:
    """Alias ``context_window_economics`` and its submodules to this layer in ``sys.modules``, so that
    ``import context_window_economics`` (and ``from context_window_economics.metering import Meter``) give these
    modules, one copy each. Call it before the code that imports the package; an already imported copy of the
    reference package is replaced for later imports only."""
    import importlib
    import sys

    sys.modules[PACKAGE_NAME] = sys.modules[__name__]
    for name in SUBMODULES:
        sys.modules[f"{PACKAGE_NAME}.{name}"] = importlib.import_module(f"{__name__}.{name}")

__all__ = [
    "DEFAULT_BATCH_THRESHOLD_USD",
    "DEFAULT_BATCH_WINDOW_SECONDS",
    "DEFAULT_DEPOSIT_MULTIPLIER",
    "DEFAULT_PROVIDER_PRICING",
    "DEFAULT_SETTLEMENT_THRESHOLD",
    "MAX_CMR_SIZE_BYTES",
    "PROGRESSIVE_REQUEST_LIMITS",
    "PROTOCOL_OVERHEAD_TOKENS",
    "PROTOCOL_VERSION",
    "QOS_RATE_MULTIPLIERS",
    "REPUTATION_DEPOSIT_MULTIPLIERS",
    "REPUTATION_THRESHOLDS",
    "SCHEMA_VERSION",
    "AgentInfo",
    "AgentPricing",
    "AllocationMethod",
    "BackPressureSignal",
    "BackPressureStatus",
    "CWEPStore",
    "CacheTracker",
    "CongestionLevel",
    "ContextReservation",
    "ContextState",
    "CostFlow",
    "CostMeteringRecord",
    "DepositRecord",
    "DepositStatus",
    "InteractionTotals",
    "Meter",
    "PaymentRail",
    "QoSConfig",
    "QoSTier",
    "ReputationTier",
    "SettlementBatch",
    "SettlementEngine",
    "SettlementProposal",
    "SettlementReceipt",
    "SettlementTier",
    "TokenFlow",
    "__version__",
    "allocate",
    "allocate_equal_split",
    "allocate_nash",
    "allocate_proportional",
    "allocate_requestor_pays",
    "allocate_responder_pays",
    "allocate_shapley",
    "cache_amortized_cost",
    "calculate_deposit",
    "check_access",
    "check_qos_limits",
    "classify_reputation",
    "cmr_hash",
    "compression_roi",
    "compute_flow_cost",
    "congestion_level",
    "congestion_multiplier",
    "create_deposit",
    "deposit_multiplier_for_tier",
    "effective_token_price",
    "estimate_interaction_cost",
    "generate_back_pressure",
    "max_request_tokens",
    "memory_vs_context_crossover",
    "position_multiplier",
    "qos_config_for_tier",
    "resolve_deposit",
    "verify_cmr_pair",
]
