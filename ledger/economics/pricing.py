"""The price book: what one million tokens of each kind cost, per provider and model, over event time.

A ``ModelPrice`` is one entry: provider, model, rates in micro-USD per million tokens for input,
output, cache read, cache write and reasoning, and the time it declares itself effective from
(``effective_from_us``). A ``PriceBook`` holds entries and answers "which price was in force for this
model at this event time" (``price_at``). This module is THE price-in-force rule: the allocations and
budgets processors, ``tokenledger reprice`` and ``tokenledger report`` all ask a ``PriceBook``.

The rule (one, everywhere):

* **Prices come from the log.** A book is built by applying ``price_set`` control events in log order
  (``with_price_set``). The shipped default book enters only as such events (``tokenledger init``
  appends them, see ``ledger.economics.price_events``); a processor never falls back to a Python table,
  so a model the log never priced is unpriced, not silently priced.
* **A price never applies before its own event time.** A ``price_set`` is in force from
  ``max(effective_from_us, the price_set event's own event time)`` (``in_force_from_us``). Why: a replay
  reads every control event before the first data record, while the live run read a price only once it
  was on the log; if a back-dated price applied from its declared time, the replay would price calls made
  before the correction was recorded with the correction, the live run with the old price, and the
  replay would not equal the live state (the ledger's core promise). Clamping to the event's own time
  makes the price in force at a call's time the same in both (for event times that do not run ahead of
  the log; trusting event times is a separate rule). A back-dated correction therefore prices only what
  comes after it was recorded; its declared time stays visible (``PriceInForce.effective_from_us``), and
  a what-if over the past is ``tokenledger reprice``.
* **Lookup.** For one model, the entry with the latest in-force start at or before the event time
  applies; equal starts: the later one on the log wins. Pricing thus depends on the event's own time and
  the log order, never on when or in which batches it is processed.

Entries given directly (``PriceBook(entries)``, ``with_entry``, the shipped data file) have no event:
they are in force from their declared time, and two different ones for one (model, instant) are refused
(they have no log order to decide between them). They serve the calculators (``tokenledger econ``) and
the conversion of the shipped book into control events, never a processor's state.

Token partition (the rule most cost trackers get wrong): cache-read and cache-write tokens are
**parts of** the input total, and reasoning tokens are **part of** the output total (as OpenAI and
Anthropic report them; a Gemini importer adds its thought tokens into output first). So a call with
input_tokens=1000 of which cache_read=800 is charged 200 at the input rate and 800 at the cache-read
rate, never 1000 + 800.

Invariants: a book is never changed in place (``with_entry``/``with_price_set`` return a new one); it
holds at most ``MAX_PRICE_BOOK_ENTRIES``; the cost breakdown's total is the sum of its rounded parts
(rule in ``ledger.economics.money``).
Never: price an unknown model, or an event before the model's first entry is in force, as $0; that is an
``EconomicsError`` with code ``unknown_model`` and the provider, model and event time as evidence.
The only I/O is ``default_price_book`` reading the shipped data file.
"""

from __future__ import annotations

import bisect
import functools
import importlib.resources
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger import limits
from ledger.economics.matching import Clause, canonical_rule, dashed_date, parse_clause
from ledger.economics.money import (
    check_event_time_us,
    check_rate,
    check_result_micros,
    check_tokens,
    checked_cost_micros,
    parse_usd,
)
from ledger.errors import EconomicsError, RejectCode, ValidationError
from ledger.wire.events import PriceMatch, PriceSet

DEFAULT_PRICES_RESOURCE = "data/default_prices.json"  # inside the ``ledger`` package
PRICE_BOOK_FORMAT = "tokenledger.price_book.v1"

_RATE_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning", "cache_write_1h", "request_per_k")
STANDARD_TIER = ""  # the service tier of a line that names none: what a call reporting none (or an unpriced one) pays


def _check_name(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, value, f"must be a string, got {type(value).__name__}")
    if not value or value != value.strip():
        raise ValidationError(field, value, "must be non-empty, without surrounding spaces")
    if len(value) > limits.MAX_ID_CHARS:
        raise ValidationError(field, value, f"must be at most {limits.MAX_ID_CHARS} characters")
    return value


