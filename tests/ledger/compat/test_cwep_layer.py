"""ledger.compat.cwep, the CWEP drop-in layer: its arithmetic is the ledger's (exact micro-USD shown as float USD),
its documented deviations hold, and each public function and class does what its docstring says.

Figures are worked by hand from the published rates (USD per million tokens): claude-sonnet-4-6 3 / 15 / 0.3,
claude-opus-4-6 5 / 25 / 0.5, claude-haiku-4-5 0.25 / 1.25 / 0.025.
"""

from __future__ import annotations

import json
import math

import pytest

from ledger.compat import cwep
from ledger.compat.cwep import allocation, caching, congestion, metering, schema, settlement, spam
from ledger.errors import ValidationError

SONNET, OPUS, HAIKU = "claude-sonnet-4-6", "claude-opus-4-6", "claude-haiku-4-5"


def cmr(requestor="req-1", responder="resp-1", *, req_model=SONNET, resp_model=SONNET, request=10_000,
        response=3_000, **kw):
    return metering.Meter(requestor, req_model).record_interaction(responder, resp_model, request_tokens=request,
                                                                   response_tokens=response, **kw)


# ------------------------------------------------------------------ schema and metering


def test_cmr_flows_are_priced_in_whole_micro_usd_per_flow():
    c = cmr(req_model=OPUS, resp_model=HAIKU, request=7_001, response=1_234, request_cached_tokens=1_001)
    # RO 7001 x $25/M = 0.175025; RI (6000 x 0.25 + 1001 x 0.025)/M = 0.0015 + 0.000025025 -> 0.001525 (micro rounded)
    # SO 1234 x $1.25/M = 0.0015425 -> 0.001542 (half to even); SI 1234 x $5/M = 0.00617
    assert [c.flows[k].cost_usd for k in schema.FLOW_KEYS] == [0.175025, 0.001525, 0.001542, 0.00617]
    assert c.totals.total_tokens == 7_001 * 2 + 1_234 * 2
    assert c.totals.requestor_incurred_usd == 0.181195 and c.totals.responder_incurred_usd == 0.003067
    assert c.totals.total_cost_usd == 0.184262


def test_record_flows_keeps_four_distinct_counts():
    c = metering.Meter("a").record_flows("b", ro_tokens=5_000, ri_tokens=5_500, ri_cached=500, so_tokens=2_000,
                                         si_tokens=2_100, si_cached=100)
    assert [(c.flows[k].tokens, c.flows[k].cached_tokens) for k in schema.FLOW_KEYS] == [
        (5_000, 0), (5_500, 500), (2_000, 0), (2_100, 100)]
    assert c.totals.total_tokens == 14_600
    # RI = 5000 x 3 + 500 x 0.3 = 15150 micro-USD; SI = 2000 x 3 + 100 x 0.3 = 6030
    assert c.flows["request_input"].cost_usd == 0.01515 and c.flows["response_input"].cost_usd == 0.00603


def test_cmr_json_round_trip_and_unknown_keys_refused():
    c = cmr(coc_chain_ref="coc:1", context_utilization_pre=0.25)
    again = schema.CostMeteringRecord.from_json(c.to_json())
    assert again.to_dict() == c.to_dict()
    bad = c.to_dict() | {"surprise": 1}
    with pytest.raises(ValidationError) as e:
        schema.CostMeteringRecord.from_dict(bad)
    assert e.value.field == "cmr.surprise"


def test_hand_built_cmr_compute_costs_and_bad_counts():
    c = schema.CostMeteringRecord(requestor=schema.AgentInfo("x", pricing=schema.AgentPricing(2.0, 8.0, 0.5)),
                                  responder=schema.AgentInfo("y", pricing=schema.AgentPricing(0.4, 1.6, 0.1)))
    c.flows["request_output"].tokens = 1_000
    c.flows["request_input"].tokens = 1_000
    c.compute_costs()
    assert c.totals.total_cost_usd == 0.0084  # 1000 x 8 + 1000 x 0.4 micro-USD
    c.flows["response_input"] = schema.TokenFlow(tokens=-1)
    with pytest.raises(ValidationError) as e:
        c.compute_costs()
    assert e.value.field == "flows.response_input.tokens"
    c.flows["response_input"] = schema.TokenFlow(tokens=10, cached_tokens=11)
    with pytest.raises(ValidationError):
        c.compute_costs()


