"""The public surface of ``ledger`` is exactly what ``__all__`` names (pinned, as httpx pins its own): a
name added or removed is a deliberate change to this list, never an accident of an import."""

import importlib

import ledger

PUBLIC = [
    "Action", "AgentRegistered", "AllocationRule", "BudgetPolicy", "BudgetRefused", "ChainForkError", "Compute",
    "Context", "Data", "EconomicsError", "Emitter", "Event", "ExitCode", "Flow", "Home", "HomeError", "Interaction",
    "KeyFileError", "KeyRevoked", "KeyRing", "KeyRotated", "LedgerError", "LlmUsage", "Log", "LogError",
    "PriceSet", "ProofReport", "PublicKey", "RejectCode", "RejectError", "SettlementRule", "SigningKey", "Trust",
    "ValidationError", "Verifier", "Where", "__version__", "context", "economics", "load_key", "load_proof",
    "open_log", "save_key", "verify_proof", "verify_proofs",
    "Outcome", "Reservation", "guard",  # the spend guard (ledger.sdk.guard) and the event bodies it and `emit` use
    "instrument",  # metering of openai / anthropic client calls (ledger.sdk.instrument)
]


def test_all_is_pinned() -> None:
    assert sorted(ledger.__all__) == sorted(PUBLIC)
    assert len(set(ledger.__all__)) == len(ledger.__all__)


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in ledger.__all__:
        obj = getattr(ledger, name)
        if name != "__version__":
            assert (getattr(obj, "__doc__", None) or "").strip(), f"ledger.{name} has no docstring"


def test_the_economics_package_is_public_and_pure() -> None:
    """Exported on purpose: its modules import no I/O adapter (no log, no DuckDB, no Kafka)."""
    for module in ("money", "pricing", "metering", "allocation", "netting", "budget", "reputation"):
        mod = importlib.import_module(f"ledger.economics.{module}")
        assert mod.__doc__
    assert ledger.economics.__name__ == "ledger.economics"
