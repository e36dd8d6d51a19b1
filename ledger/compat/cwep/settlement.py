"""CWEP settlement: the engine (tiers, threshold, proposals, verification), batches netted per agent pair, the
no-op payment rail and the record checks, over ``ledger.economics.proposals`` and ``ledger.economics.netting``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.economics import netting, proposals
from ledger.economics.allocation import REQUESTOR_TO_RESPONDER, RESPONDER_TO_REQUESTOR
from ledger.errors import ValidationError

from . import _units
from .allocation import allocate
from .schema import (
    DEFAULT_BATCH_THRESHOLD_USD,
    DEFAULT_BATCH_WINDOW_SECONDS,
    DEFAULT_SETTLEMENT_THRESHOLD,
    CostMeteringRecord,
    SettlementProposal,
    SettlementTier,
    _now,
)

DEFAULT_TOLERANCE = float(proposals.DEFAULT_PROPOSAL_TOLERANCE)


@dataclass
class SettlementReceipt:
    interaction_id: str
    from_agent: str
    to_agent: str
    amount_usd: float
    status: str = "completed"
    timestamp: str = field(default_factory=_now)
    tx_ref: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PaymentRail:
    """The default rail moves no money: every call succeeds and says so (subclass it for a real rail)."""

    def commit_deposit(self, deposit: Any) -> bool:
        return True

    def release_deposit(self, deposit: Any) -> bool:
        return True

    def forfeit_deposit(self, deposit: Any) -> bool:
        return True

    def settle(self, from_agent: str, to_agent: str, amount_usd: float, interaction_id: str) -> SettlementReceipt:
        return SettlementReceipt(interaction_id=interaction_id, from_agent=from_agent, to_agent=to_agent,
                                 amount_usd=amount_usd)

    def stream_open(self, from_agent: str, to_agent: str, rate_usd_per_second: float) -> str:
        return f"stream-{from_agent}-{to_agent}"

    def stream_close(self, handle: str) -> SettlementReceipt:
        return SettlementReceipt(interaction_id=handle, from_agent="", to_agent="", amount_usd=0.0, status="closed")


class SettlementEngine:
    """Proposes (and, through its rail, settles) one CMR at a time.

    ``tier_1_metering`` (the default) never proposes; an unknown tier is a ValidationError at construction.
    A CMR whose total cost is below ``threshold_usd`` gets no proposal; a transfer below it is not paid.
    """

    def __init__(self, tier: str = SettlementTier.TIER_1_METERING.value, method: str = "shapley",
                 threshold_usd: float = DEFAULT_SETTLEMENT_THRESHOLD, payment_rail: PaymentRail | None = None,
                 tolerance: float = DEFAULT_TOLERANCE, **allocation_kwargs: Any) -> None:
        netting.settlement_tier(tier)
        self.tier = tier
        self.method = method
        self.threshold_usd = threshold_usd
        self._threshold = _units.usd_micros("threshold_usd", threshold_usd)
        self.payment_rail = payment_rail or PaymentRail()
        self.tolerance = tolerance
        self.allocation_kwargs = allocation_kwargs

    def propose(self, cmr: CostMeteringRecord) -> SettlementProposal | None:
        if not proposals.should_propose(tier=self.tier, total_micros=cmr.metered().total,
                                        threshold_micros=self._threshold):
            return None
        return allocate(cmr, self.method, **self.allocation_kwargs)

    def settle(self, cmr: CostMeteringRecord, proposal: SettlementProposal | None = None) -> SettlementReceipt | None:
        """Pay the proposal's net transfer through the rail and attach the proposal to ``cmr``; None when there
        is nothing (or too little) to pay."""
        proposal = proposal if proposal is not None else self.propose(cmr)
        if proposal is None or proposal.transfer_direction == _units.NO_DIRECTION:
            return None
        if _units.usd_micros("proposal.net_transfer_usd", proposal.net_transfer_usd) < self._threshold:
            return None
        if proposal.transfer_direction == REQUESTOR_TO_RESPONDER:
            payer, payee = cmr.requestor.agent_id, cmr.responder.agent_id
        elif proposal.transfer_direction == RESPONDER_TO_REQUESTOR:
            payer, payee = cmr.responder.agent_id, cmr.requestor.agent_id
        else:
            raise ValidationError("proposal.transfer_direction", proposal.transfer_direction, "unknown direction")
        cmr.settlement = proposal
        return self.payment_rail.settle(payer, payee, proposal.net_transfer_usd, cmr.interaction_id)

    def verify_proposals(self, proposal_a: SettlementProposal, proposal_b: SettlementProposal,
                         total_cost: float) -> tuple[bool, float]:
        """(agreed, discrepancy in USD): the requestor's shares differ by at most tolerance x total_cost."""
        check = proposals.verify_proposals(
            _units.usd_micros("proposal_a.requestor_pays_usd", proposal_a.requestor_pays_usd),
            _units.usd_micros("proposal_b.requestor_pays_usd", proposal_b.requestor_pays_usd),
            total_micros=_units.usd_micros("total_cost", total_cost), tolerance=self.tolerance)
        return check.agreed, _units.usd(check.discrepancy_micros)