@pytest.mark.parametrize(("kw", "field"), [({"request_tokens": -5}, "flows.request_output.tokens"),
                                          ({"request_tokens": 10.5}, "flows.request_output.tokens"),
                                          ({"response_tokens": "9"}, "flows.response_output.tokens")])
def test_meter_refuses_negative_and_non_integer_counts(kw, field):
    with pytest.raises(ValidationError) as e:
        metering.Meter("a").record_interaction("b", **kw)
    assert e.value.field == field


def test_unknown_model_and_sub_micro_rates_are_refused():
    with pytest.raises(ValueError, match="provider/model"):
        metering.Meter("a", model="gpt-4.1")  # a real model, but not under the default provider
    with pytest.raises(ValidationError) as e:
        schema.AgentPricing(3.0000001, 15.0).input_cost(1)
    assert e.value.field == "pricing.input_rate_per_mtok"


def test_pricing_helpers_and_estimate():
    p = schema.AgentPricing.from_provider("google", "gemini-2.5-pro")
    assert p.input_cost(8_000, 8_000) == 0.0025  # 8000 x 0.3125 micro-USD
    assert p.output_cost(3) == 0.00003
    assert metering.compute_flow_cost(1_000, 2.0, cached_tokens=400, cache_rate_per_mtok=0.5) == 0.0014
    est = metering.estimate_interaction_cost(20_000, 1_000, requestor_model=OPUS)
    assert est == {"ro": 0.5, "ri": 0.06, "so": 0.015, "si": 0.005, "total": 0.58, "requestor_incurred": 0.505,
                   "responder_incurred": 0.075}


def test_records_round_trip():
    for record in (schema.DepositRecord(requestor_id="a", amount_usd=0.25), schema.QoSConfig(tier="economy"),
                   schema.BackPressureSignal(cwep_status="congested", available_tiers=["priority"]),
                   schema.ContextReservation(capacity_tokens=42), schema.SettlementProposal(method="x"),
                   schema.ContextState(responder_window_size=9), schema.InteractionTotals(total_tokens=3)):
        assert type(record).from_dict(json.loads(json.dumps(record.to_dict()))) == record


# ------------------------------------------------------------------ allocation


def test_every_method_balances_exactly_with_the_ledger_figures():
    c = cmr(req_model=OPUS, resp_model=HAIKU, request=3_333, response=7_777)
    total = c.totals.total_cost_usd
    for method in ("requestor_pays", "responder_pays", "equal_split", "proportional", "shapley"):
        p = allocation.allocate(c, method)
        assert round((p.requestor_pays_usd + p.responder_pays_usd) * 1e6) == round(total * 1e6), method
    p = allocation.allocate(c, "nash_bargaining", value_a=0.3, value_b=0.2, alpha=0.25)
    assert round((p.requestor_pays_usd + p.responder_pays_usd) * 1e6) == round(total * 1e6)


def test_shapley_whitepaper_split_and_transfer():
    p = allocation.allocate_shapley(cmr())
    assert (p.method, p.requestor_pays_usd, p.responder_pays_usd) == ("shapley", 0.192, 0.042)
    assert (p.net_transfer_usd, p.transfer_direction) == (0.033, "requestor_to_responder")
    q = allocation.allocate_shapley(cmr(), standalone_cost_b=0.02)
    assert (q.requestor_pays_usd, q.responder_pays_usd, q.parameters["standalone_cost_b"]) == (0.182, 0.052, 0.02)


