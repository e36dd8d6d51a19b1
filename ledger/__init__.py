"""tokenledger: signed, hash-chained token events for AI agents, on a durable log.

The public API is what ``__all__`` names (pinned by tests/ledger/test_public_api.py), plus the pure
economics package ``ledger.economics`` (money, pricing, metering, allocation, netting, budgets,
reputation), exported on purpose for users who want the maths without a ledger. Every other module is
an implementation detail that may change without notice.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from ledger.integrity.proofs import ProofReport, load_proof, verify_proof, verify_proofs
    from ledger.integrity.verify import Verifier, Where
    from ledger.log import Log, open_log
    from ledger.sdk.emitter import Emitter, context
    from ledger.sdk.guard import guard
    from ledger.sdk.home import Home
    from ledger.sdk.instrument import instrument
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
        Outcome,
        PriceSet,
        Reservation,
        SettlementRule,
        Trust,
    )

# Resolved on first use (PEP 562): `import ledger.<module>` (every command, every processor) then costs only
# that module, not the whole public API.
_LAZY = {
    "Action": "ledger.wire.events",
    "AgentRegistered": "ledger.wire.events",
    "AllocationRule": "ledger.wire.events",
    "BudgetPolicy": "ledger.wire.events",
    "BudgetRefused": "ledger.errors",
    "ChainForkError": "ledger.errors",
    "Compute": "ledger.wire.events",
    "Context": "ledger.wire.events",
    "Data": "ledger.wire.events",
    "EconomicsError": "ledger.errors",
    "Emitter": "ledger.sdk.emitter",
    "Event": "ledger.wire.events",
    "ExitCode": "ledger.errors",
    "Flow": "ledger.wire.events",
    "Home": "ledger.sdk.home",
    "HomeError": "ledger.errors",
    "Interaction": "ledger.wire.events",
    "KeyFileError": "ledger.errors",
    "KeyRevoked": "ledger.wire.events",
    "KeyRing": "ledger.integrity.keyring",
    "KeyRotated": "ledger.wire.events",
    "LedgerError": "ledger.errors",
    "LlmUsage": "ledger.wire.events",
    "Log": "ledger.log",
    "LogError": "ledger.errors",
    "Outcome": "ledger.wire.events",
    "PriceSet": "ledger.wire.events",
    "ProofReport": "ledger.integrity.proofs",
    "PublicKey": "ledger.integrity.keys",
    "RejectCode": "ledger.errors",
    "RejectError": "ledger.errors",
    "Reservation": "ledger.wire.events",
    "SettlementRule": "ledger.wire.events",
    "SigningKey": "ledger.integrity.keys",
    "Trust": "ledger.wire.events",
    "ValidationError": "ledger.errors",
    "Verifier": "ledger.integrity.verify",
    "Where": "ledger.integrity.verify",
    "context": "ledger.sdk.emitter",
    "economics": "ledger.economics",
    "guard": "ledger.sdk.guard",
    "instrument": "ledger.sdk.instrument",
    "load_key": "ledger.integrity.keys",
    "load_proof": "ledger.integrity.proofs",
    "open_log": "ledger.log",
    "save_key": "ledger.integrity.keys",
    "verify_proof": "ledger.integrity.proofs",
    "verify_proofs": "ledger.integrity.proofs",
}

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
    "Outcome",
    "PriceSet",
    "ProofReport",
    "PublicKey",
    "RejectCode",
    "RejectError",
    "Reservation",
    "SettlementRule",
    "SigningKey",
    "Trust",
    "ValidationError",
    "Verifier",
    "Where",
    "__version__",
    "context",
    "economics",
    "guard",
    "instrument",
    "load_key",
    "load_proof",
    "open_log",
    "save_key",
    "verify_proof",
    "verify_proofs",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    import importlib

    mod = importlib.import_module(module)
    value = mod if name == "economics" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
