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
from ledger.economics.money import (
    check_event_time_us,
    check_rate,
    check_result_micros,
    check_tokens,
    checked_cost_micros,
    parse_usd,
)
from ledger.errors import EconomicsError, RejectCode, ValidationError
from ledger.wire.events import PriceSet

DEFAULT_PRICES_RESOURCE = "data/default_prices.json"  # inside the ``ledger`` package
PRICE_BOOK_FORMAT = "tokenledger.price_book.v1"

_RATE_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")


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
    """One price-book entry. Every rate is an int of micro-USD per million tokens.

    ``reasoning`` left as None means "billed like output" and is set to ``output`` on construction,
    so after construction it is always an int.
    """

    provider: str
    model: str
    input: int
    output: int
    cache_read: int
    cache_write: int
    reasoning: int | None = None
    effective_from_us: int = 0

    def __post_init__(self) -> None:
        _check_name("provider", self.provider)
        _check_name("model", self.model)
        if self.reasoning is None:
            object.__setattr__(self, "reasoning", self.output)  # providers bill reasoning as output
        for name in _RATE_FIELDS:
            check_rate(name, getattr(self, name))
        check_event_time_us("effective_from_us", self.effective_from_us)

    @classmethod
    def from_price_set(cls, body: PriceSet) -> ModelPrice:
        """The entry a ``price_set`` control event puts in force."""
        if not isinstance(body, PriceSet):
            raise ValidationError("body", body, "must be a PriceSet event body")
        return cls(provider=body.provider, model=body.model, input=body.input_micros_per_mtok,
                   output=body.output_micros_per_mtok, cache_read=body.cache_read_micros_per_mtok,
                   cache_write=body.cache_write_micros_per_mtok, reasoning=body.reasoning_micros_per_mtok,
                   effective_from_us=body.effective_from_us)

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.model)

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
                "in_force_from_us": self.in_force_from_us, "seq": self.seq}


# The columns of ``PriceInForce.row()`` as (name, SQL type, meaning): every processor that keeps a price
# view (allocations, budgets) declares it with these, so one rule has one record of it and
# ``price_book_from_rows`` reads any of them back. A test holds them equal to ``row()``'s keys.
PRICE_ROW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("provider", "VARCHAR", "provider"),
    ("model", "VARCHAR", "model"),
    ("input_micros_per_mtok", "BIGINT", "input rate, micro-USD per million tokens"),
    ("output_micros_per_mtok", "BIGINT", "output rate, micro-USD per million tokens"),
    ("cache_read_micros_per_mtok", "BIGINT", "cache-read rate, micro-USD per million tokens"),
    ("cache_write_micros_per_mtok", "BIGINT", "cache-write rate, micro-USD per million tokens"),
    ("reasoning_micros_per_mtok", "BIGINT", "reasoning rate, micro-USD per million tokens"),
    ("effective_from_us", "BIGINT", "the entry's effective time as announced"),
    ("announced_us", "BIGINT", "event time of the price_set event"),
    ("in_force_from_us", "BIGINT", "max(effective_from_us, announced_us): prices are never retroactive"),
    ("seq", "BIGINT", "order read (ties on in_force_from_us: the later entry wins)"),
)


