"""The allocations processor: prices every LLM call and every interaction, and splits each interaction's cost by
each configured method.

Inputs: control events (``price_set``, ``price_match``, ``allocation_rule``), agent ``interaction`` events and
``action`` events that carry an LLM call's usage.
Outputs: the views below, and one derived ``allocation`` event per (interaction, method) on
``<prefix>.allocations``, signed by ``processor.allocations`` (by ``processor.allocations.shard-I-of-N`` when
sharded, see below), carrying the method's inputs (the rates used on each side, the four flows' tokens, the
method's parameters) so anyone can recompute it. Its idempotency key is
``allocation:<interaction event id>:<method>``: produced once, whatever crashes.

Semantics (all from event time; never the wall clock):

* **Prices.** The one price-in-force rule of ``ledger.economics.pricing`` (a ``PriceBook`` built from
  the ``price_set`` events in log order): a price is in force from ``max(effective_from_us, its own
  event time)``, never retroactive, so an allocation once issued stays right and a replay (which reads
  every control event first) prices each interaction exactly as the live run did. For one model, the
  entry with the latest start at or before the interaction's event time applies; equal starts: the
  later one on the log. A back-dated what-if is ``tokenledger reprice``.
* **Every call's cost.** ``llm_calls`` has one row per LLM call: an action with usage (its cost by
  ``ledger.economics.pricing.usage_cost`` on the line ``PriceBook.quote`` picks: the model resolved by the
  book's match rules, the service tier the call reports, the prompt-size tier its input reaches) and each
  side of an interaction (the side's two flows, priced as ``interactions`` prices them). The same function
  and book as budgets, ``report`` and ``reprice``: one cost path.
* **Unknown model.** A call or an interaction whose model has no price in force (no
  fallback to the shipped book: it enters only as control events) is never
  priced at $0: it goes to the ``unpriced`` view with the reason code ``unknown_model`` and the evidence
  (provider, model, event time), and no allocation is made. Processing continues. A ``price_set`` the
  book refuses (its rates out of range, or past ``MAX_PRICE_BOOK_ENTRIES``) changes nothing.
* **Rules.** An ``allocation_rule`` (by ``rule_id``; a later version of the same id replaces it from its
  own start, same start rule as prices) applies to interactions whose context matches its ``org`` and
  ``project`` (None = any). Each enabled matching rule contributes its method with its params (strings
  on the wire, parsed per method: micro-USD integers, ``alpha`` as a decimal, ``no_surplus_fallback`` a
  method name). Two matching rules naming one method: the more specific scope wins (project > org >
  any), then the smaller rule id. When no enabled rule matches, ``DEFAULT_METHODS`` apply.
* **Bad rule parameters / no Nash surplus.** That (interaction, method) goes to ``unpriced`` with the
  reason; the interaction's other methods are still allocated.

Conservation, checked by the tests on the views: for every interaction and method,
requestor_pays + responder_pays = total = the four flow costs = incurred by both sides.

Sharding (``tokenledger run allocations --instances N``, through ``processors.runtime.exchange``). The owner key of
every row is an agent: ``interactions``, ``allocations`` and ``unpriced`` rows by ``requestor_id`` (for a call: who
made it), ``llm_calls`` and ``cost_discrepancies`` rows by ``agent_id`` (an interaction's two side rows by their
two agents), ``agent_costs`` rows by ``agent_id``; each derived ``allocation`` event by its ``requestor_id``, so
exactly one shard (the requestor's) signs it, as ``processor.allocations.shard-I-of-N`` (a processor key, which
settlements' verifier accepts like any ``processor.*`` signer). ``prices``, ``price_matches`` and
``allocation_rules`` come from control alone, alike on every shard: shard 0 keeps them. Routes: an action with usage
to its agent (``Event.agent``); an interaction to its requestor AND its responder (the responder's ``llm_calls`` row
and ``agent_costs`` totals change too); nothing else (control reaches every shard by itself). It is exact because
no decision reads another key's state: a cost is a function of the event and the price book and rules, which every
shard folds whole from control in the log's one order; ``agent_costs`` of (agent, method) are sums over the
interactions of that agent, all of which reach its owner, in log order. A shard also sums the other party's
totals of the interactions it folds; those partial sums only make rows it drops (``row_owner``) and are never read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pyarrow as pa

from ledger.economics.allocation import NASH_BARGAINING, REQUESTOR_PAYS, SHAPLEY, allocate
from ledger.economics.metering import InteractionFlows, MeteredInteraction, meter_interaction
from ledger.economics.pricing import (
    PRICE_MATCH_ROW_COLUMNS,
    PRICE_ROW_COLUMNS,
    ModelPrice,
    PriceBook,
    PriceInForce,
    UsageCost,
    aggregate_shape,
    price_book_from_rows,
    usage_cost,
)
from ledger.errors import LedgerError, ValidationError
from ledger.limits import COST_DISCREPANCY_FLOOR_MICROS, COST_DISCREPANCY_PERMILLE, MAX_ALLOCATIONS_DATA_RECORDS
from ledger.sources.attribution import IO_SPLIT_UNKNOWN, LABEL_IO_SPLIT, estimate_cost_micros
from ledger.wire.events import Action, AllocationRule, Interaction, LlmUsage, PriceMatch, PriceSet
from ledger.wire.events import Allocation as AllocationEvent
from processors.runtime.processor import (
    BATCH,
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

# The methods applied when no enabled allocation rule matches an interaction: who asked pays (the
# cash view), and the Shapley split with its documented defaults (the fair-share view).
Params = tuple[tuple[str, str], ...]  # a method's parameters as on the wire: sorted (key, text) pairs
DEFAULT_METHODS: tuple[tuple[str, str, Params], ...] = (
    ("default", REQUESTOR_PAYS, ()),
    ("default", SHAPLEY, ()),
)
_INT_PARAMS = frozenset({"standalone_cost_a", "standalone_cost_b", "value_a", "value_b", "disagreement_a",
                         "disagreement_b"})
UNPRICED_REASON_CHARS = 1024  # characters of an error message kept in the unpriced view

INTERACTIONS = View(
    name="interactions", doc="Every priced interaction: the four flows with their tokens and cost, per side.",
    columns=(
        Column("event_id", "VARCHAR", "the interaction event's id"),
        Column("interaction_id", "VARCHAR", "the interaction's own id"),
        Column("event_time", "TIMESTAMP", "event time (UTC)"),
        Column("event_time_us", "BIGINT", "event time, microseconds since the Unix epoch"),
        Column("requestor_id", "VARCHAR", "who asked (the signer)"),
        Column("responder_id", "VARCHAR", "who answered"),
        Column("org", "VARCHAR", "context: organisation"),
        Column("project", "VARCHAR", "context: project"),
        Column("requestor_provider", "VARCHAR", "requestor's provider"),
        Column("requestor_model", "VARCHAR", "requestor's model"),
        Column("responder_provider", "VARCHAR", "responder's provider"),
        Column("responder_model", "VARCHAR", "responder's model"),
        Column("requestor_price_from_us", "BIGINT", "start of the requestor's price-book entry used"),
        Column("responder_price_from_us", "BIGINT", "start of the responder's price-book entry used"),
        Column("requestor_rates", "VARCHAR", "requestor's rates used, micro-USD/MTok: input/output/cache_read"),
        Column("responder_rates", "VARCHAR", "responder's rates used, micro-USD/MTok: input/output/cache_read"),
        Column("request_output_tokens", "BIGINT", "flow 1: request written by the requestor"),
        Column("request_input_tokens", "BIGINT", "flow 2: request read by the responder"),
        Column("request_input_cached_tokens", "BIGINT", "flow 2: part of it read from cache"),
        Column("response_output_tokens", "BIGINT", "flow 3: response written by the responder"),
        Column("response_input_tokens", "BIGINT", "flow 4: response read by the requestor"),
        Column("response_input_cached_tokens", "BIGINT", "flow 4: part of it read from cache"),
        Column("request_output_micros", "BIGINT", "flow 1 cost, micro-USD (requestor's output rate)"),
        Column("request_input_micros", "BIGINT", "flow 2 cost, micro-USD (responder's input / cache-read rate)"),
        Column("response_output_micros", "BIGINT", "flow 3 cost, micro-USD (responder's output rate)"),
        Column("response_input_micros", "BIGINT", "flow 4 cost, micro-USD (requestor's input / cache-read rate)"),
        Column("total_micros", "BIGINT", "the four flow costs, micro-USD"),
        Column("requestor_incurred_micros", "BIGINT", "flows 1 + 4: what the requestor's own calls cost"),
        Column("responder_incurred_micros", "BIGINT", "flows 2 + 3: what the responder's own calls cost"),
        BATCH,
    ),
)
ALLOCATIONS = View(
    name="allocations", doc="One row per interaction and allocation method: who pays what, and the transfer.",
    columns=(
        Column("interaction_event_id", "VARCHAR", "the interaction event's id"),
        Column("interaction_id", "VARCHAR", "the interaction's own id"),
        Column("event_time_us", "BIGINT", "the interaction's event time, microseconds"),
        Column("requestor_id", "VARCHAR", "who asked"),
        Column("responder_id", "VARCHAR", "who answered"),
        Column("method", "VARCHAR", "allocation method (a Nash fallback names the method actually used)"),
        Column("rule_id", "VARCHAR", "the allocation rule that asked for it ('default' = the default set)"),
        Column("total_micros", "BIGINT", "the interaction's total cost, micro-USD"),
        Column("requestor_pays_micros", "BIGINT", "requestor's share, micro-USD"),
        Column("responder_pays_micros", "BIGINT", "responder's share, micro-USD (shares sum to the total)"),
        Column("net_transfer_micros", "BIGINT", "cash one side owes the other so each has paid its share"),
        Column("direction", "VARCHAR", "requestor_to_responder | responder_to_requestor | none"),
        Column("params_json", "VARCHAR", "the method's inputs (rates, tokens, parameters) as JSON"),
        BATCH,
    ),
)
AGENT_COSTS = View(
    name="agent_costs", doc="Per agent and method: cost its own calls incurred vs the share allocated to it.",
    mode="snapshot", primary_key=("agent_id", "method"),
    columns=(
        Column("agent_id", "VARCHAR", "the agent"),
        Column("method", "VARCHAR", "allocation method"),
        Column("interactions", "BIGINT", "interactions it took part in that this method allocated"),
        Column("incurred_micros", "BIGINT", "what its own side of those interactions cost, micro-USD"),
        Column("allocated_micros", "BIGINT", "its share under the method, micro-USD"),
        Column("balance_micros", "BIGINT", "allocated - incurred: positive = it owes others, negative = is owed"),
    ),
)
LLM_CALLS = View(
    name="llm_calls",
    doc="Every LLM call priced: actions with usage (one row) and interactions (one row per side), the model as "
        "reported and as priced, tokens and cost per kind, the price_set used, and the provider's own cost.",
    columns=(
        Column("event_id", "VARCHAR", "the action or interaction event"),
        Column("side", "VARCHAR", "call (an action) | requestor | responder (the sides of an interaction)"),
        Column("event_time_us", "BIGINT", "event time, microseconds"),
        Column("agent_id", "VARCHAR", "who made the call (the signer; for an interaction, that side's agent)"),
        Column("org", "VARCHAR", "context label"),
        Column("project", "VARCHAR", "context label"),
        Column("task", "VARCHAR", "context label"),
        Column("run", "VARCHAR", "context label"),
        Column("stage", "VARCHAR", "context label"),
        Column("provider", "VARCHAR", "provider as reported"),
        Column("model", "VARCHAR", "model id as reported"),
        Column("priced_provider", "VARCHAR", "the provider whose price line was used"),
        Column("priced_model", "VARCHAR", "the model the id resolved to"),
        Column("matched_via", "VARCHAR", "exact | lower-case | prefix | rule | dated (PriceBook.resolve); an "
                                          "interaction side: exact | matched"),
        Column("service_tier", "VARCHAR", "service tier as reported ('' = standard)"),
        Column("priced_tier", "VARCHAR", "service tier priced ('' when the model has no line for the reported one)"),
        Column("above_input_tokens", "BIGINT", "the prompt-size tier applied (0 = base rates)"),
        Column("input_tokens", "BIGINT", "input tokens, cache reads and writes included"),
        Column("output_tokens", "BIGINT", "output tokens, reasoning included"),
        Column("cache_read_tokens", "BIGINT", "part of input read from a cache"),
        Column("cache_write_tokens", "BIGINT", "part of input written to a cache (all lifetimes)"),
        Column("cache_write_1h_tokens", "BIGINT", "part of the cache writes with a 1-hour lifetime"),
        Column("reasoning_tokens", "BIGINT", "part of output spent reasoning"),
        Column("cost_micros", "BIGINT", "the call's cost, micro-USD: the sum of the parts below"),
        Column("estimate", "BOOLEAN", "true: the telemetry had no input/output split (label io_split=unknown); the "
                                      "cost is the blended estimate of ledger.sources.attribution on the same line, "
                                      "all in input_micros"),
        Column("input_micros", "BIGINT", "uncached input"),
        Column("cache_read_micros", "BIGINT", "cache reads"),
        Column("cache_write_micros", "BIGINT", "5-minute cache writes"),
        Column("cache_write_1h_micros", "BIGINT", "1-hour cache writes"),
        Column("output_micros", "BIGINT", "output that is not reasoning"),
        Column("reasoning_micros", "BIGINT", "reasoning"),
        Column("request_micros", "BIGINT", "per-request fee"),
        Column("price_event_id", "VARCHAR", "the price_set event whose line priced the call"),
        Column("provider_cost_micros", "BIGINT", "the cost the provider or gateway reported, if any"),
        Column("cost_difference_micros", "BIGINT", "cost_micros - provider_cost_micros (NULL when none reported)"),
        BATCH,
    ),
)
COST_DISCREPANCIES = View(
    name="cost_discrepancies",
    doc="LLM calls whose provider- or gateway-reported cost differs from the ledger's by more than "
        "COST_DISCREPANCY_PERMILLE of the larger (and COST_DISCREPANCY_FLOOR_MICROS): a wrong price, a missed "
        "discount, or a bill to question.",
    columns=(
        Column("event_id", "VARCHAR", "the call's event"),
        Column("event_time_us", "BIGINT", "event time, microseconds"),
        Column("agent_id", "VARCHAR", "who made the call"),
        Column("provider", "VARCHAR", "provider as reported"),
        Column("model", "VARCHAR", "model id as reported"),
        Column("priced_model", "VARCHAR", "the model the ledger priced it as"),
        Column("cost_micros", "BIGINT", "the ledger's cost, micro-USD"),
        Column("provider_cost_micros", "BIGINT", "the reported cost, micro-USD"),
        Column("difference_micros", "BIGINT", "cost_micros - provider_cost_micros"),
        Column("difference_permille", "BIGINT", "|difference| per thousand of the larger cost, rounded down"),
        Column("price_event_id", "VARCHAR", "the price_set event whose line priced the call"),
        BATCH,
    ),
)
UNPRICED = View(
    name="unpriced",
    doc="LLM calls and interactions (or one method of one) that could not be priced or allocated, and why; "
        "never $0.",
    columns=(
        Column("event_id", "VARCHAR", "the call's or the interaction's event id"),
        Column("interaction_id", "VARCHAR", "the interaction's own id (NULL for a call)"),
        Column("event_time_us", "BIGINT", "its event time, microseconds"),
        Column("requestor_id", "VARCHAR", "who asked (for a call: who made it)"),
        Column("responder_id", "VARCHAR", "who answered (NULL for a call)"),
        Column("source", "VARCHAR", "call | interaction"),
        Column("provider", "VARCHAR", "for a call: the provider as reported"),
        Column("model", "VARCHAR", "for a call: the model id as reported"),
        Column("stage", "VARCHAR", "pricing (no price in force) | allocation (one method failed)"),
        Column("method", "VARCHAR", "the method that failed (NULL when pricing failed)"),
        Column("code", "VARCHAR", "reason code, e.g. unknown_model, economics, invalid_field"),
        Column("reason", "VARCHAR", "human-readable reason"),
        Column("evidence_json", "VARCHAR", "the evidence (provider, model, event time, ...) as JSON"),
        BATCH,
    ),
)
PRICES = View(
    name="prices", doc="Every price-book entry read from price_set control events, with when it is in force.",
    columns=(*(Column(*c) for c in PRICE_ROW_COLUMNS), BATCH),
)
PRICE_MATCHES = View(
    name="price_matches", doc="Every model-matching rule read from price_match control events, with when it applies.",
    columns=(*(Column(*c) for c in PRICE_MATCH_ROW_COLUMNS), BATCH),
)
ALLOCATION_RULES = View(
    name="allocation_rules", doc="Every allocation rule version read from allocation_rule control events.",
    columns=(
        Column("rule_id", "VARCHAR", "rule id (a later version of the same id replaces it)"),
        Column("method", "VARCHAR", "allocation method"),
        Column("params_json", "VARCHAR", "the method's parameters as JSON (strings, as on the wire)"),
        Column("org", "VARCHAR", "scope: organisation (NULL = any)"),
        Column("project", "VARCHAR", "scope: project (NULL = any)"),
        Column("enabled", "BOOLEAN", "false switches the rule off from in_force_from_us"),
        Column("in_force_from_us", "BIGINT", "max(effective_from_us, the event's time)"),
        Column("seq", "BIGINT", "order read (ties: the later version wins)"),
        BATCH,
    ),
)


_PRICE_ROWS_SQL = f"SELECT {', '.join(PRICES.public_columns)} FROM prices"  # noqa: S608  (fixed names)
_MATCH_ROWS_SQL = f"SELECT {', '.join(PRICE_MATCHES.public_columns)} FROM price_matches"  # noqa: S608


@dataclass(frozen=True)
class RuleVersion:
    rule_id: str
    method: str
    params: Params
    org: str | None
    project: str | None
    enabled: bool
    in_force_from_us: int
    seq: int


# A price lookup: (provider, model, event time) -> the entry in force with its start; raises EconomicsError.
PriceLookup = Callable[[str, str, int], PriceInForce]


def rates_text(p: ModelPrice) -> str:
    return f"{p.input}/{p.output}/{p.cache_read}"


def method_params(method: str, params: Params) -> dict[str, Any]:
    """Wire params (strings) to the method's typed parameters; a bad value is a ValidationError naming it."""
    out: dict[str, Any] = {}
    for key, text in params:
        if key in _INT_PARAMS:
            try:
                out[key] = int(text)
            except ValueError:
                raise ValidationError(f"params.{key}", text, "must be a whole number of micro-USD") from None
        elif key == "alpha":
            try:
                out[key] = Fraction(text)
            except (ValueError, ZeroDivisionError):
                raise ValidationError("params.alpha", text, "must be a decimal between 0 and 1") from None
        else:
            out[key] = text  # e.g. no_surplus_fallback; unknown keys are refused by ``allocate``
    return out


