"""tbcontracts' ``BudgetContract``: one agent's token budget, priority, reserve and confidence gate.

Each contract is the ledger's own ``BudgetPolicy`` of kind ``llm_tokens`` for the agent (``policy()``), so the
validation and the defaults are the ledger's: ``min_reserve`` defaults to 10% of ``max_tokens`` rounded down
(``ledger.economics.budget.DEFAULT_MIN_RESERVE_PERCENT``; 15 -> 1, 5 -> 0, 1005 -> 100, as the reference), fixed
when the contract is made. Every bad field raises ``ledger.errors.ValidationError`` (a ``ValueError``, which the
reference raises) naming the field.

Deviations: ``priority`` and ``max_tokens`` must be ints (the reference accepts floats such as priority 1.5; a
float token count is a unit error, and the ledger ranks priorities as integers); ``agent_name`` must be 1..128
printable characters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ledger.economics import budget as b
from ledger.economics.reputation import require_id, require_int, require_real
from ledger.limits import MAX_DURATION_US, MAX_PRIORITY_RANK
from ledger.wire.vocab import BudgetKind, HardLimitAction

# The reference has no budget periods: its allocation never resets. A ledger policy has a window; the longest
# duration the log accepts (ten years) stands for "never within any run".
NO_RESET_INTERVAL_US = MAX_DURATION_US


@dataclass
class BudgetContract:
    """An agent's budget in tokens (priority: higher = more important, keeps its budget longer)."""

    agent_name: str
    priority: int = 1
    max_tokens: int = 1000
    min_reserve: int | None = None
    confidence_threshold: float | None = None
    last_confidence: float | None = None
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        require_id("agent_name", self.agent_name)
        require_int("priority", self.priority, low=1, high=MAX_PRIORITY_RANK)
        require_int("max_tokens", self.max_tokens)
        if self.min_reserve is not None:
            require_int("min_reserve", self.min_reserve, high=self.max_tokens)
        if self.confidence_threshold is not None:
            self.confidence_threshold = require_real("confidence_threshold", self.confidence_threshold,
                                                     low=0.0, high=1.0)
        if self.last_confidence is not None:
            self.last_confidence = require_real("last_confidence", self.last_confidence, low=0.0, high=1.0)
        self.min_reserve = self.policy().resolved_min_reserve

    @property
    def reserve(self) -> int:
        """``min_reserve``, resolved (it is always an int once the contract is made)."""
        assert self.min_reserve is not None  # resolved in __post_init__
        return self.min_reserve

    def policy(self) -> b.BudgetPolicy:
        """The contract as the ledger's policy: an ``llm_tokens`` budget of ``max_tokens`` that refuses beyond it
        (hard limit 100%, action deny, no soft throttling, no emergency reserve, no suspension), never reset."""
        return b.BudgetPolicy(
            kind=BudgetKind.LLM_TOKENS, allocation=self.max_tokens, reset_interval_us=NO_RESET_INTERVAL_US,
            overage=b.OveragePolicy(soft_limit_pct=80, hard_limit_pct=100, throttle_at_soft=False,
                                    suspend_at_hard=False, emergency_reserve_pct=0),
            hard_limit_action=HardLimitAction.DENY, min_reserve=self.min_reserve, priority=self.priority,
            confidence_threshold=self.confidence_threshold)
