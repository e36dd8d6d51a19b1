"""The OpenAI importer's formats end to end: streamed chunks, Responses API objects, Batch API output lines and
Usage API pages, each imported through ``import_files`` into a real home with a real SQLite log, and read back.

Method: every input is built here from the documented field names and shapes with values of our own; each test
asserts the exact tokens per ledger kind (input, cache read, cache write, output, reasoning) of every emitted
event, and its key, labels, operation, service tier and event time. Malformed records are built one defect at a
time between two good records: each must give exactly one problem naming the line and the field's JSON path,
and the good records must import. Re-imports must leave the log's end offsets unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.importing import audit_ok, cli_app, events_of, import_runner, importer_home, log_ends, with_field, write
from typer.testing import CliRunner

from ledger.sdk.home import Home
from ledger.testing.homes import make_home
from ledger.testing.samples import T0_S, jsonl
from ledger.wire.timefmt import fmt_time

HOUR_S = 3_600
US = 1_000_000

# ------------------------------------------------------------------------------- home helpers


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return importer_home(tmp_path)


run_import = import_runner("openai")


def kinds(event: Any) -> tuple[int, int, int, int, int]:
    """(input, cache read, cache write, output, reasoning) of an event's usage."""
    u = event.body.usage
    return u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens, u.reasoning_tokens


# ------------------------------------------------------------------------------- builders (documented shapes)


def chat(call_id: str, prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0,
         created: int = T0_S, model: str = "gpt-4.1-mini") -> dict[str, Any]:
    return {"id": call_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0}}}


def chunk(call_id: str, usage: Any = "absent", *, created: int = T0_S) -> dict[str, Any]:
    # the final chunk of a stream that asked for usage has no choices; the others carry a delta each
    choices = [] if isinstance(usage, dict) else [{"index": 0, "delta": {"content": "tok"}, "finish_reason": None}]
    out: dict[str, Any] = {"id": call_id, "object": "chat.completion.chunk", "created": created, "model": "gpt-4.1",
                           "system_fingerprint": "fp_test", "choices": choices}
    if usage != "absent":
        out["usage"] = usage
    return out


def response(resp_id: str, input_tokens: int, output_tokens: int, *, cached: int = 0, reasoning: int = 0,
             status: str = "completed", tier: str | None = "default", created_at: int = T0_S,
             model: str = "o4-mini") -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": resp_id, "object": "response", "created_at": created_at, "status": status, "model": model,
        "output": [], "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": cached},
                                "output_tokens": output_tokens,
                                "output_tokens_details": {"reasoning_tokens": reasoning},
                                "total_tokens": input_tokens + output_tokens}}
    if tier is not None:
        out["service_tier"] = tier
    return out


def batch_line(line_id: str, custom_id: str, body: Any, *, status: int = 200, error: Any = None) -> dict[str, Any]:
    return {"id": line_id, "custom_id": custom_id,
            "response": None if body is None else {"status_code": status, "request_id": f"req_{line_id}",
                                                   "body": body},
            "error": error}


def usage_result(input_tokens: int, output_tokens: int, requests: int, **fields: Any) -> dict[str, Any]:
    out = {"object": "organization.usage.completions.result", "input_tokens": input_tokens,
           "output_tokens": output_tokens, "input_cached_tokens": 0, "input_audio_tokens": 0,
           "output_audio_tokens": 0, "num_model_requests": requests, "project_id": None, "user_id": None,
           "api_key_id": None, "model": None, "batch": None}
    out.update(fields)
    return out


def bucket(start: int, results: list[Any], *, end: int | None = None) -> dict[str, Any]:
    return {"object": "bucket", "start_time": start, "end_time": start + HOUR_S if end is None else end,
            "results": results}


def page(buckets: list[Any]) -> dict[str, Any]:
    return {"object": "page", "data": buckets, "has_more": False, "next_page": None}


# ------------------------------------------------------------------------------- 1. chat completions and chunks