@dataclass(frozen=True, kw_only=True)
class ModelPrice:
    """One price-book line. Every token rate is an int of micro-USD per million tokens; ``request_per_k`` is
    micro-USD per thousand calls.

    A model may have several lines: one per ``service_tier`` ('' = standard; 'batch', 'flex', 'priority', ...)
    and per prompt-size tier (``above_input_tokens``: 0 = the base line; N = the rates of a call whose
    input_tokens exceed N). ``reasoning`` left as None means "billed like output" and ``cache_write_1h`` None
    "billed like cache_write"; both are set on construction, so afterwards every rate is an int.
    """

    provider: str
    model: str
    input: int
    output: int
    cache_read: int
    cache_write: int
    reasoning: int | None = None
    effective_from_us: int = 0
    service_tier: str = STANDARD_TIER
    above_input_tokens: int = 0
    cache_write_1h: int | None = None
    request_per_k: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        _check_name("provider", self.provider)
        _check_name("model", self.model)
        if self.reasoning is None:
            object.__setattr__(self, "reasoning", self.output)  # providers bill reasoning as output
        if self.cache_write_1h is None:
            object.__setattr__(self, "cache_write_1h", self.cache_write)
        for name in _RATE_FIELDS:
            check_rate(name, getattr(self, name))
        check_event_time_us("effective_from_us", self.effective_from_us)
        if self.service_tier != STANDARD_TIER:
            _check_name("service_tier", self.service_tier)
        check_tokens("above_input_tokens", self.above_input_tokens)

    @classmethod
    def from_price_set(cls, body: PriceSet) -> ModelPrice:
        """The line a ``price_set`` control event puts in force."""
        if not isinstance(body, PriceSet):
            raise ValidationError("body", body, "must be a PriceSet event body")
        return cls(provider=body.provider, model=body.model, input=body.input_micros_per_mtok,
                   output=body.output_micros_per_mtok, cache_read=body.cache_read_micros_per_mtok,
                   cache_write=body.cache_write_micros_per_mtok, reasoning=body.reasoning_micros_per_mtok,
                   effective_from_us=body.effective_from_us, service_tier=body.service_tier,
                   above_input_tokens=body.above_input_tokens, cache_write_1h=body.cache_write_1h_micros_per_mtok,
                   request_per_k=body.request_micros_per_k, source=body.source)

    @property
    def key(self) -> tuple[str, str, str, int]:
        """(provider, model, service tier, prompt-size tier): the line's timeline in a book."""
        return (self.provider, self.model, self.service_tier, self.above_input_tokens)

    def same_rates(self, other: ModelPrice) -> bool:
        return all(getattr(self, name) == getattr(other, name) for name in _RATE_FIELDS)


def in_force_from_us(effective_from_us: int, event_time_us: int) -> int:
    """When a ``price_set`` declaring ``effective_from_us``, carried by an event at ``event_time_us``, starts
    to apply: never before its own event time (see the module docstring for why)."""
    return max(check_event_time_us("effective_from_us", effective_from_us),
               check_event_time_us("event_time_us", event_time_us))


@dataclass(frozen=True, kw_only=True)
class PriceInForce:
    """One entry of a book with when it applies.

    ``event_time_us`` is the time of the ``price_set`` event that carried it (None for an entry given
    directly); ``in_force_from_us`` is its start under the rule; ``seq`` is its place among the book's
    applied ``price_set`` events (1, 2, ...; 0 for an entry given directly): at equal starts the higher
    ``seq`` wins.
    """

    price: ModelPrice
    in_force_from_us: int
    event_time_us: int | None
    seq: int
    event_id: str | None = None  # the price_set event's id, when the book was built from the log

    @property
    def effective_from_us(self) -> int:
        """The declared effective time (kept for the record; the entry applies from ``in_force_from_us``)."""
        return self.price.effective_from_us

    def row(self) -> dict[str, Any]:
        """The entry as a processor's price-view row (the columns ``price_book_from_rows`` reads back)."""
        p = self.price
        return {"provider": p.provider, "model": p.model, "input_micros_per_mtok": p.input,
                "output_micros_per_mtok": p.output, "cache_read_micros_per_mtok": p.cache_read,
                "cache_write_micros_per_mtok": p.cache_write, "reasoning_micros_per_mtok": p.reasoning,
                "effective_from_us": p.effective_from_us, "announced_us": self.event_time_us,
                "in_force_from_us": self.in_force_from_us, "seq": self.seq, "service_tier": p.service_tier,
                "above_input_tokens": p.above_input_tokens, "cache_write_1h_micros_per_mtok": p.cache_write_1h,
                "request_micros_per_k": p.request_per_k, "source": p.source, "event_id": self.event_id}


# The columns of ``PriceInForce.row()`` as (name, SQL type, meaning): every processor that keeps a price
# view (allocations, budgets) declares it with these, so one rule has one record of it and
# ``price_book_from_rows`` reads any of them back. A test holds them equal to ``row()``'s keys.
PRICE_ROW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("provider", "VARCHAR", "provider"),
    ("model", "VARCHAR", "model"),
    ("input_micros_per_mtok", "BIGINT", "input rate, micro-USD per million tokens"),
    ("output_micros_per_mtok", "BIGINT", "output rate, micro-USD per million tokens"),
    ("cache_read_micros_per_mtok", "BIGINT", "cache-read rate, micro-USD per million tokens"),
    ("cache_write_micros_per_mtok", "BIGINT", "cache-write rate (5-minute writes), micro-USD per million tokens"),
    ("reasoning_micros_per_mtok", "BIGINT", "reasoning rate, micro-USD per million tokens"),
    ("effective_from_us", "BIGINT", "the entry's effective time as announced"),
    ("announced_us", "BIGINT", "event time of the price_set event"),
    ("in_force_from_us", "BIGINT", "max(effective_from_us, announced_us): prices are never retroactive"),
    ("seq", "BIGINT", "order read, shared with the match rules (ties on in_force_from_us: the later entry wins)"),
    ("service_tier", "VARCHAR", "'' = standard; batch | flex | priority | ...: usage reporting this tier"),
    ("above_input_tokens", "BIGINT", "0 = base line; N = the rates of a call with more than N input tokens"),
    ("cache_write_1h_micros_per_mtok", "BIGINT", "1-hour cache-write rate, micro-USD per million tokens"),
    ("request_micros_per_k", "BIGINT", "per-request fee, micro-USD per thousand calls"),
    ("source", "VARCHAR", "where the line comes from (catalog and version, or operator)"),
    ("event_id", "VARCHAR", "the price_set event"),
)


