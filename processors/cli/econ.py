"""The economics half of the ``tokenledger`` command: ``reprice`` and ``econ estimate|deposit|congestion|cache``.

``reprice`` replays the allocations processor's pure pricing over the log, up to the live processor's
positions, into a side DuckDB file (``<home>/processors/allocations/reprice-*/state.duckdb``) with another
price book — the book as it stood at ``--as-of`` applied to every interaction, and/or ``--price``
overrides in force for all time — then compares its ``allocations`` with the live view and reports
every difference, which models' prices caused them, and that nothing else changed.

``econ`` verbs are calculators over the pure library (ledger/econ.py, ledger/metering.py,
ledger/allocation.py) and the shipped default price book; they touch no home and no log.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, int_arg, open_home, out, parse_time, print_json, table
from ledger.economics import econ
from ledger.economics.allocation import ALLOCATION_METHODS, NASH_BARGAINING, allocate
from ledger.economics.metering import estimate_interaction_cost
from ledger.economics.money import format_usd, parse_usd
from ledger.economics.pricing import ModelPrice, PriceInForce, default_price_book
from ledger.errors import ValidationError
from ledger.limits import MAX_PRICE_OVERRIDES
from processors.allocations import ALLOCATIONS, Allocations, PriceLookup
from processors.runtime.publish import parse_positions
from processors.runtime.runner import Runner
from processors.runtime.service import live_digest, processor_dir, views_dir
from processors.runtime.store import Store

REPRICE_ROWS_SHOWN = 20  # diff rows printed as a table by default (all of them with --json)

econ_app = typer.Typer(no_args_is_help=True, help="Interaction economics calculators (default price book).",
                       epilog="Example: tokenledger econ estimate --requestor anthropic/claude-opus-4-6 "
                              "--responder openai/gpt-4.1 --request-tokens 1500 --response-tokens 4000")
commands = typer.Typer()  # reprice
def register(app: typer.Typer) -> None:
    """Add ``reprice`` and the ``econ`` group to ``app``."""
    app.add_typer(commands)
    app.add_typer(econ_app, name="econ")


# ---------------------------------------------------------------- reprice


class Repricer(Allocations):
    """The allocations processor with another price lookup and no derived events (a side view only)."""

    def __init__(self, as_of_us: int | None, overrides: dict[tuple[str, str], ModelPrice]) -> None:
        super().__init__()
        self.as_of_us = as_of_us
        self.overrides = overrides
        self.produce_derived = False

    def price_lookup(self) -> PriceLookup:
        # the same book and rule as the live processor (ledger.economics.pricing), looked up at another time
        base = super().price_lookup()

        def lookup(provider: str, model: str, t_us: int) -> PriceInForce:
            override = self.overrides.get((provider, model))
            if override is not None:  # an alternative entry is in force for all time
                return PriceInForce(price=override, in_force_from_us=0, event_time_us=None, seq=0)
            return base(provider, model, t_us if self.as_of_us is None else self.as_of_us)

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


@dataclass
class RepriceReport:
    compared: int
    changed: list[dict[str, Any]]
    touched_models: list[str]
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
                "models_with_a_changed_price": self.touched_models,
                "changed_without_a_price_change": self.untouched_changed,
                "old_total_micros": self.old_total, "new_total_micros": self.new_total,
                "delta_micros": self.new_total - self.old_total, "side_file": self.side_file, "changes": self.changed}


def reprice_home(home: Any, log: Any, *, as_of_us: int | None, overrides: dict[tuple[str, str], ModelPrice],
                 keep: bool = True) -> RepriceReport:
    """Build the side view and diff it against the live allocations (see the module docstring)."""
    import duckdb

    live = live_digest(home, "allocations")
    if live["digest"] is None:
        raise ValidationError("processor", "allocations", f"has no state to compare with ({live['source']})",
                              hint="run it first: tokenledger run allocations --until-caught-up")
    side_dir = Path(tempfile.mkdtemp(prefix="reprice-", dir=processor_dir(home, "allocations")))
    target = side_dir / "state.duckdb"
    processor = Repricer(as_of_us, overrides)
    store = Store(target, processor.views)
    try:
        runner = Runner(processor, log, store, anchors=home.anchors(), key=None, produce=False,
                        stop_at=parse_positions({"positions": live["positions"]}),
                        topic_prefix=home.config.get("topic_prefix", "ledger"))
        while runner.step() != 0:
            pass
    finally:
        store.close()
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{_sql_path(target)}' AS side (READ_ONLY)")
        _attach_live(con, home)
        report = _diff(con, str(target))
    finally:
        con.close()
    if not keep:
        shutil.rmtree(side_dir, ignore_errors=True)
    return report


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")


def _attach_live(con: Any, home: Any) -> None:
    """The live views: its DuckDB file when the processor is not running, else what it published."""
    import duckdb

    try:
        con.execute(f"ATTACH '{_sql_path(processor_dir(home, 'allocations') / 'state.duckdb')}' AS live (READ_ONLY)")
        return
    except duckdb.Error:
        pass  # held by the running processor: read its published Parquet instead
    con.execute("CREATE SCHEMA live")
    for view in ("allocations", "interactions"):
        d = views_dir(home, "allocations") / view
        if not any(d.glob("*.parquet")):
            raise ValidationError("allocations", "running", "the live processor holds its file and has not "
                                  "published its views yet", hint="wait a second and retry, or stop it first")
        con.execute(f"CREATE VIEW live.{view} AS SELECT * FROM read_parquet('{_sql_path(d)}/*.parquet', "
                    "union_by_name = true)")


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
            THEN coalesce(o.requestor_provider, n.requestor_provider) || '/' || coalesce(o.requestor_model, n.requestor_model) END,
       CASE WHEN o.responder_rates IS DISTINCT FROM n.responder_rates
            THEN coalesce(o.responder_provider, n.responder_provider) || '/' || coalesce(o.responder_model, n.responder_model) END
FROM o FULL OUTER JOIN n ON o.event_id = n.event_id
WHERE o.requestor_rates IS DISTINCT FROM n.requestor_rates OR o.responder_rates IS DISTINCT FROM n.responder_rates
"""


