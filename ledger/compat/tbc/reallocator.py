"""tbcontracts' ``Reallocator``, on ``ledger.economics.reallocation.plan_reallocation``.

Donors are drained lowest priority first, then the largest remaining balance first; equal priorities donate,
strictly higher ones never do; no donor goes below its ``min_reserve``.

Deviations (each the ledger's rule, documented in ``ledger.economics.reallocation``):

* **All or nothing.** When the eligible donors cannot cover the whole shortfall, nothing moves and ``reallocate``
  returns 0. The reference moves what it can, returns the partial amount and leaves those moves with the needy
  agent even when the spend that needed them is then refused.
* Donors of equal priority and equal remaining balance are taken by agent name, not by registration order (a key
  every reader of a log agrees on).
* An agent overdrawn by a raw ``Ledger.record`` counts as having 0 remaining (it has nothing to give).
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.compat.tbc.contract import BudgetContract
from ledger.compat.tbc.exceptions import UnknownAgentError
from ledger.compat.tbc.ledger import Ledger
from ledger.compat.tbc.telemetry import TelemetryRecorder
from ledger.economics.reallocation import Participant, Refusal, Transfer, eligible_donors, plan_reallocation
from ledger.economics.reputation import require_int
from ledger.limits import INT64_MAX


class Reallocator:
    """Moves unused allocation to an agent that is short, from the agents that may give it."""

    def __init__(self, contracts: Mapping[str, BudgetContract], ledger: Ledger,
                 telemetry: TelemetryRecorder | None = None) -> None:
        self.contracts = contracts
        self.ledger = ledger
        self.telemetry = telemetry if telemetry is not None else TelemetryRecorder.disabled()
        self.last_transfers: tuple[Transfer, ...] = ()  # the moves of the last reallocate (empty if refused)

    def participants(self) -> list[Participant]:
        """Every registered agent as the ledger's reallocation sees it."""
        return [Participant(name, c.priority, max(0, self.ledger.remaining(name)), c.reserve)
                for name, c in self.contracts.items()]

    def find_donors(self, exclude: str) -> list[str]:
        """The agents that may give to ``exclude``, in the order they are drained (only eligible ones: the
        reference also lists higher-priority agents, which it skips later)."""
        if exclude not in self.contracts:
            raise UnknownAgentError(f"Unknown agent '{exclude}'")
        return [p.agent_id for p in eligible_donors(self.participants(), exclude)]

    def reallocate(self, needy_agent: str, shortfall: int) -> int:
        """Cover ``shortfall`` tokens for ``needy_agent``; returns what moved: ``shortfall`` or 0, never a part."""
        if needy_agent not in self.contracts:
            raise UnknownAgentError(f"Unknown agent '{needy_agent}'")
        require_int("shortfall", shortfall, low=-INT64_MAX)
        self.last_transfers = ()
        if shortfall <= 0:
            return 0
        plan = plan_reallocation(self.participants(), needy_agent, shortfall)
        if isinstance(plan, Refusal):
            return 0
        for t in plan:
            self.ledger.adjust_allocation(t.donor, -t.amount)
            self.ledger.adjust_allocation(t.recipient, t.amount)
            self.telemetry.event_reallocation(t.recipient, t.donor, t.amount, shortfall)
        self.last_transfers = plan
        return shortfall
