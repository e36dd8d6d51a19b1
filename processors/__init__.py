"""Stream processors: independent processes that read the log and derive state into DuckDB views.

``REGISTRY`` maps a processor name to its class. Imports go one way: processors → ledger.
"""

from __future__ import annotations

from processors.base import Processor
from processors.journal import Journal

REGISTRY: dict[str, type[Processor]] = {
    Journal.name: Journal,
}


def get(name: str) -> type[Processor]:
    from ledger.errors import ValidationError

    try:
        return REGISTRY[name]
    except KeyError:
        raise ValidationError("processor", name, f"unknown processor; known: {', '.join(sorted(REGISTRY))}") from None


__all__ = ["REGISTRY", "Processor", "get"]