def metered_params(metered: MeteredInteraction, req_from: int, resp_from: int) -> dict[str, str]:
    """What anyone needs to recompute the four flow costs: rates used on each side and token counts."""
    f = metered.flows
    rp, sp = metered.requestor_price, metered.responder_price
    return {
        "requestor_price": f"{rp.provider}/{rp.model}", "requestor_price_from_us": str(req_from),
        "requestor_rates": rates_text(rp), "responder_price": f"{sp.provider}/{sp.model}",
        "responder_price_from_us": str(resp_from), "responder_rates": rates_text(sp),
        "tokens": (f"{f.request_output.tokens},{f.request_input.tokens}:{f.request_input.cached_tokens},"
                   f"{f.response_output.tokens},{f.response_input.tokens}:{f.response_input.cached_tokens}"),
        "rates_unit": "micro-USD per MTok: input/output/cache_read",
    }


def _jsonable(v: Any) -> Any:
    return v if v is None or isinstance(v, (int, str, bool)) else str(v)


class Allocations(Processor):
    name = "allocations"
    derived_topics = ("allocations",)
    # sharded through the exchange (processors.runtime.exchange; the module docstring's "Sharding"): rows, and
    # allocation events, are owned by an agent; an interaction goes to both of its agents' shards
    exchanges = True
    control_tables = ("prices", "price_matches", "allocation_rules")
    doc = "prices interactions (price book from control events) and splits each cost by the configured methods"
    topics = ("control", "events")
    data_records_per_poll = MAX_ALLOCATIONS_DATA_RECORDS
    views = (INTERACTIONS, LLM_CALLS, COST_DISCREPANCIES, ALLOCATIONS, AGENT_COSTS, UNPRICED, PRICES, PRICE_MATCHES,
             ALLOCATION_RULES)

    def __init__(self) -> None:
        self.prices = PriceBook()  # from price_set events only (the shipped book is on the log as such)
        self.rules: dict[str, Timeline[RuleVersion]] = {}
        self.rule_seq = 0
        self.costs: dict[tuple[str, str], list[int]] = {}  # (agent, method) -> [interactions, incurred, allocated]
        self.produce_derived = True

    # ------------------------------------------------------------ sharding (processors.runtime.exchange)

    def route(self, item: Item) -> tuple[str, ...]:
        ev = item.decoded.event
        body = ev.body
        if isinstance(body, Interaction):
            return (body.requestor_id, body.responder_id)  # both sides' llm_calls rows and agent_costs change
        if isinstance(body, Action) and body.usage is not None:
            return (ev.agent,)
        return ()

    def row_owner(self, table: str, row: dict[str, Any]) -> str | None:
        if table in (INTERACTIONS.name, ALLOCATIONS.name, UNPRICED.name):
            return str(row["requestor_id"])
        if table in (LLM_CALLS.name, COST_DISCREPANCIES.name, AGENT_COSTS.name):
            return str(row["agent_id"])
        return None  # prices, price_matches, allocation_rules: from control, alike on every shard

    def derived_owner(self, derived: Derived) -> str | None:
        body = derived.body
        assert isinstance(body, AllocationEvent)  # the only event this processor derives
        return body.requestor_id

    # ------------------------------------------------------------------ state

    def restore(self, query: Any) -> None:
        names, match_names = PRICES.public_columns, PRICE_MATCHES.public_columns  # PriceInForce/RuleInForce.row()
        self.prices = price_book_from_rows([dict(zip(names, r, strict=True)) for r in query(_PRICE_ROWS_SQL)],
                                           [dict(zip(match_names, r, strict=True)) for r in query(_MATCH_ROWS_SQL)])
        for rid, method, pj, org, project, enabled, start, seq in query(
                "SELECT rule_id, method, params_json, org, project, enabled, in_force_from_us, seq "
                "FROM allocation_rules ORDER BY seq"):
            params = tuple(sorted(json.loads(pj).items()))
            self.rules.setdefault(rid, Timeline()).add(start, seq, RuleVersion(rid, method, params, org, project,
                                                                               enabled, start, seq))
            self.rule_seq = max(self.rule_seq, seq)
        for agent, method, n, inc, alloc in query(
                "SELECT agent_id, method, interactions, incurred_micros, allocated_micros FROM agent_costs"):
            self.costs[(agent, method)] = [n, inc, alloc]

    def price_lookup(self) -> PriceLookup:
        """How prices are found (the ``reprice`` side processor swaps this for an alternative book)."""
        # price_set / price_match events change self.prices (in place, or a restore replaces it): look it up at
        # call time
        return lambda provider, model, t_us: self.prices.in_force_at(provider, model, t_us)

    def methods_for(self, t_us: int, org: str | None, project: str | None) -> list[tuple[str, str, Params]]:
        """(rule_id, method, params) to apply to an interaction at ``t_us`` in this context, by method."""
        chosen: dict[str, tuple[int, str, Params]] = {}
        for rid in sorted(self.rules):
            v: RuleVersion | None = self.rules[rid].at(t_us)
            if v is None or not v.enabled:
                continue
            if (v.org is not None and v.org != org) or (v.project is not None and v.project != project):
                continue
            specificity = 2 if v.project is not None else 1 if v.org is not None else 0
            best = chosen.get(v.method)
            if best is None or specificity > best[0]:  # rule ids ascend: an equal scope keeps the smaller id
                chosen[v.method] = (specificity, rid, v.params)
        if not chosen:
            return list(DEFAULT_METHODS)
        return [(rid, method, params) for method, (_, rid, params) in sorted(chosen.items())]

    # ------------------------------------------------------------------ fold

    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        fx = Effects()
        inter_rows: list[dict[str, Any]] = []
        alloc_rows: list[dict[str, Any]] = []
        unpriced: list[dict[str, Any]] = []
        price_rows: list[dict[str, Any]] = []
        match_rows: list[dict[str, Any]] = []
        call_rows: list[dict[str, Any]] = []
        discrepancies: list[dict[str, Any]] = []
        rule_rows: list[dict[str, Any]] = []
        touched: set[tuple[str, str]] = set()
        lookup = self.price_lookup()
        for it in items:
            ev = it.decoded.event
            body = ev.body
            if isinstance(body, Interaction):
                self._interaction(ev, body, lookup, inter_rows, alloc_rows, unpriced, touched, fx, call_rows)
            elif isinstance(body, Action) and body.usage is not None:
                self._call(ev, body.usage, call_rows, unpriced, discrepancies)
            elif isinstance(body, (PriceSet, PriceMatch)):
                self._price_event(ev, body, price_rows, match_rows)
            elif isinstance(body, AllocationRule):
                self.rule_seq += 1
                start = max(body.effective_from_us, ev.event_time_us)
                v = RuleVersion(body.rule_id, body.method, body.params, body.org, body.project, body.enabled,
                                start, self.rule_seq)
                self.rules.setdefault(body.rule_id, Timeline()).add(start, self.rule_seq, v)
                rule_rows.append({"rule_id": v.rule_id, "method": v.method,
                                  "params_json": json.dumps(dict(v.params), sort_keys=True), "org": v.org,
                                  "project": v.project, "enabled": v.enabled, "in_force_from_us": start,
                                  "seq": v.seq})
        for table, rows in (("interactions", inter_rows), ("llm_calls", call_rows),
                            ("cost_discrepancies", discrepancies), ("allocations", alloc_rows),
                            ("unpriced", unpriced),
                            ("prices", price_rows), ("price_matches", match_rows), ("allocation_rules", rule_rows)):
            if rows:
                cols = columns_of(rows)
                if table == "interactions":
                    cols["event_time"] = pa.array(cols["event_time_us"], type=pa.timestamp("us"))
                fx.append(table, cols)
        if touched:
            keys = sorted(touched)
            fx.upsert("agent_costs", {
                "agent_id": [a for a, _ in keys], "method": [m for _, m in keys],
                "interactions": [self.costs[k][0] for k in keys], "incurred_micros": [self.costs[k][1] for k in keys],
                "allocated_micros": [self.costs[k][2] for k in keys],
                "balance_micros": [self.costs[k][2] - self.costs[k][1] for k in keys]})
        return fx

    def _price_event(self, ev: Any, body: PriceSet | PriceMatch, price_rows: list[dict[str, Any]],
                     match_rows: list[dict[str, Any]]) -> None:
        try:
            if isinstance(body, PriceSet):
                price_rows.append(self.prices.apply_price_set(body, ev.event_time_us, ev.event_id).row())
            else:
                match_rows.append(self.prices.apply_price_match(body, ev.event_time_us).row())
        except LedgerError:
            return  # refused by the book (see the module docstring; a bad clause, a full book): no entry, no row

    def _call(self, ev: Any, u: LlmUsage, call_rows: list[dict[str, Any]], unpriced: list[dict[str, Any]],
              discrepancies: list[dict[str, Any]]) -> None:
        """One LLM call of an action (or an aggregate of many): its row in ``llm_calls``, or in ``unpriced`` with the
        reason."""
        t = ev.event_time_us
        requests, tier_input, counted = aggregate_shape(ev.body.operation, ev.context.labels, u.input_tokens)
        try:
            q = self.prices.quote(u.provider, u.model, t, service_tier=u.service_tier, input_tokens=tier_input)
            c = usage_cost(q.entry.price, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                           cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens,
                           reasoning_tokens=u.reasoning_tokens, cache_write_1h_tokens=u.cache_write_1h_tokens,
                           requests=requests)
        except LedgerError as e:
            unpriced.append(_unpriced({"event_id": ev.event_id, "interaction_id": None, "event_time_us": t,
                                       "requestor_id": ev.agent, "responder_id": None, "source": "call",
                                       "provider": u.provider, "model": u.model}, "pricing", None, e))
            return
        estimate = bool(ev.context.labels) and dict(ev.context.labels).get(LABEL_IO_SPLIT) == IO_SPLIT_UNKNOWN
        estimate = estimate or not counted
        if estimate:
            # one count, no split: the documented blend of this very line's rates (the report's run estimate)
            p = q.entry.price
            blended = estimate_cost_micros(u.input_tokens + u.output_tokens, u.model, rates=lambda _m: (p.input,
                                                                                                         p.output))
            assert blended is not None  # the lookup always answers
            c = UsageCost(price=p, uncached_input_tokens=u.input_tokens, plain_output_tokens=u.output_tokens,
                          uncached_input=blended, cache_read=0, cache_write=0, output=0, reasoning=0, total=blended)
        pc = u.provider_cost_micros
        call_rows.append({
            **_call_base(ev, "call", ev.agent, u.provider, u.model), "priced_provider": q.resolution.provider,
            "priced_model": q.resolution.model, "matched_via": q.resolution.via, "service_tier": u.service_tier,
            "priced_tier": q.service_tier, "above_input_tokens": q.above_input_tokens, "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens, "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens, "cache_write_1h_tokens": u.cache_write_1h_tokens,
            "reasoning_tokens": u.reasoning_tokens, "cost_micros": c.total, "estimate": estimate,
            "input_micros": c.uncached_input,
            "cache_read_micros": c.cache_read, "cache_write_micros": c.cache_write,
            "cache_write_1h_micros": c.cache_write_1h, "output_micros": c.output, "reasoning_micros": c.reasoning,
            "request_micros": c.request, "price_event_id": q.entry.event_id, "provider_cost_micros": pc,
            "cost_difference_micros": None if pc is None else c.total - pc})
        if pc is not None and (permille := _discrepancy_permille(c.total, pc)) is not None:
            discrepancies.append({
                "event_id": ev.event_id, "event_time_us": t, "agent_id": ev.agent, "provider": u.provider,
                "model": u.model, "priced_model": q.resolution.model, "cost_micros": c.total,
                "provider_cost_micros": pc, "difference_micros": c.total - pc, "difference_permille": permille,
                "price_event_id": q.entry.event_id})

    def _interaction(self, ev: Any, body: Interaction, lookup: PriceLookup, inter_rows: list[dict[str, Any]],
                     alloc_rows: list[dict[str, Any]], unpriced: list[dict[str, Any]],
                     touched: set[tuple[str, str]], fx: Effects, call_rows: list[dict[str, Any]]) -> None:
        t = ev.event_time_us
        base = {"event_id": ev.event_id, "interaction_id": body.interaction_id, "event_time_us": t,
                "requestor_id": body.requestor_id, "responder_id": body.responder_id}
        unpriced_base = {**base, "source": "interaction", "provider": None, "model": None}
        try:
            req = lookup(body.requestor_provider, body.requestor_model, t)
            resp = lookup(body.responder_provider, body.responder_model, t)
            req_from, req_price = req.in_force_from_us, req.price
            resp_from, resp_price = resp.in_force_from_us, resp.price
            metered = meter_interaction(InteractionFlows.from_interaction(body), requestor_price=req_price,
                                        responder_price=resp_price)
        except LedgerError as e:
            unpriced.append(_unpriced(unpriced_base, "pricing", None, e))
            return
        f = metered.flows
        call_rows.extend(_side_rows(ev, body, metered, req, resp))
        inter_rows.append({
            **base, "org": ev.context.org, "project": ev.context.project,
            "requestor_provider": body.requestor_provider, "requestor_model": body.requestor_model,
            "responder_provider": body.responder_provider, "responder_model": body.responder_model,
            "requestor_price_from_us": req_from, "responder_price_from_us": resp_from,
            "requestor_rates": rates_text(req_price), "responder_rates": rates_text(resp_price),
            "request_output_tokens": f.request_output.tokens, "request_input_tokens": f.request_input.tokens,
            "request_input_cached_tokens": f.request_input.cached_tokens,
            "response_output_tokens": f.response_output.tokens, "response_input_tokens": f.response_input.tokens,
            "response_input_cached_tokens": f.response_input.cached_tokens,
            "request_output_micros": metered.request_output.cost, "request_input_micros": metered.request_input.cost,
            "response_output_micros": metered.response_output.cost,
            "response_input_micros": metered.response_input.cost, "total_micros": metered.total,
            "requestor_incurred_micros": metered.requestor_incurred,
            "responder_incurred_micros": metered.responder_incurred})
        inputs = metered_params(metered, req_from, resp_from)
        for rule_id, method, params in self.methods_for(t, ev.context.org, ev.context.project):
            try:
                a = allocate(metered, method, **method_params(method, params))
            except LedgerError as e:
                unpriced.append(_unpriced(unpriced_base, "allocation", method, e))
                continue
            wire = {**inputs, "rule_id": rule_id, "requested_method": method,
                    **{f"method.{k}": str(v) for k, v in sorted(a.parameters.items()) if v is not None}}
            alloc_rows.append({
                "interaction_event_id": ev.event_id, "interaction_id": body.interaction_id, "event_time_us": t,
                "requestor_id": body.requestor_id, "responder_id": body.responder_id, "method": a.method,
                "rule_id": rule_id, "total_micros": a.total, "requestor_pays_micros": a.requestor_pays,
                "responder_pays_micros": a.responder_pays, "net_transfer_micros": a.net_transfer,
                "direction": a.direction, "params_json": json.dumps(wire, sort_keys=True)})
            for agent, incurred, share in ((body.requestor_id, metered.requestor_incurred, a.requestor_pays),
                                           (body.responder_id, metered.responder_incurred, a.responder_pays)):
                c = self.costs.setdefault((agent, a.method), [0, 0, 0])
                c[0] += 1
                c[1] += incurred
                c[2] += share
                touched.add((agent, a.method))
            if self.produce_derived:
                fx.derived.append(Derived(
                    topic="allocations", event_time_us=t, idempotency_key=f"allocation:{ev.event_id}:{method}",
                    body=AllocationEvent(
                        interaction_event_id=ev.event_id, interaction_id=body.interaction_id,
                        requestor_id=body.requestor_id, responder_id=body.responder_id, method=a.method,
                        total_micros=a.total, requestor_pays_micros=a.requestor_pays,
                        responder_pays_micros=a.responder_pays, net_transfer_micros=a.net_transfer,
                        direction=a.direction, request_output_micros=metered.request_output.cost,
                        request_input_micros=metered.request_input.cost,
                        response_output_micros=metered.response_output.cost,
                        response_input_micros=metered.response_input.cost, params=tuple(sorted(wire.items())))))


