"""ledger.economics.allocation: every method against the reference, exact conservation, and one test per deviation.

Differential: the same interaction is metered by ``context_window_economics`` (test oracle only,
``Meter.record_flows``, float USD) and by us (micro-USD); both are allocated by the same method.
Our total is within 3 micros of the reference (``test_metering``); a share of it, rounded by the
split rule, is within 4 micros; the signed net transfer within 6.
"""

from __future__ import annotations

import dataclasses
import pickle
from fractions import Fraction
from typing import Any

import pytest
from context_window_economics import Meter
from context_window_economics import allocate as reference_allocate
from context_window_economics.schema import DEFAULT_PROVIDER_PRICING
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger.economics.allocation import (
    ALLOCATION_METHODS,
    NO_TRANSFER,
    REQUESTOR_TO_RESPONDER,
    RESPONDER_TO_REQUESTOR,
    Allocation,
    allocate,
    allocate_nash_bargaining,
    allocate_shapley,
)
from ledger.economics.metering import InteractionFlows, MeteredInteraction, meter_interaction
from ledger.economics.pricing import default_price_book
from ledger.errors import EconomicsError, ValidationError

FAST = settings(max_examples=150, deadline=None)
MODELS = sorted((p, m) for p, models in DEFAULT_PROVIDER_PRICING.items() for m in models)
RULE_BASED = ["requestor_pays", "responder_pays", "equal_split", "proportional"]
PAYS_TOLERANCE = 4 + 1e-3  # micro-USD
NET_TOLERANCE = 6 + 1e-3


@st.composite
def interaction_pairs(draw: Any, max_tokens: int = 10**7) -> tuple[MeteredInteraction, Any]:
    """(ours, the reference's CMR) for one random interaction with four independent counts."""
    requestor, responder = draw(st.sampled_from(MODELS)), draw(st.sampled_from(MODELS))
    ro, ri, so, si = (draw(st.integers(0, max_tokens)) for _ in range(4))
    ri_cached, si_cached = draw(st.integers(0, ri)), draw(st.integers(0, si))
    book = default_price_book()
    metered = meter_interaction(
        InteractionFlows.from_counts(request_output_tokens=ro, request_input_tokens=ri, response_output_tokens=so,
                                     response_input_tokens=si, request_input_cached_tokens=ri_cached,
                                     response_input_cached_tokens=si_cached),
        requestor_price=book.price_at(*requestor, 0), responder_price=book.price_at(*responder, 0))
    cmr = Meter("did:a", model=requestor[1], provider=requestor[0]).record_flows(
        "did:b", responder_model=responder[1], responder_provider=responder[0], ro_tokens=ro, ri_tokens=ri,
        ri_cached=ri_cached, so_tokens=so, si_tokens=si, si_cached=si_cached)
    return metered, cmr


def signed_net(allocation: Allocation) -> int:
    """Positive when the requestor pays the responder."""
    return {REQUESTOR_TO_RESPONDER: 1, RESPONDER_TO_REQUESTOR: -1, NO_TRANSFER: 0}[allocation.direction] * \
        allocation.net_transfer


def assert_matches(allocation: Allocation, proposal: Any) -> None:
    assert abs(allocation.requestor_pays - proposal.requestor_pays_usd * 1e6) <= PAYS_TOLERANCE
    assert abs(allocation.responder_pays - proposal.responder_pays_usd * 1e6) <= PAYS_TOLERANCE
    reference_sign = 1 if proposal.transfer_direction == REQUESTOR_TO_RESPONDER else -1
    assert abs(signed_net(allocation) - reference_sign * proposal.net_transfer_usd * 1e6) <= NET_TOLERANCE


def sonnet_example() -> MeteredInteraction:
    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    return meter_interaction(InteractionFlows.symmetric(request_tokens=10_000, response_tokens=3_000),
                             requestor_price=sonnet, responder_price=sonnet)


# ------------------------------------------------------------------ differential, per method


@FAST
@given(interaction_pairs(), st.sampled_from(RULE_BASED))
def test_rule_based_methods_match_the_reference(pair: tuple[MeteredInteraction, Any], method: str) -> None:
    metered, cmr = pair
    allocation = allocate(metered, method)
    assert allocation.method == method
    assert_matches(allocation, reference_allocate(cmr, method))


