"""The budgets processor: consumption, limits, reservations, alerts and transfers per scope and kind.

What it does
    Folds verified events into one ``BudgetState`` (ledger/economics/budget.py) per (scope level, scope id,
    budget kind) that has a policy, and publishes them as the ``budgets`` snapshot view. All the
    rules live in ledger/economics/budget.py and ledger/economics/reallocation.py; this module maps events onto them.

    * ``BudgetPolicy`` (control) creates or replaces the policy of (scope, scope_id, kind); the
      window anchor is its ``effective_from_us``; it applies from its place in the log on. A new
      policy for a suspended budget resumes it (an operator's decision). A policy the pure model
      refuses (priority 0, interval 0, min_reserve above the allocation, suspend without deny) is
      ignored and reported as a ``policy_refused`` alert. ``PriceSet`` (control) adds a price, by the
      one price-in-force rule of ``ledger.economics.pricing``: in force from max(its effective time, its
      own event time), later on the log wins at equal starts (a price the book refuses changes nothing).
    * Consumption (a fact: always counted, flagged by a ``breach`` alert if the policy would have
      refused it), at every budgeted level of the event's hierarchy — org, project, task from its
      context, agent = the signer:
        action   → "action": ceil(cost_weight_milli / 1000) cost units (rounded up: a budget is a
                   limit, never under-count); with LLM usage also "llm_tokens" = input + output
                   tokens and "usd" = the call's price in micro-USD from the PriceSet events on the
                   log (the shipped book is there as such events; there is no other fallback), at
                   the event's time. A model without a price in force counts no USD and is counted
                   in the ``unpriced_calls`` column of the usd rows instead.
        data     → "data": bytes_read + bytes_written.
        compute  → "compute": cpu_time_slices + gpu_time_slices.
        trust    → "trust" of the issuer: ceil(|value_milli| / 1000) trust tokens (seed 002: issuing
                   trust spends the issuer's trust budget, positive or negative).
        interaction events are priced by the allocations processor, not counted here.
    * ``Reservation`` events: ``reserve`` holds budget at every budgeted level of the signer's
      hierarchy, with the named scope put in place of its level; it is admitted or **refused** in
      log order against consumed + live reservations (a refused one is recorded with status
      "refused" and a ``reservation_refused`` alert). ``commit`` turns (up to) the hold into
      consumption (any excess is counted as usage); ``release`` frees it; a hold expires by event
      time (at its ``expires_at_us`` or its window's end) when a later event touches its budget.
      A reservation id is the reserving agent's own (the key is (signer, reservation id), so nobody can
      squat another agent's id); an agent uses it once, a second reserve with it is refused (reason
      duplicate_id). An agent reserves only against its own scopes: its agent scope, and the org and
      project its operator-signed registration names — any other scope (another agent's, a task, a
      foreign project) only with the operator's ``reserve`` grant on it; otherwise the reserve is
      refused with reason not_permitted (a ``reservation_refused`` alert and a refused row).
    * ``AgentRegistered`` and ``Grant`` (control) are folded into ``budget_signers`` (org, project) and
      ``budget_grants`` (reserve and grader grants, each in force from its event time), which decide
      who may reserve what and whose scores count.
    * ``Outcome`` events record the signer's confidence on its agent-level budgets: once it is at
      or above the policy's threshold, further spend is refused (reservations) or flagged
      (usage: a ``gated`` alert) until a lower confidence is reported.
    * Reallocation: before a reserve or a usage that a level would refuse at its hard limit, the
      level's siblings (same scope level and kind, same parent scope) lend their unused budget,
      lowest priority first, never below a donor's reserve, never uphill — all or nothing. Each
      transfer is a ``BudgetTransfer`` derived event on ``<prefix>.alerts`` and a ``transfers`` row.
    * Reputation (seed 002): an agent-level budget starts each window with the policy's allocation
      times the agent's reputation multiplier at that window's first event (0.5x .. 1.5x, rounded
      down), computed by ledger.economics.reputation from the trust this processor counts exactly as the
      reputation processor does (self-issued trust ignored, graded outcomes as incentive trust;
      a score counts only from a grader about another agent; kept in ``budget_trust``). A newcomer
      scores 0.7 = 1.0x. Other levels are not scaled.
    * Alerts (soft_limit, hard_limit, emergency_reserve, suspended, resumed, breach, gated,
      reservation_refused, policy_refused) are ``BudgetAlert`` derived events on ``<prefix>.alerts``
      and ``budget_alerts`` rows; their ids come from the causing event's id and the alert's index,
      so a replay or a re-send never mints a second one.

Which time
    * Windows, resets, reservation expiry, throttle backoff and suspension use the event's claimed time:
      readers accept it only within the skew window of its record's append time (``ledger.integrity.verify``;
      default 5 minutes behind, 1 minute ahead), so live event time is trustworthy to within minutes and a
      future-stamped usage or reservation (say 2199) is quarantined as ``clock_skew`` before it could move
      a window, expire every hold or reset a spent budget. Append time is not used for budgets: event time
      within the window is both trustworthy and what the agent's windows mean.
    * A backfilled event (``Item.backfilled``: older than the window, accepted through a backfill grant) is
      history: its usage is counted in its own historical window in ``budget_backfill`` (window start by the
      policy in force), and it never advances, resets, throttles or suspends a live budget, never expires,
      takes or settles a hold (a backfilled reserve is refused, reason ``backfilled``), never sets a
      confidence. Its trust still counts for reputation multipliers (decayed by its own time).

Invariants
    * State depends only on the log in log order and on event time: no clock, no batch-boundary
      effect (time advances only for the budgets an event touches, at that event's time).
    * For DENY / THROTTLE policies, granted reservations never take consumed + reserved past the
      ceiling (hard cap + emergency reserve): ledger/economics/budget.py's invariant, decided here in log order.
    * ``restore`` rebuilds the in-memory state exactly from the snapshot views.

Never
    Read the wall clock, refuse a usage event (usage is a fact), move budget partially, or overflow a
    counter: consumption, emergency use and unpriced calls saturate at ``ledger.limits.MAX_BUDGET_COUNTER``
    (a saturated budget is past every ceiling, so it refuses and flags), so no valid event crash-loops it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ledger.economics import budget as b
from ledger.economics.budget_rows import (
    hold_id,
    level_from_row,
    levels_text,
    parse_levels,
    policy_columns,
    policy_from_event,
)
from ledger.economics.pricing import (
    PRICE_MATCH_ROW_COLUMNS,
    PRICE_ROW_COLUMNS,
    PriceBook,
    aggregate_shape,
    price_book_from_rows,
    usage_cost,
)
from ledger.economics.reallocation import Refusal
from ledger.economics.reputation import TrustEvent, TrustFold, apply_multiplier, incentive_event, trust_event
from ledger.errors import LedgerError
from ledger.limits import MAX_BUDGET_COUNTER, MAX_BUDGET_INTERVAL_US, MAX_REASON_CHARS
from ledger.units import MILLI
from ledger.wire.events import (
    Action,
    AgentRegistered,
    BudgetAlert,
    BudgetTransfer,
    Compute,
    Data,
    Event,
    Grant,
    Outcome,
    PriceMatch,
    PriceSet,
    Trust,
)
from ledger.wire.events import (
    BudgetPolicy as PolicyEvent,
)
from ledger.wire.events import (
    Reservation as ReservationEvent,
)
from ledger.wire.vocab import SCOPE_LEVEL_VALUES, Capability, ScopeLevel
from processors.runtime.processor import (
    BATCH,
    BROADCAST,
    Column,
    Derived,
    Effects,
    GrantBook,
    Item,
    Processor,
    Quarantined,
    View,
    columns_of,
    grant_history_view,
    restore_trust_fold,
    trust_fold_view,
)

LEVELS = SCOPE_LEVEL_VALUES  # outermost first

Key = tuple[str, str, str]  # (scope level, scope id, budget kind)

BUDGETS = View(
    name="budgets", mode="snapshot", primary_key=("scope", "scope_id", "budget_kind"),
    doc="One row per budgeted (scope, kind): the current window's allocation, use, status and policy.",
    columns=(
        Column("scope", "VARCHAR", "scope level: org | project | task | agent"),
        Column("scope_id", "VARCHAR", "the org, project, task or agent id"),
        Column("budget_kind", "VARCHAR", "action | data | compute | trust | llm_tokens | usd"),
        Column("unit", "VARCHAR", "unit of the amounts (usd: micro-USD)"),
        Column("parent_scope", "VARCHAR", "level of the enclosing scope, as last seen in an event's context"),
        Column("parent_id", "VARCHAR", "id of the enclosing scope (siblings share it: reallocation)"),
        Column("window_start_us", "BIGINT", "current window start (event time, us)"),
        Column("window_end_us", "BIGINT", "current window end = next reset (event time, us)"),
        Column("allocation", "BIGINT", "this window's allocation (the policy's, moved by transfers)"),
        Column("consumed", "BIGINT", "consumed this window"),
        Column("reserved", "BIGINT", "held by live reservations"),
        Column("remaining", "BIGINT", "allocation - consumed; negative when overdrawn"),
        Column("available", "BIGINT", "what admission could still admit: ceiling - consumed - reserved"),
        Column("utilisation", "DOUBLE", "consumed / allocation"),
        Column("status", "VARCHAR",
               "healthy | normal | warning | critical (seed 002) | overdrawn (consumed > allocation)"),
        Column("emergency_used", "BIGINT", "consumption drawn on the emergency reserve this window"),
        Column("throttle_level", "INTEGER", "backoff level (0 = not throttled)"),
        Column("throttle_delay_us", "BIGINT", "current backoff delay: 1 s doubling per level, at most 60 s"),
        Column("suspended", "BOOLEAN", "refusing everything until the next window or a new policy"),
        Column("last_confidence_milli", "INTEGER", "the agent's last reported confidence (thousandths)"),
        Column("unpriced_calls", "BIGINT", "usd rows: LLM calls of a model without a price (no USD counted)"),
        Column("updated_us", "BIGINT", "event time of the last event that changed the row"),
        Column("reputation_multiplier", "VARCHAR", "agent rows: seed 002's multiplier applied to this window's "
                                                   "allocation (reputation at the window's first event)"),
        Column("policy_allocation", "BIGINT", "policy: allocation per window"),
        Column("reset_interval_us", "BIGINT", "policy: window length (us)"),
        Column("soft_limit_pct", "INTEGER", "policy: soft limit, % of the allocation"),
        Column("hard_limit_pct", "INTEGER", "policy: hard limit, % of the allocation"),
        Column("throttle_at_soft", "BOOLEAN", "policy: throttle spends that end past the soft limit"),
        Column("suspend_at_hard", "BOOLEAN", "policy: suspend on a refusal at the hard limit"),
        Column("emergency_reserve_pct", "INTEGER", "policy: emergency reserve beyond the hard limit, %"),
        Column("hard_limit_action", "VARCHAR", "policy: allow | throttle | deny | alert_only"),
        Column("min_reserve", "BIGINT", "policy: never lent to siblings"),
        Column("priority", "INTEGER", "policy: reallocation priority (higher keeps its budget)"),
        Column("confidence_threshold_milli", "INTEGER", "policy: confidence gate threshold (thousandths)"),
        Column("effective_from_us", "BIGINT", "policy: windows start at this + k * interval"),
    ))
ALERTS = View(
    name="budget_alerts", doc="Every budget alert, as published on <prefix>.alerts.",
    columns=(
        Column("alert_id", "VARCHAR", "idempotency key of the alert (cause event id + index)"),
        Column("event_time_us", "BIGINT", "event time of the event that raised it"),
        Column("cause_event_id", "VARCHAR", "the event that raised it"),
        Column("agent_id", "VARCHAR", "signer of that event"),
        Column("scope", "VARCHAR", "scope level of the budget"),
        Column("scope_id", "VARCHAR", "scope id of the budget"),
        Column("budget_kind", "VARCHAR", "budget kind"),
        Column("alert", "VARCHAR", "soft_limit | hard_limit | emergency_reserve | suspended | resumed | breach | "
                                   "gated | reservation_refused | policy_refused"),
        Column("reason", "VARCHAR", "why (breach, suspension, refusal)"),
        Column("window_start_us", "BIGINT", "window it happened in"),
        Column("allocation", "BIGINT", "allocation at the time"),
        Column("consumed", "BIGINT", "consumption at the time"),
        Column("amount", "BIGINT", "the spend, draw or request that raised it"),
        BATCH,
    ))
TRANSFERS = View(
    name="transfers", doc="Unused budget lent between sibling budgets (priority-weighted reallocation).",
    columns=(
        Column("transfer_id", "VARCHAR", "idempotency key (cause event id + index)"),
        Column("event_time_us", "BIGINT", "event time of the spend that needed it"),
        Column("cause_event_id", "VARCHAR", "the event whose admission needed the transfer"),
        Column("scope", "VARCHAR", "scope level of donor and recipient"),
        Column("budget_kind", "VARCHAR", "budget kind"),
        Column("donor_id", "VARCHAR", "scope id that gave"),
        Column("recipient_id", "VARCHAR", "scope id that received"),
        Column("amount", "BIGINT", "allocation moved, for this window only"),
        Column("window_start_us", "BIGINT", "window of the recipient"),
        BATCH,
    ))
RESERVATIONS = View(
    name="reservations", mode="snapshot", primary_key=("agent_id", "reservation_id"),
    doc="Every reservation and what became of it (ids are per agent: the key is agent_id + reservation_id).",
    columns=(
        Column("reservation_id", "VARCHAR", "the producer's reservation id (its own: unique per agent)"),
        Column("agent_id", "VARCHAR", "who reserved"),
        Column("scope", "VARCHAR", "scope level named by the reservation"),
        Column("scope_id", "VARCHAR", "scope id named by the reservation"),
        Column("budget_kind", "VARCHAR", "budget kind"),
        Column("amount", "BIGINT", "amount requested"),
        Column("committed", "BIGINT", "amount committed (0 until a commit)"),
        Column("status", "VARCHAR", "reserved | committed | released | expired | refused"),
        Column("reason", "VARCHAR", "decision reason (refusals: hard_limit, suspended, confidence_gate, "
                                    "not_permitted, ...)"),
        Column("levels", "VARCHAR", "budgets it holds at: level:id/level:id (org first)"),
        Column("created_us", "BIGINT", "event time of the reserve"),
        Column("expires_us", "BIGINT", "hold ends (event time): its expiry or its window's end"),
        Column("updated_us", "BIGINT", "event time of the last change"),
    ))
BACKFILL = View(
    name="budget_backfill",
    doc="Backfilled usage (accepted through a backfill grant), counted in its own historical window; it never "
        "touches the live budgets.",
    columns=(
        Column("event_id", "VARCHAR", "the backfilled usage event"),
        Column("event_time_us", "BIGINT", "its claimed (historical) event time"),
        Column("append_time_us", "BIGINT", "when the log appended it"),
        Column("scope", "VARCHAR", "org | project | task | agent"),
        Column("scope_id", "VARCHAR", "id at that level"),
        Column("budget_kind", "VARCHAR", "what is counted"),
        Column("window_start_us", "BIGINT", "start of its historical window, by the policy in force when appended"),
        Column("amount", "BIGINT", "units counted in that window (usd: micro-USD at the price of its time)"),
        BATCH,
    ))
# the same columns as the allocations processor's ``prices`` view: one rule, one record of it
PRICES = View(
    name="budget_prices",
    doc="Every price-book entry read from PriceSet control events (the only prices), with when it is in force.",
    columns=(*(Column(*c) for c in PRICE_ROW_COLUMNS), BATCH))
PRICE_MATCHES = View(
    name="budget_price_matches", doc="Every model-matching rule read from price_match control events (as allocations).",
    columns=(*(Column(*c) for c in PRICE_MATCH_ROW_COLUMNS), BATCH))
TRUST = View(
    name="budget_trust", doc="Trust the budgets processor counts to scale agents' allocations (as reputation does).",
    columns=(
        Column("event_id", "VARCHAR", "trust event (or graded outcome, for incentive trust)"),
        Column("event_time_us", "BIGINT", "event time"),
        Column("issuer", "VARCHAR", "who issued it (never the subject)"),
        Column("subject", "VARCHAR", "the agent it is about"),
        Column("dimension", "VARCHAR", "accuracy | compliance | feedback | reliability"),
        Column("value_milli", "BIGINT", "signed value in thousandths of a trust token"),
        Column("half_life_us", "BIGINT", "its own half-life (NULL = the dimension's default)"),
        BATCH,
    ))
TRUST_DECAY = trust_fold_view("budget_trust_decay")


SIGNERS = View(
    name="budget_signers", mode="snapshot", primary_key=("agent_id",),
    doc="Each registered signer's org and project (from agent_registered): the scopes it may reserve against.",
    columns=(
        Column("agent_id", "VARCHAR", "the registered signer"),
        Column("org", "VARCHAR", "org it is registered under (NULL: none)"),
        Column("project", "VARCHAR", "project it is registered under (NULL: none)"),
    ))
BUDGET_GRANTS = grant_history_view("budget_grants")
RESERVE = Capability.RESERVE.value
GRADER = Capability.GRADER.value
ResKey = tuple[str, str]  # (reserving agent, its reservation id)
# Memo of the budgeted chain of an event's hierarchy (org, project, task, signer, kind) -> levels with their
# parent scope: entries, each a tuple of at most four levels; emptied when full and when a new budget appears.
CHAIN_MEMO_ENTRIES = 4_096
ChainKey = tuple[str | None, str | None, str | None, str, str]
Parent = tuple[str | None, str | None]


def _ceil_div(a: int, d: int) -> int:
    return -(-a // d)


# the budget kinds each agent event kind can spend (``Budgets._spends``): an event spending none of the kinds that have
# a policy changes nothing, and a shard's router need not send it anywhere
SPEND_KINDS: dict[type, frozenset[str]] = {Action: frozenset({"action", "llm_tokens", "usd"}),
                                           Data: frozenset({"data"}), Compute: frozenset({"compute"})}


class Budgets(Processor):
    name = "budgets"
    derived_topics = ("alerts",)
    # sharded through the exchange (processors.runtime.exchange), replicated: every shard folds every event that can
    # move a budget (usage of a kind with a policy, reservations, trust, outcomes), in the log's one order, so every
    # shard reaches the one instance's whole state and decides every reservation as it would (racing agents on
    # different partitions cannot overspend an org); each keeps the rows and derived events whose primary key hashes
    # to it. The routers split reading and verifying the log; the fold itself is not divided (docs/scaling.md says
    # how it would be: tenants and leases)
    exchanges = True
    replicated = True
    doc = "budgets per scope and kind: consumption, limits, reservations, alerts and transfers"
    views = (BUDGETS, ALERTS, TRANSFERS, RESERVATIONS, PRICES, PRICE_MATCHES, TRUST, TRUST_DECAY, SIGNERS,
             BUDGET_GRANTS, BACKFILL)

    def __init__(self) -> None:
        self.policies: dict[Key, b.BudgetPolicy] = {}
        # kinds with a policy at some scope (policies are replaced, never removed): a spend of any other
        # kind has no budget to count against, which is most events' case, found with one set lookup
        self.kinds: set[str] = set()
        self.states: dict[Key, b.BudgetState] = {}
        self.parent: dict[Key, Parent] = {}
        self.chains: dict[ChainKey, tuple[tuple[Key, Parent], ...]] = {}  # memo, at most CHAIN_MEMO_ENTRIES
        self.unpriced: dict[Key, int] = {}
        self.updated: dict[Key, int] = {}
        self.reservations: dict[ResKey, dict[str, Any]] = {}
        self.signers: dict[str, tuple[str | None, str | None]] = {}  # agent -> registered (org, project)
        self.dirty_signers: set[str] = set()
        self.holds: dict[str, ResKey] = {}  # hold id in the pure model -> reservation (admitted ones)
        self.grants = GrantBook(BUDGET_GRANTS)
        self.book = PriceBook()  # from PriceSet events only (the shipped book is on the log as such)
        self.trust = TrustFold()
        self.multiplier: dict[Key, str] = {}

    # ------------------------------------------------------------ sharding (processors.runtime.exchange)

    def observe_control(self, item: Item) -> None:
        body = item.decoded.event.body
        if isinstance(body, PolicyEvent):
            try:
                policy_from_event(body)
            except LedgerError:
                return  # refused: it makes no budget (as ``_policy``)
            self.kinds.add(body.budget_kind)

    def route(self, item: Item) -> tuple[str, ...]:
        body = item.decoded.event.body
        spends = SPEND_KINDS.get(type(body))
        if spends is not None:
            return (BROADCAST,) if spends & self.kinds else ()
        if isinstance(body, (ReservationEvent, Outcome, Trust)):
            return (BROADCAST,)
        return ()  # interactions, deposits, ...: nothing budgets folds

    def row_owner(self, table: str, row: dict[str, Any]) -> str | None:
        key = _ROW_KEYS.get(table)
        return None if key is None else ":".join(str(row[c]) for c in key)

    def row_owner_sql(self, table: str) -> str | None:
        key = _ROW_KEYS.get(table)
        return None if key is None else "concat_ws(':', " + ", ".join(f"{c}::VARCHAR" for c in key) + ")"

    def derived_owner(self, derived: Derived) -> str | None:
        return derived.idempotency_key

    # ------------------------------------------------------------ restore

    def restore(self, query: Callable[..., list[tuple[Any, ...]]]) -> None:
        for row in _rows(query, RESERVATIONS):
            self.reservations[(row["agent_id"], row["reservation_id"])] = row
        for agent, org, project in query("SELECT agent_id, org, project FROM budget_signers"):
            self.signers[agent] = (org, project)
        self.grants.restore(query)
        held: dict[tuple[str, str, str], list[b.Reservation]] = {}
        for row in self.reservations.values():
            if row["status"] == "reserved":
                hid = hold_id(row["agent_id"], row["reservation_id"])
                self.holds[hid] = (row["agent_id"], row["reservation_id"])
                r = b.Reservation(hid, row["amount"], row["created_us"], row["expires_us"])
                for lvl, sid in parse_levels(row["levels"]):
                    held.setdefault((lvl, sid, row["budget_kind"]), []).append(r)
        for row in _rows(query, BUDGETS):
            key = (row["scope"], row["scope_id"], row["budget_kind"])
            state, policy = level_from_row(row, tuple(held.get(key, ())))
            self.states[key], self.policies[key] = state, policy
            self.kinds.add(key[2])
            self.parent[key] = (row["parent_scope"], row["parent_id"])
            self.unpriced[key] = row["unpriced_calls"]
            self.updated[key] = row["updated_us"]
            self.multiplier[key] = row["reputation_multiplier"]
        restore_trust_fold(self.trust, query, TRUST_DECAY, TRUST.name)
        self.book = price_book_from_rows(_rows(query, PRICES), _rows(query, PRICE_MATCHES))

    # ------------------------------------------------------------ fold

    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        self.fx = Effects()
        self.dirty: set[Key] = set()
        self.dirty_res: set[ResKey] = set()
        self.alert_rows: list[dict[str, Any]] = []
        self.transfer_rows: list[dict[str, Any]] = []
        self.trust_rows: list[dict[str, Any]] = []
        self.backfill_rows: list[dict[str, Any]] = []
        self.price_rows: dict[str, list[dict[str, Any]]] = {PRICES.name: [], PRICE_MATCHES.name: []}
        for it in items:
            self.n = 0  # derived events from this input event: their idempotency key index
            if it.backfilled:
                self._backfilled(it.decoded.event, it.record.append_time_us)
            else:
                self._event(it.decoded.event)
        fx = self.fx
        # appended rows, one insert per view and batch (a seeded catalog is ~1,200 price rows in one batch)
        for view, rows in (("budget_backfill", self.backfill_rows), *self.price_rows.items(),
                           ("budget_alerts", self.alert_rows), ("transfers", self.transfer_rows),
                           ("budget_trust", self.trust_rows)):
            if rows:
                fx.append(view, columns_of(rows))
        if self.dirty:
            fx.upsert("budgets", columns_of([self._row(k) for k in sorted(self.dirty)]))
        if self.dirty_res:
            fx.upsert("reservations", columns_of([self.reservations[r] for r in sorted(self.dirty_res)]))
        if settled := self.trust.changed_rows():
            fx.upsert(TRUST_DECAY.name, columns_of(settled))
        if self.dirty_signers:
            fx.upsert("budget_signers", columns_of([{"agent_id": a, "org": self.signers[a][0],
                                                     "project": self.signers[a][1]}
                                                    for a in sorted(self.dirty_signers)]))
            self.dirty_signers = set()
        self.grants.flush(fx)
        del self.fx
        return fx

    def _event(self, ev: Event) -> None:
        body = ev.body
        if isinstance(body, PolicyEvent):
            self._policy(ev, body)
        elif isinstance(body, (PriceSet, PriceMatch)):
            self._add_price(ev, body)
        elif isinstance(body, AgentRegistered):
            self.signers[body.agent_id] = (body.org, body.project)
            self.dirty_signers.add(body.agent_id)
        elif isinstance(body, Grant):
            self.grants.apply(body.agent_id, body.capability, body.scope, body.active, ev.event_time_us)
        elif isinstance(body, ReservationEvent):
            self._reservation(ev, body)
        elif isinstance(body, Outcome):
            self._outcome(ev, body)
            got = incentive_event(ev, body, self.grants.holders(GRADER, ev.event_time_us))
            if got is not None:
                self._count_trust(got[0])
        elif not body.CONTROL and not getattr(body, "DERIVED", False):
            if isinstance(body, Trust):
                te = trust_event(ev, body)
                if te is not None:
                    self._count_trust(te)
            for kind, amount in self._spends(ev, body):
                self._usage(ev, kind, amount)

    # ------------------------------------------------------------ events

    def _backfilled(self, ev: Event, append_time_us: int) -> None:
        """A backfilled event: history, not a request about now. Its usage is counted in its own window
        (``budget_backfill``); it never advances, resets, throttles or suspends a live budget, never expires or
        takes a hold, never sets a confidence. Its trust still counts (trust decays by its own time)."""
        body = ev.body
        if isinstance(body, ReservationEvent):
            if body.action == "reserve":  # a hold is a request about now: a claim from the past holds nothing
                self._emit_alert(ev, BudgetAlert(scope=body.scope, scope_id=body.scope_id,
                                                 budget_kind=body.budget_kind, alert="reservation_refused",
                                                 window_start_us=0, allocation=0, consumed=0, amount=body.amount,
                                                 reason="backfilled"))
                return
            spends = [(body.budget_kind, body.amount)] if body.action == "commit" and body.amount else []
        else:
            if isinstance(body, Outcome):
                got = incentive_event(ev, body, self.grants.holders(GRADER, ev.event_time_us))
                if got is not None:
                    self._count_trust(got[0])
            elif isinstance(body, Trust):
                te = trust_event(ev, body)
                if te is not None:
                    self._count_trust(te)
            spends = self._spends(ev, body) if not body.CONTROL and not getattr(body, "DERIVED", False) else []
        t = ev.event_time_us
        for kind, amount in spends:
            if amount < 0:
                continue  # unpriced: no usd to count
            for key in self._budgeted(self._ids(ev), kind):
                self.backfill_rows.append({
                    "event_id": ev.event_id, "event_time_us": t, "append_time_us": append_time_us, "scope": key[0],
                    "scope_id": key[1], "budget_kind": kind, "window_start_us": self.policies[key].window_start(t),
                    "amount": amount})

    def _policy(self, ev: Event, body: PolicyEvent) -> None:
        key = (body.scope, body.scope_id, body.budget_kind)
        t = ev.event_time_us
        try:
            policy = policy_from_event(body)
        except LedgerError as e:
            self._emit_alert(ev, BudgetAlert(scope=body.scope, scope_id=body.scope_id, budget_kind=body.budget_kind,
                                             alert="policy_refused", window_start_us=0, allocation=body.allocation,
                                             consumed=0, amount=0, reason=str(e)[:MAX_REASON_CHARS]))
            return
        old = self.states.get(key)
        self.policies[key] = policy
        self.kinds.add(key[2])
        if old is None:
            self.chains.clear()  # a new budget: chains that lacked it are stale
            opened = b.open_budget(b.Scope(ScopeLevel(body.scope), body.scope_id), policy, t)
            self.states[key] = replace(opened, allocation=self._allocation(key, t))
            self.parent.setdefault(key, (None, None))
        else:
            # the new policy applies now: this window's allocation becomes the new one (transfers
            # into the old allocation are dropped with it); a suspension is lifted
            self._advance(ev, [key])
            state = replace(self.states[key], allocation=self._allocation(key, t))
            resumed = b.resume(state, policy, t)
            self._alerts(ev, resumed.alerts)
            self.states[key] = resumed.state
        self._touch(key, t)

    def _spends(self, ev: Event, body: Any) -> list[tuple[str, int]]:
        if isinstance(body, Action):
            out = [("action", _ceil_div(body.cost_weight_milli, MILLI))]
            u = body.usage
            if u is not None:
                out.append(("llm_tokens", u.input_tokens + u.output_tokens))
                if "usd" in self.kinds:  # pricing is the costly part; without a usd budget nothing counts it
                    out.append(("usd", self._price(ev, u)))
            return out
        if isinstance(body, Data):
            return [("data", body.bytes_read + body.bytes_written)]
        if isinstance(body, Compute):
            return [("compute", body.cpu_time_slices + body.gpu_time_slices)]
        if isinstance(body, Trust):
            return [("trust", _ceil_div(abs(body.value_milli), MILLI))]
        return []

    def _price(self, ev: Event, u: Any) -> int:
        """micro-USD of one LLM call (or of the calls an aggregate sums, priced as allocations prices them:
        ``aggregate_shape``); -1 when the model has no price at the event's time."""
        requests, tier_input, _ = aggregate_shape(getattr(ev.body, "operation", ""), ev.context.labels,
                                                  u.input_tokens)
        try:
            price = self.book.price_at(u.provider, u.model, ev.event_time_us, service_tier=u.service_tier,
                                       input_tokens=tier_input)
            return usage_cost(price, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                              cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens,
                              reasoning_tokens=u.reasoning_tokens, cache_write_1h_tokens=u.cache_write_1h_tokens,
                              requests=requests).total
        except LedgerError:
            return -1

    def _usage(self, ev: Event, kind: str, amount: int) -> None:
        chain = self._chain(ev, kind)
        if not chain:
            return
        t = ev.event_time_us
        if amount < 0:  # an unpriced call: counted as such on the usd rows, no spend
            for key in chain:
                self.unpriced[key] = min(self.unpriced.get(key, 0) + 1, MAX_BUDGET_COUNTER)
                self._touch(key, t)
            return
        self._advance(ev, chain)
        self._reallocate_if_short(ev, chain, amount)
        for key in chain:
            res = b.record_usage(self.states[key], self.policies[key], amount, t)
            self.states[key] = res.state
            if res.alerts:
                self._alerts(ev, res.alerts)
            self._touch(key, t)

    def _reservation(self, ev: Event, body: ReservationEvent) -> None:
        t = ev.event_time_us
        rkey = (ev.signer_id, body.reservation_id)
        rid = hold_id(*rkey)  # what the pure model holds it under
        if body.action == "reserve":
            self._reserve(ev, body)
            return
        row = self.reservations.get(rkey)
        if row is None or row["budget_kind"] != body.budget_kind:
            # not ours to settle: a commit is still a spend that happened; a release frees nothing
            if body.action == "commit" and body.amount:
                self._usage(ev, body.budget_kind, body.amount)
            self._emit_alert(ev, BudgetAlert(scope=body.scope, scope_id=body.scope_id, budget_kind=body.budget_kind,
                                             alert="reservation_refused", window_start_us=0, allocation=0,
                                             consumed=0, amount=body.amount,
                                             reason=f"{body.action}_unknown_reservation"))
            return
        keys = [(lvl, sid, row["budget_kind"]) for lvl, sid in parse_levels(row["levels"])]
        keys = [k for k in keys if k in self.states]
        self._advance(ev, keys)
        if body.action == "release":
            for key in keys:
                rel = b.release(self.states[key], self.policies[key], rid, t)
                self.states[key] = rel.state
                self._alerts(ev, rel.alerts)
                self._touch(key, t)
            if row["status"] == "reserved":
                self._set_res(rkey, t, status="expired" if row["expires_us"] <= t else "released")
            return
        # commit
        if not keys:
            return
        levels = [(self.states[k], self.policies[k]) for k in keys]
        held = min((r.amount for s, _ in levels if (r := s.reservation(rid)) is not None), default=None)
        amount = body.amount if held is None else min(body.amount, held)
        res = b.commit_chain(levels, rid, amount, t)
        for key, state in zip(keys, res.states, strict=True):
            self.states[key] = state
            self._touch(key, t)
        self._alerts(ev, res.alerts)
        if res.decision.reason is b.Reason.NOT_RESERVED:
            # expired or already settled: the spend happened anyway, so it is counted as usage
            self._set_res(rkey, t, status="expired" if row["status"] == "reserved" else row["status"])
            self._count(ev, keys, body.amount)
            return
        self._set_res(rkey, t, status="committed", committed=amount)
        if body.amount > amount:
            self._count(ev, keys, body.amount - amount)  # spent beyond the hold: usage of its own

    def _count(self, ev: Event, keys: list[Key], amount: int) -> None:
        for key in keys:
            res = b.record_usage(self.states[key], self.policies[key], amount, ev.event_time_us)
            self.states[key] = res.state
            self._alerts(ev, res.alerts)
            self._touch(key, ev.event_time_us)

    def _reserve(self, ev: Event, body: ReservationEvent) -> None:
        t = ev.event_time_us
        rkey = (ev.signer_id, body.reservation_id)
        rid = hold_id(*rkey)
        ids = self._ids(ev)
        ids[body.scope] = body.scope_id
        chain = self._budgeted(ids, body.budget_kind)
        self._note_parents(ids, body.budget_kind, chain)
        row = {"reservation_id": body.reservation_id, "agent_id": ev.signer_id, "scope": body.scope,
               "scope_id": body.scope_id,
               "budget_kind": body.budget_kind, "amount": body.amount, "committed": 0, "status": "refused",
               "reason": "", "levels": levels_text([b.Scope(ScopeLevel(k[0]), k[1]) for k in chain]), "created_us": t,
               "expires_us": body.expires_at_us, "updated_us": t}

        def refuse(reason: str, key: Key | None, state: b.BudgetState | None) -> None:
            scope, sid = (key[0], key[1]) if key else (body.scope, body.scope_id)
            self._emit_alert(ev, BudgetAlert(
                scope=scope, scope_id=sid, budget_kind=body.budget_kind, alert="reservation_refused",
                window_start_us=max(0, state.window_start_us) if state else 0,
                allocation=state.allocation if state else 0, consumed=state.consumed if state else 0,
                amount=body.amount, reason=reason))
            if rkey not in self.reservations:
                self.reservations[rkey] = {**row, "reason": reason}
                self.dirty_res.add(rkey)

        if rkey in self.reservations:
            refuse("duplicate_id", None, None)
            return
        if not self._may_reserve(ev.signer_id, body.scope, body.scope_id, t):
            refuse("not_permitted", None, None)
            return
        if not chain:
            refuse("not_budgeted", None, None)
            return
        if body.expires_at_us <= t:
            refuse("expired", None, None)
            return
        self._advance(ev, chain)
        self._reallocate_if_short(ev, chain, body.amount)
        levels = [(self.states[k], self.policies[k]) for k in chain]
        ttl = min(body.expires_at_us - t, MAX_BUDGET_INTERVAL_US)
        res = b.reserve_chain(levels, rid, body.amount, t, ttl)
        for key, state in zip(chain, res.states, strict=True):
            self.states[key] = state
            self._touch(key, t)
        self._alerts(ev, res.alerts)
        d = res.decision
        if not d.admitted:
            key = (d.scope.level.value, d.scope.id, body.budget_kind)
            refuse(d.reason.value, key, self.states[key])
            return
        held = self.states[chain[0]].reservation(rid)
        assert held is not None  # admitted: every level holds it
        self.reservations[rkey] = {**row, "status": "reserved", "reason": d.reason.value,
                                   "expires_us": held.expires_us}
        self.dirty_res.add(rkey)
        self.holds[rid] = rkey

    def _may_reserve(self, agent: str, scope: str, scope_id: str, t: int) -> bool:
        """Whether ``agent`` may name ``scope``/``scope_id`` in a reservation: its own agent scope, the org
        or project its operator-signed registration names, or a scope the operator granted it ``reserve``
        on (at the reserve's event time). A task scope is never its own (nothing on the log ties an agent
        to a task but its own claim), so it needs a grant. Context levels of the reservation
        (org/project/task) are held as usage counts them: by the event's context, the same claim a usage
        event may make."""
        if scope == ScopeLevel.AGENT.value and scope_id == agent:
            return True
        org, project = self.signers.get(agent, (None, None))
        if (scope, scope_id) in ((ScopeLevel.ORG.value, org), (ScopeLevel.PROJECT.value, project)):
            return True
        return self.grants.has(agent, RESERVE, f"{scope}:{scope_id}", t)

    def _outcome(self, ev: Event, body: Outcome) -> None:
        if body.confidence_milli is None:
            return  # a result without a confidence keeps the last one (ledger.economics.reallocation.next_confidence)
        conf = body.confidence_milli / MILLI
        for key in sorted(k for k in self.states if k[0] == "agent" and k[1] == ev.signer_id):
            self.states[key] = b.record_confidence(self.states[key], conf)
            self._touch(key, ev.event_time_us)

    # ------------------------------------------------------------ reallocation

    def _reallocate_if_short(self, ev: Event, chain: list[Key], amount: int) -> None:
        """Before a level refuses at its hard limit, let its siblings lend (atomic; see module doc)."""
        t = ev.event_time_us
        for key in chain:
            state, policy = self.states[key], self.policies[key]
            if state.consumed + state.reserved + amount <= policy.hard_cap(state.allocation):
                continue  # fits under the hard cap: no refusal possible at the limit
            if policy.hard_limit_action in b.ADMITS_OVER_CEILING:
                continue  # admitted whatever the amount: this level never refuses at its hard limit
            d = b.admission(state, policy, amount, t)
            if d.admitted or d.reason is not b.Reason.HARD_LIMIT:
                continue
            parent = self.parent.get(key)
            siblings = sorted(k for k in self.states if k[0] == key[0] and k[2] == key[2] and
                              self.parent.get(k) == parent)
            if len(siblings) < 2:
                continue
            self._advance(ev, siblings)
            out = b.reallocate([(self.states[k], self.policies[k]) for k in siblings], key[1], amount, t)
            if isinstance(out, Refusal):
                continue
            for k, s in zip(siblings, out.states, strict=True):
                self.states[k] = s
                self._touch(k, t)
            self._alerts(ev, out.alerts)
            window = self.states[key].window_start_us
            for tr in out.transfers:
                self.n += 1
                tid = f"budgets:{ev.event_id}:{self.n}"
                transfer = BudgetTransfer(budget_kind=key[2], donor_id=tr.donor, recipient_id=tr.recipient,
                                          amount=tr.amount, window_start_us=max(0, window),
                                          reason=f"{key[0]} shortfall")
                self.fx.derived.append(Derived(topic="alerts", event_time_us=t, idempotency_key=tid, body=transfer))
                self.transfer_rows.append({
                    "transfer_id": tid, "event_time_us": t, "cause_event_id": ev.event_id, "scope": key[0],
                    "budget_kind": key[2], "donor_id": tr.donor, "recipient_id": tr.recipient, "amount": tr.amount,
                    "window_start_us": window})

    # ------------------------------------------------------------ helpers

    def _ids(self, ev: Event) -> dict[str, str | None]:
        c = ev.context
        return {"org": c.org, "project": c.project, "task": c.task, "agent": ev.agent}

    def _budgeted(self, ids: dict[str, str | None], kind: str) -> list[Key]:
        """The levels of ``ids`` that have a ``kind`` budget, outermost first."""
        if kind not in self.kinds:
            return []
        return [(lvl, sid, kind) for lvl in LEVELS
                if (sid := ids.get(lvl)) is not None and (lvl, sid, kind) in self.policies]

    def _chain(self, ev: Event, kind: str) -> list[Key]:
        """The budgeted levels of the event's hierarchy for ``kind`` (outermost first), each noted with the
        parent scope this event shows it under. Memoised: most events repeat a few hierarchies."""
        if kind not in self.kinds:
            return []
        c = ev.context
        memo_key = (c.org, c.project, c.task, ev.agent, kind)
        levels = self.chains.get(memo_key)
        if levels is None:
            ids = self._ids(ev)
            levels = tuple((key, _parent_of(ids, key)) for key in self._budgeted(ids, kind))
            if len(self.chains) >= CHAIN_MEMO_ENTRIES:
                self.chains.clear()
            self.chains[memo_key] = levels
        for key, up in levels:
            if self.parent.get(key) != up:
                self.parent[key] = up
                self.dirty.add(key)
        return [key for key, _ in levels]

    def _note_parents(self, ids: dict[str, str | None], kind: str, chain: list[Key]) -> None:
        for key in chain:
            up = _parent_of(ids, key)
            if self.parent.get(key) != up:
                self.parent[key] = up
                self.dirty.add(key)

    def _advance(self, ev: Event, keys: list[Key]) -> None:
        """Bring these budgets to the event's time first, so window resets (RESUMED alerts) and
        expired reservations are seen and recorded (the operations would drop them silently)."""
        t = ev.event_time_us
        for key in keys:
            state, policy = self.states[key], self.policies[key]
            if not state.reservations and policy.window_start(t) <= state.window_start_us:
                continue  # same window, nothing to expire: the common case, kept cheap
            adv = b.advance(state, policy, t)
            if adv.state is not self.states[key]:
                new = adv.state
                if new.window_start_us != state.window_start_us:
                    # a new window: the allocation is the policy's, scaled by the agent's reputation now
                    new = replace(new, allocation=self._allocation(key, t))
                self.states[key] = new
                self._touch(key, t)
            self._alerts(ev, adv.alerts)
            self._expired(adv.expired, t)

    def _touch(self, key: Key, t: int) -> None:
        self.updated[key] = max(self.updated.get(key, t), t)
        self.dirty.add(key)

    def _set_res(self, rkey: ResKey, t: int, **changes: Any) -> None:
        self.reservations[rkey] = {**self.reservations[rkey], **changes, "updated_us": t}
        self.dirty_res.add(rkey)

    def _expired(self, expired: tuple[b.Reservation, ...], t: int) -> None:
        for r in expired:
            rkey = self.holds.get(r.reservation_id)
            if rkey is not None and self.reservations[rkey]["status"] == "reserved":
                self._set_res(rkey, t, status="expired")

    def _alerts(self, ev: Event, alerts: tuple[b.Alert, ...]) -> None:
        for a in alerts:
            name = a.kind.value
            if a.kind is b.AlertKind.BREACH and a.reason is b.Reason.CONFIDENCE_GATE:
                name = "gated"
            self._emit_alert(ev, BudgetAlert(
                scope=a.scope.level.value, scope_id=a.scope.id, budget_kind=a.budget_kind.value, alert=name,
                window_start_us=max(0, a.window_start_us), allocation=a.allocation, consumed=a.consumed,
                amount=a.amount, reason=a.reason.value if a.reason else ""))

    def _emit_alert(self, ev: Event, body: BudgetAlert) -> None:
        self.n += 1
        aid = f"budgets:{ev.event_id}:{self.n}"
        self.fx.derived.append(Derived(topic="alerts", body=body, event_time_us=ev.event_time_us, idempotency_key=aid))
        self.alert_rows.append({
            "alert_id": aid, "event_time_us": ev.event_time_us, "cause_event_id": ev.event_id, "agent_id": ev.agent,
            "scope": body.scope, "scope_id": body.scope_id, "budget_kind": body.budget_kind, "alert": body.alert,
            "reason": body.reason, "window_start_us": body.window_start_us, "allocation": body.allocation,
            "consumed": body.consumed, "amount": body.amount})

    def _allocation(self, key: Key, t: int) -> int:
        """A window's starting allocation: the policy's, and for an agent's budget scaled by seed 002's
        reputation multiplier of the agent at ``t`` (ledger.economics.reputation, rounded down)."""
        policy = self.policies[key]
        if key[0] != "agent":
            self.multiplier[key] = "1.0"
            return policy.allocation
        r = self.trust.score(key[1], t)
        self.multiplier[key] = str(r.multiplier)
        return apply_multiplier(policy.allocation, r.multiplier)

    def _count_trust(self, te: TrustEvent) -> None:
        self.trust.add(te)
        self.trust_rows.append({"event_id": te.event_id, "event_time_us": te.event_time_us, "issuer": te.issuer,
                                "subject": te.subject, "dimension": te.dimension.value,
                                "value_milli": round(te.value * MILLI), "half_life_us": te.half_life_us})

    def _add_price(self, ev: Event, body: PriceSet | PriceMatch) -> None:
        try:
            if isinstance(body, PriceSet):
                row, view = self.book.apply_price_set(body, ev.event_time_us, ev.event_id).row(), PRICES.name
            else:
                row, view = self.book.apply_price_match(body, ev.event_time_us).row(), PRICE_MATCHES.name
        except LedgerError:
            return  # refused by the book (rates out of range, a bad clause, the book is full): no entry, no row
        self.price_rows[view].append(row)

    def _row(self, key: Key) -> dict[str, Any]:
        state, policy = self.states[key], self.policies[key]
        v = b.view(state, policy)
        parent = self.parent.get(key, (None, None))
        return {
            "scope": key[0], "scope_id": key[1], "budget_kind": key[2], "unit": state.kind.unit,
            "parent_scope": parent[0], "parent_id": parent[1],
            "window_start_us": v.window_start_us, "window_end_us": v.window_end_us, "allocation": v.allocation,
            "consumed": v.consumed, "reserved": v.reserved, "remaining": v.remaining, "available": v.available,
            "utilisation": v.utilisation, "status": v.status.value, "emergency_used": v.emergency_used,
            "throttle_level": v.throttle_level, "throttle_delay_us": b.backoff_delay_us(v.throttle_level),
            "suspended": v.suspended,
            "last_confidence_milli": None if state.last_confidence is None else round(state.last_confidence * MILLI),
            "unpriced_calls": self.unpriced.get(key, 0), "updated_us": self.updated.get(key, v.window_start_us),
            "reputation_multiplier": self.multiplier.get(key, "1.0"),
            **policy_columns(policy),
        }