def _diff(con: Any, side_file: str) -> RepriceReport:
    cur = con.execute(_DIFF_SQL)
    cols = [d[0] for d in cur.description]
    changed = [dict(zip(cols, r)) for r in cur.fetchall()]
    touched_rows = con.execute(_TOUCHED_SQL).fetchall()
    touched = {r[0] for r in touched_rows}
    models = sorted({m for r in touched_rows for m in r[1:] if m is not None})
    compared = con.execute("SELECT count(*) FROM (SELECT interaction_event_id, method FROM live.allocations "
                           "UNION SELECT interaction_event_id, method FROM side.allocations)").fetchone()[0]
    old_total, new_total = con.execute(
        "SELECT (SELECT coalesce(sum(total_micros), 0) FROM live.allocations), "
        "(SELECT coalesce(sum(total_micros), 0) FROM side.allocations)").fetchone()
    changed_ids = {c["interaction_event_id"] for c in changed}
    return RepriceReport(compared=compared, changed=changed, touched_models=models, touched_interactions=len(touched),
                         changed_interactions=len(changed_ids), untouched_changed=len(changed_ids - touched),
                         old_total=int(old_total), new_total=int(new_total), side_file=side_file)


@commands.command(epilog="Example: tokenledger reprice --price anthropic/claude-opus-4-6=4,20,0.4,5   ·   "
                    "tokenledger reprice --as-of 2026-06-01T00:00:00Z --json")
@guarded
def reprice(as_of: str | None = typer.Option(None, "--as-of", help="Price every interaction with the book as it "
                                                "stood at TIME (ISO-8601 or microseconds), not at its own event time."),
            price: list[str] | None = typer.Option(None, "--price", help="An alternative entry, in force for all "
                                                      "time: provider/model=input,output,cache_read,cache_write "
                                                      "(USD per million tokens). Repeatable."),
            home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt,
            keep: bool = typer.Option(False, help="Keep the side DuckDB file (reprice-*/state.duckdb)."),
            limit: str = typer.Option(str(REPRICE_ROWS_SHOWN), help="Diff rows to print (0 = all).")) -> None:
    """Re-price the allocations with another price book into a side view and report what changed (and that
    nothing else did). The live views are not touched."""
    h = open_home(home)
    as_of_us = parse_time(as_of, "as_of")
    shown = int_arg("limit", limit)
    overrides: dict[tuple[str, str], ModelPrice] = {}
    for text in price or []:
        if len(overrides) >= MAX_PRICE_OVERRIDES:
            raise ValidationError("price", len(price or []), f"at most {MAX_PRICE_OVERRIDES} --price options")
        p = parse_price(text)
        overrides[p.key] = p
    if as_of_us is None and not overrides:
        raise ValidationError("reprice", "no alternative", "give --as-of TIME and/or --price provider/model=...",
                              hint="tokenledger reprice --price anthropic/claude-opus-4-6=4,20,0.4,5")
    from ledger.sdk.home import resolve_log_url

    lg = h.open_log(resolve_log_url(log, h))
    try:
        report = reprice_home(h, lg, as_of_us=as_of_us, overrides=overrides, keep=keep)
    finally:
        lg.close()
    if json_:
        print_json(report.to_dict())
        return
    rows = report.changed if not shown else report.changed[:shown]
    table(f"re-priced allocations that differ ({len(report.changed):,} of {report.compared:,})",
           ["interaction", "method", "old total", "new total", "old requestor pays", "new requestor pays",
            "old transfer", "new transfer"],
           [[c["interaction_id"], c["method"], _usd(c["old_total_micros"]), _usd(c["new_total_micros"]),
             _usd(c["old_requestor_pays_micros"]), _usd(c["new_requestor_pays_micros"]),
             _usd(c["old_net_transfer_micros"]), _usd(c["new_net_transfer_micros"])] for c in rows])
    out.print(f"models whose price differs: {', '.join(report.touched_models) or 'none'} "
              f"({report.touched_interactions:,} interactions use them)", markup=False)
    out.print(f"changed: {len(report.changed):,} allocations of {report.changed_interactions:,} interactions; "
              f"total {_usd(report.old_total)} -> {_usd(report.new_total)}", markup=False)
    if report.untouched_changed == 0:
        out.print(f"nothing else changed: the other {report.compared - len(report.changed):,} allocations are "
                  "identical, and every change is in an interaction that uses a re-priced model", markup=False)
    else:
        out.print(f"UNEXPECTED: {report.untouched_changed:,} changed interactions use no re-priced model",
                  markup=False)


