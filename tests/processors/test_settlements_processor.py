"""The settlements processor on its views, on both log backends:

- A->B and B->A cancel within a window (nothing to settle when they are equal);
- every closed window: net positions sum to zero, and the multilateral transfers pay (or collect)
  each agent exactly its position, with at most agents - 1 transfers;
- across windows nothing is lost: the pair balances of closed windows equal what was settled plus
  what is still carried below the threshold;
- windows close by event time only (watermark past the end plus the allowed lateness);
- tier 1 only meters (positions, no proposal); tiers 2/3 settle through the ledger rail (receipt tx_ref =
  idempotency key);
- an interaction whose total is below the rule's threshold is left out of its pair balances;
- derived `settlement` events exactly once; replay equality.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from support.econ import call, control, derived, econ_home, emit_as, replay_equal, rows, run

from ledger.testing.homes import T0, fill
from ledger.wire.events import SettlementRule
from processors.settlements import ALLOWED_LATENESS_US

BACKENDS = [pytest.param("sqlite"), pytest.param("kafka", marks=pytest.mark.kafka)]
MINUTE_US = 60_000_000


@pytest.fixture(params=BACKENDS)
def home(request, tmp_path):
    url = request.getfixturevalue("kafka_url") if request.param == "kafka" else None
    h = econ_home(tmp_path, request.param, url)
    control(h, [SettlementRule(rule_id="s-min", tier="tier_2_rule_based", method="shapley", window_us=MINUTE_US,
                               threshold_micros=20_000),
                SettlementRule(rule_id="s-meter", tier="tier_1_metering", method="requestor_pays",
                               window_us=2 * MINUTE_US, threshold_micros=0)], t=T0)
    fill(h, tasks=40, batch_size=5)  # ~800 s of event time: a dozen one-minute windows close
    return h


def test_windows_conserve_and_multilateral_pays_positions(home):
    run(home, "allocations")
    run(home, "settlements")
    closed = rows(home, "settlements", "SELECT count(DISTINCT (rule_id, window_start_us)) FROM pair_balances "
                                       "WHERE status = 'closed'")[0][0]
    assert closed >= 10
    # every closed window: positions sum to zero; transfers pay each agent exactly its position
    assert rows(home, "settlements", "SELECT count(*) FROM (SELECT rule_id, window_start_us, sum(position_micros) s "
                                     "FROM net_positions GROUP BY ALL) WHERE s != 0")[0][0] == 0
    assert rows(home, "settlements", "SELECT count(*) FROM net_positions WHERE rule_id = 's-min' "
                                     "AND received_micros - paid_micros != position_micros")[0][0] == 0
    # tier 1 meters: positions are reported, nothing was paid or received
    metered = rows(home, "settlements", "SELECT count(*), sum(abs(position_micros)), sum(received_micros + "
                                        "paid_micros) FROM net_positions WHERE rule_id = 's-meter'")[0]
    assert metered[0] > 0 and metered[1] > 0 and metered[2] == 0
    transfers = rows(home, "settlements", "SELECT rule_id, window_start_us, payer, payee, amount_micros "
                                          "FROM settlements")
    assert transfers
    by_window = defaultdict(lambda: defaultdict(int))
    for rid, ws, payer, payee, amount in transfers:
        by_window[(rid, ws)][payer] -= amount
        by_window[(rid, ws)][payee] += amount
    positions = defaultdict(dict)
    for rid, ws, agent, pos in rows(home, "settlements", "SELECT rule_id, window_start_us, agent_id, position_micros "
                                                         "FROM net_positions WHERE rule_id = 's-min'"):
        positions[(rid, ws)][agent] = pos
    assert {k: {a: v for a, v in d.items() if v} for k, d in by_window.items()} == dict(positions)
    assert all(sum(1 for t in transfers if (t[0], t[1]) == k) <= len(p) - 1 for k, p in positions.items())
    # across windows: what closed windows netted per agent = what was settled + what is still carried
    netted = defaultdict(int)
    for rid, a, b, amount in rows(home, "settlements", "SELECT rule_id, agent_a, agent_b, a_owes_b_micros "
                                                       "FROM pair_balances WHERE status = 'closed'"):
        netted[(rid, a)] -= amount
        netted[(rid, b)] += amount
    settled = defaultdict(int)
    for rid, agent, pos in rows(home, "settlements", "SELECT rule_id, agent_id, position_micros FROM net_positions"):
        settled[(rid, agent)] += pos
    for rid, a, b, amount in rows(home, "settlements", "SELECT rule_id, agent_a, agent_b, a_owes_b_micros FROM carried"):
        settled[(rid, a)] -= amount
        settled[(rid, b)] += amount
    assert {k: v for k, v in netted.items() if v} == {k: v for k, v in settled.items() if v}
    # windows close by event time: none closed whose end + lateness is past the watermark
    wm = rows(home, "settlements", "SELECT value_us FROM settlement_progress WHERE key = 'watermark'")[0][0]
    assert rows(home, "settlements", "SELECT count(*) FROM pair_balances WHERE status = 'closed' "
                                     f"AND window_end_us + {ALLOWED_LATENESS_US} > {wm}")[0][0] == 0
    assert rows(home, "settlements", "SELECT count(*) FROM pair_balances WHERE status = 'open'")[0][0] > 0
    # tiers: metering proposes nothing, tier 2 settles through the ledger rail; events exactly once
    tiers = set(rows(home, "settlements", "SELECT tier, status, rail FROM settlements"))
    assert tiers == {("tier_2_rule_based", "settled", "ledger")}
    events = derived(home, "settlements")
    assert len(events) == len(transfers) == len({i for i, _ in events})
    assert all(b.tx_ref == f"settlement:{b.settlement_id}" for _, b in events if b.status == "settled")
    run(home, "settlements")
    assert len(derived(home, "settlements")) == len(transfers)
    assert replay_equal(home, "settlements")


def test_opposite_transfers_cancel_within_a_window(tmp_path):
    h = econ_home(tmp_path, agents=("alice", "bob", "carol"))
    control(h, [SettlementRule(rule_id="s", tier="tier_2_rule_based", method="requestor_pays",
                               window_us=MINUTE_US, threshold_micros=0)], t=T0)
    w0 = T0 - T0 % MINUTE_US + MINUTE_US  # the start of a window after the rule
    emit_as(h, "alice", [(call("ab", "alice", "bob"), w0 + 1_000)])
    emit_as(h, "bob", [(call("ba", "bob", "alice"), w0 + 2_000), (call("bc", "bob", "carol"), w0 + 3_000)])
    # a later allocation moves the watermark past the first window's end + lateness: it closes
    emit_as(h, "carol", [(call("tick", "carol", "alice"), w0 + MINUTE_US + ALLOWED_LATENESS_US + 1)])
    run(h, "allocations")
    run(h, "settlements")
    pairs = rows(h, "settlements", "SELECT agent_a, agent_b, a_owes_b_micros, allocations, status FROM pair_balances "
                                   f"WHERE window_start_us = {w0} ORDER BY 1, 2")
    # requestor_pays: each requestor owes its responder the responder's incurred cost; same sizes, same
    # models both ways, so alice->bob and bob->alice cancel exactly; bob owes carol
    cost = 1_000 * 2 + 3_000 * 8  # responder: reads 1,000 at $2/MTok, writes 3,000 at $8/MTok (micro-USD)
    assert pairs == [("alice", "bob", 0, 2, "closed"), ("bob", "carol", cost, 1, "closed")]
    assert rows(h, "settlements", "SELECT payer, payee, amount_micros, status FROM settlements") == [
        ("bob", "carol", cost, "settled")]
    assert replay_equal(h, "settlements")


def test_interactions_below_the_threshold_are_not_settled(tmp_path):
    h = econ_home(tmp_path, agents=("alice", "bob", "carol"))
    # gpt-4.1 both sides ($2 in, $8 out per MTok): "big" costs 100_000 micro-USD in all, "small" 35_000
    control(h, [SettlementRule(rule_id="s", tier="tier_2_rule_based", method="requestor_pays",
                               window_us=MINUTE_US, threshold_micros=40_000)], t=T0)
    w0 = T0 - T0 % MINUTE_US + MINUTE_US
    emit_as(h, "alice", [(call("big", "alice", "bob", request=4_000, response=6_000), w0 + 1_000),
                         (call("small", "alice", "carol", request=500), w0 + 2_000)])
    emit_as(h, "carol", [(call("tick", "carol", "alice"), w0 + MINUTE_US + ALLOWED_LATENESS_US + 1)])
    run(h, "allocations")
    totals = dict(rows(h, "allocations", "SELECT interaction_id, total_micros FROM allocations "
                                         "WHERE method = 'requestor_pays'"))
    assert totals["small"] < 40_000 <= totals["big"]
    run(h, "settlements")
    pairs = rows(h, "settlements", "SELECT agent_a, agent_b, allocations FROM pair_balances "
                                   f"WHERE window_start_us = {w0} ORDER BY 1, 2")
    assert pairs == [("alice", "bob", 1)]  # alice -> carol was too small to settle: no balance at all
    big_owed = 4_000 * 2 + 6_000 * 8  # bob reads 4,000 at $2/MTok and writes 6,000 at $8/MTok
    assert rows(h, "settlements", "SELECT payer, payee, amount_micros FROM settlements") == [
        ("alice", "bob", big_owed)]
    assert replay_equal(h, "settlements")
