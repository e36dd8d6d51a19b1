"""The cost report: attribution per run, efficiency, burn-rate forecasts, reputation and settlements.

``build(home)`` reads the published views (``processors.views.connect_views``: Parquet only, so it never
blocks a processor) and returns a plain, JSON-ready report model; ``render_html(model)`` turns the
model into ONE self-contained HTML page with inline SVG charts drawn here (``write_html`` writes it);
the CLI (processors/cli/report.py) prints the same model as tables.

Cost waterfall per run, by stage (first-seen stage order):
    * imported workflow runs (``tokenledger import claude-code``): ``ledger.sources.attribution`` over runs
      rebuilt from the journal's rows (``runs_from_events``): tokens, the sum invariant, silent
      degradation findings, the *estimated* cost and a routing savings estimate;
    * every other run: the run's LLM calls (``action`` events with a model) priced with the price
      book on the log (the allocations processor's ``prices`` view, read back by the one rule of
      ``ledger.economics.pricing``; no fallback to the shipped book: a model the log never priced is
      unpriced) at each call's event time, plus the cost of its agent-to-agent interactions
      (``interactions`` view).
      The invariant: the stage costs add up to the run's total computed over the run's calls
      directly. Routing savings: the same calls repriced on the run's priciest model (by output
      rate) vs what they cost.
    A run is publishable only when its invariant holds, it has no degradation finding and none
    of its calls was left unpriced.

Spend over time per agent = cumulative cost of the agent's own priced LLM calls (interactions are
shown per stage, not per agent, so nothing is counted twice on one chart).

Invariants: money is integer micro-USD until it is formatted; every text that reaches the page
goes through ``html.escape``; the page has no script, no external reference (fonts, styles,
images) and no network access; times come from the data, never the clock.
Never: price an unpriced call as $0 (it is counted in ``unpriced_calls`` instead), or publish a
degraded run's numbers as if they were sound.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ledger.economics.money import format_usd
from ledger.economics.pricing import PriceBook, price_book_from_rows, usage_cost
from ledger.economics.reputation import TrustEvent, reputation
from ledger.errors import EconomicsError, ValidationError
from ledger.limits import MAX_REPUTATION_SAMPLES, MAX_SERIES_POINTS, MAX_TABLE_ROWS
from ledger.sdk.home import Home
from ledger.sources import attribution
from ledger.wire.events import Action, Context, Event, LlmUsage
from ledger.wire.timefmt import fmt_time
from processors import views
from processors.report.metrics import burn_forecast, efficiency, model_breakdown

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
SECTIONS = ("Cost waterfall by stage", "Spend over time per agent", "Budget burn-down", "Reputation over time",
            "Settlement graph")
_ZERO_HASH = bytes(32)  # the chain link is not in the views; runs_from_events never reads it

_CALLS_SQL = """SELECT event_id, signer_id AS agent, task, project, run, stage, provider, model, input_tokens,
    output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, event_time_us
    FROM events WHERE kind = 'action' AND model IS NOT NULL ORDER BY event_time_us, event_id"""
_INTERACTIONS_SQL = """SELECT i.event_id, i.requestor_id, i.responder_id, i.total_micros, i.event_time_us,
    e.run, e.stage FROM interactions i LEFT JOIN events e USING (event_id) ORDER BY i.event_time_us, i.event_id"""
_STAGE_ORDER_SQL = """SELECT run, stage, min(event_time_us) AS first_us FROM events WHERE run IS NOT NULL
    GROUP BY ALL ORDER BY run, first_us, stage"""
_WORKFLOW_SQL = """SELECT * FROM events WHERE kind = 'action' AND operation = ? ORDER BY event_time_us, event_id"""
_BUDGETS_SQL = """SELECT * FROM budgets QUALIFY row_number() OVER (PARTITION BY scope, scope_id, budget_kind
    ORDER BY window_start_us DESC) = 1 ORDER BY scope, scope_id, budget_kind"""


# ------------------------------------------------------------------------------------ gathering


def _rows(con: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def price_book(price_rows: Iterable[Mapping[str, Any]]) -> PriceBook:
    """The book the allocations processor read from the log, by the same rule (empty when the log
    announced no prices: then every call is unpriced, never priced from a table here)."""
    return price_book_from_rows(price_rows)


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


def _workflow_run(rep: attribution.RunReport, run: attribution.WorkflowRun) -> dict[str, Any]:
    s = rep.summary
    cost = dict(rep.cost.by_stage)
    stages = [{"stage": st.stage, "tokens": st.tokens, "calls": st.count, "pct": st.pct,
               "cost_micros": cost.get(st.stage, 0), "states": dict(st.states)} for st in s.stages]
    # Routing savings: the stages on the models they ran on vs everything on the run's priciest model.
    dominant: dict[str, dict[str, int]] = {}
    for a in run.agents:
        by_model = dominant.setdefault(a.stage, {})
        by_model[a.model] = by_model.get(a.model, 0) + a.tokens
    routes = {stage: max(models.items(), key=lambda kv: (kv[1], kv[0]))[0] for stage, models in dominant.items()}
    savings = None
    if routes:
        baseline = max(routes.values(), key=lambda m: (attribution.blended_rate(m), m))
        sv = attribution.savings_estimate(dict(attribution.decompose(run)), routes, baseline_model=baseline)
        savings = {"baseline_model": baseline, "baseline_micros": sv.baseline_micros, "routed_micros": sv.routed_micros,
                   "saved_micros": sv.saved_micros, "saved_pct": round(sv.saved_pct, 1)}
    return {"run": s.run_id, "source": "workflow", "workflow": s.workflow, "status": s.status,
            "total_tokens": s.total_tokens, "stage_tokens": s.agent_tokens, "invariant_ok": s.invariant_ok,
            "total_micros": rep.cost.total_micros, "cost_is_estimate": True,
            "assumed_models": list(rep.cost.assumed_models), "unpriced_calls": 0,
            "findings": [{"stage": f.stage, "kind": f.kind, "severity": f.severity, "detail": f.detail}
                         for f in rep.findings],
            "publishable": rep.publishable and s.invariant_ok, "stages": stages, "savings": savings}


def _ledger_runs(calls: list[dict[str, Any]], interactions: list[dict[str, Any]], stage_order: list[dict[str, Any]],
                 book: PriceBook, skip: set[str]) -> list[dict[str, Any]]:
    order: dict[str, list[str]] = {}
    for r in stage_order:
        if r["run"] not in skip:
            order.setdefault(r["run"], []).append(r["stage"] or attribution.UNKNOWN_STAGE)
    runs = []
    for run_id, stage_names in order.items():
        stages = {s: {"stage": s, "calls": 0, "tokens": 0, "llm_micros": 0, "interactions": 0,
                      "interaction_micros": 0, "unpriced_calls": 0} for s in stage_names}
        run_calls = [c for c in calls if c["run"] == run_id]
        run_inter = [i for i in interactions if i["run"] == run_id]
        for c in run_calls:
            st = stages[c["stage"] or attribution.UNKNOWN_STAGE]
            st["calls"] += 1
            st["tokens"] += (c["input_tokens"] or 0) + (c["output_tokens"] or 0)
            if c["cost_micros"] is None:
                st["unpriced_calls"] += 1
            else:
                st["llm_micros"] += c["cost_micros"]
        for i in run_inter:
            st = stages[i["stage"] or attribution.UNKNOWN_STAGE]
            st["interactions"] += 1
            st["interaction_micros"] += i["total_micros"]
        rows = [s for s in stages.values() if s["calls"] or s["interactions"]]
        for s in rows:
            s["cost_micros"] = s["llm_micros"] + s["interaction_micros"]
        # the run's totals straight from its calls, to check the per-stage split against
        total = sum(c["cost_micros"] or 0 for c in run_calls) + sum(i["total_micros"] for i in run_inter)
        total_tokens = sum((c["input_tokens"] or 0) + (c["output_tokens"] or 0) for c in run_calls)
        for s in rows:
            s["pct"] = round(100 * s["cost_micros"] / total, 1) if total else 0.0
        unpriced = sum(s["unpriced_calls"] for s in rows)
        invariant = sum(s["cost_micros"] for s in rows) == total and sum(s["tokens"] for s in rows) == total_tokens
        runs.append({"run": run_id, "source": "ledger", "workflow": None, "status": None, "total_tokens": total_tokens,
                     "stage_tokens": sum(s["tokens"] for s in rows), "invariant_ok": invariant, "total_micros": total,
                     "cost_is_estimate": False, "assumed_models": [], "unpriced_calls": unpriced, "findings": [],
                     "publishable": invariant and unpriced == 0, "stages": rows,
                     "savings": _ledger_savings(run_calls, book)})
    return runs


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


def build(home: Home) -> dict[str, Any]:
    """The report model of ``home``'s published views (plain JSON-ready dicts and lists)."""
    with views.connect_views(home) as con:
        book = price_book(_rows(con, "SELECT * FROM prices"))
        calls = _rows(con, _CALLS_SQL)
        for c in calls:
            c["cost_micros"] = call_cost(book, c)
        interactions = _rows(con, _INTERACTIONS_SQL)
        wf_rows = [r for r in _rows(con, _WORKFLOW_SQL, [attribution.WORKFLOW_OPERATION])
                   if json.loads(r["labels_json"] or "{}").get(attribution.LABEL_SOURCE)
                   == attribution.SOURCE_CLAUDE_CODE]
        runs = []
        for wf in attribution.runs_from_events(_event_from_row(r) for r in wf_rows):
            runs.append(_workflow_run(attribution.report(wf), wf))
        wf_ids = {r["run"] for r in runs}
        # imported workflow agents are attributed above with their estimate; keep them out of the ledger runs
        ledger_calls = [c for c in calls if c["run"] not in wf_ids]
        runs += _ledger_runs(ledger_calls, interactions, _rows(con, _STAGE_ORDER_SQL), book, wf_ids)
        as_of = con.execute("SELECT max(event_time_us) FROM events").fetchone()[0]
        counts = _rows(con, """SELECT count(*) AS events, count(DISTINCT signer_id) AS signers FROM events""")[0]
        forecasts = burn_forecast(_rows(con, _BUDGETS_SQL), as_of or 0)
        reputation_now = _rows(con, "SELECT agent_id, overall, tier, multiplier, events_counted FROM reputation "
                                    "ORDER BY overall DESC, agent_id")
        trust = _rows(con, "SELECT * FROM trust_history ORDER BY event_time_us, event_id")
        graph_source, edges = _settlement_edges(con)
        agents = sorted({c["agent"] for c in calls} | {i["requestor_id"] for i in interactions}
                        | {i["responder_id"] for i in interactions} | {e["payer"] for e in edges}
                        | {e["payee"] for e in edges})
    priced = [c for c in calls if c["cost_micros"] is not None]
    return {
        "home": str(home.path), "as_of_us": as_of, "as_of": fmt_time(as_of) if as_of else None,
        "totals": {"events": counts["events"], "signers": counts["signers"], "llm_calls": len(calls),
                   "input_tokens": sum(c["input_tokens"] or 0 for c in calls),
                   "output_tokens": sum(c["output_tokens"] or 0 for c in calls),
                   "llm_cost_micros": sum(c["cost_micros"] for c in priced),
                   "interaction_cost_micros": sum(i["total_micros"] for i in interactions),
                   "unpriced_calls": len(calls) - len(priced),
                   "settled_micros": sum(e["amount_micros"] for e in edges) if graph_source == "settlements" else 0,
                   "runs": len(runs), "unpublishable_runs": sum(not r["publishable"] for r in runs)},
        "runs": runs,
        "efficiency": {k: efficiency(calls, k) for k in ("agent", "task", "project")},
        "models": model_breakdown(calls),
        "forecasts": forecasts,
        "spend_series": {a: [list(p) for p in pts] for a, pts in _spend_series(calls).items()},
        "reputation": reputation_now,
        "reputation_series": {a: [list(p) for p in pts] for a, pts in _reputation_series(trust).items()},
        "settlement_graph": {"source": graph_source, "agents": agents, "edges": edges},
    }


