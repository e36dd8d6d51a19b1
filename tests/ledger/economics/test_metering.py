"""ledger.economics.metering: four-flow costs against the reference, the per-side invariants, bad input.

Differential: ``context_window_economics`` (test oracle only) meters in float USD with
``Meter.record_flows`` / ``record_interaction``. Ours rounds each priced token class once to
micro-USD (half-to-even), so an output flow is within 0.5 micro, an input flow (uncached + cached
part) within 1 micro, a side within 1.5 and the total within 3 of the reference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from context_window_economics import Meter
from context_window_economics import estimate_interaction_cost as reference_estimate
from context_window_economics.schema import DEFAULT_PROVIDER_PRICING
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.economics.metering import (
    FlowTokens,
    InteractionFlows,
    MeteredInteraction,
    estimate_interaction_cost,
    meter_interaction,
)
from ledger.economics.pricing import default_price_book
from ledger.errors import ValidationError
from ledger.wire.events import Interaction

FAST = settings(max_examples=150, deadline=None)
MODELS = sorted((p, m) for p, models in DEFAULT_PROVIDER_PRICING.items() for m in models)
EPSILON = 1e-3  # float noise of the reference, in micro-USD, at these sizes


@st.composite
def interactions(draw: Any, max_tokens: int = 10**9) -> dict[str, Any]:
    counts = {name: draw(st.integers(0, max_tokens)) for name in ("ro", "ri", "so", "si")}
    counts["ri_cached"] = draw(st.integers(0, counts["ri"]))
    counts["si_cached"] = draw(st.integers(0, counts["si"]))
    return {"requestor": draw(st.sampled_from(MODELS)), "responder": draw(st.sampled_from(MODELS)), **counts}


def ours(case: dict[str, Any]) -> MeteredInteraction:
    flows = InteractionFlows.from_counts(
        request_output_tokens=case["ro"], request_input_tokens=case["ri"], response_output_tokens=case["so"],
        response_input_tokens=case["si"], request_input_cached_tokens=case["ri_cached"],
        response_input_cached_tokens=case["si_cached"])
    book = default_price_book()
    return meter_interaction(flows, requestor_price=book.price_at(*case["requestor"], 0),
                             responder_price=book.price_at(*case["responder"], 0))


def reference(case: dict[str, Any]) -> Any:
    meter = Meter("did:a", model=case["requestor"][1], provider=case["requestor"][0])
    return meter.record_flows("did:b", responder_model=case["responder"][1], responder_provider=case["responder"][0],
                              ro_tokens=case["ro"], ri_tokens=case["ri"], ri_cached=case["ri_cached"],
                              so_tokens=case["so"], si_tokens=case["si"], si_cached=case["si_cached"])


# ------------------------------------------------------------------ differential


@FAST
@given(interactions())
def test_four_flows_match_the_reference(case: dict[str, Any]) -> None:
    metered, cmr = ours(case), reference(case)
    for name, tolerance in (("request_output", 0.5), ("request_input", 1), ("response_output", 0.5),
                            ("response_input", 1)):
        assert abs(getattr(metered, name).cost - cmr.flows[name].cost_usd * 1e6) <= tolerance + EPSILON, name
    assert abs(metered.requestor_incurred - cmr.totals.requestor_incurred_usd * 1e6) <= 1.5 + EPSILON
    assert abs(metered.responder_incurred - cmr.totals.responder_incurred_usd * 1e6) <= 1.5 + EPSILON
    assert abs(metered.total - cmr.totals.total_cost_usd * 1e6) <= 3 + EPSILON
    assert metered.total_tokens == cmr.totals.total_tokens


@FAST
@given(st.sampled_from(MODELS), st.sampled_from(MODELS), st.integers(0, 10**9), st.integers(0, 10**9), st.data())
def test_symmetric_interactions_match_record_interaction(requestor: tuple[str, str], responder: tuple[str, str],
                                                         request: int, response: int, data: st.DataObject) -> None:
    request_cached = data.draw(st.integers(0, request))
    response_cached = data.draw(st.integers(0, response))
    cmr = Meter("did:a", model=requestor[1], provider=requestor[0]).record_interaction(
        "did:b", responder_model=responder[1], responder_provider=responder[0], request_tokens=request,
        request_cached_tokens=request_cached, response_tokens=response, response_cached_tokens=response_cached)
    book = default_price_book()
    metered = meter_interaction(
        InteractionFlows.symmetric(request_tokens=request, response_tokens=response,
                                   request_cached_tokens=request_cached, response_cached_tokens=response_cached),
        requestor_price=book.price_at(*requestor, 0), responder_price=book.price_at(*responder, 0))
    assert abs(metered.total - cmr.totals.total_cost_usd * 1e6) <= 3 + EPSILON
    assert metered.total_tokens == cmr.totals.total_tokens


@FAST
@given(st.sampled_from(MODELS), st.sampled_from(MODELS), st.integers(0, 10**9), st.integers(0, 10**9))
def test_estimate_matches_the_reference(requestor: tuple[str, str], responder: tuple[str, str], request: int,
                                        response: int) -> None:
    expected = reference_estimate(request, response, requestor_model=requestor[1], requestor_provider=requestor[0],
                                  responder_model=responder[1], responder_provider=responder[0])
    book = default_price_book()
    estimate = estimate_interaction_cost(request_tokens=request, response_tokens=response,
                                         requestor_price=book.price_at(*requestor, 0),
                                         responder_price=book.price_at(*responder, 0))
    for key, value in (("ro", estimate.request_output.cost), ("ri", estimate.request_input.cost),
                       ("so", estimate.response_output.cost), ("si", estimate.response_input.cost)):
        assert abs(value - expected[key] * 1e6) <= 0.5 + EPSILON, key
    assert abs(estimate.total - expected["total"] * 1e6) <= 2 + EPSILON
    assert abs(estimate.requestor_incurred - expected["requestor_incurred"] * 1e6) <= 1 + EPSILON


# ------------------------------------------------------------------ pinned examples


def test_whitepaper_example_is_exact() -> None:
    """Sonnet <-> Sonnet, 10,000 / 3,000 tokens: 0.150 + 0.030 + 0.045 + 0.009 = 0.234 USD."""
    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    metered = estimate_interaction_cost(request_tokens=10_000, response_tokens=3_000, requestor_price=sonnet,
                                        responder_price=sonnet)
    assert metered.flow_costs() == {"request_output": 150_000, "request_input": 30_000,
                                    "response_output": 45_000, "response_input": 9_000}
    assert (metered.total, metered.requestor_incurred, metered.responder_incurred) == (234_000, 159_000, 75_000)
    assert metered.total_tokens == 26_000


def test_cached_request_example_is_exact() -> None:
    """The reference CMR example (Sonnet -> Opus, 2,000 of 10,000 request tokens cached), without float noise."""
    case = {"requestor": ("anthropic", "claude-sonnet-4-6"), "responder": ("anthropic", "claude-opus-4-6"),
            "ro": 10_000, "ri": 10_000, "ri_cached": 2_000, "so": 3_000, "si": 3_000, "si_cached": 0}
    metered = ours(case)
    assert metered.request_input.uncached == 40_000 and metered.request_input.cached == 1_000
    assert (metered.total, metered.requestor_incurred, metered.responder_incurred) == (275_000, 159_000, 116_000)
    assert reference(case).totals.responder_incurred_usd != 0.116  # the reference's float drift


@FAST
@given(interactions(max_tokens=10**12))
def test_totals_are_sums_of_rounded_parts(case: dict[str, Any]) -> None:
    metered = ours(case)
    flows = metered.flow_costs()
    assert metered.total == sum(flows.values())
    assert metered.requestor_incurred == flows["request_output"] + flows["response_input"]
    assert metered.responder_incurred == flows["request_input"] + flows["response_output"]
    for name in flows:
        flow = getattr(metered, name)
        assert flow.cost == flow.uncached + flow.cached


# ------------------------------------------------------------------ bad input


def test_cached_tokens_cannot_exceed_their_flow() -> None:
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=10, request_cached_tokens=1_000,
                                            response_tokens=0)
    assert cmr.flows["request_input"].cost_usd < 0  # the reference prices -990 uncached tokens
    with pytest.raises(ValidationError) as caught:
        FlowTokens(tokens=10, cached_tokens=11)
    assert caught.value.field == "flow.cached_tokens"
    with pytest.raises(ValidationError) as caught:
        InteractionFlows.from_counts(request_output_tokens=1, request_input_tokens=10, response_output_tokens=1,
                                     response_input_tokens=1, request_input_cached_tokens=11)
    assert caught.value.field == "request_input_cached_tokens"
    with pytest.raises(ValidationError) as caught:
        InteractionFlows.symmetric(request_tokens=5, response_tokens=5, response_cached_tokens=6)
    assert caught.value.field == "response_cached_tokens"


def test_output_flows_have_no_cached_part() -> None:
    flow = FlowTokens(tokens=10, cached_tokens=5)
    with pytest.raises(ValidationError) as caught:
        InteractionFlows(request_output=flow, request_input=flow, response_output=FlowTokens(tokens=1),
                         response_input=flow)
    assert caught.value.field == "request_output.cached_tokens"


@pytest.mark.parametrize("field", ["request_output_tokens", "request_input_tokens", "response_output_tokens",
                                   "response_input_tokens", "request_input_cached_tokens",
                                   "response_input_cached_tokens"])
@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, 1.0, "5", 10**15 + 1])
def test_bad_counts_are_refused_naming_the_field(field: str, bad: object) -> None:
    counts: dict[str, object] = dict(request_output_tokens=1, request_input_tokens=1, response_output_tokens=1,
                                     response_input_tokens=1)
    counts[field] = bad
    with pytest.raises(ValidationError) as caught:
        InteractionFlows.from_counts(**counts)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_deviation_negative_tokens_are_refused_where_the_reference_prices_them() -> None:
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=-10_000, response_tokens=3_000)
    assert cmr.totals.total_cost_usd < 0  # the reference: a negative cost
    with pytest.raises(ValidationError) as caught:
        InteractionFlows.symmetric(request_tokens=-10_000, response_tokens=3_000)
    assert caught.value.field == "request_tokens"


def test_meter_needs_prices_and_flows() -> None:
    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    flows = InteractionFlows.symmetric(request_tokens=1, response_tokens=1)
    with pytest.raises(ValidationError) as caught:
        meter_interaction(flows, requestor_price=sonnet, responder_price=None)  # type: ignore[arg-type]
    assert caught.value.field == "responder_price"
    with pytest.raises(ValidationError) as caught:
        meter_interaction({"request_output": 1}, requestor_price=sonnet, responder_price=sonnet)  # type: ignore[arg-type]
    assert caught.value.field == "flows"


def test_inconsistent_metered_interactions_are_refused() -> None:
    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    good = estimate_interaction_cost(request_tokens=10, response_tokens=10, requestor_price=sonnet,
                                     responder_price=sonnet)
    fields = {f.name: getattr(good, f.name) for f in dataclasses.fields(good)}
    for name in ("total", "requestor_incurred", "responder_incurred", "total_tokens"):
        with pytest.raises(ValidationError) as caught:
            MeteredInteraction(**{**fields, name: fields[name] + 1})
        assert caught.value.field == name


def test_flows_come_straight_from_an_interaction_event() -> None:
    flow = FlowTokens(tokens=10_000, cached_tokens=2_000)
    body = Interaction(interaction_id="i-1", requestor_id="agent-a", responder_id="agent-b",
                       requestor_provider="anthropic", requestor_model="claude-sonnet-4-6",
                       responder_provider="anthropic", responder_model="claude-opus-4-6",
                       request_output=FlowTokens(tokens=10_000), request_input=flow,
                       response_output=FlowTokens(tokens=3_000), response_input=FlowTokens(tokens=3_000))
    flows = InteractionFlows.from_interaction(body)
    assert flows.request_input is flow and flows.total_tokens == 26_000
    assert flows == InteractionFlows.symmetric(request_tokens=10_000, response_tokens=3_000,
                                               request_cached_tokens=2_000)
    with pytest.raises(ValidationError) as caught:
        InteractionFlows.from_interaction(flows)  # type: ignore[arg-type]
    assert caught.value.field == "interaction"
