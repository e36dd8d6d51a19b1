"""One price-in-force rule for every processor, on both log backends.

The reproduction: an agent with a USD budget makes one call of 1,000,000 input tokens on a model priced
$1/MTok; the processors run; then a corrected price of $5/MTok is appended **back-dated** (its effective
time before the call, recorded after it); the processors run again. A replay from offset 0 reads every
control event before the first data record, so if a back-dated price applied from its declared time the
replay would charge $5 where the live run charged $1 and the digests would differ. The rule
(ledger.economics.pricing): a price is in force from max(declared effective time, its own event time), so
the call costs $1 live and on replay, and the correction prices only what comes after it was recorded.

Also: the shipped default book enters only as control events; a log without a price for a model leaves
its calls unpriced (never silently priced from a Python table).
"""

from __future__ import annotations

import pytest
from support.econ import call, control, emit_as, replay_equal, rows
from test_budgets_processor import BACKENDS, CTX, budget, kafka_home, policy, replayed
from test_budgets_processor import run as run_processor

from ledger.economics.price_events import default_price_events, price_event_time_us
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, make_home
from ledger.wire.events import PriceSet
from processors.host.service import live_digest

MODEL = ("acme", "m1")
MTOK = 1_000_000
CALL_US = T0 + 1_000  # the call's event time
RECORDED_US = T0 + 5_000  # when the correction is recorded: after the call
AFTER_US = T0 + 9_000  # a second call, after the correction was recorded


def price(usd_per_mtok: int, effective_from_us: int) -> PriceSet:
    rate = usd_per_mtok * MTOK  # micro-USD per million tokens
    return PriceSet(provider=MODEL[0], model=MODEL[1], input_micros_per_mtok=rate, output_micros_per_mtok=rate,
                    cache_read_micros_per_mtok=rate, cache_write_micros_per_mtok=rate,
                    effective_from_us=effective_from_us)


def home_for(backend: str, request: pytest.FixtureRequest, tmp_path) -> Home:
    if backend == "kafka":
        return kafka_home(tmp_path / "home", request.getfixturevalue("kafka_url"), ("alice", "bob"))
    return make_home(tmp_path / "home", agents=("alice", "bob"))


def llm_call(h: Home, t: int) -> None:
    with Emitter.open("alice", home=h.path, context=CTX, background_flush=False) as em:
        em.action("llm", provider=MODEL[0], model=MODEL[1], input_tokens=MTOK, output_tokens=0, event_time_us=t)


def interaction(h: Home, iid: str, t: int) -> None:
    # a request of 1 MTok (written by alice, read by bob) and no response: 2 MTok at the one rate of MODEL
    emit_as(h, "alice", [(call(iid, "alice", "bob", req_model=MODEL, resp_model=MODEL, request=MTOK, response=0), t)])


# the correction's declared effective time: the original's own instant, or later but still before the call
BACK_DATES = [pytest.param(T0, id="same-instant"), pytest.param(T0 + 500, id="before-call")]


