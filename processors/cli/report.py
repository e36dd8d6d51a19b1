"""``tokenledger report``: the cost report as tables, JSON, or one self-contained HTML page; ``tokenledger report
FILE...``: the one-shot attribution of Claude Code workflow files (``wf_*.json``, or directories of them) without a
home, as waterfalls with a bar per stage (``processors.report.model.build_files``).

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
from ledger.cli.output import HomeOpt, JsonOpt, err, exit, guarded, open_home, out, print_json, table
from ledger.errors import ExitCode, ValidationError
from processors.report.svg import usd

commands = typer.Typer()  # report


def register(app: typer.Typer) -> None:
    """Add report to ``app``."""
    app.add_typer(commands)


REPORT_EPILOG = ("Example: tokenledger report --html report.html   ·   tokenledger report --run run-1a2b3c4d --json"
                 "   ·   tokenledger report runs/wf_x.json")
PCT_PER_BAR_MARK = 2  # FILES waterfalls: one '#' per this many percent of the run's reported total


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


def print_file_runs(model: dict[str, Any]) -> None:
    """The FILES report: each run's waterfall (first-seen stage order) with a bar per stage, its verdict, the
    models priced as opus for want of a tier, the savings estimate; then what every amount here is."""
    from processors.report import html as page  # imported when used: `query` must start fast
    for run in model["runs"]:
        cols, rows = page.stage_rows(run)
        bars = ["#" * round(s["pct"] / PCT_PER_BAR_MARK) for s in run["stages"]]  # half-to-even
        table(f"{run['file']}: run {run['run']} ({run['workflow'] or '?'}, status {run['status'] or '?'}), "
              f"{run['total_tokens']:,} tokens, {usd(run['total_micros'])} (estimate) — {page.run_verdict(run)}",
              [*cols, "share"], [[*r, b] for r, b in zip(rows, bars, strict=True)])
        if run["assumed_models"]:
            out.print("models in no price tier, priced as opus: " + ", ".join(run["assumed_models"]), markup=False)
        if run["savings"]:
            sv = run["savings"]
            out.print(f"routing savings estimate: all on {sv['baseline_model']} {usd(sv['baseline_micros'])}, "
                      f"as routed {usd(sv['routed_micros'])}, saved {usd(sv['saved_micros'])} "
                      f"({sv['saved_pct']}%)", markup=False)
    out.print(f"costs are estimates: {model['rates']}; 85% of each token priced as input (the telemetry has no "
              "input/output split)", markup=False)


def _file_problems(model: dict[str, Any]) -> None:
    """Each refused file on stderr, then the command's exit code for bad input (after the other runs were shown)."""
    if not model["problems"]:
        return
    for p in model["problems"]:
        err.print(f"error: {p['file']}: {p['field']} = {p['value']}: {p['reason']}", markup=False)
    exit(ExitCode.BAD_INPUT)  # a file broke a rule, as a ValidationError would exit


@commands.command(epilog=REPORT_EPILOG)
@guarded
def report(files: list[Path] | None = typer.Argument(
               None, show_default=False, help="Claude Code workflow files (wf_*.json) or directories of them: "
               "attribute them without a home (estimates at the reference tier prices)."),
           home: str | None = HomeOpt, json_: bool = JsonOpt,
           html: Path | None = typer.Option(None, "--html", help="Also write one self-contained HTML page "
                                               "with charts to this file."),
           run: str | None = typer.Option(None, "--run", help="Only this run's cost waterfall.")) -> None:
    """Cost attribution per run (stage waterfall, sum invariant, degradation, routing savings), efficiency per
    agent / task / project / model, budget burn-rate forecasts, reputation and settlements. With FILES: the
    one-shot attribution of workflow files, no home opened."""
    from processors.report import html as page  # imported when used: `query` must start fast
    from processors.report import model as rep  # imported when used: `query` must start fast
    if files:
        if html is not None:
            raise ValidationError("--html", str(html), "needs a home: the page shows a home's views",
                                  hint="drop FILES to report the home, or --html to report the files")
        model = rep.build_files(files)
        if run is not None:
            model = rep.select_run(model, run)
        if json_:
            print_json(model)
        else:
            print_file_runs(model)
        _file_problems(model)
        return
    model = rep.select_run(rep.build(open_home(home)), run)
    path = page.write_html(model, html) if html is not None else None
    if json_:
        print_json({**model, "html": str(path) if path else None})
        return
    print_tables(model)
    if path is not None:
        out.print(f"report: {path}", markup=False)
