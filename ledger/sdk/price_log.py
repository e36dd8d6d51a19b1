"""The price book as the log holds it: every ``price_set`` on the control topic, verified exactly as readers
verify it (a record readers quarantine changes no price here either), in log order, folded by the one rule of
``ledger.economics.pricing``: an entry is in force from max(its declared effective time, its own event time).

What `tokenledger prices` shows and compares against; processors fold the same events themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from ledger import limits
from ledger.economics.pricing import PriceBook
from ledger.errors import RejectError
from ledger.integrity.keyring import KeyRing
from ledger.integrity.verify import Verifier, Where
from ledger.log import Log, judges_by_log_order
from ledger.wire.events import PriceSet


@dataclass(frozen=True)
class Announced:
    """One verified ``price_set`` on the log."""

    event_id: str
    event_time_us: int
    body: PriceSet


def read_price_sets(log: Log, control_topic: str, anchors: Mapping[str, bytes]) -> list[Announced]:
    """Every verified ``price_set`` of the control topic, in log order."""
    verifier = Verifier(KeyRing(dict(anchors), by_log_order=judges_by_log_order(log)))
    out: list[Announced] = []
    if control_topic not in log.topics():
        return out
    for p in range(log.partitions(control_topic)):
        offset, end = 0, log.end_offset(control_topic, p)
        while offset < end:
            recs = log.read(control_topic, p, offset, limits.MAX_EMITTER_CONTROL_READ_RECORDS)
            if not recs:
                break
            for r in recs:
                with contextlib.suppress(RejectError):  # readers quarantine it: it sets no price
                    events = verifier.check_record(r.value, Where.of(r)).events
                    out.extend(Announced(d.event.event_id, d.event.event_time_us, d.event.body)
                               for d in events if isinstance(d.event.body, PriceSet))
            offset = recs[-1].offset + 1
    return out


def book_of(announced: list[Announced]) -> PriceBook:
    """The book those events build, in their order."""
    book = PriceBook()
    for a in announced:
        book = book.with_price_set(a.body, a.event_time_us)
    return book
