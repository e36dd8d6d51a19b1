"""``tokenledger prices list | show | set | load | sync | alias``: the price book the log holds, and the operator's
way to change it.

Every price is a ``price_set`` control event signed by the operator, every model-matching rule a ``price_match``;
processors fold them in log order, and each is in force from max(its declared effective time, its own event time)
— a price is never retroactive, so a replay charges what the live run charged (ledger.economics.pricing). Rates
are typed in USD per million tokens as decimals and stored exactly as integer micro-USD per million tokens: a
rate finer than a micro-dollar is refused, never rounded.

``prices sync`` compares the installed price catalog (genai-prices, ledger.economics.catalog) with the book and
appends what is new or changed, so a second sync appends nothing. ``prices alias`` maps ids the catalog does not
know to a priced model.

``prices load FILE`` reads a JSON or YAML document (format below) and appends only the lines that differ from
the one in force, so loading the same file twice appends nothing the second time::

    {"prices": [{"provider": "anthropic", "model": "claude-haiku-4-5", "input": "1", "output": "5",
                 "cache_read": "0.1", "cache_write": "1.25", "cache_write_1h": "2", "reasoning": null,
                 "service_tier": "", "above_input_tokens": 0, "request_per_k": "0",
                 "effective": "2026-12-01T00:00:00Z"}]}

``cache_read`` and ``cache_write`` default to the input rate, ``cache_write_1h`` to ``cache_write``, ``reasoning``
to the output rate, ``request_per_k`` (USD per thousand calls) to 0, ``service_tier`` to standard (''; or
batch, flex, priority, ...), ``above_input_tokens`` to 0 (the base line; N: the rates of a call with more than N
input tokens), ``effective`` to now; unknown fields are refused (a typo must not silently drop a rate).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import typer

from ledger import limits
from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, open_home, operator_emit, out, print_json, table
from ledger.economics.catalog import already_in_force, catalog_book, summary, sync_plan
from ledger.economics.matching import canonical_rule
from ledger.economics.pricing import PriceBook, PriceInForce, in_force_from_us
from ledger.errors import EconomicsError, ValidationError
from ledger.files import read_bounded
from ledger.sdk.home import Home, resolve_log_url
from ledger.sdk.price_log import Announced, book_of, read_price_sets
from ledger.units import US_PER_S
from ledger.wire.events import PriceMatch, PriceSet
from ledger.wire.timefmt import fmt_time, parse_time

MICROS_PER_USD = 1_000_000
PRICE_FIELDS = ("provider", "model", "input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning",
                "service_tier", "above_input_tokens", "request_per_k", "effective")

prices_app = typer.Typer(no_args_is_help=True, help="The price book on the log: list, show, set, load, sync, alias.",
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
                                                              "cache_write_1h", "reasoning", "request_per_k")
            if entry.get(k) is not None}
    effective = entry.get("effective")
    if effective is not None and not isinstance(effective, (str, int)):
        raise ValidationError(f"{at}.effective", effective, "must be an ISO-8601 time or microseconds")
    effective_us = parse_time(str(effective), f"{at}.effective") if effective is not None else now_us()
    assert effective_us is not None
    tier = entry.get("service_tier") or ""
    if not isinstance(tier, str):
        raise ValidationError(f"{at}.service_tier", tier, "must be text: '' (standard), batch, flex, priority, ...")
    above = entry.get("above_input_tokens") or 0
    if isinstance(above, bool) or not isinstance(above, int):
        raise ValidationError(f"{at}.above_input_tokens", above, "must be a whole number of input tokens")
    try:
        return PriceSet(provider=entry["provider"], model=entry["model"], input_micros_per_mtok=rate["input"],
                        output_micros_per_mtok=rate["output"],
                        cache_read_micros_per_mtok=rate.get("cache_read", rate["input"]),
                        cache_write_micros_per_mtok=rate.get("cache_write", rate["input"]),
                        cache_write_1h_micros_per_mtok=rate.get("cache_write_1h"),
                        reasoning_micros_per_mtok=rate.get("reasoning"), effective_from_us=effective_us,
                        service_tier=tier.lower(), above_input_tokens=above,
                        request_micros_per_k=rate.get("request_per_k", 0), source="operator")
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
    assert p.reasoning is not None and p.cache_write_1h is not None  # set on construction
    row = {"provider": p.provider, "model": p.model, "service_tier": p.service_tier,
           "above_input_tokens": p.above_input_tokens, "input_usd_per_mtok": usd(p.input),
           "output_usd_per_mtok": usd(p.output), "cache_read_usd_per_mtok": usd(p.cache_read),
           "cache_write_usd_per_mtok": usd(p.cache_write), "cache_write_1h_usd_per_mtok": usd(p.cache_write_1h),
           "reasoning_usd_per_mtok": usd(p.reasoning), "request_usd_per_k": usd(p.request_per_k),
           "input_micros_per_mtok": p.input, "output_micros_per_mtok": p.output,
           "cache_read_micros_per_mtok": p.cache_read, "cache_write_micros_per_mtok": p.cache_write,
           "cache_write_1h_micros_per_mtok": p.cache_write_1h, "reasoning_micros_per_mtok": p.reasoning,
           "request_micros_per_k": p.request_per_k, "effective_from": fmt_time(p.effective_from_us),
           "in_force_from": fmt_time(e.in_force_from_us), "in_force_from_us": e.in_force_from_us,
           "source": p.source, "event_id": ids.get(e.seq)}
    if current is not None:
        row["current"] = current
    return row


def _rates(r: dict[str, Any]) -> list[Any]:
    return [r["input_usd_per_mtok"], r["output_usd_per_mtok"], r["cache_read_usd_per_mtok"],
            r["cache_write_usd_per_mtok"], r["cache_write_1h_usd_per_mtok"]]


def _tier(r: dict[str, Any]) -> str:
    """The service tier and prompt-size tier of a row, for a table: '' for the standard base line."""
    parts = [r["service_tier"]] if r["service_tier"] else []
    if r["above_input_tokens"]:
        parts.append(f">{r['above_input_tokens']:,} in")
    return " ".join(parts)


RATE_COLUMNS = ["input $/MTok", "output", "cache read", "cache write", "write 1h"]


def _lines_in_force(book: PriceBook, at: int) -> list[PriceInForce]:
    """The entry in force at ``at`` of every line (model, service tier, prompt-size tier) that has one."""
    out = []
    keys = sorted({e.price.key for e in book.in_force_entries()})
    for prov, mod, tier, above in keys:
        e = book.line_at(prov, mod, at, service_tier=tier, above_input_tokens=above)
        if e is not None:
            out.append(e)
    return out


@prices_app.command("list", epilog="Example: tokenledger prices list --provider openai --as-of 2026-11-01T00:00:00Z")
@guarded
def prices_list(provider: str | None = typer.Option(None, help="Only this provider."),
                model: str | None = typer.Option(None, help="Only models whose name contains this text."),
                as_of: str | None = typer.Option(None, "--as-of", help="The prices in force at this time (ISO-8601 "
                                                                       "or microseconds; default: now)."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """The price in force for every model the log prices: one row per provider, model, service tier and
    prompt-size tier."""
    at = parse_time(as_of, "as_of") if as_of is not None else now_us()
    assert at is not None
    announced, book = _book(open_home(home), log)
    ids = {i + 1: a.event_id for i, a in enumerate(announced)}
    rows = [_row(e, ids) for e in _lines_in_force(book, at)
            if (provider is None or e.price.provider == provider) and (model is None or model in e.price.model)]
    if json_:
        print_json(rows)
        return
    table(f"prices in force at {fmt_time(at)} ({len({(r['provider'], r['model']) for r in rows})} models)",
          ["provider", "model", "tier", *RATE_COLUMNS, "in force from"],
          [[r["provider"], r["model"], _tier(r), *_rates(r), r["in_force_from"]] for r in rows])


@prices_app.command("show", epilog="Example: tokenledger prices show anthropic/claude-haiku-4-5-20251001")
@guarded
def prices_show(model: str = typer.Argument(..., help="PROVIDER/MODEL as a call reports it (a dated or prefixed id "
                                                      "is resolved by the book's match rules), or MODEL for every "
                                                      "provider that has it."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Which priced model an id is (and by which rule), every price the log has set for it, oldest first, and
    which ones are in force now."""
    provider, name = split_model(model)
    announced, book = _book(open_home(home), log)
    ids = {i + 1: a.event_id for i, a in enumerate(announced)}
    now = now_us()
    resolved = None
    if provider is not None:
        with contextlib.suppress(EconomicsError):
            resolved = book.resolve(provider, name, now)
    if resolved is not None:
        entries = [e for e in book.in_force_entries() if (e.price.provider, e.price.model) == (resolved.provider,
                                                                                              resolved.model)]
    else:
        entries = [e for e in book.in_force_entries()
                   if e.price.model == name and (provider is None or e.price.provider == provider)]
    if not entries:
        raise ValidationError("model", model, "has no price on the log and no match rule maps it to one",
                              hint="list the priced models: tokenledger prices list; add one: tokenledger prices set, "
                                   "or map it: tokenledger prices alias")
    current = {e.seq for e in _lines_in_force(book, now)}
    rows = [_row(e, ids, current=e.seq in current) for e in entries]
    via = None if resolved is None else {"provider": resolved.provider, "model": resolved.model, "via": resolved.via,
                                         "rule_event_id": ids.get(resolved.rule_seq or 0)}
    if json_:
        print_json({"resolved": via, "prices": rows})
        return
    if resolved is not None and via is not None and (resolved.provider, resolved.model) != (provider, name):
        out.print(f"{model} is priced as {resolved.provider}/{resolved.model} ({resolved.via}"
                  + (f", rule {via['rule_event_id']})" if via["rule_event_id"] else ")"), markup=False)
    table(f"prices of {model}", ["provider", "model", "tier", *RATE_COLUMNS, "in force from", "effective (declared)",
                                 "now", "source", "event id"],
          [[r["provider"], r["model"], _tier(r), *_rates(r), r["in_force_from"], r["effective_from"],
            "yes" if r["current"] else "", r["source"], r["event_id"]] for r in rows])


