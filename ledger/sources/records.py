"""The shared core of the importers: what a parse yields (records, problems), and the pure field readers
every format uses. A reader names the offending field by its JSON path and never turns a malformed value into 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from ledger import limits
from ledger.economics.pricing import AGGREGATE_OPERATION
from ledger.errors import ValidationError
from ledger.limits import MAX_PROBLEM_VALUE_CHARS
from ledger.units import US_PER_S
from ledger.wire.events import Action, Context, LlmUsage, check_int, check_str
from ledger.wire.timefmt import fmt_time

IMPORT_OPERATION = "llm.call"  # operation of events imported from provider payloads and spans
UNKNOWN_PROVIDER = "unknown"

_PROVIDER_PATTERNS = (
    ("anthropic", re.compile(r"claude")),
    ("openai", re.compile(r"(^|/)(gpt|chatgpt|o[1-9](-|$)|text-embedding)")),
    ("google", re.compile(r"gemini")),
)
HEX = re.compile(r"[0-9a-fA-F]+")
UTF8_BOM = b"\xef\xbb\xbf"

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
    # the agent that made the call when the source names one (OTel ``gen_ai.agent.name``, a gateway's user):
    # the event is attributed to it (``Context.agent``), the importer signing on its behalf
    agent: str | None = None

    @property
    def event_context(self) -> Context:
        """The context the event is written with: the record's, naming ``agent`` when the source attributes it."""
        if self.agent is None or self.agent == self.context.agent:
            return self.context
        return replace(self.context, agent=self.agent)


@dataclass(frozen=True, slots=True)
class Skip:
    """A well-formed record that is not a metered call (an HTTP or tool span, a bucket with no requests), and why.
    Never silent: each is reported with its place, like a problem."""

    reason: str


@dataclass(frozen=True, slots=True)
class ParseResult:
    records: tuple[ImportRecord, ...]
    problems: tuple[ImportProblem, ...]
    skipped: tuple[ImportProblem, ...] = ()  # well-formed records that carry no token usage, each with its reason


@dataclass(frozen=True, slots=True)
class FileResult:
    """What one file of an import gave: records imported, already there, skipped (no usage), rejected."""

    file: str
    imported: int
    duplicates: int
    skipped: int
    rejected: int

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "imported": self.imported, "duplicates": self.duplicates, "skipped": self.skipped,
                "rejected": self.rejected}


@dataclass(frozen=True, slots=True)
class ImportSummary:
    kind: str
    files: int
    imported: int
    duplicates: int
    skipped: tuple[ImportProblem, ...]
    rejected: tuple[ImportProblem, ...]
    per_file: tuple[FileResult, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "files": self.files, "imported": self.imported, "duplicates": self.duplicates,
                "skipped": len(self.skipped), "skips": [p.to_dict() for p in self.skipped],
                "rejected": [p.to_dict() for p in self.rejected], "ok": self.ok,
                "per_file": [f.to_dict() for f in self.per_file]}


# one JSON value of a file: (1-based line of a JSON-lines file or None, JSON path, the value)
Value = tuple[int | None, str, Any]
# a file's records -> (records kept, problems, skips)
Finish = Callable[[list[ImportRecord], str], tuple[list[ImportRecord], list[ImportProblem], list[ImportProblem]]]
# (bytes, source) -> the values and the line problems of an input whose format its sender declared
Values = Callable[[bytes, str], tuple[list[Value], list[ImportProblem]]]
JSON_PATTERNS = ("*.json", "*.jsonl", "*.ndjson")


@dataclass(frozen=True, slots=True)
class Family:
    """One source's importer: how a file becomes values, a value becomes units (one per metered call), and a unit
    becomes a record or a ``Skip``. Within a family each unit's format is detected from its shape. ``finish`` sees a
    file's records together (e.g. an aggregate span whose children carry the usage), returning the records to keep
    and the problems and skips it found.

    ``formats``: the encodings a sender may declare (an HTTP body's content type), each with the ``values`` that
    reads exactly that encoding instead of detecting one; it raises ``ValidationError`` (field ``body``) when the
    bytes are not one input of that encoding at all, since then nothing of them can be read."""

    kind: str
    expand: Callable[[Any, str], list[tuple[str, Any]]]
    parse_one: Callable[[Any, str, int | None, int | None], ImportRecord | Skip]
    values: Values
    patterns: tuple[str, ...] = JSON_PATTERNS  # searched for in a directory given to ``import``
    finish: Finish | None = None
    formats: Mapping[str, Values] = dataclasses.field(default_factory=dict)


def one_unit(value: Any, path: str) -> list[tuple[str, Any]]:
    """``Family.expand`` of a format whose every value is one call."""
    return [(path, value)]


# -------------------------------------------------------------------------------- field readers


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


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_PROBLEM_VALUE_CHARS else text[: MAX_PROBLEM_VALUE_CHARS - 3] + "..."


