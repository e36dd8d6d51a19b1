"""``tokenledger emit action | data | compute | trust | interaction | outcome``: one signed event as an agent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from ledger.cli.output import (
    HomeOpt,
    JsonOpt,
    LogOpt,
    guarded,
    int_arg,
    labels,
    open_home,
    parse_time,
    print_json,
    table,
)
from ledger.errors import RejectCode, RejectError, ValidationError
from ledger.sdk.emitter import Emitter, milli
from ledger.sdk.home import resolve_log_url
from ledger.units import MILLI
from ledger.wire.events import Context, Deposit, Flow, Outcome
from ledger.wire.vocab import Capability

emit_app = typer.Typer(no_args_is_help=True, help="Emit one signed event as an agent.",
                       epilog="Example: tokenledger emit action -a researcher --operation web.search")


def register(app: typer.Typer) -> None:
    """Add the ``emit`` group to ``app``."""
    app.add_typer(emit_app, name="emit")


def _common(time_: str | None, idem: str | None, org: str | None, project: str | None, task: str | None,
            stage: str | None, run: str | None, label: list[str] | None) -> dict[str, Any]:
    return {"event_time_us": parse_time(time_), "idempotency_key": idem,
            "context": Context(org=org, project=project, task=task, stage=stage, run=run,
                               labels=tuple(sorted(labels(label).items())))}


def _emit(agent: str, home: str | None, log: str | None, json_: bool, fn: Callable[[Emitter], str]) -> None:
    h = open_home(home)
    key = h.load_key(agent)
    lg = h.open_log(resolve_log_url(log, h))
    try:
        # the key ring of the control topic is checked before anything is appended: an unregistered or revoked
        # key is refused here (RejectError, exit 1) instead of appending a record every reader would quarantine
        with Emitter(lg, key, topic=h.topic, state_dir=h.state_dir, background_flush=False,
                     control_topic=h.control_topic, anchors=h.anchors()) as em:
            event_id = fn(em)
            em.flush()
            seq = em.head.seq
    finally:
        lg.close()
    info = {"event_id": event_id, "signer_id": agent, "seq": seq}
    print_json(info) if json_ else table("appended", ["event id", "signer", "seq"], [[event_id, agent, seq]])


AgentOpt = typer.Option(..., "--agent", "-a", help="Signer name (its key must be in the home).")
TimeOpt = typer.Option(None, "--time", help="Event time: ISO-8601 or microseconds (default: now).")
IdemOpt = typer.Option(None, "--idempotency-key", help="Same key → same event id; a retried emit appends nothing.")
OrgOpt = typer.Option(None, "--org")
ProjectOpt = typer.Option(None, "--project")
TaskOpt = typer.Option(None, "--task")
StageOpt = typer.Option(None, "--stage")
RunOpt = typer.Option(None, "--run")
LabelOpt = typer.Option(None, "--label", help="Context label key=value (repeatable).")


@emit_app.command("action", epilog="Example: tokenledger emit action -a researcher --operation llm.call "
                                     "--provider anthropic --model claude-sonnet-4-6 --input-tokens 1200 "
                                     "--output-tokens 300")
@guarded
def emit_action(agent: str = AgentOpt, operation: str = typer.Option(..., help="What was done."),
                cost_weight: str = typer.Option("1", help="Cost weight (1.0 simple, 3.2 heavy)."),
                provider: str | None = typer.Option(None), model: str | None = typer.Option(None),
                input_tokens: str = typer.Option("0"), output_tokens: str = typer.Option("0"),
                cache_read_tokens: str = typer.Option("0"), cache_write_tokens: str = typer.Option("0"),
                reasoning_tokens: str = typer.Option("0"), result_hash: str | None = typer.Option(None),
                time_: str | None = TimeOpt, idempotency_key: str | None = IdemOpt,
                org: str | None = OrgOpt, project: str | None = ProjectOpt, task: str | None = TaskOpt,
                stage: str | None = StageOpt, run: str | None = RunOpt, label: list[str] | None = LabelOpt,
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Emit an action token (optionally an LLM call with its token usage)."""
    kw = dict(cost_weight=cost_weight, provider=provider, model=model,
              input_tokens=int_arg("input_tokens", input_tokens), output_tokens=int_arg("output_tokens", output_tokens),
              cache_read_tokens=int_arg("cache_read_tokens", cache_read_tokens),
              cache_write_tokens=int_arg("cache_write_tokens", cache_write_tokens),
              reasoning_tokens=int_arg("reasoning_tokens", reasoning_tokens), result_hash=result_hash,
              **_common(time_, idempotency_key, org, project, task, stage, run, label))
    milli("cost_weight", cost_weight)  # validate before opening anything
    _emit(agent, home, log, json_, lambda em: em.action(operation, **kw))