def _announce(h: Home, log: str | None, bodies: Sequence[PriceSet | PriceMatch]) -> list[dict[str, Any]]:
    ids = operator_emit(h, log, list(bodies)) if bodies else []
    appended_us = now_us()
    return [{"event_id": eid, "kind": b.KIND, "provider": b.provider, **_what(b),
             "effective_from": fmt_time(b.effective_from_us),
             # what the rule makes of it: never before the event's own time (stamped just now)
             "in_force_from": fmt_time(in_force_from_us(b.effective_from_us, appended_us)),
             "retroactive_refused": b.effective_from_us < appended_us - US_PER_S}
            for eid, b in zip(ids, bodies, strict=True)]


def _what(b: PriceSet | PriceMatch) -> dict[str, str]:
    """The model and tier (a price line) or the target and clause (a rule), for the report of what was appended."""
    if isinstance(b, PriceSet):
        above = f" >{b.above_input_tokens:,} in" if b.above_input_tokens else ""
        return {"model": b.model, "tier": (b.service_tier + above).strip()}
    state = "" if b.active else "withdrawn: "
    return {"model": f"{b.target_provider}/{b.target_model or '(the id as reported)'}", "tier": state + b.rule}


@prices_app.command("set", epilog="Example: tokenledger prices set anthropic/claude-haiku-4-5 --input 1 --output 5 "
                                  "--cache-read 0.1 --cache-write 1.25")
