"""tokenledger: signed, hash-chained token events for AI agents, on a durable log.

The public API. Everything else is an implementation detail that may change.
"""

from ledger.errors import (
    ChainForkError,
    EconomicsError,
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
    "ChainForkError",
    "Compute",
    "Context",
    "Data",
    "EconomicsError",
    "Emitter",
    "Event",
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
    "load_key",
    "open_log",
    "save_key",
]
__all__ += ["ProofReport", "load_proof", "verify_proof"]  # offline Merkle proof checks (ledger/proofs.py)
