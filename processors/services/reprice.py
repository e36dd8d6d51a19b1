"""Re-pricing: the allocations with another price book, in a side view diffed against the live one.

``reprice_home`` replays the allocations processor's pure pricing over the log, up to the live
processor's positions, into a side DuckDB file (``<home>/processors/allocations/reprice-*/state.duckdb``)
with another price book — the book as it stood at ``as_of_us`` applied to every interaction, and/or
overrides in force for all time — then compares its ``allocations`` with the live view and reports
every difference, which models' prices caused them, and that nothing else changed. The live views are
never touched.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.economics.money import parse_usd
from ledger.economics.pricing import ModelPrice, PriceBook, PriceInForce, price_book_from_rows
from ledger.errors import StoreError, ValidationError
from ledger.limits import MAX_PRICE_OVERRIDES
from ledger.log import Log
from ledger.sdk.home import Home
from processors import views
from processors.allocations import PRICES, Allocations, PriceLookup
from processors.host.service import live_digest, state_file
from processors.runtime.publish import parse_positions
from processors.runtime.runner import Runner
from processors.runtime.store import Store


class Repricer(Allocations):
    """The allocations processor with another price lookup and no derived events (a side view only)."""

    def __init__(self, as_of_us: int | None, overrides: dict[tuple[str, str], ModelPrice],
                 book: PriceBook | None = None) -> None:
        super().__init__()
        self.as_of_us = as_of_us
        # "the book as it stood at as_of": the whole live book, looked up at that time. The side run reads the
        # log in its one order, so its own book at an interaction holds only the prices appended before it.
        self.as_of_book = book
        self.overrides = overrides
        self.produce_derived = False

    def price_lookup(self) -> PriceLookup:
        # the same book and rule as the live processor (ledger.economics.pricing), looked up at another time
        base = super().price_lookup()

        def lookup(provider: str, model: str, t_us: int) -> PriceInForce:
            override = self.overrides.get((provider, model))
            if override is not None:  # an alternative entry is in force for all time
                return PriceInForce(price=override, in_force_from_us=0, event_time_us=None, seq=0)
            if self.as_of_us is None:
                return base(provider, model, t_us)
            if self.as_of_book is not None:
                return self.as_of_book.in_force_at(provider, model, self.as_of_us)
            return base(provider, model, self.as_of_us)

        return lookup


def parse_price(text: str) -> ModelPrice:
    """``provider/model=input,output,cache_read,cache_write`` in USD per million tokens (exact decimals)."""
    name, sep, rates = text.partition("=")
    provider, slash, model = name.partition("/")
    parts = rates.split(",")
    if not sep or not slash or len(parts) != 4:
        raise ValidationError("price", text, "must look like provider/model=input,output,cache_read,cache_write "
                                             "(USD per million tokens), e.g. openai/gpt-4.1=2.5,10,0.5,2.5")
    values = [parse_usd(p.strip()) for p in parts]  # USD per MTok as text == micro-USD per MTok as int
    return ModelPrice(provider=provider, model=model, input=values[0], output=values[1], cache_read=values[2],
                      cache_write=values[3])


@dataclass(frozen=True)
class AllocationChange:
    """One allocation (interaction, method) whose figures differ between the live view and the side view
    (``None`` on a side that has no such allocation, e.g. a model one book cannot price)."""

    interaction_event_id: str
    interaction_id: str
    method: str
    old_total_micros: int | None
    new_total_micros: int | None
    old_requestor_pays_micros: int | None
    new_requestor_pays_micros: int | None
    old_net_transfer_micros: int | None
    new_net_transfer_micros: int | None
    old_direction: str | None
    new_direction: str | None


@dataclass(frozen=True)
class RepriceReport:
    compared: int
    changed: tuple[AllocationChange, ...]
    touched_models: tuple[str, ...]
    touched_interactions: int
    changed_interactions: int
    untouched_changed: int
    old_total: int
    new_total: int
    side_file: str

    def to_dict(self) -> dict[str, Any]:
        return {"allocations_compared": self.compared, "allocations_changed": len(self.changed),
                "interactions_changed": self.changed_interactions,
                "interactions_with_a_changed_price": self.touched_interactions,
                "models_with_a_changed_price": list(self.touched_models),
                "changed_without_a_price_change": self.untouched_changed,
                "old_total_micros": self.old_total, "new_total_micros": self.new_total,
                "delta_micros": self.new_total - self.old_total, "side_file": self.side_file,
                "changes": [dataclasses.asdict(c) for c in self.changed]}


def reprice_home(home: Home, log: Log, *, as_of_us: int | None, overrides: dict[tuple[str, str], ModelPrice],
                 keep: bool = True) -> RepriceReport:
    """Build the side view and diff it against the live allocations (see the module docstring)."""
    live = live_digest(home, "allocations")
    if live["digest"] is None:
        raise ValidationError("processor", "allocations", f"has no state to compare with ({live['source']})",
                              hint="run it first: tokenledger run allocations --until-caught-up")
    side_dir = Path(tempfile.mkdtemp(prefix="reprice-", dir=home.processor_dir("allocations")))
    target = side_dir / "state.duckdb"
    processor = Repricer(as_of_us, overrides, _live_price_book(home) if as_of_us is not None else None)
    store = Store(target, processor.views)
    try:
        runner = Runner(processor, log, store, anchors=home.anchors(), key=None, produce=False,
                        stop_at=parse_positions({"positions": live["positions"]}),
                        topic_prefix=home.config.get("topic_prefix", "ledger"))
        runner.run_until_caught_up()  # up to the live positions (stop_at), never further
    finally:
        store.close()
    with views.connect() as con:
        if not views.attach(con, target, "side"):
            raise StoreError("the side file of reprice cannot be read", path=str(target))
        _attach_live(con, home)
        report = _diff(con, str(target))
    if not keep:
        shutil.rmtree(side_dir, ignore_errors=True)
    return report


def _live_price_book(home: Home) -> PriceBook:
    """Every price the live allocations processor has applied (its ``prices`` view), as one book."""
    names = PRICES.public_columns
    with views.connect() as con:
        _attach_live(con, home)
        rows = con.execute(f"SELECT {', '.join(names)} FROM live.prices").fetchall()  # noqa: S608  (fixed names)
    return price_book_from_rows(dict(zip(names, r, strict=True)) for r in rows)


def _attach_live(con: views.Connection, home: Home) -> None:
    """The live views: its DuckDB file when the processor is not running, else what it published."""
    if views.attach(con, state_file(home, "allocations"), "live"):
        return
    # held by the running processor: read its published Parquet instead
    con.execute("CREATE SCHEMA live")
    for view in ("allocations", "interactions", "prices"):
        d = home.view_dir("allocations", view)
        if not any(d.glob("*.parquet")):
            raise ValidationError("allocations", "running", "the live processor holds its file and has not "
                                  "published its views yet", hint="wait a second and retry, or stop it first")
        views.create_parquet_view(con, f"live.{view}", d)


_DIFF_SQL = """
WITH o AS (SELECT * FROM live.allocations), n AS (SELECT * FROM side.allocations)
SELECT coalesce(o.interaction_event_id, n.interaction_event_id) AS interaction_event_id,
       coalesce(o.interaction_id, n.interaction_id) AS interaction_id,
       coalesce(o.method, n.method) AS method,
       o.total_micros AS old_total_micros, n.total_micros AS new_total_micros,
       o.requestor_pays_micros AS old_requestor_pays_micros, n.requestor_pays_micros AS new_requestor_pays_micros,
       o.net_transfer_micros AS old_net_transfer_micros, n.net_transfer_micros AS new_net_transfer_micros,
       o.direction AS old_direction, n.direction AS new_direction