def _event_seconds(cmr: CostMeteringRecord) -> float:
    try:
        return datetime.fromisoformat(cmr.timestamp).timestamp()
    except (TypeError, ValueError):
        raise ValidationError("cmr.timestamp", cmr.timestamp, "must be an ISO 8601 time") from None


class SettlementBatch:
    """CMRs collected for one settlement, netted **per agent pair** (A->B and B->A cancel).

    The window runs on the CMRs' own timestamps (replayable), not the wall clock.
    """

    def __init__(self, window_seconds: int = DEFAULT_BATCH_WINDOW_SECONDS,
                 threshold_usd: float = DEFAULT_BATCH_THRESHOLD_USD, method: str = "shapley",
                 **allocation_kwargs: Any) -> None:
        self.window_seconds = window_seconds
        self.threshold_usd = threshold_usd
        self._threshold = _units.usd_micros("threshold_usd", threshold_usd)
        self.method = method
        self.allocation_kwargs = allocation_kwargs
        self._cmrs: list[CostMeteringRecord] = []

    @property
    def count(self) -> int:
        return len(self._cmrs)

    def add(self, cmr: CostMeteringRecord) -> None:
        if not isinstance(cmr, CostMeteringRecord):
            raise ValidationError("cmr", cmr, "must be a CostMeteringRecord")
        _event_seconds(cmr)
        self._cmrs.append(cmr)

    def _pair_nets(self) -> list[netting.Obligation]:
        obligations = []
        for cmr in self._cmrs:
            p = allocate(cmr, self.method, **self.allocation_kwargs)
            amount = _units.usd_micros("net_transfer_usd", p.net_transfer_usd)
            if p.transfer_direction == REQUESTOR_TO_RESPONDER:
                obligations.append(netting.Obligation(cmr.requestor.agent_id, cmr.responder.agent_id, amount))
            elif p.transfer_direction == RESPONDER_TO_REQUESTOR:
                obligations.append(netting.Obligation(cmr.responder.agent_id, cmr.requestor.agent_id, amount))
        return netting.net_pairs(obligations)

    def should_flush(self) -> bool:
        if not self._cmrs:
            return False
        times = [_event_seconds(c) for c in self._cmrs]
        if max(times) - min(times) >= self.window_seconds:
            return True
        return any(o.amount_micros >= self._threshold for o in self._pair_nets())

    def flush(self) -> dict[str, Any]:
        """The batch's transfers, one per agent pair with a nonzero net, then an empty batch.

        ``net_amount_usd`` is the money moved (the sum of the pair transfers); ``direction`` is the
        requestor/responder direction when every CMR has the same requestor and responder, else ``"per_pair"``.
        """
        nets = self._pair_nets()
        pairs = {(c.requestor.agent_id, c.responder.agent_id) for c in self._cmrs}
        if not nets:
            direction = _units.NO_DIRECTION
        elif len(pairs) == 1:
            (requestor, _), = pairs
            direction = REQUESTOR_TO_RESPONDER if nets[0].payer == requestor else RESPONDER_TO_REQUESTOR
        else:
            direction = "per_pair"
        result = {"net_amount_usd": _units.usd(sum(o.amount_micros for o in nets)), "direction": direction,
                  "interaction_count": len(self._cmrs), "cmr_ids": [c.interaction_id for c in self._cmrs],
                  "transfers": [{"payer": o.payer, "payee": o.payee, "amount_usd": _units.usd(o.amount_micros)}
                                for o in nets]}
        self._cmrs = []
        return result


def cmr_hash(cmr: CostMeteringRecord) -> str:
    """SHA-256 (hex) of the CMR's dict as JSON with sorted keys (it changes when a settlement is attached)."""
    return hashlib.sha256(json.dumps(cmr.to_dict(), sort_keys=True).encode()).hexdigest()


def verify_cmr_pair(cmr_a: CostMeteringRecord, cmr_b: CostMeteringRecord) -> bool:
    """Whether two parties' CMRs describe the same interaction: same id, same requestor and responder, and the
    same tokens and cached tokens in each of the four flows."""
    if cmr_a.interaction_id != cmr_b.interaction_id:
        return False
    if (cmr_a.requestor.agent_id, cmr_a.responder.agent_id) != (cmr_b.requestor.agent_id, cmr_b.responder.agent_id):
        return False
    for key, flow in cmr_a.flows.items():
        other = cmr_b.flows.get(key)
        if other is None or (other.tokens, other.cached_tokens) != (flow.tokens, flow.cached_tokens):
            return False
    return set(cmr_a.flows) == set(cmr_b.flows)
