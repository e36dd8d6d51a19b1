"""Four-flow metering: what one agent-to-agent interaction cost each side, in micro-USD.

When a requestor sends a responder a request and gets a response, four flows cost money:

=================  =====================================  ========================
flow               priced at                              incurred by
=================  =====================================  ========================
request output     requestor's output rate                requestor (writes it)
request input      responder's input rate (cached part    responder (reads it)
                   at the responder's cache-read rate)
response output    responder's output rate                responder (writes it)
response input     requestor's input rate (cached part    requestor (reads it)
                   at the requestor's cache-read rate)
=================  =====================================  ========================

Each flow carries its own token count (request output and request input may differ, e.g. when a
protocol wraps the request). ``cached_tokens`` is the **part of** an input flow's tokens served
from the reader's prompt cache; it is never added on top. Output flows are generated, so they have
no cached part.

Invariants (checked on construction of every ``MeteredInteraction``): a flow's cost is its uncached
part plus its cached part, each rounded once (rule in ``ledger.economics.money``); total = the four flow
costs; requestor_incurred = request output + response input; responder_incurred = request input +
response output; total = requestor_incurred + responder_incurred.
Never: I/O, clock or floats; cached tokens above a flow's tokens; a negative or absurd count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.economics.money import check_result_micros, check_tokens, cost_micros
from ledger.economics.pricing import ModelPrice
from ledger.errors import ValidationError
from ledger.wire.events import Flow, Interaction

FLOW_NAMES = ("request_output", "request_input", "response_output", "response_input")
OUTPUT_FLOWS = ("request_output", "response_output")  # generated, so never served from a cache


# One flow type for the event model and the math: ``FlowTokens(tokens, cached_tokens=0)`` is the
# events module's ``Flow`` (checks each count and cached <= tokens; errors name ``flow.<field>``).
FlowTokens = Flow


@dataclass(frozen=True, kw_only=True)
class InteractionFlows:
    """The four flows' token counts of one interaction."""

    request_output: FlowTokens
    request_input: FlowTokens
    response_output: FlowTokens
    response_input: FlowTokens

    def __post_init__(self) -> None:
        for name in FLOW_NAMES:
            if not isinstance(getattr(self, name), FlowTokens):
                raise ValidationError(name, getattr(self, name), "must be a FlowTokens")
        for name in OUTPUT_FLOWS:
            if getattr(self, name).cached_tokens:
                raise ValidationError(f"{name}.cached_tokens", getattr(self, name).cached_tokens,
                                      "output tokens are generated, never read from a cache")

    @classmethod
    def from_counts(cls, *, request_output_tokens: int, request_input_tokens: int, response_output_tokens: int,
                    response_input_tokens: int, request_input_cached_tokens: int = 0,
                    response_input_cached_tokens: int = 0) -> InteractionFlows:
        """Four explicit counts; each error names the argument it came from."""
        counts = dict(request_output_tokens=request_output_tokens, request_input_tokens=request_input_tokens,
                      response_output_tokens=response_output_tokens, response_input_tokens=response_input_tokens,
                      request_input_cached_tokens=request_input_cached_tokens,
                      response_input_cached_tokens=response_input_cached_tokens)
        for name, value in counts.items():
            check_tokens(name, value)
        for flow in ("request_input", "response_input"):
            if counts[f"{flow}_cached_tokens"] > counts[f"{flow}_tokens"]:
                raise ValidationError(f"{flow}_cached_tokens", counts[f"{flow}_cached_tokens"],
                                      f"cached tokens are part of {flow}_tokens ({counts[f'{flow}_tokens']}) "
                                      "and cannot exceed them")
        return cls(request_output=FlowTokens(tokens=request_output_tokens),
                   request_input=FlowTokens(tokens=request_input_tokens, cached_tokens=request_input_cached_tokens),
                   response_output=FlowTokens(tokens=response_output_tokens),
                   response_input=FlowTokens(tokens=response_input_tokens,
                                             cached_tokens=response_input_cached_tokens))

    @classmethod
    def symmetric(cls, *, request_tokens: int, response_tokens: int, request_cached_tokens: int = 0,
                  response_cached_tokens: int = 0) -> InteractionFlows:
        """The common case: the request is read as written, the response likewise."""
        check_tokens("request_tokens", request_tokens)
        check_tokens("response_tokens", response_tokens)
        check_tokens("request_cached_tokens", request_cached_tokens)
        check_tokens("response_cached_tokens", response_cached_tokens)
        for name, cached, total in (("request_cached_tokens", request_cached_tokens, request_tokens),
                                    ("response_cached_tokens", response_cached_tokens, response_tokens)):
            if cached > total:
                raise ValidationError(name, cached,
                                      f"cached tokens are part of the {total} tokens and cannot exceed them")
        return cls.from_counts(request_output_tokens=request_tokens, request_input_tokens=request_tokens,
                               response_output_tokens=response_tokens, response_input_tokens=response_tokens,
                               request_input_cached_tokens=request_cached_tokens,
                               response_input_cached_tokens=response_cached_tokens)

    @classmethod
    def from_interaction(cls, interaction: Interaction) -> InteractionFlows:
        """The four flows of an ``interaction`` event body."""
        _check(interaction, Interaction, "interaction")
        return cls(request_output=interaction.request_output, request_input=interaction.request_input,
                   response_output=interaction.response_output, response_input=interaction.response_input)

    @property
    def total_tokens(self) -> int:
        """Tokens over all four flows (a request is counted once written and once read)."""
        return sum(getattr(self, name).tokens for name in FLOW_NAMES)


