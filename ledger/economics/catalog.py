"""The price catalog (genai-prices) as ledger control events: the source of prices, never the judge of one.

``genai-prices`` (pydantic/genai-prices on PyPI; pinned in pyproject.toml) is a maintained catalog of LLM
prices: per provider, models with match logic, price history, prompt-size tiers, cache and batch/flex/priority
prices. ``catalog_book`` turns the installed snapshot into what the log can carry:

* one ``price_set`` per (provider, model, service tier, prompt-size tier, price change): token rates converted
  exactly to integer micro-USD per million tokens (a catalog rate finer than that is rounded half-to-even and
  counted in ``CatalogBook.rounded``), ``effective_from_us`` from the catalog's start date (midnight UTC), the
  catalog name and version in ``source``;
* one ``price_match`` per model carrying the catalog's own match clause (``ledger.economics.matching``), ranked
  in catalog order (the catalog takes the first model that matches; so does the book, lowest rank first);
* a provider's fallback providers (Google and Azure serve Anthropic's and OpenAI's models) as rules naming the
  fallback provider and no model, behind the provider's own models; and the names gateways and SDKs use for a
  provider (``bedrock``, ``vertex_ai``, ``xai``, ...) that the catalog's provider matching maps to it.

What the ledger does not model is listed, never silently priced as $0: rates per audio second, image, page or
web search (``CatalogBook.unmodelled``: those calls' token parts are priced, the rest is not), and
time-of-day discounts (``skipped``; the standard price stays in force). Processors never read the catalog:
``tokenledger init`` and ``tokenledger prices sync`` append these events, and the log alone decides every price,
so a replay is exact whatever catalog version is installed later.

Pure apart from reading the installed package's data (imported on first use; import-linter keeps the
catalog out of every other module).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal
from importlib.metadata import version
from typing import Any

from ledger.economics.matching import canonical_rule
from ledger.economics.pricing import ModelPrice, PriceBook
from ledger.errors import ValidationError
from ledger.limits import MAX_MATCH_RANK
from ledger.wire.events import PriceMatch, PriceSet

CATALOG_PACKAGE = "genai-prices"
# the providers `init` seeds and `prices sync` compares by default: the model labs and the clouds that resell
# them; every other catalog provider is one `prices sync --provider P` away
DEFAULT_PROVIDERS = ("anthropic", "openai", "google", "aws", "azure", "mistral", "deepseek", "x-ai", "cohere", "groq")
# names gateways and SDKs report for a provider; each is kept only when the catalog's own provider matching maps
# it to that provider (so the catalog, not this list, decides)
PROVIDER_ALIAS_CANDIDATES = ("bedrock", "aws-bedrock", "amazon-bedrock", "amazon_bedrock", "vertex", "vertex_ai",
                             "google-vertex", "google_vertex", "gemini", "google-gla", "google-genai",
                             "google-ai-studio", "azure_openai", "azure-openai", "xai", "mistralai")
FALLBACK_RANK = MAX_MATCH_RANK // 2  # a provider's fallback rules come after every one of its own models
# catalog price keys -> our rate fields (USD per million tokens; requests_kcount is USD per thousand calls)
RATE_KEYS = {"input_mtok": "input", "output_mtok": "output", "cache_read_mtok": "cache_read",
             "cache_write_mtok": "cache_write", "cache_write_1h_mtok": "cache_write_1h",
             "output_reasoning_mtok": "reasoning", "requests_kcount": "request_per_k"}
# catalog request-context values -> our service tier ('' = standard)
TIER_OF = {("processing", "batch"): "batch", ("service_tier", "flex"): "flex",
           ("service_tier", "priority"): "priority", ("service_tier", "fast"): "fast", ("speed", "fast"): "fast"}
MICROS = Decimal(1_000_000)


def catalog_version() -> str:
    """``genai-prices <version>``: what every event this module makes records in ``source``."""
    return f"{CATALOG_PACKAGE} {version(CATALOG_PACKAGE)}"


@dataclass
class CatalogBook:
    """What the installed catalog says, as control events, and what it says that the ledger cannot carry."""

    source: str
    prices: list[PriceSet] = field(default_factory=list)
    matches: list[PriceMatch] = field(default_factory=list)
    unmodelled: list[tuple[str, str, str]] = field(default_factory=list)  # (provider, model, price key)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (provider, model, why)
    rounded: list[tuple[str, str, str]] = field(default_factory=list)  # (provider, model, field)


def _clause(c: Any) -> Any:
    """The catalog's match clause as our clause JSON (the same language, ledger.economics.matching)."""
    name = type(c).__name__
    if name == "ClauseOr":
        return {"or": [_clause(t) for t in c.or_]}
    if name == "ClauseAnd":
        return {"and": [_clause(t) for t in c.and_]}
    for op in ("equals", "starts_with", "ends_with", "contains", "regex"):
        if name == "Clause" + "".join(w.title() for w in op.split("_")):
            return {op: getattr(c, op)}
    raise ValidationError("match", name, "is a catalog clause this ledger does not know",
                          hint="upgrade tokenledger, or pin the catalog version pyproject.toml names")