def test_only_the_streamed_chunk_that_carries_usage_is_a_call(home, tmp_path):
    final_usage = {"prompt_tokens": 1_200, "completion_tokens": 300, "total_tokens": 1_500,
                   "prompt_tokens_details": {"cached_tokens": 1_024}, "completion_tokens_details": {
                       "reasoning_tokens": 0}}
    path = write(tmp_path / "stream.jsonl", jsonl([
        chunk("chatcmpl-s1", None, created=T0_S + 5), chunk("chatcmpl-s1", created=T0_S + 5),
        chunk("chatcmpl-s1", final_usage, created=T0_S + 5),
        chat("chatcmpl-c1", 800, 90, cached=512, reasoning=64, created=T0_S + 6)]))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected) == (2, ())
    assert [(s.line, s.field) for s in summary.skipped] == [(1, "record"), (2, "record")]
    assert all("a streamed chunk without usage; only the final chunk carries it" in s.reason
               for s in summary.skipped)
    streamed, completed = events_of(home)
    assert kinds(streamed) == (1_200, 1_024, 0, 300, 0) and kinds(completed) == (800, 512, 0, 90, 64)
    assert streamed.idempotency_key == "openai:chatcmpl-s1" and streamed.event_time_us == (T0_S + 5) * US
    assert streamed.body.operation == "llm.call" and streamed.body.usage.model == "gpt-4.1"
    assert dict(streamed.context.labels) == {"source": "openai"}
    assert audit_ok(home)


# ------------------------------------------------------------------------------- 2. Responses API


def test_responses_api_objects_map_cached_and_reasoning_as_parts_and_keep_a_non_completed_status(home, tmp_path):
    path = write(tmp_path / "responses.jsonl", jsonl([
        response("resp_done", 5_000, 900, cached=4_096, reasoning=640, created_at=T0_S + 10),
        response("resp_cut", 300, 128, reasoning=128, status="incomplete", tier="flex", created_at=T0_S + 11),
        response("resp_wait", 0, 0, status="in_progress") | {"usage": None},
        response("resp_broke", 0, 0, status="failed") | {"usage": None},
    ]))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected) == (2, ())
    assert [(s.line, s.reason) for s in summary.skipped] == [
        (3, "a response with status 'in_progress' and no usage: no tokens were reported"),
        (4, "a response with status 'failed' and no usage: no tokens were reported")]
    done, cut = events_of(home)
    assert kinds(done) == (5_000, 4_096, 0, 900, 640) and kinds(cut) == (300, 0, 0, 128, 128)
    assert (done.idempotency_key, done.event_time_us, done.body.usage.model) == (
        "openai:resp_done", (T0_S + 10) * US, "o4-mini")
    assert (done.body.usage.service_tier, cut.body.usage.service_tier) == ("", "flex")
    assert dict(done.context.labels) == {"source": "openai"}
    assert dict(cut.context.labels) == {"source": "openai", "status": "incomplete"}


# ------------------------------------------------------------------------------- 3. Batch API output


def test_batch_output_lines_import_at_the_batch_tier_keyed_by_the_line_id(home, tmp_path):
    shared = chat("chatcmpl-reused", 2_000, 150, cached=1_000, created=T0_S + 20) | {"service_tier": "default"}
    path = write(tmp_path / "batch_output.jsonl", jsonl([
        batch_line("batch_req_a1", "task-1", shared),
        batch_line("batch_req_a2", "task-2", response("resp_b2", 700, 70, reasoning=30, created_at=T0_S + 21,
                                                      tier=None)),
        batch_line("batch_req_a3", "task-3", None, error={"code": "batch_expired",
                                                          "message": "not run before the window closed"}),
        batch_line("batch_req_a4", "task-4", {"error": {"message": "slow down", "type": "requests",
                                                        "code": "rate_limit_exceeded"}}, status=429),
        batch_line("batch_req_a5", "task-5", {"object": "list", "data": [], "model": "text-embedding-3-small",
                                              "usage": {"prompt_tokens": 8, "total_tokens": 8}}),
        batch_line("batch_req_a6", "task-6", shared),  # the same body id in another batch: a call of its own
    ]))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected) == (3, ())
    assert [s.line for s in summary.skipped] == [3, 4, 5]
    assert "failed (batch_expired)" in summary.skipped[0].reason
    assert "failed (rate_limit_exceeded)" in summary.skipped[1].reason
    assert "object 'list'" in summary.skipped[2].reason
    first, second, again = events_of(home)
    assert [e.idempotency_key for e in (first, second, again)] == [
        "openai-batch:batch_req_a1", "openai-batch:batch_req_a2", "openai-batch:batch_req_a6"]
    assert kinds(first) == kinds(again) == (2_000, 1_000, 0, 150, 0) and kinds(second) == (700, 0, 0, 70, 30)
    assert {e.body.usage.service_tier for e in (first, second, again)} == {"batch"}
    assert dict(first.context.labels) == {"source": "openai", "custom_id": "task-1"}
    assert (first.event_time_us, second.event_time_us) == ((T0_S + 20) * US, (T0_S + 21) * US)