def _usd(micros: int | None) -> str:
    return "-" if micros is None else format_usd(int(micros))


# ---------------------------------------------------------------- econ calculators


def _model(field: str, text: str) -> ModelPrice:
    provider, slash, model = text.partition("/")
    if not slash:
        raise ValidationError(field, text, "must look like provider/model, e.g. openai/gpt-4.1")
    return default_price_book().price_at(provider, model, 0)  # an unknown model is an error, never $0


def _emit(json_: bool, title: str, data: dict[str, Any]) -> None:
    if json_:
        print_json(data)
    else:
        table(title, ["field", "value"], [[k, v] for k, v in data.items()])


@econ_app.command("estimate", epilog="Example: tokenledger econ estimate --requestor anthropic/claude-opus-4-6 "
                                     "--responder openai/gpt-4.1 --request-tokens 1500 --response-tokens 4000")
@guarded
def econ_estimate(requestor: str = typer.Option(..., help="Requestor's provider/model."),
                  responder: str = typer.Option(..., help="Responder's provider/model."),
                  request_tokens: str = typer.Option(..., help="Request size, tokens."),
                  response_tokens: str = typer.Option(..., help="Response size, tokens."),
                  json_: bool = JsonOpt) -> None:
    """What an interaction would cost (four flows, no caching) and how each method would split it."""
    m = estimate_interaction_cost(request_tokens=int_arg("request_tokens", request_tokens),
                                  response_tokens=int_arg("response_tokens", response_tokens),
                                  requestor_price=_model("requestor", requestor),
                                  responder_price=_model("responder", responder))
    splits = {}
    for method in ALLOCATION_METHODS:
        if method == NASH_BARGAINING:
            continue  # needs each side's value: not estimable from sizes alone
        a = allocate(m, method)
        splits[method] = {"requestor_pays_micros": a.requestor_pays, "responder_pays_micros": a.responder_pays,
                          "net_transfer_micros": a.net_transfer, "direction": a.direction}
    data = {**{f"{k}_micros": v for k, v in m.flow_costs().items()}, "total_micros": m.total,
            "requestor_incurred_micros": m.requestor_incurred, "responder_incurred_micros": m.responder_incurred}
    if json_:
        print_json({**data, "allocations": splits})
        return
    table("interaction cost estimate", ["field", "value"], [[k, format_usd(v)] for k, v in data.items()])
    table("allocation by method", ["method", "requestor pays", "responder pays", "transfer", "direction"],
           [[k, format_usd(v["requestor_pays_micros"]), format_usd(v["responder_pays_micros"]),
             format_usd(v["net_transfer_micros"]), v["direction"]] for k, v in splits.items()])


