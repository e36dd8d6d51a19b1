"""The allocations processor on its views, on both log backends:

- conservation: for every interaction and method, requestor + responder shares = total = the four
  flow costs = what both sides incurred; every priced interaction has one row per configured method;
- an unknown model is never $0: the interaction lands in `unpriced` with reason unknown_model;
- allocation rules (scope, params, disable) and their failures (Nash without surplus) are handled;
- prices are taken at event time from price_set control events and are never retroactive;
- derived `allocation` events: one per row, exactly once (a second run produces nothing);
- replay equality.
"""

from __future__ import annotations

import pytest
from support.econ import call, control, derived, econ_home, emit_as, replay_equal, rows, run

from ledger.testing.homes import T0, fill
from ledger.wire.events import AllocationRule, Context, PriceSet

BACKENDS = [pytest.param("sqlite"), pytest.param("kafka", marks=pytest.mark.kafka)]


@pytest.fixture(params=BACKENDS)
def home(request, tmp_path):
    url = request.getfixturevalue("kafka_url") if request.param == "kafka" else None
    h = econ_home(tmp_path, request.param, url)
    fill(h, tasks=12, batch_size=5)
    return h


def test_conservation_default_methods_derived_once_and_replay(home):
    run(home, "allocations")
    n_inter = rows(home, "allocations", "SELECT count(*) FROM interactions")[0][0]
    assert n_inter > 20
    # every interaction: its flows sum to the total, both sides' incurred sum to the total
    assert rows(home, "allocations", """SELECT count(*) FROM interactions WHERE
        request_output_micros + request_input_micros + response_output_micros + response_input_micros != total_micros
        OR requestor_incurred_micros + responder_incurred_micros != total_micros
        OR requestor_incurred_micros != request_output_micros + response_input_micros""")[0][0] == 0
    # every interaction and method: the shares sum to the interaction's total (the default set: 2 methods)
    assert rows(home, "allocations", """SELECT count(*) FROM allocations a JOIN interactions i
        ON a.interaction_event_id = i.event_id WHERE a.requestor_pays_micros + a.responder_pays_micros != i.total_micros
        OR a.total_micros != i.total_micros""")[0][0] == 0
    assert rows(home, "allocations", "SELECT method, count(*) FROM allocations GROUP BY 1 ORDER BY 1") == [
        ("requestor_pays", n_inter), ("shapley", n_inter)]
    # agent_costs: per method, allocated sums to incurred over all agents (money neither made nor lost)
    assert rows(home, "allocations", "SELECT method, sum(allocated_micros) - sum(incurred_micros), "
                                     "sum(balance_micros) FROM agent_costs GROUP BY 1 ORDER BY 1") == [
        ("requestor_pays", 0, 0), ("shapley", 0, 0)]
    # derived events: one per row, exactly once, recomputable inputs on board
    events = derived(home, "allocations")
    assert len(events) == 2 * n_inter == len({i for i, _ in events})
    params = dict(events[0][1].params)
    assert {"requestor_rates", "responder_rates", "tokens", "rule_id"} <= set(params)
    run(home, "allocations")  # again: nothing new to read, nothing produced twice
    assert len(derived(home, "allocations")) == 2 * n_inter
    assert replay_equal(home, "allocations")


def test_unknown_model_is_unpriced_never_zero(tmp_path):
    h = econ_home(tmp_path, agents=("alice", "bob"))
    emit_as(h, "alice", [(call("c1", "alice", "bob", resp_model=("acme", "mystery-1")), T0 + 100),
                         (call("c2", "alice", "bob"), T0 + 200)])
    run(h, "allocations")
    (stage, code, evidence), = rows(h, "allocations", "SELECT stage, code, evidence_json FROM unpriced")
    assert stage == "pricing" and code == "unknown_model" and "mystery-1" in evidence
    assert rows(h, "allocations", "SELECT interaction_id FROM interactions") == [("c2",)]
    assert {r[0] for r in rows(h, "allocations", "SELECT interaction_id FROM allocations")} == {"c2"}


def test_prices_in_force_at_event_time_and_never_retroactive(tmp_path):
    h = econ_home(tmp_path, agents=("alice", "bob"))
    new = PriceSet(provider="openai", model="gpt-4.1", input_micros_per_mtok=4_000_000,
                   output_micros_per_mtok=16_000_000, cache_read_micros_per_mtok=1_000_000,
                   cache_write_micros_per_mtok=4_000_000, effective_from_us=T0 + 1_000)
    back_dated = PriceSet(provider="openai", model="gpt-4.1", input_micros_per_mtok=9_000_000,
                          output_micros_per_mtok=9_000_000, cache_read_micros_per_mtok=9_000_000,
                          cache_write_micros_per_mtok=9_000_000, effective_from_us=T0)
    control(h, [new], t=T0 + 50)
    control(h, [back_dated], t=T0 + 5_000)  # announced later: in force from its own time, not from T0
    emit_as(h, "alice", [(call("before", "alice", "bob"), T0 + 500), (call("after", "alice", "bob"), T0 + 2_000)])
    run(h, "allocations")
    got = dict(rows(h, "allocations", "SELECT interaction_id, total_micros FROM interactions"))
    # 1,000 tokens out at $8 + in at $2; 3,000 out at $8 + in at $2 (default book) = 0.04; then doubled
    assert got == {"before": 40_000, "after": 80_000}


