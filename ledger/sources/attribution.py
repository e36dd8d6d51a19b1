"""Cost attribution for multi-agent workflow runs (Claude Code ``wf_*.json`` telemetry).

What it answers, per run: which stage ate the tokens (a waterfall in first-seen stage order), whether
the per-agent counts add up to the run's reported total (the sum invariant), whether the run is
silently degraded (a stage whose agents errored, or a large stage that ran anomalously cheap) and so
not publishable, an *estimated* dollar cost, and a model-routing savings estimate.

Input is a typed ``WorkflowRun`` (built by ``ledger.sources.importers`` from a telemetry file, or by
``runs_from_events`` from the events the importer put on the ledger), never a raw dict: malformed
token counts were already refused with a problem naming file and field, so nothing here ever turns
bad input into zeros.

Rules (the degradation rules are those of the reference meter, SEEDS.md §3.4):

* Percentages are of the run's *reported* total, ``round(100 * tokens / total, 1)`` (0.0 when the
  total is 0). They are display ratios, not money.
* Degradation baseline = median of the per-stage **mean** tokens per agent, one value per stage, the
  suspect stages included. ``errors``: a stage with any agent whose state is exactly ``"error"``.
  ``cheap``: baseline non-zero, the stage has ``>= min_agents`` agents, and its mean is strictly
  ``<`` ``cheap_ratio`` x baseline. Means, the median and the comparison are exact rationals, and a
  float ratio means the decimal it prints as (0.1 is 1/10); the reference compares binary floats,
  so the two can differ only at an exact tie (or within float rounding of one).
* The cost is an **estimate**: the telemetry has one token count per agent and no input/output
  split, so each agent's tokens are priced at a blended rate ``share x input + (1 - share) x output``
  (default share 85 % input) of its model's rates. Where the rates come from is the caller's ``rates``
  lookup: the report passes the price book on the log (``ledger.economics.pricing``, the one cost path:
  a model the book does not price is *unpriced*, named in ``unpriced_models``, never guessed);
  without one, the reference's own tier table (``reference_rates``: model-name substrings, a name that
  matches no tier priced as opus and named in ``assumed_models``) reproduces the reference package's
  numbers (the blended maths and the tier table live in ``ledger.economics.blended``, the savings maths in
  ``ledger.economics.routing``; their names are re-exported here). Money is integer micro-USD: each agent's
  cost is rounded half-to-even once (``ledger.economics.money``); stage and run totals, and the routing
  estimate's routed and baseline amounts, are sums of per-agent amounts, so every total of a run is the same number.

Never: I/O, the clock, the environment, a float as money, or a default that hides bad input.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ledger import limits
from ledger.economics.blended import (  # the blended estimate; re-exported: this module's public names since 0.x
    DEFAULT_INPUT_SHARE,
    TIER_PRICES,
    UNKNOWN_TIER_PRICED_AS,
    Number,
    RateLookup,
    blended_rate,
    check_share,
    estimate_cost_micros,
    reference_rates,
    tier,
)
from ledger.economics.money import check_tokens, exact_number
from ledger.economics.routing import SavingsEstimate, priced_savings, savings_estimate
from ledger.errors import ValidationError
from ledger.units import MICROS_PER_USD
from ledger.wire.events import Action, Event, check_int, check_str

# -------------------------------------------------------------------------------- constants

DEFAULT_MIN_AGENTS = 5  # agents a stage needs before the "cheap" rule looks at it
DEFAULT_CHEAP_RATIO = Fraction(1, 4)  # a stage mean below this share of the baseline is "cheap"
UNKNOWN_STAGE = "?"  # stage of an agent entry without a phaseTitle
UNKNOWN_STATE = "?"  # state of an agent entry without a state
ERROR_STATE = "error"  # the only state the "errors" rule counts ("failed", "errored" do not)
SEVERITY_HIGH = "high"

# How the importer represents one workflow agent on the ledger (an Action event). Shared here so
# ``runs_from_events`` reads exactly what ``ledger.sources.importers`` writes.
SOURCE_CLAUDE_CODE = "claude-code"
WORKFLOW_OPERATION = "workflow.agent"
LABEL_SOURCE = "source"
LABEL_ENTRY_INDEX = "entry_index"  # position in workflowProgress (phase headers included)
LABEL_AGENT_ID = "agent_id"
LABEL_AGENT_LABEL = "agent_label"
LABEL_STATE = "state"
LABEL_TOOL_CALLS = "tool_calls"  # absent when the telemetry had no toolCalls
LABEL_WORKFLOW_STATUS = "workflow_status"  # absent when the telemetry had no status
LABEL_TOTAL_TOKENS = "total_tokens"  # the run's reported totalTokens, on every agent's event
LABEL_IO_SPLIT = "io_split"
IO_SPLIT_UNKNOWN = "unknown"  # all tokens recorded as input_tokens, output 0: the split is not known


# -------------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class WorkflowAgent:
    """One ``workflow_agent`` entry: who ran, in which stage, on which model, with how many tokens."""

    entry_index: int
    agent_id: str
    label: str
    stage: str
    model: str
    state: str
    tokens: int
    tool_calls: int | None = None

    def __post_init__(self) -> None:
        check_int("entry_index", self.entry_index, 0, limits.MAX_COUNT)
        check_str("agent_id", self.agent_id, limits.MAX_LABEL_CHARS, allow_empty=True)
        check_str("label", self.label, limits.MAX_LABEL_CHARS, allow_empty=True)
        check_str("stage", self.stage, limits.MAX_ID_CHARS)
        check_str("model", self.model, limits.MAX_ID_CHARS, allow_empty=True)  # empty: an anonymous reading only
        check_str("state", self.state, limits.MAX_LABEL_CHARS, allow_empty=True)
        check_tokens("tokens", self.tokens)
        if self.tool_calls is not None:
            check_int("tool_calls", self.tool_calls, 0, limits.MAX_COUNT)


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """One run: its identity, its self-reported status and total, and its agents in entry order."""

    run_id: str
    workflow: str
    status: str
    total_tokens: int
    agents: tuple[WorkflowAgent, ...]

    def __post_init__(self) -> None:
        check_str("run_id", self.run_id, limits.MAX_ID_CHARS, allow_empty=True)  # empty: an anonymous reading only
        check_str("workflow", self.workflow, limits.MAX_ID_CHARS, allow_empty=True)
        check_str("status", self.status, limits.MAX_LABEL_CHARS, allow_empty=True)
        check_tokens("total_tokens", self.total_tokens)
        object.__setattr__(self, "agents", tuple(self.agents))
        if not all(isinstance(a, WorkflowAgent) for a in self.agents):
            raise ValidationError("agents", self.agents, "must be WorkflowAgent records")
        indices = [a.entry_index for a in self.agents]
        if indices != sorted(set(indices)):
            raise ValidationError("agents", indices, "must be in entry order with distinct entry indices")

    @property
    def agent_tokens(self) -> int:
        return sum(a.tokens for a in self.agents)


# -------------------------------------------------------------------------------- waterfall


@dataclass(frozen=True, slots=True)
class StageRow:
    """One stage of the waterfall; ``states`` counts agents per state in first-seen order."""

    stage: str
    tokens: int
    count: int
    states: tuple[tuple[str, int], ...]
    pct: float  # of the run's reported total, one decimal


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    workflow: str
    status: str
    total_tokens: int  # as reported by the run
    agent_tokens: int  # the sum over its agents
    invariant_ok: bool
    stages: tuple[StageRow, ...]  # first-seen order


def _by_stage(run: WorkflowRun) -> dict[str, list[WorkflowAgent]]:
    groups: dict[str, list[WorkflowAgent]] = {}
    for agent in run.agents:
        groups.setdefault(agent.stage, []).append(agent)
    return groups


def decompose(run: WorkflowRun) -> tuple[tuple[str, int], ...]:
    """(stage, tokens) per stage, in first-seen order."""
    return tuple((stage, sum(a.tokens for a in agents)) for stage, agents in _by_stage(run).items())


def verify_invariant(run: WorkflowRun) -> bool:
    """The per-agent tokens sum exactly to the reported total. A run with no agents fails: no data
    is not a satisfied invariant."""
    return bool(run.agents) and run.agent_tokens == run.total_tokens


def summarize(run: WorkflowRun) -> RunSummary:
    rows = []
    for stage, agents in _by_stage(run).items():
        tokens = sum(a.tokens for a in agents)
        states: dict[str, int] = {}
        for a in agents:
            states[a.state] = states.get(a.state, 0) + 1
        pct = round(100 * tokens / run.total_tokens, 1) if run.total_tokens else 0.0
        rows.append(StageRow(stage, tokens, len(agents), tuple(states.items()), pct))
    return RunSummary(run_id=run.run_id, workflow=run.workflow, status=run.status, total_tokens=run.total_tokens,
                      agent_tokens=run.agent_tokens, invariant_ok=verify_invariant(run), stages=tuple(rows))


# -------------------------------------------------------------------------------- degradation


@dataclass(frozen=True, slots=True)
class Finding:
    """Why a stage makes its run's numbers unpublishable. ``kind`` is ``errors`` or ``cheap``."""

    stage: str
    kind: str
    severity: str
    agents: int
    error_agents: int
    mean_tokens: Fraction  # per agent in this stage
    baseline_tokens: Fraction  # median of the per-stage means
    detail: str