@dataclass(frozen=True, kw_only=True)
class RuleInForce:
    """One model-matching rule (a ``price_match`` event) with when it applies; ``seq`` as for prices."""

    body: PriceMatch
    clause: Clause
    in_force_from_us: int
    event_time_us: int
    seq: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.body.provider, self.body.rule)

    def row(self) -> dict[str, Any]:
        b = self.body
        return {"provider": b.provider, "rule": b.rule, "target_provider": b.target_provider,
                "target_model": b.target_model, "rank": b.rank, "active": b.active,
                "effective_from_us": b.effective_from_us, "announced_us": self.event_time_us,
                "in_force_from_us": self.in_force_from_us, "seq": self.seq, "source": b.source}


PRICE_MATCH_ROW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("provider", "VARCHAR", "the provider the rule applies to ('*' = any)"),
    ("rule", "VARCHAR", "the clause over the lower-cased model id, canonical JSON (ledger.economics.matching)"),
    ("target_provider", "VARCHAR", "priced as this provider's ..."),
    ("target_model", "VARCHAR", "... model ('' = the id as reported, looked up under target_provider)"),
    ("rank", "BIGINT", "lower applies first (then the later on the log)"),
    ("active", "BOOLEAN", "false: withdraws the rule with this provider and clause"),
    ("effective_from_us", "BIGINT", "the rule's effective time as announced"),
    ("announced_us", "BIGINT", "event time of the price_match event"),
    ("in_force_from_us", "BIGINT", "max(effective_from_us, announced_us)"),
    ("seq", "BIGINT", "order read, shared with the price lines"),
    ("source", "VARCHAR", "where the rule comes from (catalog and version, or operator)"),
)


@dataclass(frozen=True)
class Resolution:
    """Which priced model a reported (provider, model) is, and how that was decided: ``via`` is "exact" (the
    book has the id), "lower-case", "prefix" (``provider/`` in the id), "rule" (``rule_seq`` says which) or
    "dated" (a rule matched after a compact date was written with dashes)."""

    provider: str
    model: str
    via: str
    rule_seq: int | None = None


@dataclass(frozen=True)
class Quote:
    """The line that prices one call: ``entry``, the ``resolution`` of its model, the service tier priced (the
    reported one, or '' when the model has no line for it) and the prompt-size tier applied."""

    entry: PriceInForce
    resolution: Resolution
    service_tier: str
    above_input_tokens: int


# service tiers a provider reports for its standard rates
STANDARD_TIER_NAMES = frozenset({"", "default", "standard", "auto", "on_demand", "on-demand"})

LineKey = tuple[str, str, str, int]


