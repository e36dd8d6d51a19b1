"""``tokenledger prices list | show | set | load``: the price book the log holds, and the operator's way to change it.

Every price is a ``price_set`` control event signed by the operator; processors fold them in log order, and an
entry is in force from max(its declared effective time, its own event time) — a price is never retroactive, so a
replay charges what the live run charged (ledger.economics.pricing). Rates are typed in USD per million tokens as
decimals and stored exactly as integer micro-USD per million tokens: a rate finer than a micro-dollar is refused,
never rounded.

``prices load FILE`` reads a JSON or YAML document (format below) and appends only the entries that differ from
the one in force for their model, so loading the same file twice appends nothing the second time::

    {"prices": [{"provider": "anthropic", "model": "claude-haiku-4-5", "input": "1", "output": "5",
                 "cache_read": "0.1", "cache_write": "1.25", "reasoning": null, "effective": "2026-12-01T00:00:00Z"}]}

``cache_read`` and ``cache_write`` default to the input rate, ``reasoning`` to the output rate, ``effective`` to
now; unknown fields are refused (a typo must not silently drop a rate).
"""

from __future__ import annotations

import contextlib
import json
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import typer

from ledger import limits
from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, open_home, operator_emit, out, print_json, table
from ledger.economics.pricing import ModelPrice, PriceBook, PriceInForce, in_force_from_us
from ledger.errors import EconomicsError, ValidationError
from ledger.files import read_bounded
from ledger.sdk.home import Home, resolve_log_url
from ledger.sdk.price_log import Announced, book_of, read_price_sets
from ledger.units import US_PER_S
from ledger.wire.events import PriceSet
from ledger.wire.timefmt import fmt_time, parse_time

MICROS_PER_USD = 1_000_000
PRICE_FIELDS = ("provider", "model", "input", "output", "cache_read", "cache_write", "reasoning", "effective")

prices_app = typer.Typer(no_args_is_help=True, help="The price book on the log: list, show, set, load.",
                         epilog="Example: tokenledger prices list --provider anthropic")


def register(app: typer.Typer) -> None:
    """Add the ``prices`` group to ``app``."""
    app.add_typer(prices_app, name="prices")


