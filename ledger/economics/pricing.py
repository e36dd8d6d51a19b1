"""The price book: what one million tokens of each kind cost, per provider and model, over event time.

A ``ModelPrice`` is one entry: provider, model, rates in micro-USD per million tokens for input,
output, cache read, cache write and reasoning, in force from ``effective_from_us``. A ``PriceBook``
holds entries and answers "which price was in force for this model at this event time": the entry
with the latest ``effective_from_us`` that is not after the event time. Pricing therefore depends on
the event's own time, never on when it is processed, so a replay prices every event the same way.

Token partition (the rule most cost trackers get wrong): cache-read and cache-write tokens are
**parts of** the input total, and reasoning tokens are **part of** the output total (as OpenAI and
Anthropic report them; a Gemini importer adds its thought tokens into output first). So a call with
input_tokens=1000 of which cache_read=800 is charged 200 at the input rate and 800 at the cache-read
rate, never 1000 + 800.

Invariants: a book never holds two different entries for one (provider, model, effective_from_us);
a book is never changed in place (``with_entry`` returns a new one); the cost breakdown's total is
the sum of its rounded parts (rule in ``ledger.economics.money``).
Never: price an unknown model, or an event before the model's first entry, as $0; that is an
``EconomicsError`` with code ``unknown_model`` and the provider, model and event time as evidence.
The only I/O is ``default_price_book`` reading the shipped data file.
"""

from __future__ import annotations

import bisect
import functools
import importlib.resources
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ledger import limits
from ledger.economics.money import (
    check_event_time_us,
    check_rate,
    check_result_micros,
    check_tokens,
    cost_micros,
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


class PriceBook:
    """An immutable set of ``ModelPrice`` entries, kept sorted by effective time per model."""

    __slots__ = ("_entries", "_starts")

    def __init__(self, entries: Iterable[ModelPrice] = ()) -> None:
        by_model: dict[tuple[str, str], dict[int, ModelPrice]] = {}
        for count, price in enumerate(entries, start=1):
            if count > limits.MAX_PRICE_BOOK_ENTRIES:
                raise ValidationError("entries", count, f"a price book holds at most {limits.MAX_PRICE_BOOK_ENTRIES:,}")
            if not isinstance(price, ModelPrice):
                raise ValidationError("entry", price, "must be a ModelPrice")
            same_time = by_model.setdefault(price.key, {})
            known = same_time.get(price.effective_from_us)
            if known is not None and not known.same_rates(price):
                # Two different prices for one instant would make pricing depend on arrival order.
                raise ValidationError("effective_from_us", price.effective_from_us,
                                      "a different price for this model is already in force from this time",
                                      provider=price.provider, model=price.model)
            same_time[price.effective_from_us] = price  # an identical entry again is a no-op
        self._entries: dict[tuple[str, str], tuple[ModelPrice, ...]] = {
            key: tuple(prices[t] for t in sorted(prices)) for key, prices in sorted(by_model.items())
        }
        self._starts: dict[tuple[str, str], tuple[int, ...]] = {
            key: tuple(p.effective_from_us for p in prices) for key, prices in self._entries.items()
        }

    def with_entry(self, price: ModelPrice) -> PriceBook:
        """A new book with ``price`` added (an identical entry already there changes nothing)."""
        return PriceBook((*self.entries(), price))

    def entries(self) -> tuple[ModelPrice, ...]:
        """Every entry, ordered by provider, model, effective time."""
        return tuple(price for prices in self._entries.values() for price in prices)

    def models(self) -> tuple[tuple[str, str], ...]:
        """Every (provider, model) the book prices, sorted."""
        return tuple(self._entries)

    def price_at(self, provider: str, model: str, event_time_us: int) -> ModelPrice:
        """The entry in force for (provider, model) at ``event_time_us``; never a silent $0."""
        _check_name("provider", provider)
        _check_name("model", model)
        check_event_time_us("event_time_us", event_time_us)
        key = (provider, model)
        starts = self._starts.get(key)
        if starts is None:
            raise EconomicsError("unknown model: no price-book entry for this provider and model",
                                 code=RejectCode.UNKNOWN_MODEL.value, provider=provider, model=model,
                                 event_time=event_time_us,
                                 hint="add a price-book entry for the model (a price control event)")
        index = bisect.bisect_right(starts, event_time_us) - 1
        if index < 0:
            raise EconomicsError("no price in force: the model's first price-book entry is later than the event",
                                 code=RejectCode.UNKNOWN_MODEL.value, provider=provider, model=model,
                                 event_time=event_time_us, earliest_effective_from_us=starts[0])
        return self._entries[key][index]

    def __len__(self) -> int:
        return sum(len(prices) for prices in self._entries.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceBook) and self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self.entries())

    def __repr__(self) -> str:
        return f"PriceBook({len(self)} entries, {len(self._entries)} models)"


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
    parts = {
        "uncached_input": cost_micros(uncached_tokens, price.input),
        "cache_read": cost_micros(cache_read_tokens, price.cache_read),
        "cache_write": cost_micros(cache_write_tokens, price.cache_write),
        "output": cost_micros(plain_output_tokens, price.output),
        "reasoning": cost_micros(reasoning_tokens, price.reasoning),
    }
    total = check_result_micros("total", sum(parts.values()))
    return UsageCost(price=price, uncached_input_tokens=uncached_tokens, plain_output_tokens=plain_output_tokens,
                     total=total, **parts)