def _number(field: str, text: str | None, meaning: str) -> float | None:
    """A CLI number for a score or ratio (range checks are the library's, naming the same field)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValidationError(field, text, f"must be {meaning}") from None


@econ_app.command("deposit", epilog="Example: tokenledger econ deposit --responder openai/gpt-4.1 "
                                    "--request-tokens 20000 --reputation 55 --interactions 12")
@guarded
def econ_deposit(responder: str = typer.Option(..., help="Responder's provider/model (its input rate is used)."),
                 request_tokens: str = typer.Option(..., help="Estimated request size, tokens."),
                 reputation: str | None = typer.Option(None, help="Requestor's reputation 0-100 (omit: unknown)."),
                 interactions: str = typer.Option("0", help="Requestor's past interactions."),
                 json_: bool = JsonOpt) -> None:
    """Spam deposit for a request, and whether the progressive access limit lets it through."""
    tokens = int_arg("request_tokens", request_tokens)
    score = _number("reputation", reputation, "a number from 0 to 100")
    q = econ.calculate_deposit(estimated_request_tokens=tokens, responder_input_rate=_model("responder", responder).input,
                               reputation_score=score)
    d = econ.check_access(reputation_score=score, interaction_count=int_arg("interactions", interactions),
                          request_tokens=tokens)
    _emit(json_, "deposit and access", {
        "deposit_micros": q.amount_micros, "deposit_usd": format_usd(q.amount_micros), "reputation_tier": str(q.tier),
        "base_multiplier": str(q.base_multiplier), "reputation_multiplier": str(q.reputation_multiplier),
        "allowed": d.allowed, "reason": d.reason, "limit_tokens": d.limit_tokens, "detail": d.detail})


@econ_app.command("congestion", epilog="Example: tokenledger econ congestion --model anthropic/claude-sonnet-4-6 "
                                       "--tokens 10000 --utilization 0.85 --qos priority")
@guarded
def econ_congestion(model: str = typer.Option(..., help="provider/model whose input rate is the base rate."),
                    tokens: str = typer.Option(..., help="Tokens to price."),
                    utilization: str = typer.Option(..., help="Capacity in use, 0-1."),
                    qos: str = typer.Option("standard", help="QoS tier: economy, standard, priority, reserved."),
                    json_: bool = JsonOpt) -> None:
    """Congestion multiplier, effective token price, QoS check and the back-pressure signal."""
    u = _number("utilization", utilization, "a number from 0 to 1")
    assert u is not None  # a required option
    n = int_arg("tokens", tokens)
    p = econ.effective_token_price(base_rate=_model("model", model).input, tokens=n, utilization=u, qos_tier=qos)
    check = econ.check_qos_limits(econ.qos_config_for_tier(qos), request_tokens=n, current_utilization=u)
    bp = econ.back_pressure(u)
    _emit(json_, "congestion pricing", {
        "congestion_level": str(econ.congestion_level(u)), "congestion_multiplier": str(p.congestion_multiplier),
        "qos_multiplier": str(p.qos_multiplier), "base_cost_micros": p.base_cost,
        "congestion_premium_micros": p.congestion_premium, "protocol_overhead_micros": p.protocol_overhead,
        "total_micros": p.total, "total_usd": format_usd(p.total), "qos_allowed": check.allowed,
        "back_pressure": str(bp.status), "available_tiers": ", ".join(str(t) for t in bp.available_tiers)})


@econ_app.command("cache", epilog="Example: tokenledger econ cache --model anthropic/claude-sonnet-4-6 "
                                  "--context-tokens 50000 --uses 10")
@guarded
def econ_cache(model: str = typer.Option(..., help="provider/model (its input, cache-write and cache-read rates)."),
               context_tokens: str = typer.Option(..., help="Tokens of shared context."),
               uses: str = typer.Option("10", help="Interactions that reuse it (>= 1)."),
               json_: bool = JsonOpt) -> None:
    """Caching economics: per-use cost of a cached context with the model's own cache rates, vs no cache."""
    from fractions import Fraction

    price = _model("model", model)
    if price.input == 0:
        raise ValidationError("model", model, "has a zero input rate: cache multipliers are undefined")
    c = econ.cache_amortized_cost(context_tokens=int_arg("context_tokens", context_tokens), input_rate=price.input,
                                  cache_write_multiplier=Fraction(price.cache_write, price.input),
                                  cache_hit_rate=Fraction(price.cache_read, price.input),
                                  num_interactions=int_arg("uses", uses))
    _emit(json_, "cache amortization", {
        "first_use_micros": c.first_cost, "later_use_micros": c.subsequent_cost, "amortized_micros": c.amortized_cost,
        "uncached_use_micros": c.uncached_cost, "total_cached_micros": c.total_cached,
        "total_uncached_micros": c.total_uncached, "savings_pct": round(c.savings_pct, 2)})


__all__ = ["ALLOCATIONS", "RepriceReport", "Repricer", "parse_price", "reprice_home"]
