"""OpenTelemetry GenAI spans: one ``llm.call`` event per span that reports token usage.

Inputs (the format is detected from the bytes, never from the file name)
    * OTLP/JSON: an ``ExportTraceServiceRequest`` document ``{"resourceSpans": [...]}``, a JSON array of them, or
      JSON lines each holding one export or one bare span. Attributes as a dict or as OTLP
      ``[{"key", "value": {"intValue": ...}}]``; 64-bit integers as JSON integers or decimal strings; ids in hex.
    * OTLP protobuf: a binary ``ExportTraceServiceRequest`` (``.binpb``, an OTLP/HTTP body), or a sequence of them
      each preceded by its length as a 4-byte big-endian integer (the collector's file exporter, ``format: proto``).
      Each is decoded with ``opentelemetry-proto`` and mapped to the OTLP/JSON shape (``MessageToDict``), trace and
      span ids as hex (protobuf's JSON mapping writes bytes as base64), so both encodings give the same records.
      Places in a framed file are ``message[i].resourceSpans[j]...``.
    A UTF-8 file is read as JSON first, anything else as protobuf first; a file that is neither is one problem.
    * Declared (``FAMILY.formats``; an OTLP/HTTP body, whose content type says which): ``json`` is exactly one
      OTLP/JSON request object, ``protobuf`` exactly one binary request (no length prefix); bytes that are not
      one raise ``ValidationError`` on ``body`` (nothing of them is read), and the spans inside are read as above.

Token kinds (``LlmUsage``), current attribute names | the legacy names still emitted by older instrumentations:
    input          ``gen_ai.usage.input_tokens`` | ``gen_ai.usage.prompt_tokens``
    output         ``gen_ai.usage.output_tokens`` | ``gen_ai.usage.completion_tokens``
    cache read     ``gen_ai.usage.cache_read.input_tokens`` | ``gen_ai.usage.cache_read_input_tokens``
    cache write    ``gen_ai.usage.cache_creation.input_tokens`` | ``gen_ai.usage.cache_creation_input_tokens``
    reasoning      ``gen_ai.usage.reasoning.output_tokens`` (part of output)
    total          ``gen_ai.usage.total_tokens`` | ``llm.usage.total_tokens`` (only checked, never recorded)
    A span carrying both names of one kind with different values is a problem. A span with any of these carries
    usage, and then input (and output, except for ``embeddings``) is required: usage is never guessed or dropped.

The cache rule. Per the GenAI conventions the cache parts are INSIDE ``gen_ai.usage.input_tokens``, which is the
ledger's input total. Some Anthropic instrumentations instead copy Anthropic's ``input_tokens``, which EXCLUDES the
cache. One span cannot always tell, so:
    * with a reported total: ``total == input + output`` is the conventions' reading; ``total == input + cache read
      + cache creation + output`` (cache > 0) proves the cache is outside the input, and the ledger's input total is
      then ``input + cache read + cache creation`` (label ``input_tokens_reported=without_cache``); any other total
      is a problem;
    * without one: cache read + creation <= input is read per the conventions; more than the input cannot be the
      inclusive convention, and is a problem (never silently re-read as exclusive).
    Reasoning above output is a problem.

Everything else
    * Provider: ``gen_ai.provider.name``, else the legacy ``gen_ai.system``, else inferred from the model
      (``records.infer_provider``). Model: ``gen_ai.response.model`` over ``gen_ai.request.model``.
    * Attribution (``ImportRecord.agent``): ``gen_ai.agent.name`` (else ``gen_ai.agent.id``) of the span, else of its
      nearest ancestor span in the same file (same trace, following ``parentSpanId``) that carries either, else of
      its resource. The ``gen_ai.agent.id`` of the span that named the agent becomes the label ``gen_ai_agent_id``;
      the nearest ``gen_ai.conversation.id`` (span, ancestors, resource) the label ``gen_ai_conversation_id``;
      ``service.name`` (span, else resource) the label ``service_name``; the trace id is ``Context.run``. Resource
      attributes are visible to their spans for these and for provider, never for usage (it would count once per
      span). An ancestor chain that loops, or is deeper than ``limits.MAX_SPAN_DEPTH``, is a problem.
    * Aggregates: a span with usage that has spans with usage beneath it in the file (an ``invoke_agent`` span
      totalling its ``chat`` spans) is not recorded: the spans beneath it that have none beneath them (its child
      calls) are. Its reported kinds are compared with their sums: equal is a skip ("aggregate of N child spans
      (totals match)"), different is a problem naming the span and both totals. An aggregate whose children are in
      another file is not seen as one.
    * Spans without usage attributes (HTTP, tool, ``invoke_agent`` spans without totals) are skips with a reason.
    * Key ``otel:{traceId}:{spanId}``; event time ``startTimeUnixNano`` floored to microseconds, else ``--time``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeGuard

# protobuf ships no type information (opentelemetry-proto's generated modules do)
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from google.protobuf.unknown_fields import UnknownFieldSet  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ledger import limits
from ledger.errors import ValidationError
from ledger.sources import records as rec
from ledger.sources.attribution import LABEL_SOURCE
from ledger.sources.records import IMPORT_OPERATION, ImportProblem, ImportRecord, idempotency_key, infer_provider
from ledger.units import NS_PER_US
from ledger.wire.events import Action, Context, LlmUsage, check_str

FRAME_HEADER_BYTES = 4  # the collector's file exporter writes each request's length as a big-endian uint32
PROTO_FIRST_BYTE = b"\x0a"  # field 1 (resource_spans), length-delimited: how a non-empty request starts
PROTOBUF_PATTERNS = ("*.pb", "*.binpb", "*.otlp")
# the encodings a sender may declare (``importers.parse(..., format=...)``; the OTLP/HTTP content types)
JSON_FORMAT, PROTOBUF_FORMAT = "json", "protobuf"

LABEL_SPAN_NAME = "span_name"
LABEL_GEN_AI_OPERATION = "gen_ai_operation"
LABEL_SERVICE_NAME = "service_name"
LABEL_AGENT_ID = "gen_ai_agent_id"
LABEL_CONVERSATION_ID = "gen_ai_conversation_id"
LABEL_INPUT_REPORTED = "input_tokens_reported"
INPUT_WITHOUT_CACHE = "without_cache"

# (current name, legacy names...) of each count: all that are present must agree
IN = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
CACHE_WRITE = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens")
REASONING = ("gen_ai.usage.reasoning.output_tokens",)
TOTAL = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens")
USAGE_NAMES = (*IN, *OUT, *CACHE_READ, *CACHE_WRITE, *REASONING, *TOTAL)
AGENT_NAME, AGENT_ID = "gen_ai.agent.name", "gen_ai.agent.id"
CONVERSATION_ID, SERVICE_NAME = "gen_ai.conversation.id", "service.name"

_OTEL_SCALARS = ("stringValue", "boolValue", "doubleValue")
_DECIMAL_INT = re.compile(r"-?[0-9]{1,20}")

# ------------------------------------------------------------------------------------ what the file pass hands on


@dataclass(frozen=True, slots=True)
class _Node:
    """What the file says about one span, for its descendants: its parent and its attributes."""

    parent: str | None  # parent span id (lower-case hex), None for a root
    parent_ok: bool  # False: its parentSpanId does not read (its lineage above it cannot be followed)
    attrs: Mapping[str, Any] | None  # None: they do not decode (the span's own problem says why)
    where: str  # "line N" / JSON path, for messages


SpanIndex = Mapping[tuple[str, str], _Node]  # (trace id, span id) -> node, every span of one file


@dataclass(frozen=True, slots=True)
class _Span:
    """One span to parse, with its resource's attributes and the file's span index (to find its ancestors)."""

    span: Any
    attrs: dict[str, Any] | ValidationError
    resource: Mapping[str, Any]
    resource_path: str
    index: SpanIndex


@dataclass(frozen=True, slots=True)
class SpanRecord(ImportRecord):
    """A span's record until ``aggregates`` has seen the whole file (it returns plain ``ImportRecord``s)."""

    span_id: str = ""
    ancestors: tuple[str, ...] = ()  # span ids of its ancestors in the file (same trace), nearest first
    reported: tuple[str, ...] = ()  # the ``LlmUsage`` kinds the span reported: what an aggregate is checked on