def usd_to_micros(field: str, value: Any) -> int:
    """USD per million tokens (a decimal number or string) as exact integer micro-USD per million tokens."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        # a float would carry binary noise into money: rates are written as decimal strings or whole numbers
        raise ValidationError(field, value, "must be a decimal number of USD per million tokens, written as text "
                              "(like \"0.25\") or a whole number")
    try:
        usd = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationError(field, value, "must be a decimal number of USD per million tokens (like 0.25)") from None
    if not usd.is_finite() or usd < 0:
        raise ValidationError(field, value, "must be a finite, non-negative number of USD per million tokens")
    micros = usd * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValidationError(field, value, "is finer than one micro-dollar per million tokens",
                              hint="rates are kept exactly as integer micro-USD per million tokens")
    n = int(micros)
    if n > limits.MAX_RATE_MICROS_PER_MTOK:
        raise ValidationError(field, value, f"exceeds ${limits.MAX_RATE_MICROS_PER_MTOK // MICROS_PER_USD:,} "
                              "per million tokens (a unit mix-up?)")
    return n


def usd(micros: int) -> str:
    """Micro-USD as a plain decimal USD string, no trailing zeros beyond the cents."""
    text = f"{Decimal(micros) / MICROS_PER_USD:f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac.ljust(2, '0')}"


def split_model(text: str) -> tuple[str | None, str]:
    """``provider/model`` or a bare ``model`` (any provider)."""
    provider, sep, model = text.partition("/")
    if not sep:
        return None, text
    if not provider or not model:
        raise ValidationError("model", text, "must be PROVIDER/MODEL (like anthropic/claude-haiku-4-5) or MODEL")
    return provider, model


def price_set(entry: dict[str, Any], at: str = "entry") -> PriceSet:
    """The ``price_set`` one entry of a price file (or the ``set`` flags) asks for; typed errors name the field."""
    if not isinstance(entry, dict):
        raise ValidationError(at, entry, "must be an object with provider, model, input and output")
    unknown = sorted(set(entry) - set(PRICE_FIELDS))
    if unknown:
        raise ValidationError(f"{at}.{unknown[0]}", entry[unknown[0]], "is not a price field",
                              hint=f"the fields are {', '.join(PRICE_FIELDS)}")
    for required in ("provider", "model", "input", "output"):
        if entry.get(required) is None:
            raise ValidationError(f"{at}.{required}", None, "is required")
    for name in ("provider", "model"):
        if not isinstance(entry[name], str):
            raise ValidationError(f"{at}.{name}", entry[name], "must be text")
    rate = {k: usd_to_micros(f"{at}.{k}", entry[k]) for k in ("input", "output", "cache_read", "cache_write",
                                                              "reasoning") if entry.get(k) is not None}
    effective = entry.get("effective")
    if effective is not None and not isinstance(effective, (str, int)):
        raise ValidationError(f"{at}.effective", effective, "must be an ISO-8601 time or microseconds")
    effective_us = parse_time(str(effective), f"{at}.effective") if effective is not None else now_us()
    assert effective_us is not None
    try:
        return PriceSet(provider=entry["provider"], model=entry["model"], input_micros_per_mtok=rate["input"],
                        output_micros_per_mtok=rate["output"],
                        cache_read_micros_per_mtok=rate.get("cache_read", rate["input"]),
                        cache_write_micros_per_mtok=rate.get("cache_write", rate["input"]),
                        reasoning_micros_per_mtok=rate.get("reasoning"), effective_from_us=effective_us)
    except ValidationError as e:
        e.evidence["field"] = f"{at}.{e.evidence.get('field', '')}"
        raise


def now_us() -> int:
    return time.time_ns() // 1000


def _book(h: Home, log: str | None) -> tuple[list[Announced], PriceBook]:
    lg = h.open_log(resolve_log_url(log, h))
    try:
        announced = read_price_sets(lg, h.control_topic, h.anchors())
    finally:
        lg.close()
    return announced, book_of(announced)


def _row(e: PriceInForce, ids: dict[int, str], *, current: bool | None = None) -> dict[str, Any]:
    p = e.price
    row = {"provider": p.provider, "model": p.model, "input_usd_per_mtok": usd(p.input),
           "output_usd_per_mtok": usd(p.output), "cache_read_usd_per_mtok": usd(p.cache_read),
           "cache_write_usd_per_mtok": usd(p.cache_write), "reasoning_usd_per_mtok": usd(p.output if p.reasoning
                                                                                          is None else p.reasoning),
           "input_micros_per_mtok": p.input, "output_micros_per_mtok": p.output,
           "cache_read_micros_per_mtok": p.cache_read, "cache_write_micros_per_mtok": p.cache_write,
           "reasoning_micros_per_mtok": p.reasoning, "effective_from": fmt_time(p.effective_from_us),
           "in_force_from": fmt_time(e.in_force_from_us), "in_force_from_us": e.in_force_from_us,
           "event_id": ids.get(e.seq)}
    if current is not None:
        row["current"] = current
    return row


def _rates(r: dict[str, Any]) -> list[Any]:
    return [r["input_usd_per_mtok"], r["output_usd_per_mtok"], r["cache_read_usd_per_mtok"],
            r["cache_write_usd_per_mtok"], r["reasoning_usd_per_mtok"]]


RATE_COLUMNS = ["input $/MTok", "output", "cache read", "cache write", "reasoning"]


@prices_app.command("list", epilog="Example: tokenledger prices list --provider openai --as-of 2026-11-01T00:00:00Z")
@guarded
def prices_list(provider: str | None = typer.Option(None, help="Only this provider."),
                model: str | None = typer.Option(None, help="Only models whose name contains this text."),
                as_of: str | None = typer.Option(None, "--as-of", help="The prices in force at this time (ISO-8601 "
                                                                       "or microseconds; default: now)."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """The price in force for every model the log prices (one row per provider and model)."""
    at = parse_time(as_of, "as_of") if as_of is not None else now_us()
    assert at is not None
    announced, book = _book(open_home(home), log)
    ids = {i + 1: a.event_id for i, a in enumerate(announced)}
    rows = []
    for prov, mod in book.models():
        if (provider is not None and prov != provider) or (model is not None and model not in mod):
            continue
        try:
            rows.append(_row(book.in_force_at(prov, mod, at), ids))
        except EconomicsError:
            continue  # its first price starts later: nothing in force yet
    if json_:
        print_json(rows)
        return
    table(f"prices in force at {fmt_time(at)} ({len(rows)} models)", ["provider", "model", *RATE_COLUMNS,
                                                                       "in force from"],
          [[r["provider"], r["model"], *_rates(r), r["in_force_from"]] for r in rows])


@prices_app.command("show", epilog="Example: tokenledger prices show anthropic/claude-haiku-4-5")
@guarded
def prices_show(model: str = typer.Argument(..., help="PROVIDER/MODEL, or MODEL for every provider that has it."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Every price the log has set for a model, oldest first, and which one is in force now."""
    provider, name = split_model(model)
    announced, book = _book(open_home(home), log)
    ids = {i + 1: a.event_id for i, a in enumerate(announced)}
    now = now_us()
    entries = [e for e in book.in_force_entries()
               if e.price.model == name and (provider is None or e.price.provider == provider)]
    if not entries:
        raise ValidationError("model", model, "has no price on the log",
                              hint="list the priced models: tokenledger prices list; add one: tokenledger prices set")
    current = set()
    for prov, mod in {(e.price.provider, e.price.model) for e in entries}:
        with contextlib.suppress(EconomicsError):  # only future prices: none is current
            current.add(book.in_force_at(prov, mod, now).seq)
    rows = [_row(e, ids, current=e.seq in current) for e in entries]
    if json_:
        print_json(rows)
        return
    table(f"prices of {model}", ["provider", "model", *RATE_COLUMNS, "in force from", "effective (declared)", "now",
                                 "event id"],
          [[r["provider"], r["model"], *_rates(r), r["in_force_from"], r["effective_from"],
            "yes" if r["current"] else "", r["event_id"]] for r in rows])