def select_run(model: dict[str, Any], run: str | None) -> dict[str, Any]:
    """The model narrowed to one run's waterfall; a run that is not there is a ValidationError."""
    if run is None:
        return model
    chosen = [r for r in model["runs"] if r["run"] == run]
    if not chosen:
        raise ValidationError("run", run, "is not a run in this home's events",
                              hint="runs: " + ", ".join(r["run"] for r in model["runs"][:20]))
    return {**model, "runs": chosen}


# ------------------------------------------------------------------------------------ SVG charts

E = html.escape
W, H = 820, 300  # chart size in px
ML, MR, MT, MB = 80, 200, 20, 40  # margins: left axis labels, right legend, top, bottom axis labels


def usd(micros: int | float) -> str:
    return format_usd(int(micros))


def _short_usd(micros: float) -> str:
    dollars = micros / 1_000_000
    return f"${dollars:,.2f}" if abs(dollars) >= 0.01 or dollars == 0 else f"${dollars:.4f}"


def _hhmm(us: float) -> str:
    return fmt_time(int(us))[11:16]


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _frame(body: list[str], label: str) -> str:
    return (f'<svg role="img" aria-label="{E(label)}" viewBox="0 0 {W} {H}" '
            f'width="{W}" height="{H}" class="chart">' + "".join(body) + "</svg>")


