"""ledger.compat.acat.routing and ledger.compat.acat.cli against the reference package (a test oracle), and their
documented deviations; the command line is run as ``python -m ledger.compat.acat`` on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_cost_attribution import cli as ref_cli
from agent_cost_attribution import routing as ref_routing

from ledger.compat.acat import cli
from ledger.compat.acat.routing import MessageRouter, Router, savings_estimate
from ledger.errors import ValidationError
from ledger.testing.samples import degraded_run_doc, sample_run_doc

ROOT = Path(__file__).resolve().parents[3]
ROLES = {
    "chat": {"model": "claude-sonnet-4-6", "effort": "low", "note": "kept"},
    "chat_deep": {"model": "claude-opus-4-6", "effort": "high"},
    "summarise": {"model": "claude-haiku-4-5"},
}
TAGS = {"Big": {"model": "claude-fable-5", "effort": "max"}, "lite": {"model": "claude-haiku-4-5", "effort": None}}
PATTERN = r"(?:^|\b(?:now|please)\s+)(?:investigate|rewrite)\b"


def both(roles: dict[str, Any], path: Path | None = None) -> tuple[Router, Any]:
    return Router(roles, overrides_path=path), ref_routing.Router(roles, overrides_path=path)


def test_router_resolves_like_the_reference(tmp_path: Path) -> None:
    ours, theirs = both(ROLES)
    for role in ROLES:
        assert ours.resolve(role) == theirs.resolve(role)
        assert ours.model_for(role) == theirs.model_for(role)
    assert ours.resolve("chat") == {"model": "claude-sonnet-4-6", "effort": "low", "note": "kept"}
    got = ours.resolve("chat")
    got["model"] = "changed"
    assert ours.resolve("chat")["model"] == "claude-sonnet-4-6"
    assert ours.effort_for("summarise") is None
    with pytest.raises(KeyError):
        ours.resolve("chatt")


def test_router_overrides_live_and_fail_soft(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    ours, theirs = both(ROLES, path)
    assert ours.resolve("chat") == theirs.resolve("chat") and ours.problems[0].path == ""  # no file yet
    path.write_text(json.dumps({"chat": {"model": " claude-opus-4-6 ", "effort": " "}, "summarise": {"model": 3},
                                "chat_deep": [1]}))
    for role in ROLES:
        assert ours.resolve(role) == theirs.resolve(role)
    assert ours.resolve("chat") == {"model": "claude-opus-4-6", "effort": None, "note": "kept"}
    assert sorted(p.path for p in ours.problems) == ["chat_deep", "summarise.model"]
    path.write_text("{broken")  # re-read at every resolve: a corrupt file falls back to the defaults
    assert ours.resolve("chat") == ROLES["chat"] == theirs.resolve("chat")
    assert Router(ROLES, overrides_path=str(path)).overrides_path == path


def test_router_deviations_checked_at_construction() -> None:
    with pytest.raises(ValidationError) as e:
        Router({"chat": {"effort": "low"}})
    assert e.value.field == "roles[chat].model"
    with pytest.raises(ValidationError) as e:
        Router(ROLES, overrides_path=42)  # type: ignore[arg-type]
    assert e.value.field == "overrides_path"


@pytest.mark.parametrize("text", ["hello there", "investigate the outage", "please rewrite the intro",
                                  "the rewrite is done", "!lite investigate it", "now !BIG  think\tit over",
                                  "x!lite no", "!nosuch thing", "", None, 42])
def test_message_router_like_the_reference(text: Any) -> None:
    ours = MessageRouter(Router(ROLES), tags=TAGS, deep_pattern=PATTERN)
    theirs = ref_routing.MessageRouter(ref_routing.Router(ROLES), tags=TAGS, deep_pattern=PATTERN)
    assert ours.route(text) == theirs.route(text)


def test_message_router_exact_routes() -> None:
    mr = MessageRouter(Router(ROLES), tags=TAGS, deep_pattern=PATTERN)
    assert mr.route("now !BIG  think\tit over") == ({"model": "claude-fable-5", "effort": "max"}, "now think\tit over")
    assert mr.route("investigate the outage")[0] == {"model": "claude-opus-4-6", "effort": "high"}
    unknown = MessageRouter(Router(ROLES), tags={}, deep_pattern=PATTERN, default_role="nosuch")
    with pytest.raises(KeyError):
        unknown.route("hello")


def test_savings_like_the_reference_and_exact() -> None:
    traffic = {"chat": 2_000_000, "summarise": 3_000_000, "chat_deep": 500_000}
    ours = savings_estimate(traffic, ROLES, baseline_model="claude-fable-5")
    theirs = ref_routing.savings_estimate(traffic, ROLES, baseline_model="claude-fable-5")
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6)
    # routed: 2M sonnet 9.6 + 3M haiku 4.8 + 0.5M opus 4.0 = 18.4; baseline 5.5M fable x 16 = 88.0
    assert (ours["routed_usd"], ours["baseline_usd"], ours["saved_usd"]) == (18.4, 88.0, 69.6)
    with pytest.raises(KeyError):
        savings_estimate({"nosuch": 1}, ROLES, baseline_model="claude-fable-5")
    with pytest.raises(ValidationError):
        savings_estimate({"chat": -1}, ROLES, baseline_model="claude-fable-5")
    half = savings_estimate({"chat": 1_000_000}, ROLES, baseline_model="claude-opus-4-6", input_share=0.5)
    assert (half["routed_usd"], half["baseline_usd"]) == (9.0, 15.0)


# -------------------------------------------------------------------------------- cli


def test_render_sample_run_lines() -> None:
    text = cli.render(sample_run_doc())
    lines = text.splitlines()
    assert lines[0] == "sample-research  wf_sample-001  status=completed  total=1,006,200 tok  ~$3.92  invariant_ok=True"
    assert lines[1].startswith("  Verify           720,748   71.6%  ~$   3.46  n=12  " + "#" * 36)
    assert lines[2].startswith("  Search           254,248   25.3%  ~$   0.41  n=6   " + "#" * 13)
    assert lines[3] == "  Scope             31,204    3.1%  ~$   0.05  n=1   " + "#" * 2
    assert "DEGRADED" not in text and lines[-1].startswith("  ($ is an estimate")
    # the reference prints the same table rows
    assert ref_cli.render(sample_run_doc()).splitlines()[:4] == lines[:4]


def test_render_degraded_and_assumed_models() -> None:
    text = cli.render(degraded_run_doc())
    assert "! DEGRADED" in text and "[high] Verify: errors — 8 of 8 agents ended in state 'error'" in text
    doc = {"totalTokens": 10, "workflowProgress": [{"type": "workflow_agent", "phaseTitle": "A", "tokens": 10,
                                                    "model": "gpt-5"}]}
    assert "models in no price tier, priced as opus: gpt-5" in cli.render(doc)


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledger.compat.acat", *args], capture_output=True, text=True,
                          cwd=ROOT, check=False)


def test_module_cli_over_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "wf_b.json").write_text(json.dumps(degraded_run_doc()))
    (tmp_path / "wf_a.json").write_text(json.dumps(sample_run_doc()))
    (tmp_path / "other.json").write_text("ignored: not wf_*")
    done = run_module(str(tmp_path))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == cli.render(sample_run_doc()) + "\n\n" + cli.render(degraded_run_doc()) + "\n\n"
    single = run_module(str(tmp_path / "wf_a.json"))
    assert single.returncode == 0 and single.stdout.startswith("sample-research  wf_sample-001")


def test_module_cli_usage_nothing_found_and_failures(tmp_path: Path) -> None:
    usage = run_module()
    assert usage.returncode == 2 and usage.stderr.startswith("usage:")
    empty = run_module(str(tmp_path))
    assert empty.returncode == 1 and empty.stderr.strip() == "no run files found"
    (tmp_path / "wf_bad.json").write_text(json.dumps({"totalTokens": 5, "workflowProgress": [
        {"type": "workflow_agent", "tokens": "5"}]}))
    (tmp_path / "wf_ok.json").write_text(json.dumps(sample_run_doc()))
    mixed = run_module(str(tmp_path), str(tmp_path / "wf_absent.json"))
    assert mixed.returncode == 1  # deviation 7: the reference exits 0
    assert "wf_bad.json" in mixed.stderr and "workflowProgress[0].tokens" in mixed.stderr
    assert f"{tmp_path / 'wf_absent.json'}: unreadable/empty" in mixed.stderr
    assert mixed.stdout.startswith("sample-research")
    assert ref_cli.main([str(tmp_path / "wf_absent.json")]) == 0


def test_main_in_process(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "wf_a.json").write_text(json.dumps(sample_run_doc()))
    assert cli.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("sample-research")
    assert cli.main([]) == 2