def _announce(h: Home, log: str | None, bodies: list[PriceSet]) -> list[dict[str, Any]]:
    ids = operator_emit(h, log, list(bodies)) if bodies else []
    appended_us = now_us()
    return [{"event_id": eid, "provider": b.provider, "model": b.model,
             "effective_from": fmt_time(b.effective_from_us),
             # what the rule makes of it: never before the event's own time (stamped just now)
             "in_force_from": fmt_time(in_force_from_us(b.effective_from_us, appended_us)),
             "retroactive_refused": b.effective_from_us < appended_us - US_PER_S}
            for eid, b in zip(ids, bodies, strict=True)]


@prices_app.command("set", epilog="Example: tokenledger prices set anthropic/claude-haiku-4-5 --input 1 --output 5 "
                                  "--cache-read 0.1 --cache-write 1.25")
@guarded
def prices_set(model: str = typer.Argument(..., help="PROVIDER/MODEL."),
               input_: str = typer.Option(..., "--input", help="USD per million input tokens (like 3 or 0.25)."),
               output: str = typer.Option(..., help="USD per million output tokens."),
               cache_read: str | None = typer.Option(None, help="USD per million cache-read tokens (default: input)."),
               cache_write: str | None = typer.Option(None, help="USD per million cache-write tokens (default: "
                                                                 "input)."),
               reasoning: str | None = typer.Option(None, help="USD per million reasoning tokens (default: output)."),
               effective: str | None = typer.Option(None, help="When it takes effect (ISO-8601; default: now). A past "
                                                               "time is not retroactive: in force from now."),
               home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Append the operator's price_set for one model."""
    provider, name = split_model(model)
    if provider is None:
        raise ValidationError("model", model, "must name its provider: PROVIDER/MODEL (like openai/gpt-4.1)")
    body = price_set({"provider": provider, "model": name, "input": input_, "output": output, "cache_read": cache_read,
                      "cache_write": cache_write, "reasoning": reasoning, "effective": effective}, at="price")
    done = _announce(open_home(home), log, [body])
    _report(done, json_)


def _report(done: list[dict[str, Any]], json_: bool, skipped: int = 0) -> None:
    if json_:
        print_json({"appended": done, "unchanged": skipped})
        return
    table(f"price_set events appended: {len(done)}" + (f" ({skipped} unchanged, not appended)" if skipped else ""),
          ["provider", "model", "in force from", "event id"],
          [[d["provider"], d["model"], d["in_force_from"], d["event_id"]] for d in done])
    if any(d["retroactive_refused"] for d in done):
        out.print("note: prices are never retroactive; an effective time in the past applies from now.", markup=False)


def load_entries(file: Path) -> list[PriceSet]:
    """The ``price_set`` of every entry of a price file (JSON, or YAML by its .yaml/.yml name); all checked before
    anything is appended."""
    data = read_bounded(file, limits.MAX_PRICE_FILE_BYTES, field="file", limit_name="MAX_PRICE_FILE_BYTES")
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            import yaml  # imported when used: only `prices load` reads YAML

            doc = yaml.safe_load(data)
        else:
            doc = json.loads(data)
    except Exception as e:  # noqa: BLE001 - any parser error is the file's fault: say which and where
        kind = "YAML" if file.suffix.lower() in (".yaml", ".yml") else "JSON"
        raise ValidationError("file", str(file), f"is not valid {kind}: {e}") from None
    entries = doc.get("prices") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValidationError("file", str(file), "must hold {\"prices\": [ ... ]} with at least one entry",
                              hint="see `tokenledger prices load --help` for the format")
    if len(entries) > limits.MAX_PRICE_BOOK_ENTRIES:
        raise ValidationError("prices", len(entries), f"at most {limits.MAX_PRICE_BOOK_ENTRIES:,} entries per file")
    return [price_set(e, at=f"prices[{i}]") for i, e in enumerate(entries)]


def unchanged(book: PriceBook, body: PriceSet, now: int) -> bool:
    """Whether appending ``body`` would change nothing: the entry in force from its start is the same rates."""
    try:
        current = book.in_force_at(body.provider, body.model, max(body.effective_from_us, now))
    except EconomicsError:
        return False
    return current.price.same_rates(ModelPrice.from_price_set(body))


@prices_app.command("load", epilog="Example: tokenledger prices load prices.yaml")
@guarded
def prices_load(file: Path = typer.Argument(..., help="A JSON or YAML price file (format: `tokenledger prices "
                                                      "--help`, or the module doc of ledger/cli/prices.py)."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Append a price_set for each entry of FILE that differs from the price in force for its model.

    The file: {"prices": [{"provider", "model", "input", "output", "cache_read"?, "cache_write"?, "reasoning"?,
    "effective"?}]}, rates in USD per million tokens as decimal text. Loading it twice appends nothing the
    second time."""
    bodies = load_entries(file)
    h = open_home(home)
    _, book = _book(h, log)
    now = now_us()
    todo = [b for b in bodies if not unchanged(book, b, now)]
    _report(_announce(h, log, todo), json_, skipped=len(bodies) - len(todo))
