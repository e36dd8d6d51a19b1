#!/usr/bin/env python3
"""Import throughput per importer kind against the raw emit rate of the same events, same run.

For each format every importer reads (claude-code; OpenAI chat completions, streamed final chunks, Responses, Batch
output, Usage API pages; Anthropic messages, batch results, usage report pages; LiteLLM spend logs as JSON lines and
CSV; OTel GenAI spans as OTLP/JSON, with legacy attribute names, and as OTLP protobuf) a file of ~20k records is
generated in a temp directory and imported into a fresh ledger home (embedded SQLite log, durable appends) through
``ledger.sources.importers.import_files``: read + parse + validate + scan of already-imported keys + emit
(chain, sign, append) + flush. Measured right after, in the same process: the raw emit rate, i.e.
``Emitter.emit`` of the very same bodies, times, contexts and idempotency keys (parsed beforehand,
untimed) by another signer at the same batch size. The ratio import / raw is what parsing and
idempotency cost on top of emitting. A re-import of the same file (everything a duplicate) is timed
too. One process, one thread; best of 3 runs per figure.

    python scripts/bench_import.py                   # ~20k records per kind
    python scripts/bench_import.py --records 50000
    python scripts/bench_import.py --format otel-protobuf --format litellm-csv
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.sdk.emitter import DEFAULT_BATCH_SIZE, Emitter
from ledger.sdk.home import Home
from ledger.sources.importers import import_files, parse
from ledger.testing.homes import grant, make_home  # the tests' home builder: operator + registered signers

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, as tests/support.T0
T0_S = T0_US // 1_000_000
RUNS = 3  # timed runs per figure; the best is printed (the machine is shared and noisy)
MODELS = ("claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-6")


# ------------------------------------------------------------------------------ generated inputs


def workflow_file(n: int) -> str:
    """One wf_*.json run with n agents over 5 stages (a phase header before each stage)."""
    entries: list[dict[str, Any]] = []
    per_stage = max(1, n // 5)
    for i in range(n):
        stage = f"Stage-{i // per_stage}"
        if i % per_stage == 0:
            entries.append({"type": "workflow_phase", "phaseTitle": stage})
        entries.append({"type": "workflow_agent", "agentId": f"agent-{i:06d}", "label": "worker", "phaseTitle": stage,
                        "model": MODELS[i % 3], "state": "completed", "tokens": 20_000 + i % 9_000,
                        "toolCalls": i % 12})
    total = sum(e["tokens"] for e in entries if e["type"] == "workflow_agent")
    return json.dumps({"runId": "wf_bench-0001", "workflowName": "bench", "status": "completed", "totalTokens": total,
                       "workflowProgress": entries})


def openai_lines(n: int) -> str:
    return "".join(json.dumps({
        "id": f"chatcmpl-{i:08d}", "object": "chat.completion", "created": T0_S + i, "model": "gpt-4.1",
        "choices": [], "usage": {"prompt_tokens": 1_000 + i % 5_000, "completion_tokens": 200 + i % 700,
                                 "total_tokens": 1_200 + i % 5_000 + i % 700,
                                 "prompt_tokens_details": {"cached_tokens": i % 400},
                                 "completion_tokens_details": {"reasoning_tokens": i % 100}}}) + "\n"
        for i in range(n))


def anthropic_lines(n: int) -> str:
    return "".join(json.dumps({
        "id": f"msg_{i:08d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [],
        "created": T0_S + i, "usage": {"input_tokens": 100 + i % 900, "output_tokens": 200 + i % 700,
                                       "cache_creation_input_tokens": i % 300, "cache_read_input_tokens": i % 4_000}})
        + "\n" for i in range(n))


def otel_lines(n: int) -> str:
    def span(i: int) -> dict[str, Any]:
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4.1",
                 "gen_ai.usage.input_tokens": 1_000 + i % 5_000, "gen_ai.usage.output_tokens": 200 + i % 700,
                 "gen_ai.usage.cache_read.input_tokens": i % 400}
        encoded: Any = attrs if i % 2 else [
            {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
            for k, v in attrs.items()]
        return {"traceId": f"{i:032x}", "spanId": f"{i + 1:016x}", "name": "chat gpt-4.1",
                "startTimeUnixNano": str((T0_US + i) * 1_000), "attributes": encoded}
    return "".join(json.dumps(span(i)) + "\n" for i in range(n))


def chat_chunk_lines(n: int) -> str:
    """A stream's final chunk per call (the one that carries usage), as a client logging its streams writes it."""
    return "".join(json.dumps({
        "id": f"chatcmpl-s{i:08d}", "object": "chat.completion.chunk", "created": T0_S + i, "model": "gpt-4.1",
        "choices": [], "usage": {"prompt_tokens": 1_000 + i % 5_000, "completion_tokens": 200 + i % 700,
                                 "total_tokens": 1_200 + i % 5_000 + i % 700,
                                 "prompt_tokens_details": {"cached_tokens": i % 400}}}) + "\n"
        for i in range(n))


