"""ledger.economics.pricing: the default book against the reference table, effective-dated lookup, unknown
models as rejections, the input partition (cache read/write are parts of input), and strict parsing.

Differential: ``context_window_economics`` (test oracle only) prices input as
(tokens - cached) x input + cached x cache_hit and output as tokens x output, in float USD; our
micro-USD must agree within half a micro per rounded token class.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from context_window_economics.schema import DEFAULT_PROVIDER_PRICING, AgentPricing
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.economics.money import MAX_EVENT_TIME_US, cost_micros
from ledger.economics.pricing import (
    PRICE_ROW_COLUMNS,
    ModelPrice,
    PriceBook,
    default_price_book,
    in_force_from_us,
    price_book_from_json,
    price_book_from_rows,
    usage_cost,
)
from ledger.errors import EconomicsError, RejectCode, ValidationError
from ledger.wire.events import PriceSet

FAST = settings(max_examples=200, deadline=None)
REFERENCE_MODELS = sorted((p, m) for p, models in DEFAULT_PROVIDER_PRICING.items() for m in models)


def usd_float_to_micros(usd: float) -> int:
    """A reference table rate (a short decimal literal stored as a float) as exact micro-USD."""
    return int(Decimal(repr(usd)) * 1_000_000)


def price(model: str = "m", *, effective_from_us: int = 0, input: int = 3_000_000) -> ModelPrice:
    return ModelPrice(provider="p", model=model, input=input, output=15_000_000, cache_read=300_000,
                      cache_write=3_750_000, effective_from_us=effective_from_us)


# ------------------------------------------------------------------ the default book


def test_default_book_is_the_reference_table() -> None:
    book = default_price_book()
    assert book.models() == tuple(REFERENCE_MODELS)
    for provider, model in REFERENCE_MODELS:
        rates = DEFAULT_PROVIDER_PRICING[provider][model]
        entry = book.price_at(provider, model, 0)
        assert entry.effective_from_us == 0
        assert entry.input == usd_float_to_micros(rates["input"])
        assert entry.output == usd_float_to_micros(rates["output"])
        assert entry.cache_read == usd_float_to_micros(rates["cache_hit"])
        assert entry.reasoning == entry.output


def test_default_book_cache_write_choice() -> None:
    """Anthropic 5-minute cache writes cost 1.25x input; OpenAI and Google add no write surcharge."""
    for entry in default_price_book().entries():
        if entry.provider == "anthropic":
            assert 4 * entry.cache_write == 5 * entry.input
        else:
            assert entry.cache_write == entry.input
    haiku = default_price_book().price_at("anthropic", "claude-haiku-4-5", 0)
    assert (haiku.input, haiku.cache_read, haiku.cache_write) == (250_000, 25_000, 312_500)


def test_default_book_is_cached_and_immutable() -> None:
    assert default_price_book() is default_price_book()
    book = default_price_book()
    grown = book.with_entry(price())
    assert len(grown) == len(book) + 1 and len(default_price_book()) == 7


# ------------------------------------------------------------------ effective-dated lookup


@FAST
@given(st.lists(st.integers(0, MAX_EVENT_TIME_US), min_size=1, max_size=8, unique=True),
       st.integers(0, MAX_EVENT_TIME_US))
def test_price_at_returns_the_latest_entry_in_force(starts: list[int], event_time_us: int) -> None:
    book = PriceBook(price(effective_from_us=t, input=1_000 + i) for i, t in enumerate(starts))
    in_force = [t for t in starts if t <= event_time_us]
    if not in_force:
        with pytest.raises(EconomicsError) as caught:
            book.price_at("p", "m", event_time_us)
        assert caught.value.evidence["code"] == RejectCode.UNKNOWN_MODEL.value
        assert caught.value.evidence["earliest_effective_from_us"] == min(starts)
        return
    found = book.price_at("p", "m", event_time_us)
    assert found.effective_from_us == max(in_force)
    assert found.input == 1_000 + starts.index(max(in_force))


def test_price_changes_apply_from_their_time_only() -> None:
    book = PriceBook([price(effective_from_us=0, input=3_000_000)]).with_entry(
        price(effective_from_us=1_000, input=2_000_000))
    assert book.price_at("p", "m", 999).input == 3_000_000
    assert book.price_at("p", "m", 1_000).input == 2_000_000
    assert book.price_at("p", "m", MAX_EVENT_TIME_US).input == 2_000_000


@pytest.mark.parametrize(("provider", "model"), [
    ("anthropic", "gpt-4.1"),  # a real model under the wrong provider
    ("anthropic", "claude-opus-9"),
    ("mistral", "mistral-large"),
    ("openai", "gpt-4.1-2025-04-14"),  # a dated id, and the book has no match rule
])
def test_unknown_model_is_a_rejection_with_evidence_never_zero(provider: str, model: str) -> None:
    with pytest.raises(EconomicsError) as caught:
        default_price_book().price_at(provider, model, 1_700_000_000_000_000)
    evidence = caught.value.evidence
    assert evidence["code"] == RejectCode.UNKNOWN_MODEL.value == "unknown_model"
    assert (evidence["provider"], evidence["model"], evidence["event_time"]) == (provider, model,
                                                                                  1_700_000_000_000_000)


def test_price_at_checks_its_arguments() -> None:
    book = default_price_book()
    for bad_time in (-1, 1.5, True, float("nan"), MAX_EVENT_TIME_US + 1):
        with pytest.raises(ValidationError) as caught:
            book.price_at("openai", "o3", bad_time)  # type: ignore[arg-type]
        assert caught.value.field == "event_time_us"
    for bad_name in ("", " o3", None, 3):
        with pytest.raises(ValidationError):
            book.price_at("openai", bad_name, 0)  # type: ignore[arg-type]


def test_conflicting_entries_are_refused_identical_ones_are_idempotent() -> None:
    book = PriceBook([price()])
    assert book.with_entry(price()) == book
    with pytest.raises(ValidationError) as caught:
        book.with_entry(price(input=1))
    assert caught.value.field == "effective_from_us"
    assert len(book) == 1  # the old book is unchanged


def test_model_price_validates_rates() -> None:
    for field in ("input", "output", "cache_read", "cache_write", "reasoning", "effective_from_us"):
        for bad in (-1, 1.5, True, float("inf"), 10**15 * 10**6):
            fields = dict(provider="p", model="m", input=1, output=1, cache_read=1, cache_write=1)
            fields[field] = bad
            with pytest.raises(ValidationError) as caught:
                ModelPrice(**fields)  # type: ignore[arg-type]
            assert caught.value.field == field
    assert ModelPrice(provider="p", model="m", input=1, output=7, cache_read=1, cache_write=1).reasoning == 7
    assert ModelPrice(provider="p", model="m", input=1, output=7, cache_read=1, cache_write=1,
                      reasoning=9).reasoning == 9


# ------------------------------------------------------------------ one LLM call

usage_counts = st.tuples(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9),
                         st.integers(0, 10**9), st.integers(0, 10**9))


@FAST
@given(st.sampled_from(REFERENCE_MODELS), usage_counts)
def test_cache_tokens_are_parts_of_input_never_counted_twice(model: tuple[str, str],
                                                             counts: tuple[int, ...]) -> None:
    read, write, uncached, plain_output, reasoning = counts
    entry = default_price_book().price_at(*model, 0)
    cost = usage_cost(entry, input_tokens=uncached + read + write, output_tokens=plain_output + reasoning,
                      cache_read_tokens=read, cache_write_tokens=write, reasoning_tokens=reasoning)
    assert cost.uncached_input_tokens == uncached and cost.plain_output_tokens == plain_output
    assert cost.uncached_input == cost_micros(uncached, entry.input)
    assert cost.cache_read == cost_micros(read, entry.cache_read)
    assert cost.cache_write == cost_micros(write, entry.cache_write)
    assert cost.output == cost_micros(plain_output, entry.output)
    assert cost.reasoning == cost_micros(reasoning, entry.reasoning)  # type: ignore[arg-type]
    assert cost.total == cost.uncached_input + cost.cache_read + cost.cache_write + cost.output + cost.reasoning


@FAST
@given(st.sampled_from(REFERENCE_MODELS), st.integers(0, 10**9), st.integers(0, 10**9), st.data())
def test_usage_cost_matches_reference_pricing(model: tuple[str, str], input_tokens: int, output_tokens: int,
                                              data: st.DataObject) -> None:
    cached = data.draw(st.integers(0, input_tokens))
    reference = AgentPricing.from_provider(*model)
    expected_usd = reference.input_cost(input_tokens, cached) + reference.output_cost(output_tokens)
    cost = usage_cost(default_price_book().price_at(*model, 0), input_tokens=input_tokens,
                      output_tokens=output_tokens, cache_read_tokens=cached)
    assert abs(cost.total - expected_usd * 1e6) <= 1.5 + 1e-3  # three rounded classes, half a micro each


def test_cache_write_is_priced_once_at_the_write_rate() -> None:
    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    cost = usage_cost(sonnet, input_tokens=1_000_000, output_tokens=0, cache_write_tokens=1_000_000)
    assert (cost.uncached_input, cost.cache_write, cost.total) == (0, 3_750_000, 3_750_000)
    cost = usage_cost(sonnet, input_tokens=1_000_000, output_tokens=0, cache_read_tokens=800_000)
    assert cost.total == 200_000 * 3 + 800_000 * 3 // 10  # $0.60 uncached + $0.24 cache read


def test_parts_above_their_total_are_refused() -> None:
    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    with pytest.raises(ValidationError) as caught:
        usage_cost(sonnet, input_tokens=100, output_tokens=0, cache_read_tokens=60, cache_write_tokens=41)
    assert caught.value.field == "cache_read_tokens"
    with pytest.raises(ValidationError) as caught:
        usage_cost(sonnet, input_tokens=0, output_tokens=10, reasoning_tokens=11)
    assert caught.value.field == "reasoning_tokens"


@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                                   "reasoning_tokens"])
@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, 2.0, 10**15 + 1])
def test_usage_cost_refuses_bad_counts(field: str, bad: object) -> None:
    counts: dict[str, object] = dict(input_tokens=10, output_tokens=10)
    counts[field] = bad
    with pytest.raises(ValidationError) as caught:
        usage_cost(default_price_book().price_at("openai", "o3", 0), **counts)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_usage_cost_needs_a_price() -> None:
    with pytest.raises(ValidationError):
        usage_cost({"input": 1}, input_tokens=1, output_tokens=1)  # type: ignore[arg-type]


# ------------------------------------------------------------------ parsing


def _document(**entry_changes: object) -> str:
    entry = {"provider": "p", "model": "m", "effective_from_us": 0, "input": "3.00", "output": "15.00",
             "cache_read": "0.30", "cache_write": "3.75"}
    entry.update(entry_changes)
    return json.dumps({"format": "tokenledger.price_book.v1", "entries": [entry]})


def test_price_book_json_parses_rates_exactly() -> None:
    entry = price_book_from_json(_document(reasoning="60.000001")).entries()[0]
    assert (entry.input, entry.cache_read, entry.reasoning) == (3_000_000, 300_000, 60_000_001)


@pytest.mark.parametrize("text", [
    "not json", "[]", json.dumps({"format": "other", "entries": []}),
    json.dumps({"format": "tokenledger.price_book.v1", "entries": {}}),
    json.dumps({"format": "tokenledger.price_book.v1", "entries": [], "extra": 1}),
    _document(input=3.0), _document(input="3.0000001"), _document(input="-3"), _document(colour="red"),
    _document(effective_from_us=-1), _document(effective_from_us="0"), _document(model=""),
])
def test_price_book_json_is_strict(text: str) -> None:
    with pytest.raises(ValidationError):
        price_book_from_json(text)


def test_missing_fields_are_named() -> None:
    document = json.loads(_document())
    del document["entries"][0]["cache_write"]
    with pytest.raises(ValidationError) as caught:
        price_book_from_json(json.dumps(document))
    assert "cache_write" in str(caught.value)


def test_price_book_refuses_non_entries() -> None:
    with pytest.raises(ValidationError):
        PriceBook([{"provider": "p"}])  # type: ignore[list-item]


def test_price_set_events_become_entries() -> None:
    body = PriceSet(provider="openai", model="o3", input_micros_per_mtok=2_000_000, output_micros_per_mtok=8_000_000,
                    cache_read_micros_per_mtok=500_000, cache_write_micros_per_mtok=2_000_000,
                    effective_from_us=1_700_000_000_000_000)
    entry = ModelPrice.from_price_set(body)
    assert entry == ModelPrice(provider="openai", model="o3", input=2_000_000, output=8_000_000, cache_read=500_000,
                               cache_write=2_000_000, effective_from_us=1_700_000_000_000_000)
    assert entry.reasoning == 8_000_000
    book = default_price_book().with_entry(entry)
    assert book.price_at("openai", "o3", 1_700_000_000_000_000) is entry
    assert book.price_at("openai", "o3", 1_699_999_999_999_999).effective_from_us == 0
    with pytest.raises(ValidationError):
        ModelPrice.from_price_set({"provider": "openai"})  # type: ignore[arg-type]


# ------------------------------------------------------------------ the price-in-force rule (price_set events)


def price_set(input_micros: int, effective_from_us: int, model: str = "m") -> PriceSet:
    return PriceSet(provider="p", model=model, input_micros_per_mtok=input_micros, output_micros_per_mtok=15_000_000,
                    cache_read_micros_per_mtok=300_000, cache_write_micros_per_mtok=3_750_000,
                    effective_from_us=effective_from_us)


def test_a_price_never_applies_before_its_own_event_time() -> None:
    """Back-dated: declared from 1_000, recorded at 5_000: in force from 5_000, the declared time kept."""
    book = PriceBook().with_price_set(price_set(1_000_000, 0), 10).with_price_set(price_set(5_000_000, 1_000), 5_000)
    assert book.price_at("p", "m", 4_999).input == 1_000_000
    assert book.price_at("p", "m", 5_000).input == 5_000_000
    entry = book.in_force_at("p", "m", 5_000)
    assert (entry.effective_from_us, entry.event_time_us, entry.in_force_from_us, entry.seq) == (1_000, 5_000, 5_000, 2)
    # not back-dated: a future effective time is kept as declared
    future = book.with_price_set(price_set(7_000_000, 9_000), 6_000)
    assert future.price_at("p", "m", 8_999).input == 5_000_000 and future.price_at("p", "m", 9_000).input == 7_000_000
    assert in_force_from_us(1_000, 5_000) == 5_000 and in_force_from_us(9_000, 6_000) == 9_000
    # before the first entry is in force: unknown, never $0, with both times as evidence
    with pytest.raises(EconomicsError) as caught:
        book.price_at("p", "m", 9)
    assert caught.value.evidence["earliest_in_force_from_us"] == 10
    assert caught.value.evidence["earliest_effective_from_us"] == 0


@FAST
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), min_size=1, max_size=8),
       st.integers(0, 100))
def test_price_sets_apply_in_log_order(events: list[tuple[int, int]], event_time_us: int) -> None:
    """Against a direct statement of the rule: the latest (max(effective, recorded), log position) <= t."""
    book = PriceBook()
    for i, (effective, recorded) in enumerate(events):
        book = book.with_price_set(price_set(1_000 + i, effective), recorded)
    assert book.applied == len(events) and len(book) == len(events)
    starts = [(max(effective, recorded), i) for i, (effective, recorded) in enumerate(events)]
    in_force = [key for key in starts if key[0] <= event_time_us]
    if not in_force:
        with pytest.raises(EconomicsError):
            book.price_at("p", "m", event_time_us)
        return
    assert book.price_at("p", "m", event_time_us).input == 1_000 + max(in_force)[1]  # equal starts: later wins


def test_price_book_rows_round_trip_and_last_applied() -> None:
    assert PriceBook().last_applied is None and PriceBook().applied == 0
    book = PriceBook()
    rows = []
    for body, t in ((price_set(1_000_000, 0), 10), (price_set(2_000_000, 0, model="n"), 20),
                    (price_set(5_000_000, 0), 30)):
        book = book.with_price_set(body, t)
        assert book.last_applied is not None
        rows.append(book.last_applied.row())
    assert [r["seq"] for r in rows] == [1, 2, 3] and rows[2]["in_force_from_us"] == 30
    assert rows[2]["effective_from_us"] == 0 and rows[2]["announced_us"] == 30
    # read back in any order: the same book (the view's row order is not the log order; seq is)
    again = price_book_from_rows(reversed(rows))
    assert again == book and again.applied == 3 and again.last_applied == book.last_applied
    with pytest.raises(ValidationError) as caught:
        price_book_from_rows(rows[1:])  # a gap in the log order: refused, never silently re-numbered
    assert caught.value.field == "seq"


def test_price_book_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger import limits

    monkeypatch.setattr(limits, "MAX_PRICE_BOOK_ENTRIES", 2)
    book = PriceBook().with_price_set(price_set(1, 0), 10).with_price_set(price_set(2, 0), 20)
    with pytest.raises(ValidationError) as caught:
        book.with_price_set(price_set(3, 0), 30)
    assert caught.value.field == "entries" and book.applied == 2


def test_price_row_columns_name_exactly_what_a_row_holds() -> None:
    """Processors declare their price views with PRICE_ROW_COLUMNS and store ``row()``: the two must agree,
    in order, or a restore would read a column the view does not have."""
    book = PriceBook().with_price_set(price_set(1_000, 0), 10)
    assert book.last_applied is not None
    assert [name for name, _, _ in PRICE_ROW_COLUMNS] == list(book.last_applied.row())
    assert all(sql_type in ("VARCHAR", "BIGINT") and meaning for _, sql_type, meaning in PRICE_ROW_COLUMNS)
