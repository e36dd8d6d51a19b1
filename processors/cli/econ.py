"""The economics half of the ``tokenledger`` command: ``reprice`` and
``econ estimate|allocate|deposit|congestion|cache``.

``reprice`` prints what processors/services/reprice.py finds: the allocations re-priced with another
price book (``--as-of`` and/or ``--price`` overrides) in a side view, diffed against the live view.

``econ`` verbs are calculators over the pure library (ledger/economics/econ.py, ledger/economics/metering.py,
ledger/economics/allocation.py) and the shipped default price book; they touch no home and no log.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, int_arg, open_home, out, parse_time, print_json, table
from ledger.economics import econ
from ledger.economics.allocation import ALLOCATION_METHODS, NASH_BARGAINING, allocate
from ledger.economics.metering import InteractionFlows, estimate_interaction_cost, meter_interaction
from ledger.economics.money import format_usd, parse_usd
from ledger.economics.pricing import ModelPrice, default_price_book
from ledger.errors import ValidationError
from ledger.sdk.home import resolve_log_url

commands = typer.Typer()  # reprice, econ


def register(app: typer.Typer) -> None:
    """Add reprice, econ to ``app``."""
    app.add_typer(commands)


REPRICE_ROWS_SHOWN = 20  # diff rows printed as a table by default (all of them with --json)

econ_app = typer.Typer(no_args_is_help=True, help="Interaction economics calculators (default price book).",
                       epilog="Example: tokenledger econ estimate --requestor anthropic/claude-opus-4-6 "
                              "--responder openai/gpt-4.1 --request-tokens 1500 --response-tokens 4000")
commands.add_typer(econ_app, name="econ")


# ---------------------------------------------------------------- reprice


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
    from processors.services import reprice as reprice_service  # imported when used: `query` must start fast
    h = open_home(home)
    as_of_us = parse_time(as_of, "as_of")
    shown = int_arg("limit", limit)
    req = reprice_service.request(as_of_us, price or [])
    lg = h.open_log(resolve_log_url(log, h))
    try:
        report = reprice_service.reprice(h, lg, req, keep=keep)
    finally:
        lg.close()
    if json_:
        print_json(report.to_dict())
        return
    rows = report.changed if not shown else report.changed[:shown]
    table(f"re-priced allocations that differ ({len(report.changed):,} of {report.compared:,})",
           ["interaction", "method", "old total", "new total", "old requestor pays", "new requestor pays",
            "old transfer", "new transfer"],
           [[c.interaction_id, c.method, _usd(c.old_total_micros), _usd(c.new_total_micros),
             _usd(c.old_requestor_pays_micros), _usd(c.new_requestor_pays_micros),
             _usd(c.old_net_transfer_micros), _usd(c.new_net_transfer_micros)] for c in rows])
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


def _count(field: str, text: str) -> int:
    """A whole-number option that is required or has a default: typer never passes None, so neither does
    ``int_arg`` here."""
    n = int_arg(field, text)
    assert n is not None  # a required or defaulted option
    return n


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


def _usd_option(field: str, text: str | None) -> int | None:
    """A USD amount option (``0.25`` or ``$0.25``) as exact micro-USD; the error names the option."""
    if text is None:
        return None
    try:
        micros = parse_usd(text.strip())
    except ValidationError as e:
        raise ValidationError(field, text, e.reason) from None
    if micros < 0:
        raise ValidationError(field, text, "must not be negative")
    return micros


def _fraction_option(field: str, text: str | None) -> Fraction | None:
    """An exact decimal option (``0.6`` is 3/5); the library checks its range and names the same field."""
    if text is None:
        return None
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ValidationError(field, text, "must be a decimal number such as 0.5") from None


def _split_row(a: Any) -> dict[str, Any]:
    return {"requestor_pays_micros": a.requestor_pays, "responder_pays_micros": a.responder_pays,
            "net_transfer_micros": a.net_transfer, "direction": a.direction}


@econ_app.command("estimate", epilog="Example: tokenledger econ estimate --requestor anthropic/claude-opus-4-6 "
                                     "--responder openai/gpt-4.1 --request-tokens 1500 --response-tokens 4000 "
                                     "--value-a 0.50 --value-b 0.20")
@guarded
def econ_estimate(requestor: str = typer.Option(..., help="Requestor's provider/model."),
                  responder: str = typer.Option(..., help="Responder's provider/model."),
                  request_tokens: str = typer.Option(..., help="Request size, tokens."),
                  response_tokens: str = typer.Option(..., help="Response size, tokens."),
                  value_a: str | None = typer.Option(None, "--value-a", help="Nash: what the interaction is worth "
                                                     "to the requestor, USD (with --value-b: adds nash_bargaining)."),
                  value_b: str | None = typer.Option(None, "--value-b", help="Nash: what it is worth to the "
                                                     "responder, USD."),
                  alpha: str = typer.Option("0.5", help="Nash: the requestor's bargaining power, 0-1."),
                  json_: bool = JsonOpt) -> None:
    """What an interaction would cost (four flows, no caching) and how each method would split it (Nash
    bargaining too when both sides' values are given)."""
    m = estimate_interaction_cost(request_tokens=_count("request_tokens", request_tokens),
                                  response_tokens=_count("response_tokens", response_tokens),
                                  requestor_price=_model("requestor", requestor),
                                  responder_price=_model("responder", responder))
    va, vb = _usd_option("value_a", value_a), _usd_option("value_b", value_b)
    if (va is None) != (vb is None):
        raise ValidationError("value_b" if vb is None else "value_a", None,
                              "Nash bargaining needs both --value-a and --value-b")
    splits: dict[str, dict[str, Any]] = {}
    for method in ALLOCATION_METHODS:
        if method == NASH_BARGAINING:
            if va is None:
                continue  # needs each side's value: not estimable from sizes alone
            a = allocate(m, method, value_a=va, value_b=vb, alpha=_fraction_option("alpha", alpha))
        else:
            a = allocate(m, method)
        splits[method] = _split_row(a)
    data: dict[str, int] = {**{f"{k}_micros": v for k, v in m.flow_costs().items()}, "total_micros": m.total,
            "requestor_incurred_micros": m.requestor_incurred, "responder_incurred_micros": m.responder_incurred}
    if json_:
        print_json({**data, "allocations": splits})
        return
    table("interaction cost estimate", ["field", "value"], [[k, format_usd(v)] for k, v in data.items()])
    table("allocation by method", ["method", "requestor pays", "responder pays", "transfer", "direction"],
           [[k, format_usd(v["requestor_pays_micros"]), format_usd(v["responder_pays_micros"]),
             format_usd(v["net_transfer_micros"]), v["direction"]] for k, v in splits.items()])


@econ_app.command("allocate", epilog="Example: tokenledger econ allocate --requestor anthropic/claude-sonnet-4-6 "
                                     "--responder anthropic/claude-sonnet-4-6 --request-tokens 10000 "
                                     "--response-tokens 3000 --method nash_bargaining --value-a 1 --value-b 0.5 "
                                     "--alpha 0.6")
@guarded
def econ_allocate(requestor: str = typer.Option(..., help="Requestor's provider/model."),
                  responder: str = typer.Option(..., help="Responder's provider/model."),
                  request_tokens: str = typer.Option(..., help="Request size, tokens (written, then read)."),
                  response_tokens: str = typer.Option(..., help="Response size, tokens (written, then read)."),
                  request_cached: str = typer.Option("0", help="Part of the request the responder reads from "
                                                     "its cache, tokens."),
                  response_cached: str = typer.Option("0", help="Part of the response the requestor reads from "
                                                      "its cache, tokens."),
                  method: str = typer.Option("shapley", help="One of: " + ", ".join(ALLOCATION_METHODS) + "."),
                  alpha: str | None = typer.Option(None, help="nash_bargaining: the requestor's bargaining "
                                                   "power, 0-1 (default 0.5)."),
                  value_a: str | None = typer.Option(None, "--value-a", help="nash_bargaining (required): the "
                                                     "interaction's worth to the requestor, USD."),
                  value_b: str | None = typer.Option(None, "--value-b", help="nash_bargaining (required): its "
                                                     "worth to the responder, USD."),
                  disagreement_a: str | None = typer.Option(None, "--disagreement-a", help="nash_bargaining: the "
                                                            "requestor's payoff without a deal, USD (default 0)."),
                  disagreement_b: str | None = typer.Option(None, "--disagreement-b", help="nash_bargaining: the "
                                                            "responder's payoff without a deal, USD (default 0)."),
                  no_surplus_fallback: str | None = typer.Option(None, help="nash_bargaining: the rule-based "
                                                                 "method to use when there is no surplus "
                                                                 "(default: refuse)."),
                  standalone_cost_a: str | None = typer.Option(None, "--standalone-cost-a", help="shapley: what "
                                                               "the requestor spends alone, USD (default: its "
                                                               "request-output cost)."),
                  standalone_cost_b: str | None = typer.Option(None, "--standalone-cost-b", help="shapley: what "
                                                               "the responder spends alone, USD (default 0)."),
                  json_: bool = JsonOpt) -> None:
    """Split one interaction's cost by a method, with its parameters: the four flows, each side's share, the
    net transfer and its direction. A parameter the method does not take is refused, as is Nash without
    both values."""
    flows = InteractionFlows.symmetric(request_tokens=_count("request_tokens", request_tokens),
                                       response_tokens=_count("response_tokens", response_tokens),
                                       request_cached_tokens=_count("request_cached", request_cached),
                                       response_cached_tokens=_count("response_cached", response_cached))
    m = meter_interaction(flows, requestor_price=_model("requestor", requestor),
                          responder_price=_model("responder", responder))
    given = {"alpha": _fraction_option("alpha", alpha), "value_a": _usd_option("value_a", value_a),
             "value_b": _usd_option("value_b", value_b),
             "disagreement_a": _usd_option("disagreement_a", disagreement_a),
             "disagreement_b": _usd_option("disagreement_b", disagreement_b),
             "no_surplus_fallback": no_surplus_fallback,
             "standalone_cost_a": _usd_option("standalone_cost_a", standalone_cost_a),
             "standalone_cost_b": _usd_option("standalone_cost_b", standalone_cost_b)}
    a = allocate(m, method, **{k: v for k, v in given.items() if v is not None})
    data: dict[str, Any] = {"method": a.method, **_split_row(a), "total_micros": m.total,
                            "requestor_incurred_micros": m.requestor_incurred,
                            "responder_incurred_micros": m.responder_incurred,
                            "flows_micros": m.flow_costs(), "parameters": a.parameters}
    if json_:
        print_json(data)
        return
    table(f"interaction cost ({format_usd(m.total)})", ["flow", "tokens", "cached", "cost"],
          [[name, getattr(flows, name).tokens, getattr(flows, name).cached_tokens, format_usd(cost)]
           for name, cost in m.flow_costs().items()])
    table(f"allocation: {a.method}", ["field", "value"], [
        ["requestor pays", format_usd(a.requestor_pays)], ["responder pays", format_usd(a.responder_pays)],
        ["requestor incurred", format_usd(m.requestor_incurred)],
        ["responder incurred", format_usd(m.responder_incurred)],
        ["net transfer", format_usd(a.net_transfer)], ["direction", a.direction],
        *[[f"parameter {k}", _parameter_text(k, v)] for k, v in sorted(a.parameters.items())]])


# allocation parameters that are money (int micro-USD); the rest are ratios, names or counts
_MONEY_PARAMETERS = frozenset({"value_a", "value_b", "disagreement_a", "disagreement_b", "surplus",
                               "standalone_cost_a", "standalone_cost_b"})


def _parameter_text(name: str, value: Any) -> str:
    if value is None:
        return ""
    return format_usd(value) if name in _MONEY_PARAMETERS and isinstance(value, int) else str(value)


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
    tokens = _count("request_tokens", request_tokens)
    score = _number("reputation", reputation, "a number from 0 to 100")
    q = econ.calculate_deposit(estimated_request_tokens=tokens,
                               responder_input_rate=_model("responder", responder).input, reputation_score=score)
    d = econ.check_access(reputation_score=score, interaction_count=_count("interactions", interactions),
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
    n = _count("tokens", tokens)
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
    price = _model("model", model)
    if price.input == 0:
        raise ValidationError("model", model, "has a zero input rate: cache multipliers are undefined")
    c = econ.cache_amortized_cost(context_tokens=_count("context_tokens", context_tokens), input_rate=price.input,
                                  cache_write_multiplier=Fraction(price.cache_write, price.input),
                                  cache_hit_rate=Fraction(price.cache_read, price.input),
                                  num_interactions=_count("uses", uses))
    _emit(json_, "cache amortization", {
        "first_use_micros": c.first_cost, "later_use_micros": c.subsequent_cost, "amortized_micros": c.amortized_cost,
        "uncached_use_micros": c.uncached_cost, "total_cached_micros": c.total_cached,
        "total_uncached_micros": c.total_uncached, "savings_pct": round(c.savings_pct, 2)})