def _response(i: int) -> dict[str, Any]:
    return {"id": f"resp_{i:08d}", "object": "response", "created_at": T0_S + i, "status": "completed",
            "model": "gpt-4.1", "output": [],
            "usage": {"input_tokens": 1_000 + i % 5_000, "input_tokens_details": {"cached_tokens": i % 400},
                      "output_tokens": 200 + i % 700, "output_tokens_details": {"reasoning_tokens": i % 100},
                      "total_tokens": 1_200 + i % 5_000 + i % 700}}


def responses_lines(n: int) -> str:
    return "".join(json.dumps(_response(i)) + "\n" for i in range(n))


def openai_batch_lines(n: int) -> str:
    return "".join(json.dumps({
        "id": f"batch_req_{i:08d}", "custom_id": f"task-{i}", "error": None,
        "response": {"status_code": 200, "request_id": f"req_{i:08d}", "body": _response(i)}}) + "\n"
        for i in range(n))


def openai_usage_pages(n: int) -> str:
    """Usage API pages of hourly buckets, ten results (grouped by project and model) a bucket."""
    pages = []
    per_page = 100
    for p in range(0, n, per_page):
        buckets = []
        for b in range(p, min(n, p + per_page), 10):
            results = [{"object": "organization.usage.completions.result", "input_tokens": 90_000 + r,
                        "output_tokens": 20_000 + r, "input_cached_tokens": 4_000, "input_audio_tokens": 0,
                        "output_audio_tokens": 0, "num_model_requests": 40 + r, "project_id": f"proj_{r}",
                        "user_id": None, "api_key_id": None, "model": "gpt-4.1", "batch": None,
                        "service_tier": None} for r in range(min(10, n - b))]
            start = T0_S + (b // 10) * 3_600
            buckets.append({"object": "bucket", "start_time": start, "end_time": start + 3_600, "results": results})
        pages.append({"object": "page", "data": buckets, "has_more": False, "next_page": None})
    return "".join(json.dumps(page) + "\n" for page in pages)


def anthropic_batch_lines(n: int) -> str:
    return "".join(json.dumps({"custom_id": f"task-{i}", "result": {"type": "succeeded", "message": {
        "id": f"msg_b{i:08d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [],
        "usage": {"input_tokens": 100 + i % 900, "output_tokens": 200 + i % 700,
                  "cache_creation_input_tokens": i % 300, "cache_read_input_tokens": i % 4_000}}}}) + "\n"
        for i in range(n))


def anthropic_usage_pages(n: int) -> str:
    pages = []
    for p in range(0, n, 100):
        data = []
        for b in range(p, min(n, p + 100), 10):
            start = T0_US // 1_000_000 + (b // 10) * 3_600
            data.append({"starting_at": _rfc3339(start), "ending_at": _rfc3339(start + 3_600), "results": [
                {"uncached_input_tokens": 50_000 + r, "cache_read_input_tokens": 9_000,
                 "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 0},
                 "output_tokens": 12_000 + r, "server_tool_use": {"web_search_requests": 0},
                 "model": "claude-sonnet-4-6", "api_key_id": f"apikey_{r}", "workspace_id": None,
                 "service_tier": "standard", "context_window": "0-200k"} for r in range(min(10, n - b))]})
        pages.append({"data": data, "has_more": False, "next_page": None})
    return "".join(json.dumps(page) + "\n" for page in pages)


def _rfc3339(unix_s: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(unix_s, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spend_row(i: int) -> dict[str, Any]:
    return {"request_id": f"req-{i:08d}", "call_type": "acompletion", "api_key": f"{i % 3:064x}",  # a key's hash
            "spend": round(0.0021 + (i % 50) / 10_000, 6), "total_tokens": 1_200 + i % 5_000 + i % 700,
            "prompt_tokens": 1_000 + i % 5_000, "completion_tokens": 200 + i % 700,
            "startTime": _rfc3339(T0_S + i), "endTime": _rfc3339(T0_S + i + 2), "model": "gpt-4.1",
            "model_group": "gpt-4.1", "custom_llm_provider": "openai", "api_base": "https://api.openai.com/v1",
            "user": f"user-{i % 7}", "metadata": {"user_api_key_team_id": "team-a"}, "cache_hit": "False",
            "cache_key": "", "request_tags": ["bench"], "team_id": "team-a", "end_user": f"agent-{i % 5}",
            "status": "success"}


def litellm_lines(n: int) -> str:
    return "".join(json.dumps(_spend_row(i)) + "\n" for i in range(n))


def litellm_csv(n: int) -> str:
    import csv
    import io

    rows = [_spend_row(i) for i in range(n)]
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    return out.getvalue()


def otel_legacy_lines(n: int) -> str:
    """Spans with the older attribute names (gen_ai.system, gen_ai.usage.prompt_tokens / completion_tokens) and an
    agent name: what instrumentations written before the current conventions export."""
    return "".join(json.dumps({
        "traceId": f"{i:032x}", "spanId": f"{i + 1:016x}", "name": "chat gpt-4.1",
        "startTimeUnixNano": str((T0_US + i) * 1_000),
        "attributes": {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4.1",
                       "gen_ai.usage.prompt_tokens": 1_000 + i % 5_000, "gen_ai.usage.completion_tokens": 200 + i % 700,
                       "gen_ai.agent.name": f"agent-{i % 5}"}}) + "\n" for i in range(n))


def otel_protobuf(n: int) -> bytes:
    """One OTLP protobuf ExportTraceServiceRequest of n GenAI spans, as the collector's file exporter writes it."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    for i in range(n):
        s = spans.add(trace_id=i.to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"), name="chat gpt-4.1",
                      start_time_unix_nano=(T0_US + i) * 1_000, end_time_unix_nano=(T0_US + i + 500) * 1_000)
        for k, v in (("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"),
                     ("gen_ai.request.model", "gpt-4.1"), ("gen_ai.usage.input_tokens", 1_000 + i % 5_000),
                     ("gen_ai.usage.output_tokens", 200 + i % 700), ("gen_ai.agent.name", f"agent-{i % 5}")):
            s.attributes.append(KeyValue(key=k, value=AnyValue(int_value=v) if isinstance(v, int)
                                         else AnyValue(string_value=v)))
    out: bytes = req.SerializeToString()
    return out


# format -> (import kind, file name, generator): every format each importer reads
GENERATORS: dict[str, tuple[str, str, Callable[[int], str | bytes]]] = {
    "claude-code": ("claude-code", "wf_bench-0001.json", workflow_file),
    "openai-chat": ("openai", "chat.jsonl", openai_lines),
    "openai-chunks": ("openai", "chunks.jsonl", chat_chunk_lines),
    "openai-responses": ("openai", "responses.jsonl", responses_lines),
    "openai-batch": ("openai", "batch_output.jsonl", openai_batch_lines),
    "openai-usage-api": ("openai", "usage_pages.jsonl", openai_usage_pages),
    "anthropic-messages": ("anthropic", "messages.jsonl", anthropic_lines),
    "anthropic-batch": ("anthropic", "batch_results.jsonl", anthropic_batch_lines),
    "anthropic-usage": ("anthropic", "usage_report.jsonl", anthropic_usage_pages),
    "litellm-json": ("litellm", "spend_logs.jsonl", litellm_lines),
    "litellm-csv": ("litellm", "spend_logs.csv", litellm_csv),
    "otel-json": ("otel", "otel.jsonl", otel_lines),
    "otel-legacy": ("otel", "legacy.jsonl", otel_legacy_lines),
    "otel-protobuf": ("otel", "spans.pb", otel_protobuf),
}


# ------------------------------------------------------------------------------ homes and emitters


def timed(home: Home, signer: str, work: Callable[[Emitter], Any]) -> float:
    log = home.open_log()
    try:
        with Emitter(log, home.load_key(signer), topic=home.topic, state_dir=home.state_dir,
                     batch_size=DEFAULT_BATCH_SIZE, background_flush=False) as em:
            start = time.perf_counter()
            work(em)
            em.flush()
            return time.perf_counter() - start
    finally:
        log.close()


def bench_format(fmt: str, records: int, tmp: Path) -> dict[str, float]:
    kind, name, generate = GENERATORS[fmt]
    source = tmp / fmt / name
    source.parent.mkdir(parents=True)
    data = generate(records)
    source.write_bytes(data if isinstance(data, bytes) else data.encode())
    parsed = parse(kind, source.read_bytes(), source=str(source), event_time_us=T0_US)
    assert not parsed.problems and not parsed.skipped, (parsed.problems[:3], parsed.skipped[:3])
    count = len(parsed.records)
    best = {"import": 0.0, "reimport": 0.0, "raw": 0.0, "parse": 0.0}
    for run in range(RUNS):
        home = make_home(tmp / f"{fmt}-home-{run}", agents=("importer", "raw-emitter"))
        # as `tokenledger import` registers it: a backfill signer, which may name the agent of each call
        grant(home, "importer", "backfill", max_age_us=30 * 86_400_000_000)
        took = timed(home, "importer", lambda em: import_files(kind, [source], em, event_time_us=T0_US))
        best["import"] = max(best["import"], count / took)
        took = timed(home, "importer", lambda em: import_files(kind, [source], em, event_time_us=T0_US))
        best["reimport"] = max(best["reimport"], count / took)

        def raw(em: Emitter) -> None:
            for r in parsed.records:
                em.emit(r.body, event_time_us=r.event_time_us, context=r.context,  # the agent label needs no grant
                        idempotency_key=r.idempotency_key)
        best["raw"] = max(best["raw"], count / timed(home, "raw-emitter", raw))
        start = time.perf_counter()
        parse(kind, source.read_bytes(), source=str(source), event_time_us=T0_US)
        best["parse"] = max(best["parse"], count / (time.perf_counter() - start))
    best["records"] = count
    best["bytes"] = source.stat().st_size
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000, help="records per generated file")
    ap.add_argument("--format", choices=list(GENERATORS), action="append", help="only these formats (repeatable)")
    args = ap.parse_args()
    print(f"tokenledger import benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, one thread, "
          f"SQLite {sqlite3.sqlite_version} (embedded log, durable appends), batch {DEFAULT_BATCH_SIZE}, "
          f"best of {RUNS}")
    print()
    print(f"{'format':<19} {'records':>8} {'file':>9} {'parse only':>12} {'import':>12} {'raw emit':>12} "
          f"{'import/raw':>10} {'re-import':>12}")
    with tempfile.TemporaryDirectory() as d:
        for fmt in args.format or GENERATORS:
            r = bench_format(fmt, args.records, Path(d))
            print(f"{fmt:<19} {int(r['records']):>8,} {r['bytes'] / 1e6:>7.1f}MB {r['parse']:>10,.0f}/s "
                  f"{r['import']:>10,.0f}/s {r['raw']:>10,.0f}/s {r['import'] / r['raw']:>10.2f} "
                  f"{r['reimport']:>10,.0f}/s")
    print()
    print("import = read + parse + validate + scan of the signer's imported keys + emit (chain, sign, durable "
          "append); raw emit = Emitter.emit of the same parsed events; re-import = the same file again (all "
          "duplicates: scan + parse + compare, nothing appended)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