# ------------------------------------------------------------------------------------ bytes -> values


def otlp_values(data: bytes, source: str) -> tuple[list[rec.Value], list[ImportProblem]]:
    """``Family.values``: one value per span of the file (OTLP/JSON or protobuf), each with the file's span index."""
    return _span_values(*_documents(data, source), source)


def otlp_json_values(data: bytes, source: str) -> tuple[list[rec.Value], list[ImportProblem]]:
    """``Family.formats[JSON_FORMAT]``: the spans of one OTLP/JSON ``ExportTraceServiceRequest`` document (an OTLP/HTTP
    body sent as ``application/json``): a JSON object whose ``resourceSpans`` (absent: no spans) is an array. Not
    that: ``ValidationError`` on ``body``. Everything inside is read as in a file."""
    document, problem = rec.decode_document(data, source)
    if problem is not None:
        raise ValidationError("body", problem.value, problem.reason)
    if not isinstance(document, dict):
        raise ValidationError("body", rec.short(document), "must be a JSON object (an OTLP/JSON "
                              f"ExportTraceServiceRequest), got {rec.json_type(document)}")
    spans = document.get("resourceSpans")
    if spans is not None and not isinstance(spans, list):
        raise ValidationError("body.resourceSpans", rec.short(spans),
                              f"must be a JSON array (OTLP/JSON ExportTraceServiceRequest), got {rec.json_type(spans)}")
    return _span_values([(None, "", {"resourceSpans": spans or []})], [], source)