def detect_degradation(run: WorkflowRun, *, min_agents: int = DEFAULT_MIN_AGENTS,
                       cheap_ratio: Number = DEFAULT_CHEAP_RATIO) -> tuple[Finding, ...]:
    """Findings in first-seen stage order, an ``errors`` finding before a ``cheap`` one; empty = healthy.

    The run's own ``status`` is ignored on purpose: a run can say "completed" with every verifier
    errored, or "failed" while healthy.
    """
    check_int("min_agents", min_agents, 0, limits.MAX_MIN_AGENTS)
    ratio = exact_number("cheap_ratio", cheap_ratio, minimum=0)
    groups = _by_stage(run)
    means = {stage: Fraction(sum(a.tokens for a in agents), len(agents)) for stage, agents in groups.items()}
    # One value per stage, suspects included, so a big degraded stage cannot drag the baseline
    # down to its own level the way a per-agent median would.
    baseline = statistics.median(means.values()) if means else Fraction(0)
    findings = []
    for stage, agents in groups.items():
        errors = sum(1 for a in agents if a.state == ERROR_STATE)
        mean = means[stage]
        if errors:
            findings.append(Finding(stage, "errors", SEVERITY_HIGH, len(agents), errors, mean, baseline,
                                    f"{errors} of {len(agents)} agents ended in state {ERROR_STATE!r}"))
        if baseline and len(agents) >= min_agents and mean < ratio * baseline:
            findings.append(Finding(stage, "cheap", SEVERITY_HIGH, len(agents), errors, mean, baseline,
                                    f"{len(agents)} agents averaged {float(mean):.0f} tokens each, under "
                                    f"{float(ratio):.0%} of the run's per-stage median of {float(baseline):.0f}"))
    return tuple(findings)