# ------------------------------------------------------------------------------- 4. Usage API pages


def usage_page_doc() -> dict[str, Any]:
    return page([
        bucket(T0_S, [
            usage_result(120_000, 9_000, 42, input_cached_tokens=80_000, model="gpt-4.1-mini",
                         project_id="proj_alpha", batch=False, service_tier="default"),
            usage_result(7_000, 500, 3, api_key_id="key_abc", input_audio_tokens=1_500, output_audio_tokens=200),
            usage_result(50_000, 10_000, 10, model="gpt-4.1", batch=True),
            {"object": "organization.usage.embeddings.result", "input_tokens": 300, "num_model_requests": 2},
            usage_result(0, 0, 0, model="gpt-4.1"),
        ]),
        bucket(T0_S + HOUR_S, []),
        bucket(T0_S + 2 * HOUR_S, [usage_result(64, 8, 1, model="gpt-4.1-mini", project_id="proj_alpha",
                                                batch=False, service_tier="default")]),
    ])


def test_usage_api_page_results_import_as_aggregates(home, tmp_path):
    path = write(tmp_path / "usage_completions.json", json.dumps(usage_page_doc(), indent=2))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected) == (4, ())
    assert [(s.line, s.field) for s in summary.skipped] == [(None, "data[0].results[3]"),
                                                             (None, "data[0].results[4]")]
    assert "organization.usage.embeddings.result" in summary.skipped[0].reason
    assert "no requests" in summary.skipped[1].reason
    grouped, unknown, batched, later = events_of(home)
    assert {e.body.operation for e in (grouped, unknown, batched, later)} == {"llm.usage_aggregate"}
    assert kinds(grouped) == (120_000, 80_000, 0, 9_000, 0)
    assert kinds(unknown) == (7_000, 0, 0, 500, 0)  # the audio tokens stay inside the totals
    assert kinds(batched) == (50_000, 0, 0, 10_000, 0) and kinds(later) == (64, 0, 0, 8, 0)
    assert grouped.idempotency_key == (f"openai-usage:{T0_S}:{T0_S + HOUR_S}:project_id=proj_alpha:"
                                       "model=gpt-4.1-mini:batch=false:service_tier=default")
    assert unknown.idempotency_key == f"openai-usage:{T0_S}:{T0_S + HOUR_S}:api_key_id=key_abc"
    assert later.idempotency_key.startswith(f"openai-usage:{T0_S + 2 * HOUR_S}:{T0_S + 3 * HOUR_S}:")
    assert (grouped.event_time_us, later.event_time_us) == (T0_S * US, (T0_S + 2 * HOUR_S) * US)
    assert dict(grouped.context.labels) == {
        "source": "openai", "aggregate": "true", "num_model_requests": "42", "project_id": "proj_alpha",
        "batch": "false", "input_audio_tokens": "0", "output_audio_tokens": "0",
        "bucket_start": fmt(T0_S), "bucket_end": fmt(T0_S + HOUR_S)}
    assert (unknown.body.usage.model, unknown.body.usage.provider) == ("unknown", "openai")
    assert dict(unknown.context.labels)["input_audio_tokens"] == "1500"
    assert dict(unknown.context.labels)["output_audio_tokens"] == "200"
    assert [e.body.usage.service_tier for e in (grouped, unknown, batched)] == ["", "", "batch"]
    assert audit_ok(home)


def fmt(seconds: int) -> str:
    return fmt_time(seconds * US)