class PriceBook:
    """Price lines and match rules, kept per line sorted by (in-force start, seq).

    ``with_*`` return a new book and leave this one as it was; ``apply_*`` change this one in place (the
    processors' fold, which replaces its book anyway: copying thousands of lines per control event would make
    seeding a catalog quadratic).
    """

    __slots__ = ("_applied", "_candidates", "_last", "_last_rule", "_lines", "_models", "_providers", "_rules",
                 "_starts", "_tiers")

    def __init__(self, entries: Iterable[ModelPrice] = ()) -> None:
        self._lines: dict[LineKey, tuple[PriceInForce, ...]] = {}
        self._starts: dict[LineKey, tuple[tuple[int, int], ...]] = {}
        self._tiers: dict[tuple[str, str, str], tuple[int, ...]] = {}  # (provider, model, service tier) -> aboves
        self._models: set[tuple[str, str]] = set()
        self._providers: set[str] = set()
        self._rules: dict[tuple[str, str], tuple[RuleInForce, ...]] = {}
        self._candidates: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self._last: PriceInForce | None = None
        self._last_rule: RuleInForce | None = None
        self._applied = 0
        for count, price in enumerate(entries, start=1):
            if count > limits.MAX_PRICE_BOOK_ENTRIES:
                raise ValidationError("entries", count, f"a price book holds at most {limits.MAX_PRICE_BOOK_ENTRIES:,}")
            if not isinstance(price, ModelPrice):
                raise ValidationError("entry", price, "must be a ModelPrice")
            self._add_direct(price)

    # ------------------------------------------------------------ building

    def copy(self) -> PriceBook:
        book = PriceBook.__new__(PriceBook)
        book._lines, book._starts, book._tiers = dict(self._lines), dict(self._starts), dict(self._tiers)
        book._models, book._providers = set(self._models), set(self._providers)
        book._rules, book._candidates = dict(self._rules), dict(self._candidates)
        book._last, book._last_rule, book._applied = self._last, self._last_rule, self._applied
        return book

    def _add_direct(self, price: ModelPrice) -> None:
        for e in self._lines.get(price.key, ()):
            if e.seq == 0 and e.in_force_from_us == price.effective_from_us:
                if e.price.same_rates(price):
                    return  # an identical entry again is a no-op
                # Two different prices for one instant and no log order between them: refused.
                raise ValidationError("effective_from_us", price.effective_from_us,
                                      "a different price for this model is already in force from this time",
                                      provider=price.provider, model=price.model)
        self._put(PriceInForce(price=price, in_force_from_us=price.effective_from_us, event_time_us=None, seq=0))

    def _put(self, entry: PriceInForce) -> None:
        if len(self) >= limits.MAX_PRICE_BOOK_ENTRIES:
            raise ValidationError("entries", len(self) + 1,
                                  f"a price book holds at most {limits.MAX_PRICE_BOOK_ENTRIES:,}",
                                  provider=entry.price.provider, model=entry.price.model)
        p = entry.price
        line = _sorted([*self._lines.get(p.key, ()), entry])
        self._lines[p.key] = line
        self._starts[p.key] = tuple((e.in_force_from_us, e.seq) for e in line)
        tier = (p.provider, p.model, p.service_tier)
        if p.above_input_tokens not in self._tiers.get(tier, ()):
            self._tiers[tier] = tuple(sorted((*self._tiers.get(tier, ()), p.above_input_tokens)))
        self._models.add((p.provider, p.model))
        self._providers.add(p.provider)

    def with_entry(self, price: ModelPrice) -> PriceBook:
        """A new book with ``price`` added, in force from its declared time (an identical entry already
        there changes nothing; a different one for the same line and instant is refused)."""
        if not isinstance(price, ModelPrice):
            raise ValidationError("entry", price, "must be a ModelPrice")
        book = self.copy()
        book._add_direct(price)
        return book

    def apply_price_set(self, body: PriceSet, event_time_us: int, event_id: str | None = None) -> PriceInForce:
        """Apply the ``price_set`` event ``body`` (at ``event_time_us``) to this book, after every event applied
        so far: in force from ``in_force_from_us(body.effective_from_us, event_time_us)``. Returns the entry."""
        price = ModelPrice.from_price_set(body)
        entry = PriceInForce(price=price, in_force_from_us=in_force_from_us(price.effective_from_us, event_time_us),
                             event_time_us=event_time_us, seq=self._applied + 1, event_id=event_id)
        self._put(entry)
        self._applied, self._last = entry.seq, entry
        return entry

    def apply_price_match(self, body: PriceMatch, event_time_us: int) -> RuleInForce:
        """Apply the ``price_match`` event ``body`` (its rule checked here: a ``ValidationError`` changes nothing)."""
        if not isinstance(body, PriceMatch):
            raise ValidationError("body", body, "must be a PriceMatch event body")
        clause = parse_clause(body.rule)
        if body.rule != canonical_rule(clause):
            raise ValidationError("rule", body.rule, "must be in canonical form (sorted keys, no spaces, "
                                  "lower-case text)", expected=canonical_rule(clause))
        if len(self._rules) >= limits.MAX_PRICE_BOOK_ENTRIES:
            raise ValidationError("rules", len(self._rules) + 1,
                                  f"a price book holds at most {limits.MAX_PRICE_BOOK_ENTRIES:,} match rules")
        rule = RuleInForce(body=body, clause=clause, seq=self._applied + 1, event_time_us=event_time_us,
                           in_force_from_us=in_force_from_us(body.effective_from_us, event_time_us))
        key = rule.key
        self._rules[key] = tuple(sorted((*self._rules.get(key, ()), rule), key=lambda r: (r.in_force_from_us, r.seq)))
        self._candidates = {}  # which rules match an id: recomputed lazily
        if body.provider != "*":
            self._providers.add(body.provider)
        self._applied, self._last_rule = rule.seq, rule
        return rule

    def with_price_set(self, body: PriceSet, event_time_us: int) -> PriceBook:
        """A new book with the ``price_set`` event applied (see ``apply_price_set``)."""
        book = self.copy()
        book.apply_price_set(body, event_time_us)
        return book

    def with_price_match(self, body: PriceMatch, event_time_us: int) -> PriceBook:
        """A new book with the ``price_match`` event applied (see ``apply_price_match``)."""
        book = self.copy()
        book.apply_price_match(body, event_time_us)
        return book

    # ------------------------------------------------------------ reading

    @property
    def applied(self) -> int:
        """How many ``price_set`` and ``price_match`` events were applied (the ``seq`` of the last one)."""
        return self._applied

    @property
    def last_applied(self) -> PriceInForce | None:
        """The entry the last applied ``price_set`` event put in the book (None before the first)."""
        return self._last

    @property
    def last_rule(self) -> RuleInForce | None:
        """The rule the last applied ``price_match`` event put in the book (None before the first)."""
        return self._last_rule

    def entries(self) -> tuple[ModelPrice, ...]:
        """Every entry, ordered by provider, model, service tier, prompt-size tier, in-force start, seq."""
        return tuple(e.price for e in self.in_force_entries())

    def in_force_entries(self) -> tuple[PriceInForce, ...]:
        """Every entry with when it applies, ordered by provider, model, tiers, in-force start, seq."""
        return tuple(e for key in sorted(self._lines) for e in self._lines[key])

    def rules(self) -> tuple[RuleInForce, ...]:
        """Every match rule event, in log order."""
        return tuple(sorted((r for line in self._rules.values() for r in line), key=lambda r: r.seq))

    def models(self) -> tuple[tuple[str, str], ...]:
        """Every (provider, model) the book has a line for, sorted."""
        return tuple(sorted(self._models))

    def _entry_at(self, key: LineKey, t: int) -> PriceInForce | None:
        starts = self._starts.get(key)
        if starts is None:
            return None
        # (t, +inf) sorts after every (t, seq): the latest entry starting at or before t
        index = bisect.bisect_right(starts, (t, math.inf)) - 1
        return self._lines[key][index] if index >= 0 else None

    def line_at(self, provider: str, model: str, event_time_us: int, *, service_tier: str = STANDARD_TIER,
                above_input_tokens: int = 0) -> PriceInForce | None:
        """The entry of exactly this line (no matching, no fallback) in force at ``event_time_us``, or None."""
        return self._entry_at((provider, model, service_tier, above_input_tokens), event_time_us)

    def rule_at(self, provider: str, rule: str, event_time_us: int) -> RuleInForce | None:
        """The version of the rule (provider, clause text) in force at ``event_time_us``, or None."""
        return self._rule_at((provider, rule), event_time_us) if (provider, rule) in self._rules else None

    def _rule_at(self, key: tuple[str, str], t: int) -> RuleInForce | None:
        found = None
        for r in self._rules[key]:  # sorted by (start, seq): the last one started by t is in force
            if r.in_force_from_us > t:
                break
            found = r
        return found

    def _best_rule(self, provider: str, ref: str, t: int) -> RuleInForce | None:
        cache_key = (provider, ref)
        keys = self._candidates.get(cache_key)
        if keys is None:
            keys = tuple(k for k, line in self._rules.items()
                         if k[0] in (provider, "*") and line[0].clause.matches(ref))
            if len(self._candidates) >= limits.MAX_MATCH_CACHE_ENTRIES:
                self._candidates.clear()  # bounded: ids are the callers' (agents') to choose
            self._candidates[cache_key] = keys
        best: RuleInForce | None = None
        for k in keys:
            r = self._rule_at(k, t)
            if r is None or not r.body.active:
                continue
            if best is None or (r.body.rank, -r.seq) < (best.body.rank, -best.seq):
                best = r
        return best

    def resolve(self, provider: str, model: str, event_time_us: int) -> Resolution:
        """Which priced model the reported (provider, model) is at ``event_time_us`` — THE matching rule:

        1. the id as reported, then lower-cased, if the book has a line for it under ``provider``;
        2. ``p/rest`` where ``p`` is a provider the book knows: ``rest`` under ``p`` (LiteLLM's and OpenRouter's
           convention);
        3. the match rules for ``provider`` (or '*') in force at the time, lowest rank first, then the later on
           the log: the first whose clause matches the lower-cased id (then the id with a compact date written
           with dashes) names the model; a rule naming no model looks the id up again under its provider.
        At most ``MAX_RESOLUTION_HOPS`` steps 2 and 3 for one id. Nothing matched: an ``EconomicsError`` with
        code ``unknown_model`` and the evidence — never a silent $0.
        """
        _check_name("provider", provider)
        _check_name("model", model)
        check_event_time_us("event_time_us", event_time_us)
        return self._resolve(provider, model, event_time_us, 0, (provider, model))

    def _resolve(self, provider: str, model: str, t: int, hops: int, asked: tuple[str, str]) -> Resolution:
        if (provider, model) in self._models:
            return Resolution(provider, model, "exact" if hops == 0 else "prefix")
        low = model.lower()
        if (provider, low) in self._models:
            return Resolution(provider, low, "lower-case")
        if hops < limits.MAX_RESOLUTION_HOPS:
            head, sep, rest = low.partition("/")
            if sep and rest and head in self._providers:
                got = self._resolve(head, rest, t, hops + 1, asked)
                return got if got.via != "exact" else Resolution(got.provider, got.model, "prefix")
            for ref, via in ((low, "rule"), (dashed_date(low), "dated")):
                if via == "dated" and ref == low:
                    continue
                rule = self._best_rule(provider, ref, t)
                if rule is None:
                    continue
                target, target_model = rule.body.target_provider, rule.body.target_model
                if not target_model:
                    got = self._resolve(target, ref, t, hops + 1, asked)
                    return Resolution(got.provider, got.model, via, rule.seq)
                if (target, target_model) in self._models:
                    return Resolution(target, target_model, via, rule.seq)
                raise EconomicsError("unknown model: a match rule names a model the book has no price line for",
                                     code=RejectCode.UNKNOWN_MODEL.value, provider=asked[0], model=asked[1],
                                     event_time=t, rule=rule.body.rule, target=f"{target}/{target_model}",
                                     hint="add a price for the target (tokenledger prices set) or fix the rule")
        raise EconomicsError("unknown model: no price line and no match rule for this provider and model",
                             code=RejectCode.UNKNOWN_MODEL.value, provider=asked[0], model=asked[1], event_time=t,
                             hint="price it (tokenledger prices set / sync) or map it to a priced model "
                                  "(tokenledger prices alias)")

    def quote(self, provider: str, model: str, event_time_us: int, *, service_tier: str = STANDARD_TIER,
              input_tokens: int = 0) -> Quote:
        """The line that prices one call: the model resolved (``resolve``), its line for the reported service
        tier (its standard line when it has none for that tier in force), and of that the highest prompt-size tier
        the call's ``input_tokens`` exceed whose line is in force. Never a silent $0."""
        res = self.resolve(provider, model, event_time_us)
        t = event_time_us
        tier = service_tier.lower()
        if tier in STANDARD_TIER_NAMES or self._entry_at((res.provider, res.model, tier, 0), t) is None:
            tier = STANDARD_TIER
        base = self._entry_at((res.provider, res.model, tier, 0), t)
        if base is None:
            first = min((e for k, line in self._lines.items() if k[:2] == (res.provider, res.model) for e in line),
                        key=lambda e: (e.in_force_from_us, e.seq), default=None)
            raise EconomicsError("no price in force: the model's first price-book entry is later than the event",
                                 code=RejectCode.UNKNOWN_MODEL.value, provider=provider, model=model,
                                 priced_as=f"{res.provider}/{res.model}", event_time=t,
                                 earliest_effective_from_us=None if first is None else first.effective_from_us,
                                 earliest_in_force_from_us=None if first is None else first.in_force_from_us)
        entry, above = base, 0
        if input_tokens:
            for a in reversed(self._tiers.get((res.provider, res.model, tier), ())):
                if 0 < a < input_tokens and (tiered := self._entry_at((res.provider, res.model, tier, a), t)):
                    entry, above = tiered, a
                    break
        return Quote(entry, res, tier, above)

    def in_force_at(self, provider: str, model: str, event_time_us: int, *, service_tier: str = STANDARD_TIER,
                    input_tokens: int = 0) -> PriceInForce:
        """The entry in force for (provider, model) at ``event_time_us`` (``quote``); never a silent $0."""
        return self.quote(provider, model, event_time_us, service_tier=service_tier, input_tokens=input_tokens).entry

    def price_at(self, provider: str, model: str, event_time_us: int, *, service_tier: str = STANDARD_TIER,
                 input_tokens: int = 0) -> ModelPrice:
        """The entry in force for (provider, model) at ``event_time_us``; never a silent $0."""
        return self.in_force_at(provider, model, event_time_us, service_tier=service_tier,
                                input_tokens=input_tokens).price

    def __len__(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceBook) and self._lines == other._lines and self._rules == other._rules

    def __hash__(self) -> int:
        return hash(self.in_force_entries())

    def __repr__(self) -> str:
        return f"PriceBook({len(self)} entries, {len(self._models)} models, {len(self._rules)} match rules)"