def otlp_protobuf_values(data: bytes, source: str) -> tuple[list[rec.Value], list[ImportProblem]]:
    """``Family.formats[PROTOBUF_FORMAT]``: the spans of one binary ``ExportTraceServiceRequest`` (an OTLP/HTTP body
    sent as ``application/x-protobuf``; no length prefix). Bytes that are not one (or decode only to unknown fields):
    ``ValidationError`` on ``body``. Empty bytes are the empty request."""
    document = _request(data)
    if document is None:
        raise ValidationError("body", rec.short(data[:40]), "is not an OTLP ExportTraceServiceRequest (protobuf)")
    return _span_values([(None, "", document)], [], source)


def _span_values(documents: list[rec.Value], problems: list[ImportProblem],
                 source: str) -> tuple[list[rec.Value], list[ImportProblem]]:
    """One value per span of ``documents`` (OTLP/JSON-shaped), each with the span index of them all."""
    found: list[tuple[int | None, str, Any, Mapping[str, Any], str]] = []
    for line, path, document in documents:
        spans, errors = _spans(document, path)
        found.extend((line, *span) for span in spans)
        problems.extend(rec.problem(source, line, e) for e in errors)
    index: dict[tuple[str, str], _Node] = {}
    decoded: list[tuple[int | None, str, Any, dict[str, Any] | ValidationError, Mapping[str, Any], str]] = []
    for line, path, span, resource, resource_path in found:
        attrs = _span_attributes(span, path)
        key = _index_key(span)
        if key is not None and key not in index:  # a repeated span: the first stands (the emitter dedups it)
            where = path if line is None else f"line {line}" + (f" {path}" if path else "")
            parent, parent_ok = _loose_parent(span)
            index[key] = _Node(parent, parent_ok, None if isinstance(attrs, ValidationError) else attrs, where)
        decoded.append((line, path, span, attrs, resource, resource_path))
    values: list[rec.Value] = [(line, path, _Span(span, attrs, resource, resource_path, index))
                               for line, path, span, attrs, resource, resource_path in decoded]
    return values, problems


def _documents(data: bytes, source: str) -> tuple[list[rec.Value], list[ImportProblem]]:
    """The file's OTLP/JSON-shaped documents: JSON (document, array, lines) or protobuf requests."""
    body = data.removeprefix(rec.UTF8_BOM)
    if not body.strip():
        return [], []
    try:
        body.decode("utf-8")
        text = True
    except UnicodeDecodeError:
        text = False
    if text:  # JSON is UTF-8; a protobuf request is almost never valid UTF-8 (random ids, fixed64 times)
        values, problems = rec.json_values(body, source)
        if values:
            return values, problems
    decoded = _protobuf_documents(body, source)
    if decoded is not None:
        return decoded
    if not text:  # not protobuf either: perhaps JSON lines with a few broken bytes
        values, problems = rec.json_values(body, source)
        if values:
            return values, problems
    return [], [ImportProblem(source, None, "file", rec.short(data[:40]),
                              "is neither OTLP/JSON (an ExportTraceServiceRequest document, or JSON lines of them or "
                              "of spans) nor OTLP protobuf (an ExportTraceServiceRequest, alone or length-prefixed "
                              "as the collector's file exporter writes them)")]