@FAST
@given(interaction_pairs(), st.one_of(st.just(0), st.integers(0, 10**8)))
def test_shapley_matches_the_reference_where_it_does_not_clamp(pair: tuple[MeteredInteraction, Any],
                                                               standalone_b: int) -> None:
    metered, cmr = pair
    proposal = reference_allocate(cmr, "shapley", standalone_cost_b=standalone_b / 1e6)
    joint, standalone_a = cmr.totals.total_cost_usd * 1e6, cmr.flows["request_output"].cost_usd * 1e6
    assume(joint + standalone_a - standalone_b > 10 and joint + standalone_b - standalone_a > 10)  # both unclamped
    allocation = allocate(metered, "shapley", standalone_cost_b=standalone_b)
    assert allocation.parameters["clamped"] is None
    assert_matches(allocation, proposal)


@st.composite
def nash_inputs(draw: Any) -> dict[str, Any]:
    value_a, value_b = draw(st.integers(0, 10**8)), draw(st.integers(0, 10**8))
    return {"value_a": value_a, "value_b": value_b, "disagreement_a": draw(st.integers(0, value_a)),
            "disagreement_b": draw(st.integers(0, value_b)),
            "alpha": draw(st.one_of(st.floats(0, 1), st.fractions(0, 1, max_denominator=1000), st.just(0.5)))}


@FAST
@given(interaction_pairs(), nash_inputs())
def test_nash_bargaining_matches_the_reference(pair: tuple[MeteredInteraction, Any], inputs: dict[str, Any]) -> None:
    metered, cmr = pair
    surplus = inputs["value_a"] + inputs["value_b"] - metered.total - inputs["disagreement_a"] - \
        inputs["disagreement_b"]
    assume(abs(surplus) > 10)  # away from the float boundary where the reference decides to fall back
    proposal = reference_allocate(cmr, "nash_bargaining", alpha=float(inputs["alpha"]),
                                  **{k: v / 1e6 for k, v in inputs.items() if k != "alpha"})
    if surplus <= 0:  # the reference falls back to proportional; we do so only when told to, and say so
        with pytest.raises(EconomicsError):
            allocate(metered, "nash_bargaining", **inputs)
        allocation = allocate(metered, "nash_bargaining", no_surplus_fallback="proportional", **inputs)
        assert allocation.method == "proportional" and allocation.parameters["outcome"] == "no_surplus"
    else:
        allocation = allocate(metered, "nash_bargaining", **inputs)
        assert allocation.method == "nash_bargaining" and allocation.parameters["surplus"] == surplus
    assert_matches(allocation, proposal)


# ------------------------------------------------------------------ conservation, every method


@st.composite
def methods_with_parameters(draw: Any) -> tuple[str, dict[str, Any]]:
    method = draw(st.sampled_from(ALLOCATION_METHODS))
    if method == "shapley":
        return method, {"standalone_cost_b": draw(st.integers(0, 10**9)),
                        **({"standalone_cost_a": draw(st.integers(0, 10**9))} if draw(st.booleans()) else {})}
    if method == "nash_bargaining":
        return method, {**draw(nash_inputs()), "no_surplus_fallback": draw(st.sampled_from(RULE_BASED))}
    return method, {}


@settings(max_examples=300, deadline=None)
@given(interaction_pairs(max_tokens=10**9), methods_with_parameters())
def test_every_method_conserves_the_total_exactly(pair: tuple[MeteredInteraction, Any],
                                                  method: tuple[str, dict[str, Any]]) -> None:
    metered, _ = pair
    allocation = allocate(metered, method[0], **method[1])
    assert allocation.requestor_pays + allocation.responder_pays == metered.total
    assert allocation.requestor_pays >= 0 and allocation.responder_pays >= 0
    assert signed_net(allocation) == allocation.requestor_pays - metered.requestor_incurred
    assert signed_net(allocation) == metered.responder_incurred - allocation.responder_pays


@FAST
@given(interaction_pairs(), methods_with_parameters())
def test_recorded_parameters_recompute_the_allocation(pair: tuple[MeteredInteraction, Any],
                                                      method: tuple[str, dict[str, Any]]) -> None:
    metered, _ = pair
    allocation = allocate(metered, *method[:1], **method[1])
    recorded = dict(allocation.parameters)
    if allocation.method == "shapley":
        again = allocate_shapley(metered, standalone_cost_a=recorded["standalone_cost_a"],
                                 standalone_cost_b=recorded["standalone_cost_b"])
    elif allocation.method == "nash_bargaining":
        again = allocate_nash_bargaining(metered, alpha=Fraction(recorded["alpha"]), **{
            k: recorded[k] for k in ("value_a", "value_b", "disagreement_a", "disagreement_b")})
    else:
        again = allocate(metered, allocation.method)
    assert (again.requestor_pays, again.responder_pays) == (allocation.requestor_pays, allocation.responder_pays)