def test_a_bad_bucket_or_result_is_one_problem_and_the_rest_of_the_page_imports(home, tmp_path):
    doc = page([bucket(T0_S, [usage_result(10, 1, 1, model="gpt-4.1")]) | {"start_time": float(T0_S)},
                bucket(T0_S + HOUR_S, [usage_result(10, "1", 1, model="gpt-4.1"),
                                       usage_result(20, 2, 1, model="gpt-4.1-mini")]),
                "not a bucket"])
    path = write(tmp_path / "page.json", json.dumps(doc))

    summary = run_import(home, [path])

    assert summary.imported == 1
    assert [(p.line, p.field) for p in summary.rejected] == [
        (None, "data[0].start_time"), (None, "data[1].results[0].output_tokens"), (None, "data[2]")]
    (event,) = events_of(home)
    assert kinds(event) == (20, 0, 0, 2, 0) and event.body.usage.model == "gpt-4.1-mini"


# ------------------------------------------------------------------------------- mixed files, re-import


def test_formats_are_detected_per_record_in_one_file(home, tmp_path):
    path = write(tmp_path / "mixed.jsonl", jsonl([
        chat("chatcmpl-m1", 100, 10, created=T0_S + 1),
        chunk("chatcmpl-m2", {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220},
              created=T0_S + 2),
        response("resp_m3", 300, 30, cached=100, reasoning=10, created_at=T0_S + 3),
        batch_line("batch_req_m4", "m4", chat("chatcmpl-m4", 400, 40, created=T0_S + 4)),
        page([bucket(T0_S, [usage_result(500, 50, 5, model="gpt-4.1")])]),
        bucket(T0_S + HOUR_S, [usage_result(600, 60, 6, model="gpt-4.1")]),
    ]))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected, summary.skipped) == (6, (), ())
    events = events_of(home)
    assert [(e.body.operation, e.idempotency_key.split(":")[0], kinds(e)) for e in events] == [
        ("llm.call", "openai", (100, 0, 0, 10, 0)),
        ("llm.call", "openai", (200, 0, 0, 20, 0)),
        ("llm.call", "openai", (300, 100, 0, 30, 10)),
        ("llm.call", "openai-batch", (400, 0, 0, 40, 0)),
        ("llm.usage_aggregate", "openai-usage", (500, 0, 0, 50, 0)),
        ("llm.usage_aggregate", "openai-usage", (600, 0, 0, 60, 0))]
    assert [e.body.usage.service_tier for e in events] == ["", "", "", "batch", "", ""]


def test_importing_every_format_again_appends_nothing(home, tmp_path):
    files = [
        write(tmp_path / "stream.jsonl", jsonl([chunk("chatcmpl-r1", None), chunk("chatcmpl-r1", {
            "prompt_tokens": 10, "completion_tokens": 2})])),
        write(tmp_path / "responses.json", json.dumps([response(f"resp_r{i}", 100 + i, 10) for i in range(5)])),
        write(tmp_path / "batch.jsonl", jsonl([batch_line(f"batch_req_r{i}", f"c{i}", chat(f"chatcmpl-b{i}", 50, 5))
                                               for i in range(4)])),
        write(tmp_path / "usage.json", json.dumps(usage_page_doc())),
    ]
    first = run_import(home, files)
    ends = log_ends(home)

    again = run_import(home, files)

    assert (first.imported, len(first.skipped), first.rejected) == (1 + 5 + 4 + 4, 3, ())
    assert (again.imported, again.duplicates, len(again.skipped), again.rejected) == (0, first.imported, 3, ())
    assert log_ends(home) == ends and audit_ok(home)


def test_a_usage_bucket_that_changed_since_its_import_is_a_conflict_not_a_duplicate(home, tmp_path):
    path = write(tmp_path / "usage.json", json.dumps(page([bucket(T0_S, [usage_result(10, 1, 1, model="o3")])])))
    run_import(home, [path])
    ends = log_ends(home)
    write(path, json.dumps(page([bucket(T0_S, [usage_result(99, 9, 2, model="o3")])])))

    summary = run_import(home, [path])

    assert (summary.imported, summary.duplicates) == (0, 0) and log_ends(home) == ends
    (problem,) = summary.rejected
    assert problem.field == "data[0].results[0]" and "different content" in problem.reason