def problem(file: str, line: int | None, error: ValidationError) -> ImportProblem:
    return ImportProblem(file, line, error.field, short(error.value), error.reason)


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def json_object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(path or "record", value, f"must be a JSON object, got {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def required(obj: Mapping[str, Any], name: str, path: str) -> Any:
    value = obj.get(name)
    if value is None:
        raise ValidationError(join(path, name), value, "is required" if name not in obj else "must not be null")
    return value


def string(obj: Mapping[str, Any], name: str, path: str, max_chars: int = limits.MAX_ID_CHARS, *,
            default: str | None = None, allow_empty: bool = False) -> str:
    """A string field; ``default`` (when given) stands in for a missing or null one."""
    value = obj.get(name)
    if value is None and default is not None:
        return default
    return check_str(join(path, name), required(obj, name, path), max_chars, allow_empty=allow_empty)


def count(value: Any, field: str) -> int:
    """A token count: a JSON integer in [0, MAX_TOKENS]. Strings, floats, bools, NaN are refused."""
    return check_int(field, value, 0, limits.MAX_TOKENS)


def optional_count(obj: Mapping[str, Any] | None, name: str, path: str) -> int:
    """An optional count (absent or null: the provider reported none of this kind, which is 0)."""
    if obj is None or obj.get(name) is None:
        return 0
    return count(obj[name], join(path, name))


def optional_object(obj: Mapping[str, Any], name: str, path: str) -> Mapping[str, Any] | None:
    value = obj.get(name)
    return None if value is None else json_object(value, join(path, name))


def part_of(part: int, part_field: str, total: int, total_name: str) -> None:
    if part > total:
        raise ValidationError(part_field, part, f"is part of {total_name} ({total:,}) and cannot exceed it")


def event_time(field: str, value_us: int, shown: Any) -> int:
    if not limits.MIN_EVENT_TIME_US <= value_us <= limits.MAX_EVENT_TIME_US:
        raise ValidationError(field, shown, "is outside the ledger's event-time range (years 2000 to 2200)")
    return value_us


def time_or_fallback(obj: Mapping[str, Any], name: str, path: str, fallback_us: int | None) -> int:
    """``created`` (Unix seconds) of an OpenAI-style record, else the caller's fallback time."""
    value = obj.get(name)
    if value is None:
        if fallback_us is None:
            raise ValidationError(join(path, name), None, "the record has no event time; pass one (--time)")
        return fallback_us
    seconds = check_int(join(path, name), value, 0, limits.MAX_EVENT_TIME_US // US_PER_S)
    return event_time(join(path, name), seconds * US_PER_S, value)


# -------------------------------------------------------------------------------- JSON and JSON lines


def decode_document(data: bytes, source: str) -> tuple[Any, ImportProblem | None]:
    try:
        return json.loads(data.removeprefix(UTF8_BOM)), None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError; absurd nesting
        return None, ImportProblem(source, None, "file", short(data[:40]), f"is not a JSON document: {e}")


def json_values(data: bytes, source: str) -> tuple[list[tuple[int | None, str, Any]], list[ImportProblem]]:
    """(line, JSON path, value) of each record of a JSON document (an array: one record per item)
    or of a JSON-lines file, plus a problem per unreadable line (one for the file if none is JSON)."""
    data = data.removeprefix(UTF8_BOM)
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
            problems.append(ImportProblem(source, number, "line", short(line[:60]), f"is not valid JSON: {e}"))
    if not values:
        return [], [ImportProblem(source, None, "file", short(data[:40]), "is neither JSON nor JSON lines")]
    return values, problems


# -------------------------------------------------------------------------------- provider payloads


def payload_identity(obj: Mapping[str, Any], path: str) -> tuple[str, str, Mapping[str, Any], str]:
    """(id, model, usage object, usage path) of a provider response."""
    record_id = string(obj, "id", path, limits.MAX_LABEL_CHARS)
    model = string(obj, "model", path)
    usage_path = join(path, "usage")
    return record_id, model, json_object(required(obj, "usage", path), usage_path), usage_path



# service tiers a provider reports for its standard rates: recorded as '' (the ledger's standard)
STANDARD_TIERS = frozenset({"default", "standard", "auto", "on_demand"})


def service_tier(obj: Mapping[str, Any], path: str) -> str:
    """The ``service_tier`` a response reports (OpenAI: top level; Anthropic: in usage), lower-cased; '' for the
    standard tier or none."""
    raw = obj.get("service_tier")
    if raw is None:
        return ""
    tier = string(obj, "service_tier", path, limits.MAX_SERVICE_TIER_CHARS).lower()
    return "" if tier in STANDARD_TIERS else tier


def reported_cost(usage: Mapping[str, Any], path: str) -> int | None:
    """The call's cost as the gateway reported it (OpenRouter's ``usage.cost``, USD), in micro-USD rounded half to
    even; None when not reported. Kept beside the ledger's own cost, never instead of it."""
    raw = usage.get("cost")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValidationError(join(path, "cost"), raw, "must be a number of USD")
    try:
        usd = Decimal(str(raw))
    except InvalidOperation:
        raise ValidationError(join(path, "cost"), raw, "must be a number of USD") from None
    if not usd.is_finite() or usd < 0 or usd * 1_000_000 > limits.MAX_MICROS:
        raise ValidationError(join(path, "cost"), raw, "must be a finite, non-negative number of USD")
    return int((usd * 1_000_000).to_integral_value(rounding=ROUND_HALF_EVEN))


# -------------------------------------------------------------------------------- names the provider importers share

LABEL_AGGREGATE = "aggregate"  # "true" on every aggregate event
LABEL_BUCKET_START = "bucket_start"  # ISO-8601 start of the report bucket an aggregate covers
LABEL_BUCKET_END = "bucket_end"  # ISO-8601 end (exclusive) of that bucket
LABEL_CUSTOM_ID = "custom_id"  # the caller's id of a batch request
LABEL_STATUS = "status"  # a Responses API status other than "completed"
BATCH_TIER = "batch"  # the service tier of calls made through a provider's batch API
UNKNOWN_MODEL = "unknown"  # model of an aggregate a report did not group by model: priced nowhere, fails closed


def batch_tier(reported: str, field: str, shown: Any) -> str:
    """The tier of a batch result: ``batch``, when the payload reported the standard tier ('') or batch itself."""
    if reported not in ("", BATCH_TIER):
        raise ValidationError(field, shown, f"reports service tier {reported!r}, but a batch result is billed at "
                                            f"the {BATCH_TIER!r} tier")
    return BATCH_TIER


def call_tier(obj: Mapping[str, Any], path: str, *, batch: bool) -> str:
    """The service tier of a call whose ``service_tier`` is ``obj``'s (``service_tier``); of a batch result
    (``batch``): ``batch``, which the reported tier must not contradict (``batch_tier``)."""
    tier = service_tier(obj, path)
    return batch_tier(tier, join(path, "service_tier"), obj.get("service_tier")) if batch else tier


def labels_context(labels: Mapping[str, str]) -> Context:
    """A context carrying ``labels`` (and nothing else)."""
    return Context(labels=tuple(labels.items()))


def grouping(obj: Mapping[str, Any], path: str, names: Sequence[str], labelled: Collection[str],
             labels: dict[str, str], key_parts: list[str]) -> dict[str, str | None]:
    """The grouping fields ``names`` of a usage report result: each an optional string (absent or null: the report
    is not grouped by it), read in order. Each one present is appended to ``key_parts`` as ``name=value`` (in the
    order of ``names``: the aggregate's idempotency key) and, when in ``labelled``, set in ``labels``."""
    values = {name: None if obj.get(name) is None else string(obj, name, path, limits.MAX_LABEL_CHARS)
              for name in names}
    for name, value in values.items():
        if value is not None:
            key_parts.append(f"{name}={value}")
            if name in labelled:
                labels[name] = value
    return values


def aggregate_record(key_prefix: str, key_parts: Sequence[str], usage: LlmUsage, start_us: int, end_us: int,
                     labels: Mapping[str, str], line: int | None, path: str) -> ImportRecord:
    """One result of a usage report bucket as an ``llm.usage_aggregate`` event (one event sums many calls): keyed
    ``{key_prefix}:{key_parts...}``, at the bucket's start, with ``labels`` plus ``aggregate=true`` and the bucket's
    bounds (``bucket_start``, ``bucket_end``: ISO-8601)."""
    return ImportRecord(
        idempotency_key=idempotency_key(key_prefix, *key_parts),
        body=Action(operation=AGGREGATE_OPERATION, usage=usage), event_time_us=start_us,
        context=labels_context({**labels, LABEL_AGGREGATE: "true", LABEL_BUCKET_START: fmt_time(start_us),
                                LABEL_BUCKET_END: fmt_time(end_us)}),
        line=line, path=path)


def json_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(path, value, f"must be a JSON array, got {json_type(value)}")
    return value


def check_bucket_bounds(start_us: int, end_us: int, end_field: str, shown: Any) -> None:
    if end_us <= start_us:
        raise ValidationError(end_field, shown, "must be later than the bucket's start")


def page_units(obj: Mapping[str, Any], path: str, bucket_units: Any) -> list[tuple[str, Any]]:
    """Units of a report page: one per result of each bucket; a malformed bucket becomes one unit that carries its
    error (``parse_one`` raises it), so it is one problem while the page's other buckets import."""
    data_path = join(path, "data")
    units: list[tuple[str, Any]] = []
    for i, bucket in enumerate(json_list(required(obj, "data", path), data_path)):
        bucket_path = f"{data_path}[{i}]"
        try:
            units.extend(bucket_units(bucket, bucket_path))
        except ValidationError as e:
            units.append((bucket_path, e))
    return units