def _discrepancy_permille(ours: int, theirs: int) -> int | None:
    """|ours - theirs| per thousand of the larger, when it is a discrepancy (see COST_DISCREPANCIES); else None."""
    gap, larger = abs(ours - theirs), max(ours, theirs)
    if gap <= COST_DISCREPANCY_FLOOR_MICROS or gap * 1000 <= COST_DISCREPANCY_PERMILLE * larger:
        return None
    return gap * 1000 // larger


def _call_base(ev: Any, side: str, agent: str, provider: str, model: str) -> dict[str, Any]:
    cx = ev.context
    return {"event_id": ev.event_id, "side": side, "event_time_us": ev.event_time_us, "agent_id": agent,
            "org": cx.org, "project": cx.project, "task": cx.task, "run": cx.run, "stage": cx.stage,
            "provider": provider, "model": model}


def _side_rows(ev: Any, body: Interaction, m: Any, req: PriceInForce, resp: PriceInForce) -> list[dict[str, Any]]:
    """An interaction's two LLM calls for ``llm_calls``: the requestor writes the request and reads the response,
    the responder reads the request and writes the response (ledger.economics.metering's four flows)."""
    out = []
    for side, agent, provider, model, entry, read, wrote in (
            ("requestor", body.requestor_id, body.requestor_provider, body.requestor_model, req,
             m.response_input, m.request_output),
            ("responder", body.responder_id, body.responder_provider, body.responder_model, resp,
             m.request_input, m.response_output)):
        out.append({
            **_call_base(ev, side, agent, provider, model), "priced_provider": entry.price.provider,
            "priced_model": entry.price.model, "matched_via": "exact" if (entry.price.provider, entry.price.model)
            == (provider, model) else "matched", "service_tier": "", "priced_tier": entry.price.service_tier,
            "above_input_tokens": entry.price.above_input_tokens, "input_tokens": read.tokens,
            "output_tokens": wrote.tokens, "cache_read_tokens": read.cached_tokens, "cache_write_tokens": 0,
            "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "cost_micros": read.cost + wrote.cost, "estimate": False,
            "input_micros": read.uncached, "cache_read_micros": read.cached, "cache_write_micros": 0,
            "cache_write_1h_micros": 0, "output_micros": wrote.cost, "reasoning_micros": 0, "request_micros": 0,
            "price_event_id": entry.event_id, "provider_cost_micros": None, "cost_difference_micros": None})
    return out


def _unpriced(base: dict[str, Any], stage: str, method: str | None, e: LedgerError) -> dict[str, Any]:
    # ValidationError carries its code as an attribute; EconomicsError names it in its evidence
    code = getattr(e, "code", None) or e.evidence.get("code") or "economics"
    code = getattr(code, "value", code)
    return {**base, "stage": stage, "method": method, "code": str(code),
            "reason": e.message[:UNPRICED_REASON_CHARS],
            "evidence_json": json.dumps({k: _jsonable(v) for k, v in e.evidence.items()}, sort_keys=True)}


__all__ = ["DEFAULT_METHODS", "NASH_BARGAINING", "Allocations", "PriceLookup", "method_params"]