@pytest.mark.parametrize("back_date", BACK_DATES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_back_dated_price_budgets_replay_equals_live(backend, back_date, request, tmp_path):
    h = home_for(backend, request, tmp_path)
    policy(h, "agent", "alice", "usd", 100 * MTOK)
    control(h, [price(1, T0)], t=T0 + 10)
    llm_call(h, CALL_US)
    run_processor(h, "budgets")
    assert budget(h, "agent", "alice", "usd")["consumed"] == 1 * MTOK
    control(h, [price(5, back_date)], t=RECORDED_US)  # back-dated: declared in force before the call
    run_processor(h, "budgets")
    # the call keeps the price in force when it was made; the correction is visible with its declared time
    assert budget(h, "agent", "alice", "usd")["consumed"] == 1 * MTOK
    assert live_digest(h, "budgets")["digest"] == replayed(h, "budgets")["digest"]
    # a call after the correction was recorded pays the corrected price, live and on replay
    llm_call(h, AFTER_US)
    run_processor(h, "budgets")
    assert budget(h, "agent", "alice", "usd")["consumed"] == (1 + 5) * MTOK
    assert live_digest(h, "budgets")["digest"] == replayed(h, "budgets")["digest"]


@pytest.mark.parametrize("back_date", BACK_DATES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_back_dated_price_allocations_replay_equals_live(backend, back_date, request, tmp_path):
    h = home_for(backend, request, tmp_path)
    control(h, [price(1, T0)], t=T0 + 10)
    interaction(h, "before", CALL_US)
    run_processor(h, "allocations")
    control(h, [price(5, back_date)], t=RECORDED_US)
    run_processor(h, "allocations")
    interaction(h, "after", AFTER_US)
    run_processor(h, "allocations")
    got = dict(rows(h, "allocations", "SELECT interaction_id, total_micros FROM interactions"))
    assert got == {"before": 2 * 1 * MTOK, "after": 2 * 5 * MTOK}
    (declared,) = rows(h, "allocations", f"SELECT effective_from_us, in_force_from_us FROM prices "
                                         f"WHERE input_micros_per_mtok = {5 * MTOK}")
    assert declared == (back_date, RECORDED_US)  # the declared time stays visible; in force from when it was recorded
    assert replay_equal(h, "allocations")


@pytest.mark.parametrize("with_book", [False, True])
def test_budgets_price_only_from_the_log(tmp_path, with_book):
    """No price_set on the log: a model of the shipped book is unpriced (no Python fallback); with the
    book's control events on the log (as `tokenledger init` appends them, before any call) it is priced."""
    h = make_home(tmp_path / "home", agents=("alice",))
    if with_book:
        control(h, default_price_events(), times=[price_event_time_us(b) for b in default_price_events()])
    policy(h, "agent", "alice", "usd", 100 * MTOK)
    with Emitter.open("alice", home=h.path, context=CTX, background_flush=False) as em:
        em.action("llm", provider="anthropic", model="claude-sonnet-4-6", input_tokens=MTOK, output_tokens=0,
                  event_time_us=CALL_US)
    run_processor(h, "budgets")
    usd = budget(h, "agent", "alice", "usd")
    assert (usd["consumed"], usd["unpriced_calls"]) == ((3 * MTOK, 0) if with_book else (0, 1))  # sonnet: $3/MTok
    assert live_digest(h, "budgets")["digest"] == replayed(h, "budgets")["digest"]


def test_catalog_sync_dated_ids_and_a_back_dated_set_replay_equal(tmp_path):
    """The catalog's lines and rules on the log (what `prices sync` appends), calls that report dated ids, then a
    back-dated correction of one model: every call is priced by its resolved model — the budget counts what the
    catalog charges — and a replay of allocations and budgets from offset 0 equals the live state."""
    from datetime import UTC, datetime

    from genai_prices import Usage, calc_price

    from ledger.economics.catalog import catalog_book, sync_plan
    from ledger.economics.pricing import PriceBook

    h = make_home(tmp_path / "home", agents=("alice", "bob"))
    control(h, sync_plan(PriceBook(), catalog_book(["anthropic", "openai"]), T0), t=T0 + 10)
    policy(h, "agent", "alice", "usd", 100 * MTOK)
    haiku, gpt = ("anthropic", "claude-haiku-4-5-20251001"), ("openai", "gpt-4.1-2025-04-14")
    with Emitter.open("alice", home=h.path, context=CTX, background_flush=False) as em:
        em.action("llm", provider=haiku[0], model=haiku[1], input_tokens=MTOK, output_tokens=0, event_time_us=CALL_US)
    emit_as(h, "alice", [(call("i1", "alice", "bob", req_model=haiku, resp_model=gpt), CALL_US + 1)])
    for name in ("allocations", "budgets"):
        run_processor(h, name)
    at = datetime.fromtimestamp(CALL_US / 1e6, tz=UTC)
    want = calc_price(Usage(input_tokens=MTOK), haiku[1], provider_id=haiku[0], genai_request_timestamp=at)
    assert budget(h, "agent", "alice", "usd")["consumed"] == int(want.total_price * MTOK)
    assert rows(h, "allocations", "SELECT count(*) FROM unpriced") == [(0,)]
    # a correction declared from before the call, recorded after it: in force only from when it was recorded
    fix = PriceSet(provider="anthropic", model="claude-haiku-4-5", input_micros_per_mtok=9 * MTOK,
                   output_micros_per_mtok=9 * MTOK, cache_read_micros_per_mtok=9 * MTOK,
                   cache_write_micros_per_mtok=9 * MTOK, effective_from_us=T0 + 500)
    control(h, [fix], t=RECORDED_US)
    with Emitter.open("alice", home=h.path, context=CTX, background_flush=False) as em:
        em.action("llm", provider=haiku[0], model=haiku[1], input_tokens=MTOK, output_tokens=0, event_time_us=AFTER_US)
    for name in ("allocations", "budgets"):
        run_processor(h, name)
    assert budget(h, "agent", "alice", "usd")["consumed"] == int(want.total_price * MTOK) + 9 * MTOK
    for name in ("allocations", "budgets"):
        assert replay_equal(h, name), name