# per view, the columns whose values make a row's owner key on a shard (the primary key, or what identifies an
# appended row); views absent here are made alike from control on every shard (prices, signers, grants): shard 0's
_ROW_KEYS: dict[str, tuple[str, ...]] = {
    BUDGETS.name: ("scope", "scope_id", "budget_kind"), ALERTS.name: ("alert_id",),
    TRANSFERS.name: ("transfer_id",), RESERVATIONS.name: ("agent_id", "reservation_id"),
    BACKFILL.name: ("event_id", "scope", "scope_id", "budget_kind"), TRUST.name: ("event_id",),
    TRUST_DECAY.name: ("subject", "dimension", "half_life_us"),
}


def _parent_of(ids: dict[str, str | None], key: Key) -> Parent:
    """The nearest enclosing level of ``key`` that ``ids`` names: (level, id), or (None, None) at the top."""
    i = LEVELS.index(key[0])
    return next(((lvl, sid) for lvl in reversed(LEVELS[:i]) if (sid := ids.get(lvl)) is not None), (None, None))


def _rows(query: Callable[..., list[tuple[Any, ...]]], view: View) -> list[dict[str, Any]]:
    names = view.public_columns
    sql = f"SELECT {', '.join(names)} FROM {view.name}"  # noqa: S608  (names from the view definition)
    return [dict(zip(names, r, strict=True)) for r in query(sql)]


__all__ = ["ALERTS", "BUDGETS", "PRICES", "RESERVATIONS", "TRANSFERS", "Budgets"]