def _date_us(d: dt.date) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 1_000_000


def _history(model: Any) -> list[tuple[int, Any]]:
    """(effective_from_us, ModelPrice) of every price the model has had, oldest first. The catalog uses its
    first price when no constraint holds, so that one is in force from the beginning."""
    prices = model.prices
    if not isinstance(prices, list):
        return [(0, prices)]
    out: list[tuple[int, Any]] = []
    for i, cp in enumerate(prices):
        kind = type(cp.constraint).__name__
        if i == 0 or cp.constraint is None:
            out.append((0, cp.prices))
        elif kind == "StartDateConstraint":
            out.append((_date_us(cp.constraint.start_date), cp.prices))
        # TimeOfDateConstraint (off-peak discounts): not modelled, the standard price stays (see module doc)
    return sorted(out, key=lambda x: x[0])


def _values(mp: Any) -> dict[str, Any]:
    return {k: v for k, v in mp.__dict__.items() if not k.startswith("_") and v is not None}


def _at_tier(value: Any, above: int) -> Decimal:
    """The rate of one price field for a call with more than ``above`` input tokens (the catalog's tiers are
    cliffs: past a tier's start, the whole call pays the tier's rate)."""
    if not hasattr(value, "tiers"):
        return Decimal(value)
    rate = value.base
    for tier in sorted(value.tiers, key=lambda t: t.start):
        if tier.start <= above and above > 0:
            rate = tier.price
    return Decimal(rate)


def _micros(usd: Decimal, where: tuple[str, str, str], book: CatalogBook) -> int:
    exact = usd * MICROS
    whole = exact.to_integral_value(rounding=ROUND_HALF_EVEN)
    if whole != exact:
        book.rounded.append(where)
    return int(whole)


