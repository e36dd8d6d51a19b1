"""``tokenledger report``: the cost report as tables, JSON, or one self-contained HTML page.

Added to the app by ``register(app)`` (``processors.cli.build_app`` calls it).
The report is built from the published views only (processors/report/model.py), so it never blocks a
running processor and shows what the processors have published so far.
Never: fetch anything over the network, or write anywhere but the ``--html`` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ledger import limits
from ledger.cli.output import HomeOpt, JsonOpt, guarded, open_home, out, print_json, table
from processors.report.svg import usd

commands = typer.Typer()  # report


def register(app: typer.Typer) -> None:
    """Add report to ``app``."""
    app.add_typer(commands)


REPORT_EPILOG = ("Example: tokenledger report --html report.html   ·   tokenledger report --run run-1a2b3c4d --json")


def print_tables(model: dict[str, Any]) -> None:
    from processors.report import html as page  # imported when used: `query` must start fast
    t = model["totals"]
    table(f"cost report of {model['home']} (data up to {model['as_of'] or 'no events'})", ["total", "value"],
           [["events", t["events"]], ["signers", t["signers"]],
            ["agents (unregistered)", f"{t['agents']} ({t['unregistered_agents']})"], ["LLM calls", t["llm_calls"]],
            ["LLM tokens in / out", f"{t['input_tokens']:,} / {t['output_tokens']:,}"],
            ["LLM cost", usd(t["llm_cost_micros"])], ["interaction cost", usd(t["interaction_cost_micros"])],
            ["settled", usd(t["settled_micros"])], ["unpriced calls", t["unpriced_calls"]],
            ["runs not publishable", f"{t['unpublishable_runs']} of {t['runs']}"]])
    for run in model["runs"]:
        cols, rows = page.stage_rows(run)
        est = " (estimate)" if run["cost_is_estimate"] else ""
        table(f"cost waterfall of run {run['run']}: {usd(run['total_micros'])}{est} — {page.run_verdict(run)}",
               cols, rows)
        if run["savings"]:
            sv = run["savings"]
            out.print(f"routing savings estimate: all on {sv['baseline_model']} {usd(sv['baseline_micros'])}, "
                      f"as routed {usd(sv['routed_micros'])}, saved {usd(sv['saved_micros'])} "
                      f"({sv['saved_pct']}%)", markup=False)
    if model["unregistered_agents"]:
        table("agents named by imports that nobody registered (listed as named; register them to budget them)",
              ["agent", "recorded by", "events"],
              [[a["agent"], ", ".join(a["recorded_by"]), a["events"]] for a in model["unregistered_agents"]])
    for key in ("agent", "project"):
        table(f"efficiency per {key}", *page.efficiency_rows(model["efficiency"][key], key))
    cols, rows = page.efficiency_rows(model["efficiency"]["task"], "task")
    table(f"efficiency per task (costliest {min(len(rows), limits.MAX_TABLE_ROWS)} of {len(rows)})", cols,
           rows[:limits.MAX_TABLE_ROWS])
    table("model breakdown", *page.efficiency_rows(model["models"], "model"))
    table("budget burn-rate forecast (current window)", *page.forecast_rows(model["forecasts"]))
    g = model["settlement_graph"]
    table(f"settlement graph ({g['source']})", ["payer", "payee", "amount", "transfers", "status"],
           [[e["payer"], e["payee"], usd(e["amount_micros"]), e["transfers"], e["status"]] for e in g["edges"]])


@commands.command(epilog=REPORT_EPILOG)
@guarded
def report(home: str | None = HomeOpt, json_: bool = JsonOpt,
           html: Path | None = typer.Option(None, "--html", help="Also write one self-contained HTML page "
                                               "with charts to this file."),
           run: str | None = typer.Option(None, "--run", help="Only this run's cost waterfall.")) -> None:
    """Cost attribution per run (stage waterfall, sum invariant, degradation, routing savings), efficiency per
    agent / task / project / model, budget burn-rate forecasts, reputation and settlements."""
    from processors.report import html as page  # imported when used: `query` must start fast
    from processors.report import model as rep  # imported when used: `query` must start fast
    model = rep.select_run(rep.build(open_home(home)), run)
    path = page.write_html(model, html) if html is not None else None
    if json_:
        print_json({**model, "html": str(path) if path else None})
        return
    print_tables(model)
    if path is not None:
        out.print(f"report: {path}", markup=False)
