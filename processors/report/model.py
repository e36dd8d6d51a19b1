"""The cost report: attribution per run, efficiency, burn-rate forecasts, reputation and settlements.

``build(home)`` reads the published views (``processors.views.connect_views``: Parquet only, so it never
blocks a processor) and returns a plain, JSON-ready report model; ``processors.report.html.render_html``
turns the model into ONE self-contained HTML page with the inline SVG charts of ``processors.report.svg``;
the CLI (processors/cli/report.py) prints the same model as tables. ``build_files(paths)`` is the one-shot report of
Claude Code workflow files without a home (``tokenledger report FILE...``): the same per-run entries, priced by the
reference tier table.

Cost waterfall per run, by stage (first-seen stage order):
    * imported workflow runs (``tokenledger import claude-code``): ``ledger.sources.attribution`` over runs
      rebuilt from the journal's rows (``runs_from_events``): tokens, the sum invariant, silent
      degradation findings, the *estimated* cost and a routing savings estimate;
    * every other run: the run's LLM calls (``action`` events with a model) at the cost the allocations
      processor gave each in ``llm_calls`` (the price book on the log, by the one rule of
      ``ledger.economics.pricing``: no fallback to a shipped table; a call it could not price is in its
      ``unpriced`` view and counted here as unpriced), plus the cost of its agent-to-agent interactions
      (``interactions`` view). So the report's LLM cost is ``SELECT sum(cost_micros) FROM llm_calls
      WHERE side = 'call'`` for the same filter.
      The invariant: the stage costs add up to the run's total computed over the run's calls
      directly. Routing savings: the same calls repriced on the run's priciest model (by output
      rate) vs what they cost.
    A run is publishable only when its invariant holds, it has no degradation finding and none
    of its calls was left unpriced.

Spend over time per agent = cumulative cost of the agent's own priced LLM calls (interactions are
shown per stage, not per agent, so nothing is counted twice on one chart).

Filters (``ReportFilter``, all optional; ``tokenledger serve``'s ``/report`` passes them): event time ``from_us``
(inclusive) .. ``to_us`` (exclusive), ``agent``, ``model`` (as reported), ``project``. They narrow the LLM calls (their
agent, model, project, time) and the interactions (the agent is either side, the model either side's, the
interaction's project and time), and so every total, efficiency table, chart and ledger run built from them (a ledger
run none of whose calls or interactions matches is left out); the events counted and the unregistered agents (the
event's agent, action model, project, time). An imported workflow run is kept whole when any of its agents' events
matches (its sum invariant is over the whole run). ``agent`` also narrows the budgets forecast to that agent's own
budgets, the reputation to its own and the settlement graph to the edges it is on; ``project`` (without ``agent``)
narrows the forecast to that project's budgets. The budgets are their current windows whatever the times asked.

Invariants: money is integer micro-USD (the model holds no formatted amount); times come from the data,
never the clock.
Never: price an unpriced call as $0 (it is counted in ``unpriced_calls`` instead), or publish a
degraded run's numbers as if they were sound.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ledger.economics.pricing import PriceBook, price_book_from_rows, usage_cost
from ledger.economics.reputation import TrustEvent, reputation
from ledger.economics.routing import priciest_model
from ledger.errors import EconomicsError, ValidationError
from ledger.files import read_text_bounded
from ledger.limits import MAX_IMPORT_FILE_BYTES, MAX_REPUTATION_SAMPLES, MAX_SERIES_POINTS
from ledger.sdk.home import Home
from ledger.sources import attribution
from ledger.sources.claude_code import read_workflow_run
from ledger.sources.importers import expand_paths, infer_provider
from ledger.sources.records import short
from ledger.wire.events import Action, Context, Event, LlmUsage
from ledger.wire.timefmt import fmt_time
from processors import views
from processors.report.metrics import burn_forecast, efficiency, model_breakdown

_ZERO_HASH = bytes(32)  # the chain link is not in the views; runs_from_events never reads it

# every LLM call of an action: priced ones from the allocations processor's llm_calls (their cost is the view's, so
# the report's LLM cost is exactly sum(cost_micros) over llm_calls), unpriced ones from its unpriced view (the
# journal's row gives their tokens)
_CALLS_SQL = """SELECT event_id, agent_id AS agent, task, project, run, stage, provider, model, input_tokens,
    output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, event_time_us, cost_micros
    FROM llm_calls WHERE side = 'call'
    UNION ALL
    SELECT e.event_id, e.agent, e.task, e.project, e.run, e.stage, e.provider, e.model, e.input_tokens,
    e.output_tokens, e.cache_read_tokens, e.cache_write_tokens, e.reasoning_tokens, e.event_time_us, NULL
    FROM unpriced u JOIN events e USING (event_id) WHERE u.source = 'call'
    ORDER BY event_time_us, event_id"""
_INTERACTIONS_SQL = """SELECT i.event_id, i.requestor_id, i.responder_id, i.total_micros, i.event_time_us,
    i.requestor_model, i.responder_model, i.project, e.run, e.stage FROM interactions i LEFT JOIN events e
    USING (event_id) ORDER BY i.event_time_us, i.event_id"""
_STAGE_ORDER_SQL = """SELECT run, stage, min(event_time_us) AS first_us FROM events WHERE run IS NOT NULL
    GROUP BY ALL ORDER BY run, first_us, stage"""
_WORKFLOW_SQL = """SELECT * FROM events WHERE kind = 'action' AND operation = ? ORDER BY event_time_us, event_id"""
_BUDGETS_SQL = """SELECT * FROM budgets QUALIFY row_number() OVER (PARTITION BY scope, scope_id, budget_kind
    ORDER BY window_start_us DESC) = 1 ORDER BY scope, scope_id, budget_kind"""


# ------------------------------------------------------------------------------------ filters


@dataclass(frozen=True)
class ReportFilter:
    """What the report covers (module doc, "Filters"); None everywhere: everything."""

    from_us: int | None = None
    to_us: int | None = None
    agent: str | None = None
    model: str | None = None
    project: str | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def _in_time(self, t: int) -> bool:
        return (self.from_us is None or t >= self.from_us) and (self.to_us is None or t < self.to_us)

    def keep_call(self, c: Mapping[str, Any]) -> bool:
        """An LLM call row (or a journal row) with ``agent``, ``model``, ``project``, ``event_time_us``."""
        return (self._in_time(c["event_time_us"]) and self.agent in (None, c["agent"])
                and self.model in (None, c["model"]) and self.project in (None, c["project"]))

    def keep_interaction(self, i: Mapping[str, Any]) -> bool:
        return (self._in_time(i["event_time_us"])
                and (self.agent is None or self.agent in (i["requestor_id"], i["responder_id"]))
                and (self.model is None or self.model in (i["requestor_model"], i["responder_model"]))
                and self.project in (None, i["project"]))

    def keep_budget(self, b: Mapping[str, Any]) -> bool:
        if self.agent is not None:
            return bool(b["scope"] == "agent" and b["scope_id"] == self.agent)
        return self.project is None or bool(b["scope"] == "project" and b["scope_id"] == self.project)

    def events_where(self) -> tuple[str, list[Any]]:
        """The filter over the journal's ``events`` view: a SQL condition (this code's text) and its parameters."""
        conds, params = ["true"], list[Any]()
        for cond, value in (("event_time_us >= ?", self.from_us), ("event_time_us < ?", self.to_us),
                            ("agent = ?", self.agent), ("model = ?", self.model), ("project = ?", self.project)):
            if value is not None:
                conds.append(cond)
                params.append(value)
        return " AND ".join(conds), params

    def as_dict(self) -> dict[str, Any]:
        return {"from": fmt_time(self.from_us) if self.from_us is not None else None,
                "to": fmt_time(self.to_us) if self.to_us is not None else None,
                "agent": self.agent, "model": self.model, "project": self.project}


NO_FILTER = ReportFilter()


# ------------------------------------------------------------------------------------ gathering


def _rows(con: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _one(con: Any, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
    """The row of an aggregate query without GROUP BY."""
    row = con.execute(sql, list(params)).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns exactly one row, even over no rows
    return tuple(row)


def price_book(price_rows: Iterable[Mapping[str, Any]], match_rows: Iterable[Mapping[str, Any]] = ()) -> PriceBook:
    """The book the allocations processor read from the log, by the same rule (empty when the log
    announced no prices: then every call is unpriced, never priced from a table here)."""
    return price_book_from_rows(price_rows, match_rows)


def call_cost(book: PriceBook, call: Mapping[str, Any], *, model: tuple[str, str] | None = None) -> int | None:
    """Micro-USD of one LLM call row at its event time (on ``model`` instead, if given); None if unpriced."""
    provider, name = model or (call["provider"], call["model"])
    try:
        price = book.price_at(provider, name, call["event_time_us"])
    except (EconomicsError, ValidationError):
        return None
    return usage_cost(price, input_tokens=call["input_tokens"] or 0, output_tokens=call["output_tokens"] or 0,
                      cache_read_tokens=call["cache_read_tokens"] or 0,
                      cache_write_tokens=call["cache_write_tokens"] or 0,
                      reasoning_tokens=call["reasoning_tokens"] or 0).total


def _event_from_row(row: Mapping[str, Any]) -> Event:
    """An imported workflow event rebuilt from its journal row (all runs_from_events reads)."""
    labels = json.loads(row["labels_json"] or "{}")
    usage = LlmUsage(provider=row["provider"], model=row["model"], input_tokens=row["input_tokens"] or 0,
                     output_tokens=row["output_tokens"] or 0, cache_read_tokens=row["cache_read_tokens"] or 0,
                     cache_write_tokens=row["cache_write_tokens"] or 0, reasoning_tokens=row["reasoning_tokens"] or 0)
    ctx = Context(org=row["org"], project=row["project"], task=row["task"], stage=row["stage"], run=row["run"],
                  labels=tuple(sorted(labels.items())))
    return Event(event_id=row["event_id"], signer_id=row["signer_id"], seq=row["seq"], prev_hash=_ZERO_HASH,
                 idempotency_key=row["idempotency_key"], event_time_us=row["event_time_us"], context=ctx,
                 body=Action(operation=row["operation"], cost_weight_milli=row["cost_weight_milli"] or 0,
                             result_hash=row["result_hash"], usage=usage))


def book_rates(book: PriceBook, at_us: int) -> attribution.RateLookup:
    """A workflow agent's (input, output) rates from the book on the log at ``at_us``: its model resolved under the
    provider the importer names for it (ledger.sources.importers.infer_provider), None when unpriced."""

    def rates(model: str) -> tuple[int, int] | None:
        try:
            price = book.price_at(infer_provider(model), model, at_us)
        except (EconomicsError, ValidationError):
            return None
        return price.input, price.output

    return rates


def _workflow_run(rep: attribution.RunReport, run: attribution.WorkflowRun,
                  rates: attribution.RateLookup) -> dict[str, Any]:
    s = rep.summary
    cost = dict(rep.cost.by_stage)
    stages = [{"stage": st.stage, "tokens": st.tokens, "calls": st.count, "pct": st.pct,
               "cost_micros": cost.get(st.stage, 0), "states": dict(st.states)} for st in s.stages]
    # Routing savings: the agents on the models they ran on vs everything on the run's priciest model (each agent
    # priced once, as the estimate is: the routed amount is the run's total)
    baseline = priciest_model((a.model for a in run.agents), rates=rates)
    savings = None
    if baseline is not None:
        sv = attribution.run_savings(run, baseline_model=baseline, rates=rates)
        savings = {"baseline_model": baseline, "baseline_micros": sv.baseline_micros, "routed_micros": sv.routed_micros,
                   "saved_micros": sv.saved_micros, "saved_pct": round(sv.saved_pct, 1)}
    return {"run": s.run_id, "source": "workflow", "workflow": s.workflow, "status": s.status,
            "total_tokens": s.total_tokens, "stage_tokens": s.agent_tokens, "invariant_ok": s.invariant_ok,
            "total_micros": rep.cost.total_micros, "cost_is_estimate": True,
            "assumed_models": list(rep.cost.assumed_models), "unpriced_calls": rep.cost.unpriced_agents,
            "unpriced_models": list(rep.cost.unpriced_models),
            "findings": [{"stage": f.stage, "kind": f.kind, "severity": f.severity, "detail": f.detail}
                         for f in rep.findings],
            "publishable": rep.publishable and s.invariant_ok and not rep.cost.unpriced_agents, "stages": stages,
            "savings": savings}


@dataclass
class _StageTally:
    """One stage of a ledger run while its calls and interactions are added up (integer micro-USD)."""

    stage: str
    calls: int = 0
    tokens: int = 0
    llm_micros: int = 0
    interactions: int = 0
    interaction_micros: int = 0
    unpriced_calls: int = 0

    @property
    def cost_micros(self) -> int:
        return self.llm_micros + self.interaction_micros

    def row(self, run_total_micros: int) -> dict[str, Any]:
        pct = round(100 * self.cost_micros / run_total_micros, 1) if run_total_micros else 0.0
        return {**asdict(self), "cost_micros": self.cost_micros, "pct": pct}


def _ledger_runs(calls: list[dict[str, Any]], interactions: list[dict[str, Any]], stage_order: list[dict[str, Any]],
                 book: PriceBook, skip: set[str]) -> list[dict[str, Any]]:
    order: dict[str, list[str]] = {}
    for r in stage_order:
        if r["run"] not in skip:
            order.setdefault(r["run"], []).append(r["stage"] or attribution.UNKNOWN_STAGE)
    return [_ledger_run(run_id, stage_names, [c for c in calls if c["run"] == run_id],
                        [i for i in interactions if i["run"] == run_id], book)
            for run_id, stage_names in order.items()]


def _ledger_run(run_id: str, stage_names: list[str], run_calls: list[dict[str, Any]],
                run_inter: list[dict[str, Any]], book: PriceBook) -> dict[str, Any]:
    """One run's stages (first-seen order), checked against the run's totals computed from its calls directly."""
    tallies = {s: _StageTally(s) for s in stage_names}
    for c in run_calls:
        st = tallies[c["stage"] or attribution.UNKNOWN_STAGE]
        st.calls += 1
        st.tokens += (c["input_tokens"] or 0) + (c["output_tokens"] or 0)
        if c["cost_micros"] is None:
            st.unpriced_calls += 1
        else:
            st.llm_micros += c["cost_micros"]
    for i in run_inter:
        st = tallies[i["stage"] or attribution.UNKNOWN_STAGE]
        st.interactions += 1
        st.interaction_micros += i["total_micros"]
    used = [t for t in tallies.values() if t.calls or t.interactions]
    # the run's totals straight from its calls, to check the per-stage split against
    total = sum(c["cost_micros"] or 0 for c in run_calls) + sum(i["total_micros"] for i in run_inter)
    total_tokens = sum((c["input_tokens"] or 0) + (c["output_tokens"] or 0) for c in run_calls)
    unpriced = sum(t.unpriced_calls for t in used)
    invariant = sum(t.cost_micros for t in used) == total and sum(t.tokens for t in used) == total_tokens
    return {"run": run_id, "source": "ledger", "workflow": None, "status": None, "total_tokens": total_tokens,
            "stage_tokens": sum(t.tokens for t in used), "invariant_ok": invariant, "total_micros": total,
            "cost_is_estimate": False, "assumed_models": [], "unpriced_calls": unpriced, "findings": [],
            "publishable": invariant and unpriced == 0, "stages": [t.row(total) for t in used],
            "savings": _ledger_savings(run_calls, book)}


def _ledger_savings(run_calls: list[dict[str, Any]], book: PriceBook) -> dict[str, Any] | None:
    """The run's priced calls as they ran vs all of them on its priciest model (by output rate)."""
    priced = [c for c in run_calls if c["cost_micros"] is not None]
    if not priced:
        return None
    last = {(c["provider"], c["model"]): c["event_time_us"] for c in priced}
    baseline = max(last, key=lambda k: (book.price_at(k[0], k[1], last[k]).output, k))
    base = [call_cost(book, c, model=baseline) for c in priced]
    if any(b is None for b in base):
        return None  # the baseline model had no price at some call's time: no honest estimate
    base_total = sum(b for b in base if b is not None)
    routed = sum(c["cost_micros"] for c in priced)
    return {"baseline_model": f"{baseline[0]}/{baseline[1]}", "baseline_micros": base_total, "routed_micros": routed,
            "saved_micros": base_total - routed,
            "saved_pct": round(100 * (base_total - routed) / base_total, 1) if base_total else 0.0}


