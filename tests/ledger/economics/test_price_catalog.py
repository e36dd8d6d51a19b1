"""The price catalog on the log: every expected price here comes from the installed catalog package (genai-prices
``calc_price``), never from constants copied into the test. The book built from ``catalog_book``'s control events
must resolve the ids real providers report to the model the catalog resolves them to, and price a call as the
catalog does (to within one micro-USD per priced part: the ledger rounds each part once, the catalog not at all)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from ledger.economics.catalog import DEFAULT_PROVIDERS, catalog_book, catalog_version, sync_plan
from ledger.economics.price_events import price_event_time_us
from ledger.economics.pricing import PriceBook, usage_cost
from ledger.errors import EconomicsError
from ledger.wire.events import PriceMatch, PriceSet

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
NOW_US = int(NOW.timestamp()) * 1_000_000
PARTS = 7  # uncached input, cache read, cache write, 1-hour cache write, output, reasoning, request fee


def seeded(providers=None) -> PriceBook:
    book = PriceBook()
    for body in [*catalog_book(providers).prices, *catalog_book(providers).matches]:
        if isinstance(body, PriceSet):
            book.apply_price_set(body, price_event_time_us(body))
        else:
            book.apply_price_match(body, price_event_time_us(body))
    return book


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return seeded()


def ours(book: PriceBook, provider: str, model: str, *, tier: str = "", **tokens: int) -> tuple[str, int]:
    q = book.quote(provider, model, NOW_US, service_tier=tier, input_tokens=tokens.get("input_tokens", 0))
    cost = usage_cost(q.entry.price, input_tokens=tokens.get("input_tokens", 0),
                      output_tokens=tokens.get("output_tokens", 0),
                      cache_read_tokens=tokens.get("cache_read_tokens", 0),
                      cache_write_tokens=tokens.get("cache_write_tokens", 0),
                      cache_write_1h_tokens=tokens.get("cache_write_1h_tokens", 0))
    return q.resolution.model, cost.total


def theirs(provider: str, model: str, *, context=None, **tokens: int) -> tuple[str, int]:
    calc = calc_price(Usage(**tokens), model, provider_id=provider, genai_request_timestamp=NOW, price_context=context)
    return calc.model.id, int((calc.total_price * 1_000_000).to_integral_value())


CALL = {"input_tokens": 12_000, "output_tokens": 900, "cache_read_tokens": 8_000, "cache_write_tokens": 1_000}


@pytest.mark.parametrize(("provider", "model"), [
    ("openai", "gpt-4.1-2025-04-14"),
    ("openai", "gpt-5-2025-08-07"),
    ("anthropic", "claude-haiku-4-5-20251001"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-opus-4-1-20250805"),
    ("google", "gemini-2.5-flash-preview-05-20"),
    ("google", "gemini-2.5-pro"),
    ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),  # a Bedrock cross-region inference profile id
    ("vertex_ai", "claude-sonnet-4-5@20250929"),  # a Vertex model id
    ("azure", "gpt-4.1"),  # Azure serves OpenAI's models: the catalog's fallback provider
    ("litellm", "openai/gpt-4.1"),  # a gateway's provider/ prefix
])
def test_dated_and_wrapped_ids_price_as_the_catalog_prices_them(book, provider, model):
    assert ours(book, provider, model, **CALL) == pytest.approx(theirs(provider, model, **CALL), abs=PARTS)
    assert ours(book, provider, model, **CALL)[0] == theirs(provider, model, **CALL)[0]


def test_claude_haiku_4_5_costs_what_the_catalog_says(book):
    one_mtok = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    got_model, got = ours(book, "anthropic", "claude-haiku-4-5", **one_mtok)
    want_model, want = theirs("anthropic", "claude-haiku-4-5", **one_mtok)
    assert (got_model, got) == (want_model, want)
    price = book.price_at("anthropic", "claude-haiku-4-5", NOW_US)
    snap = get_snapshot().find_provider_model("claude-haiku-4-5", None, "anthropic", None)[1]
    listed = snap.get_prices(NOW)
    assert (price.input, price.output) == (int(listed.input_mtok * 1_000_000), int(listed.output_mtok * 1_000_000))


def test_a_long_prompt_pays_the_long_context_tier(book):
    long = {"input_tokens": 250_000, "output_tokens": 2_000}
    short = {"input_tokens": 150_000, "output_tokens": 2_000}
    for provider, model in (("anthropic", "claude-sonnet-4-5"), ("google", "gemini-2.5-pro")):
        q = book.quote(provider, model, NOW_US, input_tokens=250_000)
        assert q.above_input_tokens == 200_000 and q.entry.price.input > book.price_at(provider, model, NOW_US).input
        assert ours(book, provider, model, **long)[1] == pytest.approx(theirs(provider, model, **long)[1], abs=PARTS)
        assert ours(book, provider, model, **short)[1] == pytest.approx(theirs(provider, model, **short)[1],
                                                                         abs=PARTS)


def test_one_hour_cache_writes_cost_more_where_the_catalog_says_so(book):
    five = {"input_tokens": 100_000, "output_tokens": 0, "cache_write_tokens": 100_000}
    hour = {**five, "cache_write_1h_tokens": 100_000}
    got5, got1h = ours(book, "anthropic", "claude-sonnet-4-5", **five)[1], ours(book, "anthropic",
                                                                                 "claude-sonnet-4-5", **hour)[1]
    assert got1h > got5
    assert got5 == pytest.approx(theirs("anthropic", "claude-sonnet-4-5", **five)[1], abs=PARTS)
    assert got1h == pytest.approx(theirs("anthropic", "claude-sonnet-4-5", **hour)[1], abs=PARTS)
    # OpenAI has no separate write price: a write costs input, whatever its lifetime
    assert ours(book, "openai", "gpt-4.1", **five)[1] == ours(book, "openai", "gpt-4.1", **hour)[1]


@pytest.mark.parametrize(("provider", "model", "tier", "context"), [
    ("openai", "gpt-4.1", "batch", {"processing": "batch"}),
    ("anthropic", "claude-sonnet-4-5", "batch", {"processing": "batch"}),
    ("openai", "gpt-5", "flex", {"service_tier": "flex"}),
    ("openai", "gpt-5", "priority", {"service_tier": "priority"}),
])
def test_service_tiers_price_as_the_catalog_prices_them(book, provider, model, tier, context):
    call = {"input_tokens": 40_000, "output_tokens": 5_000}
    got = ours(book, provider, model, tier=tier, **call)[1]
    assert got == pytest.approx(theirs(provider, model, context=context, **call)[1], abs=PARTS)
    standard = ours(book, provider, model, **call)[1]
    assert (got < standard) if tier in ("batch", "flex") else (got > standard)


def test_an_unknown_service_tier_pays_the_standard_rates(book):
    call = {"input_tokens": 40_000, "output_tokens": 5_000}
    q = book.quote("openai", "gpt-4.1", NOW_US, service_tier="scale")
    assert q.service_tier == "" and ours(book, "openai", "gpt-4.1", tier="scale", **call) == ours(book, "openai",
                                                                                                 "gpt-4.1", **call)


def test_every_seeded_model_prices_a_plain_call_as_the_catalog_does(book):
    """All of them, not a sample: a conversion bug in any one model's history, tiers or variants shows here."""
    call = {"input_tokens": 3_000, "output_tokens": 700}
    checked = 0
    for provider, model in book.models():
        try:
            want = theirs(provider, model, **call)
        except LookupError:
            continue
        if want[0] != model:
            continue  # the catalog's first-match order sends this id to another model: priced by its own line
        assert ours(book, provider, model, **call)[1] == pytest.approx(want[1], abs=PARTS), (provider, model)
        checked += 1
    assert checked > 300


