"""ledger.compat.acat (ledger, pricing, health) against the reference package agent-cost-attribution 0.1.1 as a test
oracle, and each documented deviation (the layer's docstring) as a test of its own. Runs are written here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import agent_cost_attribution as ref
import pytest
from agent_cost_attribution import health as ref_health
from agent_cost_attribution import pricing as ref_pricing

import ledger.compat.acat as acat
from ledger.compat.acat import health, pricing
from ledger.compat.acat import ledger as acat_ledger
from ledger.errors import ValidationError
from ledger.sources.attribution import WorkflowRun
from ledger.testing.samples import agent, degraded_run_doc, phase, sample_run_doc


def small_run() -> dict[str, Any]:
    """Two stages, one errored agent; no runId on purpose (the reference allows it)."""
    return {"workflowName": "triage", "status": "completed", "totalTokens": 7_000, "workflowProgress": [
        {"type": "workflow_phase", "phaseTitle": "Read"},
        {"type": "workflow_agent", "agentId": "r1", "label": "reader", "model": "claude-haiku-4-5",
         "phaseTitle": "Read", "state": "done", "tokens": 2_500, "toolCalls": 4},
        {"type": "workflow_agent", "agentId": "w1", "model": "claude-sonnet-4-6", "phaseTitle": "Write",
         "state": "error", "tokens": 4_000},
        {"type": "workflow_agent", "phaseTitle": "Read", "tokens": 500},  # no model, state, ids or toolCalls
    ]}


RUNS = [small_run, sample_run_doc, degraded_run_doc]


def test_public_names_are_the_packages() -> None:
    assert sorted(acat.__all__) == sorted(ref.__all__)
    for name in ref.__all__:
        assert callable(getattr(acat, name))
    for mod, names in ((pricing, ["PRICES", "DEFAULT_INPUT_SHARE", "tier", "_tier"]),
                       (acat_ledger, ["AgentRecord", "load_run"]), (health, ["detect_degradation", "is_healthy"])):
        for name in names:
            assert hasattr(mod, name)
    assert pricing._tier is pricing.tier


@pytest.mark.parametrize("make", RUNS)
def test_attribution_matches_the_reference(make: Any) -> None:
    doc = make()
    assert acat.decompose(doc) == ref.decompose(doc)
    assert list(acat.decompose(doc)) == list(ref.decompose(doc))  # first-seen order
    assert acat.summary(doc) == ref.summary(doc)
    assert acat.total_tokens(doc) == ref.total_tokens(doc)
    assert acat.verify_invariant(doc) is ref.verify_invariant(doc)
    ours = acat.agents(doc)
    theirs = ref.agents(doc)
    assert [(a.agent_id, a.label, a.stage, a.model, a.state, a.tokens) for a in ours] == \
           [(a.agent_id, a.label, a.stage, a.model, a.state, a.tokens) for a in theirs]


def test_agents_exact_fields() -> None:
    got = acat.agents(small_run())
    assert got == [acat.AgentRecord("r1", "reader", "Read", "claude-haiku-4-5", "done", 2_500, 4),
                   acat.AgentRecord("w1", "", "Write", "claude-sonnet-4-6", "error", 4_000, None),
                   acat.AgentRecord("", "", "Read", "", "?", 500, None)]
    assert acat.decompose(small_run()) == {"Read": 3_000, "Write": 4_000}
    s = acat.summary(small_run())
    assert s["run_id"] == "" and s["stages"]["Read"] == {"tokens": 3_000, "count": 2, "states": {"done": 1, "?": 1},
                                                         "pct": 42.9}


def test_invariant() -> None:
    doc = small_run()
    assert acat.verify_invariant(doc) is True
    doc["totalTokens"] = 7_001
    assert acat.verify_invariant(doc) is False
    assert acat.verify_invariant({}) is False
    assert acat.verify_invariant({"totalTokens": 0, "workflowProgress": [phase("Only")]}) is False


def test_typed_run_is_accepted_as_is() -> None:
    run = acat_ledger.as_run(small_run())
    assert isinstance(run, WorkflowRun) and acat_ledger.as_run(run) is run
    assert acat.decompose(run) == {"Read": 3_000, "Write": 4_000}


@pytest.mark.parametrize("make", RUNS)
def test_costs_match_the_reference_to_the_micro_dollar(make: Any) -> None:
    doc = make()
    ours, theirs = acat.cost_by_stage(doc), ref.cost_by_stage(doc)
    assert list(ours) == list(theirs)
    for stage in theirs:  # each agent rounded to whole micro-USD: at most half a micro-dollar per agent apart
        n = sum(1 for a in ref.agents(doc) if a.stage == stage)
        assert abs(ours[stage] - theirs[stage]) <= n * 0.5e-6 + 1e-12
    assert acat.total_cost(doc) == pytest.approx(sum(ours.values()), abs=1e-12)
    assert abs(acat.total_cost(doc) - ref.total_cost(doc)) <= len(ref.agents(doc)) * 0.5e-6 + 1e-12


def test_sample_run_costs_exactly() -> None:
    # Scope 31,204 haiku x 1.6 = 49,926.4 -> 49,926 micro-USD; Verify 720,748 sonnet x 4.8 = 3,459,590.4 split over
    # 12 agents (60,063 or 60,062 tokens) each rounded once
    costs = acat.cost_by_stage(sample_run_doc())
    assert costs["Scope"] == 0.049926
    verify_micros = sum(round(t * 4.8) for t in [60_063] * 4 + [60_062] * 8)
    assert costs["Verify"] == verify_micros / 1e6
    assert round(acat.total_cost(sample_run_doc()), 2) == 3.92


def test_pricing_functions_against_the_reference() -> None:
    for model in ["claude-fable-5", "claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5", "gpt-5", "", None]:
        assert pricing.tier(model) == ref_pricing.tier(model)
        for share in (0.0, 0.3, 0.85, 1.0):
            assert pricing.blended_rate(model, input_share=share) == pytest.approx(
                ref_pricing.blended_rate(model, input_share=share), rel=1e-12)
        assert pricing.estimate_cost(1_000_000, model) == pytest.approx(ref_pricing.estimate_cost(1_000_000, model))
    assert pricing.PRICES == ref_pricing.PRICES
    assert pricing.DEFAULT_INPUT_SHARE == ref_pricing.DEFAULT_INPUT_SHARE


@pytest.mark.parametrize("make", RUNS)
def test_degradation_matches_the_reference(make: Any) -> None:
    doc = make()
    ours = [(f["stage"], f["kind"], f["severity"]) for f in health.detect_degradation(doc)]
    assert ours == [(f["stage"], f["kind"], f["severity"]) for f in ref_health.detect_degradation(doc)]
    assert health.is_healthy(doc) is ref_health.is_healthy(doc)


def test_degradation_exact_findings() -> None:
    got = acat.detect_degradation(degraded_run_doc())
    assert [(f["stage"], f["kind"]) for f in got] == [("Verify", "errors"), ("Verify", "cheap")]
    assert got[0]["detail"] == "8 of 8 agents ended in state 'error'"
    assert acat.is_healthy(sample_run_doc()) is True
    # the cheap rule needs min_agents: with 9, Verify's 8 agents are not enough
    assert [f["kind"] for f in acat.detect_degradation(degraded_run_doc(), min_agents=9)] == ["errors"]
    assert acat.is_healthy(degraded_run_doc(), min_agents=9) is False


def test_load_run(tmp_path: Path) -> None:
    good = tmp_path / "wf_a.json"
    good.write_text(json.dumps(small_run()))
    assert acat.load_run(good) == small_run() == ref.load_run(good)
    assert acat.load_run(str(good)) == small_run()
    assert acat.load_run(tmp_path / "absent.json") == {} == ref.load_run(tmp_path / "absent.json")
    assert acat.load_run(tmp_path) == {}  # a directory is not a run file


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_load_run_unreadable_file_is_empty(tmp_path: Path) -> None:
    locked = tmp_path / "wf_locked.json"
    locked.write_text("{}")
    locked.chmod(0)
    assert acat.load_run(locked) == {}


# -------------------------------------------------------------------------------- deviations


@pytest.mark.parametrize(("tokens", "shown"), [("bad", "bad"), ("12.7", "12.7"), (12.7, 12.7), (True, True),
                                               (-5, -5), (None, None)])
def test_deviation_bad_token_counts_are_refused(tokens: Any, shown: Any) -> None:
    doc = {"totalTokens": 0, "workflowProgress": [phase("X"), agent("a", "X", "claude-opus-4-6", tokens)]}
    for fn in (acat.agents, acat.decompose, acat.summary, acat.verify_invariant, acat.cost_by_stage,
               acat.detect_degradation):
        with pytest.raises(ValidationError) as e:
            fn(doc)
        assert e.value.field == "workflowProgress[1].tokens" and e.value.value == shown


@pytest.mark.parametrize(("doc", "field"), [
    ({"workflowProgress": []}, "totalTokens"),
    ({"totalTokens": "10", "workflowProgress": []}, "totalTokens"),
    ({"totalTokens": 10}, "workflowProgress"),
    ({"totalTokens": 10, "workflowProgress": {"a": 1}}, "workflowProgress"),
    ({"totalTokens": 10, "workflowProgress": ["x"]}, "workflowProgress[0]"),
    ({"totalTokens": 10, "workflowProgress": [{"type": "agent", "tokens": 1}]}, "workflowProgress[0].type"),
    ({"totalTokens": 10, "workflowProgress": [{"type": "workflow_agent", "tokens": 1, "model": 5}]},
     "workflowProgress[0].model"),
])
def test_deviation_malformed_documents_are_refused(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        acat.summary(doc)
    assert e.value.field == field
    with pytest.raises(ValidationError):
        acat.decompose([doc])  # not a dict at all


def test_deviation_load_run_refuses_content_it_cannot_read(tmp_path: Path) -> None:
    broken = tmp_path / "wf_b.json"
    broken.write_text("{not json")
    assert ref.load_run(broken) == {}
    with pytest.raises(ValidationError) as e:
        acat.load_run(broken)
    assert e.value.field == "path" and "is not JSON" in e.value.reason
    listed = tmp_path / "wf_l.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValidationError) as e:
        acat.load_run(listed)
    assert "must hold a JSON object, got list" in e.value.reason


def test_deviation_exact_money() -> None:
    # 1 haiku token: 1.6 micro-USD, rounded once to 2 (the reference keeps the float 1.6e-06)
    assert pricing.estimate_cost(1, "claude-haiku-4-5") == 2e-06
    assert ref_pricing.estimate_cost(1, "claude-haiku-4-5") == pytest.approx(1.6e-06)
    with pytest.raises(ValidationError):
        pricing.estimate_cost(None, "claude-haiku-4-5")
    with pytest.raises(ValidationError) as e:
        pricing.estimate_cost(10, "claude-haiku-4-5", input_share=1.5)
    assert e.value.field == "input_share"
    with pytest.raises(ValidationError):
        pricing.tier(42)


def test_deviation_degradation_arguments_checked() -> None:
    with pytest.raises(ValidationError):
        acat.detect_degradation(sample_run_doc(), min_agents=-1)
    with pytest.raises(ValidationError):
        acat.detect_degradation(sample_run_doc(), cheap_ratio="0.25")