def is_healthy(run: WorkflowRun, **options: Any) -> bool:
    return not detect_degradation(run, **options)


# -------------------------------------------------------------------------------- cost estimate


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """An estimate, not a bill: list prices, a blended input share, no I/O split in the telemetry."""

    input_share: Fraction
    by_stage: tuple[tuple[str, int], ...]  # (stage, micro-USD), first-seen order
    total_micros: int  # == sum of by_stage
    assumed_models: tuple[str, ...]  # reference rates only: models that matched no tier and were priced as opus
    unpriced_models: tuple[str, ...] = ()  # a book's rates: models it has no price for (their agents add nothing)
    unpriced_agents: int = 0

    @property
    def total_usd(self) -> Fraction:
        return Fraction(self.total_micros, MICROS_PER_USD)


def estimate_run_cost(run: WorkflowRun, input_share: Number = DEFAULT_INPUT_SHARE, *,
                      rates: RateLookup | None = None) -> CostEstimate:
    """Per-agent estimates (so routing one agent to a cheaper model shows), summed per stage; ``rates`` None: the
    reference's tier table."""
    share = check_share(input_share)
    by_stage: dict[str, int] = {}
    assumed: dict[str, None] = {}
    unpriced: dict[str, None] = {}
    unpriced_agents = 0
    for agent in run.agents:
        if rates is None and tier(agent.model) is None:
            assumed[agent.model] = None
        cost = estimate_cost_micros(agent.tokens, agent.model, share, rates=rates or reference_rates)
        if cost is None:
            unpriced[agent.model] = None
            unpriced_agents += 1
            cost = 0  # not a price: the agent is counted in unpriced_agents and its model named
        by_stage[agent.stage] = by_stage.get(agent.stage, 0) + cost
    return CostEstimate(share, tuple(by_stage.items()), sum(by_stage.values()), tuple(assumed), tuple(unpriced),
                        unpriced_agents)


# -------------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class RunReport:
    summary: RunSummary
    findings: tuple[Finding, ...]
    cost: CostEstimate

    @property
    def publishable(self) -> bool:
        """Cost numbers of a degraded run must not be published (they attribute cost wrongly)."""
        return not self.findings


def report(run: WorkflowRun, *, input_share: Number = DEFAULT_INPUT_SHARE, min_agents: int = DEFAULT_MIN_AGENTS,
           cheap_ratio: Number = DEFAULT_CHEAP_RATIO, rates: RateLookup | None = None) -> RunReport:
    return RunReport(summarize(run), detect_degradation(run, min_agents=min_agents, cheap_ratio=cheap_ratio),
                     estimate_run_cost(run, input_share, rates=rates))