def _protobuf_documents(body: bytes, source: str) -> tuple[list[rec.Value], list[ImportProblem]] | None:
    """The requests of a protobuf file as OTLP/JSON-shaped dicts; None when it is not one."""
    if body[:1] == PROTO_FIRST_BYTE:  # a bare request (a framed one would start with a 160 MiB length)
        document = _request(body)
        if document is not None:
            return [(None, "", document)], []
    frames = _frames(body)
    if frames is None:
        return None
    values: list[rec.Value] = []
    problems: list[ImportProblem] = []
    for i, frame in enumerate(frames):
        document = _request(frame)
        if document is None:
            problems.append(ImportProblem(source, None, f"message[{i}]", rec.short(frame[:40]),
                                          "is not an OTLP ExportTraceServiceRequest (protobuf)"))
        else:
            values.append((None, f"message[{i}]", document))
    if not values:
        return None  # no frame decodes: the length prefixes fitting was a coincidence
    return values, problems


def _frames(body: bytes) -> list[bytes] | None:
    """The messages of a length-prefixed file, or None when the prefixes do not tile the file exactly."""
    frames: list[bytes] = []
    at = 0
    while at < len(body):
        if at + FRAME_HEADER_BYTES > len(body):
            return None
        size = int.from_bytes(body[at:at + FRAME_HEADER_BYTES], "big")
        start = at + FRAME_HEADER_BYTES
        if start + size > len(body):
            return None
        frames.append(body[start:start + size])
        at = start + size
    return frames or None


def _request(data: bytes) -> dict[str, Any] | None:
    """One ``ExportTraceServiceRequest`` as an OTLP/JSON-shaped dict (ids in hex), or None if the bytes are not one.

    A request has a single field; bytes that parse only as unknown fields are not a request."""
    try:
        message = ExportTraceServiceRequest.FromString(data)
    except (DecodeError, RecursionError):
        return None
    if len(UnknownFieldSet(message)):
        return None
    document: dict[str, Any] = json_format.MessageToDict(message)
    # MessageToDict writes bytes as base64; OTLP/JSON writes trace and span ids as hex: take them from the message
    for resource, resource_doc in zip(message.resource_spans, document.get("resourceSpans", []), strict=True):
        for scope, scope_doc in zip(resource.scope_spans, resource_doc.get("scopeSpans", []), strict=True):
            for span, span_doc in zip(scope.spans, scope_doc.get("spans", []), strict=True):
                for name, raw in (("traceId", span.trace_id), ("spanId", span.span_id),
                                  ("parentSpanId", span.parent_span_id)):
                    if raw:
                        span_doc[name] = raw.hex()
    return document


# ------------------------------------------------------------------------------------ documents -> spans


def _spans(document: Any, path: str) -> tuple[list[tuple[str, Any, Mapping[str, Any], str]], list[ValidationError]]:
    """(path, span, resource attributes, resource path) of every span of a document (an export or a bare span),
    and an error per resource (or document) that could not be read; the other resources still count."""
    if not isinstance(document, dict):
        return [], [ValidationError(path or "record", document,
                                    f"must be a JSON object, got {rec.json_type(document)}")]
    if "resourceSpans" not in document:
        return [(path, document, {}, "")], []
    found: list[tuple[str, Any, Mapping[str, Any], str]] = []
    errors: list[ValidationError] = []
    try:
        resources = _list(document["resourceSpans"], rec.join(path, "resourceSpans"))
    except ValidationError as e:
        return [], [e]
    for r, item in enumerate(resources):
        r_path = rec.join(path, f"resourceSpans[{r}]")
        try:
            resource_spans = rec.json_object(item, r_path)
            resource = rec.optional_object(resource_spans, "resource", r_path) or {}
            resource_path = rec.join(r_path, "resource.attributes")
            resource_attrs = _otel_attributes(resource.get("attributes"), resource_path)
            scopes = _list(resource_spans.get("scopeSpans"), rec.join(r_path, "scopeSpans"))
            for s, scope in enumerate(scopes):
                s_path = rec.join(r_path, f"scopeSpans[{s}]")
                items = _list(rec.json_object(scope, s_path).get("spans"), rec.join(s_path, "spans"))
                found.extend((rec.join(s_path, f"spans[{i}]"), span, resource_attrs, resource_path)
                             for i, span in enumerate(items))
        except ValidationError as e:
            errors.append(e)
    return found, errors


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(path, value, f"must be a JSON array, got {rec.json_type(value)}")
    return value


