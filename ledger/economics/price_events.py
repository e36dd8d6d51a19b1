"""Price books as control events, so the log alone determines every price.

``tokenledger init`` (and the demo's home creation) append ``seed_events()``: the installed price catalog's
lines and match rules (``ledger.economics.catalog``) through the operator's emitter; they are the only way a
price reaches a processor (the rule in ``ledger.economics.pricing``: prices come from the log, and a price is
in force from ``max(effective_from_us, the event's own event time)``). Each is emitted with event time
``price_event_time_us(body)``: on a new log the catalog's history applies from its own dates (nothing was
priced before them), and its oldest prices and its rules from the earliest valid event time.

``default_price_events`` is the reference table of context-window-economics (``ledger/data/default_prices.json``)
as events: the simulator's and the seed-fidelity tests' world, not what a home is seeded with.

Pure: no I/O beyond reading the shipped data file and the installed catalog.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger import limits
from ledger.economics.catalog import catalog_book, events_in_order
from ledger.economics.pricing import ModelPrice, PriceBook, default_price_book
from ledger.wire.events import PriceMatch, PriceSet


def price_set_from_entry(price: ModelPrice) -> PriceSet:
    """The control event that puts ``price`` in force (rates in micro-USD per million tokens)."""
    return PriceSet(provider=price.provider, model=price.model, input_micros_per_mtok=price.input,
                    output_micros_per_mtok=price.output, cache_read_micros_per_mtok=price.cache_read,
                    cache_write_micros_per_mtok=price.cache_write,
                    # reasoning equal to output is "billed like output": left out, as in the data file
                    reasoning_micros_per_mtok=None if price.reasoning == price.output else price.reasoning,
                    effective_from_us=price.effective_from_us)


def price_event_time_us(body: PriceSet | PriceMatch) -> int:
    """Event time to emit ``body`` with: its effective time, kept inside the valid event-time range."""
    return max(body.effective_from_us, limits.MIN_EVENT_TIME_US)


def seed_events(providers: Sequence[str] | None = None) -> list[PriceSet | PriceMatch]:
    """What a new home's book starts as: the installed catalog's lines, then its match rules, for ``providers``
    (default ``ledger.economics.catalog.DEFAULT_PROVIDERS``)."""
    return list(events_in_order(catalog_book(providers)))


def default_price_events(book: PriceBook | None = None) -> list[PriceSet]:
    """One ``PriceSet`` per entry of the default book (or ``book``), ordered by provider, model, time."""
    return [price_set_from_entry(p) for p in (book or default_price_book()).entries()]