@dataclass(frozen=True, kw_only=True)
class FlowCost:
    """One priced flow: its tokens, the rates used, and its uncached and cached parts in micro-USD."""

    tokens: int
    cached_tokens: int
    rate: int  # micro-USD per MTok for the uncached part
    cache_rate: int  # micro-USD per MTok for the cached part
    uncached: int
    cached: int

    @property
    def cost(self) -> int:
        return self.uncached + self.cached


def price_flow(flow: FlowTokens, *, rate: int, cache_rate: int) -> FlowCost:
    """Price one flow: (tokens - cached) at ``rate`` plus cached at ``cache_rate``, each rounded once."""
    return FlowCost(tokens=flow.tokens, cached_tokens=flow.cached_tokens, rate=rate, cache_rate=cache_rate,
                    uncached=cost_micros(flow.tokens - flow.cached_tokens, rate),
                    cached=cost_micros(flow.cached_tokens, cache_rate))


@dataclass(frozen=True, kw_only=True)
class MeteredInteraction:
    """An interaction's four priced flows and the per-side costs. Money in micro-USD."""

    flows: InteractionFlows
    requestor_price: ModelPrice
    responder_price: ModelPrice
    request_output: FlowCost
    request_input: FlowCost
    response_output: FlowCost
    response_input: FlowCost
    total: int
    requestor_incurred: int
    responder_incurred: int
    total_tokens: int

    def __post_init__(self) -> None:
        # Paired checks: the same money seen per flow, per side and in total must agree exactly.
        # Raised, not asserted, so an instance rebuilt from outside data is checked too.
        checks = (
            ("requestor_incurred", self.requestor_incurred, self.request_output.cost + self.response_input.cost),
            ("responder_incurred", self.responder_incurred, self.request_input.cost + self.response_output.cost),
            ("total", self.total, self.requestor_incurred + self.responder_incurred),
            ("total_tokens", self.total_tokens, self.flows.total_tokens),
        )
        for name, actual, expected in checks:
            if actual != expected:
                raise ValidationError(name, actual, f"must equal the sum of its parts, {expected}")

    def flow_costs(self) -> dict[str, int]:
        """Each flow's cost by name (``request_output`` ... ``response_input``)."""
        return {name: getattr(self, name).cost for name in FLOW_NAMES}


def meter_interaction(flows: InteractionFlows, *, requestor_price: ModelPrice,
                      responder_price: ModelPrice) -> MeteredInteraction:
    """Price the four flows of one interaction with each side's price-book entry."""
    _check(flows, InteractionFlows, "flows")
    _check(requestor_price, ModelPrice, "requestor_price")
    _check(responder_price, ModelPrice, "responder_price")
    request_output = price_flow(flows.request_output, rate=requestor_price.output,
                                cache_rate=requestor_price.cache_read)
    request_input = price_flow(flows.request_input, rate=responder_price.input, cache_rate=responder_price.cache_read)
    response_output = price_flow(flows.response_output, rate=responder_price.output,
                                 cache_rate=responder_price.cache_read)
    response_input = price_flow(flows.response_input, rate=requestor_price.input, cache_rate=requestor_price.cache_read)
    requestor_incurred = request_output.cost + response_input.cost
    responder_incurred = request_input.cost + response_output.cost
    return MeteredInteraction(flows=flows, requestor_price=requestor_price, responder_price=responder_price,
                              request_output=request_output, request_input=request_input,
                              response_output=response_output, response_input=response_input,
                              total=check_result_micros("total", requestor_incurred + responder_incurred),
                              requestor_incurred=requestor_incurred, responder_incurred=responder_incurred,
                              total_tokens=flows.total_tokens)


def estimate_interaction_cost(*, request_tokens: int, response_tokens: int, requestor_price: ModelPrice,
                              responder_price: ModelPrice) -> MeteredInteraction:
    """What an interaction of this size would cost, before it happens (no caching assumed)."""
    flows = InteractionFlows.symmetric(request_tokens=request_tokens, response_tokens=response_tokens)
    return meter_interaction(flows, requestor_price=requestor_price, responder_price=responder_price)


def _check(value: Any, kind: type, field: str) -> None:
    if not isinstance(value, kind):
        raise ValidationError(field, value, f"must be a {kind.__name__}")
