"""The settlements processor: nets allocations per agent pair over event-time windows and settles them.

Inputs: ``settlement_rule`` control events, and the ``allocation`` events the allocations processor
signs onto ``<prefix>.allocations`` (the same verifier accepts them: ``processor.allocations`` is
registered on the control topic). Outputs: the views below and one derived ``settlement`` event per
transfer on ``<prefix>.settlements`` (idempotency key ``settlement:<settlement_id>``, so each is
produced exactly once).

Semantics (event time only, so a replay settles exactly as the live run did):

* **Which time.** Windows, the watermark and lateness use allocation event times. An allocation's time is
  its interaction's claimed time, which readers accepted only within the skew window of its record's
  append time (``ledger.integrity.verify``): live event time is trustworthy to within minutes, so a
  future-stamped interaction can no longer drag the watermark ahead and park every honest allocation as
  late. Append time is not used: it is the processors' arrival order, and a catching-up allocations
  processor appends late by design. An input the verifier marks backfilled (``Item.backfilled``) is
  counted in its own window but never moves the watermark; a backfilled interaction's allocation carries
  its historical time, so it lands in its own window, or, if that one closed, in the first open one
  (counted as late), and being older than the watermark it cannot move it either.

* **Rules.** A ``settlement_rule`` (by ``rule_id``; a later version replaces it from
  ``max(effective_from_us, its event time)``) settles the allocations of one ``method`` in windows of
  ``window_us`` aligned to the epoch, with a per-pair ``threshold_micros``. Every enabled rule in
  force at an allocation's event time whose method matches takes it. While no enabled rule is in force
  at all, ``DEFAULT_RULE`` applies (Shapley allocations, hourly windows, $0.01, tier 2).
* **Pair netting.** An allocation's net transfer is an obligation between its two agents; within a
  window A->B and B->A cancel (``pair_balances``).
* **Windows close by event time.** The watermark is the latest allocation event time read. A window
  [start, end) closes once the watermark reaches ``end + ALLOWED_LATENESS_US``: allocations arrive in
  log order, which across agents is only roughly event-time order. An allocation for a window already
  closed is *late*: it joins the rule's first window not yet closed (counted in ``late_allocations``),
  never dropped. The last windows stay open until later allocations arrive.
* **Closing a window.** Pair nets (plus what earlier windows carried) at or above the threshold settle;
  smaller ones are carried to the rule's next closing window (netting.net_with_threshold). The settling
  pair nets give each agent a net position (they sum to zero, ``net_positions``); the multilateral
  settlement (netting.multilateral_settle) is the fewest transfers that pay each agent exactly its
  position. Each transfer is a proposal; tiers 2 and 3 send it to the built-in ``LedgerRail``, whose
  receipt (status "settled", tx_ref = idempotency key) is the event. Tier 1 (metering) makes no proposal
  at all, as in the reference (``ledger.economics.proposals.should_propose``): its windows still net
  pairs and report net positions (with paid and received 0), and no ``settlement`` event is derived.
* **Threshold on the interaction.** An allocation whose interaction total (``total_micros``) is below the
  rule's ``threshold_micros`` is not worth settling (the reference checks the total before proposing): it
  is left out of the rule's pair balances. The threshold then applies again to each window's pair nets.

Sharding (``tokenledger run settlements --instances N``: ``processors.runtime.exchange``, replicated):

* **Owner keys.** A rule's state (its open windows and their pair balances, what it carries, its ``closed_until``,
  its closed windows' net positions and settlements, the ``settlement`` events they derive) belongs to the owner key
  ``rule:<rule_id>`` (``DEFAULT_RULE`` too: ``rule:default``). A shard folds allocations only into the rules it owns
  (``Processor.owns``) and closes only their windows; the windows of a rule are a function of the allocations that
  rule takes and of the watermark, so the owner of a rule computes exactly the one instance's rows for it.
* **Routes.** The router's instance learns the rules from control (``observe_control``, the same bookkeeping as
  ``fold``: ``_read_rule``, ``rules_at``) in the log's order, so at every allocation it knows the rule versions an
  instance folding up to that point knows, and sends the allocation to the owners of the rules that take it
  (``_takers``: in force at its event time, its method, at or above the threshold). It also BROADCASTs every
  non-backfilled allocation whose event time exceeds the largest it has routed (``_routed_watermark``): the
  watermark at any point of the log's order is the largest non-backfilled allocation time before it, which is one
  of those broadcast (an allocation that moves the global maximum moves its own router's maximum), so every shard
  holds the one instance's watermark at every point, and closes its rules' windows where one instance closes them.
* **A router restarted** starts ``_routed_watermark`` from 0 (it persists nothing): until it has routed again past
  what it had routed, it broadcasts allocations that move no watermark. That is harmless: such an allocation's time
  is at or below the watermark every shard already holds, so it moves nothing there and only the owners of the rules
  that take it add it, exactly as when it is routed to them alone. It never broadcasts less than before a restart
  (its maximum starts lower), so no allocation that moves the watermark is ever missed.
* **Rows every shard makes alike** (``replicated``): every shard keeps the rule versions (``settlement_rules``,
  from control) and the ``watermark`` progress row, so a restarted shard restores every rule and the watermark
  from its own file; ``row_owner_sql`` shows the rules on shard 0 only and the watermark row on the owner of
  ``WATERMARK_OWNER``, so the union of the shards' visible rows is the one instance's rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ledger.economics.allocation import REQUESTOR_TO_RESPONDER, RESPONDER_TO_REQUESTOR, SHAPLEY
from ledger.economics.netting import (
    DEFAULT_SETTLEMENT_THRESHOLD_MICROS,
    DEFAULT_WINDOW_US,
    Obligation,
    multilateral_settle,
    net_positions,
    net_with_threshold,
    tier_settles,
    window_start,
)
from ledger.economics.rails import NO_RAIL, LedgerRail, PaymentRail
from ledger.wire.events import Allocation as AllocationEvent
from ledger.wire.events import Settlement, SettlementRule
from ledger.wire.vocab import SettlementTier
from processors.runtime.processor import (
    BATCH,
    BROADCAST,
    Column,
    Derived,
    Effects,
    Item,
    Processor,
    Quarantined,
    Timeline,
    View,
    columns_of,
)

# How far (event time, microseconds) the watermark must pass a window's end before the window
# closes: agents flush their batches independently, so allocations reach the log up to a few
# minutes of event time out of order (the demo: ~100 events per agent batch, ~80 s).
ALLOWED_LATENESS_US = 300 * 1_000_000


@dataclass(frozen=True)
class Rule:
    rule_id: str
    tier: str
    method: str
    window_us: int
    threshold_micros: int
    enabled: bool
    in_force_from_us: int
    seq: int


DEFAULT_RULE = Rule("default", SettlementTier.TIER_2_RULE_BASED.value, SHAPLEY, DEFAULT_WINDOW_US,
                    DEFAULT_SETTLEMENT_THRESHOLD_MICROS, True, 0, 0)

# settlement_progress keys: the one watermark row, and one row per rule that closed a window
WATERMARK_KEY = "watermark"
CLOSED_UNTIL_PREFIX = "closed_until:"
# owner keys (sharding, module doc): a rule's state is ``rule:<rule_id>``; the watermark row, which every shard
# computes alike, is shown by the owner of its own key
RULE_KEY_PREFIX = "rule:"
WATERMARK_OWNER = "settlement-watermark"


def rule_key(rule_id: str) -> str:
    """The owner key of rule ``rule_id``'s state (module doc, Sharding)."""
    return RULE_KEY_PREFIX + rule_id

