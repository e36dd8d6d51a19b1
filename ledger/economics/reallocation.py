"""Priority-weighted reallocation of unused budget, confidence gating, reputation-scaled allocations.

What this module does
    ``plan_reallocation`` decides which agents give how much unused budget to an agent that is
    short, as a tuple of ``Transfer`` values, or refuses with a ``Refusal``. Donors are taken in
    the reference package's order (token-budget-contracts 0.3.0, ``Reallocator``; SEEDS.md §2.3):

    1. lowest priority first (priority: higher = more important);
    2. then the most idle = the largest remaining balance;
    3. then, where the reference keeps registration order, by ``agent_id`` ascending: a stable
       key every shard of a processor agrees on without knowing the order agents registered in.

    A donor gives ``min(remaining - min_reserve, what is still missing)``. Agents of equal priority
    donate; agents of strictly higher priority never do; an agent at or below its reserve is
    skipped.

    ``gate_allows`` and ``next_confidence`` are the reference's confidence gate and the transition
    that records a reported confidence (SEEDS.md §2.5). ``reputation_allocation`` scales a base
    allocation by the seed-002 reputation multiplier.

Invariants (property-tested in tests/test_reallocation.py)
    * Conservation: the transfers add up to exactly the shortfall; what donors lose the needy agent
      gains.
    * No donor ends below its ``min_reserve``.
    * Nothing flows uphill: every donor's priority is <= the needy agent's.
    * Atomic: if the eligible donors together cannot cover the shortfall, the answer is a
      ``Refusal`` and nothing moves. (The reference moves what it can and leaves those partial
      moves behind when it then fails; we do not.)
    * Deterministic: the plan depends only on the participants' values, never on input order.

What it must never do
    Read a clock or the environment, mutate its inputs, or move tokens it was not asked to move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ledger.economics.reputation import (
    apply_multiplier,
    budget_multiplier,
    require_id,
    require_int,
    require_real,
)
from ledger.errors import ValidationError
from ledger.limits import MAX_PRIORITY_RANK


@dataclass(frozen=True)
class Participant:
    """One agent as reallocation sees it (all amounts in the units of one budget kind).

    ``remaining`` is the allocation the agent has not used (nor promised through reservations);
    ``min_reserve`` is what it always keeps.
    """

    agent_id: str
    priority: int
    remaining: int
    min_reserve: int

    def __post_init__(self) -> None:
        require_id("agent_id", self.agent_id)
        require_int("priority", self.priority, low=1, high=MAX_PRIORITY_RANK)
        require_int("remaining", self.remaining)
        require_int("min_reserve", self.min_reserve)

    @property
    def spare(self) -> int:
        """What the agent can give without going below its reserve (0 if already at or below it)."""
        return max(0, self.remaining - self.min_reserve)


@dataclass(frozen=True)
class Transfer:
    """``amount`` units of unused allocation moved from ``donor`` to ``recipient``."""

    donor: str
    recipient: str
    amount: int

    def __post_init__(self) -> None:
        require_id("donor", self.donor)
        require_id("recipient", self.recipient)
        require_int("amount", self.amount, low=1)
        if self.donor == self.recipient:
            raise ValidationError("donor", self.donor, "must differ from the recipient")


@dataclass(frozen=True)
class Refusal:
    """Reallocation could not cover ``shortfall``: eligible donors had only ``available`` to spare."""

    recipient: str
    shortfall: int
    available: int


def _index(participants: Sequence[Participant]) -> dict[str, Participant]:
    by_id: dict[str, Participant] = {}
    for p in participants:
        if not isinstance(p, Participant):
            raise ValidationError("participants", p, "must hold Participant values")
        if p.agent_id in by_id:
            raise ValidationError("participants", p.agent_id, "agent ids must be unique")
        by_id[p.agent_id] = p
    return by_id


def eligible_donors(participants: Sequence[Participant], needy: str) -> tuple[Participant, ...]:
    """The agents that may give to ``needy``, in the order they are drained.

    Eligible: not the needy agent, priority <= the needy agent's, spare > 0. (The reference's
    ``find_donors`` also lists higher-priority agents and skips them later; the outcome is the same.)
    """
    by_id = _index(participants)
    require_id("needy", needy)
    if needy not in by_id:
        raise ValidationError("needy", needy, "is not among the participants")
    ceiling = by_id[needy].priority
    donors = [p for p in by_id.values() if p.agent_id != needy and p.priority <= ceiling and p.spare > 0]
    donors.sort(key=lambda p: (p.priority, -p.remaining, p.agent_id))
    return tuple(donors)


def plan_reallocation(
    participants: Sequence[Participant], needy: str, shortfall: int
) -> tuple[Transfer, ...] | Refusal:
    """The transfers that cover ``shortfall`` for ``needy``, or a ``Refusal`` that moves nothing.

    A shortfall of 0 needs no transfer: the answer is an empty tuple.
    """
    shortfall = require_int("shortfall", shortfall)
    donors = eligible_donors(participants, needy)
    available = sum(d.spare for d in donors)
    if available < shortfall:
        return Refusal(needy, shortfall, available)
    transfers: list[Transfer] = []
    missing = shortfall
    for donor in donors:
        if missing == 0:
            break
        take = min(donor.spare, missing)
        transfers.append(Transfer(donor.agent_id, needy, take))
        missing -= take
    return tuple(transfers)


def apply_transfers(participants: Sequence[Participant], transfers: Sequence[Transfer]) -> tuple[Participant, ...]:
    """The participants after the transfers, in the same order (remaining moved, nothing else)."""
    by_id = _index(participants)
    delta = dict.fromkeys(by_id, 0)
    for t in transfers:
        for who in (t.donor, t.recipient):
            if who not in by_id:
                raise ValidationError("transfer", who, "names an agent that is not a participant")
        delta[t.donor] -= t.amount
        delta[t.recipient] += t.amount
    moved = []
    for p in participants:
        remaining = p.remaining + delta[p.agent_id]
        if remaining < 0:
            raise ValidationError("transfers", p.agent_id, "would take more than the agent has left")
        moved.append(replace(p, remaining=remaining))
    return tuple(moved)


# ---------------------------------------------------------------------------------------------
# Confidence gating (reference: ConfidenceGate.allow_further_retrieval, SEEDS.md §2.5)
# ---------------------------------------------------------------------------------------------


def _confidence(field_name: str, value: float | None) -> float | None:
    # The reference accepts any float (5.0 passes); a confidence is a probability, so we refuse
    # anything outside [0, 1], NaN and infinities included.
    return None if value is None else require_real(field_name, value, low=0.0, high=1.0)


def gate_allows(threshold: float | None, last_confidence: float | None) -> bool:
    """May the agent spend again? Exactly the reference's rule.

    No threshold: always. No confidence reported yet: yes (fail open: no signal to deny on).
    Otherwise only while the last confidence is strictly below the threshold, so a confidence equal
    to the threshold closes the gate (and threshold 0.0 with confidence 0.0 does too).
    """
    threshold = _confidence("confidence_threshold", threshold)
    last_confidence = _confidence("last_confidence", last_confidence)
    if threshold is None or last_confidence is None:
        return True
    return last_confidence < threshold


def next_confidence(previous: float | None, reported: float | None) -> float | None:
    """The agent's last confidence after a result is reported with confidence ``reported``.

    A reported value replaces the previous one, so a lower confidence reopens a closed gate. A
    result reported without a confidence (None) keeps the previous value: only a lower confidence
    lifts the gate. (The reference's ``record_usage`` does the same. Its ``govern`` decorator
    stores None instead, but only after a call the open gate let through, so the gate behaves
    alike.)
    """
    previous = _confidence("previous confidence", previous)
    reported = _confidence("confidence", reported)
    return previous if reported is None else reported


# ---------------------------------------------------------------------------------------------
# Reputation multipliers (seed 002, implementReputationBasedBudgeting)
# ---------------------------------------------------------------------------------------------


def reputation_allocation(base_allocation: int, overall_score: float) -> int:
    """``base_allocation`` scaled by the seed-002 multiplier of ``overall_score``, rounded down."""
    return apply_multiplier(base_allocation, budget_multiplier(overall_score))

