"""Stream processors: independent processes that read the log and derive state into DuckDB views.

``REGISTRY`` maps a processor name to its class. Imports go one way: processors → ledger.
"""

from __future__ import annotations

from processors.allocations import Allocations
from processors.budgets import Budgets
from processors.journal import Journal
from processors.notary import Notary
from processors.reputation import Reputation
from processors.runtime.processor import Processor
from processors.settlements import Settlements

REGISTRY: dict[str, type[Processor]] = {
    Journal.name: Journal,
    Allocations.name: Allocations,
    Settlements.name: Settlements,
    Notary.name: Notary,
    Budgets.name: Budgets,
    Reputation.name: Reputation,
}


def get(name: str) -> type[Processor]:
    from ledger.errors import ValidationError

    try:
        return REGISTRY[name]
    except KeyError:
        raise ValidationError("processor", name, f"unknown processor; known: {', '.join(sorted(REGISTRY))}") from None


__all__ = ["REGISTRY", "Processor", "get"]
