"""The cost report: metrics formulas, burn-rate forecasts, `tokenledger report` tables / JSON / HTML,
the demo's pointer to its report, and the page rendering in headless Chromium without console errors."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from support.chromium import render
from typer.testing import CliRunner

from ledger.testing.samples import degraded_run_doc, sample_run_doc
from processors.cli import build_app
from processors.report.html import SECTIONS
from processors.report.metrics import burn_forecast, efficiency, model_breakdown

app = build_app()  # the whole `tokenledger` command, as the console script builds it

runner = CliRunner()
HOUR = 3_600_000_000


# ------------------------------------------------------------------ metrics on hand-made rows

CALLS = [
    {"agent": "a", "task": "t1", "project": "p", "model": "m1", "input_tokens": 1000, "output_tokens": 250,
     "cache_read_tokens": 400, "cost_micros": 10},
    {"agent": "a", "task": "t2", "project": "p", "model": "m2", "input_tokens": 3000, "output_tokens": 750,
     "cache_read_tokens": 0, "cost_micros": 15},
    {"agent": "b", "task": "t1", "project": "p", "model": "m1", "input_tokens": 0, "output_tokens": 0,
     "cache_read_tokens": 0, "cost_micros": None},
]


def test_efficiency_per_agent_formulas():
    a, b = efficiency(CALLS, "agent")
    assert a == {"agent": "a", "calls": 2, "input_tokens": 4000, "output_tokens": 1000, "cache_read_tokens": 400,
                 "cost_micros": 25, "unpriced_calls": 0, "tokens": 5000, "tokens_per_call": 2500.0,
                 "cache_hit_rate": 0.1, "output_input_ratio": 0.25, "iterations": 2,
                 "cost_per_iteration_micros": 12}  # 25 / 2 = 12.5 -> 12, half to even
    # no input: the ratios are unknown (None), not 0; an unpriced call adds no money but is counted
    assert b["cache_hit_rate"] is None and b["output_input_ratio"] is None
    assert b["cost_micros"] == 0 and b["unpriced_calls"] == 1 and b["cost_per_iteration_micros"] == 0


def test_efficiency_per_task_and_project_and_models():
    t1, t2 = sorted(efficiency(CALLS, "task"), key=lambda r: r["task"])
    assert (t1["calls"], t1["cost_micros"], t1["iterations"], t1["cache_hit_rate"]) == (2, 10, 1, 0.4)
    assert t2["cost_per_iteration_micros"] == 15
    (p,) = efficiency(CALLS, "project")
    assert (p["calls"], p["tokens"], p["cost_micros"], p["iterations"], p["cost_per_iteration_micros"]) == (3, 5000, 25,
                                                                                                            2, 12)
    m2, m1 = model_breakdown(CALLS)  # sorted by cost, descending
    assert (m2["model"], m2["token_share_pct"], m2["cost_share_pct"]) == ("m2", 75.0, 60.0)
    assert (m1["model"], m1["token_share_pct"], m1["cost_share_pct"]) == ("m1", 25.0, 40.0)
    with pytest.raises(ValueError):
        efficiency(CALLS, "colour")


def budget(consumed, remaining, start=0, end=HOUR):
    return {"scope": "agent", "scope_id": "a", "budget_kind": "llm_tokens", "unit": "tokens",
            "allocation": consumed + remaining, "consumed": consumed, "remaining": remaining,
            "window_start_us": start, "window_end_us": end}


def test_burn_forecast():
    quarter = HOUR // 4
    half, dry, idle, spent, late = burn_forecast(
        [budget(250, 750), budget(900, 100), budget(0, 1000), budget(1000, 0), budget(250, 750, start=-HOUR, end=0)],
        as_of_us=quarter)
    # 250 in 15 min = 1000/h; 750 left -> 45 more minutes: exactly at the window's end, so not before reset
    assert (half["rate_per_hour"], half["exhausts_at_us"], half["exhausts_in_window"]) == (1000, HOUR, False)
    assert (dry["exhausts_at_us"], dry["exhausts_in_us"], dry["exhausts_in_window"]) == (
        quarter + quarter // 9, quarter // 9, True)  # 100 left at 900 per quarter hour
    assert idle["exhausts_at_us"] is None and idle["rate_per_hour"] == 0 and not idle["exhausts_in_window"]
    assert spent["exhausts_at_us"] == quarter and spent["exhausts_in_us"] == 0 and spent["exhausts_in_window"]
    # a window that ended before as_of: as_of is clamped to its end (the forecast never reads the clock)
    assert late["as_of_us"] == 0 and late["elapsed_us"] == HOUR and late["rate_per_hour"] == 250
    # as_of before the window start: nothing elapsed, no rate, no forecast
    (early,) = burn_forecast([budget(5, 5, start=HOUR, end=2 * HOUR)], as_of_us=0)
    assert early["elapsed_us"] == 0 and early["rate_per_hour"] is None and early["exhausts_at_us"] is None


# ------------------------------------------------------------------ the report on a real demo home


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("report") / "home"
    r = runner.invoke(app, ["demo", "--tasks", "10", "--home", str(home)])
    assert r.exit_code == 0, r.output
    return home, r.output


def test_demo_points_at_its_report(demo_home):
    home, output = demo_home
    last = output.strip().splitlines()[-1]
    assert last == f"report: {home / 'report.html'}"
    assert (home / "report.html").stat().st_size > 10_000


def test_report_tables(demo_home):
    home, _ = demo_home
    r = runner.invoke(app, ["report", "--home", str(home)])
    assert r.exit_code == 0, r.output
    for title in ("cost report of", "cost waterfall of run", "publishable", "routing savings estimate",
                  "efficiency per agent", "efficiency per project", "efficiency per task", "model breakdown",
                  "budget burn-rate forecast", "settlement graph"):
        assert title in r.output, title
    for stage in ("plan", "research", "draft", "review"):
        assert stage in r.output


def test_report_json_and_run_filter(demo_home):
    home, _ = demo_home
    r = runner.invoke(app, ["report", "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    model = json.loads(r.output)
    (run,) = model["runs"]
    assert run["invariant_ok"] and run["publishable"] and run["unpriced_calls"] == 0
    assert sum(s["cost_micros"] for s in run["stages"]) == run["total_micros"]
    t = model["totals"]
    assert run["total_micros"] == t["llm_cost_micros"] + t["interaction_cost_micros"]
    assert sum(a["cost_micros"] for a in model["efficiency"]["agent"]) == t["llm_cost_micros"]
    # the LLM cost is the one the budgets processor counted against the project's usd budget (all of it
    # when the demo's events fall in the budget's current window; it may straddle an hourly reset)
    (usd_budget,) = [f for f in model["forecasts"] if f["budget_kind"] == "usd"]
    first_call_us = min(points[0][0] for points in model["spend_series"].values())
    if usd_budget["window_start_us"] <= first_call_us:
        assert usd_budget["consumed"] == t["llm_cost_micros"]
    else:
        assert 0 < usd_budget["consumed"] < t["llm_cost_micros"]
    assert set(model["spend_series"]) == {a["agent"] for a in model["efficiency"]["agent"]}
    assert model["reputation_series"] and model["settlement_graph"]["agents"]
    r = runner.invoke(app, ["report", "--home", str(home), "--json", "--run", run["run"]])
    assert r.exit_code == 0 and [x["run"] for x in json.loads(r.output)["runs"]] == [run["run"]]
    r = runner.invoke(app, ["report", "--home", str(home), "--run", "no-such-run"])
    assert r.exit_code == 2 and "no-such-run" in r.output


def assert_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "@import" not in text and "url(http" not in text
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", text)  # only in-page references


def test_html_is_self_contained_with_every_chart(demo_home, tmp_path):
    home, _ = demo_home
    page = tmp_path / "r.html"
    r = runner.invoke(app, ["report", "--home", str(home), "--html", str(page)])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == f"report: {page.resolve()}"
    text = page.read_text()
    assert_self_contained(text)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text
    assert text.count("<svg") >= len(SECTIONS)
    for label in ("Cost waterfall of run", "Spend over time per agent", "Budget burn-down", "Reputation over time",
                  "Settlement graph"):
        assert f'aria-label="{label}' in text


def test_imported_workflow_runs_are_attributed(tmp_path):
    home = str(tmp_path / "h")
    files = []
    for name, doc in (("wf_sample.json", sample_run_doc()), ("wf_degraded.json", degraded_run_doc())):
        files.append(str(tmp_path / name))
        Path(files[-1]).write_text(json.dumps(doc))
    # the runs claim a fixed past date: the importer needs the operator's backfill grant reaching back to it
    for args in (["init", "--home", home], ["agent", "register", "importer", "--home", home],
                 ["agent", "grant", "importer", "backfill", "--max-age", "3650d", "--home", home],
                 ["import", "claude-code", *files, "--time", "2026-01-01T00:00:00Z",
                  "--home", home], ["run", "journal", "--until-caught-up", "--home", home],
                 ["run", "allocations", "--until-caught-up", "--home", home]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", "--home", home, "--json"])
    assert r.exit_code == 0, r.output
    runs = {x["run"]: x for x in json.loads(r.output)["runs"]}
    assert len(runs) == 2 and all(x["source"] == "workflow" and x["cost_is_estimate"] for x in runs.values())
    good, bad = runs[sample_run_doc()["runId"]], runs[degraded_run_doc()["runId"]]
    assert [s["tokens"] for s in good["stages"]] == [31_204, 254_248, 720_748]
    assert good["publishable"] and good["invariant_ok"] and not good["findings"]
    # one total everywhere: the run's estimate (priced from the book on the log, not a second table), its stages,
    # the routing estimate's routed amount, and the llm_calls rows of its agents (flagged as estimates)
    assert good["unpriced_calls"] == 0 and sum(s["cost_micros"] for s in good["stages"]) == good["total_micros"]
    assert good["savings"]["routed_micros"] == good["total_micros"]
    from ledger.sdk.home import Home
    from processors import views
    from processors.report.model import book_rates, price_book

    with views.connect_views(Home.open(Path(home))) as con:
        (calls_total, estimates) = con.execute("SELECT sum(cost_micros), bool_and(estimate) FROM llm_calls "
                                               "WHERE run = ?", [good["run"]]).fetchone()
        tables = []
        for sql in ("SELECT * FROM prices", "SELECT * FROM price_matches"):
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            tables.append([dict(zip(names, row, strict=True)) for row in cur.fetchall()])
        book = price_book(*tables)
    assert calls_total == good["total_micros"] and estimates
    NOW_US = time.time_ns() // 1000
    opus = book_rates(book, NOW_US)("claude-opus-4-6")
    assert opus is not None and opus == (book.price_at("anthropic", "claude-opus-4-6", NOW_US).input,
                                         book.price_at("anthropic", "claude-opus-4-6", NOW_US).output)
    assert not bad["publishable"] and {f["kind"] for f in bad["findings"]} == {"errors", "cheap"}
    r = runner.invoke(app, ["report", "--home", home])
    assert "NOT publishable" in r.output


# ------------------------------------------------------------------ headless Chromium


def test_console_detector_flags_a_page_with_a_js_error(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p id="x">x</p><script>throw new Error("deliberate")</script>'
                   "</body></html>")
    dom, console = render(bad, tmp_path)
    assert 'id="x"' in dom
    assert any("deliberate" in ln for ln in console), console


def test_report_renders_in_chromium_without_console_errors(demo_home, tmp_path):
    home, _ = demo_home
    dom, console = render(home / "report.html", tmp_path)
    assert console == []
    assert dom.count("<svg") >= len(SECTIONS) and "<polyline" in dom and "<rect" in dom and "<circle" in dom
    for title in SECTIONS:
        assert title in dom


def test_the_reports_llm_cost_is_the_llm_calls_view_and_unpriced_agrees(tmp_path):
    """One cost path: the report's LLM cost is sum(cost_micros) over llm_calls (side 'call'), call by call the
    cost the book on the log gives (dated ids resolved by the catalog's rules), and its unpriced count is the
    unpriced view's calls."""
    from support.econ import control
    from support.econ import run as run_processor

    from ledger.economics.catalog import catalog_book, sync_plan
    from ledger.economics.pricing import PriceBook, usage_cost
    from ledger.sdk.emitter import Emitter
    from ledger.testing.homes import T0, make_home
    from ledger.wire.events import Context
    from processors import REGISTRY, views
    from processors.report.model import build

    h = make_home(tmp_path / "home", agents=("alice", "bob"))
    plan = sync_plan(PriceBook(), catalog_book(["anthropic", "openai"]), T0)
    control(h, plan, t=T0 + 10)
    calls = [("anthropic", "claude-haiku-4-5-20251001", 120_000, 900), ("openai", "gpt-4.1-2025-04-14", 5_000, 300),
             ("anthropic", "claude-sonnet-4-5", 250_000, 4_000), ("acme", "no-such-model", 1_000, 10)]
    with Emitter.open("alice", home=h.path, context=Context(org="o", project="p", task="t", run="r1", stage="s"),
                      background_flush=False) as em:
        for i, (provider, model, tin, tout) in enumerate(calls):
            em.action("llm", provider=provider, model=model, input_tokens=tin, output_tokens=tout,
                      event_time_us=T0 + 1_000 + i)
    for name in sorted(REGISTRY):
        run_processor(h, name, publish=True)
    report = build(h)
    with views.connect_views(h) as con:
        (total,) = con.execute("SELECT sum(cost_micros) FROM llm_calls WHERE side = 'call'").fetchone()
        (unpriced,) = con.execute("SELECT count(*) FROM unpriced WHERE source = 'call'").fetchone()
        priced = con.execute("SELECT model, priced_model, cost_micros FROM llm_calls ORDER BY event_time_us").fetchall()
    assert report["totals"]["llm_cost_micros"] == total and report["totals"]["unpriced_calls"] == unpriced == 1
    book = PriceBook()
    for body in plan:
        (book.apply_price_set if hasattr(body, "input_micros_per_mtok") else book.apply_price_match)(body, T0 + 10)
    for (provider, model, tin, tout), (got_model, priced_as, cost) in zip(calls[:3], priced, strict=True):
        price = book.price_at(provider, model, T0 + 2_000, input_tokens=tin)
        assert got_model == model and cost == usage_cost(price, input_tokens=tin, output_tokens=tout).total
        assert priced_as == price.model
