"""Settlement math: net obligations per agent pair and across all agents, over event-time windows.

An ``Obligation`` says payer owes payee an amount of micro-USD (from an allocation's net transfer).

* **Pair netting** (``net_pairs``): per unordered pair of agents, A->B and B->A cancel; what is
  left is one obligation from the net debtor to the net creditor, or nothing.
* **Net positions** (``net_positions``): per agent, received minus paid; positive = is owed money,
  negative = owes money. The positions always sum to zero.
* **Multilateral settlement** (``multilateral_settle``): the fewest transfers that bring every
  position to zero, each agent paying or receiving exactly its position. The minimum is
  n - (the largest number of disjoint groups of agents whose positions sum to zero), n being the
  agents with a nonzero position; finding it is NP-hard in general. Exact agents of opposite
  positions are paired first (always optimal), then up to ``EXACT_SETTLEMENT_MAX_AGENTS`` remaining
  agents are partitioned exactly by a dynamic programme over subsets (it visits 2**n subsets),
  and each group is settled greedily (largest debtor pays largest creditor), which takes
  size - 1 transfers per group. Above that limit the remaining agents are settled greedily as one
  group: still exact in every amount, at most n - 1 transfers, not always the fewest.
* **Windows**: obligations are bucketed by event time into windows aligned to multiples of
  ``window_us`` since the epoch (never the wall clock, so a replay gives the same windows). Within
  a window, pair nets at or above the threshold settle; pair nets below it are **carried** into the
  next window as obligations (never dropped), so money is conserved across windows.
* **Tiers**: ``tier_1_metering`` meters and never settles; ``tier_2_rule_based`` and
  ``tier_3_dynamic`` settle. Any other tier string is a ``ValidationError`` (the reference settles
  on any unknown string, typos included).

Deviation from the reference (context-window-economics 0.1.1): its batch nets by *role*
(requestor/responder), so A->B and B->A interactions add up instead of cancelling, and its result
names no agents. Here netting is per agent pair with explicit payer and payee.

Invariants: results are deterministic (sorted by agent id); every function conserves money
exactly; net positions sum to zero. Never: I/O, clock, floats, dropping an amount.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ledger import limits
from ledger.economics.allocation import NO_TRANSFER, REQUESTOR_TO_RESPONDER, Allocation
from ledger.economics.money import check_event_time_us, check_int, check_micros
from ledger.errors import ValidationError
from ledger.units import MICROS_PER_USD, US_PER_HOUR
from ledger.wire.vocab import SettlementTier

# Agents with a nonzero position (after pairing exact opposites) settled by the exact subset
# programme, which visits 2**n subsets: 18 agents take about 0.25 s and 10 MB in CPython (each
# further agent doubles both).
EXACT_SETTLEMENT_MAX_AGENTS = 18
DEFAULT_WINDOW_US = US_PER_HOUR  # one hour, the reference's batch window
DEFAULT_BATCH_THRESHOLD_MICROS = 1 * MICROS_PER_USD  # $1.00, the reference's batch threshold
DEFAULT_SETTLEMENT_THRESHOLD_MICROS = MICROS_PER_USD // 100  # $0.01, the reference's per-settlement threshold


def _check_agent(field: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > limits.MAX_ID_CHARS:
        raise ValidationError(field, value, f"must be a non-empty string of at most {limits.MAX_ID_CHARS} characters")
    return value


@dataclass(frozen=True)
class Obligation:
    """``payer`` owes ``payee`` ``amount_micros`` micro-USD."""

    payer: str
    payee: str
    amount_micros: int

    def __post_init__(self) -> None:
        _check_agent("payer", self.payer)
        _check_agent("payee", self.payee)
        if self.payer == self.payee:
            raise ValidationError("payee", self.payee, "an agent cannot owe itself")
        check_micros("amount_micros", self.amount_micros)


class Transfer(Obligation):
    """A payment that settles positions: ``payer`` pays ``payee`` ``amount_micros`` micro-USD."""


def obligation_from_allocation(allocation: Allocation, *, requestor: str, responder: str) -> Obligation | None:
    """The obligation an allocation's net transfer creates between the two agents (None if zero)."""
    if not isinstance(allocation, Allocation):
        raise ValidationError("allocation", allocation, "must be an Allocation")
    if allocation.direction == NO_TRANSFER:
        return None
    if allocation.direction == REQUESTOR_TO_RESPONDER:
        return Obligation(requestor, responder, allocation.net_transfer)
    return Obligation(responder, requestor, allocation.net_transfer)


def _check_obligations(obligations: Iterable[Obligation]) -> list[Obligation]:
    checked = list(obligations)
    for index, obligation in enumerate(checked):
        if not isinstance(obligation, Obligation):
            raise ValidationError(f"obligations[{index}]", obligation, "must be an Obligation")
    return checked


