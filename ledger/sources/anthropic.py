"""Anthropic payloads. Messages: ``input_tokens`` there EXCLUDES the cache, so the ledger's input total is
``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` with cache write = creation and cache read =
read (never counted twice, never dropped).
"""

from __future__ import annotations

from typing import Any

from ledger.errors import ValidationError
from ledger.sources import records as rec
from ledger.sources.attribution import LABEL_SOURCE
from ledger.sources.records import IMPORT_OPERATION, ImportRecord, idempotency_key
from ledger.wire.events import Action, Context, LlmUsage

_ANTHROPIC_CONTEXT = Context(labels=((LABEL_SOURCE, "anthropic"),))


def message_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord:
    obj = rec.json_object(value, path)
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
    # Anthropic reports input_tokens WITHOUT the cached parts; the ledger's input total includes them.
    return ImportRecord(
        idempotency_key=idempotency_key("anthropic", record_id),
        body=Action(operation=IMPORT_OPERATION, usage=LlmUsage(
            provider="anthropic", model=model, input_tokens=uncached + written + read, output_tokens=output,
            cache_read_tokens=read, cache_write_tokens=written, cache_write_1h_tokens=one_hour,
            service_tier=rec.service_tier(usage, up))),
        event_time_us=rec.time_or_fallback(obj, "created", path, fallback_us),
        context=_ANTHROPIC_CONTEXT, line=line, path=path)


FAMILY = rec.Family("anthropic", rec.one_unit, message_record, rec.json_values)