def test_reference_examples() -> None:
    metered = sonnet_example()
    shapley = allocate(metered, "shapley")
    assert (shapley.requestor_pays, shapley.responder_pays, shapley.net_transfer, shapley.direction) == (
        192_000, 42_000, 33_000, REQUESTOR_TO_RESPONDER)
    equal = allocate(metered, "equal_split")
    assert (equal.requestor_pays, equal.net_transfer, equal.direction) == (117_000, 42_000, RESPONDER_TO_REQUESTOR)
    assert allocate(metered, "requestor_pays").net_transfer == metered.responder_incurred


def test_equal_split_gives_the_odd_micro_to_the_requestor() -> None:
    haiku = default_price_book().price_at("anthropic", "claude-haiku-4-5", 0)
    metered = meter_interaction(InteractionFlows.from_counts(request_output_tokens=4, request_input_tokens=0,
                                                             response_output_tokens=0, response_input_tokens=0),
                                requestor_price=haiku, responder_price=haiku)
    assert metered.total == 5  # 4 tokens at $1.25/MTok
    allocation = allocate(metered, "equal_split")
    assert (allocation.requestor_pays, allocation.responder_pays) == (3, 2)


# ------------------------------------------------------------------ deviations, one test each


def test_deviation_shapley_clamp_rebalances_instead_of_creating_money() -> None:
    metered = sonnet_example()
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=10_000, response_tokens=3_000)
    proposal = reference_allocate(cmr, "shapley", standalone_cost_b=1.0)
    assert proposal.requestor_pays_usd + proposal.responder_pays_usd == pytest.approx(0.542)  # not 0.234
    allocation = allocate(metered, "shapley", standalone_cost_b=1_000_000)
    assert (allocation.requestor_pays, allocation.responder_pays) == (0, 234_000)
    assert allocation.parameters["clamped"] == "requestor"
    high = allocate(metered, "shapley", standalone_cost_a=10_000_000)
    assert (high.requestor_pays, high.responder_pays, high.parameters["clamped"]) == (234_000, 0, "responder")


def test_deviation_nash_without_values_is_an_error() -> None:
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=10_000, response_tokens=3_000)
    assert reference_allocate(cmr, "nash_bargaining").method == "proportional"  # the reference's silent switch
    with pytest.raises(ValidationError) as caught:
        allocate(sonnet_example(), "nash_bargaining")
    assert caught.value.field == "value_a"
    with pytest.raises(ValidationError) as caught:
        allocate(sonnet_example(), "nash_bargaining", value_a=1_000_000)
    assert caught.value.field == "value_b"


@pytest.mark.parametrize("alpha", [1.5, -0.5, 1.0000001, float("nan"), float("inf"), True, "0.5", None])
def test_deviation_nash_alpha_outside_zero_one_is_an_error(alpha: object) -> None:
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=10_000, response_tokens=3_000)
    if isinstance(alpha, float) and alpha == alpha and abs(alpha) != float("inf"):
        reference_allocate(cmr, "nash_bargaining", value_a=1.0, value_b=0.5, alpha=alpha)  # accepted there
    with pytest.raises(ValidationError) as caught:
        allocate(sonnet_example(), "nash_bargaining", value_a=1_000_000, value_b=500_000, alpha=alpha)
    assert caught.value.field == "alpha"


def test_deviation_nash_without_surplus_is_an_error_not_a_silent_switch() -> None:
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=10_000, response_tokens=3_000)
    assert reference_allocate(cmr, "nash_bargaining", value_a=0.1, value_b=0.1).method == "proportional"
    with pytest.raises(EconomicsError) as caught:
        allocate(sonnet_example(), "nash_bargaining", value_a=100_000, value_b=100_000)
    assert caught.value.evidence["surplus"] == 200_000 - 234_000


def test_nash_without_surplus_uses_a_named_fallback_and_says_so() -> None:
    allocation = allocate(sonnet_example(), "nash_bargaining", value_a=100_000, value_b=100_000,
                          no_surplus_fallback="equal_split")
    assert allocation.method == "equal_split"
    assert allocation.parameters["requested_method"] == "nash_bargaining"
    assert allocation.parameters["outcome"] == "no_surplus"
    assert allocation.parameters["surplus"] == -34_000
    with pytest.raises(ValidationError) as caught:
        allocate(sonnet_example(), "nash_bargaining", value_a=1, value_b=1, no_surplus_fallback="shapley")
    assert caught.value.field == "no_surplus_fallback"


