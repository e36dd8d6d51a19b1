"""The cost report as ONE self-contained HTML page, and the row layouts it shares with the CLI tables.

``render_html(model)`` turns the model of ``processors.report.model.build`` into a page with inline CSS and
the SVG charts of ``processors.report.svg``; ``write_html`` writes it. One function per numbered section
(``SECTIONS``), in page order.

Invariants: every text that reaches the page goes through ``html.escape``; the page has no script, no
external reference (fonts, styles, images) and no network access; times come from the data, never the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape as E
from pathlib import Path
from typing import Any

from ledger.errors import ValidationError
from ledger.limits import MAX_TABLE_ROWS
from ledger.wire.timefmt import fmt_time
from processors.report.svg import empty_chart, short_usd, svg_graph, svg_lines, svg_waterfall, usd

SECTIONS = ("Cost waterfall by stage", "Spend over time per agent", "Budget burn-down", "Reputation over time",
            "Settlement graph")

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


def _header(model: Mapping[str, Any]) -> str:
    filters = [f"{k}={v}" for k, v in model.get("filters", {}).items() if v is not None]
    only = f" · only {', '.join(filters)}" if filters else ""
    return (f"<header><h1>tokenledger cost report</h1><p>home {E(model['home'])} · data up to "
            f"{E(model['as_of'] or 'no events')} (event time){E(only)}</p></header><main>")


def _cards(totals: Mapping[str, Any]) -> str:
    t = totals
    cards = [("events", f"{t['events']:,}"), ("signers", f"{t['signers']:,}"),
             ("agents", f"{t['agents']:,}" + (f" ({t['unregistered_agents']:,} unregistered)"
                                              if t["unregistered_agents"] else "")),
             ("LLM calls", f"{t['llm_calls']:,}"),
             ("LLM tokens", f"{t['input_tokens'] + t['output_tokens']:,}"), ("LLM cost", usd(t["llm_cost_micros"])),
             ("interaction cost", usd(t["interaction_cost_micros"])), ("settled", usd(t["settled_micros"])),
             ("unpriced calls", f"{t['unpriced_calls']:,}"),
             ("runs not publishable", f"{t['unpublishable_runs']:,} of {t['runs']:,}")]
    return ('<div class="cards">' + "".join(f"<div class=\"card\"><b>{E(v)}</b><span>{E(k)}</span></div>"
                                            for k, v in cards) + "</div>")


def _run_parts(run: Mapping[str, Any]) -> list[str]:
    """One run's heading with its verdict, its waterfall chart, its stage table and its routing savings."""
    verdict = run_verdict(run)
    label = f"Cost waterfall of run {run['run']}"
    title = f"run {run['run']}" + (f" · workflow {run['workflow']}" if run["workflow"] else "")
    parts = [f"<h3>{E(title)} — {usd(run['total_micros'])}"
             f"{' (estimate)' if run['cost_is_estimate'] else ''} · "
             f'<span class="{"ok" if run["publishable"] else "bad"}">{E(verdict)}</span></h3>',
             svg_waterfall([(s["stage"], s["cost_micros"]) for s in run["stages"]], label),
             _table(*stage_rows(run))]
    sv = run["savings"]
    if sv:
        parts.append(f'<p class="caption">Routing savings estimate: all on {E(sv["baseline_model"])} '
                     "would cost "
                     f'{usd(sv["baseline_micros"])}; as routed {usd(sv["routed_micros"])}: saved '
                     f'{usd(sv["saved_micros"])} ({sv["saved_pct"]}%).</p>')
    return parts


def _waterfall_section(model: Mapping[str, Any]) -> str:
    """1. one waterfall per run."""
    run_parts = [part for run in model["runs"] for part in _run_parts(run)]
    return _section(SECTIONS[0], "Per run, each stage's cost stacked on the previous ones; the last bar is "
                    "the run's total, which the stages must add up to. A run with a degradation finding, a "
                    "broken sum or unpriced calls is flagged as not publishable.",
                    *(run_parts or [empty_chart("waterfall", "no runs")]))


def _spend_section(model: Mapping[str, Any]) -> str:
    """2. spend over time, then the efficiency tables."""
    return _section(SECTIONS[1], "Cumulative cost of each agent's own LLM calls over event time (UTC).",
                    svg_lines(model["spend_series"], "Spend over time per agent", short_usd),
                    "<h3>Efficiency per agent</h3>",
                    _table(*efficiency_rows(model["efficiency"]["agent"], "agent")),
                    "<h3>Efficiency per project</h3>",
                    _table(*efficiency_rows(model["efficiency"]["project"], "project")),
                    "<h3>Efficiency per task (costliest first)</h3>",
                    _table(*efficiency_rows(model["efficiency"]["task"], "task")),
                    "<h3>Model breakdown</h3>",
                    _table(*efficiency_rows(model["models"], "model")))


def _burn_section(model: Mapping[str, Any]) -> str:
    """3. budget burn-down with the forecast."""
    actual, projected = _burn_lines(model["forecasts"])
    return _section(SECTIONS[2], "Share of each budget's current-window allocation left: solid from the window "
                    "start to the latest event (the mean burn), dashed the forecast at that rate until it "
                    "runs out or the window resets.",
                    svg_lines(actual, "Budget burn-down", lambda v: f"{v:.0f}%", dashed=projected,
                              y_range=(min([0.0, *(p[1] for s in projected.values() for p in s)]), 100.0)),
                    _table(*forecast_rows(model["forecasts"])))


def _reputation_section(model: Mapping[str, Any]) -> str:
    """4. reputation over time and now."""
    return _section(SECTIONS[3], "Overall trust score (0..1, decayed by event time) at each agent's trust "
                    "events, computed with ledger.economics.reputation from the trust history.",
                    svg_lines(model["reputation_series"], "Reputation over time", lambda v: f"{v:.2f}",
                              y_range=(0.0, 1.0)),
                    _table(["agent", "overall", "tier", "multiplier", "events"],
                           [[r["agent_id"], round(r["overall"], 3), r["tier"], r["multiplier"],
                             r["events_counted"]] for r in model["reputation"]]))


def _settlement_section(model: Mapping[str, Any]) -> str:
    """5. the settlement graph (or the open pair balances, before any window closed)."""
    g = model["settlement_graph"]
    return _section(SECTIONS[4], f"Agents on a circle; an arrow from payer to payee per {g['source']} "
                    "(dashed: open, not settled yet), labelled with the amount.",
                    svg_graph(g["agents"], g["edges"], "Settlement graph"),
                    _table(["payer", "payee", "amount", "transfers", "status"],
                           [[e["payer"], e["payee"], usd(e["amount_micros"]), e["transfers"], e["status"]]
                            for e in g["edges"]]))


def render_html(model: Mapping[str, Any]) -> str:
    """ONE self-contained page: inline CSS and SVG, no script, no external reference."""
    parts = [_header(model), _cards(model["totals"]), _waterfall_section(model), _spend_section(model),
             _burn_section(model), _reputation_section(model), _settlement_section(model), "</main>"]
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tokenledger cost report</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
            + "".join(parts) + "</body></html>\n")


def write_html(model: Mapping[str, Any], path: Path) -> Path:
    """Write the page to ``path`` (its directory must exist) and return the absolute path."""
    path = path.expanduser().resolve()
    if not path.parent.is_dir():
        raise ValidationError("html", str(path), "its directory does not exist")
    path.write_text(render_html(model), encoding="utf-8")
    return path


__all__ = ["CSS", "SECTIONS", "efficiency_rows", "forecast_rows", "render_html", "run_verdict", "stage_rows",
           "write_html"]