def test_clamped_shapley_conserves_money():
    p = allocation.allocate_shapley(cmr(), standalone_cost_b=1.0)  # x = (0.234 + 0.15 - 1) / 2 < 0
    assert (p.requestor_pays_usd, p.responder_pays_usd) == (0.0, 0.234)
    assert p.parameters["clamped"] == "requestor"


def test_zero_transfer_direction_is_empty_for_every_method():
    c = cmr(request=0, response=0)
    for method in ("requestor_pays", "responder_pays", "equal_split", "proportional", "shapley"):
        p = allocation.allocate(c, method)
        assert (p.net_transfer_usd, p.transfer_direction) == (0.0, ""), method


def test_nash_with_surplus_and_named_fallback_without():
    p = allocation.allocate_nash(cmr(), value_a=0.5, value_b=0.3, alpha=0.5)
    # S = 0.8 - 0.234 = 0.566; x = 0.5 - 0.283 = 0.217
    assert (p.method, p.requestor_pays_usd, p.responder_pays_usd) == ("nash_bargaining", 0.217, 0.017)
    q = allocation.allocate_nash(cmr(), value_a=0.1, value_b=0.1)
    assert (q.method, q.parameters["requested_method"], q.parameters["outcome"]) == (
        "proportional", "nash_bargaining", "no_surplus")
    assert q.parameters["surplus"] == -0.034


@pytest.mark.parametrize(("method", "kw", "field"), [
    ("nash_bargaining", {}, "value_a"),
    ("nash_bargaining", {"value_a": 1.0, "value_b": 1.0, "alpha": 1.5}, "alpha"),
    ("beneficiary_pays", {}, "method"),
    ("shapley", {"alhpa": 0.9}, "alhpa"),
    ("equal_split", {"standalone_cost_b": 0.1}, "standalone_cost_b"),
    ("shapley", {"standalone_cost_b": -0.1}, "standalone_cost_b"),
    ("nosuch", {}, "method"),
])
def test_allocate_refuses_what_the_reference_silently_accepts(method, kw, field):
    with pytest.raises(ValidationError) as e:
        allocation.allocate(cmr(), method, **kw)
    assert e.value.field == field


# ------------------------------------------------------------------ settlement


def test_engine_tiers_threshold_and_payment():
    assert settlement.SettlementEngine().propose(cmr()) is None  # tier 1 meters only
    tier3 = settlement.SettlementEngine(tier="tier_3_dynamic")
    assert tier3.propose(cmr()).requestor_pays_usd == 0.192
    assert settlement.SettlementEngine(tier="tier_2_rule_based", threshold_usd=0.234).propose(cmr()) is not None
    assert settlement.SettlementEngine(tier="tier_2_rule_based", threshold_usd=0.234001).propose(cmr()) is None
    c = cmr()
    receipt = tier3.settle(c)
    assert (receipt.from_agent, receipt.to_agent, receipt.amount_usd, receipt.status) == (
        "req-1", "resp-1", 0.033, "completed")
    assert c.settlement is not None and c.settlement.net_transfer_usd == 0.033
    assert settlement.SettlementEngine(tier="tier_3_dynamic", threshold_usd=0.034).settle(cmr()) is None


def test_engine_refuses_a_typo_tier():
    with pytest.raises(ValidationError) as e:
        settlement.SettlementEngine(tier="tier_2_rulebased")
    assert e.value.field == "tier"


def test_verify_proposals_tolerance_is_inclusive():
    engine = settlement.SettlementEngine(tolerance=0.1)
    a, b = schema.SettlementProposal(requestor_pays_usd=0.2), schema.SettlementProposal(requestor_pays_usd=0.18)
    assert engine.verify_proposals(a, b, total_cost=0.2) == (True, 0.02)  # 0.02 <= 10% of 0.2
    assert engine.verify_proposals(a, b, total_cost=0.199999) == (False, 0.02)