def _otel_int(raw: Any, field: str) -> int:
    """An OTLP/JSON 64-bit integer: a JSON integer or (as protobuf's JSON mapping writes it) a decimal string."""
    if type(raw) is int:
        return raw
    if isinstance(raw, str) and _DECIMAL_INT.fullmatch(raw):
        return int(raw)
    raise ValidationError(field, raw, "must be an integer or a decimal integer string")


def _otel_value(value: Any, path: str) -> Any:
    """An OTLP AnyValue as a plain value (``intValue`` as an int)."""
    obj = rec.json_object(value, path)
    if "intValue" in obj:
        return _otel_int(obj["intValue"], rec.join(path, "intValue"))
    for name in _OTEL_SCALARS:
        if name in obj:
            return obj[name]
    return obj  # arrays, kvlists, bytes: kept as they are; no attribute read here has these types


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
        entry = rec.json_object(item, item_path)
        key = rec.string(entry, "key", item_path, limits.MAX_LABEL_CHARS)
        if key in out:
            raise ValidationError(rec.join(item_path, "key"), key, "appears twice in these attributes")
        out[key] = _otel_value(entry.get("value"), rec.join(item_path, "value"))
    return out


def _span_attributes(span: Any, path: str) -> dict[str, Any] | ValidationError:
    try:
        return _otel_attributes(rec.json_object(span, path).get("attributes"), rec.join(path, "attributes"))
    except ValidationError as e:
        return e


def _is_hex(value: Any, chars: int) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == chars and rec.HEX.fullmatch(value) is not None


def _index_key(span: Any) -> tuple[str, str] | None:
    """(trace id, span id) of a span whose ids read; a span whose do not is a problem of its own."""
    if not isinstance(span, dict):
        return None
    trace_id, span_id = span.get("traceId"), span.get("spanId")
    if not _is_hex(trace_id, 32) or not _is_hex(span_id, 16):
        return None
    return trace_id.lower(), span_id.lower()


def _loose_parent(span: Any) -> tuple[str | None, bool]:
    """(parent span id or None for a root, whether the link reads)."""
    parent = span.get("parentSpanId")
    if parent is None or parent == "":
        return None, True
    return (parent.lower(), True) if _is_hex(parent, 16) else (None, False)


# ------------------------------------------------------------------------------------ one span


def _hex_id(obj: Mapping[str, Any], name: str, path: str, hex_chars: int) -> str:
    value = rec.string(obj, name, path)
    if not _is_hex(value, hex_chars):
        raise ValidationError(rec.join(path, name), value, f"must be {hex_chars} hexadecimal characters (OTLP/JSON)")
    return value.lower()


def _parent_id(span: Mapping[str, Any], path: str) -> str | None:
    raw = span.get("parentSpanId")
    if raw is None or raw == "":  # OTLP/JSON writes a root's parent as ""
        return None
    return _hex_id(span, "parentSpanId", path, 16)


def _count(attrs: Mapping[str, Any], names: Sequence[str], path: str) -> tuple[int | None, str]:
    """A count under its current or a legacy name (and the name it came from); names that disagree: a problem."""
    value: int | None = None
    used = names[0]
    for name in names:
        raw = attrs.get(name)
        if raw is None:
            continue
        n = rec.count(raw, rec.join(path, name))
        if value is not None and n != value:
            raise ValidationError(rec.join(path, name), raw,
                                  f"differs from {used} ({value:,}): both name the same count, and one must be wrong")
        if value is None:
            value, used = n, name
    return value, used


@dataclass(frozen=True, slots=True)
class _Usage:
    input_tokens: int
    output_tokens: int
    cache_read: int
    cache_write: int
    reasoning: int
    reported: tuple[str, ...]
    without_cache: bool  # the span reported input_tokens without its cache parts (see the module docstring)