_RULE_COLS = (
    Column("rule_id", "VARCHAR", "settlement rule ('default' = the built-in default rule)"),
    Column("window_start_us", "BIGINT", "window start, microseconds (a multiple of the rule's window)"),
    Column("window_end_us", "BIGINT", "window end (exclusive), microseconds"),
)
SETTLEMENTS = View(
    name="settlements", doc="Every settlement transfer (receipt or proposal), one per multilateral transfer.",
    columns=(
        Column("settlement_id", "VARCHAR", "deterministic id: hash of rule, window, payer, payee"),
        *_RULE_COLS,
        Column("payer", "VARCHAR", "agent that pays"),
        Column("payee", "VARCHAR", "agent that is paid"),
        Column("amount_micros", "BIGINT", "amount, micro-USD"),
        Column("method", "VARCHAR", "allocation method whose transfers were settled"),
        Column("tier", "VARCHAR", "settlement tier (tier_1_metering derives none: it only meters)"),
        Column("status", "VARCHAR", "settled (receipt from a rail) | proposed (a rail outside the fold pays)"),
        Column("rail", "VARCHAR", "payment rail: ledger (built in) | none"),
        Column("tx_ref", "VARCHAR", "the rail's transaction reference (ledger: the event's idempotency key)"),
        BATCH,
    ),
)
PAIR_BALANCES = View(
    name="pair_balances", doc="Per rule, window and agent pair: the netted balance (A->B and B->A cancel).",
    mode="snapshot", primary_key=("rule_id", "window_start_us", "agent_a", "agent_b"),
    columns=(
        *_RULE_COLS,
        Column("agent_a", "VARCHAR", "the pair's smaller agent id"),
        Column("agent_b", "VARCHAR", "the pair's larger agent id"),
        Column("a_owes_b_micros", "BIGINT",
               "net of the window's allocations: positive = a owes b, negative = b owes a"),
        Column("allocations", "BIGINT", "allocations netted into it"),
        Column("late_allocations", "BIGINT", "of those, allocations whose own window had already closed"),
        Column("status", "VARCHAR", "open | closed"),
    ),
)
NET_POSITIONS = View(
    name="net_positions", doc="Per closed window: each agent's net position and what the transfers paid it.",
    columns=(
        *_RULE_COLS,
        Column("agent_id", "VARCHAR", "the agent"),
        Column("position_micros", "BIGINT", "net position settled: positive = is owed, negative = owes"),
        Column("received_micros", "BIGINT", "received by this window's transfers"),
        Column("paid_micros", "BIGINT", "paid by this window's transfers (received - paid = position)"),
        BATCH,
    ),
)
CARRIED = View(
    name="carried", doc="Per rule and pair: below-threshold amounts carried to the next closing window.",
    mode="snapshot", primary_key=("rule_id", "agent_a", "agent_b"),
    columns=(
        Column("rule_id", "VARCHAR", "settlement rule"),
        Column("agent_a", "VARCHAR", "the pair's smaller agent id"),
        Column("agent_b", "VARCHAR", "the pair's larger agent id"),
        Column("a_owes_b_micros", "BIGINT", "carried net: positive = a owes b (0 = nothing carried)"),
    ),
)
SETTLEMENT_RULES = View(
    name="settlement_rules", doc="Every settlement rule version read from settlement_rule control events.",
    columns=(
        Column("rule_id", "VARCHAR", "rule id (a later version of the same id replaces it)"),
        Column("tier", "VARCHAR", "settlement tier"),
        Column("method", "VARCHAR", "allocation method it settles"),
        Column("window_us", "BIGINT", "window length, microseconds"),
        Column("threshold_micros", "BIGINT", "pair nets below this are carried, micro-USD"),
        Column("enabled", "BOOLEAN", "false switches the rule off from in_force_from_us"),
        Column("in_force_from_us", "BIGINT", "max(effective_from_us, the event's time)"),
        Column("seq", "BIGINT", "order read (ties: the later version wins)"),
        BATCH,
    ),
)
PROGRESS = View(
    name="settlement_progress", doc="Where settling stands: the watermark, and per rule up to when windows are closed.",
    mode="snapshot", primary_key=("key",),
    columns=(
        Column("key", "VARCHAR", "'watermark' (latest allocation event time read) or 'closed_until:<rule_id>' "
               "(end of the rule's latest closed window: allocations before it are late)"),
        Column("value_us", "BIGINT", "the time, microseconds since the Unix epoch"),
    ),
)


