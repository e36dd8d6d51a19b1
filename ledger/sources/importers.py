"""Importers: turn usage records written by other tools into signed ``Action`` events, idempotently.

Kinds (``KINDS``)
    ``claude-code``  Claude Code workflow telemetry, ``wf_*.json`` (one run per file): each
                     ``workflow_agent`` entry becomes one ``workflow.agent`` event.
    ``openai``       OpenAI Chat Completions responses (JSON, a JSON array, or JSON lines):
                     ``prompt_tokens`` is the input total, its ``cached_tokens`` the cache-read part;
                     ``completion_tokens`` the output, its ``reasoning_tokens`` the reasoning part.
    ``anthropic``    Anthropic Messages responses: ``input_tokens`` there EXCLUDES the cache, so the
                     ledger's input total is ``input_tokens + cache_creation_input_tokens +
                     cache_read_input_tokens`` with cache write = creation and cache read = read
                     (never counted twice, never dropped).
    ``otel``         OpenTelemetry GenAI spans as JSON lines: a span per line, or an OTLP
                     ``{"resourceSpans": ...}`` export per line; attributes as a dict or as OTLP
                     ``[{"key", "value": {"intValue": ...}}]``. Per the GenAI conventions the
                     ``gen_ai.usage.cache_*.input_tokens`` are parts of ``gen_ai.usage.input_tokens``.
                     Spans with no ``gen_ai.usage.*_tokens`` (HTTP, tool spans) are counted as skipped.

Decisions
    * Provider: OTel spans name it (``gen_ai.provider.name``, else ``gen_ai.system``); OpenAI and
      Anthropic payloads are from that provider; workflow agents (and spans that name none) get it
      from the model name (``infer_provider``: claude -> anthropic, gpt / o1-o9 / text-embedding ->
      openai, gemini -> google). A name that matches none is recorded as provider ``"unknown"`` and
      still imported: the tokens were spent, and dropping them would break the run's sum. The price
      book has no ``unknown`` entries, so pricing such an event fails closed (never $0).
    * Workflow I/O split: the telemetry has one count per agent. It is recorded as
      ``input_tokens = tokens, output_tokens = 0`` with the label ``io_split=unknown``, so no reader
      can mistake it for a measured split.
    * Event time: from the record (OpenAI ``created`` in Unix seconds, OTel ``startTimeUnixNano``
      floored to microseconds). Records without one (all workflow files, Anthropic payloads) take
      the caller's ``event_time_us`` (the CLI's ``--time``); without it they are problems, and a
      ``claude-code`` import without it is refused up front. Never the wall clock, never a file's
      mtime: the same file must always give the same events.
    * Idempotency keys come from the source's identity: ``wf:{runId}:{entry index}``,
      ``openai:{id}``, ``anthropic:{id}``, ``otel:{traceId}:{spanId}`` (keys longer than an id
      may be are replaced by ``{prefix}:sha256:{hex}`` of themselves). Before emitting, the
      importer reads the keys its signer already has on the log (once per import), because the
      Emitter's idempotency window (``limits.IDEMPOTENCY_WINDOW_*``) is bounded and an import may
      replay records older than it; and because here a changed event time is a changed record
      (the Emitter lets a retry carry a later time). A key seen before with the same content is a
      duplicate; with different content it is a problem (the source changed since it was imported;
      the ledger is append-only, so the first version stands).

Invariants: a record is either emitted, counted as a duplicate, counted as skipped (a non-usage
span), or reported as an ``ImportProblem`` naming file, line (JSON lines) or JSON path, field, value
and reason. A bad record never stops the rest of its file; a file that is not JSON is one problem.
Never: turn a malformed count into 0 (a string ``"12.7"``, a float, a bool, NaN, a negative, cache
tokens above their total are all problems), guess an input/output split, or read the clock.

The parsing layer (``parse``, ``parse_workflow_run``, ``workflow_records``) is pure: bytes in,
records and problems out. ``import_files`` is the emitting layer: it reads files and the log.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from ledger import limits
from ledger.errors import LogError, RejectCode, RejectError, ValidationError
from ledger.files import read_bounded
from ledger.limits import MAX_IMPORT_FILE_BYTES, MAX_IMPORT_FILES, MAX_PROBLEM_VALUE_CHARS
from ledger.log import Log
from ledger.sdk.emitter import Emitter
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
from ledger.units import NS_PER_US, US_PER_S
from ledger.wire import codec
from ledger.wire.events import Action, Context, Event, LlmUsage, check_int, check_str

# -------------------------------------------------------------------------------- limits and names

KINDS = ("claude-code", "openai", "anthropic", "otel")
KEY_SCAN_RECORDS = 1_000  # log records read per request while collecting already-imported keys

IMPORT_OPERATION = "llm.call"  # operation of events imported from OpenAI, Anthropic and OTel records
UNKNOWN_PROVIDER = "unknown"
LABEL_SPAN_NAME = "span_name"
LABEL_GEN_AI_OPERATION = "gen_ai_operation"

DIRECTORY_PATTERNS: dict[str, tuple[str, ...]] = {
    "claude-code": ("wf_*.json",),
    "openai": ("*.json", "*.jsonl", "*.ndjson"),
    "anthropic": ("*.json", "*.jsonl", "*.ndjson"),
    "otel": ("*.json", "*.jsonl", "*.ndjson"),
}

_PROVIDER_PATTERNS = (
    ("anthropic", re.compile(r"claude")),
    ("openai", re.compile(r"(^|/)(gpt|chatgpt|o[1-9](-|$)|text-embedding)")),
    ("google", re.compile(r"gemini")),
)
_HEX = re.compile(r"[0-9a-fA-F]+")
# Contexts are immutable: payload records share one instead of validating the same labels 20k times.
# Labels are given as the (key, value) pairs Context declares; it sorts and checks them as it would a mapping.
_OPENAI_CONTEXT = Context(labels=((LABEL_SOURCE, "openai"),))
_ANTHROPIC_CONTEXT = Context(labels=((LABEL_SOURCE, "anthropic"),))
_UTF8_BOM = b"\xef\xbb\xbf"


# -------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """A record (or file) that was not imported, and exactly where and why.

    ``line`` is the 1-based line of a JSON-lines file, None for a JSON document (``field`` then
    starts with the record's JSON path, e.g. ``workflowProgress[3].tokens``) or for the whole file.
    """

    file: str
    line: int | None
    field: str
    value: str  # a short repr of the offending value
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "value": self.value, "reason": self.reason}

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}={self.value}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One event to emit, with the identity it is deduplicated by and where it came from."""

    idempotency_key: str
    body: Action
    event_time_us: int
    context: Context
    line: int | None
    path: str  # JSON path of the record in its file ("" for a whole JSON-lines line)


@dataclass(frozen=True, slots=True)
class ParseResult:
    records: tuple[ImportRecord, ...]
    problems: tuple[ImportProblem, ...]
    skipped: int = 0  # well-formed records that carry no token usage (e.g. non-GenAI spans)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    kind: str
    files: int
    imported: int
    duplicates: int
    skipped: int
    rejected: tuple[ImportProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "files": self.files, "imported": self.imported, "duplicates": self.duplicates,
                "skipped": self.skipped, "rejected": [p.to_dict() for p in self.rejected], "ok": self.ok}


# -------------------------------------------------------------------------------- small pure helpers


def check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind not in KINDS:  # the kinds are strings: refuses nothing more
        raise ValidationError("kind", kind, f"unknown import kind; kinds: {', '.join(KINDS)}")
    return kind


def check_import_time(kind: str, event_time_us: Any) -> int | None:
    """The fallback event time of an import: in range when given, and required for claude-code."""
    check_kind(kind)
    if event_time_us is not None:
        return check_int("time", event_time_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
    if kind == "claude-code":
        raise ValidationError("time", None, "workflow telemetry has no timestamps: give the event time of the "
                              "imported runs (--time ISO-8601 or microseconds)")
    return None


def infer_provider(model: str) -> str:
    """The provider a model name belongs to, or ``"unknown"`` (see the module docstring)."""
    name = model.lower()
    for provider, pattern in _PROVIDER_PATTERNS:
        if pattern.search(name):
            return provider
    return UNKNOWN_PROVIDER


def idempotency_key(prefix: str, *parts: str) -> str:
    """``prefix:part:...``; hashed to ``prefix:sha256:<hex>`` when longer than an id may be."""
    key = ":".join((prefix, *parts))
    if len(key) <= limits.MAX_ID_CHARS:
        return key
    return f"{prefix}:sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_PROBLEM_VALUE_CHARS else text[: MAX_PROBLEM_VALUE_CHARS - 3] + "..."


def _problem(file: str, line: int | None, error: ValidationError) -> ImportProblem:
    return ImportProblem(file, line, error.field, _short(error.value), error.reason)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(path or "record", value, f"must be a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _required(obj: Mapping[str, Any], name: str, path: str) -> Any:
    value = obj.get(name)
    if value is None:
        raise ValidationError(_join(path, name), value, "is required" if name not in obj else "must not be null")
    return value


def _string(obj: Mapping[str, Any], name: str, path: str, max_chars: int = limits.MAX_ID_CHARS, *,
            default: str | None = None, allow_empty: bool = False) -> str:
    """A string field; ``default`` (when given) stands in for a missing or null one."""
    value = obj.get(name)
    if value is None and default is not None:
        return default
    return check_str(_join(path, name), _required(obj, name, path), max_chars, allow_empty=allow_empty)


def _count(value: Any, field: str) -> int:
    """A token count: a JSON integer in [0, MAX_TOKENS]. Strings, floats, bools, NaN are refused."""
    return check_int(field, value, 0, limits.MAX_TOKENS)


def _optional_count(obj: Mapping[str, Any] | None, name: str, path: str) -> int:
    """An optional count (absent or null: the provider reported none of this kind, which is 0)."""
    if obj is None or obj.get(name) is None:
        return 0
    return _count(obj[name], _join(path, name))


def _optional_object(obj: Mapping[str, Any], name: str, path: str) -> Mapping[str, Any] | None:
    value = obj.get(name)
    return None if value is None else _object(value, _join(path, name))


def _part_of(part: int, part_field: str, total: int, total_name: str) -> None:
    if part > total:
        raise ValidationError(part_field, part, f"is part of {total_name} ({total:,}) and cannot exceed it")


def _event_time(field: str, value_us: int, shown: Any) -> int:
    if not limits.MIN_EVENT_TIME_US <= value_us <= limits.MAX_EVENT_TIME_US:
        raise ValidationError(field, shown, "is outside the ledger's event-time range (years 2000 to 2200)")
    return value_us


def _time_or_fallback(obj: Mapping[str, Any], name: str, path: str, fallback_us: int | None) -> int:
    """``created`` (Unix seconds) of an OpenAI-style record, else the caller's fallback time."""
    value = obj.get(name)
    if value is None:
        if fallback_us is None:
            raise ValidationError(_join(path, name), None, "the record has no event time; pass one (--time)")
        return fallback_us
    seconds = check_int(_join(path, name), value, 0, limits.MAX_EVENT_TIME_US // US_PER_S)
    return _event_time(_join(path, name), seconds * US_PER_S, value)


# -------------------------------------------------------------------------------- JSON and JSON lines


def _decode_document(data: bytes, source: str) -> tuple[Any, ImportProblem | None]:
    try:
        return json.loads(data.removeprefix(_UTF8_BOM)), None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError; absurd nesting
        return None, ImportProblem(source, None, "file", _short(data[:40]), f"is not a JSON document: {e}")


def _json_values(data: bytes, source: str) -> tuple[list[tuple[int | None, str, Any]], list[ImportProblem]]:
    """(line, JSON path, value) of each record of a JSON document (an array: one record per item)
    or of a JSON-lines file, plus a problem per unreadable line (one for the file if none is JSON)."""
    data = data.removeprefix(_UTF8_BOM)
    if not data.strip():
        return [], []
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        pass  # not one JSON document: read it as JSON lines below
    else:
        if isinstance(document, list):
            return [(None, f"[{i}]", item) for i, item in enumerate(document)], []
        return [(None, "", document)], []
    values: list[tuple[int | None, str, Any]] = []
    problems: list[ImportProblem] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            values.append((number, "", json.loads(line)))
        except (ValueError, RecursionError) as e:
            problems.append(ImportProblem(source, number, "line", _short(line[:60]), f"is not valid JSON: {e}"))
    if not values:
        return [], [ImportProblem(source, None, "file", _short(data[:40]), "is neither JSON nor JSON lines")]
    return values, problems


# -------------------------------------------------------------------------------- Claude Code workflows


def parse_workflow_run(document: Any, *, source: str) -> tuple[WorkflowRun | None, tuple[ImportProblem, ...]]:
    """A decoded ``wf_*.json`` document as a typed run, and a problem per entry that was left out.

    Run-level problems (no runId, a bad totalTokens, no workflowProgress list) reject the whole run
    (None): its agents could not be keyed or checked against the total. An agent entry with a bad
    field is left out with a problem; the run's sum invariant then shows the gap.
    """
    try:
        doc = _object(document, "")
        run_id = _string(doc, "runId", "")
        workflow = _string(doc, "workflowName", "", default="")
        status = _string(doc, "status", "", limits.MAX_LABEL_CHARS, default="", allow_empty=True)
        total = _count(_required(doc, "totalTokens", ""), "totalTokens")
        entries = _required(doc, "workflowProgress", "")
        if not isinstance(entries, list):
            raise ValidationError("workflowProgress", entries, f"must be a JSON array, got {_json_type(entries)}")
    except ValidationError as e:
        return None, (_problem(source, None, e),)
    agents: list[WorkflowAgent] = []
    problems: list[ImportProblem] = []
    for index, entry in enumerate(entries):
        path = f"workflowProgress[{index}]"
        try:
            agent = _workflow_agent(entry, index, path)
        except ValidationError as e:
            problems.append(_problem(source, None, e))
            continue
        if agent is not None:
            agents.append(agent)
    return WorkflowRun(run_id, workflow, status, total, tuple(agents)), tuple(problems)


def _workflow_agent(entry: Any, index: int, path: str) -> WorkflowAgent | None:
    """One entry: an agent, or None for a phase header (headers carry no tokens)."""
    obj = _object(entry, path)
    kind = obj.get("type")
    if kind == "workflow_phase":
        return None
    if kind != "workflow_agent":
        raise ValidationError(_join(path, "type"), kind, "must be workflow_agent or workflow_phase")
    stage = obj.get("phaseTitle")
    tool_calls = obj.get("toolCalls")
    return WorkflowAgent(
        entry_index=index,
        agent_id=_string(obj, "agentId", path, limits.MAX_LABEL_CHARS, default="", allow_empty=True),
        label=_string(obj, "label", path, limits.MAX_LABEL_CHARS, default="", allow_empty=True),
        stage=UNKNOWN_STAGE if stage is None else _string(obj, "phaseTitle", path),
        model=_string(obj, "model", path),
        state=_string(obj, "state", path, limits.MAX_LABEL_CHARS, default=UNKNOWN_STATE, allow_empty=True),
        tokens=_count(_required(obj, "tokens", path), _join(path, "tokens")),
        tool_calls=None if tool_calls is None else check_int(_join(path, "toolCalls"), tool_calls, 0,
                                                              limits.MAX_COUNT))


def workflow_records(run: WorkflowRun, event_time_us: int) -> tuple[ImportRecord, ...]:
    """The events that represent ``run`` on the ledger (one per agent; see the module docstring)."""
    check_int("event_time_us", event_time_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
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


def _parse_claude_code(data: bytes, source: str, event_time_us: int | None) -> ParseResult:
    document, problem = _decode_document(data, source)
    if problem is not None:
        return ParseResult((), (problem,))
    run, problems = parse_workflow_run(document, source=source)
    if run is None:
        return ParseResult((), problems)
    if event_time_us is None:
        no_time = ImportProblem(source, None, "time", "None", "workflow telemetry has no timestamps; pass one (--time)")
        return ParseResult((), (*problems, no_time))
    return ParseResult(workflow_records(run, event_time_us), problems)


# -------------------------------------------------------------------------------- OpenAI and Anthropic


def _payload_identity(obj: Mapping[str, Any], path: str) -> tuple[str, str, Mapping[str, Any], str]:
    """(id, model, usage object, usage path) of a provider response."""
    record_id = _string(obj, "id", path, limits.MAX_LABEL_CHARS)
    model = _string(obj, "model", path)
    usage_path = _join(path, "usage")
    return record_id, model, _object(_required(obj, "usage", path), usage_path), usage_path


def _openai_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord:
    obj = _object(value, path)
    record_id, model, usage, up = _payload_identity(obj, path)
    prompt = _count(_required(usage, "prompt_tokens", up), _join(up, "prompt_tokens"))
    completion = _count(_required(usage, "completion_tokens", up), _join(up, "completion_tokens"))
    if usage.get("total_tokens") is not None:
        total = _count(usage["total_tokens"], _join(up, "total_tokens"))
        if total != prompt + completion:
            raise ValidationError(_join(up, "total_tokens"), total,
                                  f"must equal prompt_tokens + completion_tokens ({prompt + completion:,})")
    prompt_path, completion_path = _join(up, "prompt_tokens_details"), _join(up, "completion_tokens_details")
    cached = _optional_count(_optional_object(usage, "prompt_tokens_details", up), "cached_tokens", prompt_path)
    _part_of(cached, _join(prompt_path, "cached_tokens"), prompt, "prompt_tokens")
    reasoning = _optional_count(_optional_object(usage, "completion_tokens_details", up), "reasoning_tokens",
                                completion_path)
    _part_of(reasoning, _join(completion_path, "reasoning_tokens"), completion, "completion_tokens")
    return ImportRecord(
        idempotency_key=idempotency_key("openai", record_id),
        body=Action(operation=IMPORT_OPERATION, usage=LlmUsage(
            provider="openai", model=model, input_tokens=prompt, output_tokens=completion,
            cache_read_tokens=cached, reasoning_tokens=reasoning, service_tier=_service_tier(obj, path),
            provider_cost_micros=_reported_cost(usage, up))),
        event_time_us=_time_or_fallback(obj, "created", path, fallback_us),
        context=_OPENAI_CONTEXT, line=line, path=path)


# service tiers a provider reports for its standard rates: recorded as '' (the ledger's standard)
_STANDARD_TIERS = frozenset({"default", "standard", "auto", "on_demand"})


def _service_tier(obj: Mapping[str, Any], path: str) -> str:
    """The ``service_tier`` a response reports (OpenAI: top level; Anthropic: in usage), lower-cased; '' for the
    standard tier or none."""
    raw = obj.get("service_tier")
    if raw is None:
        return ""
    tier = _string(obj, "service_tier", path, limits.MAX_SERVICE_TIER_CHARS).lower()
    return "" if tier in _STANDARD_TIERS else tier


def _reported_cost(usage: Mapping[str, Any], path: str) -> int | None:
    """The call's cost as the gateway reported it (OpenRouter's ``usage.cost``, USD), in micro-USD rounded half to
    even; None when not reported. Kept beside the ledger's own cost, never instead of it."""
    raw = usage.get("cost")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValidationError(_join(path, "cost"), raw, "must be a number of USD")
    try:
        usd = Decimal(str(raw))
    except InvalidOperation:
        raise ValidationError(_join(path, "cost"), raw, "must be a number of USD") from None
    if not usd.is_finite() or usd < 0 or usd * 1_000_000 > limits.MAX_MICROS:
        raise ValidationError(_join(path, "cost"), raw, "must be a finite, non-negative number of USD")
    return int((usd * 1_000_000).to_integral_value(rounding=ROUND_HALF_EVEN))


def _anthropic_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord:
    obj = _object(value, path)
    record_id, model, usage, up = _payload_identity(obj, path)
    uncached = _count(_required(usage, "input_tokens", up), _join(up, "input_tokens"))
    output = _count(_required(usage, "output_tokens", up), _join(up, "output_tokens"))
    written = _optional_count(usage, "cache_creation_input_tokens", up)
    read = _optional_count(usage, "cache_read_input_tokens", up)
    split_path = _join(up, "cache_creation")
    split = _optional_object(usage, "cache_creation", up)
    one_hour = 0
    if split is not None:
        five_minutes = _optional_count(split, "ephemeral_5m_input_tokens", split_path)
        one_hour = _optional_count(split, "ephemeral_1h_input_tokens", split_path)
        if five_minutes + one_hour != written:
            raise ValidationError(split_path, dict(split), "the 5-minute and 1-hour cache writes must add up to "
                                  f"cache_creation_input_tokens ({written:,})")
    # Anthropic reports input_tokens WITHOUT the cached parts; the ledger's input total includes them.
    return ImportRecord(
        idempotency_key=idempotency_key("anthropic", record_id),
        body=Action(operation=IMPORT_OPERATION, usage=LlmUsage(
            provider="anthropic", model=model, input_tokens=uncached + written + read, output_tokens=output,
            cache_read_tokens=read, cache_write_tokens=written, cache_write_1h_tokens=one_hour,
            service_tier=_service_tier(usage, up))),
        event_time_us=_time_or_fallback(obj, "created", path, fallback_us),
        context=_ANTHROPIC_CONTEXT, line=line, path=path)


# -------------------------------------------------------------------------------- OpenTelemetry GenAI spans

_OTEL_SCALARS = ("stringValue", "boolValue", "doubleValue")


def _otel_int(raw: Any, field: str) -> int:
    """An OTLP/JSON 64-bit integer: a JSON integer or (as protobuf's JSON mapping writes it) a decimal string."""
    if type(raw) is int:
        return raw
    if isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,20}", raw):
        return int(raw)
    raise ValidationError(field, raw, "must be an integer or a decimal integer string")


def _otel_value(value: Any, path: str) -> Any:
    """An OTLP AnyValue as a plain value (``intValue`` as an int)."""
    obj = _object(value, path)
    if "intValue" in obj:
        return _otel_int(obj["intValue"], _join(path, "intValue"))
    for name in _OTEL_SCALARS:
        if name in obj:
            return obj[name]
    return obj  # arrays, kvlists, bytes: kept as they are; no usage attribute has these types


def _otel_attributes(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, list):
        raise ValidationError(path, value, "must be an object or an OTLP list of {key, value}")
    out: dict[str, Any] = {}
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        entry = _object(item, item_path)
        key = _string(entry, "key", item_path, limits.MAX_LABEL_CHARS)
        if key in out:
            raise ValidationError(_join(item_path, "key"), key, "appears twice in this span's attributes")
        out[key] = _otel_value(entry.get("value"), _join(item_path, "value"))
    return out


def _otel_spans(value: Any, path: str) -> list[tuple[str, Any]]:
    """The spans of one line: the line itself, or every span of an OTLP ``resourceSpans`` export."""
    obj = _object(value, path)
    if "resourceSpans" not in obj:
        return [(path, obj)]
    spans: list[tuple[str, Any]] = []
    for r, resource in enumerate(_list(obj["resourceSpans"], _join(path, "resourceSpans"))):
        r_path = _join(path, f"resourceSpans[{r}]")
        for s, scope in enumerate(_list(_object(resource, r_path).get("scopeSpans"), _join(r_path, "scopeSpans"))):
            s_path = _join(r_path, f"scopeSpans[{s}]")
            items = _list(_object(scope, s_path).get("spans"), _join(s_path, "spans"))
            spans.extend((_join(s_path, f"spans[{i}]"), span) for i, span in enumerate(items))
    return spans


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(path, value, f"must be a JSON array, got {_json_type(value)}")
    return value


def _hex_id(obj: Mapping[str, Any], name: str, path: str, hex_chars: int) -> str:
    value = _string(obj, name, path)
    if len(value) != hex_chars or not _HEX.fullmatch(value):
        raise ValidationError(_join(path, name), value, f"must be {hex_chars} hexadecimal characters (OTLP/JSON)")
    return value.lower()


_IN, _OUT = "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"
_CACHE_READ, _CACHE_WRITE = "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens"


def _otel_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord | None:
    span = _object(value, path)
    attributes_path = _join(path, "attributes")
    attrs = _otel_attributes(span.get("attributes"), attributes_path)
    if attrs.get(_IN) is None and attrs.get(_OUT) is None:
        return None  # not an LLM call (an HTTP or tool span): nothing to meter
    trace_id = _hex_id(span, "traceId", path, 32)
    span_id = _hex_id(span, "spanId", path, 16)
    model_name = "gen_ai.response.model" if attrs.get("gen_ai.response.model") is not None else "gen_ai.request.model"
    model = _string(attrs, model_name, attributes_path)
    provider_name = "gen_ai.provider.name" if attrs.get("gen_ai.provider.name") is not None else "gen_ai.system"
    provider = (infer_provider(model) if attrs.get(provider_name) is None
                else _string(attrs, provider_name, attributes_path))
    input_tokens = _count(_required(attrs, _IN, attributes_path), _join(attributes_path, _IN))
    if attrs.get(_OUT) is None and attrs.get("gen_ai.operation.name") == "embeddings":
        output_tokens = 0  # an embeddings call generates no tokens; the conventions omit the attribute
    else:
        output_tokens = _count(_required(attrs, _OUT, attributes_path), _join(attributes_path, _OUT))
    read = _optional_count(attrs, _CACHE_READ, attributes_path)
    written = _optional_count(attrs, _CACHE_WRITE, attributes_path)
    if read + written > input_tokens:
        raise ValidationError(_join(attributes_path, _CACHE_READ), read,
                              f"cache read ({read:,}) + cache creation ({written:,}) tokens are parts of "
                              f"{_IN} ({input_tokens:,}) per the GenAI conventions and cannot exceed it")
    time_field = _join(path, "startTimeUnixNano")
    start = span.get("startTimeUnixNano")
    if start is not None:
        event_time_us = _event_time(time_field, _otel_int(start, time_field) // NS_PER_US, start)
    elif fallback_us is not None:
        event_time_us = fallback_us
    else:
        raise ValidationError(time_field, None, "is required (the span's start time), or pass a time (--time)")
    labels = {LABEL_SOURCE: "otel"}
    span_name = _string(span, "name", path, limits.MAX_LABEL_CHARS, default="", allow_empty=True)
    if span_name:
        labels[LABEL_SPAN_NAME] = span_name
    operation_name = _string(attrs, "gen_ai.operation.name", attributes_path, limits.MAX_LABEL_CHARS, default="",
                             allow_empty=True)
    if operation_name:
        labels[LABEL_GEN_AI_OPERATION] = operation_name
    return ImportRecord(
        idempotency_key=idempotency_key("otel", trace_id, span_id),
        body=Action(operation=IMPORT_OPERATION, usage=LlmUsage(
            provider=provider, model=model, input_tokens=input_tokens, output_tokens=output_tokens,
            cache_read_tokens=read, cache_write_tokens=written)),
        event_time_us=event_time_us, context=Context(run=trace_id, labels=tuple(labels.items())), line=line,
        path=path)


# -------------------------------------------------------------------------------- the pure entry point

_RecordParser = Callable[[Any, str, "int | None", "int | None"], "ImportRecord | None"]
_PAYLOAD_KINDS: dict[str, tuple[Callable[[Any, str], list[tuple[str, Any]]], _RecordParser]] = {
    "openai": (lambda value, path: [(path, value)], _openai_record),
    "anthropic": (lambda value, path: [(path, value)], _anthropic_record),
    "otel": (_otel_spans, _otel_record),
}


def parse(kind: str, data: bytes | str, *, source: str, event_time_us: int | None = None) -> ParseResult:
    """Records and problems of one file's bytes. Pure: same input, same output.

    ``source`` names the file in problems; ``event_time_us`` is the time of records that carry none.
    """
    check_kind(kind)
    if event_time_us is not None:
        check_int("event_time_us", event_time_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if kind == "claude-code":
        return _parse_claude_code(raw, source, event_time_us)
    expand, parse_one = _PAYLOAD_KINDS[kind]
    values, line_problems = _json_values(raw, source)
    records: list[ImportRecord] = []
    problems = list(line_problems)
    skipped = 0
    for line, prefix, value in values:
        try:
            units = expand(value, prefix)
        except ValidationError as e:
            problems.append(_problem(source, line, e))
            continue
        for path, unit in units:
            try:
                record = parse_one(unit, path, line, event_time_us)
            except ValidationError as e:
                problems.append(_problem(source, line, e))
                continue
            if record is None:
                skipped += 1
            else:
                records.append(record)
    problems.sort(key=lambda p: (p.line or 0,))  # stable: unreadable lines interleave with bad records
    return ParseResult(tuple(records), tuple(problems), skipped)


# -------------------------------------------------------------------------------- the emitting layer


def expand_paths(kind: str, paths: Sequence[str | Path]) -> list[Path]:
    """Files to import: files as given, directories searched recursively for the kind's patterns
    (``wf_*.json`` for claude-code; ``*.json``, ``*.jsonl``, ``*.ndjson`` otherwise), sorted, each once."""
    check_kind(kind)
    if not paths:
        raise ValidationError("paths", [], "give at least one file or directory")
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = {p for pattern in DIRECTORY_PATTERNS[kind] for p in path.rglob(pattern) if p.is_file()}
            files.extend(sorted(found))
        elif path.exists():
            files.append(path)
        else:
            raise ValidationError("paths", str(path), "does not exist")
    unique = list(dict.fromkeys(files))
    if not unique:
        patterns = ", ".join(DIRECTORY_PATTERNS[kind])
        raise ValidationError("paths", [str(p) for p in paths],
                              f"no files to import (directories are searched for {patterns})")
    if len(unique) > MAX_IMPORT_FILES:
        raise ValidationError("paths", len(unique), f"more than {MAX_IMPORT_FILES:,} files in one import")
    return unique


def _signer_events(log: Log, topic: str, signer_id: str) -> Iterator[codec.DecodedEvent]:
    """Decoded events of ``signer_id`` on the log, in log order. Records that do not decode are
    left to ``verify`` (it names them); they vouch for nothing here."""
    read_key = getattr(log, "read_key", None)
    if read_key is None:
        raise LogError("this log backend cannot look up a signer's records", url=getattr(log, "url", "?"))
    key_bytes = signer_id.encode("utf-8")
    after = -1
    while True:
        records = read_key(topic, key_bytes, after, KEY_SCAN_RECORDS)
        if not records:
            return
        for record in records:
            after = record.offset
            try:
                batch = codec.decode_batch(record.value)
                decoded = [codec.decode_event(raw) for raw in batch.events] if batch.signer_id == signer_id else []
            except RejectError:
                continue
            yield from decoded


def imported_keys(log: Log, topic: str, signer_id: str) -> dict[str, bytes]:
    """Idempotency key -> SHA-256 of the event content, for every keyed event of ``signer_id`` on the log."""
    return {d.event.idempotency_key: hashlib.sha256(d.raw[d.content_offset:]).digest()
            for d in _signer_events(log, topic, signer_id) if d.event.idempotency_key is not None}


def imported_events(log: Log, topic: str, signer_id: str) -> Iterator[Event]:
    """The events ``signer_id`` has on the log, in log order (reports built from the ledger)."""
    return (d.event for d in _signer_events(log, topic, signer_id))


def _content_digest(record: ImportRecord) -> bytes:
    return hashlib.sha256(codec.encode_content(record.event_time_us, record.context, record.body)).digest()


def _read_file(path: Path) -> tuple[int, bytes | None, ImportProblem | None]:
    """(size in bytes, contents or None, the problem when it cannot be imported)."""
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_FILE_BYTES:
            return size, None, ImportProblem(str(path), None, "file", f"{size:,} bytes",
                                             f"is larger than {MAX_IMPORT_FILE_BYTES:,} bytes; split it")
        # bounded, and only regular files: /dev/zero or a FIFO would otherwise be read until memory runs out
        data = read_bounded(path, MAX_IMPORT_FILE_BYTES, field="file", limit_name="MAX_IMPORT_FILE_BYTES")
        return len(data), data, None
    except ValidationError as e:
        return 0, None, ImportProblem(str(path), None, "file", _short(str(path)), e.reason)
    except OSError as e:
        return 0, None, ImportProblem(str(path), None, "file", _short(str(path)),
                                      f"cannot be read: {e.strerror or e}")


def import_files(kind: str, paths: Sequence[str | Path], emitter: Emitter, *, event_time_us: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 known_keys: Mapping[str, bytes | None] | Collection[str] | None = None) -> ImportSummary:
    """Parse ``paths`` and emit their records through ``emitter`` (flushed before returning).

    ``known_keys``: keys already imported by this signer (key -> content digest, or bare keys when
    the content is not known); by default they are read from the emitter's log. ``progress`` is
    called with the byte size of each file once it is done.
    """
    check_import_time(kind, event_time_us)
    files = expand_paths(kind, paths)
    if known_keys is None:
        known: Mapping[str, bytes | None] = imported_keys(emitter.log, emitter.topic, emitter.signer_id)
    elif isinstance(known_keys, Mapping):
        known = known_keys
    else:
        known = dict.fromkeys(known_keys)
    emitted: dict[str, tuple[int, Context, Action]] = {}  # this import's own keys, against in-input repeats
    imported = duplicates = skipped = 0
    rejected: list[ImportProblem] = []
    for path in files:
        size, data, problem = _read_file(path)
        if problem is not None:
            rejected.append(problem)
        if data is not None:
            result = parse(kind, data, source=str(path), event_time_us=event_time_us)
            rejected.extend(result.problems)
            skipped += result.skipped
            for record in result.records:
                outcome = _emit_one(record, emitter, known, emitted, str(path))
                if outcome == "imported":
                    imported += 1
                elif outcome == "duplicate":
                    duplicates += 1
                else:
                    rejected.append(outcome)
        if progress is not None:
            progress(size)
    emitter.flush()
    return ImportSummary(kind, len(files), imported, duplicates, skipped, tuple(rejected))


def _emit_one(record: ImportRecord, emitter: Emitter, known: Mapping[str, bytes | None],
              emitted: dict[str, tuple[int, Context, Action]],
              source: str) -> Literal["imported", "duplicate"] | ImportProblem:
    """Emit ``record`` unless its key was imported before (alike: a duplicate; not alike: a problem)."""
    key = record.idempotency_key
    content = (record.event_time_us, record.context, record.body)
    if key in emitted or key in known:
        same = emitted[key] == content if key in emitted else known[key] in (None, _content_digest(record))
        if same:
            return "duplicate"
        return ImportProblem(source, record.line, record.path or "record", _short(key),
                             "was already imported with different content (its usage, context or event time "
                             "differ: the source, or --time, changed since); the ledger keeps the first version")
    try:
        emitter.emit(record.body, event_time_us=record.event_time_us, context=record.context, idempotency_key=key)
    except ValidationError as e:
        return ImportProblem(source, record.line, _join(record.path, e.field), _short(e.value), e.reason)
    except RejectError as e:
        if e.code is not RejectCode.CLOCK_SKEW:
            raise  # the signer's key itself is refused: nothing of this import would be accepted
        # readers would quarantine this record's time (outside the skew window, beyond any backfill grant): not
        # imported, and named like any bad record; the rest of the import goes on
        ev = e.evidence
        return ImportProblem(source, record.line, _join(record.path, "event_time_us"), str(ev["claimed_us"]),
                             f"{e.reason}: accepted from {ev['earliest_us']} to {ev['latest_us']} (append time "
                             f"~{ev['append_time_us']}); historical telemetry needs a backfill grant "
                             "(tokenledger agent grant SIGNER backfill --max-age 30d)")
    emitted[key] = content
    return "imported"


__all__ = [
    "DIRECTORY_PATTERNS",
    "KINDS",
    "MAX_IMPORT_FILES",
    "MAX_IMPORT_FILE_BYTES",
    "ImportProblem",
    "ImportRecord",
    "ImportSummary",
    "ParseResult",
    "check_import_time",
    "check_kind",
    "expand_paths",
    "idempotency_key",
    "import_files",
    "imported_events",
    "imported_keys",
    "infer_provider",
    "parse",
    "parse_workflow_run",
    "workflow_records",
]