def _usage(attrs: Mapping[str, Any], path: str) -> _Usage:
    """The span's token counts by the rules of the module docstring."""
    input_tokens, in_name = _count(attrs, IN, path)
    output_tokens, out_name = _count(attrs, OUT, path)
    read, read_name = _count(attrs, CACHE_READ, path)
    written, write_name = _count(attrs, CACHE_WRITE, path)
    reasoning, reasoning_name = _count(attrs, REASONING, path)
    total, total_name = _count(attrs, TOTAL, path)
    if input_tokens is None:
        raise ValidationError(rec.join(path, IN[0]), None, f"is required (or {IN[1]}) on a span that reports usage")
    reported = ["input_tokens"]
    if output_tokens is None:
        if attrs.get("gen_ai.operation.name") != "embeddings":
            raise ValidationError(rec.join(path, OUT[0]), None,
                                  f"is required (or {OUT[1]}) on a span that reports usage, except embeddings")
        output_tokens = 0  # an embeddings call generates no tokens; the conventions omit the attribute
    else:
        reported.append("output_tokens")
    reported += [kind for kind, value in (("cache_read_tokens", read), ("cache_write_tokens", written),
                                          ("reasoning_tokens", reasoning)) if value is not None]
    read, written, reasoning = read or 0, written or 0, reasoning or 0
    cache = read + written
    without_cache = False
    if total is not None:
        # a total of input + output is the conventions' reading (the cache parts, if any, are inside the input)
        if total == input_tokens + output_tokens:
            without_cache = False
        elif cache and total == input_tokens + cache + output_tokens:
            without_cache = True
            input_tokens += cache
        else:
            raise ValidationError(rec.join(path, total_name), total,
                                  f"is neither input + output ({input_tokens + output_tokens:,}) nor input + cache "
                                  f"read + cache creation + output ({input_tokens + cache + output_tokens:,})")
    elif cache > input_tokens:
        part = read_name if read else write_name
        raise ValidationError(rec.join(path, part), read if read else written,
                              f"cache read ({read:,}) + cache creation ({written:,}) tokens are parts of {in_name} "
                              f"({input_tokens:,}) per the GenAI conventions and cannot exceed it: the span reports "
                              "an input count without its cache (as Anthropic's API does) or is malformed, and with "
                              "no total (gen_ai.usage.total_tokens) to tell which, it is not guessed")
    rec.part_of(reasoning, rec.join(path, reasoning_name), output_tokens, out_name)
    return _Usage(input_tokens, output_tokens, read, written, reasoning, tuple(reported), without_cache)


def _lineage(unit: _Span, trace_id: str, span_id: str, path: str) -> list[tuple[str, _Node]]:
    """The span's ancestors in the file, nearest first (a loop, or a chain deeper than limits.MAX_SPAN_DEPTH: a
    problem)."""
    chain: list[tuple[str, _Node]] = []
    seen = {span_id}
    parent = _parent_id(unit.span, path)
    while parent is not None:
        node = unit.index.get((trace_id, parent))
        if node is None:
            break  # the rest of the trace is not in this file
        if parent in seen:
            raise ValidationError(rec.join(path, "parentSpanId"), unit.span.get("parentSpanId"),
                                  f"its ancestors form a loop: span {parent} ({node.where}) is its own ancestor")
        if len(chain) == limits.MAX_SPAN_DEPTH:
            raise ValidationError(rec.join(path, "parentSpanId"), unit.span.get("parentSpanId"),
                                  f"has more than {limits.MAX_SPAN_DEPTH} ancestor spans in this file "
                                  "(limits.MAX_SPAN_DEPTH)")
        if not node.parent_ok:
            raise ValidationError(rec.join(path, "parentSpanId"), unit.span.get("parentSpanId"),
                                  f"its ancestor span {parent} ({node.where}) has a parentSpanId that does not read, "
                                  "so the agent and aggregates above it cannot be known")
        seen.add(parent)
        chain.append((parent, node))
        parent = node.parent
    return chain