@guarded
def prices_set(model: str = typer.Argument(..., help="PROVIDER/MODEL."),
               input_: str = typer.Option(..., "--input", help="USD per million input tokens (like 3 or 0.25)."),
               output: str = typer.Option(..., help="USD per million output tokens."),
               cache_read: str | None = typer.Option(None, help="USD per million cache-read tokens (default: input)."),
               cache_write: str | None = typer.Option(None, help="USD per million cache-write tokens, 5-minute "
                                                                 "writes (default: input)."),
               cache_write_1h: str | None = typer.Option(None, "--cache-write-1h", help="USD per million 1-hour "
                                                                                      "cache-write tokens (default: "
                                                                                      "cache write)."),
               reasoning: str | None = typer.Option(None, help="USD per million reasoning tokens (default: output)."),
               per_k_requests: str | None = typer.Option(None, "--per-k-requests", help="USD per thousand calls "
                                                                                      "(default: 0)."),
               service_tier: str = typer.Option("", "--service-tier", help="The service tier these rates are for: "
                                                                           "batch, flex, priority, ... (default: "
                                                                           "standard)."),
               above: int = typer.Option(0, "--above-input-tokens", help="A prompt-size tier: these rates apply to a "
                                                                         "whole call with more input tokens than "
                                                                         "this (default 0: the base line)."),
               effective: str | None = typer.Option(None, help="When it takes effect (ISO-8601; default: now). A past "
                                                               "time is not retroactive: in force from now."),
               home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Append the operator's price_set for one model (one service tier and prompt-size tier of it)."""
    provider, name = split_model(model)
    if provider is None:
        raise ValidationError("model", model, "must name its provider: PROVIDER/MODEL (like openai/gpt-4.1)")
    body = price_set({"provider": provider, "model": name, "input": input_, "output": output, "cache_read": cache_read,
                      "cache_write": cache_write, "cache_write_1h": cache_write_1h, "reasoning": reasoning,
                      "request_per_k": per_k_requests, "service_tier": service_tier, "above_input_tokens": above,
                      "effective": effective}, at="price")
    done = _announce(open_home(home), log, [body])
    _report(done, json_)


def _report(done: list[dict[str, Any]], json_: bool, skipped: int = 0, title: str = "price events appended") -> None:
    if json_:
        print_json({"appended": done, "unchanged": skipped})
        return
    table(f"{title}: {len(done)}" + (f" ({skipped:,} unchanged, not appended)" if skipped else ""),
          ["kind", "provider", "model", "tier / rule", "in force from", "event id"],
          [[d["kind"], d["provider"], d["model"], d["tier"], d["in_force_from"], d["event_id"]] for d in done])
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


@prices_app.command("load", epilog="Example: tokenledger prices load prices.yaml")
@guarded
def prices_load(file: Path = typer.Argument(..., help="A JSON or YAML price file (format: `tokenledger prices "
                                                      "--help`, or the module doc of ledger/cli/prices.py)."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Append a price_set for each entry of FILE that differs from the price in force for its line.

    The file: {"prices": [{"provider", "model", "input", "output", "cache_read"?, "cache_write"?, "cache_write_1h"?,
    "reasoning"?, "request_per_k"?, "service_tier"?, "above_input_tokens"?, "effective"?}]}, rates in USD per
    million tokens (per thousand calls for request_per_k) as decimal text. Loading it twice appends nothing the
    second time."""
    bodies = load_entries(file)
    h = open_home(home)
    _, book = _book(h, log)
    now = now_us()
    todo = [b for b in bodies if not already_in_force(book, b, now)]
    _report(_announce(h, log, todo), json_, skipped=len(bodies) - len(todo))


@prices_app.command("sync", epilog="Example: tokenledger prices sync --dry-run   |   tokenledger prices sync "
                                   "--provider openrouter")
@guarded
def prices_sync(provider: list[str] = typer.Option(None, "--provider", help="A catalog provider to compare (repeat "
                                                                             "for several; 'all' for every one). "
                                                                             "Default: the providers init seeds."),
                dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be appended; append nothing."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Compare the installed price catalog (genai-prices, pinned) with the book on the log and append, signed by
    the operator, what is new or changed: prices in force now or announced for later (the catalog's effective
    dates kept; never retroactive), model-matching rules, and the withdrawal of rules the catalog dropped. A
    second sync appends nothing."""
    cat = catalog_book(provider or None)
    h = open_home(home)
    _, book = _book(h, log)
    plan = sync_plan(book, cat, now_us())
    info = summary(cat)
    if dry_run:
        rows = [{"kind": b.KIND, "provider": b.provider, **_what(b), "effective_from": fmt_time(b.effective_from_us)}
                for b in plan]
        if json_:
            print_json({"catalog": info, "would_append": rows})
            return
        table(f"{info['source']}: would append {len(rows)} price events (dry run)",
              ["kind", "provider", "model", "tier / rule", "effective (declared)"],
              [[r["kind"], r["provider"], r["model"], r["tier"], r["effective_from"]] for r in rows])
        return
    done = _announce(h, log, plan)
    if json_:
        print_json({"catalog": info, "appended": done})
        return
    _report(done, False, skipped=len(cat.prices) + len(cat.matches) - len(done),
            title=f"{info['source']}: price events appended")
    if cat.unmodelled or cat.skipped:
        out.print(f"note: {len({(p, m) for p, m, _ in cat.unmodelled})} models also have rates this ledger does not "
                  f"meter (audio, images, searches; their token parts are priced) and {len(cat.skipped)} are priced "
                  "only per character, image or second (not synced).", markup=False)


def pattern_rule(pattern: str, *, regex: bool = False) -> str:
    """A clause for an alias pattern: ``--regex`` as given; ``x*`` starts with, ``*x`` ends with, ``*x*`` contains,
    a ``*`` elsewhere any text there; no ``*``: equals. Model ids are matched lower-cased."""
    if not pattern or len(pattern) > limits.MAX_ID_CHARS:
        raise ValidationError("pattern", pattern, f"must be 1 to {limits.MAX_ID_CHARS} characters")
    if regex:
        return canonical_rule({"regex": pattern})
    text = pattern.lower()
    inner = text.strip("*")
    if "*" not in text:
        return canonical_rule({"equals": text})
    if "*" not in inner and inner:
        if text.startswith("*") and text.endswith("*"):
            return canonical_rule({"contains": inner})
        return canonical_rule({"ends_with": inner} if text.startswith("*") else {"starts_with": inner})
    return canonical_rule({"regex": "^" + ".*".join(re.escape(part) for part in text.split("*")) + "$"})


@prices_app.command("alias", epilog="Example: tokenledger prices alias 'my-proxy-sonnet*' anthropic/claude-sonnet-4-5")
@guarded
def prices_alias(pattern: str = typer.Argument(..., help="Model ids to map: 'x' (exactly), 'x*', '*x', '*x*' or any "
                                                         "'*' pattern; with --regex a regular expression. Matched "
                                                         "lower-cased."),
                 model: str = typer.Argument(..., help="PROVIDER/MODEL to price them as (it must have a price)."),
                 provider: str = typer.Option("*", "--provider", help="Only calls reporting this provider (default: "
                                                                      "any)."),
                 regex: bool = typer.Option(False, "--regex", help="PATTERN is a regular expression."),
                 rank: int = typer.Option(-1, help="Lower applies first; the catalog's rules rank 0 and up, so the "
                                                   "default -1 overrides them."),
                 remove: bool = typer.Option(False, "--remove", help="Withdraw this alias instead."),
                 effective: str | None = typer.Option(None, help="When it takes effect (ISO-8601; default: now)."),
                 home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Append a price_match rule: calls whose model id PATTERN matches are priced as MODEL. `prices show
    PROVIDER/ID` tells which model an id resolves to, and by which rule."""
    target_provider, target_model = split_model(model)
    if target_provider is None:
        raise ValidationError("model", model, "must name its provider: PROVIDER/MODEL (like "
                              "anthropic/claude-haiku-4-5)")
    rule = pattern_rule(pattern, regex=regex)
    at = parse_time(effective, "effective") if effective is not None else now_us()
    assert at is not None
    h = open_home(home)
    _, book = _book(h, log)
    if not remove and (target_provider, target_model) not in set(book.models()):
        raise ValidationError("model", model, "has no price on the log: an alias to it would leave calls unpriced",
                              hint=f"price it first: tokenledger prices set {model} --input ... --output ...")
    body = PriceMatch(provider=provider, rule=rule, target_provider=target_provider, target_model=target_model,
                      rank=rank, effective_from_us=at, active=not remove, source="operator")
    if already_in_force(book, body, now_us()):
        _report([], json_, skipped=1, title="price_match events appended")
        return
    _report(_announce(h, log, [body]), json_, title="price_match events appended")