def _empty(label: str, why: str) -> str:
    return _frame([f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="muted">{E(why)}</text>'], label)


def svg_waterfall(stages: Sequence[tuple[str, int]], label: str, fmt: Callable[[float], str] = _short_usd) -> str:
    """Floating bars: each stage starts where the previous ended; the last bar is the total."""
    if not stages:
        return _empty(label, "no stages")
    total = sum(v for _, v in stages)
    top = max(total, 1)
    n = len(stages) + 1
    slot = (W - ML - 20) / n
    bw = slot * 0.6
    y = lambda v: MT + (H - MT - MB) * (1 - v / top)  # noqa: E731
    body = [f'<line x1="{ML}" y1="{y(0):.1f}" x2="{W - 20}" y2="{y(0):.1f}" class="axis"/>']
    for t in _nice_ticks(0, top):
        body.append(f'<text x="{ML - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">{E(fmt(t))}</text>'
                    f'<line x1="{ML}" y1="{y(t):.1f}" x2="{W - 20}" y2="{y(t):.1f}" class="grid"/>')
    cum = 0
    for i, (name, v) in enumerate([*stages, ("total", total)]):
        lo, hi = (0, total) if i == n - 1 else (cum, cum + v)
        x = ML + i * slot + (slot - bw) / 2
        color = "#555" if i == n - 1 else PALETTE[i % len(PALETTE)]
        body.append(f'<rect x="{x:.1f}" y="{y(hi):.1f}" width="{bw:.1f}" height="{max(y(lo) - y(hi), 1):.1f}" '
                    f'fill="{color}"><title>{E(name)}: {E(fmt(v))}</title></rect>'
                    f'<text x="{x + bw / 2:.1f}" y="{y(hi) - 4:.1f}" text-anchor="middle" class="val">'
                    f'{E(fmt(v))}</text>'
                    f'<text x="{x + bw / 2:.1f}" y="{H - MB + 16}" text-anchor="middle" class="tick">{E(name)}</text>')
        if i < n - 1:
            cum += v
    return _frame(body, label)


def svg_lines(series: Mapping[str, Sequence[Sequence[float]]], label: str, yfmt: Callable[[float], str], *,
              dashed: Mapping[str, Sequence[Sequence[float]]] | None = None, y_range: tuple[float, float] | None = None,
              ) -> str:
    """One line per series over event time (x = microseconds); ``dashed`` adds projections, same colours."""
    dashed = dashed or {}
    pts = [p for s in (*series.values(), *dashed.values()) for p in s]
    if not pts:
        return _empty(label, "no data yet")
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = y_range or (min(0.0, min(p[1] for p in pts)), max(p[1] for p in pts))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    fx = lambda v: ML + (W - ML - MR) * (v - x0) / (x1 - x0)  # noqa: E731
    fy = lambda v: MT + (H - MT - MB) * (1 - (v - y0) / (y1 - y0))  # noqa: E731
    body = [f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" class="axis"/>'
            f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" class="axis"/>']
    for t in _nice_ticks(y0, y1):
        body.append(f'<text x="{ML - 6}" y="{fy(t) + 4:.1f}" text-anchor="end" class="tick">{E(yfmt(t))}</text>'
                    f'<line x1="{ML}" y1="{fy(t):.1f}" x2="{W - MR}" y2="{fy(t):.1f}" class="grid"/>')
    for t in _nice_ticks(x0, x1):
        body.append(f'<text x="{fx(t):.1f}" y="{H - MB + 16}" text-anchor="middle" class="tick">{E(_hhmm(t))}</text>')
    names = list(dict.fromkeys([*series, *dashed]))
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        for s, extra in ((series.get(name, ()), ""), (dashed.get(name, ()), ' stroke-dasharray="5 4"')):
            if s:
                path = " ".join(f"{fx(p[0]):.1f},{fy(p[1]):.1f}" for p in s)
                body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{extra}>'
                            f"<title>{E(name)}</title></polyline>")
        ly = MT + 10 + 18 * i
        body.append(f'<rect x="{W - MR + 12}" y="{ly - 9}" width="12" height="12" fill="{color}"/>'
                    f'<text x="{W - MR + 30}" y="{ly + 1}" class="legend">{E(name)}</text>')
    return _frame(body, label)


def svg_graph(agents: Sequence[str], edges: Sequence[Mapping[str, Any]], label: str) -> str:
    """Agents on a circle; an arrow payer -> payee per edge, labelled with its amount."""
    if not agents:
        return _empty(label, "no agents")
    cx, cy, r = W / 2, H / 2, min(W, H) / 2 - 50
    pos = {a: (cx + r * math.cos(2 * math.pi * i / len(agents) - math.pi / 2),
               cy + r * math.sin(2 * math.pi * i / len(agents) - math.pi / 2)) for i, a in enumerate(agents)}
    body = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
            'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>']
    for e in edges:
        (x1, y1), (x2, y2) = pos[e["payer"]], pos[e["payee"]]
        d = math.hypot(x2 - x1, y2 - y1) or 1
        ux, uy = (x2 - x1) / d, (y2 - y1) / d
        ax, ay, bx, by = x1 + 38 * ux, y1 + 38 * uy, x2 - 38 * ux, y2 - 38 * uy
        dash = ' stroke-dasharray="5 4"' if e.get("status") == "open" else ""
        body.append(f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" stroke="#444" stroke-width="1.5" '
                    f'marker-end="url(#arrow)"{dash}/>'
                    f'<text x="{(ax + bx) / 2 - 8 * uy:.1f}" y="{(ay + by) / 2 + 8 * ux:.1f}" text-anchor="middle" '
                    f'class="val">{E(usd(e["amount_micros"]))}</text>')
    for i, a in enumerate(agents):
        x, y = pos[a]
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="36" fill="{PALETTE[i % len(PALETTE)]}" opacity="0.85"/>'
                    f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" class="node">{E(a)}</text>')
    return _frame(body, label)


# ------------------------------------------------------------------------------------ HTML page

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2937;color:#fff;padding:20px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#cbd5e1;font-size:13px}main{padding:16px 32px;max-width:1100px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}.card{background:#fff;border-radius:8px;padding:10px 16px;
box-shadow:0 1px 2px #0002;min-width:140px}.card b{display:block;font-size:18px}.card span{font-size:12px;color:#666}
section{background:#fff;border-radius:8px;padding:16px 20px;margin:16px 0;box-shadow:0 1px 2px #0002}
h2{font-size:18px;margin:0 0 4px}h3{font-size:15px;margin:14px 0 4px}.caption{color:#555;font-size:13px;margin:0 0 8px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}th,td{padding:3px 8px;border-bottom:1px solid #e5e7eb;
text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f3f4f6}
.bad{color:#b91c1c;font-weight:600}.ok{color:#15803d;font-weight:600}
svg.chart{max-width:100%;height:auto}.axis{stroke:#333}.grid{stroke:#e5e7eb}.tick{font-size:11px;fill:#555}
.val{font-size:11px;fill:#222}.legend{font-size:12px;fill:#222}.node{font-size:11px;fill:#fff;font-weight:600}
.muted{fill:#888;font-size:14px}
"""


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{E(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{E(_cell(v))}</td>" for v in r) + "</tr>" for r in rows[:MAX_TABLE_ROWS])
    more = (f'<p class="caption">{len(rows) - MAX_TABLE_ROWS:,} more rows in <code>tokenledger report --json'
            "</code>.</p>" if len(rows) > MAX_TABLE_ROWS else "")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _section(title: str, caption: str, *parts: str) -> str:
    return f'<section><h2>{E(title)}</h2><p class="caption">{E(caption)}</p>{"".join(parts)}</section>'


def efficiency_rows(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[str], list[list[Any]]]:
    """Columns and cells of an efficiency table (shared by the HTML page and the CLI)."""
    cols = [key, "calls", "tokens", "tokens/call", "cache hit", "out/in", "cost", "iterations", "cost/iteration",
            "unpriced"]
    return cols, [[r[key], r["calls"], r["tokens"], r["tokens_per_call"], r["cache_hit_rate"], r["output_input_ratio"],
                   usd(r["cost_micros"]), r["iterations"], usd(r["cost_per_iteration_micros"]), r["unpriced_calls"]]
                  for r in rows]


def forecast_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    cols = ["budget", "unit", "allocation", "consumed", "remaining", "rate/hour", "runs out at", "before reset"]
    return cols, [[f"{f['scope']}:{f['scope_id']}:{f['budget_kind']}", f["unit"], f["allocation"], f["consumed"],
                   f["remaining"], f["rate_per_hour"],
                   fmt_time(f["exhausts_at_us"]) if f["exhausts_at_us"] is not None else "no burn",
                   "yes" if f["exhausts_in_window"] else "no"] for f in rows]


def stage_rows(run: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    if run["source"] == "workflow":
        return (["stage", "agents", "tokens", "% of reported", "est. cost"],
                [[s["stage"], s["calls"], s["tokens"], s["pct"], usd(s["cost_micros"])] for s in run["stages"]])
    return (["stage", "LLM calls", "LLM tokens", "LLM cost", "interactions", "interaction cost", "cost", "% of run",
             "unpriced"],
            [[s["stage"], s["calls"], s["tokens"], usd(s["llm_micros"]), s["interactions"],
              usd(s["interaction_micros"]), usd(s["cost_micros"]), s["pct"], s["unpriced_calls"]]
             for s in run["stages"]])


def run_verdict(run: Mapping[str, Any]) -> str:
    why = [f"{f['stage']}: {f['kind']} ({f['detail']})" for f in run["findings"]]
    if not run["invariant_ok"]:
        why.append(f"stage tokens {run['stage_tokens']:,} != reported total {run['total_tokens']:,}")
    if run["unpriced_calls"]:
        why.append(f"{run['unpriced_calls']:,} unpriced calls")
    return "publishable" if run["publishable"] else "NOT publishable: " + "; ".join(why)


Lines = dict[str, list[list[float]]]


def _burn_lines(forecasts: Sequence[Mapping[str, Any]]) -> tuple[Lines, Lines]:
    """% of allocation remaining: straight from the window start to now (the mean burn), then the forecast."""
    actual: Lines = {}
    projected: Lines = {}
    for f in forecasts:
        if not f["allocation"]:
            continue
        name = f"{f['scope_id']} {f['budget_kind']}"
        now_pct = 100 * f["remaining"] / f["allocation"]
        actual[name] = [[f["window_start_us"], 100.0], [f["as_of_us"], now_pct]]
        end = f["window_end_us"]
        if f["exhausts_at_us"] is not None and f["exhausts_at_us"] <= end:
            projected[name] = [[f["as_of_us"], now_pct], [f["exhausts_at_us"], 0.0]]
        elif f["elapsed_us"] and f["consumed"]:
            left = f["remaining"] - f["consumed"] * (end - f["as_of_us"]) / f["elapsed_us"]
            projected[name] = [[f["as_of_us"], now_pct], [end, 100 * left / f["allocation"]]]
    return actual, projected


def render_html(model: Mapping[str, Any]) -> str:
    """ONE self-contained page: inline CSS and SVG, no script, no external reference."""
    t = model["totals"]
    cards = [("events", f"{t['events']:,}"), ("signers", f"{t['signers']:,}"), ("LLM calls", f"{t['llm_calls']:,}"),
             ("LLM tokens", f"{t['input_tokens'] + t['output_tokens']:,}"), ("LLM cost", usd(t["llm_cost_micros"])),
             ("interaction cost", usd(t["interaction_cost_micros"])), ("settled", usd(t["settled_micros"])),
             ("unpriced calls", f"{t['unpriced_calls']:,}"),
             ("runs not publishable", f"{t['unpublishable_runs']:,} of {t['runs']:,}")]
    parts = [f"<header><h1>tokenledger cost report</h1><p>home {E(model['home'])} · data up to "
             f"{E(model['as_of'] or 'no events')} (event time)</p></header><main>",
             '<div class="cards">' + "".join(f"<div class=\"card\"><b>{E(v)}</b><span>{E(k)}</span></div>"
                                              for k, v in cards) + "</div>"]
    # 1. waterfall, one chart per run
    run_parts = []
    for run in model["runs"]:
        verdict = run_verdict(run)
        label = f"Cost waterfall of run {run['run']}"
        title = f"run {run['run']}" + (f" · workflow {run['workflow']}" if run["workflow"] else "")
        run_parts.append(f"<h3>{E(title)} — {usd(run['total_micros'])}"
                         f"{' (estimate)' if run['cost_is_estimate'] else ''} · "
                         f'<span class="{"ok" if run["publishable"] else "bad"}">{E(verdict)}</span></h3>')
        run_parts.append(svg_waterfall([(s["stage"], s["cost_micros"]) for s in run["stages"]], label))
        run_parts.append(_table(*stage_rows(run)))
        sv = run["savings"]
        if sv:
            run_parts.append(f'<p class="caption">Routing savings estimate: all on {E(sv["baseline_model"])} '
                             "would cost "
                             f'{usd(sv["baseline_micros"])}; as routed {usd(sv["routed_micros"])}: saved '
                             f'{usd(sv["saved_micros"])} ({sv["saved_pct"]}%).</p>')
    parts.append(_section(SECTIONS[0], "Per run, each stage's cost stacked on the previous ones; the last bar is "
                          "the run's total, which the stages must add up to. A run with a degradation finding, a "
                          "broken sum or unpriced calls is flagged as not publishable.",
                          *(run_parts or [_empty("waterfall", "no runs")])))
    # 2. spend over time + efficiency tables
    parts.append(_section(SECTIONS[1], "Cumulative cost of each agent's own LLM calls over event time (UTC).",
                          svg_lines(model["spend_series"], "Spend over time per agent", _short_usd),
                          "<h3>Efficiency per agent</h3>",
                          _table(*efficiency_rows(model["efficiency"]["agent"], "agent")),
                          "<h3>Efficiency per project</h3>",
                          _table(*efficiency_rows(model["efficiency"]["project"], "project")),
                          "<h3>Efficiency per task (costliest first)</h3>",
                          _table(*efficiency_rows(model["efficiency"]["task"], "task")),
                          "<h3>Model breakdown</h3>",
                          _table(*efficiency_rows(model["models"], "model"))))
    # 3. burn-down
    actual, projected = _burn_lines(model["forecasts"])
    parts.append(_section(SECTIONS[2], "Share of each budget's current-window allocation left: solid from the window "
                          "start to the latest event (the mean burn), dashed the forecast at that rate until it "
                          "runs out or the window resets.",
                          svg_lines(actual, "Budget burn-down", lambda v: f"{v:.0f}%", dashed=projected,
                                    y_range=(min([0.0, *(p[1] for s in projected.values() for p in s)]), 100.0)),
                          _table(*forecast_rows(model["forecasts"]))))
    # 4. reputation
    rep = model["reputation"]
    parts.append(_section(SECTIONS[3], "Overall trust score (0..1, decayed by event time) at each agent's trust "
                          "events, computed with ledger.economics.reputation from the trust history.",
                          svg_lines(model["reputation_series"], "Reputation over time", lambda v: f"{v:.2f}",
                                    y_range=(0.0, 1.0)),
                          _table(["agent", "overall", "tier", "multiplier", "events"],
                                 [[r["agent_id"], round(r["overall"], 3), r["tier"], r["multiplier"],
                                   r["events_counted"]] for r in rep])))
    # 5. settlement graph
    g = model["settlement_graph"]
    parts.append(_section(SECTIONS[4], f"Agents on a circle; an arrow from payer to payee per {g['source']} "
                          "(dashed: open, not settled yet), labelled with the amount.",
                          svg_graph(g["agents"], g["edges"], "Settlement graph"),
                          _table(["payer", "payee", "amount", "transfers", "status"],
                                 [[e["payer"], e["payee"], usd(e["amount_micros"]), e["transfers"], e["status"]]
                                  for e in g["edges"]])))
    parts.append("</main>")
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tokenledger cost report</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
            + "".join(parts) + "</body></html>\n")


__all__ = ["SECTIONS", "build", "call_cost", "efficiency_rows", "forecast_rows", "price_book", "render_html",
           "run_verdict", "select_run", "stage_rows", "svg_graph", "svg_lines", "svg_waterfall", "usd", "write_html"]


def write_html(model: Mapping[str, Any], path: Path) -> Path:
    """Write the page to ``path`` (its directory must exist) and return the absolute path."""
    path = path.expanduser().resolve()
    if not path.parent.is_dir():
        raise ValidationError("html", str(path), "its directory does not exist")
    path.write_text(render_html(model), encoding="utf-8")
    return path