def _nearest(names: Sequence[str], attrs: Mapping[str, Any], path: str, chain: Sequence[tuple[str, _Node]],
             unit: _Span, span_path: str) -> tuple[Mapping[str, Any], str] | None:
    """The attributes (and their path, for errors) of the nearest of the span, its ancestors and its resource that
    carries one of ``names``."""
    if any(attrs.get(n) is not None for n in names):
        return attrs, path
    for ancestor, node in chain:
        if node.attrs is None:
            raise ValidationError(rec.join(span_path, "parentSpanId"), unit.span.get("parentSpanId"),
                                  f"its ancestor span {ancestor} ({node.where}) has attributes that do not decode, so "
                                  f"its {' / '.join(names)} cannot be known")
        if any(node.attrs.get(n) is not None for n in names):
            return node.attrs, f"span {ancestor} ({node.where}) attributes"
    if any(unit.resource.get(n) is not None for n in names):
        return unit.resource, unit.resource_path
    return None


def _text(attrs: Mapping[str, Any], name: str, path: str, max_chars: int) -> str:
    return check_str(rec.join(path, name), attrs.get(name), max_chars)


def _attribution(unit: _Span, attrs: Mapping[str, Any], path: str, chain: Sequence[tuple[str, _Node]],
                 span_path: str) -> tuple[str | None, dict[str, str]]:
    """(the agent the call is attributed to, the context labels that come from the span's lineage)."""
    labels: dict[str, str] = {}
    agent: str | None = None
    found = _nearest((AGENT_NAME, AGENT_ID), attrs, path, chain, unit, span_path)
    if found is not None:
        where_attrs, where = found
        agent = _text(where_attrs, AGENT_NAME if where_attrs.get(AGENT_NAME) is not None else AGENT_ID, where,
                      limits.MAX_ID_CHARS)
        if where_attrs.get(AGENT_ID) is not None:
            labels[LABEL_AGENT_ID] = _text(where_attrs, AGENT_ID, where, limits.MAX_LABEL_CHARS)
    found = _nearest((CONVERSATION_ID,), attrs, path, chain, unit, span_path)
    if found is not None:
        labels[LABEL_CONVERSATION_ID] = _text(found[0], CONVERSATION_ID, found[1], limits.MAX_LABEL_CHARS)
    if attrs.get(SERVICE_NAME) is not None:
        labels[LABEL_SERVICE_NAME] = _text(attrs, SERVICE_NAME, path, limits.MAX_LABEL_CHARS)
    elif unit.resource.get(SERVICE_NAME) is not None:
        labels[LABEL_SERVICE_NAME] = _text(unit.resource, SERVICE_NAME, unit.resource_path, limits.MAX_LABEL_CHARS)
    return agent, labels


def _provider(attrs: Mapping[str, Any], path: str, resource: Mapping[str, Any], resource_path: str,
              model: str) -> str:
    for where_attrs, where in ((attrs, path), (resource, resource_path)):
        for name in ("gen_ai.provider.name", "gen_ai.system"):
            if where_attrs.get(name) is not None:
                return rec.string(where_attrs, name, where)
    return infer_provider(model)