def test_an_id_nothing_matches_stays_unpriced_with_evidence(book):
    with pytest.raises(EconomicsError) as caught:
        book.quote("anthropic", "not-a-model-at-all", NOW_US)
    assert caught.value.evidence["code"] == "unknown_model" and caught.value.evidence["model"] == "not-a-model-at-all"


def test_the_events_carry_the_catalog_version_and_are_distinct():
    cat = catalog_book()
    assert {b.source for b in cat.prices} | {m.source for m in cat.matches} == {catalog_version()}
    assert len(set(cat.prices)) == len(cat.prices) and len(set(cat.matches)) == len(cat.matches)
    assert {b.provider for b in cat.prices} == set(DEFAULT_PROVIDERS)


def test_a_sync_plan_applied_leaves_nothing_to_sync():
    cat = catalog_book(["anthropic", "openai"])
    book = PriceBook()
    plan = sync_plan(book, cat, NOW_US)
    assert plan and all(b.effective_from_us <= NOW_US or b.effective_from_us > NOW_US for b in plan)
    for body in plan:
        (book.apply_price_set if isinstance(body, PriceSet) else book.apply_price_match)(body, NOW_US)
    assert sync_plan(book, cat, NOW_US) == []
    # a changed price is the one line appended; a rule the catalog dropped is withdrawn
    changed = PriceSet(provider="anthropic", model="claude-haiku-4-5", input_micros_per_mtok=1,
                       output_micros_per_mtok=1, cache_read_micros_per_mtok=1, cache_write_micros_per_mtok=1)
    book.apply_price_set(changed, NOW_US + 1)
    stale = PriceMatch(provider="anthropic", rule='{"equals":"gone-model"}', target_provider="anthropic",
                       target_model="claude-haiku-4-5", source=cat.source)
    book.apply_price_match(stale, NOW_US + 1)
    again = sync_plan(book, cat, NOW_US + 2)
    assert {(b.model, b.service_tier) for b in again if isinstance(b, PriceSet)} == {("claude-haiku-4-5", "")}
    assert [(m.rule, m.active) for m in again if isinstance(m, PriceMatch)] == [('{"equals":"gone-model"}', False)]


def test_catalog_rates_are_exact_micro_usd():
    cat = catalog_book()
    assert cat.rounded == []  # every default-provider rate is a whole number of micro-USD per MTok
    for b in cat.prices[:50]:
        assert Decimal(b.input_micros_per_mtok) == Decimal(b.input_micros_per_mtok).to_integral_value()