# -------------------------------------------------------------------------------- routing savings


def run_savings(run: WorkflowRun, *, baseline_model: str, input_share: Number = DEFAULT_INPUT_SHARE,
                rates: RateLookup = reference_rates) -> SavingsEstimate:
    """The run as routed vs every agent on ``baseline_model``, each agent priced and rounded once (as
    ``estimate_run_cost`` does), so ``routed_micros`` is the run's estimated cost to the micro-dollar: one total
    wherever the run is shown. Agents on a model ``rates`` does not price are left out of both sides."""
    return priced_savings(((a.tokens, a.model) for a in run.agents), check_str("baseline_model", baseline_model),
                          check_share(input_share), rates, skip_unpriced=True)


# -------------------------------------------------------------------------------- from the ledger


def _label(labels: Mapping[str, str], name: str, event: Event) -> str:
    if name not in labels:
        raise ValidationError(f"context.labels[{name}]", None, "is missing from an imported workflow event",
                              event_id=event.event_id)
    return labels[name]


def _label_int(labels: Mapping[str, str], name: str, event: Event) -> int:
    text = _label(labels, name, event)
    if not (text.isascii() and text.isdigit()):
        raise ValidationError(f"context.labels[{name}]", text, "must be a non-negative integer",
                              event_id=event.event_id)
    return int(text)


def runs_from_events(events: Iterable[Event]) -> tuple[WorkflowRun, ...]:
    """Rebuild workflow runs from the ledger's imported ``workflow.agent`` events, in first-seen order.

    The same agent entry imported twice (two importer signers, identical content) counts once; two
    events for one (run, entry) that disagree, or agents of one run that disagree on the run's
    reported total, status or workflow, are a ValidationError naming the run: a report over a
    contradictory ledger must not pick one side silently.
    """
    heads: dict[str, tuple[str, str, int]] = {}
    agents: dict[str, dict[int, WorkflowAgent]] = {}
    for event in events:
        body = event.body
        labels = dict(event.context.labels)
        if not isinstance(body, Action) or body.usage is None or labels.get(LABEL_SOURCE) != SOURCE_CLAUDE_CODE:
            continue
        run_id = event.context.run
        if run_id is None:
            raise ValidationError("context.run", None, "an imported workflow event must name its run",
                                  event_id=event.event_id)
        head = (event.context.task or "", labels.get(LABEL_WORKFLOW_STATUS, ""),
                _label_int(labels, LABEL_TOTAL_TOKENS, event))
        if heads.setdefault(run_id, head) != head:
            raise ValidationError("context.run", run_id, "events of this run disagree on its workflow, status or "
                                  f"reported total: {heads[run_id]} vs {head}", event_id=event.event_id)
        tool_calls = _label_int(labels, LABEL_TOOL_CALLS, event) if LABEL_TOOL_CALLS in labels else None
        agent = WorkflowAgent(
            entry_index=_label_int(labels, LABEL_ENTRY_INDEX, event), agent_id=_label(labels, LABEL_AGENT_ID, event),
            label=labels.get(LABEL_AGENT_LABEL, ""), stage=event.context.stage or UNKNOWN_STAGE,
            model=body.usage.model, state=_label(labels, LABEL_STATE, event),
            tokens=body.usage.input_tokens + body.usage.output_tokens, tool_calls=tool_calls)
        known = agents.setdefault(run_id, {}).setdefault(agent.entry_index, agent)
        if known != agent:
            raise ValidationError("context.run", run_id, f"two events for entry {agent.entry_index} of this run "
                                  "disagree", event_id=event.event_id)
    return tuple(WorkflowRun(run_id=run_id, workflow=workflow, status=status, total_tokens=total,
                             agents=tuple(a for _, a in sorted(agents[run_id].items())))
                 for run_id, (workflow, status, total) in heads.items())


__all__ = [
    "DEFAULT_INPUT_SHARE", "TIER_PRICES", "UNKNOWN_TIER_PRICED_AS", "CostEstimate", "Finding", "Number",
    "RateLookup", "RunReport", "RunSummary", "SavingsEstimate", "StageRow", "WorkflowAgent", "WorkflowRun",
    "blended_rate", "decompose", "detect_degradation", "estimate_cost_micros", "estimate_run_cost", "is_healthy",
    "reference_rates", "report", "runs_from_events", "savings_estimate", "summarize", "tier", "verify_invariant",
]