def test_batch_nets_per_agent_pair():
    batch = settlement.SettlementBatch(threshold_usd=0.05)
    batch.add(cmr("a", "b"))
    assert not batch.should_flush()  # one 0.033 transfer, below 0.05
    batch.add(cmr("b", "a"))  # the same interaction the other way round: the transfers cancel
    batch.add(cmr("a", "c"))
    batch.add(cmr("a", "c"))
    assert batch.should_flush()  # a -> c nets 0.066
    out = batch.flush()
    assert out["transfers"] == [{"payer": "a", "payee": "c", "amount_usd": 0.066}]
    assert (out["net_amount_usd"], out["direction"], out["interaction_count"]) == (0.066, "per_pair", 4)
    assert batch.count == 0 and batch.flush()["transfers"] == []


def test_cmr_hash_and_pair_check():
    c = cmr()
    assert settlement.cmr_hash(c) == settlement.cmr_hash(schema.CostMeteringRecord.from_dict(c.to_dict()))
    other = cmr(interaction_id=c.interaction_id)
    assert settlement.verify_cmr_pair(c, other)
    assert not settlement.verify_cmr_pair(c, cmr(interaction_id=c.interaction_id, request_cached_tokens=1))
    assert not settlement.verify_cmr_pair(c, cmr("someone-else", interaction_id=c.interaction_id))
    assert not settlement.verify_cmr_pair(c, cmr())


def test_default_rail():
    rail = settlement.PaymentRail()
    assert rail.commit_deposit(None) and rail.release_deposit(None) and rail.forfeit_deposit(None)
    assert rail.stream_open("a", "b", 0.001) == "stream-a-b"
    assert rail.stream_close("stream-a-b").status == "closed"


# ------------------------------------------------------------------ spam prevention


def test_reputation_and_deposits():
    assert [spam.classify_reputation(s) for s in (80.5, 80, 40.5, 40, 0, -1)] == [
        "high", "medium", "medium", "low", "low", "unknown"]
    quotes = [spam.calculate_deposit(50_000, 5.0, s) for s in (-1, 10, 50, 90)]
    assert quotes == [(1.875, "unknown"), (1.125, "low"), (0.375, "medium"), (0.0, "high")]
    dep = spam.create_deposit("a", "b", 50_000, 5.0, reputation_score=10, interaction_id="i-1")
    assert (dep.amount_usd, dep.multiplier, dep.reputation_tier, dep.status) == (1.125, 4.5, "low", "committed")
    assert spam.resolve_deposit(dep, is_spam=False).status == "refunded"
    with pytest.raises(ValidationError) as e:
        spam.resolve_deposit(dep, is_spam=True)
    assert e.value.field == "deposit.status"
    with pytest.raises(ValidationError):
        spam.classify_reputation(math.nan)
    with pytest.raises(ValidationError):
        spam.deposit_multiplier_for_tier("gold")


def test_progressive_limits_and_access():
    assert spam.max_request_tokens(-1, 0) == 1_000
    assert spam.max_request_tokens(90, 0) == -1  # high reputation: no cap at all
    assert spam.max_request_tokens(0, 100) == -1  # 100 interactions lift every cap (kept)
    assert spam.check_access(30, 10, 10_000) == (True, "within_limits")
    allowed, reason = spam.check_access(30, 10, 10_001)
    assert not allowed and reason.startswith("exceeds_limit: ")


# ------------------------------------------------------------------ congestion and caching


def test_congestion_prices():
    assert [congestion.congestion_level(u) for u in (0.4999, 0.5, 0.8, 0.95, 3)] == [
        "abundant", "moderate", "heavy", "critical", "critical"]
    assert congestion.congestion_multiplier(2.0) == 6.0
    p = congestion.effective_token_price(3.0, 100_000, utilization=0.9, qos_tier="priority")
    assert p == {"btc": 0.6, "cp": 1.08, "po": 0.0015, "total": 1.6815, "congestion_multiplier": 2.8,
                 "qos_multiplier": 2.0}
    with pytest.raises(ValidationError):
        congestion.effective_token_price(3.0, 1, qos_tier="gold")
    with pytest.raises(ValidationError):
        congestion.congestion_multiplier(math.nan)


