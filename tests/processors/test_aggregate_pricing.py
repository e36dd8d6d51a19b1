"""Aggregates (a usage report's result: many calls summed into one event) are priced as the calls they sum: the
per-request fee counts ``num_model_requests`` times and the prompt-size tier is chosen by the mean input per request,
never by the summed input (which would push a bucket of short prompts into the long-prompt tier)."""

from __future__ import annotations

from pathlib import Path

from support.econ import control, econ_home, rows, run

from ledger.economics.pricing import (
    AGGREGATE_OPERATION,
    LABEL_NUM_MODEL_REQUESTS,
    ModelPrice,
    aggregate_shape,
    usage_cost,
)
from ledger.sdk.emitter import Emitter
from ledger.testing.homes import T0
from ledger.wire.events import Action, BudgetPolicy, Context, LlmUsage, PriceSet

BASE = ModelPrice(provider="acme-ai", model="m1", input=2_000_000, output=8_000_000, cache_read=500_000,
                  cache_write=2_000_000, request_per_k=10_000)


def test_the_shape_of_an_aggregate():
    labels = ((LABEL_NUM_MODEL_REQUESTS, "40"),)
    assert aggregate_shape("llm.call", labels, 1_000_000) == (1, 1_000_000, True)
    assert aggregate_shape(AGGREGATE_OPERATION, labels, 1_000_000) == (40, 25_000, True)
    assert aggregate_shape(AGGREGATE_OPERATION, (("context_window", "200k-1M"),), 9_000_000) == (1, 200_001, False)
    assert aggregate_shape(AGGREGATE_OPERATION, (("context_window", "0-200k"),), 9_000_000) == (1, 0, False)
    assert aggregate_shape(AGGREGATE_OPERATION, ((LABEL_NUM_MODEL_REQUESTS, "0"),), 50) == (1, 0, False)


def test_an_aggregate_pays_the_request_fee_per_request_at_the_tier_of_its_mean_prompt(tmp_path: Path):
    h = econ_home(tmp_path, agents=("importer",))
    control(h, [PriceSet("acme-ai", "m1", 2_000_000, 8_000_000, 500_000, 2_000_000, request_micros_per_k=10_000),
                PriceSet("acme-ai", "m1", 4_000_000, 12_000_000, 1_000_000, 4_000_000, above_input_tokens=200_000,
                         request_micros_per_k=10_000),
                BudgetPolicy("agent", "importer", "usd", 10**12, 86_400_000_000)])
    usage = LlmUsage("acme-ai", "m1", 4_000_000, 400_000, 1_000_000, 0)  # 40 calls of 100k input: base tier
    log = h.open_log()
    try:
        with Emitter(log, h.load_key("importer"), topic=h.topic, state_dir=h.state_dir,
                     background_flush=False) as em:
            em.emit(Action(AGGREGATE_OPERATION, usage=usage), event_time_us=T0 + 100,
                    context=Context(labels={LABEL_NUM_MODEL_REQUESTS: "40", "aggregate": "true"}))
            em.emit(Action("llm.call", usage=usage), event_time_us=T0 + 101)  # one call of 4M input: upper tier
    finally:
        log.close()
    run(h, "allocations")
    run(h, "budgets")
    got = rows(h, "allocations", "SELECT cost_micros FROM llm_calls ORDER BY event_time_us")
    expected = usage_cost(BASE, input_tokens=4_000_000, output_tokens=400_000, cache_read_tokens=1_000_000,
                          requests=40).total
    assert got[0][0] == expected  # base rates, 40 request fees
    assert got[1][0] != expected  # the same tokens as one call: the long-prompt tier
    assert rows(h, "allocations", "SELECT estimate, request_micros FROM llm_calls ORDER BY event_time_us")[0] == (
        False, 400)
    # budgets counts the same USD as allocations prices (it priced an aggregate as one call before)
    consumed = rows(h, "budgets", "SELECT max(consumed) FROM budgets WHERE scope = 'agent' AND scope_id = 'importer' "
                                  "AND budget_kind = 'usd'")
    assert consumed == [(got[0][0] + got[1][0],)]
