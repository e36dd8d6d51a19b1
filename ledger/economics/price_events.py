"""The shipped default price book as control events, so the log alone determines every price.

``tokenledger init`` (and the demo's home creation) append these ``PriceSet`` events through the
operator's emitter; they are the only way the shipped book reaches a processor (the rule in
``ledger.economics.pricing``: prices come from the log, and a price is in force from
``max(effective_from_us, the PriceSet's own event time)``). Each is emitted with event time
``price_event_time_us(entry)``: the default book is in force "from the beginning", so its events carry
the earliest valid event time.

Pure: no I/O beyond ``default_price_book`` reading the shipped data file.
"""

from __future__ import annotations

from ledger import limits
from ledger.economics.pricing import ModelPrice, PriceBook, default_price_book
from ledger.wire.events import PriceSet


def price_set_from_entry(price: ModelPrice) -> PriceSet:
    """The control event that puts ``price`` in force (rates in micro-USD per million tokens)."""
    return PriceSet(provider=price.provider, model=price.model, input_micros_per_mtok=price.input,
                    output_micros_per_mtok=price.output, cache_read_micros_per_mtok=price.cache_read,
                    cache_write_micros_per_mtok=price.cache_write,
                    # reasoning equal to output is "billed like output": left out, as in the data file
                    reasoning_micros_per_mtok=None if price.reasoning == price.output else price.reasoning,
                    effective_from_us=price.effective_from_us)


def price_event_time_us(body: PriceSet) -> int:
    """Event time to emit ``body`` with: its effective time, kept inside the valid event-time range."""
    return max(body.effective_from_us, limits.MIN_EVENT_TIME_US)


def default_price_events(book: PriceBook | None = None) -> list[PriceSet]:
    """One ``PriceSet`` per entry of the default book (or ``book``), ordered by provider, model, time."""
    return [price_set_from_entry(p) for p in (book or default_price_book()).entries()]
