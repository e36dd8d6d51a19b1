"""Stream processors: independent processes that read the log and derive state into DuckDB views.

``REGISTRY`` maps a processor name to its class; ``order_by_topics`` puts them in waves, each wave
reading only the signed topics and what earlier waves derive. Imports go one way: processors → ledger.
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


def order_by_topics(names: list[str] | None = None) -> list[list[str]]:
    """``names`` (default: every processor) in waves: a processor comes after every other chosen
    processor that derives a topic it reads (settlements after allocations), so running the waves in
    order, each until caught up, leaves every processor caught up. Sorted within a wave; a cycle is an
    error naming its processors."""
    from ledger.errors import ValidationError

    chosen = sorted(set(names) if names is not None else set(REGISTRY))
    classes = {n: get(n) for n in chosen}
    producers: dict[str, set[str]] = {}
    for n, c in classes.items():
        for topic in c.derived_topics:
            producers.setdefault(topic, set()).add(n)
    needs = {n: {p for t in c.topics for p in producers.get(t, ()) if p != n} for n, c in classes.items()}
    waves: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(chosen):
        wave = sorted(n for n in chosen if n not in done and needs[n] <= done)
        if not wave:
            stuck = sorted(set(chosen) - done)
            raise ValidationError("processors", stuck, "read each other's derived topics in a cycle")
        waves.append(wave)
        done.update(wave)
    return waves


__all__ = ["REGISTRY", "Processor", "get", "order_by_topics"]
