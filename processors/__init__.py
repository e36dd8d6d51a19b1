"""Stream processors: independent processes that read the log and derive state into DuckDB views.

``REGISTRY`` maps a processor name to its class; ``order_by_topics`` puts them in waves, each wave
reading only the signed topics and what earlier waves derive. Imports go one way: processors → ledger.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.runtime.processor import Processor


class _Registry(Mapping[str, "type[Processor]"]):
    """Processor name -> class, each module imported on first use: `tokenledger query` names the processors
    without loading their code (their imports are most of a CLI start)."""

    def __init__(self, where: dict[str, str]) -> None:
        self._where = where  # name -> "module:Class"
        self._loaded: dict[str, type[Processor]] = {}

    def __getitem__(self, name: str) -> type[Processor]:
        cls = self._loaded.get(name)
        if cls is None:
            module, _, attr = self._where[name].partition(":")
            cls = self._loaded[name] = getattr(importlib.import_module(module), attr)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


REGISTRY: Mapping[str, type[Processor]] = _Registry({
    "journal": "processors.journal:Journal",
    "allocations": "processors.allocations:Allocations",
    "settlements": "processors.settlements:Settlements",
    "notary": "processors.notary:Notary",
    "budgets": "processors.budgets:Budgets",
    "reputation": "processors.reputation:Reputation",
    "deliveries": "processors.deliveries:Deliveries",
})


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
