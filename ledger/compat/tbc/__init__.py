"""Drop-in layer for token-budget-contracts 0.3.0 (module ``tbcontracts``), backed by the ledger.

Alias the module and code written for the package runs unchanged::

    import sys, ledger.compat.tbc
    sys.modules["tbcontracts"] = ledger.compat.tbc          # before the first `import tbcontracts`
    manager = tbcontracts.BudgetManager(home="~/.tokenledger")  # optional: persist to a ledger home

Names: ``BudgetContract``, ``Ledger``, ``Reallocator``, ``ConfidenceGate``, ``BudgetManager``, ``TelemetryRecorder``,
``TBCError``, ``BudgetExceededError``, ``UnknownAgentError``, ``__version__``; lazily ``govern_node``,
``TBCGraphGovernor``, ``govern_agent``, ``TBCCrewGovernor``. Submodules: ``contract``, ``ledger``, ``reallocator``,
``confidence_gate``, ``manager``, ``exceptions``, ``tokenizer``, ``telemetry``, ``adapters`` (``langgraph_adapter``,
``crewai_adapter``), and ``store`` (the ledger home; the reference has none).

Backed by: ``ledger.economics.budget`` (each contract is a ``BudgetPolicy``: its validation and the 10% reserve
default), ``ledger.economics.reallocation`` (donor order, reserves, all-or-nothing plans, the confidence gate and its
transition), ``ledger.economics.token_estimate`` (the estimator), and for persistence ``ledger.sdk`` (registration,
the signing ``Emitter`` with its idempotency). With ``home=``, ``register_agent`` appends the agent's registration
and its budget policy, ``record_usage`` (and ``govern``, and the adapters) the usage, all signed; the in-memory state
is this process's view, the budgets processor's views are the durable one.

Deviations, each replacing a reference behaviour:

1. **All-or-nothing reallocation.** When the donors cannot cover a shortfall nothing moves: ``reallocate`` returns 0
   and a refused spend leaves every allocation as it was. The reference moves what it can, returns the partial
   amount and keeps those moves even though the spend is refused (SEEDS.md section 4, quirk 17).
   (Peer suite: ``test_reallocator.py::test_reallocate_never_dips_below_donor_reserve`` expects the partial 50.)
2. **Exact token counts.** Token counts, allocations and priorities are ints; floats and bools raise
   ``ValidationError`` (a ``ValueError``). The reference adds floats and accepts priority 1.5 (quirk 22). The
   adapters still truncate a framework's float usage report, as the reference documents.
3. **Negatives refused.** ``Ledger.record`` refuses a negative count and ``Ledger.adjust_allocation`` an allocation
   below 0; the reference accepts both (quirk 22). ``record_usage`` refuses negatives in both.
4. **Confidences are probabilities.** A confidence or threshold outside [0, 1] (or NaN) raises ``ValidationError``;
   the reference compares any float (5.0 accepted). A ``govern`` call whose ``confidence_fn`` returns None keeps the
   last confidence, where the reference stores None: the gate behaves alike (the call ran, so it was open).
5. **Donor ties.** Equal priority and equal remaining: by agent name, not registration order; ``find_donors`` lists
   only eligible donors (the reference also lists higher-priority agents and skips them later).
6. **Unknown agents.** ``Ledger`` and ``Reallocator`` raise ``UnknownAgentError``, which is also a ``KeyError`` (the
   reference raises a plain ``KeyError`` there).
7. **Idempotency.** ``record_usage(..., idempotency_key=...)`` counts a retried call once (the reference has no key).

Overdraw: ``remaining`` is ``allocated - consumed`` and goes negative after a raw ``Ledger.record`` beyond the
allocation, as in the reference; the ledger's budgets view reports it the same way (status ``overdrawn``).
"""

from __future__ import annotations

from typing import Any

from ledger.compat.tbc.confidence_gate import ConfidenceGate
from ledger.compat.tbc.contract import BudgetContract
from ledger.compat.tbc.exceptions import BudgetExceededError, TBCError, UnknownAgentError
from ledger.compat.tbc.ledger import Ledger
from ledger.compat.tbc.manager import BudgetManager
from ledger.compat.tbc.reallocator import Reallocator
from ledger.compat.tbc.telemetry import TelemetryRecorder

__version__ = "0.3.0"  # the reference version this layer reproduces

__all__ = [
    "BudgetContract",
    "BudgetExceededError",
    "BudgetManager",
    "ConfidenceGate",
    "Ledger",
    "Reallocator",
    "TBCError",
    "TelemetryRecorder",
    "UnknownAgentError",
]

_ADAPTERS = ("govern_node", "TBCGraphGovernor", "govern_agent", "TBCCrewGovernor")


def __getattr__(name: str) -> Any:
    """The adapters, imported on first use (as the reference exposes them)."""
    if name in _ADAPTERS:
        from ledger.compat.tbc import adapters

        return getattr(adapters, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