def net_pairs(obligations: Iterable[Obligation]) -> list[Obligation]:
    """One obligation per agent pair with a nonzero net (A->B and B->A cancel), sorted by (payer, payee)."""
    owed: dict[tuple[str, str], int] = defaultdict(int)  # (lower id, higher id) -> what lower owes higher
    for obligation in _check_obligations(obligations):
        if obligation.payer < obligation.payee:
            owed[(obligation.payer, obligation.payee)] += obligation.amount_micros
        else:
            owed[(obligation.payee, obligation.payer)] -= obligation.amount_micros
    netted = [Obligation(low, high, amount) if amount > 0 else Obligation(high, low, -amount)
              for (low, high), amount in owed.items() if amount != 0]
    return sorted(netted, key=lambda o: (o.payer, o.payee))


def net_positions(obligations: Iterable[Obligation]) -> dict[str, int]:
    """Per agent, received minus paid (positive = is owed); every agent seen, sorted by id; sums to 0."""
    positions: dict[str, int] = defaultdict(int)
    for obligation in _check_obligations(obligations):
        positions[obligation.payer] -= obligation.amount_micros
        positions[obligation.payee] += obligation.amount_micros
    result = {agent: positions[agent] for agent in sorted(positions)}
    assert sum(result.values()) == 0
    return result


# ------------------------------------------------------------------ multilateral settlement


def multilateral_settle(positions: Mapping[str, int]) -> list[Transfer]:
    """The fewest transfers that settle every position exactly (see the module docstring for the limit).

    ``positions``: agent -> micro-USD, positive = is owed; they must sum to zero.
    """
    if not isinstance(positions, Mapping):
        raise ValidationError("positions", positions, "must be a mapping of agent id to micro-USD")
    for agent, amount in positions.items():
        _check_agent("positions", agent)
        check_micros(f"positions[{agent}]", amount, signed=True)
    if sum(positions.values()) != 0:
        raise ValidationError("positions", sum(positions.values()), "positions must sum to zero")
    # Sorted by agent id so every choice below, and so the result, is deterministic.
    remaining = sorted((agent, amount) for agent, amount in positions.items() if amount != 0)
    transfers: list[Transfer] = []
    remaining = _pair_opposites(remaining, transfers)
    if len(remaining) <= EXACT_SETTLEMENT_MAX_AGENTS:
        groups = _zero_sum_groups([amount for _, amount in remaining])
    else:
        groups = [list(range(len(remaining)))]
    for group in groups:
        transfers.extend(_settle_greedily([remaining[index] for index in group]))
    return sorted(transfers, key=lambda t: (t.payer, t.payee))


def _pair_opposites(agents: list[tuple[str, int]], transfers: list[Transfer]) -> list[tuple[str, int]]:
    """Settle agents whose positions are exact opposites with one transfer each; return the rest.

    Always optimal: in any partition into zero-sum groups, moving x and -x into a group of their
    own leaves the rest of their groups still summing to zero, so it never lowers the group count.
    """
    debtors: dict[int, list[str]] = defaultdict(list)
    for agent, amount in agents:
        if amount < 0:
            debtors[-amount].append(agent)
    paired: set[str] = set()
    for agent, amount in agents:
        if amount > 0 and debtors.get(amount):
            payer = debtors[amount].pop(0)
            transfers.append(Transfer(payer, agent, amount))
            paired.update((payer, agent))
    return [(agent, amount) for agent, amount in agents if agent not in paired]


def _zero_sum_groups(amounts: list[int]) -> list[list[int]]:
    """The most disjoint zero-sum groups covering ``amounts`` (which sum to 0), as index lists.

    best[mask] = the most zero-sum prefixes over orderings of the agents in ``mask``
    = [sum(mask) == 0] + max over i in mask of best[mask without i]; a partition into k zero-sum
    groups is an ordering with k zero-sum prefixes and vice versa.
    """
    count = len(amounts)
    if count == 0:
        return []
    size = 1 << count
    sums = [0] * size
    for mask in range(1, size):
        low = mask & -mask
        sums[mask] = sums[mask ^ low] + amounts[low.bit_length() - 1]
    best = bytearray(size)  # at most count // 3 groups: no zeros, no opposite pairs are left
    for mask in range(1, size):
        most = 0
        rest = mask
        while rest:
            low = rest & -rest
            if best[mask ^ low] > most:
                most = best[mask ^ low]
            rest ^= low
        best[mask] = most + (sums[mask] == 0)
    # Walk back from the full set: remove agents along an optimal ordering; each time the agents
    # left sum to zero, the ones removed since the last such point form one group.
    groups: list[list[int]] = []
    current: list[int] = []
    mask = size - 1
    while mask:
        target = best[mask] - (sums[mask] == 0)
        rest = mask
        while best[mask ^ (rest & -rest)] != target:
            rest ^= rest & -rest
        low = rest & -rest
        current.append(low.bit_length() - 1)
        mask ^= low
        if sums[mask] == 0:
            groups.append(sorted(current))
            current = []
    return groups