# ------------------------------------------------------------------------------- malformed records


GOOD_CHUNK = chunk("chatcmpl-x", {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110,
                                  "prompt_tokens_details": {"cached_tokens": 50}})
GOOD_RESPONSE = response("resp_x", 100, 10, cached=50, reasoning=5)
GOOD_BATCH = batch_line("batch_req_x", "x", chat("chatcmpl-y", 100, 10))
GOOD_PAGE = page([bucket(T0_S, [usage_result(100, 10, 1, input_cached_tokens=50, input_audio_tokens=20,
                                             model="gpt-4.1")])])
R0 = "data.0.results.0"

MALFORMED = [
    ("chunk-string-count", with_field(GOOD_CHUNK, "usage.prompt_tokens", "100"), "usage.prompt_tokens", "integer"),
    ("chunk-cache-above-input", with_field(GOOD_CHUNK, "usage.prompt_tokens_details.cached_tokens", 101),
     "usage.prompt_tokens_details.cached_tokens", "cannot exceed"),
    ("response-negative", with_field(GOOD_RESPONSE, "usage.input_tokens", -1), "usage.input_tokens", "between 0"),
    ("response-cache-above-input", with_field(GOOD_RESPONSE, "usage.input_tokens_details.cached_tokens", 101),
     "usage.input_tokens_details.cached_tokens", "cannot exceed"),
    ("response-reasoning-above-output", with_field(GOOD_RESPONSE, "usage.output_tokens_details.reasoning_tokens", 11),
     "usage.output_tokens_details.reasoning_tokens", "cannot exceed"),
    ("response-total", with_field(GOOD_RESPONSE, "usage.total_tokens", 111), "usage.total_tokens", "must equal"),
    ("response-completed-without-usage", with_field(GOOD_RESPONSE, "usage", None), "usage", "must not be null"),
    ("response-time-text", with_field(GOOD_RESPONSE, "created_at", "2026-01-01"), "created_at", "integer"),
    ("response-time-float", with_field(GOOD_RESPONSE, "created_at", T0_S + 0.5), "created_at", "integer"),
    ("response-status-number", with_field(GOOD_RESPONSE, "status", 5), "status", "string"),
    ("batch-status-text", with_field(GOOD_BATCH, "response.status_code", "200"), "response.status_code", "integer"),
    ("batch-status-range", with_field(GOOD_BATCH, "response.status_code", 700), "response.status_code", "between"),
    ("batch-body-float", with_field(GOOD_BATCH, "response.body.usage.prompt_tokens", 100.0),
     "response.body.usage.prompt_tokens", "integer"),
    ("batch-body-flex-tier", with_field(GOOD_BATCH, "response.body.service_tier", "flex"), "response.body.service_tier",
     "batch"),
    ("batch-null-custom-id", with_field(GOOD_BATCH, "custom_id", None), "custom_id", "must not be null"),
    ("batch-no-response-no-error", with_field(GOOD_BATCH, "response", None), "response", "required"),
    ("batch-no-body", with_field(GOOD_BATCH, "response.body", ...), "response.body", "required"),
    ("usage-string-count", with_field(GOOD_PAGE, f"{R0}.input_tokens", "100"), "data[0].results[0].input_tokens",
     "integer"),
    ("usage-cache-above-input", with_field(GOOD_PAGE, f"{R0}.input_cached_tokens", 101),
     "data[0].results[0].input_cached_tokens", "cannot exceed"),
    ("usage-audio-above-input", with_field(GOOD_PAGE, f"{R0}.input_audio_tokens", 101),
     "data[0].results[0].input_audio_tokens", "cannot exceed"),
    ("usage-audio-above-output", with_field(GOOD_PAGE, f"{R0}.output_audio_tokens", 11),
     "data[0].results[0].output_audio_tokens", "cannot exceed"),
    ("usage-tokens-without-requests", with_field(GOOD_PAGE, f"{R0}.num_model_requests", 0),
     "data[0].results[0].num_model_requests", "is 0"),
    ("usage-no-requests-field", with_field(GOOD_PAGE, f"{R0}.num_model_requests", ...),
     "data[0].results[0].num_model_requests", "required"),
    ("usage-batch-text", with_field(GOOD_PAGE, f"{R0}.batch", "yes"), "data[0].results[0].batch", "true, false"),
    ("usage-batch-flex", with_field(with_field(GOOD_PAGE, f"{R0}.batch", True), f"{R0}.service_tier", "flex"),
     "data[0].results[0].service_tier", "batch"),
    ("usage-model-number", with_field(GOOD_PAGE, f"{R0}.model", 4), "data[0].results[0].model", "string"),
    ("bucket-time-text", with_field(GOOD_PAGE, "data.0.start_time", "yesterday"), "data[0].start_time", "integer"),
    ("bucket-time-ms", with_field(GOOD_PAGE, "data.0.start_time", T0_S * 1_000), "data[0].start_time", "between"),
    ("bucket-end-before-start", with_field(GOOD_PAGE, "data.0.end_time", T0_S), "data[0].end_time", "later"),
    ("bucket-results-object", with_field(GOOD_PAGE, "data.0.results", {}), "data[0].results", "array"),
    ("bucket-other-object", with_field(GOOD_PAGE, "data.0.object", "list"), "data[0].object", "bucket"),
    ("page-data-object", with_field(GOOD_PAGE, "data", {}), "data", "array"),
    ("unknown-object", {"id": "run_1", "object": "thread.run", "usage": {}}, "object", "not a record"),
]


