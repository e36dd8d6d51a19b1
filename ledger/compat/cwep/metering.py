"""CWEP metering: a requestor's ``Meter`` builds CMRs whose four flows are priced by the ledger's metering."""

from __future__ import annotations

from typing import Any

from ledger.economics.metering import InteractionFlows, meter_interaction

from . import _units
from .schema import (
    DEFAULT_CONTEXT_WINDOW_TOKENS,
    AgentInfo,
    AgentPricing,
    ContextState,
    CostMeteringRecord,
    TokenFlow,
    _new_id,
)

DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_PROVIDER = "anthropic"


def _pricing(provider: str, model: str, pricing: AgentPricing | None) -> AgentPricing:
    return AgentPricing.from_provider(provider, model) if pricing is None else pricing


class Meter:
    """The requestor's meter: ``agent_id``'s pricing comes from the table unless ``pricing`` is given."""

    def __init__(self, agent_id: str, model: str = DEFAULT_MODEL, provider: str = DEFAULT_PROVIDER,
                 pricing: AgentPricing | None = None) -> None:
        self.agent_id = agent_id
        self.model = model
        self.provider = provider
        self.pricing = _pricing(provider, model, pricing)

    def _info(self) -> AgentInfo:
        return AgentInfo(agent_id=self.agent_id, model=self.model, provider=self.provider, pricing=self.pricing)

    def record_interaction(self, responder_id: str, responder_model: str = DEFAULT_MODEL,
                           responder_provider: str = DEFAULT_PROVIDER, responder_pricing: AgentPricing | None = None,
                           request_tokens: int = 0, request_cached_tokens: int = 0, response_tokens: int = 0,
                           response_cached_tokens: int = 0, context_utilization_pre: float = 0.0,
                           context_utilization_post: float = 0.0,
                           context_window_size: int = DEFAULT_CONTEXT_WINDOW_TOKENS,
                           interaction_id: str | None = None, coc_chain_ref: str | None = None) -> CostMeteringRecord:
        """A CMR for a request of ``request_tokens`` (read by the responder, ``request_cached_tokens`` of them from
        its cache) and a response of ``response_tokens`` (read back, ``response_cached_tokens`` cached)."""
        return self.record_flows(
            responder_id, responder_model, responder_provider, responder_pricing,
            ro_tokens=request_tokens, ri_tokens=request_tokens, ri_cached=request_cached_tokens,
            so_tokens=response_tokens, si_tokens=response_tokens, si_cached=response_cached_tokens,
            interaction_id=interaction_id, coc_chain_ref=coc_chain_ref,
            context_state=ContextState(responder_utilization_pre=context_utilization_pre,
                                       responder_utilization_post=context_utilization_post,
                                       responder_window_size=_units.tokens("context_window_size",
                                                                           context_window_size)))

    def record_flows(self, responder_id: str, responder_model: str = DEFAULT_MODEL,
                     responder_provider: str = DEFAULT_PROVIDER, responder_pricing: AgentPricing | None = None,
                     ro_tokens: int = 0, ri_tokens: int = 0, ri_cached: int = 0, so_tokens: int = 0,
                     si_tokens: int = 0, si_cached: int = 0, interaction_id: str | None = None,
                     coc_chain_ref: str | None = None, context_state: ContextState | None = None) -> CostMeteringRecord:
        """A CMR from four explicit counts (e.g. a protocol envelope makes the read request longer than the
        written one)."""
        responder = AgentInfo(agent_id=responder_id, model=responder_model, provider=responder_provider,
                              pricing=_pricing(responder_provider, responder_model, responder_pricing))
        cmr = CostMeteringRecord(
            requestor=self._info(), responder=responder,
            flows={"request_output": TokenFlow(ro_tokens), "request_input": TokenFlow(ri_tokens, ri_cached),
                   "response_output": TokenFlow(so_tokens), "response_input": TokenFlow(si_tokens, si_cached)},
            context_state=context_state or ContextState(), interaction_id=interaction_id or _new_id(),
            coc_chain_ref=coc_chain_ref)
        return cmr.compute_costs()


def compute_flow_cost(tokens: int, rate_per_mtok: float, cached_tokens: int = 0,
                      cache_rate_per_mtok: float = 0.0) -> float:
    """(tokens - cached) at ``rate_per_mtok`` plus cached at ``cache_rate_per_mtok``, in USD (exact micros)."""
    return AgentPricing(rate_per_mtok, 0.0, cache_rate_per_mtok).input_cost(tokens, cached_tokens)


def estimate_interaction_cost(request_tokens: int, response_tokens: int, requestor_model: str = DEFAULT_MODEL,
                              requestor_provider: str = DEFAULT_PROVIDER, responder_model: str = DEFAULT_MODEL,
                              responder_provider: str = DEFAULT_PROVIDER) -> dict[str, Any]:
    """Each flow's cost, the total and each side's share before the interaction happens (no caching)."""
    rp = AgentPricing.from_provider(requestor_provider, requestor_model).model_price()
    sp = AgentPricing.from_provider(responder_provider, responder_model).model_price()
    flows = InteractionFlows.symmetric(request_tokens=_units.tokens("request_tokens", request_tokens),
                                       response_tokens=_units.tokens("response_tokens", response_tokens))
    m = meter_interaction(flows, requestor_price=rp, responder_price=sp)
    return {"ro": _units.usd(m.request_output.cost), "ri": _units.usd(m.request_input.cost),
            "so": _units.usd(m.response_output.cost), "si": _units.usd(m.response_input.cost),
            "total": _units.usd(m.total), "requestor_incurred": _units.usd(m.requestor_incurred),
            "responder_incurred": _units.usd(m.responder_incurred)}
