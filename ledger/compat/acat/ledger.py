"""``agent_cost_attribution.ledger`` on the ledger: reading a run and its per-stage attribution.

A run is the decoded ``wf_*.json`` dict (``load_run``), read all-or-nothing by
``ledger.sources.claude_code.read_workflow_run`` in its anonymous mode (``runId``, ``workflowName`` and ``model`` may
be absent, as the reference allows; counts may not: deviation 1 of ``ledger.compat.acat``). Functions also accept an
already typed ``ledger.sources.attribution.WorkflowRun``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.errors import ValidationError
from ledger.files import read_text_bounded
from ledger.sources import attribution
from ledger.sources.attribution import WorkflowRun
from ledger.sources.claude_code import read_workflow_run

EMPTY_RUN = WorkflowRun(run_id="", workflow="", status="", total_tokens=0, agents=())  # what {} stands for


@dataclass(frozen=True)
class AgentRecord:
    """One ``workflow_agent`` entry: ``tokens`` is the entry's one count (no input/output split); ``tool_calls`` is
    None when the entry has none."""

    agent_id: str
    label: str
    stage: str
    model: str
    state: str
    tokens: int
    tool_calls: int | None


def as_run(run: Any) -> WorkflowRun:
    """The typed run behind a reference-style argument: a WorkflowRun as is, ``{}`` as the empty run, any other
    mapping read by ``read_workflow_run(anonymous=True)`` (ValidationError on the first bad field)."""
    if isinstance(run, WorkflowRun):
        return run
    if not isinstance(run, Mapping):
        raise ValidationError("run", run, f"must be a run dict (a decoded wf_*.json), got {type(run).__name__}")
    if not run:
        return EMPTY_RUN
    return read_workflow_run(run, anonymous=True)


def load_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded run file at ``path``; ``{}`` when the file is missing, unreadable or not a regular file. A readable
    file that is too large, not JSON or not a JSON object is a ValidationError (deviation 2)."""
    try:
        text = read_text_bounded(Path(path), limits.MAX_IMPORT_FILE_BYTES, field="path",
                                 limit_name="MAX_IMPORT_FILE_BYTES")
    except ValidationError:
        p = Path(path)
        if not p.is_file() or not os.access(p, os.R_OK):
            return {}
        raise
    try:
        document = json.loads(text)
    except ValueError as e:
        raise ValidationError("path", str(path), f"is not JSON: {e}") from None
    if not isinstance(document, dict):
        raise ValidationError("path", str(path), f"must hold a JSON object, got {type(document).__name__}")
    return document


def agents(run: Any) -> list[AgentRecord]:
    """The run's agents in entry order (phase headers carry no tokens and are not agents)."""
    return [AgentRecord(a.agent_id, a.label, a.stage, a.model, a.state, a.tokens, a.tool_calls)
            for a in as_run(run).agents]


def total_tokens(run: Any) -> int:
    """The run's reported ``totalTokens`` (0 for ``{}``)."""
    return as_run(run).total_tokens


def decompose(run: Any) -> dict[str, int]:
    """{stage: tokens} in first-seen order."""
    return dict(attribution.decompose(as_run(run)))


def verify_invariant(run: Any) -> bool:
    """The agents' tokens sum exactly to the reported total; False for a run without agents."""
    return attribution.verify_invariant(as_run(run))


def summary(run: Any) -> dict[str, Any]:
    """{run_id, workflow, status, total_tokens, invariant_ok, stages: {stage: {tokens, count, states, pct}}};
    ``pct`` is of the reported total, one decimal (0.0 when the total is 0)."""
    s = attribution.summarize(as_run(run))
    return {"run_id": s.run_id, "workflow": s.workflow, "status": s.status, "total_tokens": s.total_tokens,
            "invariant_ok": s.invariant_ok,
            "stages": {st.stage: {"tokens": st.tokens, "count": st.count, "states": dict(st.states), "pct": st.pct}
                       for st in s.stages}}


__all__ = ["AgentRecord", "agents", "as_run", "decompose", "load_run", "summary", "total_tokens", "verify_invariant"]