@pytest.mark.parametrize("bad,field,reason", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_record_is_one_problem_at_its_line_and_field(home, tmp_path, bad, field, reason):
    path = write(tmp_path / "in.jsonl", jsonl([chat("chatcmpl-g1", 10, 1), bad, chat("chatcmpl-g3", 30, 3)]))

    summary = run_import(home, [path])

    assert summary.imported == 2, summary.rejected
    (problem,) = summary.rejected
    assert (problem.file, problem.line, problem.field) == (str(path), 2, field), problem
    assert reason in problem.reason, problem
    assert [kinds(e) for e in events_of(home)] == [(10, 0, 0, 1, 0), (30, 0, 0, 3, 0)]


def test_the_good_variants_of_the_malformed_records_import(home, tmp_path):
    """Every malformed record above differs from one of these in the one field its test names."""
    path = write(tmp_path / "good.jsonl", jsonl([GOOD_CHUNK, GOOD_RESPONSE, GOOD_BATCH, GOOD_PAGE]))
    summary = run_import(home, [path])
    assert (summary.imported, summary.rejected, summary.skipped) == (4, (), ())
    assert [kinds(e) for e in events_of(home)] == [(100, 50, 0, 10, 0), (100, 50, 0, 10, 5), (100, 0, 0, 10, 0),
                                                   (100, 50, 0, 10, 0)]


# ------------------------------------------------------------------------------- the command

runner = CliRunner()


def test_cli_imports_a_usage_page_and_lists_its_skips(tmp_path):
    home = make_home(tmp_path / "home", agents=())
    path = write(tmp_path / "usage.json", json.dumps(usage_page_doc()))
    args = ["import", "openai", str(path), "--home", str(home.path), "--json"]

    first = runner.invoke(cli_app(), args)
    assert first.exit_code == 1, first.output  # two results skipped, without --allow-skips
    result = json.loads(first.stdout)
    assert (result["imported"], result["skipped"], result["rejected"]) == (4, 2, [])
    assert [s["field"] for s in result["skips"]] == ["data[0].results[3]", "data[0].results[4]"]

    again = runner.invoke(cli_app(), [*args, "--allow-skips"])
    assert again.exit_code == 0, again.output
    assert (json.loads(again.stdout)["imported"], json.loads(again.stdout)["duplicates"]) == (0, 4)
    events = events_of(home)
    assert [e.body.operation for e in events] == ["llm.usage_aggregate"] * 4
    assert [kinds(e) for e in events] == [(120_000, 80_000, 0, 9_000, 0), (7_000, 0, 0, 500, 0),
                                          (50_000, 0, 0, 10_000, 0), (64, 0, 0, 8, 0)]