def test_qos_and_back_pressure():
    cfg = congestion.qos_config_for_tier("priority")
    assert (cfg.max_request_size_tokens, cfg.max_context_utilization) == (800_000, 0.9)
    assert congestion.check_qos_limits(cfg, 800_000, 0.9) == {"size_ok": True, "utilization_ok": True,
                                                              "allowed": True}
    assert congestion.check_qos_limits(cfg, 800_001, 0.91)["allowed"] is False
    bp = congestion.generate_back_pressure(0.97, queue_depth=3, estimated_queue_ms=40)
    assert (bp.cwep_status, bp.available_tiers, bp.economy_queue_depth, bp.estimated_queue_time_ms) == (
        "overloaded", ["priority", "reserved"], 3, 40)
    assert congestion.position_multiplier(0, 10) == 0.0


def test_caching_economics():
    a = caching.cache_amortized_cost(100_000, 3.0, num_interactions=10)
    assert (a["first_cost"], a["subsequent_cost"], a["amortized_cost"], a["total_cached"]) == (
        0.375, 0.03, 0.0645, 0.645)
    assert a["savings_pct"] == pytest.approx(78.5)
    with pytest.raises(ValidationError):
        caching.cache_amortized_cost(1, 3.0, num_interactions=0)
    r = caching.compression_roi(50_000, 5_000, 3.0, 15.0, 1_000)
    assert (r["savings"], r["cost"], r["net_savings"], r["roi"], r["compression_ratio"]) == (
        0.135, 0.015, 0.12, 8.0, 10.0)
    m = caching.memory_vs_context_crossover(1_000, 0.25, 0.10, 0.05)
    assert (m["crossover_point"], m["recommendation"], len(m["memory_costs"])) == (-1, "long_context", 50)
    m = caching.memory_vs_context_crossover(10_000, 3.0, 0.1, 0.01, max_interactions=20)
    # memory 0.1 + 0.01 n <= 0.03 n from n = 5
    assert (m["crossover_point"], m["recommendation"]) == (5, "memory")


def test_cache_tracker_with_real_and_assumed_cache_rates():
    t = caching.CacheTracker()
    t.record_hit(10_000, 3.0, cache_rate_per_mtok=0.3)  # saves 10000 x 2.7 = 27000 micro-USD
    t.record_hit(10_000, 3.0)  # assumed 10%: the same figure here
    t.record_hit(1_000, 5.0, cache_rate_per_mtok=0.5)  # 4500
    t.record_miss(7_000)
    assert (t.hits, t.misses, t.total_cached_tokens, t.total_uncached_tokens) == (3, 1, 21_000, 7_000)
    assert t.estimated_savings_usd == 0.0585 and t.hit_rate == 0.75
    assert t.summary()["hit_rate"] == 0.75
    with pytest.raises(ValidationError):
        t.record_miss(-1)


def test_package_exports_every_name_it_lists():
    for name in cwep.__all__:
        assert hasattr(cwep, name), name
    assert cwep.__version__ == "0.1.1" and cwep.PROTOCOL_VERSION == "1.0.0"


def test_install_aliases_the_package_and_every_submodule_once():
    import subprocess
    import sys

    code = """
import ledger.compat.cwep as layer
layer.install()
import context_window_economics
from context_window_economics.metering import Meter
from context_window_economics.schema import CostMeteringRecord
import context_window_economics.store as store
import context_window_economics.cli as cli
cmr = Meter("a").record_interaction("b", request_tokens=10, response_tokens=1)
assert context_window_economics is layer
assert isinstance(cmr, layer.CostMeteringRecord) and CostMeteringRecord is layer.schema.CostMeteringRecord
assert store.CWEPStore is layer.CWEPStore and cli.main is layer.cli.main
assert not context_window_economics.__file__.startswith(tuple(p for p in __import__("sys").path if "site-packages" in p))
print(cmr.totals.total_tokens)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "22"), done.stderr
