"""The price book as the log holds it: every ``price_set`` and ``price_match`` on the control topic, verified
exactly as readers verify it (a record readers quarantine changes no price here either), in log order, folded by
the one rule of ``ledger.economics.pricing``: an entry is in force from max(its declared effective time, its own
event time).

What `tokenledger prices` shows and compares against; processors fold the same events themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.economics.pricing import PriceBook
from ledger.errors import LedgerError
from ledger.integrity.verify import Accepted
from ledger.log import Log
from ledger.sdk.emitter import ControlKeys
from ledger.wire.events import PriceMatch, PriceSet


@dataclass(frozen=True)
class Announced:
    """One verified ``price_set`` or ``price_match`` on the log."""

    event_id: str
    event_time_us: int
    body: PriceSet | PriceMatch


def read_price_sets(log: Log, control_topic: str, anchors: Mapping[str, bytes]) -> list[Announced]:
    """Every verified ``price_set`` and ``price_match`` of the control topic, in log order (read as the emitters'
    ``ControlKeys`` reads the control topic: every record verified as readers verify it, a bad one skipped)."""
    out: list[Announced] = []
    if control_topic not in log.topics():
        return out

    def take(accepted: Accepted) -> None:
        out.extend(Announced(d.event.event_id, d.event.event_time_us, d.event.body)
                   for d in accepted.events if isinstance(d.event.body, (PriceSet, PriceMatch)))

    ControlKeys(log, control_topic, anchors, on_accepted=take).refresh()
    return out


def book_of(announced: list[Announced]) -> PriceBook:
    """The book those events build, in their order (an event the book refuses is skipped, as processors skip it)."""
    book = PriceBook()
    for a in announced:
        with contextlib.suppress(LedgerError):
            if isinstance(a.body, PriceSet):
                book.apply_price_set(a.body, a.event_time_us, a.event_id)
            else:
                book.apply_price_match(a.body, a.event_time_us)
    return book