def _sorted(line: Iterable[PriceInForce]) -> tuple[PriceInForce, ...]:
    return tuple(sorted(line, key=lambda e: (e.in_force_from_us, e.seq)))


def price_set_from_row(r: Mapping[str, Any]) -> PriceSet:
    return PriceSet(provider=r["provider"], model=r["model"], input_micros_per_mtok=r["input_micros_per_mtok"],
                    output_micros_per_mtok=r["output_micros_per_mtok"],
                    cache_read_micros_per_mtok=r["cache_read_micros_per_mtok"],
                    cache_write_micros_per_mtok=r["cache_write_micros_per_mtok"],
                    reasoning_micros_per_mtok=r["reasoning_micros_per_mtok"],
                    effective_from_us=r["effective_from_us"], service_tier=r["service_tier"],
                    above_input_tokens=r["above_input_tokens"],
                    cache_write_1h_micros_per_mtok=r["cache_write_1h_micros_per_mtok"],
                    request_micros_per_k=r["request_micros_per_k"], source=r["source"])


def price_book_from_rows(rows: Iterable[Mapping[str, Any]], rule_rows: Iterable[Mapping[str, Any]] = ()) -> PriceBook:
    """The book a processor's price views record (rows of ``PriceInForce.row()`` and ``RuleInForce.row()``): its
    ``price_set`` and ``price_match`` events applied again in their log order (``seq``), so a restored or read-back
    book is the live one."""
    book = PriceBook()
    tagged = sorted([(r["seq"], 0, r) for r in rows] + [(r["seq"], 1, r) for r in rule_rows], key=lambda x: x[0])
    for seq, kind, r in tagged:
        if kind == 0:
            book.apply_price_set(price_set_from_row(r), r["announced_us"], r.get("event_id"))
        else:
            book.apply_price_match(PriceMatch(provider=r["provider"], rule=r["rule"],
                                              target_provider=r["target_provider"], target_model=r["target_model"],
                                              rank=r["rank"], effective_from_us=r["effective_from_us"],
                                              active=r["active"], source=r["source"]), r["announced_us"])
        if book.applied != seq:
            raise ValidationError("seq", seq, f"price rows must number the applied events 1, 2, ...; "
                                              f"expected {book.applied}", provider=r["provider"])
    return book