class PriceBook:
    """An immutable set of entries, kept per model sorted by (in-force start, seq)."""

    __slots__ = ("_applied", "_last", "_lines", "_starts")

    def __init__(self, entries: Iterable[ModelPrice] = ()) -> None:
        lines: dict[tuple[str, str], list[PriceInForce]] = {}
        for count, price in enumerate(entries, start=1):
            if count > limits.MAX_PRICE_BOOK_ENTRIES:
                raise ValidationError("entries", count, f"a price book holds at most {limits.MAX_PRICE_BOOK_ENTRIES:,}")
            if not isinstance(price, ModelPrice):
                raise ValidationError("entry", price, "must be a ModelPrice")
            line = lines.setdefault(price.key, [])
            known = next((e for e in line if e.in_force_from_us == price.effective_from_us), None)
            if known is not None:
                if not known.price.same_rates(price):
                    # Two different prices for one instant and no log order between them: refused.
                    raise ValidationError("effective_from_us", price.effective_from_us,
                                          "a different price for this model is already in force from this time",
                                          provider=price.provider, model=price.model)
                continue  # an identical entry again is a no-op
            line.append(PriceInForce(price=price, in_force_from_us=price.effective_from_us, event_time_us=None,
                                     seq=0))
        self._set({key: _sorted(line) for key, line in lines.items()}, last=None)

    def _set(self, lines: dict[tuple[str, str], tuple[PriceInForce, ...]], *, last: PriceInForce | None) -> None:
        self._lines = dict(sorted(lines.items()))
        self._starts = {key: tuple((e.in_force_from_us, e.seq) for e in line) for key, line in self._lines.items()}
        self._last = last
        self._applied = 0 if last is None else last.seq

    def with_entry(self, price: ModelPrice) -> PriceBook:
        """A new book with ``price`` added, in force from its declared time (an identical entry already
        there changes nothing; a different one for the same model and instant is refused)."""
        if not isinstance(price, ModelPrice):
            raise ValidationError("entry", price, "must be a ModelPrice")
        line = self._lines.get(price.key, ())
        for e in line:
            if e.seq == 0 and e.in_force_from_us == price.effective_from_us:
                if e.price.same_rates(price):
                    return self
                raise ValidationError("effective_from_us", price.effective_from_us,
                                      "a different price for this model is already in force from this time",
                                      provider=price.provider, model=price.model)
        entry = PriceInForce(price=price, in_force_from_us=price.effective_from_us, event_time_us=None, seq=0)
        return self._with(entry)

    def with_price_set(self, body: PriceSet, event_time_us: int) -> PriceBook:
        """A new book with the ``price_set`` event ``body`` (at ``event_time_us``) applied, after every event
        applied so far: in force from ``in_force_from_us(body.effective_from_us, event_time_us)``."""
        price = ModelPrice.from_price_set(body)
        entry = PriceInForce(price=price, in_force_from_us=in_force_from_us(price.effective_from_us, event_time_us),
                             event_time_us=event_time_us, seq=self._applied + 1)
        return self._with(entry)

    def _with(self, entry: PriceInForce) -> PriceBook:
        if len(self) >= limits.MAX_PRICE_BOOK_ENTRIES:
            raise ValidationError("entries", len(self) + 1,
                                  f"a price book holds at most {limits.MAX_PRICE_BOOK_ENTRIES:,}",
                                  provider=entry.price.provider, model=entry.price.model)
        key = entry.price.key
        book = PriceBook.__new__(PriceBook)
        # only the changed model's line is rebuilt; the others are shared (they are immutable tuples)
        book._set({**self._lines, key: _sorted([*self._lines.get(key, ()), entry])},
                  last=entry if entry.seq else self._last)
        return book

    @property
    def applied(self) -> int:
        """How many ``price_set`` events were applied (the ``seq`` of the last one)."""
        return self._applied

    @property
    def last_applied(self) -> PriceInForce | None:
        """The entry the last applied ``price_set`` event put in the book (None before the first)."""
        return self._last

    def entries(self) -> tuple[ModelPrice, ...]:
        """Every entry, ordered by provider, model, in-force start, seq."""
        return tuple(e.price for e in self.in_force_entries())

    def in_force_entries(self) -> tuple[PriceInForce, ...]:
        """Every entry with when it applies, ordered by provider, model, in-force start, seq."""
        return tuple(e for line in self._lines.values() for e in line)

    def models(self) -> tuple[tuple[str, str], ...]:
        """Every (provider, model) the book prices, sorted."""
        return tuple(self._lines)

    def in_force_at(self, provider: str, model: str, event_time_us: int) -> PriceInForce:
        """The entry in force for (provider, model) at ``event_time_us``, with its start; never a silent $0."""
        _check_name("provider", provider)
        _check_name("model", model)
        check_event_time_us("event_time_us", event_time_us)
        key = (provider, model)
        starts = self._starts.get(key)
        if starts is None:
            raise EconomicsError("unknown model: no price-book entry for this provider and model",
                                 code=RejectCode.UNKNOWN_MODEL.value, provider=provider, model=model,
                                 event_time=event_time_us,
                                 hint="add a price-book entry for the model (a price_set control event)")
        # (t, +inf) sorts after every (t, seq): the latest entry starting at or before t
        index = bisect.bisect_right(starts, (event_time_us, math.inf)) - 1
        if index < 0:
            first = self._lines[key][0]
            raise EconomicsError("no price in force: the model's first price-book entry is later than the event",
                                 code=RejectCode.UNKNOWN_MODEL.value, provider=provider, model=model,
                                 event_time=event_time_us, earliest_effective_from_us=first.effective_from_us,
                                 earliest_in_force_from_us=first.in_force_from_us)
        return self._lines[key][index]

    def price_at(self, provider: str, model: str, event_time_us: int) -> ModelPrice:
        """The entry in force for (provider, model) at ``event_time_us``; never a silent $0."""
        return self.in_force_at(provider, model, event_time_us).price

    def __len__(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceBook) and self._lines == other._lines

    def __hash__(self) -> int:
        return hash(self.in_force_entries())

    def __repr__(self) -> str:
        return f"PriceBook({len(self)} entries, {len(self._lines)} models)"


