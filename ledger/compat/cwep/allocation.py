"""CWEP allocation over the ledger's allocation methods (``ledger.economics.allocation``).

Each function takes a CMR, converts it to the ledger's metered interaction, allocates in exact micro-USD and returns
a ``SettlementProposal`` in float USD. USD parameters (``standalone_cost_b``, Nash values and disagreement points)
must be exact to the micro-USD.
"""

from __future__ import annotations

import inspect
from typing import Any

from ledger.economics import allocation as core
from ledger.errors import ValidationError

from . import _units
from .schema import CostMeteringRecord, SettlementProposal

_USD_PARAMETERS = ("standalone_cost_a", "standalone_cost_b", "value_a", "value_b", "disagreement_a",
                   "disagreement_b", "surplus")


def proposal_of(allocation: core.Allocation) -> SettlementProposal:
    """The ledger's allocation as a CWEP proposal (money in float USD; ``none`` direction as ``""``)."""
    params = {k: (_units.usd(v) if k in _USD_PARAMETERS and isinstance(v, int) else v)
              for k, v in allocation.parameters.items()}
    return SettlementProposal(method=allocation.method, requestor_pays_usd=_units.usd(allocation.requestor_pays),
                              responder_pays_usd=_units.usd(allocation.responder_pays),
                              net_transfer_usd=_units.usd(allocation.net_transfer),
                              transfer_direction=_units.direction(allocation.direction), parameters=params)


def _metered(cmr: CostMeteringRecord) -> Any:
    if not isinstance(cmr, CostMeteringRecord):
        raise ValidationError("cmr", cmr, "must be a CostMeteringRecord")
    return cmr.metered()


def allocate_requestor_pays(cmr: CostMeteringRecord) -> SettlementProposal:
    return proposal_of(core.allocate_requestor_pays(_metered(cmr)))


def allocate_responder_pays(cmr: CostMeteringRecord) -> SettlementProposal:
    return proposal_of(core.allocate_responder_pays(_metered(cmr)))


def allocate_equal_split(cmr: CostMeteringRecord) -> SettlementProposal:
    return proposal_of(core.allocate_equal_split(_metered(cmr)))


def allocate_proportional(cmr: CostMeteringRecord) -> SettlementProposal:
    """Shares by the four real token counts (an equal split for a ``record_interaction`` CMR)."""
    return proposal_of(core.allocate_proportional(_metered(cmr)))


def allocate_shapley(cmr: CostMeteringRecord, standalone_cost_b: float = 0.0) -> SettlementProposal:
    """Two-player Shapley value; the requestor's standalone cost is its request-output cost."""
    return proposal_of(core.allocate_shapley(_metered(cmr), standalone_cost_b=_units.usd_micros(
        "standalone_cost_b", standalone_cost_b)))


def allocate_nash(cmr: CostMeteringRecord, value_a: float, value_b: float, alpha: float = 0.5,
                  disagreement_a: float = 0.0, disagreement_b: float = 0.0) -> SettlementProposal:
    """Nash bargaining; ``alpha`` in [0, 1] is the requestor's power. With no surplus the proposal is proportional
    and says so (``method`` "proportional", ``parameters["requested_method"]`` "nash_bargaining")."""
    return proposal_of(core.allocate_nash_bargaining(
        _metered(cmr), value_a=_units.usd_micros("value_a", value_a), value_b=_units.usd_micros("value_b", value_b),
        alpha=alpha, disagreement_a=_units.usd_micros("disagreement_a", disagreement_a),
        disagreement_b=_units.usd_micros("disagreement_b", disagreement_b), no_surplus_fallback=core.PROPORTIONAL))


_BY_NAME: dict[str, Any] = {
    core.REQUESTOR_PAYS: allocate_requestor_pays, core.RESPONDER_PAYS: allocate_responder_pays,
    core.EQUAL_SPLIT: allocate_equal_split, core.PROPORTIONAL: allocate_proportional,
    core.SHAPLEY: allocate_shapley, core.NASH_BARGAINING: allocate_nash,
}


def allocate(cmr: CostMeteringRecord, method: str = "shapley", **kwargs: Any) -> SettlementProposal:
    """Allocate by method name. Unknown methods (``beneficiary_pays`` included) and unknown parameters are
    ValidationErrors (ValueErrors); ``nash_bargaining`` needs ``value_a`` and ``value_b``."""
    if method not in _BY_NAME:
        core.allocate(_metered(cmr), method, **kwargs)  # raises the ledger's error naming the method
        raise ValidationError("method", method, "unknown allocation method")
    if method == core.NASH_BARGAINING:
        for name in ("value_a", "value_b"):
            if name not in kwargs:
                raise ValidationError(name, None, "required by nash_bargaining (the reference's silent default 0 "
                                                  "always fell back to a proportional split)")
    allowed = set(inspect.signature(_BY_NAME[method]).parameters) - {"cmr"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValidationError(unknown[0], kwargs[unknown[0]],
                              f"not a parameter of {method}; allowed: {', '.join(sorted(allowed)) or 'none'}")
    result: SettlementProposal = _BY_NAME[method](cmr, **kwargs)
    return result