@emit_app.command("data", epilog="Example: tokenledger emit data -a researcher --bytes-read 52000 "
                                   "--source-hash sha256:ab12")
@guarded
def emit_data(agent: str = AgentOpt, bytes_read: str = typer.Option("0"), bytes_written: str = typer.Option("0"),
              source_hash: str | None = typer.Option(None), destination_hash: str | None = typer.Option(None),
              duration_us: str = typer.Option("0"), time_: str | None = TimeOpt,
              idempotency_key: str | None = IdemOpt, org: str | None = OrgOpt,
              project: str | None = ProjectOpt, task: str | None = TaskOpt, stage: str | None = StageOpt,
              run: str | None = RunOpt, label: list[str] | None = LabelOpt, home: str | None = HomeOpt,
              log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Emit a data token (bytes read/written)."""
    kw = dict(bytes_read=int_arg("bytes_read", bytes_read), bytes_written=int_arg("bytes_written", bytes_written),
              source_hash=source_hash, destination_hash=destination_hash,
              duration_us=int_arg("duration_us", duration_us),
              **_common(time_, idempotency_key, org, project, task, stage, run, label))
    _emit(agent, home, log, json_, lambda em: em.data(**kw))


@emit_app.command("compute", epilog="Example: tokenledger emit compute -a writer --node-id gpu-1 --cpu-time-slices 40")
@guarded
def emit_compute(agent: str = AgentOpt, node_id: str = typer.Option(...), cpu_time_slices: str = typer.Option(...),
                 gpu_time_slices: str = typer.Option("0"), peak_memory_mb: str = typer.Option("0"),
                 parallel_jobs: str = typer.Option("1"), time_: str | None = TimeOpt,
                 idempotency_key: str | None = IdemOpt, org: str | None = OrgOpt,
                 project: str | None = ProjectOpt, task: str | None = TaskOpt, stage: str | None = StageOpt,
                 run: str | None = RunOpt, label: list[str] | None = LabelOpt, home: str | None = HomeOpt,
                 log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Emit a compute token (CPU/GPU time slices, memory)."""
    kw = dict(node_id=node_id, cpu_time_slices=int_arg("cpu_time_slices", cpu_time_slices),
              gpu_time_slices=int_arg("gpu_time_slices", gpu_time_slices),
              peak_memory_mb=int_arg("peak_memory_mb", peak_memory_mb),
              parallel_jobs=int_arg("parallel_jobs", parallel_jobs),
              **_common(time_, idempotency_key, org, project, task, stage, run, label))
    _emit(agent, home, log, json_, lambda em: em.compute(**kw))


@emit_app.command("trust", epilog="Example: tokenledger emit trust -a critic --subject writer --dimension accuracy "
                                    "--value 0.8")
@guarded
def emit_trust(agent: str = AgentOpt, subject: str = typer.Option(..., help="The agent this is about."),
               dimension: str = typer.Option(..., help="accuracy | compliance | feedback | reliability"),
               value: str = typer.Option(..., help="Signed value, e.g. 0.8 or -0.5."),
               half_life_us: str | None = typer.Option(None), source: str | None = typer.Option(None),
               time_: str | None = TimeOpt, idempotency_key: str | None = IdemOpt,
               org: str | None = OrgOpt, project: str | None = ProjectOpt, task: str | None = TaskOpt,
               stage: str | None = StageOpt, run: str | None = RunOpt, label: list[str] | None = LabelOpt,
               home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Emit a trust token about another agent."""
    kw = dict(half_life_us=int_arg("half_life_us", half_life_us), source=source,
              **_common(time_, idempotency_key, org, project, task, stage, run, label))
    milli("value", value)
    _emit(agent, home, log, json_, lambda em: em.trust(subject, dimension, value, **kw))


@emit_app.command("interaction", epilog="Example: tokenledger emit interaction -a planner --responder researcher "
                  "--interaction-id t1-c1 --requestor-provider anthropic --requestor-model claude-opus-4-6 "
                  "--responder-provider openai --responder-model gpt-4.1 --request-tokens 1500 --response-tokens 4000")
@guarded
def emit_interaction(agent: str = AgentOpt, responder: str = typer.Option(...),
                     interaction_id: str = typer.Option(...), requestor_provider: str = typer.Option(...),
                     requestor_model: str = typer.Option(...), responder_provider: str = typer.Option(...),
                     responder_model: str = typer.Option(...), request_tokens: str = typer.Option(...),
                     response_tokens: str = typer.Option(...), request_cached_tokens: str = typer.Option("0"),
                     response_cached_tokens: str = typer.Option("0"),
                     cosign: bool = typer.Option(False, help="Co-sign with the responder's key from this home."),
                     time_: str | None = TimeOpt, idempotency_key: str | None = IdemOpt,
                     org: str | None = OrgOpt, project: str | None = ProjectOpt, task: str | None = TaskOpt,
                     stage: str | None = StageOpt, run: str | None = RunOpt,
                     label: list[str] | None = LabelOpt, home: str | None = HomeOpt,
                     log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Emit an agent-to-agent interaction with its four cost flows (signed by the requestor)."""
    h = open_home(home)
    cosigner = h.load_key(responder) if cosign else None
    rq, rs = int_arg("request_tokens", request_tokens), int_arg("response_tokens", response_tokens)
    rqc = int_arg("request_cached_tokens", request_cached_tokens)
    rsc = int_arg("response_cached_tokens", response_cached_tokens)
    kw = _common(time_, idempotency_key, org, project, task, stage, run, label)
    _emit(agent, home, log, json_, lambda em: em.interaction(
        responder_id=responder, interaction_id=interaction_id, requestor_provider=requestor_provider,
        requestor_model=requestor_model, responder_provider=responder_provider, responder_model=responder_model,
        request_output=Flow(rq), request_input=Flow(rq, rqc), response_output=Flow(rs),  # type: ignore[arg-type]
        response_input=Flow(rs, rsc), cosigner=cosigner, **kw))  # type: ignore[arg-type]


def _fraction(flag: str, value: str | None) -> int | None:
    """A --confidence / --score between 0 and 1, as thousandths (None when not given)."""
    if value is None:
        return None
    m = milli(flag, value)
    if not 0 <= m <= MILLI:
        raise ValidationError(flag, value, "must be between 0 and 1")
    return m


@emit_app.command("outcome", epilog="Example: tokenledger emit outcome task-42 -a writer --confidence 0.9  ·  "
                                      "graded (needs the grader grant): tokenledger emit outcome task-42 -a critic "
                                      "--score 0.8 --subject writer")
@guarded
def emit_outcome(task_id: str = typer.Argument(..., help="The task this is the outcome of."), agent: str = AgentOpt,
                 confidence: str | None = typer.Option(None, help="The signer's confidence in its result, 0..1: at "
                                                       "its budgets' threshold further spend is refused."),
                 score: str | None = typer.Option(None, help="A grade of --subject's work, 0..1; counts only from a "
                                                  "signer the operator granted `grader`."),
                 subject: str | None = typer.Option(None, help="The agent --score grades (never the signer)."),
                 failed: bool = typer.Option(False, "--failed", help="The task failed (default: it succeeded)."),
                 time_: str | None = TimeOpt, idempotency_key: str | None = IdemOpt,
                 org: str | None = OrgOpt, project: str | None = ProjectOpt, task: str | None = TaskOpt,
                 stage: str | None = StageOpt, run: str | None = RunOpt, label: list[str] | None = LabelOpt,
                 home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Emit a task's outcome: the signer's confidence and success, or a grader's score of another agent.

    A score counts (reputation, budget multipliers) only as a grade: about another agent (--subject), signed by a
    holder of the operator's grader grant. Readers keep any other score but never count it, so this command refuses
    one before appending: a score without another agent as --subject (ValidationError, exit 2), or from a signer
    the log's key ring shows without the grader grant (not_granted, exit 1). The grant is judged as it stands on
    the log now."""
    conf_milli = _fraction("confidence", confidence)
    score_milli = _fraction("score", score)
    if subject is not None and score is None:
        raise ValidationError("subject", subject, "names the agent a --score grades: give --score too")
    if score is not None and (subject is None or subject == agent):
        raise ValidationError("score", score, "counts only as a grade of another agent: give --subject (a score "
                              "the signer gives itself is never counted)", subject=subject)
    body = Outcome(task_id=task_id, confidence_milli=conf_milli, score_milli=score_milli, success=not failed,
                   subject_id=subject)
    kw = _common(time_, idempotency_key, org, project, task, stage, run, label)

    def emit(em: Emitter) -> str:
        if score_milli is not None:
            keys = em.control_keys
            assert keys is not None  # _emit gives the emitter the control topic and anchors
            keys.refresh()
            if keys.ring.granted(agent, Capability.GRADER.value) is None:
                # readers would accept the event and silently not count its score: never acknowledge that
                raise RejectError(RejectCode.NOT_GRANTED, f"{agent} holds no grader grant: its score of {subject} "
                                  "would never count", signer_id=agent, capability=Capability.GRADER.value,
                                  subject_id=subject, appended=False,
                                  hint=f"the operator grants it: `tokenledger agent grant {agent} grader`; or emit "
                                       "the outcome without --score")
        return em.emit(body, **kw)

    _emit(agent, home, log, json_, emit)


@emit_app.command("deposit", epilog="Example: tokenledger emit deposit dep-7 -a planner --action create --responder "
                                      "researcher --amount-micros 1200 --tier standard  ·  settled by the responder: "
                                      "tokenledger emit deposit dep-7 -a researcher --action refund "
                                      "--requestor planner")
@guarded
def emit_deposit(deposit_id: str = typer.Argument(..., help="The deposit's id (the create names it; refund and "
                                                            "forfeit name the one they settle)."),
                 agent: str = AgentOpt,
                 action: str = typer.Option(..., help="create (the requestor commits it) | refund (the responder "
                                                      "returns it: a legitimate request) | forfeit (the responder "
                                                      "keeps it: spam)."),
                 responder: str | None = typer.Option(None, help="create: who holds the deposit."),
                 requestor: str | None = typer.Option(None, help="refund / forfeit: who committed it."),
                 amount_micros: str = typer.Option("0", help="create: the deposit in micro-USD (`tokenledger econ "
                                                             "deposit` computes it)."),
                 tier: str = typer.Option("", help="create: the requestor's reputation tier it was priced at."),
                 multiplier: str = typer.Option("1", help="create: the effective multiplier (base x reputation)."),
                 interaction_id: str | None = typer.Option(None, help="The interaction the deposit guards."),
                 time_: str | None = TimeOpt, idempotency_key: str | None = IdemOpt,
                 home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Emit one step of a spam deposit's life cycle; the reputation processor folds them into the `deposits` view.

    The requestor signs the create (-a is the requestor, --responder the holder); the responder signs the refund or
    forfeit (-a is the responder, --requestor who committed it). A step out of order (a refund of an unknown or
    already settled deposit) is kept on the log and listed with its reason in `deposit_events`."""
    if action == "create":
        if responder is None or requestor is not None:
            raise ValidationError("responder", responder, "a create names the holder with --responder (the signer "
                                  "is the requestor)")
        body = Deposit(deposit_id=deposit_id, action=action, requestor_id=agent, responder_id=responder,
                       amount_micros=int_arg("amount_micros", amount_micros) or 0, reputation_tier=tier,
                       multiplier_milli=milli("multiplier", multiplier), interaction_id=interaction_id)
    else:
        if requestor is None or responder is not None:
            raise ValidationError("requestor", requestor, f"a {action} names who committed the deposit with "
                                  "--requestor (the signer is the responder)")
        if amount_micros != "0" or tier or multiplier != "1":
            raise ValidationError("action", action, "a refund or forfeit carries no amount, tier or multiplier: the "
                                  "create fixed them")
        body = Deposit(deposit_id=deposit_id, action=action, requestor_id=requestor, responder_id=agent,
                       interaction_id=interaction_id)
    kw = _common(time_, idempotency_key, None, None, None, None, None, None)
    _emit(agent, home, log, json_, lambda em: em.emit(body, **kw))
