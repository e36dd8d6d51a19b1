"""OpenAI usage records: ``tokenledger import openai FILE`` (a JSON document, a JSON array, or JSON lines).

Each record's format is detected from its shape, so one file may mix them:

* ``custom_id`` present: a Batch API output line (``batch_req_...``).
* ``object: "page"``: a Usage API page; ``object: "bucket"``: one bucket of such a page on its own.
* ``object: "chat.completion"`` (or no ``object``, as the importer has always read): a Chat Completions response.
* ``object: "chat.completion.chunk"``: a streamed Chat Completions chunk.
* ``object: "response"``: a Responses API response.
* Any other ``object``: a problem naming it (the importer does not guess what an unknown record meters).

Ledger token kinds (``LlmUsage``): ``input_tokens`` is the input total, ``cache_read_tokens`` its part read from
the prompt cache, ``output_tokens`` the output total, ``reasoning_tokens`` its reasoning part. OpenAI reports the
cache INSIDE the input count and reasoning INSIDE the output count, so no sum is needed: each part is checked not
to exceed its total (a problem otherwise). OpenAI reports no cache writes: ``cache_write_tokens`` is 0.

Chat Completions (``chat.completion``) and chunks (``chat.completion.chunk``)
    ``usage.prompt_tokens`` -> input (cache included); ``usage.prompt_tokens_details.cached_tokens`` -> cache read;
    ``usage.completion_tokens`` -> output (reasoning included); ``usage.completion_tokens_details.reasoning_tokens``
    -> reasoning; ``usage.total_tokens``, when given, must equal prompt + completion. ``created`` (Unix seconds) is
    the event time (else ``--time``); ``model``, top-level ``service_tier``, a gateway's ``usage.cost`` (USD) as
    the reported cost. Key ``openai:{id}``. A stream's chunks share one id and only its final chunk carries
    ``usage`` (when the request set ``stream_options.include_usage``): that chunk is the call; a chunk whose
    ``usage`` is null or absent is skipped ("a streamed chunk without usage").
Responses (``response``)
    ``usage.input_tokens`` -> input (cache included); ``usage.input_tokens_details.cached_tokens`` -> cache read;
    ``usage.output_tokens`` -> output (reasoning included); ``usage.output_tokens_details.reasoning_tokens`` ->
    reasoning; ``usage.total_tokens``, when given, must equal input + output. ``created_at`` (Unix seconds) is the
    event time (else ``--time``); ``model``, ``service_tier``. Key ``openai:{id}`` (``resp_...``). A response whose
    ``status`` is not ``completed`` (``incomplete``, ``failed``, ``cancelled``...) but has usage is still a call:
    tokens were spent; its status is kept as the label ``status``. One with no usage (``queued``,
    ``in_progress``...) is skipped, naming its status; a ``completed`` one without usage is a problem.
Batch output lines (``{"id": "batch_req_...", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}``)
    The ``body`` is read as a chat completion or a response, as above, with three differences: the key is
    ``openai-batch:{id}`` (the line's id: a body's id may be reused across batches), the label ``custom_id``, and
    the service tier ``batch`` (OpenAI bills Batch at its batch rates; the price book has ``batch`` lines). A body
    reporting the standard tier (``default``...) or ``batch`` is recorded as ``batch``; one reporting another
    tier (``flex``, ``priority``) contradicts the batch and is a problem. A line with ``error`` set, or a
    ``status_code`` outside 2xx, whose body has no usage is skipped with its error code (``error.code``, else the
    body's ``error.code`` / ``error.type``, else the HTTP status) in the reason: no tokens were billed. A body of
    another endpoint (embeddings...) is skipped, naming its ``object``.
Usage API pages (``/v1/organization/usage/completions``: ``{"object": "page", "data": [buckets]}``)
    One AGGREGATE event per ``organization.usage.completions.result`` of each bucket (``{"object": "bucket",
    "start_time", "end_time", "results"}``): operation ``llm.usage_aggregate`` (never ``llm.call``: one event
    sums many calls), labels ``aggregate=true``, ``num_model_requests``, ``bucket_start`` and ``bucket_end``
    (ISO-8601), and each grouping field present (``project_id``, ``user_id``, ``api_key_id``, ``batch``). Event
    time: the bucket's ``start_time`` (Unix seconds); ``end_time`` must be later. ``input_tokens`` -> input
    (cache included), ``input_cached_tokens`` -> cache read, ``output_tokens`` -> output; no reasoning count is
    reported (0). Audio: ``input_audio_tokens`` and ``output_audio_tokens`` are parts of ``input_tokens`` and
    ``output_tokens`` (checked not to exceed them); the ledger has no audio kind, so they stay inside the totals
    (priced at the model's text rates by the price book) and are kept as labels of the same names. Service tier:
    ``service_tier`` (standard -> ''), and ``batch`` when ``batch`` is true (a non-standard, non-batch tier with
    ``batch: true`` is a problem). ``model: null`` (usage not grouped by model) is imported with model
    ``unknown``: the tokens were spent, and pricing an ``unknown`` model fails closed (never $0). Key
    ``openai-usage:{start_time}:{end_time}`` followed by ``name=value`` for each grouping field present
    (``project_id``, ``user_id``, ``api_key_id``, ``model``, ``batch``, ``service_tier``), so importing a bucket
    again is a duplicate and a bucket that changed since (imported before it closed) is a problem. A result
    with ``num_model_requests`` 0 and no tokens is skipped (0 requests with tokens is a problem); results of
    the other usage endpoints (embeddings, images, audio, costs...) are skipped, naming their ``object``.
    Importing both per-call records and usage pages of the same period counts those calls twice: import one or
    the other.

What both provider importers share (``AGGREGATE_OPERATION``, the aggregate and batch labels, ``BATCH_TIER``,
``UNKNOWN_MODEL``, the batch tier rule, a usage report result's grouping key and aggregate event) is in ``records``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger import limits
from ledger.economics.pricing import LABEL_NUM_MODEL_REQUESTS
from ledger.errors import ValidationError
from ledger.sources import records as rec
from ledger.sources.attribution import LABEL_SOURCE
from ledger.sources.records import (
    IMPORT_OPERATION,
    LABEL_CUSTOM_ID,
    LABEL_STATUS,
    UNKNOWN_MODEL,
    ImportRecord,
    batch_tier,
    check_bucket_bounds,
    idempotency_key,
    json_list,
    page_units,
)
from ledger.units import US_PER_S
from ledger.wire.events import Action, Context, LlmUsage, check_int

# -------------------------------------------------------------------------------- OpenAI names

PROVIDER = "openai"
OBJECT_CHAT = "chat.completion"
OBJECT_CHUNK = "chat.completion.chunk"
OBJECT_RESPONSE = "response"
OBJECT_PAGE = "page"
OBJECT_BUCKET = "bucket"
OBJECT_COMPLETIONS_RESULT = "organization.usage.completions.result"
RESPONSE_COMPLETED = "completed"
LABEL_INPUT_AUDIO = "input_audio_tokens"
LABEL_OUTPUT_AUDIO = "output_audio_tokens"
LABEL_BATCH = "batch"
USAGE_GROUPING_LABELS = ("project_id", "user_id", "api_key_id")  # string grouping fields, kept as labels too
HTTP_STATUS_CODES = range(100, 600)  # a status_code outside this is not an HTTP status
HTTP_SUCCESS = range(200, 300)  # 2xx: the batch request succeeded
_READS = f"{OBJECT_CHAT}, {OBJECT_CHUNK}, {OBJECT_RESPONSE}, {OBJECT_PAGE}, {OBJECT_BUCKET}, or a batch output line"

# Contexts are immutable: payload records share one instead of validating the same labels 20k times.
_OPENAI_CONTEXT = Context(labels=((LABEL_SOURCE, PROVIDER),))


# -------------------------------------------------------------------------------- shared readers


def unix_seconds(obj: Mapping[str, Any], name: str, path: str) -> int:
    """A required Unix time in whole seconds, as microseconds in the ledger's event-time range."""
    field = rec.join(path, name)
    seconds = check_int(field, rec.required(obj, name, path), 0, limits.MAX_EVENT_TIME_US // US_PER_S)
    return rec.event_time(field, seconds * US_PER_S, seconds)


def _total_check(usage: Mapping[str, Any], up: str, total: int, parts: str) -> None:
    """``usage.total_tokens``, when reported, must be the sum the importer records (a mismatch is a problem)."""
    if usage.get("total_tokens") is not None:
        reported = rec.count(usage["total_tokens"], rec.join(up, "total_tokens"))
        if reported != total:
            raise ValidationError(rec.join(up, "total_tokens"), reported, f"must equal {parts} ({total:,})")


# -------------------------------------------------------------------------------- payloads (one call each)


@dataclass(frozen=True, slots=True)
class _UsageNames:
    """How one OpenAI API names the usage fields the ledger reads: the same rule, other names (module docstring)."""

    input: str  # the input total, cache included
    output: str  # the output total, reasoning included
    input_details: str  # object holding cached_tokens (a part of the input)
    output_details: str  # object holding reasoning_tokens (a part of the output)


_CHAT_USAGE = _UsageNames("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details")
_RESPONSE_USAGE = _UsageNames("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")


def _usage(obj: Mapping[str, Any], path: str, names: _UsageNames, batch: bool) -> tuple[str, LlmUsage]:
    """(id, usage) of a payload whose usage fields are named ``names``."""
    record_id, model, usage, up = rec.payload_identity(obj, path)
    input_tokens = rec.count(rec.required(usage, names.input, up), rec.join(up, names.input))
    output_tokens = rec.count(rec.required(usage, names.output, up), rec.join(up, names.output))
    _total_check(usage, up, input_tokens + output_tokens, f"{names.input} + {names.output}")
    input_path, output_path = rec.join(up, names.input_details), rec.join(up, names.output_details)
    cached = rec.optional_count(rec.optional_object(usage, names.input_details, up), "cached_tokens", input_path)
    rec.part_of(cached, rec.join(input_path, "cached_tokens"), input_tokens, names.input)
    reasoning = rec.optional_count(rec.optional_object(usage, names.output_details, up), "reasoning_tokens",
                                   output_path)
    rec.part_of(reasoning, rec.join(output_path, "reasoning_tokens"), output_tokens, names.output)
    return record_id, LlmUsage(
        provider=PROVIDER, model=model, input_tokens=input_tokens, output_tokens=output_tokens,
        cache_read_tokens=cached, reasoning_tokens=reasoning, service_tier=rec.call_tier(obj, path, batch=batch),
        provider_cost_micros=rec.reported_cost(usage, up))


def chat_usage(obj: Mapping[str, Any], path: str, *, batch: bool = False) -> tuple[str, LlmUsage]:
    """(id, usage) of a Chat Completions response or usage-bearing chunk (see the module docstring)."""
    return _usage(obj, path, _CHAT_USAGE, batch)


def response_usage(obj: Mapping[str, Any], path: str, *, batch: bool = False) -> tuple[str, LlmUsage]:
    """(id, usage) of a Responses API response that carries usage (see the module docstring)."""
    return _usage(obj, path, _RESPONSE_USAGE, batch)


def _response_status(obj: Mapping[str, Any], path: str) -> str:
    """The response's ``status`` ('' when absent)."""
    return rec.string(obj, "status", path, limits.MAX_LABEL_CHARS, default="")


def _unused_response(obj: Mapping[str, Any], path: str) -> rec.Skip | None:
    """A Skip for a response that reports no usage because it did not finish (queued, in progress...)."""
    status = _response_status(obj, path)
    if obj.get("usage") is None and status not in ("", RESPONSE_COMPLETED):
        return rec.Skip(f"a response with status {status!r} and no usage: no tokens were reported")
    return None


def chat_completion_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord:
    """A Chat Completions response (``object: "chat.completion"``, or none) as one ``llm.call``."""
    obj = rec.json_object(value, path)
    record_id, usage = chat_usage(obj, path)
    return ImportRecord(
        idempotency_key=idempotency_key(PROVIDER, record_id), body=Action(operation=IMPORT_OPERATION, usage=usage),
        event_time_us=rec.time_or_fallback(obj, "created", path, fallback_us), context=_OPENAI_CONTEXT, line=line,
        path=path)


def chunk_record(obj: Mapping[str, Any], path: str, line: int | None,
                 fallback_us: int | None) -> ImportRecord | rec.Skip:
    """A streamed chunk: the call when it carries ``usage`` (the stream's final chunk), else a Skip."""
    if obj.get("usage") is None:
        return rec.Skip("a streamed chunk without usage; only the final chunk carries it "
                        "(when the request set stream_options.include_usage)")
    return chat_completion_record(obj, path, line, fallback_us)


def response_record(obj: Mapping[str, Any], path: str, line: int | None,
                    fallback_us: int | None) -> ImportRecord | rec.Skip:
    """A Responses API response as one ``llm.call`` (its status kept when not ``completed``)."""
    unused = _unused_response(obj, path)
    if unused is not None:
        return unused
    record_id, usage = response_usage(obj, path)
    status = _response_status(obj, path)
    context = (_OPENAI_CONTEXT if status in ("", RESPONSE_COMPLETED)
               else rec.labels_context({LABEL_SOURCE: PROVIDER, LABEL_STATUS: status}))
    return ImportRecord(
        idempotency_key=idempotency_key(PROVIDER, record_id), body=Action(operation=IMPORT_OPERATION, usage=usage),
        event_time_us=rec.time_or_fallback(obj, "created_at", path, fallback_us), context=context, line=line,
        path=path)


# -------------------------------------------------------------------------------- batch output lines


def _failure(obj: Mapping[str, Any], status: int | None, body: Mapping[str, Any] | None) -> str | None:
    """The error code of a failed batch line (``error`` set, or a non-2xx status), None when it succeeded."""
    error = obj.get("error")
    if error is None and (status is None or status in HTTP_SUCCESS):
        return None
    for source in (error, body.get("error") if body is not None else None):
        if isinstance(source, dict):
            for name in ("code", "type"):
                code = source.get(name)
                if code is not None:
                    return code if isinstance(code, str) and len(code) <= limits.MAX_ID_CHARS else rec.short(code)
    return f"HTTP {status}" if status is not None else rec.short(error)


def batch_line_record(obj: Mapping[str, Any], path: str, line: int | None,
                      fallback_us: int | None) -> ImportRecord | rec.Skip:
    """One line of a Batch API output file (see the module docstring)."""
    line_id = rec.string(obj, "id", path, limits.MAX_LABEL_CHARS)
    custom_id = rec.string(obj, "custom_id", path, limits.MAX_LABEL_CHARS)
    response_path = rec.join(path, "response")
    response = rec.optional_object(obj, "response", path)
    status = body = None
    if response is not None:
        status = check_int(rec.join(response_path, "status_code"), rec.required(response, "status_code",
                                                                                response_path),
                           HTTP_STATUS_CODES.start, HTTP_STATUS_CODES.stop - 1)
        body = rec.optional_object(response, "body", response_path)
    code = _failure(obj, status, body)
    if code is not None and (body is None or body.get("usage") is None):
        return rec.Skip(f"a batch request that failed ({code}) and reports no usage: no tokens were billed")
    if response is None:
        raise ValidationError(response_path, None, "is required when the line has no error")
    body_path = rec.join(response_path, "body")
    body = rec.json_object(rec.required(response, "body", response_path), body_path)
    kind = body.get("object")
    labels = {LABEL_SOURCE: PROVIDER, LABEL_CUSTOM_ID: custom_id}
    if kind == OBJECT_RESPONSE:
        unused = _unused_response(body, body_path)
        if unused is not None:
            return unused
        _, usage = response_usage(body, body_path, batch=True)
        status_label = _response_status(body, body_path)
        if status_label not in ("", RESPONSE_COMPLETED):
            labels[LABEL_STATUS] = status_label
        time_name = "created_at"
    elif kind == OBJECT_CHAT:
        _, usage = chat_usage(body, body_path, batch=True)
        time_name = "created"
    else:
        return rec.Skip(f"a batch result of object {rec.short(kind)}: only {OBJECT_CHAT} and {OBJECT_RESPONSE} "
                        "bodies are imported")
    return ImportRecord(
        idempotency_key=idempotency_key("openai-batch", line_id), body=Action(operation=IMPORT_OPERATION, usage=usage),
        event_time_us=rec.time_or_fallback(body, time_name, body_path, fallback_us),
        context=rec.labels_context(labels), line=line, path=path)


# -------------------------------------------------------------------------------- Usage API pages (aggregates)


@dataclass(frozen=True, slots=True)
class BucketResult:
    """One result of a usage-report bucket, with the bucket's bounds already read (a unit of ``expand``)."""

    start_us: int
    end_us: int
    start_key: str  # the bucket's start and end as they go into the idempotency key
    end_key: str
    result: Any


def _usage_bucket(bucket: Any, path: str) -> list[tuple[str, Any]]:
    obj = rec.json_object(bucket, path)
    kind = obj.get("object")
    if kind is not None and kind != OBJECT_BUCKET:
        raise ValidationError(rec.join(path, "object"), kind, f"must be {OBJECT_BUCKET!r} in a usage page")
    start_us = unix_seconds(obj, "start_time", path)
    end_us = unix_seconds(obj, "end_time", path)
    check_bucket_bounds(start_us, end_us, rec.join(path, "end_time"), obj["end_time"])
    results = json_list(rec.required(obj, "results", path), rec.join(path, "results"))
    start_key, end_key = str(obj["start_time"]), str(obj["end_time"])
    return [(rec.join(path, f"results[{i}]"), BucketResult(start_us, end_us, start_key, end_key, result))
            for i, result in enumerate(results)]


def _usage_grouping(obj: Mapping[str, Any], path: str, labels: dict[str, str],
                    key_parts: list[str]) -> tuple[list[str], str | None, str]:
    """(key parts, model or None, service tier) of a usage result; its grouping fields go into ``labels``."""
    model = rec.grouping(obj, path, (*USAGE_GROUPING_LABELS, "model"), USAGE_GROUPING_LABELS, labels,
                         key_parts)["model"]
    batch = obj.get("batch")
    tier = rec.service_tier(obj, path)
    if batch is not None:
        if not isinstance(batch, bool):
            raise ValidationError(rec.join(path, "batch"), batch, "must be true, false or null")
        labels[LABEL_BATCH] = "true" if batch else "false"
        key_parts.append(f"batch={labels[LABEL_BATCH]}")
        if batch:
            tier = batch_tier(tier, rec.join(path, "service_tier"), obj.get("service_tier"))
    if obj.get("service_tier") is not None:
        key_parts.append(f"service_tier={obj['service_tier']}")
    return key_parts, model, tier


def usage_result_record(unit: BucketResult, path: str, line: int | None) -> ImportRecord | rec.Skip:
    """One Usage API result as an ``llm.usage_aggregate`` event (see the module docstring)."""
    obj = rec.json_object(unit.result, path)
    kind = rec.string(obj, "object", path, limits.MAX_LABEL_CHARS)
    if kind != OBJECT_COMPLETIONS_RESULT:
        return rec.Skip(f"a {kind} result: only {OBJECT_COMPLETIONS_RESULT} (token usage of completions) is imported")
    input_tokens = rec.count(rec.required(obj, "input_tokens", path), rec.join(path, "input_tokens"))
    output_tokens = rec.count(rec.required(obj, "output_tokens", path), rec.join(path, "output_tokens"))
    requests = rec.count(rec.required(obj, "num_model_requests", path), rec.join(path, "num_model_requests"))
    cached = rec.optional_count(obj, "input_cached_tokens", path)
    rec.part_of(cached, rec.join(path, "input_cached_tokens"), input_tokens, "input_tokens")
    labels = {LABEL_SOURCE: PROVIDER, LABEL_NUM_MODEL_REQUESTS: str(requests)}
    # audio tokens are parts of the totals (the ledger has no audio kind): checked, kept inside, and labelled
    for name, total, total_name in ((LABEL_INPUT_AUDIO, input_tokens, "input_tokens"),
                                    (LABEL_OUTPUT_AUDIO, output_tokens, "output_tokens")):
        if obj.get(name) is not None:
            audio = rec.optional_count(obj, name, path)
            rec.part_of(audio, rec.join(path, name), total, total_name)
            labels[name] = str(audio)
    if requests == 0:
        if input_tokens or output_tokens:
            raise ValidationError(rec.join(path, "num_model_requests"), requests,
                                  f"is 0 while the result reports {input_tokens + output_tokens:,} tokens")
        return rec.Skip("a usage result with no requests and no tokens")
    key_parts, model, tier = _usage_grouping(obj, path, labels, [unit.start_key, unit.end_key])
    return rec.aggregate_record(
        "openai-usage", key_parts, LlmUsage(
            provider=PROVIDER, model=UNKNOWN_MODEL if model is None else model, input_tokens=input_tokens,
            output_tokens=output_tokens, cache_read_tokens=cached, service_tier=tier),
        unit.start_us, unit.end_us, labels, line, path)


# -------------------------------------------------------------------------------- the family


def expand(value: Any, path: str) -> list[tuple[str, Any]]:
    """``Family.expand``: a usage page (or bucket) gives one unit per result; any other value is one unit."""
    if isinstance(value, dict):
        kind = value.get("object")
        if kind == OBJECT_PAGE:
            return page_units(value, path, _usage_bucket)
        if kind == OBJECT_BUCKET:
            return _usage_bucket(value, path)
    return [(path, value)]


def parse_one(unit: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord | rec.Skip:
    """``Family.parse_one``: the record's format is detected from its shape (see the module docstring)."""
    if isinstance(unit, ValidationError):
        raise unit  # a malformed bucket found by expand: one problem, at its path
    if isinstance(unit, BucketResult):
        return usage_result_record(unit, path, line)
    obj = rec.json_object(unit, path)
    if "custom_id" in obj:
        return batch_line_record(obj, path, line, fallback_us)
    kind = obj.get("object")
    if kind is None or kind == OBJECT_CHAT:
        return chat_completion_record(obj, path, line, fallback_us)
    if kind == OBJECT_CHUNK:
        return chunk_record(obj, path, line, fallback_us)
    if kind == OBJECT_RESPONSE:
        return response_record(obj, path, line, fallback_us)
    raise ValidationError(rec.join(path, "object"), kind, f"is not a record this importer reads ({_READS})")


FAMILY = rec.Family(PROVIDER, expand, parse_one, rec.json_values)