_RULE_TABLES = frozenset({SETTLEMENTS.name, PAIR_BALANCES.name, NET_POSITIONS.name, CARRIED.name})


def settlement_id(rule_id: str, start: int, end: int, payer: str, payee: str) -> str:
    key = json.dumps([rule_id, start, end, payer, payee]).encode()
    return hashlib.sha256(key).hexdigest()[:32]


class Settlements(Processor):
    name = "settlements"
    derived_topics = ("settlements",)
    # sharded through the exchange by rule (module doc, Sharding): each shard keeps its rules' state and, alike on
    # every shard, the rules and the watermark (hidden in SQL where another shard shows them)
    exchanges = True
    replicated = True
    doc = "nets allocations per agent pair over event-time windows; multilateral transfers through a payment rail"
    topics = ("control", "allocations")
    views = (SETTLEMENTS, PAIR_BALANCES, NET_POSITIONS, CARRIED, SETTLEMENT_RULES, PROGRESS)
    rail: PaymentRail = LedgerRail()

    def __init__(self) -> None:
        self.rules: dict[str, Timeline[Rule]] = {}
        self.rule_seq = 0
        self.watermark = 0
        # rule -> window (start, end) -> pair (a, b) -> [a_owes_b, allocations, late]
        self.open: dict[str, dict[tuple[int, int], dict[tuple[str, str], list[int]]]] = {}
        self.carry: dict[str, dict[tuple[str, str], int]] = {}
        self.closed_until: dict[str, int] = {}
        # on a router's instance only: the largest non-backfilled allocation time routed (module doc, Sharding)
        self._routed_watermark = 0

    # ------------------------------------------------------------------ sharding (processors.runtime.exchange)

    def observe_control(self, item: Item) -> None:
        ev = item.decoded.event
        if isinstance(ev.body, SettlementRule):
            self._add_rule(self._read_rule(ev.event_time_us, ev.body))

    def route(self, item: Item) -> tuple[str, ...]:
        ev = item.decoded.event
        body = ev.body
        if not isinstance(body, AllocationEvent):
            return ()
        if ev.event_time_us > self._routed_watermark and not item.backfilled:
            self._routed_watermark = ev.event_time_us
            return (BROADCAST,)  # it may move the watermark, which closes windows of every rule
        return tuple(rule_key(r.rule_id) for r in self._takers(ev.event_time_us, body))

    def row_owner(self, table: str, row: dict[str, Any]) -> str | None:
        if table == SETTLEMENT_RULES.name:
            return None  # from control, alike on every shard: shard 0 shows them
        if table == PROGRESS.name:
            key = str(row["key"])
            if key == WATERMARK_KEY:
                return WATERMARK_OWNER
            return rule_key(key.removeprefix(CLOSED_UNTIL_PREFIX))
        if table in _RULE_TABLES:
            return rule_key(str(row["rule_id"]))
        raise ValueError(f"settlements has no table {table!r}")

    def row_owner_sql(self, table: str) -> str | None:
        if table == SETTLEMENT_RULES.name:
            return None
        if table == PROGRESS.name:
            return (f"CASE WHEN key = '{WATERMARK_KEY}' THEN '{WATERMARK_OWNER}' "
                    f"ELSE '{RULE_KEY_PREFIX}' || substr(key, {len(CLOSED_UNTIL_PREFIX) + 1}) END")
        if table in _RULE_TABLES:
            return f"'{RULE_KEY_PREFIX}' || rule_id"
        raise ValueError(f"settlements has no table {table!r}")

    def derived_owner(self, derived: Derived) -> str | None:
        body = derived.body
        if not isinstance(body, Settlement):
            raise ValueError(f"settlements derives settlement events only, not {type(body).__name__}")
        return rule_key(dict(body.params)["rule_id"])

    # ------------------------------------------------------------------ state

    def restore(self, query: Any) -> None:
        for rid, tier, method, w, th, enabled, start, seq in query(
                "SELECT rule_id, tier, method, window_us, threshold_micros, enabled, in_force_from_us, seq "
                "FROM settlement_rules ORDER BY seq"):
            self._add_rule(Rule(rid, tier, method, w, th, enabled, start, seq))
        for rid, ws, we, a, b, amount, n, late in query(
                "SELECT rule_id, window_start_us, window_end_us, agent_a, agent_b, a_owes_b_micros, allocations, "
                "late_allocations FROM pair_balances WHERE status = 'open'"):
            self.open.setdefault(rid, {}).setdefault((ws, we), {})[(a, b)] = [amount, n, late]
        for rid, a, b, amount in query("SELECT rule_id, agent_a, agent_b, a_owes_b_micros FROM carried"):
            self.carry.setdefault(rid, {})[(a, b)] = amount
        for key, value in query("SELECT key, value_us FROM settlement_progress"):
            if key == WATERMARK_KEY:
                self.watermark = value
            else:
                self.closed_until[key.removeprefix(CLOSED_UNTIL_PREFIX)] = value

    def _add_rule(self, r: Rule) -> None:
        self.rules.setdefault(r.rule_id, Timeline()).add(r.in_force_from_us, r.seq, r)
        self.rule_seq = max(self.rule_seq, r.seq)

    def _read_rule(self, event_time_us: int, body: SettlementRule) -> Rule:
        """The rule version a ``settlement_rule`` event makes, numbered in the order read."""
        self.rule_seq += 1
        return Rule(body.rule_id, body.tier, body.method, body.window_us, body.threshold_micros, body.enabled,
                    max(body.effective_from_us, event_time_us), self.rule_seq)

    def rules_at(self, t_us: int) -> list[Rule]:
        """Enabled rule versions in force at ``t_us``; ``DEFAULT_RULE`` when none is."""
        found = [v for rid in sorted(self.rules) if (v := self.rules[rid].at(t_us)) is not None and v.enabled]
        return found or [DEFAULT_RULE]

    def _takers(self, t_us: int, body: AllocationEvent) -> list[Rule]:
        """The rules that take an allocation at ``t_us``: in force, of its method, and its interaction's total at or
        above their threshold (too small an interaction to settle: the reference's rule)."""
        return [r for r in self.rules_at(t_us) if r.method == body.method and body.total_micros >= r.threshold_micros]

    # ------------------------------------------------------------------ fold

    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        fx = Effects()
        out = _Out()
        for it in items:
            ev = it.decoded.event
            body = ev.body
            if isinstance(body, AllocationEvent):
                self._allocation(ev.event_time_us, body, out)
                if ev.event_time_us > self.watermark and not it.backfilled:
                    self.watermark = ev.event_time_us
                    out.watermark_moved = True
                    self._close_due(out, fx)
            elif isinstance(body, SettlementRule):
                r = self._read_rule(ev.event_time_us, body)
                self._add_rule(r)
                out.rules.append(r)
        out.write(fx, self)
        return fx

    def _allocation(self, t: int, body: AllocationEvent, out: _Out) -> None:
        if body.direction == REQUESTOR_TO_RESPONDER:
            payer = body.requestor_id
        elif body.direction == RESPONDER_TO_REQUESTOR:
            payer = body.responder_id
        else:
            payer = ""  # no transfer: the pair's balance does not move
        for rule in self._takers(t, body):
            if not self.owns(rule_key(rule.rule_id)):
                continue  # another shard's rule (sharded: module doc); this one only moves the watermark here
            start = window_start(t, rule.window_us)
            late = 0
            closed = self.closed_until.get(rule.rule_id, 0)
            if start < closed:  # its window already closed: the rule's first open window takes it
                start = window_start(closed, rule.window_us)
                late = 1
            window = (start, start + rule.window_us)
            pairs = self.open.setdefault(rule.rule_id, {}).setdefault(window, {})
            a, b = sorted((body.requestor_id, body.responder_id))
            cell = pairs.setdefault((a, b), [0, 0, 0])
            if payer:
                cell[0] += body.net_transfer_micros if payer == a else -body.net_transfer_micros
            cell[1] += 1
            cell[2] += late
            out.pairs.add((rule.rule_id, window, (a, b)))

    def _rule_for_close(self, rid: str, end: int) -> Rule:
        if rid == DEFAULT_RULE.rule_id:
            return DEFAULT_RULE
        # the version in force at the window's last instant decides tier and threshold
        return self.rules[rid].at(end - 1) or self.rules[rid].values[0]

    def _close_due(self, out: _Out, fx: Effects) -> None:
        due = sorted((end, rid, start) for rid, windows in self.open.items() for (start, end) in windows
                     if end + ALLOWED_LATENESS_US <= self.watermark)
        for end, rid, start in due:
            self._close(rid, (start, end), self._rule_for_close(rid, end), out, fx)

    def _close(self, rid: str, window: tuple[int, int], rule: Rule, out: _Out, fx: Effects) -> None:
        start, end = window
        pairs = self.open[rid].pop(window)
        out.pairs.update((rid, window, p) for p in pairs)
        out.closed.update((rid, window, p) for p in pairs)
        out.closed_pairs[(rid, window)] = pairs
        obligations = [Obligation(a, b, amt) if amt > 0 else Obligation(b, a, -amt)
                       for (a, b), (amt, _, _) in sorted(pairs.items()) if amt != 0]
        carried_in = [Obligation(a, b, amt) if amt > 0 else Obligation(b, a, -amt)
                      for (a, b), amt in sorted(self.carry.get(rid, {}).items()) if amt != 0]
        settle, carry = net_with_threshold(obligations, threshold_micros=rule.threshold_micros, carried_in=carried_in)
        new_carry = {k: 0 for k in self.carry.get(rid, {})}
        for o in carry:
            a, b = sorted((o.payer, o.payee))
            new_carry[(a, b)] = o.amount_micros if o.payer == a else -o.amount_micros
        self.carry[rid] = new_carry
        out.carry.update((rid, p) for p in new_carry)
        self.closed_until[rid] = max(self.closed_until.get(rid, 0), end)
        out.progress.add(rid)
        positions = {agent: pos for agent, pos in net_positions(settle).items() if pos != 0}
        transfers = multilateral_settle(positions)
        received: dict[str, int] = {}
        paid: dict[str, int] = {}
        settles = tier_settles(rule.tier)
        if not settles:
            transfers = []  # tier 1 meters only: the positions are reported, nothing is proposed or paid
        for tr in transfers:
            sid = settlement_id(rid, start, end, tr.payer, tr.payee)
            key = f"settlement:{sid}"
            proposal = Settlement(
                settlement_id=sid, window_start_us=start, window_end_us=end, payer=tr.payer, payee=tr.payee,
                amount_micros=tr.amount_micros, method=rule.method, tier=rule.tier, status="proposed", rail=NO_RAIL,
                params=tuple(sorted({
                    "rule_id": rid, "threshold_micros": str(rule.threshold_micros),
                    "window_us": str(rule.window_us), "pairs_settled": str(len(settle)),
                    "pairs_carried": str(len(carry)), "transfers_in_window": str(len(transfers)),
                    "payer_position_micros": str(positions[tr.payer]),
                    "payee_position_micros": str(positions[tr.payee])}.items())))
            event = self.rail.settle(proposal, key) if settles else proposal
            fx.derived.append(Derived(topic="settlements", body=event, event_time_us=end, idempotency_key=key))
            out.settlements.append((rid, event))
            paid[tr.payer] = paid.get(tr.payer, 0) + tr.amount_micros
            received[tr.payee] = received.get(tr.payee, 0) + tr.amount_micros
        for agent in sorted(positions):
            out.positions.append({"rule_id": rid, "window_start_us": start, "window_end_us": end, "agent_id": agent,
                                  "position_micros": positions[agent], "received_micros": received.get(agent, 0),
                                  "paid_micros": paid.get(agent, 0)})