# ------------------------------------------------------------------ the shipped default book


def price_book_from_json(text: str) -> PriceBook:
    """Parse a price-book document (format ``tokenledger.price_book.v1``); strict, pure.

    Rates are decimal strings of USD per million tokens (``"0.3125"``), parsed exactly; a missing,
    extra or malformed field is a ``ValidationError`` naming it.
    """
    try:
        document = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValidationError("price_book", text[:80] if isinstance(text, str) else text, f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != PRICE_BOOK_FORMAT:
        raise ValidationError("price_book.format", document.get("format") if isinstance(document, dict) else document,
                              f"must be an object with format {PRICE_BOOK_FORMAT!r}")
    extra = set(document) - {"format", "unit", "notes", "entries"}
    if extra:
        raise ValidationError("price_book", sorted(extra), "unknown top-level keys")
    raw_entries = document.get("entries")
    if not isinstance(raw_entries, list):
        raise ValidationError("price_book.entries", raw_entries, "must be a list")
    return PriceBook(_entry_from_json(index, raw) for index, raw in enumerate(raw_entries))


def _entry_from_json(index: int, raw: Any) -> ModelPrice:
    where = f"price_book.entries[{index}]"
    if not isinstance(raw, dict):
        raise ValidationError(where, raw, "must be an object")
    required = {"provider", "model", "effective_from_us", "input", "output", "cache_read", "cache_write"}
    missing = required - set(raw)
    extra = set(raw) - required - {"reasoning"}
    if missing or extra:
        raise ValidationError(where, sorted(missing | extra), f"missing {sorted(missing)}, unknown {sorted(extra)}")
    rates: dict[str, int] = {}
    for name in _RATE_FIELDS:
        if name in raw:
            if not isinstance(raw[name], str):
                raise ValidationError(f"{where}.{name}", raw[name], "must be a decimal string of USD per MTok")
            rates[name] = parse_usd(raw[name])  # USD per MTok as text == micro-USD per MTok as int
    return ModelPrice(provider=raw["provider"], model=raw["model"], input=rates["input"], output=rates["output"],
                      cache_read=rates["cache_read"], cache_write=rates["cache_write"],
                      reasoning=rates.get("reasoning"),
                      effective_from_us=check_event_time_us(f"{where}.effective_from_us", raw["effective_from_us"]))


@functools.cache
def default_price_book() -> PriceBook:
    """The book shipped in ``ledger/data/default_prices.json`` (the reference table, from time 0)."""
    text = importlib.resources.files("ledger").joinpath(DEFAULT_PRICES_RESOURCE).read_text(encoding="utf-8")
    return price_book_from_json(text)


# ------------------------------------------------------------------ one LLM call


@dataclass(frozen=True, kw_only=True)
class UsageCost:
    """The cost of one LLM call, per priced token class (and the request fee), in micro-USD; ``total`` is their
    sum. ``cache_write`` is the 5-minute (or unspecified) writes, ``cache_write_1h`` the 1-hour ones."""

    price: ModelPrice
    uncached_input_tokens: int
    plain_output_tokens: int  # output tokens that are not reasoning tokens
    uncached_input: int
    cache_read: int
    cache_write: int
    output: int
    reasoning: int
    total: int
    cache_write_1h: int = 0
    request: int = 0

    def __post_init__(self) -> None:
        parts = (self.uncached_input + self.cache_read + self.cache_write + self.cache_write_1h + self.output
                 + self.reasoning + self.request)
        if self.total != parts:
            raise ValidationError("total", self.total, f"must equal the sum of its parts, {parts}")


def usage_cost(price: ModelPrice, *, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
               cache_write_tokens: int = 0, reasoning_tokens: int = 0, cache_write_1h_tokens: int = 0,
               requests: int = 1) -> UsageCost:
    """Price one call (``requests`` calls, for the per-request fee). Cache read/write are parts of
    ``input_tokens``, the 1-hour writes part of ``cache_write_tokens``; reasoning is part of ``output_tokens``.

    uncached input = input - cache_read - cache_write (an error if negative); plain output =
    output - reasoning (an error if negative). Each class is rounded once; the total is their sum.
    """
    if not isinstance(price, ModelPrice):
        raise ValidationError("price", price, "must be a ModelPrice")
    check_tokens("input_tokens", input_tokens)
    check_tokens("output_tokens", output_tokens)
    check_tokens("cache_read_tokens", cache_read_tokens)
    check_tokens("cache_write_tokens", cache_write_tokens)
    check_tokens("reasoning_tokens", reasoning_tokens)
    check_tokens("cache_write_1h_tokens", cache_write_1h_tokens)
    check_tokens("requests", requests)
    if cache_read_tokens + cache_write_tokens > input_tokens:
        raise ValidationError("cache_read_tokens", cache_read_tokens,
                              "cache read and cache write tokens are parts of input_tokens and together "
                              "cannot exceed it", cache_write_tokens=cache_write_tokens, input_tokens=input_tokens)
    if cache_write_1h_tokens > cache_write_tokens:
        raise ValidationError("cache_write_1h_tokens", cache_write_1h_tokens,
                              "1-hour cache writes are part of cache_write_tokens and cannot exceed it",
                              cache_write_tokens=cache_write_tokens)
    if reasoning_tokens > output_tokens:
        raise ValidationError("reasoning_tokens", reasoning_tokens,
                              "reasoning tokens are part of output_tokens and cannot exceed it",
                              output_tokens=output_tokens)
    uncached_tokens = input_tokens - cache_read_tokens - cache_write_tokens
    plain_output_tokens = output_tokens - reasoning_tokens
    assert price.reasoning is not None and price.cache_write_1h is not None  # set in ModelPrice.__post_init__
    # every count is checked above (the differences are between 0 and a checked count) and every rate
    # when the ModelPrice was built, so each class is priced without checking its inputs again
    parts = {
        "uncached_input": checked_cost_micros(uncached_tokens, price.input),
        "cache_read": checked_cost_micros(cache_read_tokens, price.cache_read),
        "cache_write": checked_cost_micros(cache_write_tokens - cache_write_1h_tokens, price.cache_write),
        "cache_write_1h": checked_cost_micros(cache_write_1h_tokens, price.cache_write_1h),
        "output": checked_cost_micros(plain_output_tokens, price.output),
        "reasoning": checked_cost_micros(reasoning_tokens, price.reasoning),
        # a fee per thousand requests is a rate per million of (requests x 1000)
        "request": checked_cost_micros(requests * 1000, price.request_per_k) if price.request_per_k else 0,
    }
    total = check_result_micros("total", sum(parts.values()))
    return UsageCost(price=price, uncached_input_tokens=uncached_tokens, plain_output_tokens=plain_output_tokens,
                     total=total, **parts)


# ------------------------------------------------------------------ aggregates (a usage report's result)

AGGREGATE_OPERATION = "llm.usage_aggregate"  # operation of an event that sums many calls (a usage report's result)
LABEL_NUM_MODEL_REQUESTS = "num_model_requests"  # on an aggregate: the calls it sums


def aggregate_shape(operation: str, labels: tuple[tuple[str, str], ...], input_tokens: int) -> tuple[int, int, bool]:
    """(requests, input tokens that choose the prompt-size tier, whether the request count is known) of an action.

    A call: (1, its input, True). An aggregate (``llm.usage_aggregate``, a usage report's result) sums many calls:
    its per-request fee counts ``num_model_requests`` times, and the prompt-size tier is chosen by the mean input
    per request (the report has no per-call sizes: a mix of long and short prompts is priced at their mean). Without
    a count (Anthropic's report has none) the tier comes from the report's ``context_window`` group when present
    ("200k-1M": above 200k), else the base tier, and the cost is flagged an estimate."""
    if operation != AGGREGATE_OPERATION:
        return 1, input_tokens, True
    found = dict(labels)
    raw = found.get(LABEL_NUM_MODEL_REQUESTS, "")
    if raw.isdigit() and int(raw) > 0:
        n = int(raw)
        return n, input_tokens // n, True
    return 1, _context_window_floor(found.get("context_window", "")), False


def _context_window_floor(group: str) -> int:
    """The smallest prompt of a context-window group such as "200k-1M" (200,001 tokens), 0 when it names none."""
    low = group.split("-", 1)[0].strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(low[-1:], 1)
    digits = low[:-1] if scale != 1 else low
    return int(digits) * scale + 1 if digits.isdigit() and int(digits) > 0 else 0