FROM o FULL OUTER JOIN n ON o.interaction_event_id = n.interaction_event_id AND o.method = n.method
WHERE o.total_micros IS DISTINCT FROM n.total_micros
   OR o.requestor_pays_micros IS DISTINCT FROM n.requestor_pays_micros
   OR o.net_transfer_micros IS DISTINCT FROM n.net_transfer_micros
   OR o.direction IS DISTINCT FROM n.direction
ORDER BY 1, 3
"""

# interactions whose price on either side differs between the two books (or that one book cannot price)
_TOUCHED_SQL = """
WITH o AS (SELECT * FROM live.interactions), n AS (SELECT * FROM side.interactions)
SELECT coalesce(o.event_id, n.event_id) AS event_id,
       CASE WHEN o.requestor_rates IS DISTINCT FROM n.requestor_rates
            THEN coalesce(o.requestor_provider, n.requestor_provider) || '/'
                 || coalesce(o.requestor_model, n.requestor_model) END,
       CASE WHEN o.responder_rates IS DISTINCT FROM n.responder_rates
            THEN coalesce(o.responder_provider, n.responder_provider) || '/'
                 || coalesce(o.responder_model, n.responder_model) END
FROM o FULL OUTER JOIN n ON o.event_id = n.event_id
WHERE o.requestor_rates IS DISTINCT FROM n.requestor_rates OR o.responder_rates IS DISTINCT FROM n.responder_rates
"""


def _diff(con: views.Connection, side_file: str) -> RepriceReport:
    changed = [AllocationChange(**r) for r in views.run(con, _DIFF_SQL).records()]
    touched_rows = con.execute(_TOUCHED_SQL).fetchall()
    touched = {r[0] for r in touched_rows}
    models = sorted({m for r in touched_rows for m in r[1:] if m is not None})
    (compared,) = con.execute("SELECT count(*) FROM (SELECT interaction_event_id, method FROM live.allocations "
                              "UNION SELECT interaction_event_id, method FROM side.allocations)").fetchone() or (0,)
    old_total, new_total = con.execute(
        "SELECT (SELECT coalesce(sum(total_micros), 0) FROM live.allocations), "
        "(SELECT coalesce(sum(total_micros), 0) FROM side.allocations)").fetchone() or (0, 0)
    changed_ids = {c.interaction_event_id for c in changed}
    return RepriceReport(compared=int(compared), changed=tuple(changed), touched_models=tuple(models),
                         touched_interactions=len(touched),
                         changed_interactions=len(changed_ids), untouched_changed=len(changed_ids - touched),
                         old_total=int(old_total), new_total=int(new_total), side_file=side_file)


def parse_overrides(texts: Sequence[str]) -> dict[tuple[str, str], ModelPrice]:
    """The ``--price`` texts as overrides by (provider, model); a later text for a model replaces an earlier one."""
    overrides: dict[tuple[str, str], ModelPrice] = {}
    for text in texts:
        if len(overrides) >= MAX_PRICE_OVERRIDES:
            raise ValidationError("price", len(texts), f"at most {MAX_PRICE_OVERRIDES} --price options")
        p = parse_price(text)
        overrides[(p.provider, p.model)] = p
    return overrides


@dataclass(frozen=True)
class RepriceRequest:
    """Another price book: the book as it stood at ``as_of_us`` and/or ``overrides`` in force for all time."""

    as_of_us: int | None
    overrides: dict[tuple[str, str], ModelPrice]


def request(as_of_us: int | None, prices: Sequence[str] = ()) -> RepriceRequest:
    """Parse and check the alternative book (at least one of ``as_of_us`` and ``prices``) before any I/O."""
    overrides = parse_overrides(prices)
    if as_of_us is None and not overrides:
        raise ValidationError("reprice", "no alternative", "give --as-of TIME and/or --price provider/model=...",
                              hint="tokenledger reprice --price anthropic/claude-opus-4-6=4,20,0.4,5")
    return RepriceRequest(as_of_us, overrides)


def reprice(home: Home, log: Log, req: RepriceRequest, *, keep: bool = False) -> RepriceReport:
    """The use case: build the side view with ``req``'s book and diff it against the live allocations; the
    side file is removed unless ``keep``."""
    return reprice_home(home, log, as_of_us=req.as_of_us, overrides=req.overrides, keep=keep)


__all__ = ["AllocationChange", "RepriceReport", "RepriceRequest", "Repricer", "parse_overrides",
           "parse_price", "reprice", "reprice_home", "request"]
