"""`tokenledger report FILE...`: the one-shot attribution of Claude Code workflow files without a ledger home
(processors.report.model.build_files and the CLI's tables with a bar per stage, --json, --run, refusals).
Runs are written here (ledger.testing.samples builders); amounts are checked to the micro-dollar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.testing.samples import agent, degraded_run_doc, phase, sample_run_doc, wf_doc
from processors.cli import build_app
from processors.report.model import FILES_RATES, build_files

app = build_app()
runner = CliRunner()

# the sample run: Scope 31,204 haiku (1.6 USD/MTok blended) -> 49,926 micro-USD; Search 6 haiku agents (42,375 or
# 42,374 tokens) each rounded once; Verify 12 sonnet agents (60,063 or 60,062 tokens) at 4.8 each rounded once
SCOPE = 49_926
SEARCH = sum(round(t * 1.6) for t in [42_375] * 4 + [42_374] * 2)
VERIFY = sum(round(t * 4.8) for t in [60_063] * 4 + [60_062] * 8)


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # no home anywhere: a report of files must never open one
    monkeypatch.setenv("TOKENLEDGER_HOME", str(tmp_path / "no-such-home"))
    d = tmp_path / "runs"
    d.mkdir()
    (d / "wf_a.json").write_text(json.dumps(sample_run_doc()))
    (d / "wf_b.json").write_text(json.dumps(degraded_run_doc()))
    (d / "notes.json").write_text("not a run: directories stand for their wf_*.json only")
    return d


def test_build_files_attributes_each_run(runs: Path) -> None:
    model = build_files([runs])
    assert model["home"] is None and model["rates"] == FILES_RATES and model["problems"] == []
    assert model["files"] == [str(runs / "wf_a.json"), str(runs / "wf_b.json")]
    a, b = model["runs"]
    assert (a["run"], a["file"], a["total_tokens"], a["stage_tokens"]) == ("wf_sample-001", str(runs / "wf_a.json"),
                                                                         1_006_200, 1_006_200)
    assert [(s["stage"], s["calls"], s["tokens"], s["pct"], s["cost_micros"]) for s in a["stages"]] == [
        ("Scope", 1, 31_204, 3.1, SCOPE), ("Search", 6, 254_248, 25.3, SEARCH), ("Verify", 12, 720_748, 71.6, VERIFY)]
    assert a["total_micros"] == SCOPE + SEARCH + VERIFY and a["cost_is_estimate"] is True
    assert a["publishable"] is True and a["findings"] == [] and a["assumed_models"] == []
    # savings: everything on sonnet (the priciest model of the run) vs as routed
    assert a["savings"]["baseline_model"] == "claude-sonnet-4-6"
    assert a["savings"]["routed_micros"] == a["total_micros"]
    assert b["publishable"] is False
    assert [(f["stage"], f["kind"]) for f in b["findings"]] == [("Verify", "errors"), ("Verify", "cheap")]


def test_cli_tables_with_bars_and_no_home(runs: Path) -> None:
    r = runner.invoke(app, ["report", str(runs / "wf_a.json")])
    assert r.exit_code == 0, r.output
    assert "wf_sample-001" in r.output and "publishable" in r.output and "(estimate)" in r.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in r.output.splitlines() if line.startswith("│")}
    assert rows["Verify"] == ["12", "720,748", "71.6", f"${VERIFY / 1e6:.6f}", "#" * 36]
    assert rows["Search"] == ["6", "254,248", "25.3", f"${SEARCH / 1e6:.6f}", "#" * 13]
    assert rows["Scope"] == ["1", "31,204", "3.1", "$0.049926", "##"]
    assert "routing savings estimate: all on claude-sonnet-4-6" in r.output
    assert "costs are estimates" in r.output
    assert not (runs.parent / "no-such-home").exists()


def test_cli_json_and_run_selection(runs: Path) -> None:
    r = runner.invoke(app, ["report", str(runs), "--json", "--run", "wf_degraded-002"])
    assert r.exit_code == 0, r.output
    model = json.loads(r.output)
    assert [x["run"] for x in model["runs"]] == ["wf_degraded-002"]
    assert model["runs"][0]["stages"][1] == {"stage": "Verify", "tokens": 12_704, "calls": 8, "pct": 4.2,
                                             "cost_micros": 101_632, "states": {"error": 8}}
    missing = runner.invoke(app, ["report", str(runs), "--run", "wf_nope"])
    assert missing.exit_code == 2 and "is not a run in these files" in missing.output


def test_cli_names_models_priced_as_opus(tmp_path: Path) -> None:
    f = tmp_path / "wf_c.json"
    f.write_text(json.dumps(wf_doc("wf_c", [phase("Plan"), agent("p", "Plan", "gpt-4.1", 1_000_000)])))
    r = runner.invoke(app, ["report", str(f)])
    assert r.exit_code == 0, r.output
    assert "models in no price tier, priced as opus: gpt-4.1" in r.output
    assert json.loads(runner.invoke(app, ["report", str(f), "--json"]).output)["runs"][0]["total_micros"] == 8_000_000


def test_cli_bad_files_are_refused_and_the_rest_reported(runs: Path) -> None:
    bad = runs / "wf_c.json"
    bad.write_text(json.dumps(wf_doc("wf_c", [agent("x", "S", "claude-opus-4-6", "12")], total=12)))
    nojson = runs / "wf_d.json"
    nojson.write_text("{broken")
    r = runner.invoke(app, ["report", str(runs)])
    assert r.exit_code == 2
    assert "wf_sample-001" in r.output and "wf_degraded-002" in r.output
    assert f"error: {bad}: workflowProgress[0].tokens = '12': must be an integer, got str" in r.output
    assert f"error: {nojson}: file = '{nojson}': is not JSON" in r.output
    model = build_files([bad])
    assert model["runs"] == [] and model["problems"][0]["field"] == "workflowProgress[0].tokens"
    no_id = runs / "wf_e.json"
    no_id.write_text(json.dumps({"totalTokens": 1, "workflowProgress": []}))
    assert build_files([no_id])["problems"][0]["field"] == "runId"


def test_cli_refusals(runs: Path, tmp_path: Path) -> None:
    html = runner.invoke(app, ["report", str(runs), "--html", str(tmp_path / "r.html")])
    assert html.exit_code == 2 and "needs a home" in html.output and not (tmp_path / "r.html").exists()
    absent = runner.invoke(app, ["report", str(tmp_path / "absent.json")])
    assert absent.exit_code == 2 and "does not exist" in absent.output
    empty = tmp_path / "empty"
    empty.mkdir()
    none = runner.invoke(app, ["report", str(empty)])
    assert none.exit_code == 2 and "no files" in none.output
