"""ledger.sources.claude_code.read_workflow_run: a workflow document read all or nothing (the first bad field is a
ValidationError naming its JSON path), strict as the importer by default, anonymous (no runId, workflowName or model
needed) for the reference-compatible layer; and the importer's own rules left as they were."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.errors import ValidationError
from ledger.sources.attribution import WorkflowAgent
from ledger.sources.claude_code import parse_workflow_run, read_workflow_run, workflow_records
from ledger.testing.samples import agent, phase, wf_doc

T = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds


def test_strict_reading_keeps_every_field() -> None:
    doc = wf_doc("wf_9", [phase("Plan"), agent("p1", "Plan", "claude-opus-4-6", 1_200, tool_calls=2, label="plan"),
                          phase("Do"), agent("d1", "Do", "claude-haiku-4-5", 800, state="error", tool_calls=0)],
                 status="failed")
    run = read_workflow_run(doc)
    assert (run.run_id, run.workflow, run.status, run.total_tokens) == ("wf_9", "deep-research", "failed", 2_000)
    assert run.agents == (WorkflowAgent(1, "p1", "plan", "Plan", "claude-opus-4-6", "completed", 1_200, 2),
                          WorkflowAgent(3, "d1", "worker", "Do", "claude-haiku-4-5", "error", 800, 0))
    parsed, problems = parse_workflow_run(doc, source="f")
    assert parsed == run and problems == ()


def test_anonymous_reading_allows_missing_identity_only() -> None:
    doc: dict[str, Any] = {"totalTokens": 5, "workflowProgress": [{"type": "workflow_agent", "tokens": 5}]}
    run = read_workflow_run(doc, anonymous=True)
    assert (run.run_id, run.workflow, run.status) == ("", "", "")
    assert run.agents == (WorkflowAgent(0, "", "", "?", "", "?", 5, None),)
    with pytest.raises(ValidationError) as e:
        read_workflow_run(doc)
    assert e.value.field == "runId"
    doc["runId"] = "wf_1"
    with pytest.raises(ValidationError) as e:
        read_workflow_run(doc)
    assert e.value.field == "workflowProgress[0].model"
    with pytest.raises(ValidationError) as e:
        workflow_records(read_workflow_run({**doc, "runId": None}, anonymous=True), T)
    assert e.value.field == "run_id"  # an anonymous run has nothing to key events by: never imported


@pytest.mark.parametrize(("entry", "field", "value"), [
    ({"type": "workflow_agent", "model": "m", "tokens": "7"}, "workflowProgress[1].tokens", "7"),
    ({"type": "workflow_agent", "model": "m", "tokens": 7.0}, "workflowProgress[1].tokens", 7.0),
    ({"type": "workflow_agent", "model": "m"}, "workflowProgress[1].tokens", None),
    ({"type": "workflow_agent", "model": "m", "tokens": 7, "toolCalls": -1}, "workflowProgress[1].toolCalls", -1),
    ({"type": "note"}, "workflowProgress[1].type", "note"),
])
def test_first_bad_entry_refuses_the_whole_run(entry: dict[str, Any], field: str, value: Any) -> None:
    doc = wf_doc("wf_2", [agent("a", "S", "claude-opus-4-6", 3), entry], total=10)
    for anonymous in (False, True):
        with pytest.raises(ValidationError) as e:
            read_workflow_run(doc, anonymous=anonymous)
        assert (e.value.field, e.value.value) == (field, value)
    # the importer keeps the good entry and lists the bad one
    run, problems = parse_workflow_run(doc, source="f.json")
    assert run is not None and [a.tokens for a in run.agents] == [3]
    assert [p.field for p in problems] == [field]