class _Out:
    """What one fold changed, collected so each view is written once per batch."""

    def __init__(self) -> None:
        self.pairs: set[tuple[str, tuple[int, int], tuple[str, str]]] = set()
        self.closed: set[tuple[str, tuple[int, int], tuple[str, str]]] = set()
        self.closed_pairs: dict[tuple[str, tuple[int, int]], dict[tuple[str, str], list[int]]] = {}
        self.carry: set[tuple[str, tuple[str, str]]] = set()
        self.progress: set[str] = set()
        self.settlements: list[tuple[str, Settlement]] = []
        self.positions: list[dict[str, Any]] = []
        self.rules: list[Rule] = []
        self.watermark_moved = False

    def write(self, fx: Effects, p: Settlements) -> None:
        if self.rules:
            fx.append("settlement_rules", columns_of([{
                "rule_id": r.rule_id, "tier": r.tier, "method": r.method, "window_us": r.window_us,
                "threshold_micros": r.threshold_micros, "enabled": r.enabled, "in_force_from_us": r.in_force_from_us,
                "seq": r.seq} for r in self.rules]))
        rows = []
        for rid, window, pair in sorted(self.pairs):
            closed = (rid, window, pair) in self.closed
            cell = (self.closed_pairs[(rid, window)] if closed else p.open[rid][window])[pair]
            rows.append({"rule_id": rid, "window_start_us": window[0], "window_end_us": window[1], "agent_a": pair[0],
                         "agent_b": pair[1], "a_owes_b_micros": cell[0], "allocations": cell[1],
                         "late_allocations": cell[2], "status": "closed" if closed else "open"})
        if rows:
            fx.upsert("pair_balances", columns_of(rows))
        if self.carry:
            fx.upsert("carried", columns_of([{"rule_id": rid, "agent_a": a, "agent_b": b,
                                         "a_owes_b_micros": p.carry[rid][(a, b)]}
                                        for rid, (a, b) in sorted(self.carry)]))
        if self.progress or self.watermark_moved:
            rows = [{"key": CLOSED_UNTIL_PREFIX + rid, "value_us": p.closed_until[rid]}
                    for rid in sorted(self.progress)]
            fx.upsert(PROGRESS.name, columns_of([{"key": WATERMARK_KEY, "value_us": p.watermark}, *rows]))
        if self.settlements:
            fx.append("settlements", columns_of([{
                "settlement_id": s.settlement_id, "rule_id": rid, "window_start_us": s.window_start_us,
                "window_end_us": s.window_end_us, "payer": s.payer, "payee": s.payee, "amount_micros": s.amount_micros,
                "method": s.method, "tier": s.tier, "status": s.status, "rail": s.rail, "tx_ref": s.tx_ref}
                for rid, s in self.settlements]))
        if self.positions:
            fx.append("net_positions", columns_of(self.positions))


__all__ = ["ALLOWED_LATENESS_US", "DEFAULT_RULE", "WATERMARK_OWNER", "Settlements", "rule_key", "settlement_id"]