def span_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> SpanRecord | rec.Skip:
    """``Family.parse_one``: one span (a ``_Span`` from ``otlp_values``, or a bare span object)."""
    unit = value if isinstance(value, _Span) else _Span(value, _span_attributes(value, path), {}, "", {})
    if isinstance(unit.attrs, ValidationError):
        raise unit.attrs
    span, attrs = rec.json_object(unit.span, path), unit.attrs
    attributes_path = rec.join(path, "attributes")
    if all(attrs.get(name) is None for name in USAGE_NAMES):
        return rec.Skip("no gen_ai.usage.*_tokens attributes: not an LLM call (an HTTP, tool or agent span)")
    trace_id = _hex_id(span, "traceId", path, 32)
    span_id = _hex_id(span, "spanId", path, 16)
    model_name = "gen_ai.response.model" if attrs.get("gen_ai.response.model") is not None else "gen_ai.request.model"
    model = rec.string(attrs, model_name, attributes_path)
    provider = _provider(attrs, attributes_path, unit.resource, unit.resource_path, model)
    usage = _usage(attrs, attributes_path)
    time_field = rec.join(path, "startTimeUnixNano")
    start = span.get("startTimeUnixNano")
    if start is not None:
        event_time_us = rec.event_time(time_field, _otel_int(start, time_field) // NS_PER_US, start)
    elif fallback_us is not None:
        event_time_us = fallback_us
    else:
        raise ValidationError(time_field, None, "is required (the span's start time), or pass a time (--time)")
    chain = _lineage(unit, trace_id, span_id, path)
    agent, lineage_labels = _attribution(unit, attrs, attributes_path, chain, path)
    labels = {LABEL_SOURCE: "otel"}
    span_name = rec.string(span, "name", path, limits.MAX_LABEL_CHARS, default="", allow_empty=True)
    if span_name:
        labels[LABEL_SPAN_NAME] = span_name
    operation = rec.string(attrs, "gen_ai.operation.name", attributes_path, limits.MAX_LABEL_CHARS, default="",
                           allow_empty=True)
    if operation:
        labels[LABEL_GEN_AI_OPERATION] = operation
    labels.update(lineage_labels)
    if usage.without_cache:
        labels[LABEL_INPUT_REPORTED] = INPUT_WITHOUT_CACHE
    return SpanRecord(
        idempotency_key=idempotency_key("otel", trace_id, span_id),
        body=Action(operation=IMPORT_OPERATION, usage=LlmUsage(
            provider=provider, model=model, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read, cache_write_tokens=usage.cache_write,
            reasoning_tokens=usage.reasoning)),
        event_time_us=event_time_us, context=Context(run=trace_id, labels=tuple(labels.items())), line=line,
        path=path, agent=agent, span_id=span_id, ancestors=tuple(a for a, _ in chain), reported=usage.reported)


# ------------------------------------------------------------------------------------ the whole file


def _plain(record: ImportRecord) -> ImportRecord:
    return ImportRecord(**{f.name: getattr(record, f.name) for f in fields(ImportRecord)})


def _totals(record: ImportRecord, kinds: Sequence[str]) -> dict[str, int]:
    usage = record.body.usage
    assert usage is not None  # every span record has one
    return {kind: getattr(usage, kind) for kind in kinds}


def aggregates(records: list[ImportRecord], source: str) -> tuple[list[ImportRecord], list[ImportProblem],
                                                                  list[ImportProblem]]:
    """``Family.finish``: drop each aggregate span (usage beneath it in the file), checking its totals against the
    spans recorded in its place (see the module docstring)."""
    spans = [r for r in records if isinstance(r, SpanRecord)]
    keys = {(r.context.run, r.span_id) for r in spans}
    beneath: dict[tuple[str | None, str], list[SpanRecord]] = {}
    for span in spans:
        for ancestor in span.ancestors:
            if (span.context.run, ancestor) in keys:
                beneath.setdefault((span.context.run, ancestor), []).append(span)
    kept: list[ImportRecord] = []
    problems: list[ImportProblem] = []
    skips: list[ImportProblem] = []
    for r in records:
        below = beneath.get((r.context.run, r.span_id)) if isinstance(r, SpanRecord) else None
        if not isinstance(r, SpanRecord) or not below:
            kept.append(_plain(r))
            continue
        # the calls recorded in its place: spans beneath it with nothing beneath them, each once
        leaves = list({b.idempotency_key: b for b in below if (b.context.run, b.span_id) not in beneath}.values())
        ours = _totals(r, r.reported)
        theirs = {kind: sum(_totals(leaf, (kind,))[kind] for leaf in leaves) for kind in r.reported}
        if ours == theirs:
            skips.append(ImportProblem(source, r.line, r.path or "record", "",
                                       f"aggregate of {len(leaves)} child spans (totals match)"))
        else:
            problems.append(ImportProblem(
                source, r.line, rec.join(r.path, "attributes"), rec.short(ours),
                f"span {r.span_id} is an aggregate of {len(leaves)} child spans in this file, whose usage is recorded "
                f"instead of its own, but its totals {_show(ours)} differ from theirs {_show(theirs)}"))
    return kept, problems, skips


def _show(totals: Mapping[str, int]) -> str:
    return "(" + ", ".join(f"{kind} {n:,}" for kind, n in totals.items()) + ")"


FAMILY = rec.Family("otel", rec.one_unit, span_record, otlp_values, (*rec.JSON_PATTERNS, *PROTOBUF_PATTERNS),
                    aggregates, {JSON_FORMAT: otlp_json_values, PROTOBUF_FORMAT: otlp_protobuf_values})
