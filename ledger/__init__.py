"""tokenledger: signed, hash-chained token events for AI agents, on a durable log.

The public API is what ``__all__`` names (pinned by tests/ledger/test_public_api.py), plus the pure
economics package ``ledger.economics`` (money, pricing, metering, allocation, netting, budgets,
reputation), exported on purpose for users who want the maths without a ledger. Every other module is
an implementation detail that may change without notice.
"""

from ledger import economics
from ledger.errors import (
    BudgetRefused,
    ChainForkError,
    EconomicsError,
    ExitCode,
    HomeError,
    KeyFileError,
    LedgerError,
    LogError,
    RejectCode,
    RejectError,
    ValidationError,
)
from ledger.integrity.keyring import KeyRing
from ledger.integrity.keys import PublicKey, SigningKey, load_key, save_key
from ledger.integrity.proofs import ProofReport, load_proof, verify_proof
from ledger.integrity.verify import Verifier, Where
from ledger.log import Log, open_log
from ledger.sdk.emitter import Emitter, context
from ledger.sdk.home import Home
from ledger.wire.events import (
    Action,
    AgentRegistered,
    AllocationRule,
    BudgetPolicy,
    Compute,
    Context,
    Data,
    Event,
    Flow,
    Interaction,
    KeyRevoked,
    KeyRotated,
    LlmUsage,
    PriceSet,
    SettlementRule,
    Trust,
)

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AgentRegistered",
    "AllocationRule",
    "BudgetPolicy",
    "BudgetRefused",
    "ChainForkError",
    "Compute",
    "Context",
    "Data",
    "EconomicsError",
    "Emitter",
    "Event",
    "ExitCode",
    "Flow",
    "Home",
    "HomeError",
    "Interaction",
    "KeyFileError",
    "KeyRevoked",
    "KeyRing",
    "KeyRotated",
    "LedgerError",
    "LlmUsage",
    "Log",
    "LogError",
    "PriceSet",
    "ProofReport",
    "PublicKey",
    "RejectCode",
    "RejectError",
    "SettlementRule",
    "SigningKey",
    "Trust",
    "ValidationError",
    "Verifier",
    "Where",
    "__version__",
    "context",
    "economics",
    "load_key",
    "load_proof",
    "open_log",
    "save_key",
    "verify_proof",
]