@pytest.mark.parametrize(("field", "inputs"), [
    ("disagreement_a", dict(value_a=100, value_b=10**6, disagreement_a=101)),
    ("disagreement_b", dict(value_a=10**6, value_b=100, disagreement_b=101)),
    ("value_a", dict(value_a=-1, value_b=10**6)),
    ("value_b", dict(value_a=10**6, value_b=0.5)),
    ("disagreement_b", dict(value_a=10**6, value_b=10**6, disagreement_b=-5)),
])
def test_deviation_nash_negative_or_inconsistent_inputs_are_errors(field: str, inputs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        allocate(sonnet_example(), "nash_bargaining", **inputs)
    assert caught.value.field == field


def test_deviation_proportional_uses_the_four_real_token_counts() -> None:
    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    counts = dict(ro_tokens=10_000, ri_tokens=10_500, so_tokens=3_000, si_tokens=3_000)  # 500 protocol tokens
    metered = meter_interaction(InteractionFlows.from_counts(
        request_output_tokens=10_000, request_input_tokens=10_500, response_output_tokens=3_000,
        response_input_tokens=3_000), requestor_price=sonnet, responder_price=sonnet)
    proportional, equal = allocate(metered, "proportional"), allocate(metered, "equal_split")
    assert proportional.requestor_pays != equal.requestor_pays
    assert proportional.parameters == {"requestor_tokens": 13_000, "responder_tokens": 13_500}
    assert_matches(proportional, reference_allocate(Meter("did:a").record_flows("did:b", **counts), "proportional"))
    # The reference's usual record (one count per direction) always makes proportional an equal split.
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=10_000, response_tokens=3_000)
    assert reference_allocate(cmr, "proportional").requestor_pays_usd == \
        reference_allocate(cmr, "equal_split").requestor_pays_usd


def test_deviation_beneficiary_pays_is_not_offered() -> None:
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=10_000, response_tokens=3_000)
    assert reference_allocate(cmr, "beneficiary_pays").method == "proportional"
    assert "beneficiary_pays" not in ALLOCATION_METHODS
    with pytest.raises(ValidationError) as caught:
        allocate(sonnet_example(), "beneficiary_pays")
    assert caught.value.field == "method" and "proportional" in caught.value.reason


def test_deviation_zero_net_transfer_has_direction_none() -> None:
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=0, response_tokens=0)
    assert reference_allocate(cmr, "requestor_pays").transfer_direction == REQUESTOR_TO_RESPONDER
    assert reference_allocate(cmr, "proportional").transfer_direction == ""
    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    empty = meter_interaction(InteractionFlows.symmetric(request_tokens=0, response_tokens=0),
                              requestor_price=sonnet, responder_price=sonnet)
    for method in ("requestor_pays", "responder_pays", "equal_split", "proportional", "shapley"):
        allocation = allocate(empty, method)
        assert (allocation.requestor_pays, allocation.responder_pays, allocation.net_transfer,
                allocation.direction) == (0, 0, 0, NO_TRANSFER)


def test_deviation_unknown_parameters_are_refused() -> None:
    cmr = Meter("did:a").record_interaction("did:b", request_tokens=10_000, response_tokens=3_000)
    reference_allocate(cmr, "shapley", alhpa=0.9)  # silently ignored there
    with pytest.raises(ValidationError) as caught:
        allocate(sonnet_example(), "shapley", alhpa=0.9)
    assert caught.value.field == "alhpa"
    with pytest.raises(ValidationError):
        allocate(sonnet_example(), "equal_split", standalone_cost_b=1)


@pytest.mark.parametrize("method", ["", "Shapley", "nash", None, 3])
def test_unknown_methods_are_refused(method: object) -> None:
    with pytest.raises(ValidationError) as caught:
        allocate(sonnet_example(), method)  # type: ignore[arg-type]
    assert caught.value.field == "method"


@pytest.mark.parametrize("bad", [-1, 1.5, True, float("nan"), 10**16])
def test_shapley_refuses_bad_standalone_costs(bad: object) -> None:
    with pytest.raises(ValidationError) as caught:
        allocate(sonnet_example(), "shapley", standalone_cost_b=bad)
    assert caught.value.field == "standalone_cost_b"


def test_allocation_needs_a_metered_interaction() -> None:
    with pytest.raises(ValidationError) as caught:
        allocate({"total": 5}, "equal_split")  # type: ignore[arg-type]
    assert caught.value.field == "metered"


def test_allocations_rebuilt_from_outside_data_are_checked() -> None:
    good = allocate(sonnet_example(), "shapley")
    assert Allocation(**dataclasses.asdict(good)) == good
    assert pickle.loads(pickle.dumps(good)) == good  # noqa: S301  (bytes pickled on this line, not outside data)
    for field, bad in (("requestor_pays", -1), ("net_transfer", 1.5), ("direction", "sideways"),
                       ("direction", NO_TRANSFER), ("method", ""), ("parameters", [1])):
        with pytest.raises(ValidationError) as caught:
            Allocation(**{**dataclasses.asdict(good), field: bad})
        assert caught.value.field == field
