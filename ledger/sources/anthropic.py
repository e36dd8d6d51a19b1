"""Anthropic usage records: ``tokenledger import anthropic FILE`` (a JSON document, a JSON array, or JSON lines).

Each record's format is detected from its shape, so one file may mix them:

* ``custom_id`` present: a Message Batches results line.
* ``data`` present and no ``type``: an Admin API report page (usage report or cost report); ``starting_at`` with
  ``results``: one bucket of such a page on its own.
* ``type: "message"`` (or no ``type``, as the importer has always read): a Messages API response.
* Any other ``type`` (a streaming event...): a problem naming it (the importer does not guess what it meters).

Ledger token kinds (``LlmUsage``): ``input_tokens`` is the input total, ``cache_read_tokens`` and
``cache_write_tokens`` its parts read from and written to the prompt cache, ``cache_write_1h_tokens`` the part of
the writes with a one-hour lifetime, ``output_tokens`` the output. Anthropic reports its input count WITHOUT the
cache, so the ledger's input total is the sum of the three (never counted twice, never dropped). Anthropic reports
no reasoning split (extended thinking is inside ``output_tokens``): ``reasoning_tokens`` is 0.

Messages (``type: "message"``)
    ``usage.input_tokens`` (cache excluded) + ``usage.cache_creation_input_tokens`` +
    ``usage.cache_read_input_tokens`` -> input; ``cache_creation_input_tokens`` -> cache write;
    ``usage.cache_creation.ephemeral_1h_input_tokens`` -> its 1-hour part (``ephemeral_5m_input_tokens`` +
    ``ephemeral_1h_input_tokens`` must equal ``cache_creation_input_tokens`` when the split is given);
    ``cache_read_input_tokens`` -> cache read; ``usage.output_tokens`` -> output; ``usage.service_tier``
    (``standard`` -> ''; ``batch``, ``priority`` kept). Messages carry no time: the event time is ``--time``
    (a ``created`` in Unix seconds, which a recorder may add, is read first). Key ``anthropic:{id}``.
Message Batches results (``{"custom_id", "result": {"type": "succeeded", "message": <message>}}``)
    The ``message`` is read as above, with: key ``anthropic-batch:{custom_id}:{message id}``, label ``custom_id``,
    service tier ``batch`` (a message reporting ``standard`` or ``batch`` is recorded as ``batch``; another tier
    contradicts the batch and is a problem). Results carry no time: the event time is ``--time``. An ``errored``,
    ``canceled`` or ``expired`` result is skipped, naming its type (and an error's type): no tokens are billed.
Usage report pages (Admin API ``/v1/organizations/usage_report/messages``: ``{"data": [{"starting_at",
"ending_at", "results": [...]}], "has_more", "next_page"}``)
    One AGGREGATE event per result: operation ``llm.usage_aggregate`` (one event sums many calls), labels
    ``aggregate=true``, ``bucket_start`` and ``bucket_end`` (ISO-8601), and each of ``api_key_id``,
    ``workspace_id``, ``context_window`` present. Event time: the bucket's ``starting_at``, RFC 3339 with a zone
    (anything else is a problem); ``ending_at`` must be later. ``uncached_input_tokens`` (cache excluded) +
    ``cache_read_input_tokens`` + ``cache_creation.ephemeral_5m_input_tokens`` +
    ``cache_creation.ephemeral_1h_input_tokens`` -> input; ``cache_read_input_tokens`` -> cache read; the two
    ``cache_creation`` counts -> cache write, the 1-hour one its 1-hour part; ``output_tokens`` -> output.
    ``server_tool_use`` counts requests, not tokens (``web_search_requests``...): each is checked as a count and
    kept as the label ``server_tool_use.{name}`` (the price book prices tokens only). ``service_tier`` as for
    messages. ``model: null`` (usage not grouped by model) is imported with model ``unknown``: the tokens were
    spent, and pricing an ``unknown`` model fails closed (never $0). Key ``anthropic-usage:{start}:{end}``
    (microseconds) followed by ``name=value`` for each grouping field present (``model``, ``api_key_id``,
    ``workspace_id``, ``service_tier``, ``context_window``): a bucket imported again is a duplicate, one that
    changed since (imported before it closed) a problem. Importing both messages and usage reports of the same
    period counts those calls twice: import one or the other.
Cost report pages (``/v1/organizations/cost_report``)
    Their results (``amount``, a decimal string in cents of ``currency``, per ``cost_type`` / ``token_type``)
    carry money, not tokens, and the ledger prices tokens itself: each is skipped, saying so. Import the usage
    report of the same period instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger import limits
from ledger.errors import ValidationError
from ledger.sources import records as rec
from ledger.sources.attribution import LABEL_SOURCE
from ledger.sources.records import (
    IMPORT_OPERATION,
    LABEL_CUSTOM_ID,
    UNKNOWN_MODEL,
    ImportRecord,
    check_bucket_bounds,
    idempotency_key,
    json_list,
    page_units,
)
from ledger.wire.events import Action, Context, LlmUsage, check_str

PROVIDER = "anthropic"
TYPE_MESSAGE = "message"
RESULT_SUCCEEDED = "succeeded"
RESULTS_NOT_BILLED = ("errored", "canceled", "expired")  # batch results that produced no message: no tokens billed
# grouping fields of a usage report result, in the order they go into its idempotency key; all but model and
# service_tier (which are on the usage itself) are kept as labels too
REPORT_GROUPING_FIELDS = ("model", "api_key_id", "workspace_id", "service_tier", "context_window")
USAGE_GROUPING_LABELS = ("api_key_id", "workspace_id", "context_window")
LABEL_SERVER_TOOL_PREFIX = "server_tool_use."
# kinds of server tool (web search, web fetch, code execution...) one usage result may count: each becomes a label,
# and a context holds at most limits.MAX_LABELS; Anthropic reports one or two
SERVER_TOOL_KINDS_PER_RESULT = 16
_READS = f"{TYPE_MESSAGE}, a Message Batches result line, or a usage or cost report page"

# RFC 3339 date-time (section 5.6): full-date "T" full-time, with a zone ("Z" or +hh:mm); T and Z in either case.
# Fractions beyond microseconds are floored (nine digits: nanoseconds, the finest any API writes).
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                      r"(?:([Zz])|([+-])(\d{2}):(\d{2}))")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_FRACTION_DIGITS_US = 6  # digits of a second's fraction that microseconds hold
HOURS_PER_DAY = 24
MINUTES_PER_HOUR = 60

_ANTHROPIC_CONTEXT = Context(labels=((LABEL_SOURCE, PROVIDER),))


def rfc3339_us(value: Any, field: str) -> int:
    """An RFC 3339 date-time with a zone as microseconds since the epoch, in the ledger's event-time range."""
    text = check_str(field, value) if isinstance(value, str) else None
    m = _RFC3339.fullmatch(text) if text is not None else None
    if m is None:
        raise ValidationError(field, value, "must be an RFC 3339 date-time with a zone, like 2026-01-01T00:00:00Z")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = m.groups()
    try:
        local = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=dt.UTC)
        if not zulu and (int(off_h) > HOURS_PER_DAY - 1 or int(off_m) > MINUTES_PER_HOUR - 1):
            raise ValueError(f"zone offset {sign}{off_h}:{off_m} is not an offset")
        offset = dt.timedelta() if zulu else dt.timedelta(hours=int(off_h), minutes=int(off_m))
    except ValueError as e:  # month 13, February 30, hour 24, a leap second (the ledger has none)...
        raise ValidationError(field, value, f"is not a valid RFC 3339 date-time: {e}") from None
    utc = local - offset if sign != "-" else local + offset
    micros = int((fraction or "").ljust(_FRACTION_DIGITS_US, "0")[:_FRACTION_DIGITS_US])
    return rec.event_time(field, (utc - _EPOCH) // _MICROSECOND + micros, value)


# -------------------------------------------------------------------------------- messages


def message_usage(obj: Mapping[str, Any], path: str, *, batch: bool = False) -> tuple[str, LlmUsage]:
    """(id, usage) of a Messages API response (see the module docstring)."""
    record_id, model, usage, up = rec.payload_identity(obj, path)
    uncached = rec.count(rec.required(usage, "input_tokens", up), rec.join(up, "input_tokens"))
    output = rec.count(rec.required(usage, "output_tokens", up), rec.join(up, "output_tokens"))
    written = rec.optional_count(usage, "cache_creation_input_tokens", up)
    read = rec.optional_count(usage, "cache_read_input_tokens", up)
    split_path = rec.join(up, "cache_creation")
    split = rec.optional_object(usage, "cache_creation", up)
    one_hour = 0
    if split is not None:
        five_minutes = rec.optional_count(split, "ephemeral_5m_input_tokens", split_path)
        one_hour = rec.optional_count(split, "ephemeral_1h_input_tokens", split_path)
        if five_minutes + one_hour != written:
            raise ValidationError(split_path, dict(split), "the 5-minute and 1-hour cache writes must add up to "
                                  f"cache_creation_input_tokens ({written:,})")
    tier = rec.call_tier(usage, up, batch=batch)
    # Anthropic reports input_tokens WITHOUT the cached parts; the ledger's input total includes them.
    return record_id, LlmUsage(
        provider=PROVIDER, model=model, input_tokens=uncached + written + read, output_tokens=output,
        cache_read_tokens=read, cache_write_tokens=written, cache_write_1h_tokens=one_hour, service_tier=tier)


def message_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord:
    obj = rec.json_object(value, path)
    record_id, usage = message_usage(obj, path)
    return ImportRecord(
        idempotency_key=idempotency_key(PROVIDER, record_id), body=Action(operation=IMPORT_OPERATION, usage=usage),
        event_time_us=rec.time_or_fallback(obj, "created", path, fallback_us), context=_ANTHROPIC_CONTEXT,
        line=line, path=path)


# -------------------------------------------------------------------------------- Message Batches results


def _error_type(result: Mapping[str, Any]) -> str | None:
    """The error type of an ``errored`` result (``error.error.type``, else ``error.type``), when it names one."""
    error = result.get("error")
    for source in (error.get("error") if isinstance(error, dict) else None, error):
        kind = source.get("type") if isinstance(source, dict) else None
        if isinstance(kind, str) and kind != "error":  # "error" is the envelope's type, not the error's
            return kind if len(kind) <= limits.MAX_ID_CHARS and kind.isprintable() else rec.short(kind)
    return None


def batch_result_record(obj: Mapping[str, Any], path: str, line: int | None,
                        fallback_us: int | None) -> ImportRecord | rec.Skip:
    """One line of a Message Batches results file (see the module docstring)."""
    custom_id = rec.string(obj, "custom_id", path, limits.MAX_LABEL_CHARS)
    result_path = rec.join(path, "result")
    result = rec.json_object(rec.required(obj, "result", path), result_path)
    kind = rec.string(result, "type", result_path)
    if kind in RESULTS_NOT_BILLED:
        error = _error_type(result)
        return rec.Skip(f"a batch request that {kind}{f' ({error})' if error else ''}: no tokens were billed")
    if kind != RESULT_SUCCEEDED:
        raise ValidationError(rec.join(result_path, "type"), kind,
                              f"must be one of {', '.join((RESULT_SUCCEEDED, *RESULTS_NOT_BILLED))}")
    message_path = rec.join(result_path, "message")
    message = rec.json_object(rec.required(result, "message", result_path), message_path)
    if message.get("type") is not None and message["type"] != TYPE_MESSAGE:
        raise ValidationError(rec.join(message_path, "type"), message["type"], f"must be {TYPE_MESSAGE!r}")
    message_id, usage = message_usage(message, message_path, batch=True)
    return ImportRecord(
        idempotency_key=idempotency_key("anthropic-batch", custom_id, message_id),
        body=Action(operation=IMPORT_OPERATION, usage=usage),
        event_time_us=rec.time_or_fallback(message, "created", message_path, fallback_us),
        context=rec.labels_context({LABEL_SOURCE: PROVIDER, LABEL_CUSTOM_ID: custom_id}), line=line, path=path)


# -------------------------------------------------------------------------------- usage and cost report pages


@dataclass(frozen=True, slots=True)
class ReportResult:
    """One result of a report bucket, with the bucket's bounds already read (a unit of ``expand``)."""

    start_us: int
    end_us: int
    result: Any


def _report_bucket(bucket: Any, path: str) -> list[tuple[str, Any]]:
    obj = rec.json_object(bucket, path)
    start_us = rfc3339_us(rec.required(obj, "starting_at", path), rec.join(path, "starting_at"))
    end_us = rfc3339_us(rec.required(obj, "ending_at", path), rec.join(path, "ending_at"))
    check_bucket_bounds(start_us, end_us, rec.join(path, "ending_at"), obj["ending_at"])
    results = json_list(rec.required(obj, "results", path), rec.join(path, "results"))
    return [(rec.join(path, f"results[{i}]"), ReportResult(start_us, end_us, result))
            for i, result in enumerate(results)]


def report_result_record(unit: ReportResult, path: str, line: int | None) -> ImportRecord | rec.Skip:
    """One usage report result as an ``llm.usage_aggregate`` event; a cost report result is a Skip."""
    obj = rec.json_object(unit.result, path)
    if "amount" in obj:
        return rec.Skip(f"a cost report result ({rec.short(obj.get('amount'))} in cents of "
                        f"{rec.short(obj.get('currency'))}): it carries money, not tokens, and the ledger prices "
                        "tokens itself; import the usage report (usage_report/messages) of the same period instead")
    uncached = rec.count(rec.required(obj, "uncached_input_tokens", path), rec.join(path, "uncached_input_tokens"))
    output = rec.count(rec.required(obj, "output_tokens", path), rec.join(path, "output_tokens"))
    read = rec.optional_count(obj, "cache_read_input_tokens", path)
    split_path = rec.join(path, "cache_creation")
    split = rec.optional_object(obj, "cache_creation", path)
    five_minutes = rec.optional_count(split, "ephemeral_5m_input_tokens", split_path)
    one_hour = rec.optional_count(split, "ephemeral_1h_input_tokens", split_path)
    labels = {LABEL_SOURCE: PROVIDER}
    tools_path = rec.join(path, "server_tool_use")
    tools = rec.optional_object(obj, "server_tool_use", path) or {}
    if len(tools) > SERVER_TOOL_KINDS_PER_RESULT:
        raise ValidationError(tools_path, len(tools), f"counts more than {SERVER_TOOL_KINDS_PER_RESULT} kinds of "
                                                      "server tool")
    for name in tools:
        check_str(rec.join(tools_path, "(key)"), name)
        if tools[name] is not None:  # requests, not tokens: a label
            labels[LABEL_SERVER_TOOL_PREFIX + name] = str(rec.count(tools[name], rec.join(tools_path, name)))
    tier = rec.service_tier(obj, path)
    key_parts = [str(unit.start_us), str(unit.end_us)]
    model = rec.grouping(obj, path, REPORT_GROUPING_FIELDS, USAGE_GROUPING_LABELS, labels, key_parts)["model"]
    # uncached_input_tokens EXCLUDES the cache, like a message's input_tokens: the input total is the sum
    written = five_minutes + one_hour
    return rec.aggregate_record(
        "anthropic-usage", key_parts, LlmUsage(
            provider=PROVIDER, model=UNKNOWN_MODEL if model is None else model,
            input_tokens=uncached + read + written, output_tokens=output, cache_read_tokens=read,
            cache_write_tokens=written, cache_write_1h_tokens=one_hour, service_tier=tier),
        unit.start_us, unit.end_us, labels, line, path)


# -------------------------------------------------------------------------------- the family


def expand(value: Any, path: str) -> list[tuple[str, Any]]:
    """``Family.expand``: a report page (or bucket) gives one unit per result; any other value is one unit."""
    if isinstance(value, dict) and "type" not in value and "custom_id" not in value:
        if "data" in value:
            return page_units(value, path, _report_bucket)
        if "starting_at" in value and "results" in value:
            return _report_bucket(value, path)
    return [(path, value)]


def parse_one(unit: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord | rec.Skip:
    """``Family.parse_one``: the record's format is detected from its shape (see the module docstring)."""
    if isinstance(unit, ValidationError):
        raise unit  # a malformed bucket found by expand: one problem, at its path
    if isinstance(unit, ReportResult):
        return report_result_record(unit, path, line)
    obj = rec.json_object(unit, path)
    if "custom_id" in obj:
        return batch_result_record(obj, path, line, fallback_us)
    kind = obj.get("type")
    if kind is None or kind == TYPE_MESSAGE:
        return message_record(obj, path, line, fallback_us)
    raise ValidationError(rec.join(path, "type"), kind, f"is not a record this importer reads ({_READS})")


FAMILY = rec.Family(PROVIDER, expand, parse_one, rec.json_values)