def _sorted(line: Iterable[PriceInForce]) -> tuple[PriceInForce, ...]:
    return tuple(sorted(line, key=lambda e: (e.in_force_from_us, e.seq)))


def price_book_from_rows(rows: Iterable[Mapping[str, Any]]) -> PriceBook:
    """The book a processor's price view records (rows of ``PriceInForce.row()``): its ``price_set`` events
    applied again in their log order (``seq``), so a restored or read-back book is the live one."""
    book = PriceBook()
    for r in sorted(rows, key=lambda r: r["seq"]):
        body = PriceSet(provider=r["provider"], model=r["model"], input_micros_per_mtok=r["input_micros_per_mtok"],
                        output_micros_per_mtok=r["output_micros_per_mtok"],
                        cache_read_micros_per_mtok=r["cache_read_micros_per_mtok"],
                        cache_write_micros_per_mtok=r["cache_write_micros_per_mtok"],
                        reasoning_micros_per_mtok=r["reasoning_micros_per_mtok"],
                        effective_from_us=r["effective_from_us"])
        book = book.with_price_set(body, r["announced_us"])
        if book.applied != r["seq"]:
            raise ValidationError("seq", r["seq"], f"price rows must number the applied events 1, 2, ...; "
                                                   f"expected {book.applied}", provider=r["provider"],
                                  model=r["model"])
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
    return ModelPrice(provider=raw["provider"], model=raw["model"],
                      effective_from_us=check_event_time_us(f"{where}.effective_from_us", raw["effective_from_us"]),
                      **rates)


@functools.cache
def default_price_book() -> PriceBook:
    """The book shipped in ``ledger/data/default_prices.json`` (the reference table, from time 0)."""
    text = importlib.resources.files("ledger").joinpath(DEFAULT_PRICES_RESOURCE).read_text(encoding="utf-8")
    return price_book_from_json(text)


# ------------------------------------------------------------------ one LLM call


@dataclass(frozen=True, kw_only=True)
class UsageCost:
    """The cost of one LLM call, per priced token class, in micro-USD; ``total`` is their sum."""

    price: ModelPrice
    uncached_input_tokens: int
    plain_output_tokens: int  # output tokens that are not reasoning tokens
    uncached_input: int
    cache_read: int
    cache_write: int
    output: int
    reasoning: int
    total: int

    def __post_init__(self) -> None:
        parts = self.uncached_input + self.cache_read + self.cache_write + self.output + self.reasoning
        if self.total != parts:
            raise ValidationError("total", self.total, f"must equal the sum of its parts, {parts}")


def usage_cost(price: ModelPrice, *, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
               cache_write_tokens: int = 0, reasoning_tokens: int = 0) -> UsageCost:
    """Price one call. Cache read/write are parts of ``input_tokens``; reasoning is part of ``output_tokens``.

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
    if cache_read_tokens + cache_write_tokens > input_tokens:
        raise ValidationError("cache_read_tokens", cache_read_tokens,
                              "cache read and cache write tokens are parts of input_tokens and together "
                              "cannot exceed it", cache_write_tokens=cache_write_tokens, input_tokens=input_tokens)
    if reasoning_tokens > output_tokens:
        raise ValidationError("reasoning_tokens", reasoning_tokens,
                              "reasoning tokens are part of output_tokens and cannot exceed it",
                              output_tokens=output_tokens)
    uncached_tokens = input_tokens - cache_read_tokens - cache_write_tokens
    plain_output_tokens = output_tokens - reasoning_tokens
    assert price.reasoning is not None  # set in ModelPrice.__post_init__
    # every count is checked above (the two differences are between 0 and a checked count) and every rate
    # when the ModelPrice was built, so each class is priced without checking its inputs again
    parts = {
        "uncached_input": checked_cost_micros(uncached_tokens, price.input),
        "cache_read": checked_cost_micros(cache_read_tokens, price.cache_read),
        "cache_write": checked_cost_micros(cache_write_tokens, price.cache_write),
        "output": checked_cost_micros(plain_output_tokens, price.output),
        "reasoning": checked_cost_micros(reasoning_tokens, price.reasoning),
    }
    total = check_result_micros("total", sum(parts.values()))
    return UsageCost(price=price, uncached_input_tokens=uncached_tokens, plain_output_tokens=plain_output_tokens,
                     total=total, **parts)