def test_rules_scope_params_and_failures(tmp_path):
    h = econ_home(tmp_path, agents=("alice", "bob"))
    control(h, [
        AllocationRule(rule_id="r-eq", method="equal_split"),
        AllocationRule(rule_id="r-proj", method="proportional", project="p1"),
        AllocationRule(rule_id="r-nash", method="nash_bargaining", params={"value_a": "10", "value_b": "10"}),
        AllocationRule(rule_id="r-shap", method="shapley", params={"standalone_cost_a": "1000"}),
    ], t=T0 + 50)
    log_ctx = Context(project="p1")
    from ledger.sdk.emitter import Emitter

    log = h.open_log()
    with Emitter(log, h.load_key("alice"), topic=h.topic, state_dir=h.state_dir, background_flush=False) as em:
        em.emit(call("p1-call", "alice", "bob"), event_time_us=T0 + 100, context=log_ctx)
        em.emit(call("plain", "alice", "bob"), event_time_us=T0 + 200)
    log.close()
    control(h, [AllocationRule(rule_id="r-eq", method="equal_split", enabled=False)], t=T0 + 300)
    emit_as(h, "alice", [(call("late", "alice", "bob"), T0 + 400)])
    run(h, "allocations")
    got = rows(h, "allocations", "SELECT interaction_id, method, rule_id FROM allocations ORDER BY 1, 2")
    assert got == [("late", "shapley", "r-shap"),
                   ("p1-call", "equal_split", "r-eq"), ("p1-call", "proportional", "r-proj"),
                   ("p1-call", "shapley", "r-shap"),
                   ("plain", "equal_split", "r-eq"), ("plain", "shapley", "r-shap")]
    # Nash with values far below the cost has no surplus: recorded with its reason, never guessed
    nash = rows(h, "allocations", "SELECT interaction_id, stage, method FROM unpriced ORDER BY 1")
    assert nash == [("late", "allocation", "nash_bargaining"), ("p1-call", "allocation", "nash_bargaining"),
                    ("plain", "allocation", "nash_bargaining")]
    shap = rows(h, "allocations", "SELECT params_json FROM allocations WHERE method = 'shapley' LIMIT 1")[0][0]
    assert '"method.standalone_cost_a": "1000"' in shap


def test_llm_calls_keep_the_reported_cost_and_list_discrepancies(tmp_path):
    """A call's provider-reported cost stays beside the ledger's in llm_calls; calls where they differ by more than
    COST_DISCREPANCY_PERMILLE (and the floor) are in cost_discrepancies, the others are not."""
    from ledger.limits import COST_DISCREPANCY_FLOOR_MICROS
    from ledger.sdk.emitter import Emitter
    from ledger.testing.homes import make_home

    h = make_home(tmp_path / "home", agents=("alice",))
    control(h, [PriceSet(provider="acme", model="m1", input_micros_per_mtok=2_000_000, output_micros_per_mtok=0,
                         cache_read_micros_per_mtok=0, cache_write_micros_per_mtok=0)])
    # 1M input tokens at $2/MTok: the ledger says 2,000,000 micro-USD
    reported = {"close": 2_010_000, "far": 2_500_000, "none": None, "tiny": 2_000_000 + COST_DISCREPANCY_FLOOR_MICROS}
    with Emitter.open("alice", home=h.path, context=Context(org="o"), background_flush=False) as em:
        ids = {name: em.action("llm", provider="acme", model="m1", input_tokens=1_000_000, provider_cost_micros=pc,
                               event_time_us=T0 + 100 + i) for i, (name, pc) in enumerate(reported.items())}
    run(h, "allocations")
    got = dict((r[0], r[1:]) for r in rows(h, "allocations", "SELECT event_id, cost_micros, provider_cost_micros, "
                                                             "cost_difference_micros FROM llm_calls"))
    assert got[ids["far"]] == (2_000_000, 2_500_000, -500_000) and got[ids["none"]] == (2_000_000, None, None)
    listed = rows(h, "allocations", "SELECT event_id, difference_micros, difference_permille FROM cost_discrepancies")
    assert listed == [(ids["far"], -500_000, 200)]  # 1 % (close) and the floor (tiny) are within tolerance
