"""ledger.economics.netting: pair netting, net positions, minimum-transfer multilateral settlement, windows,
thresholds and tiers.

Optimality is checked against an independent brute force: with n agents of nonzero position, any
set of transfers links agents into connected groups that each sum to zero, and a group of k agents
needs at least k - 1 transfers; so the minimum is n minus the largest number of zero-sum blocks in
a partition of the agents, which the brute force finds by enumerating every set partition.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from context_window_economics import Meter, SettlementBatch, SettlementEngine
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.economics.allocation import allocate
from ledger.economics.metering import InteractionFlows, meter_interaction
from ledger.economics.netting import (
    EXACT_SETTLEMENT_MAX_AGENTS,
    Obligation,
    SettlementTier,
    Transfer,
    multilateral_settle,
    net_pairs,
    net_positions,
    net_with_threshold,
    obligation_from_allocation,
    settle_windows,
    settlement_tier,
    tier_settles,
    window_start,
)
from ledger.economics.pricing import default_price_book
from ledger.errors import ValidationError

FAST = settings(max_examples=200, deadline=None)
AGENTS = [f"agent-{letter}" for letter in "abcdefgh"]


@st.composite
def obligation_lists(draw: Any, agents: list[str] = AGENTS, max_amount: int = 10**9) -> list[Obligation]:
    count = draw(st.integers(0, 30))
    result = []
    for _ in range(count):
        payer = draw(st.sampled_from(agents))
        payee = draw(st.sampled_from([a for a in agents if a != payer]))
        result.append(Obligation(payer, payee, draw(st.integers(0, max_amount))))
    return result


def apply(positions: dict[str, int], transfers: list[Transfer]) -> dict[str, int]:
    after = dict(positions)
    for transfer in transfers:
        after[transfer.payer] += transfer.amount_micros
        after[transfer.payee] -= transfer.amount_micros
    return after


def set_partitions(items: list[int]) -> Iterator[list[list[int]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        yield [[first], *partition]
        for index in range(len(partition)):
            yield [*partition[:index], [first, *partition[index]], *partition[index + 1:]]


def brute_force_minimum(positions: dict[str, int]) -> int:
    amounts = [amount for amount in positions.values() if amount != 0]
    if not amounts:
        return 0
    most_blocks = max(sum(1 for block in partition if sum(block) == 0)
                      for partition in set_partitions(amounts)
                      if all(sum(block) == 0 for block in partition))
    return len(amounts) - most_blocks


@st.composite
def zero_sum_positions(draw: Any, max_agents: int, max_amount: int, min_agents: int = 0) -> dict[str, int]:
    count = draw(st.integers(min_agents, max_agents))
    amounts = [draw(st.integers(-max_amount, max_amount)) for _ in range(count)]
    if amounts:
        amounts.append(-sum(amounts))
    return {f"agent-{index:02d}": amount for index, amount in enumerate(amounts)}


# ------------------------------------------------------------------ pairs and positions


def test_opposite_obligations_cancel_per_pair() -> None:
    assert net_pairs([Obligation("a", "b", 5), Obligation("b", "a", 3)]) == [Obligation("a", "b", 2)]
    assert net_pairs([Obligation("a", "b", 5), Obligation("b", "a", 5)]) == []
    assert net_pairs([Obligation("b", "a", 7), Obligation("a", "b", 2), Obligation("c", "a", 1)]) == [
        Obligation("b", "a", 5), Obligation("c", "a", 1)]


@FAST
@given(obligation_lists())
def test_pair_netting_keeps_every_position_and_positions_sum_to_zero(obligations: list[Obligation]) -> None:
    positions = net_positions(obligations)
    assert sum(positions.values()) == 0
    netted = net_pairs(obligations)
    assert {a: p for a, p in net_positions(netted).items() if p} == {a: p for a, p in positions.items() if p}
    pairs = [frozenset((o.payer, o.payee)) for o in netted]
    assert len(pairs) == len(set(pairs))  # one obligation per unordered pair at most
    assert all(o.amount_micros > 0 for o in netted)
    assert netted == sorted(netted, key=lambda o: (o.payer, o.payee))
    shuffled = list(obligations)
    random.Random(7).shuffle(shuffled)
    assert net_pairs(shuffled) == netted


def test_deviation_role_swapped_interactions_cancel_unlike_the_reference() -> None:
    """A asks B, then B asks A, same sizes: the reference adds the two up; per agent pair they cancel."""
    batch = SettlementBatch(method="shapley")
    batch.add(Meter("agent-a").record_interaction("agent-b", request_tokens=10_000, response_tokens=3_000))
    batch.add(Meter("agent-b").record_interaction("agent-a", request_tokens=10_000, response_tokens=3_000))
    flushed = batch.flush()
    assert flushed["net_amount_usd"] == pytest.approx(0.066) and "agent_pair" not in flushed

    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    metered = meter_interaction(InteractionFlows.symmetric(request_tokens=10_000, response_tokens=3_000),
                                requestor_price=sonnet, responder_price=sonnet)
    allocation = allocate(metered, "shapley")
    first = obligation_from_allocation(allocation, requestor="agent-a", responder="agent-b")
    second = obligation_from_allocation(allocation, requestor="agent-b", responder="agent-a")
    assert first == Obligation("agent-a", "agent-b", 33_000) and second == Obligation("agent-b", "agent-a", 33_000)
    assert net_pairs([first, second]) == []


def test_obligation_from_allocation_follows_the_direction() -> None:
    sonnet = default_price_book().price_at("anthropic", "claude-sonnet-4-6", 0)
    metered = meter_interaction(InteractionFlows.symmetric(request_tokens=10_000, response_tokens=3_000),
                                requestor_price=sonnet, responder_price=sonnet)
    assert obligation_from_allocation(allocate(metered, "responder_pays"), requestor="r", responder="s") == \
        Obligation("s", "r", 159_000)
    empty = meter_interaction(InteractionFlows.symmetric(request_tokens=0, response_tokens=0),
                              requestor_price=sonnet, responder_price=sonnet)
    assert obligation_from_allocation(allocate(empty, "equal_split"), requestor="r", responder="s") is None
    with pytest.raises(ValidationError):
        obligation_from_allocation({"net": 1}, requestor="r", responder="s")  # type: ignore[arg-type]


@pytest.mark.parametrize(("payer", "payee", "amount", "field"), [
    ("a", "a", 1, "payee"), ("", "b", 1, "payer"), ("a", None, 1, "payee"), ("a", "b", -1, "amount_micros"),
    ("a", "b", 1.5, "amount_micros"), ("a", "b", True, "amount_micros"), ("a", "b", 10**16, "amount_micros"),
    ("x" * 300, "b", 1, "payer"),
])
def test_bad_obligations_are_refused(payer: Any, payee: Any, amount: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Obligation(payer, payee, amount)
    assert caught.value.field == field


# ------------------------------------------------------------------ multilateral settlement


@settings(max_examples=300, deadline=None)
@given(st.one_of(zero_sum_positions(max_agents=7, max_amount=4), zero_sum_positions(max_agents=7, max_amount=10**6)))
def test_multilateral_settlement_is_exact_and_uses_the_fewest_transfers(positions: dict[str, int]) -> None:
    transfers = multilateral_settle(positions)
    assert all(value == 0 for value in apply(positions, transfers).values())
    assert all(t.amount_micros > 0 for t in transfers)
    assert len(transfers) == brute_force_minimum(positions)


@FAST
@given(obligation_lists())
def test_settling_net_positions_pays_each_agent_exactly_its_position(obligations: list[Obligation]) -> None:
    positions = net_positions(obligations)
    transfers = multilateral_settle(positions)
    received: dict[str, int] = defaultdict(int)
    for transfer in transfers:
        received[transfer.payee] += transfer.amount_micros
        received[transfer.payer] -= transfer.amount_micros
    assert {a: p for a, p in positions.items() if p} == {a: r for a, r in received.items() if r}
    assert len(transfers) <= max(0, sum(1 for p in positions.values() if p) - 1)
    assert multilateral_settle(dict(reversed(list(positions.items())))) == transfers  # order-independent


@settings(max_examples=20, deadline=None)
@given(zero_sum_positions(min_agents=EXACT_SETTLEMENT_MAX_AGENTS + 1, max_agents=EXACT_SETTLEMENT_MAX_AGENTS + 40,
                          max_amount=10**9))
def test_above_the_exact_limit_the_greedy_fallback_is_still_exact(positions: dict[str, int]) -> None:
    transfers = multilateral_settle(positions)
    assert all(value == 0 for value in apply(positions, transfers).values())
    assert len(transfers) <= max(0, sum(1 for p in positions.values() if p) - 1)


def test_multilateral_examples() -> None:
    assert multilateral_settle({}) == []
    assert multilateral_settle({"a": 0, "b": 0}) == []
    # Two independent zero-sum groups: 5 agents, 3 transfers (a naive greedy would need 4).
    positions = {"a": -5, "b": 3, "c": 2, "d": -4, "e": 4}
    transfers = multilateral_settle(positions)
    assert len(transfers) == 3 and all(v == 0 for v in apply(positions, transfers).values())
    assert transfers == [Transfer("a", "b", 3), Transfer("a", "c", 2), Transfer("d", "e", 4)]


def test_exact_partition_beats_greedy_on_a_hidden_grouping() -> None:
    # Groups {6, -2, -4} and {5, -3, -2} plus {7, -7}: 8 agents, 3 groups -> 5 transfers.
    positions = {"a": 6, "b": -2, "c": -4, "d": 5, "e": -3, "f": -2, "g": 7, "h": -7}
    transfers = multilateral_settle(positions)
    assert len(transfers) == 5 == brute_force_minimum(positions)


def hidden_triples(count: int) -> dict[str, int]:
    """``count`` zero-sum triples (3b + 1, -b, -2b - 1 with b = 10, 100, ...): no two agents are opposites,
    and no zero-sum group mixes triples (each triple's +1 / -1 and its digit pattern are its own)."""
    positions: dict[str, int] = {}
    for index in range(count):
        base = 10 ** (index + 1)
        positions.update({f"t{index:02d}-x": 3 * base + 1, f"t{index:02d}-y": -base, f"t{index:02d}-z": -2 * base - 1})
    return positions


def test_exact_at_the_limit_and_greedy_above_it() -> None:
    at_limit = hidden_triples(EXACT_SETTLEMENT_MAX_AGENTS // 3)
    assert len(at_limit) <= EXACT_SETTLEMENT_MAX_AGENTS
    transfers = multilateral_settle(at_limit)
    assert len(transfers) == 2 * len(at_limit) // 3  # every hidden group found
    assert all(v == 0 for v in apply(at_limit, transfers).values())
    above = hidden_triples(EXACT_SETTLEMENT_MAX_AGENTS // 3 + 3)
    transfers = multilateral_settle(above)
    assert all(v == 0 for v in apply(above, transfers).values())  # exact amounts ...
    assert len(transfers) <= len(above) - 1  # ... within n - 1, not necessarily the fewest


@pytest.mark.parametrize("positions", [
    {"a": 1, "b": -2}, {"a": 1.0, "b": -1.0}, {"a": True, "b": -1}, {"": 1, "b": -1}, [("a", 1)],
    {"a": 10**16, "b": -(10**16)},
])
def test_bad_positions_are_refused(positions: Any) -> None:
    with pytest.raises(ValidationError):
        multilateral_settle(positions)


# ------------------------------------------------------------------ windows and thresholds


@FAST
@given(st.integers(0, 7_258_118_400_000_000), st.integers(1, 10**14))
def test_windows_are_aligned_to_epoch_multiples(event_time_us: int, window_us: int) -> None:
    start = window_start(event_time_us, window_us)
    assert start % window_us == 0
    assert start <= event_time_us < start + window_us


@pytest.mark.parametrize(("time", "window"), [(-1, 10), (5, 0), (5, -3), (5.0, 10), (5, True)])
def test_bad_window_arguments_are_refused(time: Any, window: Any) -> None:
    with pytest.raises(ValidationError):
        window_start(time, window)


def test_below_threshold_nets_are_carried_not_dropped() -> None:
    hour = 3_600_000_000
    timed = [(10, Obligation("a", "b", 400_000)), (hour + 10, Obligation("a", "b", 700_000)),
             (hour + 20, Obligation("c", "a", 50))]
    first, second = settle_windows(timed, window_us=hour, threshold_micros=1_000_000)
    assert (first.window_start_us, first.window_end_us, first.obligation_count) == (0, hour, 1)
    assert first.settled == () and first.carried == (Obligation("a", "b", 400_000),)
    assert second.settled == (Obligation("a", "b", 1_100_000),)
    assert second.carried == (Obligation("c", "a", 50),)


@FAST
@given(st.lists(st.tuples(st.integers(0, 10**10), st.sampled_from(AGENTS[:4]), st.sampled_from(AGENTS[:4]),
                          st.integers(0, 3_000_000)), max_size=40),
       st.integers(0, 2_000_000), st.integers(1, 10**9))
def test_windows_conserve_money(rows: list[tuple[int, str, str, int]], threshold: int, window_us: int) -> None:
    timed = [(t, Obligation(p, q, amount)) for t, p, q, amount in rows if p != q]
    results = settle_windows(timed, window_us=window_us, threshold_micros=threshold)
    paid = [o for result in results for o in result.settled] + (list(results[-1].carried) if results else [])
    expected = net_positions([o for _, o in timed])
    assert {a: p for a, p in net_positions(paid).items() if p} == {a: p for a, p in expected.items() if p}
    assert all(o.amount_micros >= threshold for result in results for o in result.settled)
    assert all(o.amount_micros < threshold for result in results for o in result.carried)
    assert [r.window_start_us for r in results] == sorted({window_start(t, window_us) for t, _ in timed})
    assert settle_windows(list(reversed(timed)), window_us=window_us, threshold_micros=threshold) == results


def test_carried_in_obligations_join_the_next_window() -> None:
    settled, carried = net_with_threshold([Obligation("b", "a", 30)], threshold_micros=100,
                                          carried_in=[Obligation("a", "b", 200)])
    assert settled == [Obligation("a", "b", 170)] and carried == []
    with pytest.raises(ValidationError):
        net_with_threshold([], threshold_micros=-1)
    with pytest.raises(ValidationError):
        settle_windows([(5, "not an obligation")], window_us=10, threshold_micros=0)  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        settle_windows([5], window_us=10, threshold_micros=0)  # type: ignore[list-item]


# ------------------------------------------------------------------ tiers


def test_tiers() -> None:
    assert tier_settles("tier_1_metering") is False
    assert tier_settles("tier_2_rule_based") is True
    assert tier_settles(SettlementTier.TIER_3_DYNAMIC) is True
    assert settlement_tier("tier_2_rule_based") is SettlementTier.TIER_2_RULE_BASED


@pytest.mark.parametrize("tier", ["tier_2_rule_basd", "TIER_1_METERING", "", None, 2])
def test_deviation_unknown_tier_is_an_error_not_a_settling_tier(tier: Any) -> None:
    if isinstance(tier, str) and tier:
        cmr = Meter("did:a").record_interaction("did:b", request_tokens=10_000, response_tokens=3_000)
        assert SettlementEngine(tier=tier).propose(cmr) is not None  # the reference settles on a typo
    with pytest.raises(ValidationError) as caught:
        tier_settles(tier)
    assert caught.value.field == "tier"