def _settle_greedily(group: list[tuple[str, int]]) -> list[Transfer]:
    """Settle a zero-sum group: the largest debtor pays the largest creditor, repeatedly.

    Each transfer zeroes at least one of the two, and the last zeroes both, so a group of k agents
    takes at most k - 1 transfers. Ties go to the smaller agent id.
    """
    debtors = [(amount, agent) for agent, amount in group if amount < 0]  # most negative first
    creditors = [(-amount, agent) for agent, amount in group if amount > 0]  # largest credit first
    heapq.heapify(debtors)
    heapq.heapify(creditors)
    transfers: list[Transfer] = []
    while debtors:
        debt, payer = heapq.heappop(debtors)
        credit, payee = heapq.heappop(creditors)
        amount = min(-debt, -credit)
        transfers.append(Transfer(payer, payee, amount))
        if -debt > amount:
            heapq.heappush(debtors, (debt + amount, payer))
        if -credit > amount:
            heapq.heappush(creditors, (credit + amount, payee))
    assert not creditors
    return transfers


# ------------------------------------------------------------------ event-time windows and thresholds


def window_start(event_time_us: int, window_us: int) -> int:
    """The start of the window holding ``event_time_us``: the latest multiple of ``window_us`` at or before it."""
    check_event_time_us("event_time_us", event_time_us)
    check_int("window_us", window_us, minimum=1, maximum=limits.MAX_DURATION_US)
    return event_time_us - event_time_us % window_us


@dataclass(frozen=True, kw_only=True)
class WindowSettlement:
    """One window's outcome: pair nets that settle now and pair nets carried to the next window."""

    window_start_us: int
    window_end_us: int  # exclusive
    obligation_count: int  # obligations from this window's events (carried ones not counted)
    settled: tuple[Obligation, ...]
    carried: tuple[Obligation, ...]


def net_with_threshold(obligations: Iterable[Obligation], *, threshold_micros: int,
                       carried_in: Iterable[Obligation] = ()) -> tuple[list[Obligation], list[Obligation]]:
    """Net per pair (with ``carried_in`` added); split into (settle now, carry forward).

    A pair net of at least ``threshold_micros`` settles; a smaller nonzero one is carried, never
    dropped, so net positions of (settled + carried) equal those of (obligations + carried_in).
    """
    check_micros("threshold_micros", threshold_micros)
    netted = net_pairs([*_check_obligations(carried_in), *_check_obligations(obligations)])
    settled = [o for o in netted if o.amount_micros >= threshold_micros]
    carried = [o for o in netted if o.amount_micros < threshold_micros]
    return settled, carried


def settle_windows(timed_obligations: Iterable[tuple[int, Obligation]], *, window_us: int, threshold_micros: int,
                   carried_in: Iterable[Obligation] = ()) -> list[WindowSettlement]:
    """Bucket (event_time_us, obligation) pairs into windows and settle them in time order.

    What a window carries goes into the next window that has obligations; what the last window
    carries is in its ``carried``.
    """
    check_int("window_us", window_us, minimum=1, maximum=limits.MAX_DURATION_US)
    by_window: dict[int, list[Obligation]] = defaultdict(list)
    for index, item in enumerate(timed_obligations):
        if not isinstance(item, tuple) or len(item) != 2:
            raise ValidationError(f"timed_obligations[{index}]", item, "must be (event_time_us, Obligation)")
        event_time_us, obligation = item
        by_window[window_start(event_time_us, window_us)].append(obligation)
    carried = _check_obligations(carried_in)
    results: list[WindowSettlement] = []
    for start in sorted(by_window):
        settled, carried = net_with_threshold(by_window[start], threshold_micros=threshold_micros,
                                              carried_in=carried)
        results.append(WindowSettlement(window_start_us=start, window_end_us=start + window_us,
                                        obligation_count=len(by_window[start]), settled=tuple(settled),
                                        carried=tuple(carried)))
    return results


# ------------------------------------------------------------------ tiers


def settlement_tier(tier: str) -> SettlementTier:
    """The tier named by ``tier``; an unknown name (a typo) is a ValidationError, never "settles"."""
    try:
        return SettlementTier(tier)
    except ValueError:
        raise ValidationError("tier", tier, f"unknown settlement tier; one of "
                                            f"{', '.join(t.value for t in SettlementTier)}") from None


def tier_settles(tier: str) -> bool:
    """Whether a tier moves money: tier 1 only meters; tiers 2 and 3 settle."""
    return settlement_tier(tier) is not SettlementTier.TIER_1_METERING
