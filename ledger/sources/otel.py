"""OpenTelemetry GenAI spans as JSON lines: a span per line, or an OTLP ``{"resourceSpans": ...}`` export per line;
attributes as a dict or as OTLP ``[{"key", "value": {"intValue": ...}}]``. Per the GenAI conventions the
``gen_ai.usage.cache_*.input_tokens`` are parts of ``gen_ai.usage.input_tokens``. Spans with no
``gen_ai.usage.*_tokens`` (HTTP, tool spans) are counted as skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ledger import limits
from ledger.errors import ValidationError
from ledger.sources import records as rec
from ledger.sources.attribution import LABEL_SOURCE
from ledger.sources.records import IMPORT_OPERATION, ImportRecord, idempotency_key, infer_provider
from ledger.units import NS_PER_US
from ledger.wire.events import Action, Context, LlmUsage

LABEL_SPAN_NAME = "span_name"
LABEL_GEN_AI_OPERATION = "gen_ai_operation"

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
    obj = rec.json_object(value, path)
    if "intValue" in obj:
        return _otel_int(obj["intValue"], rec.join(path, "intValue"))
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
        entry = rec.json_object(item, item_path)
        key = rec.string(entry, "key", item_path, limits.MAX_LABEL_CHARS)
        if key in out:
            raise ValidationError(rec.join(item_path, "key"), key, "appears twice in this span's attributes")
        out[key] = _otel_value(entry.get("value"), rec.join(item_path, "value"))
    return out


def spans(value: Any, path: str) -> list[tuple[str, Any]]:
    """The spans of one line: the line itself, or every span of an OTLP ``resourceSpans`` export."""
    obj = rec.json_object(value, path)
    if "resourceSpans" not in obj:
        return [(path, obj)]
    found: list[tuple[str, Any]] = []
    for r, resource in enumerate(_list(obj["resourceSpans"], rec.join(path, "resourceSpans"))):
        r_path = rec.join(path, f"resourceSpans[{r}]")
        scopes = _list(rec.json_object(resource, r_path).get("scopeSpans"), rec.join(r_path, "scopeSpans"))
        for s, scope in enumerate(scopes):
            s_path = rec.join(r_path, f"scopeSpans[{s}]")
            items = _list(rec.json_object(scope, s_path).get("spans"), rec.join(s_path, "spans"))
            found.extend((rec.join(s_path, f"spans[{i}]"), span) for i, span in enumerate(items))
    return found


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(path, value, f"must be a JSON array, got {rec.json_type(value)}")
    return value


def _hex_id(obj: Mapping[str, Any], name: str, path: str, hex_chars: int) -> str:
    value = rec.string(obj, name, path)
    if len(value) != hex_chars or not rec.HEX.fullmatch(value):
        raise ValidationError(rec.join(path, name), value, f"must be {hex_chars} hexadecimal characters (OTLP/JSON)")
    return value.lower()


_IN, _OUT = "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"
_CACHE_READ, _CACHE_WRITE = "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens"


def span_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord | rec.Skip:
    span = rec.json_object(value, path)
    attributes_path = rec.join(path, "attributes")
    attrs = _otel_attributes(span.get("attributes"), attributes_path)
    if attrs.get(_IN) is None and attrs.get(_OUT) is None:
        return rec.Skip("no gen_ai.usage.*_tokens attributes: not an LLM call (an HTTP or tool span)")
    trace_id = _hex_id(span, "traceId", path, 32)
    span_id = _hex_id(span, "spanId", path, 16)
    model_name = "gen_ai.response.model" if attrs.get("gen_ai.response.model") is not None else "gen_ai.request.model"
    model = rec.string(attrs, model_name, attributes_path)
    provider_name = "gen_ai.provider.name" if attrs.get("gen_ai.provider.name") is not None else "gen_ai.system"
    provider = (infer_provider(model) if attrs.get(provider_name) is None
                else rec.string(attrs, provider_name, attributes_path))
    input_tokens = rec.count(rec.required(attrs, _IN, attributes_path), rec.join(attributes_path, _IN))
    if attrs.get(_OUT) is None and attrs.get("gen_ai.operation.name") == "embeddings":
        output_tokens = 0  # an embeddings call generates no tokens; the conventions omit the attribute
    else:
        output_tokens = rec.count(rec.required(attrs, _OUT, attributes_path), rec.join(attributes_path, _OUT))
    read = rec.optional_count(attrs, _CACHE_READ, attributes_path)
    written = rec.optional_count(attrs, _CACHE_WRITE, attributes_path)
    if read + written > input_tokens:
        raise ValidationError(rec.join(attributes_path, _CACHE_READ), read,
                              f"cache read ({read:,}) + cache creation ({written:,}) tokens are parts of "
                              f"{_IN} ({input_tokens:,}) per the GenAI conventions and cannot exceed it")
    time_field = rec.join(path, "startTimeUnixNano")
    start = span.get("startTimeUnixNano")
    if start is not None:
        event_time_us = rec.event_time(time_field, _otel_int(start, time_field) // NS_PER_US, start)
    elif fallback_us is not None:
        event_time_us = fallback_us
    else:
        raise ValidationError(time_field, None, "is required (the span's start time), or pass a time (--time)")
    labels = {LABEL_SOURCE: "otel"}
    span_name = rec.string(span, "name", path, limits.MAX_LABEL_CHARS, default="", allow_empty=True)
    if span_name:
        labels[LABEL_SPAN_NAME] = span_name
    operation_name = rec.string(attrs, "gen_ai.operation.name", attributes_path, limits.MAX_LABEL_CHARS, default="",
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


FAMILY = rec.Family("otel", spans, span_record, rec.json_values)
