"""OpenAI payloads. Chat Completions: ``prompt_tokens`` is the input total, its ``cached_tokens`` the cache-read part;
``completion_tokens`` the output, its ``reasoning_tokens`` the reasoning part.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import ValidationError
from ledger.sources import records as rec
from ledger.sources.attribution import LABEL_SOURCE
from ledger.sources.records import IMPORT_OPERATION, ImportRecord, idempotency_key
from ledger.wire.events import Action, Context, LlmUsage

# Contexts are immutable: payload records share one instead of validating the same labels 20k times.
_OPENAI_CONTEXT = Context(labels=((LABEL_SOURCE, "openai"),))


def chat_completion_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord:
    obj = rec.json_object(value, path)
    record_id, model, usage, up = rec.payload_identity(obj, path)
    prompt = rec.count(rec.required(usage, "prompt_tokens", up), rec.join(up, "prompt_tokens"))
    completion = rec.count(rec.required(usage, "completion_tokens", up), rec.join(up, "completion_tokens"))
    if usage.get("total_tokens") is not None:
        total = rec.count(usage["total_tokens"], rec.join(up, "total_tokens"))
        if total != prompt + completion:
            raise ValidationError(rec.join(up, "total_tokens"), total,
                                  f"must equal prompt_tokens + completion_tokens ({prompt + completion:,})")
    prompt_path, completion_path = rec.join(up, "prompt_tokens_details"), rec.join(up, "completion_tokens_details")
    cached = rec.optional_count(rec.optional_object(usage, "prompt_tokens_details", up), "cached_tokens", prompt_path)
    rec.part_of(cached, rec.join(prompt_path, "cached_tokens"), prompt, "prompt_tokens")
    reasoning = rec.optional_count(rec.optional_object(usage, "completion_tokens_details", up), "reasoning_tokens",
                                completion_path)
    rec.part_of(reasoning, rec.join(completion_path, "reasoning_tokens"), completion, "completion_tokens")
    return ImportRecord(
        idempotency_key=idempotency_key("openai", record_id),
        body=Action(operation=IMPORT_OPERATION, usage=LlmUsage(
            provider="openai", model=model, input_tokens=prompt, output_tokens=completion,
            cache_read_tokens=cached, reasoning_tokens=reasoning, service_tier=rec.service_tier(obj, path),
            provider_cost_micros=rec.reported_cost(usage, up))),
        event_time_us=rec.time_or_fallback(obj, "created", path, fallback_us),
        context=_OPENAI_CONTEXT, line=line, path=path)


FAMILY = rec.Family("openai", rec.one_unit, chat_completion_record, rec.json_values)
