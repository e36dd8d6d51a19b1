"""Claude Code workflow telemetry, ``wf_*.json`` (one run per file): each ``workflow_agent`` entry becomes one
``workflow.agent`` event. The files carry no timestamps and one token count per agent (decisions:
``ledger.sources.importers``).
"""

from __future__ import annotations

from typing import Any

from ledger import limits
from ledger.errors import ValidationError
from ledger.sources import records as rec
from ledger.sources.attribution import (
    IO_SPLIT_UNKNOWN,
    LABEL_AGENT_ID,
    LABEL_AGENT_LABEL,
    LABEL_ENTRY_INDEX,
    LABEL_IO_SPLIT,
    LABEL_SOURCE,
    LABEL_STATE,
    LABEL_TOOL_CALLS,
    LABEL_TOTAL_TOKENS,
    LABEL_WORKFLOW_STATUS,
    SOURCE_CLAUDE_CODE,
    UNKNOWN_STAGE,
    UNKNOWN_STATE,
    WORKFLOW_OPERATION,
    WorkflowAgent,
    WorkflowRun,
)
from ledger.sources.records import ImportProblem, ImportRecord, ParseResult, idempotency_key, infer_provider
from ledger.wire.events import Action, Context, LlmUsage, check_int, check_str


def parse_workflow_run(document: Any, *, source: str) -> tuple[WorkflowRun | None, tuple[ImportProblem, ...]]:
    """A decoded ``wf_*.json`` document as a typed run, and a problem per entry that was left out.

    Run-level problems (no runId, a bad totalTokens, no workflowProgress list) reject the whole run
    (None): its agents could not be keyed or checked against the total. An agent entry with a bad
    field is left out with a problem; the run's sum invariant then shows the gap.
    """
    try:
        head, entries = _run_head(document, anonymous=False)
    except ValidationError as e:
        return None, (rec.problem(source, None, e),)
    agents: list[WorkflowAgent] = []
    problems: list[ImportProblem] = []
    for index, entry in enumerate(entries):
        try:
            agent = _workflow_agent(entry, index, f"workflowProgress[{index}]", anonymous=False)
        except ValidationError as e:
            problems.append(rec.problem(source, None, e))
            continue
        if agent is not None:
            agents.append(agent)
    return WorkflowRun(*head, tuple(agents)), tuple(problems)


def read_workflow_run(document: Any, *, anonymous: bool = False) -> WorkflowRun:
    """A decoded ``wf_*.json`` document as a typed run, all or nothing: the first bad field (run or agent entry) is
    a ValidationError naming its JSON path and value. For one-shot reports that persist nothing.

    ``anonymous``: the run and its agents may lack ``runId``, ``workflowName`` and ``model`` (empty strings then,
    and an empty model matches no price tier); token counts and ``totalTokens`` are required all the same.
    """
    head, entries = _run_head(document, anonymous=anonymous)
    agents = [_workflow_agent(entry, index, f"workflowProgress[{index}]", anonymous=anonymous)
              for index, entry in enumerate(entries)]
    return WorkflowRun(*head, tuple(a for a in agents if a is not None))


def _run_head(document: Any, *, anonymous: bool) -> tuple[tuple[str, str, str, int], list[Any]]:
    """(run_id, workflow, status, totalTokens) and the workflowProgress entries of a document."""
    doc = rec.json_object(document, "")
    run_id = rec.string(doc, "runId", "", default="" if anonymous else None)
    workflow = rec.string(doc, "workflowName", "", default="")
    status = rec.string(doc, "status", "", limits.MAX_LABEL_CHARS, default="", allow_empty=True)
    total = rec.count(rec.required(doc, "totalTokens", ""), "totalTokens")
    entries = rec.required(doc, "workflowProgress", "")
    if not isinstance(entries, list):
        raise ValidationError("workflowProgress", entries, f"must be a JSON array, got {rec.json_type(entries)}")
    return (run_id, workflow, status, total), entries


def _workflow_agent(entry: Any, index: int, path: str, *, anonymous: bool) -> WorkflowAgent | None:
    """One entry: an agent, or None for a phase header (headers carry no tokens)."""
    obj = rec.json_object(entry, path)
    kind = obj.get("type")
    if kind == "workflow_phase":
        return None
    if kind != "workflow_agent":
        raise ValidationError(rec.join(path, "type"), kind, "must be workflow_agent or workflow_phase")
    stage = obj.get("phaseTitle")
    tool_calls = obj.get("toolCalls")
    return WorkflowAgent(
        entry_index=index,
        agent_id=rec.string(obj, "agentId", path, limits.MAX_LABEL_CHARS, default="", allow_empty=True),
        label=rec.string(obj, "label", path, limits.MAX_LABEL_CHARS, default="", allow_empty=True),
        stage=UNKNOWN_STAGE if stage is None else rec.string(obj, "phaseTitle", path),
        model=rec.string(obj, "model", path, default="" if anonymous else None),
        state=rec.string(obj, "state", path, limits.MAX_LABEL_CHARS, default=UNKNOWN_STATE, allow_empty=True),
        tokens=rec.count(rec.required(obj, "tokens", path), rec.join(path, "tokens")),
        tool_calls=None if tool_calls is None else check_int(rec.join(path, "toolCalls"), tool_calls, 0,
                                                              limits.MAX_COUNT))


def workflow_records(run: WorkflowRun, event_time_us: int) -> tuple[ImportRecord, ...]:
    """The events that represent ``run`` on the ledger (one per agent; see the module docstring)."""
    check_int("event_time_us", event_time_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
    check_str("run_id", run.run_id)  # an anonymous reading (read_workflow_run) has nothing to key events by
    head = {LABEL_SOURCE: SOURCE_CLAUDE_CODE, LABEL_TOTAL_TOKENS: str(run.total_tokens),
            LABEL_IO_SPLIT: IO_SPLIT_UNKNOWN}
    if run.status:
        head[LABEL_WORKFLOW_STATUS] = run.status
    records = []
    for agent in run.agents:
        labels = dict(head)
        labels.update({LABEL_ENTRY_INDEX: str(agent.entry_index), LABEL_AGENT_ID: agent.agent_id,
                       LABEL_STATE: agent.state})
        if agent.label:
            labels[LABEL_AGENT_LABEL] = agent.label
        if agent.tool_calls is not None:
            labels[LABEL_TOOL_CALLS] = str(agent.tool_calls)
        usage = LlmUsage(provider=infer_provider(agent.model), model=agent.model, input_tokens=agent.tokens,
                         output_tokens=0)
        records.append(ImportRecord(
            idempotency_key=idempotency_key("wf", run.run_id, str(agent.entry_index)),
            body=Action(operation=WORKFLOW_OPERATION, usage=usage), event_time_us=event_time_us,
            context=Context(task=run.workflow or None, stage=agent.stage, run=run.run_id,
                            labels=tuple(labels.items())),
            line=None, path=f"workflowProgress[{agent.entry_index}]"))
    return tuple(records)


def parse_claude_code(data: bytes, source: str, event_time_us: int | None) -> ParseResult:
    document, problem = rec.decode_document(data, source)
    if problem is not None:
        return ParseResult((), (problem,))
    run, problems = parse_workflow_run(document, source=source)
    if run is None:
        return ParseResult((), problems)
    if event_time_us is None:
        no_time = ImportProblem(source, None, "time", "None", "workflow telemetry has no timestamps; pass one (--time)")
        return ParseResult((), (*problems, no_time))
    return ParseResult(workflow_records(run, event_time_us), problems)

