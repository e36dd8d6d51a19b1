"""Importers end to end on a real home with a real SQLite log.

Method: every sample file is generated here (workflow runs including the reference meter's sample run
shape, OpenAI and Anthropic payloads with cached and reasoning tokens, OTel GenAI spans in both
attribute encodings), imported through a real Emitter, and read back from the log. Malformed files
are built one defect at a time: each must give exactly one problem naming file, line (or JSON path)
and field, emit nothing for that record, and let the rest of its file through. Re-imports must leave
the log's end offsets unchanged, also beyond the Emitter's 4,096-id memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.importing import audit_ok, cli_app, events_of, importer_home, log_ends, run_import, write
from typer.testing import CliRunner

from ledger import limits
from ledger.economics.pricing import default_price_book, usage_cost
from ledger.errors import ValidationError
from ledger.sdk.home import Home
from ledger.sources import importers
from ledger.sources.attribution import WorkflowAgent, WorkflowRun, runs_from_events
from ledger.sources.importers import (
    expand_paths,
    idempotency_key,
    infer_provider,
    parse,
    parse_workflow_run,
)
from ledger.testing.homes import T0, make_home, revoke
from ledger.testing.samples import (
    T0_S,
    agent,
    anthropic_payload,
    degraded_run_doc,
    genai_span,
    jsonl,
    openai_payload,
    otlp_attrs,
    phase,
    sample_run_doc,
    wf_doc,
)
from ledger.wire.events import Action
from ledger.wire.timefmt import fmt_time

# ------------------------------------------------------------------------------- home helpers


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return importer_home(tmp_path)


# ------------------------------------------------------------------------------- Claude Code workflows


def test_workflow_runs_import_as_signed_workflow_agent_actions(home, tmp_path):
    runs = tmp_path / "runs"
    sample, degraded = sample_run_doc(), degraded_run_doc()
    write(runs / "wf_sample-001.json", json.dumps(sample, indent=2))
    write(runs / "nested" / "wf_degraded-002.json", json.dumps(degraded))
    write(runs / "notes.json", "not a run file: the directory pattern skips it")

    summary = run_import(home, "claude-code", [runs], event_time_us=T0)

    assert summary.files == 2 and summary.imported == 19 + 15 and summary.rejected == () and summary.duplicates == 0
    events = events_of(home)
    assert len(events) == 34 and audit_ok(home)
    (first,) = [e for e in events if e.idempotency_key == "wf:wf_sample-001:1"]
    labels = dict(first.context.labels)
    assert isinstance(first.body, Action) and first.body.operation == "workflow.agent"
    assert first.body.usage.provider == "anthropic" and first.body.usage.model == "claude-haiku-4-5"
    assert (first.body.usage.input_tokens, first.body.usage.output_tokens) == (31_204, 0)
    assert labels["io_split"] == "unknown" and labels["agent_id"] == "scope-1" and labels["state"] == "completed"
    assert labels["tool_calls"] == "3" and labels["total_tokens"] == "1006200" and labels["entry_index"] == "1"
    assert labels["workflow_status"] == "completed" and labels["agent_label"] == "scope"
    assert (first.context.run, first.context.stage, first.context.task) == ("wf_sample-001", "Scope",
                                                                             "sample-research")
    assert first.event_time_us == T0
    # the ledger alone rebuilds exactly the runs the files describe (files are read in path order)
    assert runs_from_events(events) == tuple(parse_workflow_run(doc, source="x")[0] for doc in (degraded, sample))


def test_workflow_import_needs_an_event_time(home, tmp_path):
    path = write(tmp_path / "wf_a.json", json.dumps(sample_run_doc()))
    before = log_ends(home)
    with pytest.raises(ValidationError) as e:
        run_import(home, "claude-code", [path])
    assert e.value.field == "time" and log_ends(home) == before
    assert [p.field for p in parse("claude-code", path.read_bytes(), source="a").problems] == ["time"]


def test_malformed_workflow_entries_are_problems_at_their_json_path(home, tmp_path):
    entries = [phase("Scope"),
               agent("ok-1", "Scope", "claude-haiku-4-5", 100),
               agent("str", "Scope", "claude-haiku-4-5", "12.7"),
               agent("neg", "Scope", "claude-haiku-4-5", -5),
               agent("bool", "Scope", "claude-haiku-4-5", True),
               agent("nan", "Scope", "claude-haiku-4-5", float("nan")),
               agent("float", "Scope", "claude-haiku-4-5", 12.7),
               {k: v for k, v in agent("nomodel", "Scope", "x", 10).items() if k != "model"},
               agent("tools", "Scope", "claude-haiku-4-5", 10, tool_calls="3"),
               {"type": "workflow_log", "text": "unknown entry type"},
               "not an object",
               agent("ok-2", "Scope", "claude-haiku-4-5", 200)]
    path = write(tmp_path / "wf_bad.json", json.dumps(wf_doc("wf_bad", entries, total=300)))

    summary = run_import(home, "claude-code", [path], event_time_us=T0)

    assert summary.imported == 2
    assert [(p.file, p.line, p.field) for p in summary.rejected] == [
        (str(path), None, "workflowProgress[2].tokens"), (str(path), None, "workflowProgress[3].tokens"),
        (str(path), None, "workflowProgress[4].tokens"), (str(path), None, "workflowProgress[5].tokens"),
        (str(path), None, "workflowProgress[6].tokens"), (str(path), None, "workflowProgress[7].model"),
        (str(path), None, "workflowProgress[8].toolCalls"), (str(path), None, "workflowProgress[9].type"),
        (str(path), None, "workflowProgress[10]")]
    assert summary.rejected[0].value == "'12.7'" and "integer" in summary.rejected[0].reason
    assert "between 0" in summary.rejected[1].reason and "NaN" in summary.rejected[3].reason
    assert [dict(e.context.labels)["agent_id"] for e in events_of(home)] == ["ok-1", "ok-2"]


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("runId"), "runId"),
    (lambda d: d.update(totalTokens="1006200"), "totalTokens"),
    (lambda d: d.update(totalTokens=-1), "totalTokens"),
    (lambda d: d.pop("totalTokens"), "totalTokens"),
    (lambda d: d.update(workflowProgress={"not": "a list"}), "workflowProgress"),
], ids=["no-runId", "string-total", "negative-total", "no-total", "progress-not-a-list"])
def test_a_run_level_defect_rejects_the_whole_run(home, tmp_path, mutate, field):
    doc = sample_run_doc()
    mutate(doc)
    path = write(tmp_path / "wf_x.json", json.dumps(doc))
    before = log_ends(home)
    summary = run_import(home, "claude-code", [path], event_time_us=T0)
    assert summary.imported == 0 and [(p.file, p.line, p.field) for p in summary.rejected] == [(str(path), None, field)]
    assert log_ends(home) == before


def test_unknown_model_is_imported_with_provider_unknown(home, tmp_path):
    doc = wf_doc("wf_u", [phase("S"), agent("a", "S", "mystery-model-9", 500), agent("b", "S", "gpt-4.1", 7)])
    path = write(tmp_path / "wf_u.json", json.dumps(doc))
    assert run_import(home, "claude-code", [path], event_time_us=T0).imported == 2
    assert [(e.body.usage.provider, e.body.usage.model) for e in events_of(home)] == [
        ("unknown", "mystery-model-9"), ("openai", "gpt-4.1")]


@pytest.mark.parametrize("model,provider", [
    ("claude-opus-4-6", "anthropic"), ("Claude-3-5-Sonnet", "anthropic"), ("anthropic/claude-haiku-4-5", "anthropic"),
    ("gpt-4.1-mini", "openai"), ("o3", "openai"), ("o4-mini", "openai"), ("openai/gpt-4o", "openai"),
    ("chatgpt-4o-latest", "openai"), ("text-embedding-3-small", "openai"), ("gemini-2.5-pro", "google"),
    ("opus-like", "unknown"), ("llama-3.1-70b", "unknown"), ("o", "unknown"), ("mistral-large", "unknown"),
])
def test_provider_is_inferred_from_the_model_name(model, provider):
    assert infer_provider(model) == provider


# ------------------------------------------------------------------------------- OpenAI and Anthropic


def test_openai_usage_maps_cached_and_reasoning_tokens_as_parts(home, tmp_path):
    path = write(tmp_path / "usage.jsonl", jsonl([
        openai_payload(1, 2_000, 500, cached=1_536, reasoning=320, model="o3"),
        openai_payload(2, 800, 40),
        openai_payload(3, 900, 60, cached=None, reasoning=0) | {"usage": {
            "prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960, "prompt_tokens_details": None}},
    ]))
    summary = run_import(home, "openai", [path])
    assert (summary.imported, summary.rejected) == (3, ())
    events = events_of(home)
    usage = events[0].body.usage
    assert (usage.provider, usage.model, usage.input_tokens, usage.output_tokens) == ("openai", "o3", 2_000, 500)
    assert (usage.cache_read_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (1_536, 0, 320)
    assert events[0].idempotency_key == "openai:chatcmpl-000001" and events[0].event_time_us == (T0_S + 1) * 10**6
    assert dict(events[0].context.labels) == {"source": "openai"}
    assert [e.body.usage.cache_read_tokens for e in events[1:]] == [0, 0]
    assert audit_ok(home)


def test_openai_json_array_document_reports_problems_by_index(home, tmp_path):
    path = write(tmp_path / "usage.json", json.dumps([openai_payload(1), openai_payload(2, prompt=-3),
                                                      openai_payload(3)], indent=2))
    summary = run_import(home, "openai", [path])
    assert summary.imported == 2
    assert [(p.line, p.field) for p in summary.rejected] == [(None, "[1].usage.prompt_tokens")]


def test_anthropic_cache_tokens_are_parts_of_the_input_total_never_double_counted(home, tmp_path):
    path = write(tmp_path / "messages.jsonl", jsonl([
        anthropic_payload(1, input_tokens=100, output_tokens=400, written=2_000, read=30_000),
        anthropic_payload(2, input_tokens=1_000, output_tokens=10) | {"usage": {
            "input_tokens": 1_000, "output_tokens": 10, "cache_creation_input_tokens": 3_000,
            "cache_read_input_tokens": None,
            "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000}}},
    ]))
    summary = run_import(home, "anthropic", [path], event_time_us=T0)
    assert (summary.imported, summary.rejected) == (2, ())
    first, second = events_of(home)
    u = first.body.usage
    # Anthropic's input_tokens (100) excludes the cache; the ledger's input total includes it exactly once
    assert (u.input_tokens, u.cache_write_tokens, u.cache_read_tokens, u.output_tokens) == (32_100, 2_000, 30_000, 400)
    assert first.event_time_us == T0 and first.idempotency_key == "anthropic:msg_000001"
    price = default_price_book().price_at("anthropic", "claude-sonnet-4-6", T0)
    cost = usage_cost(price, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                      cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens)
    # $3/MTok uncached, $3.75 write, $0.30 read, $15 output: 300 + 7,500 + 9,000 + 6,000 micro-USD
    assert (cost.uncached_input, cost.cache_write, cost.cache_read, cost.output, cost.total) == (
        300, 7_500, 9_000, 6_000, 22_800)
    assert (second.body.usage.input_tokens, second.body.usage.cache_write_1h_tokens) == (4_000, 2_000)


def test_service_tier_and_a_gateways_reported_cost_are_kept(home, tmp_path):
    """OpenAI's top-level service_tier and Anthropic's usage.service_tier go on the usage ('' for the standard
    tier); a gateway's usage.cost (OpenRouter, USD) is kept in micro-USD beside the ledger's own cost."""
    path = write(tmp_path / "usage.jsonl", jsonl([
        openai_payload(1) | {"service_tier": "flex"},
        openai_payload(2) | {"service_tier": "default"},
        openai_payload(3) | {"usage": openai_payload(3)["usage"] | {"cost": 0.0001235}},
        openai_payload(4) | {"usage": openai_payload(4)["usage"] | {"cost": "lots"}},
    ]))
    summary = run_import(home, "openai", [path])
    assert summary.imported == 3 and [(p.line, p.field) for p in summary.rejected] == [(4, "usage.cost")]
    flex, default, costed = (e.body.usage for e in events_of(home))
    assert (flex.service_tier, default.service_tier, costed.service_tier) == ("flex", "", "")
    assert (flex.provider_cost_micros, costed.provider_cost_micros) == (None, 124)  # 123.5 -> 124, half to even
    path = write(tmp_path / "messages.jsonl", jsonl([
        anthropic_payload(9) | {"usage": anthropic_payload(9)["usage"] | {"service_tier": "batch"}}]))
    run_import(home, "anthropic", [path], event_time_us=T0)
    assert events_of(home)[-1].body.usage.service_tier == "batch"


def test_anthropic_records_without_a_time_are_problems_without_time_option(home, tmp_path):
    path = write(tmp_path / "m.jsonl", jsonl([anthropic_payload(1), anthropic_payload(2) | {"created": T0_S}]))
    summary = run_import(home, "anthropic", [path])
    assert summary.imported == 1 and [(p.line, p.field) for p in summary.rejected] == [(1, "created")]


# ------------------------------------------------------------------------------- OpenTelemetry


def test_otel_genai_spans_in_both_attribute_encodings(home, tmp_path):
    export = {"resourceSpans": [{"resource": {"attributes": otlp_attrs({"service.name": "agent"})},
                                 "scopeSpans": [{"scope": {"name": "genai"}, "spans": [
                                     genai_span(10, otlp=True, gen_ai__provider__name=None, gen_ai__system="anthropic",
                                                gen_ai__response__model="claude-sonnet-4-6",
                                                gen_ai__usage__cache_read__input_tokens=1_000,
                                                gen_ai__usage__cache_creation__input_tokens=100),
                                     {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "GET /search",
                                      "startTimeUnixNano": str(T0 * 1000),
                                      "attributes": otlp_attrs({"http.method": "GET"})},
                                 ]}]}]}
    path = write(tmp_path / "spans.jsonl", jsonl([
        genai_span(1, gen_ai__usage__cache_read__input_tokens=800),
        genai_span(2, otlp=True),
        export,
        genai_span(3, gen_ai__operation__name="embeddings", gen_ai__usage__output_tokens=None,
                   gen_ai__provider__name=None, gen_ai__response__model=None,
                   gen_ai__request__model="text-embedding-3-small"),
    ]))
    summary = run_import(home, "otel", [path])
    assert (summary.imported, len(summary.skipped), summary.rejected) == (4, 1, ())
    assert summary.skipped[0].line == 3 and "not an LLM call" in summary.skipped[0].reason
    events = events_of(home)
    got = [(e.body.usage.provider, e.body.usage.model, e.body.usage.input_tokens, e.body.usage.output_tokens,
            e.body.usage.cache_read_tokens, e.body.usage.cache_write_tokens) for e in events]
    assert got == [("openai", "gpt-4.1-2025-04-14", 1_200, 300, 800, 0),
                   ("openai", "gpt-4.1-2025-04-14", 1_200, 300, 0, 0),
                   ("anthropic", "claude-sonnet-4-6", 1_200, 300, 1_000, 100),
                   ("openai", "text-embedding-3-small", 1_200, 0, 0, 0)]
    assert events[0].idempotency_key == f"otel:{1:032x}:{2:016x}" and events[0].context.run == f"{1:032x}"
    assert events[1].event_time_us == T0 + 2_000  # nanoseconds floored to microseconds
    assert dict(events[0].context.labels) == {"source": "otel", "span_name": "chat gpt-4.1",
                                              "gen_ai_operation": "chat"}
    assert audit_ok(home)


# ------------------------------------------------------------------------------- malformed input

GOOD = {"openai": lambda i: openai_payload(i), "anthropic": lambda i: anthropic_payload(i) | {"created": T0_S},
        "otel": lambda i: genai_span(i),
        "litellm": lambda i: {"request_id": f"req-{i}", "startTime": fmt_time(T0 + i), "model": "gpt-4.1",
                              "prompt_tokens": 10, "completion_tokens": 2}}

MALFORMED = [
    ("openai", json.dumps(openai_payload(7, prompt="12.7")), "usage.prompt_tokens", "integer"),
    ("openai", json.dumps(openai_payload(7, prompt=12.7)), "usage.prompt_tokens", "integer"),
    ("openai", json.dumps(openai_payload(7, completion=-4)), "usage.completion_tokens", "between 0"),
    ("openai", json.dumps(openai_payload(7, prompt=True)), "usage.prompt_tokens", "bool"),
    ("openai", json.dumps(openai_payload(7, prompt=float("nan"))), "usage.prompt_tokens", "NaN"),
    ("openai", json.dumps(openai_payload(7, prompt=10**13)), "usage.prompt_tokens", "between 0"),
    ("openai", json.dumps(openai_payload(7, 100, 5, cached=101)), "usage.prompt_tokens_details.cached_tokens",
     "cannot exceed"),
    ("openai", json.dumps(openai_payload(7, 100, 5, reasoning=6)), "usage.completion_tokens_details.reasoning_tokens",
     "cannot exceed"),
    ("openai", json.dumps(openai_payload(7) | {"usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                          "total_tokens": 3}}), "usage.total_tokens", "must equal"),
    ("openai", json.dumps(openai_payload(7, model=None)), "model", "required"),
    ("openai", json.dumps(openai_payload(7, created=0)), "created", "event-time range"),
    ("openai", json.dumps(openai_payload(7))[:-9], "line", "not valid JSON"),
    ("openai", "[1, 2", "line", "not valid JSON"),
    ("openai", '"just a string"', "record", "JSON object"),
    ("anthropic", json.dumps(anthropic_payload(7, read=-1) | {"created": T0_S}), "usage.cache_read_input_tokens",
     "between 0"),
    ("anthropic", json.dumps(anthropic_payload(7, input_tokens="100") | {"created": T0_S}), "usage.input_tokens",
     "integer"),
    ("anthropic", json.dumps(anthropic_payload(7, written=10) | {"created": T0_S, "usage": {
        "input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 10,
        "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 3}}}),
     "usage.cache_creation", "add up"),
    ("otel", json.dumps(genai_span(7, gen_ai__usage__cache_read__input_tokens=1_201)),
     "attributes.gen_ai.usage.cache_read.input_tokens", "cannot exceed"),
    ("otel", json.dumps(genai_span(7, otlp=True) | {"attributes": [
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4.1"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12.7"}}]}),
     "attributes[1].value.intValue", "integer"),
    ("otel", json.dumps(genai_span(7, otlp=True, gen_ai__usage__input_tokens=1.5)),
     "attributes.gen_ai.usage.input_tokens", "integer"),
    ("otel", json.dumps(genai_span(7, gen_ai__request__model=None, gen_ai__response__model=None)),
     "attributes.gen_ai.request.model", "required"),
    ("otel", json.dumps(genai_span(7, gen_ai__usage__output_tokens=None)), "attributes.gen_ai.usage.output_tokens",
     "required"),
    ("otel", json.dumps(genai_span(7) | {"traceId": "xyz"}), "traceId", "hexadecimal"),
    ("otel", json.dumps(genai_span(7) | {"startTimeUnixNano": "soon"}), "startTimeUnixNano", "integer"),
]


@pytest.mark.parametrize("kind,bad_line,field,reason", MALFORMED,
                         ids=[f"{k}-{f}-{r}".replace(" ", "_") for k, _, f, r in MALFORMED])
def test_a_malformed_record_is_one_problem_with_file_and_line(home, tmp_path, kind, bad_line, field, reason):
    good = GOOD[kind]
    path = write(tmp_path / f"{kind}.jsonl", "\n".join([json.dumps(good(1)), bad_line, json.dumps(good(3))]) + "\n")

    summary = run_import(home, kind, [path])

    assert summary.imported == 2, summary.rejected
    (problem,) = summary.rejected
    assert (problem.file, problem.line, problem.field) == (str(path), 2, field)
    assert reason in problem.reason, problem
    assert len(events_of(home)) == 2 and audit_ok(home)


@pytest.mark.parametrize("kind", importers.KINDS)
@pytest.mark.parametrize("content", [b"hello\nworld\n", b"\xff\xfe\x00\x01garbage", b"{\"runId\": \"wf_a\", "],
                         ids=["text", "binary", "truncated"])
def test_a_file_that_is_not_json_is_one_problem_and_other_files_still_import(home, tmp_path, kind, content):
    bad = write(tmp_path / "in" / ("wf_bad.json" if kind == "claude-code" else "bad.jsonl"), content)
    good_text = json.dumps(sample_run_doc()) if kind == "claude-code" else jsonl([GOOD[kind](1), GOOD[kind](2)])
    write(tmp_path / "in" / ("wf_good.json" if kind == "claude-code" else "good.jsonl"), good_text)
    summary = run_import(home, kind, [tmp_path / "in"], event_time_us=T0)
    assert summary.files == 2 and summary.imported == (19 if kind == "claude-code" else 2)
    assert [(p.file, p.line, p.field) for p in summary.rejected] == [(str(bad), None, "file")]


def test_an_oversized_file_is_a_problem_not_read(home, tmp_path, monkeypatch):
    path = write(tmp_path / "big.jsonl", jsonl([openai_payload(i) for i in range(20)]))
    monkeypatch.setattr(importers, "MAX_IMPORT_FILE_BYTES", 100)
    summary = run_import(home, "openai", [path])
    assert summary.imported == 0 and [(p.field, p.line) for p in summary.rejected] == [("file", None)]
    assert "larger than 100 bytes" in summary.rejected[0].reason


# ------------------------------------------------------------------------------- idempotency


def _files_of_every_kind(tmp_path: Path) -> dict[str, Path]:
    return {
        "claude-code": write(tmp_path / "runs" / "wf_sample-001.json", json.dumps(sample_run_doc())),
        "openai": write(tmp_path / "openai.jsonl", jsonl([openai_payload(i, cached=i) for i in range(30)])),
        "anthropic": write(tmp_path / "anthropic.json", json.dumps([anthropic_payload(i, read=i) for i in range(20)])),
        "otel": write(tmp_path / "otel.jsonl", jsonl([genai_span(i, otlp=bool(i % 2)) for i in range(25)])),
    }


def test_importing_again_adds_nothing(home, tmp_path):
    files = _files_of_every_kind(tmp_path)
    first = {kind: run_import(home, kind, [path], event_time_us=T0) for kind, path in files.items()}
    ends = log_ends(home)
    again = {kind: run_import(home, kind, [path], event_time_us=T0) for kind, path in files.items()}
    assert log_ends(home) == ends
    for kind in files:
        assert first[kind].imported > 0 and first[kind].rejected == ()
        assert (again[kind].imported, again[kind].duplicates, again[kind].rejected) == (0, first[kind].imported, ())
    assert audit_ok(home)


def test_reimport_beyond_the_emitters_memory_of_recent_ids_adds_nothing(home, tmp_path):
    count = limits.DUPLICATE_WINDOW_EVENTS + 904
    path = write(tmp_path / "many.jsonl", jsonl([openai_payload(i) for i in range(count)]))
    assert run_import(home, "openai", [path]).imported == count
    ends = log_ends(home)
    again = run_import(home, "openai", [path])
    assert (again.imported, again.duplicates) == (0, count) and log_ends(home) == ends


def test_a_repeated_record_within_one_import_counts_once(home, tmp_path):
    path = write(tmp_path / "dup.jsonl", jsonl([openai_payload(1), openai_payload(2), openai_payload(1)]))
    summary = run_import(home, "openai", [path, path])  # the same path twice is read once
    assert (summary.files, summary.imported, summary.duplicates) == (1, 2, 1)


def test_a_changed_source_record_is_a_conflict_not_a_silent_duplicate(home, tmp_path):
    path = write(tmp_path / "u.jsonl", jsonl([openai_payload(1), openai_payload(2)]))
    run_import(home, "openai", [path])
    ends = log_ends(home)
    write(path, jsonl([openai_payload(1), openai_payload(2, prompt=5_000)]))
    summary = run_import(home, "openai", [path])
    assert (summary.imported, summary.duplicates) == (0, 1) and log_ends(home) == ends
    (problem,) = summary.rejected
    assert problem.line == 2 and "different content" in problem.reason


def test_known_keys_given_by_the_caller_are_skipped(home, tmp_path):
    path = write(tmp_path / "u.jsonl", jsonl([openai_payload(1), openai_payload(2)]))
    summary = run_import(home, "openai", [path], known_keys={"openai:chatcmpl-000001"})
    assert (summary.imported, summary.duplicates) == (1, 1)


def test_long_source_ids_get_a_hashed_key_of_bounded_length():
    assert idempotency_key("openai", "abc") == "openai:abc"
    long_key = idempotency_key("openai", "x" * 400)
    assert long_key.startswith("openai:sha256:") and len(long_key) <= limits.MAX_ID_CHARS
    assert long_key == idempotency_key("openai", "x" * 400) != idempotency_key("openai", "x" * 401)


# ------------------------------------------------------------------------------- the pure layer


def test_parse_is_pure_and_deterministic():
    data = json.dumps(sample_run_doc()).encode()
    first = parse("claude-code", data, source="wf.json", event_time_us=T0)
    assert first == parse("claude-code", data.decode(), source="wf.json", event_time_us=T0)
    assert len(first.records) == 19 and first.problems == ()
    assert [r.idempotency_key for r in first.records][:2] == ["wf:wf_sample-001:1", "wf:wf_sample-001:3"]
    assert parse("openai", b"", source="empty.jsonl") == importers.ParseResult((), ())
    with pytest.raises(ValidationError):
        parse("csv", b"", source="x")


def test_workflow_run_parse_keeps_the_reference_defaults_for_missing_text_fields():
    doc = wf_doc("wf_d", [{"type": "workflow_agent", "model": "claude-haiku-4-5", "tokens": 5}], total=5)
    del doc["status"], doc["workflowName"]
    run, problems = parse_workflow_run(doc, source="x")
    assert problems == ()
    assert run == WorkflowRun("wf_d", "", "", 5, (WorkflowAgent(0, "", "", "?", "claude-haiku-4-5", "?", 5, None),))


def test_expand_paths_searches_directories_recursively_and_refuses_missing_paths(tmp_path):
    a = write(tmp_path / "d" / "wf_b.json", "{}")
    b = write(tmp_path / "d" / "sub" / "wf_a.json", "{}")
    write(tmp_path / "d" / "other.json", "{}")
    c = write(tmp_path / "d" / "x.jsonl", "")
    assert expand_paths("claude-code", [tmp_path / "d", a]) == sorted([a, b])
    assert c in expand_paths("openai", [tmp_path / "d"])
    with pytest.raises(ValidationError, match="does not exist"):
        expand_paths("openai", [tmp_path / "nope"])
    empty = write(tmp_path / "e" / "n.txt", "").parent
    with pytest.raises(ValidationError, match="no files"):
        expand_paths("claude-code", [empty])


# ------------------------------------------------------------------------------- the command


runner = CliRunner()


def test_cli_import_registers_its_signer_and_reports_as_table_and_json(tmp_path):
    home = make_home(tmp_path / "home", agents=())
    runs = tmp_path / "runs"
    write(runs / "wf_sample-001.json", json.dumps(sample_run_doc()))
    app = cli_app()
    args = ["import", "claude-code", str(runs), "--home", str(home.path), "--time", fmt_time(T0)]

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "registered signer importer" in first.output and "19" in first.output
    assert home.key_path("importer").exists() and audit_ok(home)

    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)
    assert (result["imported"], result["duplicates"], result["signer_registered"]) == (0, 19, False)
    assert [e.event_time_us for e in events_of(home)][:1] == [T0]


def test_cli_import_exit_codes(tmp_path):
    home = make_home(tmp_path / "home", agents=())
    bad = write(tmp_path / "bad.jsonl", jsonl([openai_payload(1), openai_payload(2, prompt="12.7")]))
    app = cli_app()
    h = ["--home", str(home.path)]

    rejected = runner.invoke(app, ["import", "openai", str(bad), *h])
    assert rejected.exit_code == 1 and "usage.prompt_tokens" in rejected.output and "12.7" in rejected.output
    as_json = runner.invoke(app, ["import", "openai", str(bad), *h, "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["rejected"][0]["line"] == 2

    assert runner.invoke(app, ["import", "csv", str(bad), *h]).exit_code == 2
    assert runner.invoke(app, ["import", "openai", str(tmp_path / "missing.jsonl"), *h]).exit_code == 2
    no_time = runner.invoke(app, ["import", "claude-code", str(write(tmp_path / "wf_a.json", "{}")), *h,
                                  "--signer", "wf-importer"])
    assert no_time.exit_code == 2 and "time" in no_time.output
    assert not home.key_path("wf-importer").exists()  # refused before the signer was registered
    assert runner.invoke(app, ["import", "openai", str(bad), "--home", str(tmp_path / "nohome")]).exit_code == 3


def test_cli_import_help_has_an_example():
    r = runner.invoke(cli_app(), ["import", "--help"])
    assert r.exit_code == 0 and "Example: tokenledger import claude-code runs/" in r.output


def test_cli_import_as_a_revoked_signer_is_refused_and_appends_nothing(tmp_path):
    """Like `emit`, `import` checks the key ring before appending: a revoked signer gets a typed refusal and
    exit 1, never an "imported" count for records every reader would reject."""
    home = make_home(tmp_path / "home", agents=("importer",))
    revoke(home, "importer")
    f = write(tmp_path / "ok.jsonl", jsonl([openai_payload(1)]))
    before = log_ends(home)
    r = runner.invoke(cli_app(), ["import", "openai", str(f), "--home", str(home.path)])
    assert r.exit_code == 1, r.output
    assert "revoked" in r.output
    assert log_ends(home) == before


def test_each_file_reports_its_own_counts(home, tmp_path):
    """Per file: imported, already imported, skipped, rejected (a directory of exports shows where each came from)."""
    write(tmp_path / "in" / "a.jsonl", jsonl([openai_payload(1, 100, 10), openai_payload(2, 100, 10)]))
    second = write(tmp_path / "in" / "b.jsonl", jsonl([openai_payload(2, 100, 10), {"id": "x", "model": "gpt-4.1"}]))
    summary = run_import(home, "openai", [tmp_path / "in"])
    assert [(Path(f.file).name, f.imported, f.duplicates, f.skipped, f.rejected) for f in summary.per_file] == [
        ("a.jsonl", 2, 0, 0, 0), ("b.jsonl", 0, 1, 0, 1)]
    assert (summary.imported, summary.duplicates, len(summary.rejected)) == (2, 1, 1)
    assert summary.to_dict()["per_file"][1] == {"file": str(second), "imported": 0, "duplicates": 1, "skipped": 0,
                                                "rejected": 1}