def _variants(model: Any) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Per service tier, its price variants as (start, prices), in the catalog's order (the first active one wins
    each price key, as the catalog resolves them). Variants under time-of-day constraints are not modelled."""
    out: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for v in model.price_variants or ():
        if len(v.when) != 1 or (tier := TIER_OF.get(next(iter(v.when.items())))) is None:
            continue
        kind = type(v.constraint).__name__
        if v.constraint is not None and kind != "StartDateConstraint":
            continue
        start = 0 if v.constraint is None else _date_us(v.constraint.start_date)
        out.setdefault(tier, []).append((start, _values(v.prices)))
    return out


def _lines(book: CatalogBook, provider: str, model: Any, rank: int) -> None:
    history = _history(model)
    for _, base in history:
        if "input_mtok" not in _values(base):
            book.skipped.append((provider, model.id, "no input-token rate (priced per character, image or second)"))
            return
        for key in sorted(set(_values(base)) - set(RATE_KEYS)):
            if (provider, model.id, key) not in book.unmodelled:
                book.unmodelled.append((provider, model.id, key))
    for tier, variants in [("", []), *sorted(_variants(model).items())]:
        # every time the tier's price can change: a base price change or a variant starting
        points = sorted({t for t, _ in history} | {t for t, _ in variants})
        previous: dict[str, Any] | None = None
        for t in points:
            values = dict(_values(next(mp for start, mp in reversed(history) if start <= t)))
            active = [vals for start, vals in variants if start <= t]
            if tier and not active:
                continue  # the tier has no price of its own yet: calls in it pay the standard line
            overrides: dict[str, Any] = {}
            for vals in active:
                for key, value in vals.items():
                    overrides.setdefault(key, value)
            values.update(overrides)
            if values == previous:
                continue
            previous = values
            thresholds = sorted({x.start for v in values.values() if hasattr(v, "tiers") for x in v.tiers})
            for above in (0, *thresholds):
                rates = {ours: _micros(_at_tier(values[theirs], above), (provider, model.id, ours), book)
                         for theirs, ours in RATE_KEYS.items() if theirs in values}
                book.prices.append(PriceSet(
                    provider=provider, model=model.id, input_micros_per_mtok=rates["input"],
                    output_micros_per_mtok=rates.get("output", 0),
                    # a catalog with no cache rate bills those tokens as input (they stay in its input leaf)
                    cache_read_micros_per_mtok=rates.get("cache_read", rates["input"]),
                    cache_write_micros_per_mtok=rates.get("cache_write", rates["input"]),
                    reasoning_micros_per_mtok=rates.get("reasoning"),
                    cache_write_1h_micros_per_mtok=rates.get("cache_write_1h"),
                    request_micros_per_k=rates.get("request_per_k", 0), effective_from_us=t,
                    service_tier=tier, above_input_tokens=above, source=book.source))
    book.matches.append(PriceMatch(provider=provider, rule=canonical_rule(_clause(model.match)),
                                   target_provider=provider, target_model=model.id, rank=rank, source=book.source))


def catalog_book(providers: Sequence[str] | None = None) -> CatalogBook:
    """The installed catalog's prices and match rules for ``providers`` (default ``DEFAULT_PROVIDERS``; ``"all"``
    in the list: every provider the catalog has), as control events in a fixed order."""
    from genai_prices.data import providers as catalog  # imported when used: `init` and `prices sync` only
    from genai_prices.data_snapshot import find_provider_by_id

    by_id = {p.id: p for p in catalog}
    wanted = list(DEFAULT_PROVIDERS if providers is None else providers)
    if "all" in wanted:
        wanted = sorted(by_id)
    unknown = [p for p in wanted if p not in by_id]
    if unknown:
        raise ValidationError("provider", unknown[0], "is not in the price catalog",
                              hint=f"catalog providers: {', '.join(sorted(by_id))}")
    book = CatalogBook(source=catalog_version())
    for pid in wanted:
        p = by_id[pid]
        for rank, model in enumerate(p.models):
            _lines(book, pid, model, rank)
        for j, fallback in enumerate(p.fallback_model_providers or ()):
            fb = by_id.get(fallback)
            if fb is None:
                continue
            # only ids the fallback provider would claim go to it, so the next fallback still gets its turn
            rule = _clause(fb.model_match) if fb.model_match is not None else {"starts_with": ""}
            book.matches.append(PriceMatch(provider=pid, rule=canonical_rule(rule), target_provider=fallback,
                                           target_model="", rank=FALLBACK_RANK + j, source=book.source))
    for alias in PROVIDER_ALIAS_CANDIDATES:
        target = find_provider_by_id(catalog, alias)
        if target is not None and target.id in wanted and alias != target.id:
            book.matches.append(PriceMatch(provider=alias, rule=canonical_rule({"starts_with": ""}),
                                           target_provider=target.id, target_model="", rank=0, source=book.source))
    return book


def summary(book: CatalogBook) -> dict[str, Any]:
    """Counts for a human: lines, rules, and what the ledger could not carry."""
    return {"source": book.source, "price_lines": len(book.prices), "match_rules": len(book.matches),
            "models": len({(p.provider, p.model) for p in book.prices}), "unmodelled_rates": len(book.unmodelled),
            "skipped": len(book.skipped), "rounded_rates": len(book.rounded)}


def events_in_order(book: CatalogBook) -> Iterable[PriceSet | PriceMatch]:
    """Prices first (a rule may name any of them), then the rules."""
    yield from book.prices
    yield from book.matches


def already_in_force(book: PriceBook, body: PriceSet | PriceMatch, now_us: int) -> bool:
    """Whether appending ``body`` would change nothing: the same line (or rule) in force from its start
    (``max(effective, now)``) already has the same rates (or target, rank and state)."""
    at = max(body.effective_from_us, now_us)
    if isinstance(body, PriceMatch):
        rule = book.rule_at(body.provider, body.rule, at)
        if rule is None:
            return not body.active  # withdrawing a rule the book does not have changes nothing
        b = rule.body
        return (b.target_provider, b.target_model, b.rank, b.active) == (body.target_provider, body.target_model,
                                                                         body.rank, body.active)
    current = book.line_at(body.provider, body.model, at, service_tier=body.service_tier,
                           above_input_tokens=body.above_input_tokens)
    return current is not None and current.price.same_rates(ModelPrice.from_price_set(body))


def sync_plan(book: PriceBook, catalog: CatalogBook, now_us: int) -> list[PriceSet | PriceMatch]:
    """What ``tokenledger prices sync`` appends so the book says what the catalog says, and nothing more:

    * per line (provider, model, service tier, prompt-size tier), the catalog's price in force now and each
      announced future one, where the book's line differs (the catalog's effective date is kept; the rule in
      ``ledger.economics.pricing`` puts a past one in force from the sync, never retroactively);
    * every catalog rule the book does not have as such (new, or another target or rank);
    * the withdrawal of every rule an earlier sync of these providers appended that the catalog no longer has.
    Applied to the book it was computed from, a second plan is empty."""
    lines: dict[tuple[str, str, str, int], list[PriceSet]] = {}
    for body in catalog.prices:
        lines.setdefault((body.provider, body.model, body.service_tier, body.above_input_tokens), []).append(body)
    plan: list[PriceSet | PriceMatch] = []
    for history in lines.values():
        history.sort(key=lambda b: b.effective_from_us)
        past = [b for b in history if b.effective_from_us <= now_us]
        plan.extend(body for body in past[-1:] + [b for b in history if b.effective_from_us > now_us]
                    if not already_in_force(book, body, now_us))
    wanted = {(m.provider, m.rule) for m in catalog.matches}
    plan += [m for m in catalog.matches if not already_in_force(book, m, now_us)]
    providers = {m.provider for m in catalog.matches}
    for rule in book.rules():
        b = rule.body
        current = book.rule_at(b.provider, b.rule, now_us)
        if (current is rule and b.active and b.source.startswith(CATALOG_PACKAGE) and b.provider in providers
                and (b.provider, b.rule) not in wanted):
            plan.append(replace(b, active=False, effective_from_us=0, source=catalog.source))
    return plan


__all__ = ["DEFAULT_PROVIDERS", "CatalogBook", "already_in_force", "catalog_book", "catalog_version",
           "events_in_order", "summary", "sync_plan"]