def _downsample(points: list[tuple[int, float]], limit: int = MAX_SERIES_POINTS) -> list[tuple[int, float]]:
    if len(points) <= limit:
        return points
    step = len(points) / (limit - 1)
    return [points[int(i * step)] for i in range(limit - 1)] + [points[-1]]


def _spend_series(calls: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    cum: dict[str, int] = {}
    series: dict[str, list[tuple[int, float]]] = {}
    for c in calls:
        if c["cost_micros"] is None:
            continue
        cum[c["agent"]] = cum.get(c["agent"], 0) + c["cost_micros"]
        series.setdefault(c["agent"], []).append((c["event_time_us"], cum[c["agent"]]))
    return {a: _downsample(p) for a, p in sorted(series.items())}


def _reputation_series(trust_rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Overall score per subject at (a sample of) its trust events' times, by ledger.economics.reputation."""
    by_subject: dict[str, list[TrustEvent]] = {}
    for r in trust_rows:
        if not r["counted"]:
            continue
        by_subject.setdefault(r["subject"], []).append(TrustEvent(
            event_id=r["event_id"], issuer=r["issuer"], subject=r["subject"], dimension=r["dimension"],
            value=r["value_milli"] / 1000, event_time_us=r["event_time_us"], half_life_us=r["half_life_us"]))
    out = {}
    for subject, events in sorted(by_subject.items()):
        times = sorted({e.event_time_us for e in events})
        sample = [t for t, _ in _downsample([(t, 0.0) for t in times], MAX_REPUTATION_SAMPLES)]
        out[subject] = [(t, round(reputation(events, subject, t).overall, 4)) for t in sample]
    return out


def _settlement_edges(con: Any) -> tuple[str, list[dict[str, Any]]]:
    edges = _rows(con, """SELECT payer, payee, sum(amount_micros)::BIGINT AS amount_micros, count(*) AS transfers,
        string_agg(DISTINCT status, ',' ORDER BY status) AS status FROM settlements GROUP BY ALL ORDER BY ALL""")
    if edges:
        return "settlements", edges
    # nothing settled yet (no window closed): show what the open pair balances would settle
    pairs = _rows(con, """SELECT CASE WHEN s > 0 THEN agent_a ELSE agent_b END AS payer,
        CASE WHEN s > 0 THEN agent_b ELSE agent_a END AS payee, abs(s)::BIGINT AS amount_micros, n AS transfers,
        'open' AS status FROM (SELECT agent_a, agent_b, sum(a_owes_b_micros) AS s, count(*) AS n FROM pair_balances
        WHERE status = 'open' GROUP BY ALL) WHERE s <> 0 ORDER BY ALL""")
    return "open pair balances", pairs


def build(home: Home, filters: ReportFilter = NO_FILTER, *, log_url: str | None = None) -> dict[str, Any]:
    """The report model of ``home``'s published views (plain JSON-ready dicts and lists), narrowed by ``filters``
    (module doc); ``log_url``: the log whose registered keys check the views (default: the home's)."""
    f = filters
    where, params = f.events_where()
    with views.connect_views(home, log_url=log_url) as con:
        book = price_book(_rows(con, "SELECT * FROM prices"), _rows(con, "SELECT * FROM price_matches"))
        calls = [c for c in _rows(con, _CALLS_SQL) if f.keep_call(c)]
        interactions = [i for i in _rows(con, _INTERACTIONS_SQL) if f.keep_interaction(i)]
        wf_rows = [r for r in _rows(con, _WORKFLOW_SQL, [attribution.WORKFLOW_OPERATION])
                   if json.loads(r["labels_json"] or "{}").get(attribution.LABEL_SOURCE)
                   == attribution.SOURCE_CLAUDE_CODE]
        wf_matching = {r["run"] for r in wf_rows if f.keep_call(r)}
        wf_events = [_event_from_row(r) for r in wf_rows]
        rates = book_rates(book, max((e.event_time_us for e in wf_events), default=0))
        runs = [_workflow_run(attribution.report(wf, rates=rates), wf, rates)
                for wf in attribution.runs_from_events(wf_events)]
        wf_ids = {r["run"] for r in runs}
        # imported workflow agents are attributed above with their estimate; keep them out of the ledger runs
        ledger_calls = [c for c in calls if c["run"] not in wf_ids]
        ledger_runs = _ledger_runs(ledger_calls, interactions, _rows(con, _STAGE_ORDER_SQL), book, wf_ids)
        if f.active:  # only the runs the filter left something of
            runs = [r for r in runs if r["run"] in wf_matching]
            ledger_runs = [r for r in ledger_runs if r["stages"]]
        runs += ledger_runs
        # the filter's condition is this module's text; its values are bound parameters
        (as_of,) = _one(con, f"SELECT max(event_time_us) FROM events WHERE {where}", params)  # noqa: S608
        (latest,) = _one(con, "SELECT max(event_time_us) FROM events")  # budgets are now: forecast at the latest
        counts = _rows(con, f"""SELECT count(*) AS events, count(DISTINCT signer_id) AS signers,
            count(DISTINCT agent) AS agents FROM events WHERE {where}""", params)[0]  # noqa: S608
        # agents an import named that nobody registered: listed as they were named, never invented or merged
        unregistered = _rows(con, f"""SELECT agent, list(DISTINCT signer_id ORDER BY signer_id) AS recorded_by,
            count(*) AS events FROM events WHERE NOT agent_registered AND {where} GROUP BY agent
            ORDER BY agent""", params)  # noqa: S608
        forecasts = burn_forecast([b for b in _rows(con, _BUDGETS_SQL) if f.keep_budget(b)], latest or 0)
        reputation_now = [r for r in _rows(con, "SELECT agent_id, overall, tier, multiplier, events_counted FROM "
                                                "reputation ORDER BY overall DESC, agent_id")
                          if f.agent in (None, r["agent_id"])]
        trust = [t for t in _rows(con, "SELECT * FROM trust_history ORDER BY event_time_us, event_id")
                 if f.agent in (None, t["subject"])]
        graph_source, edges = _settlement_edges(con)
        edges = [e for e in edges if f.agent is None or f.agent in (e["payer"], e["payee"])]
        agents = sorted({c["agent"] for c in calls} | {i["requestor_id"] for i in interactions}
                        | {i["responder_id"] for i in interactions} | {e["payer"] for e in edges}
                        | {e["payee"] for e in edges})
    priced = [c for c in calls if c["cost_micros"] is not None]
    return {
        "home": str(home.path), "as_of_us": as_of, "as_of": fmt_time(as_of) if as_of else None,
        "filters": f.as_dict(),
        "totals": {"events": counts["events"], "signers": counts["signers"], "agents": counts["agents"],
                   "unregistered_agents": len(unregistered), "llm_calls": len(calls),
                   "input_tokens": sum(c["input_tokens"] or 0 for c in calls),
                   "output_tokens": sum(c["output_tokens"] or 0 for c in calls),
                   "llm_cost_micros": sum(c["cost_micros"] for c in priced),
                   "interaction_cost_micros": sum(i["total_micros"] for i in interactions),
                   "unpriced_calls": len(calls) - len(priced),
                   "settled_micros": sum(e["amount_micros"] for e in edges) if graph_source == "settlements" else 0,
                   "runs": len(runs), "unpublishable_runs": sum(not r["publishable"] for r in runs)},
        "runs": runs,
        "unregistered_agents": unregistered,
        "efficiency": {k: efficiency(calls, k) for k in ("agent", "task", "project")},
        "models": model_breakdown(calls),
        "forecasts": forecasts,
        "spend_series": {a: [list(p) for p in pts] for a, pts in _spend_series(calls).items()},
        "reputation": reputation_now,
        "reputation_series": {a: [list(p) for p in pts] for a, pts in _reputation_series(trust).items()},
        "settlement_graph": {"source": graph_source, "agents": agents, "edges": edges},
    }


FILES_RATES = ("no home, so no price book: the reference meter's tier table at list prices (fable, opus, sonnet, "
               "haiku by model-name substring; a model in no tier is priced as opus and named in assumed_models)")


def _read_run_file(path: Path) -> attribution.WorkflowRun:
    """One ``wf_*.json`` file as a run, all or nothing (``read_workflow_run``: runId, models and counts required)."""
    text = read_text_bounded(path, MAX_IMPORT_FILE_BYTES, field="file", limit_name="MAX_IMPORT_FILE_BYTES")
    try:
        document = json.loads(text)
    except ValueError as e:
        raise ValidationError("file", str(path), f"is not JSON: {e}") from None
    return read_workflow_run(document)


def build_files(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The one-shot report of Claude Code workflow files (``wf_*.json``; a directory stands for the ones under it),
    without a ledger home: nothing is read from or written to a log.

    Each file is one run, attributed as an imported run is (``_workflow_run``: the stage waterfall in first-seen order,
    the sum invariant, degradation findings, the *estimated* cost and the routing savings estimate), but priced by the
    reference tier table (``FILES_RATES``): there is no price book without a home. A file that cannot be read or holds
    a bad field is left out and listed in ``problems`` (file, JSON path, value, reason); the others are reported."""
    files = expand_paths("claude-code", paths)
    runs: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for path in files:
        try:
            run = _read_run_file(path)
        except ValidationError as e:
            problems.append({"file": str(path), "field": e.field, "value": short(e.value), "reason": e.reason})
            continue
        rates = attribution.reference_rates
        # rates None: the tier table, and the models it prices as opus are named (assumed_models)
        runs.append({**_workflow_run(attribution.report(run), run, rates), "file": str(path)})
    return {"home": None, "files": [str(p) for p in files], "rates": FILES_RATES, "runs": runs, "problems": problems}


def select_run(model: dict[str, Any], run: str | None) -> dict[str, Any]:
    """The model narrowed to one run's waterfall; a run that is not there is a ValidationError."""
    if run is None:
        return model
    chosen = [r for r in model["runs"] if r["run"] == run]
    if not chosen:
        raise ValidationError("run", run, "is not a run in these files" if model["home"] is None
                              else "is not a run in this home's events",
                              hint="runs: " + ", ".join(r["run"] for r in model["runs"][:20]))
    return {**model, "runs": chosen}


__all__ = ["FILES_RATES", "NO_FILTER", "ReportFilter", "build", "build_files", "call_cost", "price_book",
           "select_run"]
