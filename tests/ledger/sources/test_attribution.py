"""Cost attribution, differentially against the reference meter (agent_cost_attribution 0.1.1).

Method: hypothesis generates well-formed workflow runs (stages in any order, agents on every price
tier and on unknown models, every state, totals that match or miss the agent sum, tiny and huge token
counts); each run is given to the reference as the raw dict and to us through our parser, and the
waterfall, summary, invariant, degradation findings, health, blended rates, cost estimate and
routing savings must agree (money within the rounding rule: at most half a micro-USD per agent).
The reference's sample run is pinned to the figures its README prints. Every place where we
deliberately differ has its own test named ``test_deviation_*`` showing both behaviours.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from typing import Any

import agent_cost_attribution as ref
import pytest
from agent_cost_attribution import routing as ref_routing
from agent_cost_attribution.cli import render
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import ValidationError
from ledger.sources.attribution import (
    DEFAULT_INPUT_SHARE,
    WorkflowAgent,
    WorkflowRun,
    blended_rate,
    decompose,
    detect_degradation,
    estimate_cost_micros,
    estimate_run_cost,
    is_healthy,
    report,
    runs_from_events,
    savings_estimate,
    summarize,
    tier,
    verify_invariant,
)
from ledger.sources.importers import parse, parse_workflow_run, workflow_records
from ledger.testing.homes import T0
from ledger.testing.samples import agent, degraded_run_doc, phase, sample_run_doc, wf_doc
from ledger.wire.events import Action, Context, Event, LlmUsage

MODELS = ["claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-6", "fable-large", "gpt-4.1", "sonnet-opus-mix",
          "Claude-HAIKU-3"]
STATES = ["completed", "error", "failed", "errored", "?", "running"]
STAGES = ["Scope", "Search", "Fetch", "Verify", "Report", "?"]
MICRO = 1e-6


def ours(doc: dict[str, Any]) -> WorkflowRun:
    run, problems = parse_workflow_run(doc, source="generated")
    assert run is not None and problems == (), problems
    return run


@st.composite
def run_docs(draw: Any) -> dict[str, Any]:
    tokens = st.one_of(st.integers(0, 2_000), st.integers(0, 3_000_000))
    rows = draw(st.lists(st.tuples(st.sampled_from(STAGES), st.sampled_from(MODELS), st.sampled_from(STATES), tokens),
                         max_size=30))
    entries: list[dict[str, Any]] = []
    last_stage = None
    for i, (stage, model, state, count) in enumerate(rows):
        if stage != last_stage and draw(st.booleans()):
            entries.append(phase(stage))
        last_stage = stage
        entries.append(agent(f"a{i}", stage, model, count, state=state, tool_calls=draw(st.integers(0, 50))))
    total = sum(count for *_, count in rows) + draw(st.sampled_from([0, 0, 0, 1, -1, 1_000]))
    return wf_doc(f"wf_{draw(st.integers(0, 10**6))}", entries, total=max(total, 0),
                  status=draw(st.sampled_from(["completed", "failed", ""])))


def ref_findings(doc: dict[str, Any], **kw: Any) -> list[tuple[str, str, str]]:
    return [(f["stage"], f["kind"], f["severity"]) for f in ref.detect_degradation(doc, **kw)]


# ------------------------------------------------------------------------------- differential


@settings(max_examples=300, deadline=None, derandomize=True)
@given(run_docs())
def test_waterfall_summary_and_invariant_match_the_reference(doc):
    run = ours(doc)
    assert list(decompose(run)) == list(ref.decompose(doc).items())
    assert verify_invariant(run) == ref.verify_invariant(doc)
    expected = ref.summary(doc)
    got = summarize(run)
    assert (got.run_id, got.workflow, got.status, got.total_tokens, got.invariant_ok) == (
        expected["run_id"], expected["workflow"], expected["status"], expected["total_tokens"],
        expected["invariant_ok"])
    assert [(s.stage, s.tokens, s.count, list(s.states), s.pct) for s in got.stages] == [
        (stage, s["tokens"], s["count"], list(s["states"].items()), s["pct"])
        for stage, s in expected["stages"].items()]
    assert got.agent_tokens == sum(a.tokens for a in ref.agents(doc))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(run_docs(), st.integers(0, 7), st.sampled_from([0.25, 0.5, 0.125, 1.0]))
def test_degradation_findings_match_the_reference(doc, min_agents, cheap_ratio):
    run = ours(doc)
    findings = detect_degradation(run, min_agents=min_agents, cheap_ratio=cheap_ratio)
    assert [(f.stage, f.kind, f.severity) for f in findings] == ref_findings(doc, min_agents=min_agents,
                                                                            cheap_ratio=cheap_ratio)
    for finding, expected in zip(findings, ref.detect_degradation(doc, min_agents=min_agents, cheap_ratio=cheap_ratio),
                                  strict=True):
        numbers = [int(n) for n in re.findall(r"\d+", expected["detail"])]
        if finding.kind == "errors":
            assert numbers[:2] == [finding.error_agents, finding.agents]
        else:
            assert f"{float(finding.mean_tokens):.0f}" in expected["detail"] and finding.agents in numbers
    assert is_healthy(run, min_agents=min_agents, cheap_ratio=cheap_ratio) == ref.is_healthy(
        doc, min_agents=min_agents, cheap_ratio=cheap_ratio)
    assert report(run, min_agents=min_agents, cheap_ratio=cheap_ratio).publishable == ref.is_healthy(
        doc, min_agents=min_agents, cheap_ratio=cheap_ratio)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(run_docs(), st.sampled_from([0.85, 0.5, 0.7, 1.0, 0.0, 0.95]))
def test_cost_estimate_matches_the_reference_within_rounding(doc, share):
    run = ours(doc)
    cost = estimate_run_cost(run, share)
    expected = ref.cost_by_stage(doc, input_share=share)
    assert [stage for stage, _ in cost.by_stage] == list(expected)
    agents_per_stage = {stage: sum(1 for a in run.agents if a.stage == stage) for stage in expected}
    for stage, micros in cost.by_stage:
        assert abs(micros * MICRO - expected[stage]) <= agents_per_stage[stage] * 0.5 * MICRO + 1e-9
    assert cost.total_micros == sum(m for _, m in cost.by_stage)
    expected_total = ref.total_cost(doc, input_share=share)
    assert abs(cost.total_micros * MICRO - expected_total) <= len(run.agents) * 0.5 * MICRO + 1e-9


@pytest.mark.parametrize("model", [*MODELS, "", "unknown-model"])
@pytest.mark.parametrize("share", [0.85, 0.0, 1.0, 0.3])
def test_blended_rates_and_tiers_match_the_reference(model, share):
    from agent_cost_attribution import pricing
    assert tier(model) == pricing.tier(model)
    assert float(blended_rate(model, share)) / 1e12 == pytest.approx(ref.blended_rate(model, input_share=share),
                                                                     rel=1e-12)
    assert abs(estimate_cost_micros(123_457, model, share) * MICRO
               - ref.estimate_cost(123_457, model, input_share=share)) <= 0.5 * MICRO + 1e-12


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["chat", "search", "verify", "report"]), st.integers(0, 5_000_000), max_size=4),
       st.sampled_from(MODELS), st.sampled_from(MODELS), st.sampled_from(MODELS), st.sampled_from([None, 0.85, 0.6]))
def test_routing_savings_match_the_reference(traffic, cheap, strong, baseline, share):
    routes = {"chat": cheap, "search": cheap, "verify": strong, "report": strong}
    expected = ref_routing.savings_estimate(traffic, {r: {"model": m} for r, m in routes.items()},
                                            baseline_model=baseline, input_share=share)
    got = savings_estimate(traffic, routes, baseline_model=baseline,
                           **({} if share is None else {"input_share": share}))
    slack = len(traffic) * 0.5 * MICRO + 1e-9
    assert abs(got.baseline_micros * MICRO - expected["baseline_usd"]) <= slack
    assert abs(got.routed_micros * MICRO - expected["routed_usd"]) <= slack
    assert got.saved_micros == got.baseline_micros - got.routed_micros
    if expected["baseline_usd"]:
        assert got.saved_pct == pytest.approx(expected["saved_pct"], rel=1e-9, abs=1e-9)
    else:
        assert got.saved_pct == expected["saved_pct"] == 0.0


def test_a_run_without_agents_matches_the_reference():
    doc = wf_doc("wf_empty", [phase("Scope")], total=0)
    run = ours(doc)
    assert (decompose(run), verify_invariant(run), detect_degradation(run)) == ((), False, ())
    assert (ref.decompose(doc), ref.verify_invariant(doc), ref.detect_degradation(doc)) == ({}, False, [])


# ------------------------------------------------------------------------------- the reference's sample run


def test_sample_run_gives_the_reference_readme_figures():
    doc = sample_run_doc()
    r = report(ours(doc))
    assert (r.summary.total_tokens, r.summary.invariant_ok, r.publishable) == (1_006_200, True, True)
    assert [(s.stage, s.tokens, s.pct, s.count) for s in sorted(r.summary.stages, key=lambda s: -s.tokens)] == [
        ("Verify", 720_748, 71.6, 12), ("Search", 254_248, 25.3, 6), ("Scope", 31_204, 3.1, 1)]
    costs = dict(r.cost.by_stage)
    assert (round(r.cost.total_micros, -4), round(costs["Verify"], -4), round(costs["Search"], -4),
            round(costs["Scope"], -4)) == (3_920_000, 3_460_000, 410_000, 50_000)
    assert r.cost.total_micros == 3_916_314 and r.cost.assumed_models == ()
    assert abs(r.cost.total_micros * MICRO - ref.total_cost(doc)) <= 19 * 0.5 * MICRO
    assert "~$3.92" in render(doc) and f"~${r.cost.total_micros * MICRO:,.2f}" == "~$3.92"


def test_degraded_run_is_flagged_and_not_publishable_like_the_reference():
    doc = degraded_run_doc()
    r = report(ours(doc))
    assert [(f.stage, f.kind) for f in r.findings] == [("Verify", "errors"), ("Verify", "cheap")]
    assert [(s, k) for s, k, _ in ref_findings(doc)] == [("Verify", "errors"), ("Verify", "cheap")]
    assert not r.publishable and r.findings[0].error_agents == 8 and r.findings[1].mean_tokens == 1_588
    assert r.summary.status == "completed"  # the run's own status claims success; it is ignored


def test_runs_rebuilt_from_imported_events_equal_the_parsed_runs():
    run = ours(sample_run_doc())
    events = [Event(event_id=f"{i:032x}", signer_id="importer", seq=i + 1, prev_hash=bytes(32),
                    idempotency_key=rec.idempotency_key, event_time_us=rec.event_time_us, context=rec.context,
                    body=rec.body)
              for i, rec in enumerate(workflow_records(run, T0))]
    assert runs_from_events(events) == (run,)
    twice = [*events, Event(event_id=f"{99:032x}", signer_id="importer-2", seq=1, prev_hash=bytes(32),
                            idempotency_key=events[0].idempotency_key, event_time_us=T0, context=events[0].context,
                            body=events[0].body)]
    assert runs_from_events(twice) == (run,)  # the same entry imported by a second signer counts once
    changed = Action(operation="workflow.agent", usage=LlmUsage("anthropic", "claude-haiku-4-5", 1, 0))
    conflicting = [*events, Event(event_id=f"{98:032x}", signer_id="importer-2", seq=2, prev_hash=bytes(32),
                                  idempotency_key=None, event_time_us=T0, context=events[0].context, body=changed)]
    with pytest.raises(ValidationError, match="disagree"):
        runs_from_events(conflicting)
    other = Event(event_id=f"{97:032x}", signer_id="x", seq=1, prev_hash=bytes(32), idempotency_key=None,
                  event_time_us=T0, context=Context(run="wf_sample-001"), body=changed)
    assert runs_from_events([other]) == ()  # not an imported workflow event


# ------------------------------------------------------------------------------- deliberate deviations


def _one_agent(tokens: Any, model: Any = "claude-haiku-4-5") -> dict[str, Any]:
    entry = agent("a0", "Scope", model, tokens)
    if model is None:
        del entry["model"]
    return wf_doc("wf_dev", [phase("Scope"), entry, agent("a1", "Scope", "claude-haiku-4-5", 10)], total=10)


def _problem_fields(doc: dict[str, Any]) -> list[str]:
    _run, problems = parse_workflow_run(doc, source="dev")
    return [p.field for p in problems]


def ours_without_problems(doc: dict[str, Any]) -> WorkflowRun:
    run, _ = parse_workflow_run(doc, source="dev")
    assert run is not None
    return run


def test_deviation_string_token_count_is_a_problem_not_zero():
    doc = _one_agent("12.7")
    assert ref.agents(doc)[0].tokens == 0 and ref.verify_invariant(doc)  # the reference: silently 0, "ok"
    assert _problem_fields(doc) == ["workflowProgress[1].tokens"]
    assert ours_without_problems(doc).agents[0].agent_id == "a1"


def test_deviation_numeric_string_token_count_is_a_problem_not_parsed():
    doc = _one_agent("42")
    assert ref.agents(doc)[0].tokens == 42
    assert _problem_fields(doc) == ["workflowProgress[1].tokens"]


def test_deviation_float_token_count_is_a_problem_not_truncated():
    doc = _one_agent(12.7)
    assert ref.agents(doc)[0].tokens == 12
    assert _problem_fields(doc) == ["workflowProgress[1].tokens"]


def test_deviation_negative_token_count_is_a_problem_not_subtracted():
    doc = _one_agent(-5)
    assert ref.decompose(doc) == {"Scope": 5}
    assert _problem_fields(doc) == ["workflowProgress[1].tokens"]


def test_deviation_bool_token_count_is_a_problem_not_one():
    doc = _one_agent(True)
    assert ref.agents(doc)[0].tokens == 1
    assert _problem_fields(doc) == ["workflowProgress[1].tokens"]


def test_deviation_missing_model_is_a_problem_not_priced_as_opus():
    doc = _one_agent(1_000_000, model=None)
    assert ref.cost_by_stage(doc)["Scope"] == pytest.approx(8.0 + 10 * 1.6e-6)
    assert _problem_fields(doc) == ["workflowProgress[1].model"]


def test_deviation_unknown_model_is_priced_as_opus_but_named():
    doc = _one_agent(1_000_000, model="mystery-9")
    cost = estimate_run_cost(ours(doc))
    assert cost.total_micros == 8_000_000 + 16 and cost.assumed_models == ("mystery-9",)
    assert ref.total_cost(doc) == pytest.approx(8.000016)  # same number, but nothing says it was a guess


@pytest.mark.parametrize("mutate", [lambda d: d.pop("totalTokens"), lambda d: d.update(totalTokens="10")],
                         ids=["missing", "string"])
def test_deviation_unusable_run_total_rejects_the_run(mutate):
    doc = _one_agent(0)
    mutate(doc)
    assert ref.total_tokens(doc) in (0, 10)  # the reference reads 0 (missing) or parses the string
    run, problems = parse_workflow_run(doc, source="dev")
    assert run is None and [p.field for p in problems] == ["totalTokens"]


def test_deviation_unreadable_file_is_a_problem_not_an_empty_run(tmp_path):
    path = tmp_path / "wf_broken.json"
    path.write_text('{"runId": "wf_x", "totalTokens": 5, "workflowProgress": [')
    assert ref.load_run(path) == {}  # and the reference CLI then exits 0
    result = parse("claude-code", path.read_bytes(), source=str(path), event_time_us=T0)
    assert result.records == () and [(p.file, p.field) for p in result.problems] == [(str(path), "file")]


def test_deviation_money_is_integer_micro_usd_rounded_once_per_agent():
    doc = wf_doc("wf_m", [agent(f"a{i}", "S", "claude-haiku-4-5", 1) for i in range(5)])
    assert ref.total_cost(doc) == pytest.approx(5 * 1.6e-6)  # binary float: 8e-06 USD
    cost = estimate_run_cost(ours(doc))
    assert cost.total_micros == 10 and cost.total_usd == Fraction(10, 1_000_000)  # 1.6 rounds to 2, half-even


def test_deviation_threshold_tie_is_decided_exactly_not_by_float_rounding():
    # Stage A: 5 agents, mean 3/5; B and C: mean 6, so the baseline is 6 and 0.1 x 6 = 3/5 exactly.
    doc = wf_doc("wf_tie", [agent("a0", "A", "claude-haiku-4-5", 3)] + [agent(f"a{i}", "A", "claude-haiku-4-5", 0)
                                                                         for i in range(1, 5)]
                 + [agent("b", "B", "claude-haiku-4-5", 6), agent("c", "C", "claude-haiku-4-5", 6)])
    assert ref_findings(doc, cheap_ratio=0.1) == [("A", "cheap", "high")]  # 0.6 < 0.6000000000000001 in floats
    assert detect_degradation(ours(doc), cheap_ratio=0.1) == ()  # 3/5 < 3/5 is false
    assert [f.kind for f in detect_degradation(ours(doc), cheap_ratio=Fraction(1, 10) + Fraction(1, 10**9))] == [
        "cheap"]


def test_deviation_unrouted_role_is_a_validation_error_not_a_key_error():
    with pytest.raises(KeyError):
        ref_routing.savings_estimate({"chat": 10}, {}, baseline_model="claude-opus-4-6")
    with pytest.raises(ValidationError) as e:
        savings_estimate({"chat": 10}, {}, baseline_model="claude-opus-4-6")
    assert (e.value.field, e.value.value) == ("traffic", "chat")


def test_deviation_negative_traffic_is_refused():
    assert ref_routing.savings_estimate({"chat": -10}, {"chat": {"model": "claude-haiku-4-5"}},
                                        baseline_model="claude-opus-4-6")["saved_usd"] < 0
    with pytest.raises(ValidationError):
        savings_estimate({"chat": -10}, {"chat": "claude-haiku-4-5"}, baseline_model="claude-opus-4-6")


def test_bad_parameters_are_validation_errors():
    run = ours(sample_run_doc())
    for call in (lambda: detect_degradation(run, min_agents=-1),
                 lambda: detect_degradation(run, cheap_ratio=float("nan")),
                 lambda: estimate_run_cost(run, 1.5), lambda: estimate_cost_micros(-1, "claude-opus-4-6"),
                 lambda: WorkflowRun("wf", "", "", 0, (WorkflowAgent(1, "", "", "S", "m", "?", 1),
                                                       WorkflowAgent(1, "", "", "S", "m", "?", 1)))):
        with pytest.raises(ValidationError):
            call()
    assert Fraction(85, 100) == DEFAULT_INPUT_SHARE
    assert json.dumps(summarize(run).stages[0].pct) == "3.1"
