"""The OpenTelemetry GenAI importer: OTLP/JSON and OTLP protobuf files, current and legacy attribute names, the
cache rule, aggregate spans, and attribution to agents.

Method: every trace is written here from a small spec of spans (ids, parent, name, attributes), rendered once as
OTLP/JSON (hex ids, attributes as ``[{key, value: {intValue: "..."}}]``) and once as an ``ExportTraceServiceRequest``
built with the opentelemetry-proto classes, so the two encodings are independent renderings of one trace. Files
are imported through ``import_files`` into a real home with a real SQLite log and read back from the log.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from support.importing import audit_ok, events_of, import_runner, importer_home, kinds, log_ends, write

from ledger.sdk.home import Home
from ledger.sources import otel
from ledger.sources.importers import expand_paths, parse
from ledger.testing.homes import T0
from ledger.testing.samples import jsonl, otlp_attrs

TRACE = 0xA1


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return importer_home(tmp_path, backfill=True)  # as `tokenledger import` registers its signer


run_import = import_runner("otel")


def total(events: list[Any]) -> int:
    return sum(e.body.usage.input_tokens + e.body.usage.output_tokens for e in events)


# ------------------------------------------------------------------------------- one trace, two encodings


@dataclass
class S:
    """One span of a test trace."""

    span: int
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    parent: int | None = None
    trace: int = TRACE

    def start_ns(self) -> int:
        return T0 * 1000 + self.span * 1_000_000 + 7  # a nanosecond tail: floored to microseconds

    def as_json(self) -> dict[str, Any]:
        return {"traceId": f"{self.trace:032x}", "spanId": f"{self.span:016x}",
                "parentSpanId": "" if self.parent is None else f"{self.parent:016x}", "name": self.name, "kind": 3,
                "startTimeUnixNano": str(self.start_ns()), "endTimeUnixNano": str(self.start_ns() + 5_000_000),
                "attributes": otlp_attrs(self.attrs)}

    def as_proto(self) -> Span:
        span = Span(trace_id=bytes.fromhex(f"{self.trace:032x}"), span_id=bytes.fromhex(f"{self.span:016x}"),
                    name=self.name, kind=Span.SpanKind.SPAN_KIND_CLIENT, start_time_unix_nano=self.start_ns(),
                    end_time_unix_nano=self.start_ns() + 5_000_000, attributes=proto_attrs(self.attrs))
        if self.parent is not None:
            span.parent_span_id = bytes.fromhex(f"{self.parent:016x}")
        return span


def proto_attrs(attrs: dict[str, Any]) -> list[KeyValue]:
    out = []
    for key, value in attrs.items():
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=value)
        out.append(KeyValue(key=key, value=any_value))
    return out


def export_json(spans: list[S], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {"attributes": otlp_attrs(resource or {})},
                               "scopeSpans": [{"scope": {"name": "genai-test"},
                                               "spans": [s.as_json() for s in spans]}]}]}


def export_proto(spans: list[S], resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans: ResourceSpans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(proto_attrs(resource or {}))
    scope: ScopeSpans = resource_spans.scope_spans.add()
    scope.scope.name = "genai-test"
    scope.spans.extend(s.as_proto() for s in spans)
    return request


def framed(*requests: ExportTraceServiceRequest) -> bytes:
    """What the collector's file exporter writes with ``format: proto``: each request after its uint32 length."""
    out = b""
    for request in requests:
        data = request.SerializeToString()
        out += len(data).to_bytes(4, "big") + data
    return out


def chat(span: int, input_tokens: int, output_tokens: int, parent: int | None = None, **more: Any) -> S:
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4.1",
             "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens}
    attrs.update({k.replace("__", "."): v for k, v in more.items()})
    return S(span, "chat gpt-4.1", {k: v for k, v in attrs.items() if v is not None}, parent)


# ------------------------------------------------------------------------------- OTLP/JSON


def test_an_otlp_json_export_imports_every_kind_exactly_and_once(home, tmp_path):
    spans = [
        S(1, "invoke_agent planner", {"gen_ai.operation.name": "invoke_agent"}),
        chat(2, 5_000, 700, parent=1, gen_ai__usage__cache_read__input_tokens=3_000,
             gen_ai__usage__cache_creation__input_tokens=1_200, gen_ai__usage__reasoning__output_tokens=400,
             gen_ai__response__model="gpt-4.1-2025-04-14", gen_ai__conversation__id="conv-7"),
        chat(3, 640, 0, parent=1, gen_ai__operation__name="embeddings", gen_ai__usage__output_tokens=None,
             gen_ai__request__model="text-embedding-3-small"),
        S(4, "GET /search", {"http.request.method": "GET"}, parent=2),
    ]
    path = write(tmp_path / "trace.json", json.dumps(export_json(spans, {"service.name": "planner-svc"})))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected) == (2, ())
    assert [(p.line, p.field) for p in summary.skipped] == [
        (None, "resourceSpans[0].scopeSpans[0].spans[0]"), (None, "resourceSpans[0].scopeSpans[0].spans[3]")]
    assert all("not an LLM call" in p.reason for p in summary.skipped)
    first, second = events_of(home)
    assert kinds(first.body.usage) == (5_000, 700, 3_000, 1_200, 400)
    assert (first.body.usage.provider, first.body.usage.model) == ("openai", "gpt-4.1-2025-04-14")
    assert kinds(second.body.usage) == (640, 0, 0, 0, 0) and second.body.usage.model == "text-embedding-3-small"
    assert first.idempotency_key == f"otel:{TRACE:032x}:{2:016x}" and first.context.run == f"{TRACE:032x}"
    assert first.event_time_us == T0 + 2_000  # 2 ms after T0, the nanosecond tail floored
    assert dict(first.context.labels) == {"source": "otel", "span_name": "chat gpt-4.1", "gen_ai_operation": "chat",
                                          "service_name": "planner-svc", "gen_ai_conversation_id": "conv-7"}

    ends = log_ends(home)
    again = run_import(home, [path])
    assert (again.imported, again.duplicates, again.rejected) == (0, 2, ()) and log_ends(home) == ends
    assert audit_ok(home)


def test_legacy_attribute_names_are_read_the_920_tokens_that_were_skipped(home, tmp_path):
    """An instrumentation still on the older names (prompt/completion tokens, gen_ai.system, the flat cache names):
    the old importer looked only for input/output_tokens and skipped these spans as "not an LLM call"."""
    legacy = {"gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
              "gen_ai.request.model": "claude-sonnet-4-6"}
    spans = [S(10, "chat", legacy | {"gen_ai.usage.prompt_tokens": 800, "gen_ai.usage.completion_tokens": 120,
                                     "gen_ai.usage.cache_read_input_tokens": 500,
                                     "gen_ai.usage.cache_creation_input_tokens": 100}),
             S(11, "chat", legacy | {"gen_ai.usage.prompt_tokens": 50, "gen_ai.usage.input_tokens": 50,
                                     "gen_ai.usage.completion_tokens": 9})]
    path = write(tmp_path / "legacy.jsonl", jsonl([s.as_json() for s in spans]))

    summary = run_import(home, [path])

    assert (summary.imported, summary.skipped, summary.rejected) == (2, (), ())
    first, second = events_of(home)
    assert kinds(first.body.usage) == (800, 120, 500, 100, 0) and first.body.usage.provider == "anthropic"
    assert first.body.usage.input_tokens + first.body.usage.output_tokens == 920
    assert kinds(second.body.usage) == (50, 9, 0, 0, 0)  # both names, one value: read once


def test_a_current_and_a_legacy_name_that_disagree_are_a_problem_not_a_pick(home, tmp_path):
    good, bad = chat(1, 100, 10), chat(2, 100, 10, gen_ai__usage__prompt_tokens=120)
    path = write(tmp_path / "spans.jsonl", jsonl([good.as_json(), bad.as_json()]))
    summary = run_import(home, [path])
    assert summary.imported == 1
    (problem,) = summary.rejected
    assert (problem.line, problem.field, problem.value) == (2, "attributes.gen_ai.usage.prompt_tokens", "120")
    assert "differs from gen_ai.usage.input_tokens (100)" in problem.reason


# ------------------------------------------------------------------------------- the cache rule


def test_the_cache_rule_inclusive_by_convention_exclusive_only_when_a_total_proves_it(home, tmp_path):
    anthropic = {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4-6"}
    spans = [
        # the conventions: cache parts inside input_tokens
        chat(1, 10_000, 200, gen_ai__usage__cache_read__input_tokens=9_000),
        # Anthropic's input_tokens (cache outside), and a total that says so: 300 + 9,000 + 600 + 200
        S(2, "chat", anthropic | {"gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 200,
                                  "gen_ai.usage.cache_read.input_tokens": 9_000,
                                  "gen_ai.usage.cache_creation.input_tokens": 600,
                                  "gen_ai.usage.total_tokens": 10_100}),
        # the same without a total: the cache cannot be inside 300 input tokens, and is not guessed to be outside
        S(3, "chat", anthropic | {"gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 200,
                                  "gen_ai.usage.cache_read.input_tokens": 9_000}),
        # a total that fits neither reading
        chat(4, 1_000, 100, gen_ai__usage__cache_read__input_tokens=400, gen_ai__usage__total_tokens=1_000),
        # reasoning is part of output
        chat(5, 1_000, 100, gen_ai__usage__reasoning__output_tokens=101),
    ]
    path = write(tmp_path / "cache.jsonl", jsonl([s.as_json() for s in spans]))

    summary = run_import(home, [path])

    assert summary.imported == 2
    assert [(p.line, p.field) for p in summary.rejected] == [
        (3, "attributes.gen_ai.usage.cache_read.input_tokens"), (4, "attributes.gen_ai.usage.total_tokens"),
        (5, "attributes.gen_ai.usage.reasoning.output_tokens")]
    assert "cannot exceed" in summary.rejected[0].reason and "not guessed" in summary.rejected[0].reason
    inclusive, exclusive = events_of(home)
    assert kinds(inclusive.body.usage) == (10_000, 200, 9_000, 0, 0)
    assert kinds(exclusive.body.usage) == (9_900, 200, 9_000, 600, 0)
    assert dict(exclusive.context.labels)["input_tokens_reported"] == "without_cache"
    assert "input_tokens_reported" not in dict(inclusive.context.labels)


# ------------------------------------------------------------------------------- aggregates


def agent_trace(aggregate_input: int = 2_000, aggregate_output: int = 1_000) -> list[S]:
    """An invoke_agent span reporting its run's totals over its three chat calls (3,000 tokens in all), one of
    them under a tool span."""
    return [
        S(1, "invoke_agent researcher", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher",
                                         "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4.1",
                                         "gen_ai.usage.input_tokens": aggregate_input,
                                         "gen_ai.usage.output_tokens": aggregate_output}),
        chat(2, 1_200, 300, parent=1),
        S(3, "execute_tool search", {"gen_ai.operation.name": "execute_tool"}, parent=1),
        chat(4, 500, 400, parent=3),
        chat(5, 300, 300, parent=1),
    ]


def test_an_aggregate_span_is_not_counted_beside_its_children(home, tmp_path):
    """The issue's case: before, the invoke_agent span's 3,000 tokens were recorded on top of its children's
    3,000 (6,000 for a 3,000-token run); now its children alone are recorded and it is listed as an aggregate."""
    spans = agent_trace()
    assert sum(s.attrs.get("gen_ai.usage.input_tokens", 0) + s.attrs.get("gen_ai.usage.output_tokens", 0)
               for s in spans) == 6_000
    path = write(tmp_path / "run.json", json.dumps(export_json(spans)))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected) == (3, ())
    events = events_of(home)
    assert total(events) == 3_000
    assert [e.context.agent for e in events] == ["researcher"] * 3  # the invoke_agent span above each call
    assert sorted(kinds(e.body.usage) for e in events) == [(300, 300, 0, 0, 0), (500, 400, 0, 0, 0),
                                                           (1_200, 300, 0, 0, 0)]
    aggregate = [p for p in summary.skipped if "aggregate" in p.reason]
    assert [(p.field, p.reason) for p in aggregate] == [
        ("resourceSpans[0].scopeSpans[0].spans[0]", "aggregate of 3 child spans (totals match)")]
    assert [p.field for p in summary.skipped if p not in aggregate] == ["resourceSpans[0].scopeSpans[0].spans[2]"]


def test_an_aggregate_whose_totals_differ_is_a_problem_and_still_not_counted(home, tmp_path):
    path = write(tmp_path / "run.jsonl", jsonl([s.as_json() for s in agent_trace(aggregate_input=2_500)]))

    summary = run_import(home, [path])

    assert summary.imported == 3 and total(events_of(home)) == 3_000
    (problem,) = summary.rejected
    assert (problem.line, problem.field) == (1, "attributes")
    assert f"span {1:016x} is an aggregate of 3 child spans" in problem.reason
    assert "(input_tokens 2,500, output_tokens 1,000)" in problem.reason
    assert "(input_tokens 2,000, output_tokens 1,000)" in problem.reason


def test_nested_aggregates_are_each_checked_against_the_calls_beneath_them():
    spans = [S(1, "invoke_agent lead", {"gen_ai.agent.name": "lead", "gen_ai.request.model": "gpt-4.1",
                                        "gen_ai.usage.input_tokens": 1_700, "gen_ai.usage.output_tokens": 200}),
             S(2, "invoke_agent helper", {"gen_ai.agent.name": "helper", "gen_ai.request.model": "gpt-4.1",
                                          "gen_ai.usage.input_tokens": 700, "gen_ai.usage.output_tokens": 200},
               parent=1),
             chat(3, 400, 100, parent=2), chat(4, 300, 100, parent=2), chat(5, 1_000, 0, parent=1)]
    result = parse("otel", jsonl([s.as_json() for s in spans]), source="nested.jsonl")
    assert result.problems == ()
    assert [r.idempotency_key[-1] for r in result.records] == ["3", "4", "5"]
    assert [(p.line, p.reason) for p in result.skipped] == [(1, "aggregate of 3 child spans (totals match)"),
                                                            (2, "aggregate of 2 child spans (totals match)")]
    assert all(type(r) is otel.ImportRecord for r in result.records)  # the file pass hands back plain records


# ------------------------------------------------------------------------------- attribution


def test_calls_are_attributed_to_the_agent_named_on_the_span_or_its_nearest_ancestor():
    spans = [
        S(1, "invoke_agent planner", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner",
                                      "gen_ai.agent.id": "agt_planner_01", "gen_ai.conversation.id": "conv-1"}),
        chat(2, 1_000, 100, parent=1),
        S(3, "invoke_agent writer", {"gen_ai.agent.name": "writer"}, parent=1),
        S(4, "execute_tool draft", {"gen_ai.operation.name": "execute_tool"}, parent=3),
        chat(5, 2_000, 500, parent=4),  # the nearest agent above it is the writer, not the planner
        chat(6, 300, 30, parent=3, gen_ai__agent__name="critic"),  # its own name wins
        chat(7, 40, 4, parent=3, gen_ai__agent__id="agt_editor_02"),  # an id when it has no name
        S(8, "invoke_agent", {"gen_ai.agent.id": "agt_solo_03"}, trace=0xB2),
        S(9, "chat", chat(9, 70, 7).attrs, parent=8, trace=0xB2),  # another trace, its own agent
        chat(10, 5, 5),  # no agent anywhere in its lineage, nor on its resource
    ]
    result = parse("otel", json.dumps(export_json(spans)), source="agents.json")

    assert result.problems == ()
    by_agent: Counter[str | None] = Counter()
    for r in result.records:
        by_agent[r.agent] += r.body.usage.input_tokens + r.body.usage.output_tokens
    assert by_agent == {"planner": 1_100, "writer": 2_500, "critic": 330, "agt_editor_02": 44, "agt_solo_03": 77,
                        None: 10}
    labels = {r.idempotency_key[-2:]: dict(r.context.labels) for r in result.records}
    assert labels["02"]["gen_ai_agent_id"] == "agt_planner_01" and labels["02"]["gen_ai_conversation_id"] == "conv-1"
    assert "gen_ai_agent_id" not in labels["05"]  # the writer's span carries no id
    assert labels["05"]["gen_ai_conversation_id"] == "conv-1"  # the nearest conversation id, two levels up


def test_the_resource_names_the_agent_when_no_span_does_and_spans_across_lines_are_one_tree():
    lines = [export_json([S(1, "invoke_agent", {"gen_ai.agent.name": "triage"})]),
             export_json([chat(2, 100, 10, parent=1)], {"service.name": "svc", "gen_ai.agent.name": "svc-agent"}),
             export_json([chat(3, 200, 20)], {"gen_ai.agent.name": "svc-agent"})]
    result = parse("otel", jsonl(lines), source="lines.jsonl")
    assert result.problems == ()
    assert [(r.line, r.agent) for r in result.records] == [(2, "triage"), (3, "svc-agent")]


def test_a_loop_in_parent_links_or_a_bad_ancestor_name_is_a_problem_of_the_span():
    spans = [chat(1, 10, 1, parent=2), chat(2, 10, 1, parent=1),
             S(3, "invoke_agent", {"gen_ai.agent.name": 42}), chat(4, 10, 1, parent=3), chat(5, 10, 1),
             S(6, "invoke_agent", {"gen_ai.agent.name": "lost"}), chat(7, 10, 1, parent=6)]
    lines = [s.as_json() for s in spans]
    lines[5]["parentSpanId"] = "not-a-span-id"  # a span without usage: a skip, but its link is unreadable
    result = parse("otel", jsonl(lines), source="loop.jsonl")
    assert [r.line for r in result.records] == [5]
    assert [(p.line, p.field) for p in result.problems] == [
        (1, "parentSpanId"), (2, "parentSpanId"), (4, "span 0000000000000003 (line 3) attributes.gen_ai.agent.name"),
        (7, "parentSpanId")]
    assert "loop" in result.problems[0].reason and "must be a string" in result.problems[2].reason
    assert "does not read" in result.problems[3].reason


# ------------------------------------------------------------------------------- protobuf


def test_a_protobuf_export_gives_the_same_records_as_its_otlp_json_twin(home, tmp_path):
    spans = [*agent_trace(), chat(6, 900, 90, gen_ai__usage__cache_read__input_tokens=100,
                                  gen_ai__response__model="gpt-4.1-2025-04-14")]
    resource = {"service.name": "agents"}
    as_json = json.dumps(export_json(spans, resource)).encode()
    as_proto = export_proto(spans, resource).SerializeToString()
    assert as_proto[:1] == b"\x0a" and as_proto != as_json

    from_json = parse("otel", as_json, source="trace")
    from_proto = parse("otel", as_proto, source="trace")
    assert from_proto == from_json and len(from_proto.records) == 4 and from_proto.problems == ()

    summary = run_import(home, [write(tmp_path / "trace.binpb", as_proto)])
    assert (summary.imported, summary.rejected) == (4, ())
    assert [kinds(e.body.usage) for e in events_of(home)] == [
        (1_200, 300, 0, 0, 0), (500, 400, 0, 0, 0), (300, 300, 0, 0, 0), (900, 90, 100, 0, 0)]
    # the JSON twin is the same events: importing it appends nothing
    ends = log_ends(home)
    again = run_import(home, [write(tmp_path / "trace.json", as_json)])
    assert (again.imported, again.duplicates, again.rejected) == (0, 4, ()) and log_ends(home) == ends


def test_the_collector_file_exporters_length_prefixed_protobuf_is_read(home, tmp_path):
    first, second = [chat(1, 100, 10), chat(2, 200, 20)], [chat(3, 300, 30, gen_ai__agent__name="late")]
    path = write(tmp_path / "export" / "traces.pb", framed(export_proto(first), export_proto(second)))
    assert expand_paths("otel", [tmp_path / "export"]) == [path]  # *.pb is searched for in a directory

    summary = run_import(home, [tmp_path / "export"])

    assert (summary.imported, summary.rejected) == (3, ())
    assert [kinds(e.body.usage)[:2] for e in events_of(home)] == [(100, 10), (200, 20), (300, 30)]
    twin = parse("otel", jsonl([export_json(first), export_json(second)]), source="x")
    records = parse("otel", path.read_bytes(), source="x").records
    assert [(r.idempotency_key, r.body, r.context, r.agent) for r in records] == [
        (r.idempotency_key, r.body, r.context, r.agent) for r in twin.records]
    assert [r.path for r in records] == ["message[0].resourceSpans[0].scopeSpans[0].spans[0]",
                                         "message[0].resourceSpans[0].scopeSpans[0].spans[1]",
                                         "message[1].resourceSpans[0].scopeSpans[0].spans[0]"]


def test_a_malformed_span_in_protobuf_is_reported_at_its_path(home, tmp_path):
    spans = [chat(1, 100, 10), chat(2, 100, 10, gen_ai__usage__input_tokens=-5), chat(3, 50, 5)]
    spans[2].attrs["gen_ai.usage.output_tokens"] = 1.5  # a double where a count belongs
    path = write(tmp_path / "bad.binpb", export_proto(spans).SerializeToString())

    summary = run_import(home, [path])

    assert summary.imported == 1
    assert [(p.line, p.field, p.value) for p in summary.rejected] == [
        (None, "resourceSpans[0].scopeSpans[0].spans[1].attributes.gen_ai.usage.input_tokens", "-5"),
        (None, "resourceSpans[0].scopeSpans[0].spans[2].attributes.gen_ai.usage.output_tokens", "1.5")]


@pytest.mark.parametrize("content", [
    b"\x0a\xff\xff\xff\xff\x0f",  # a length running past the end
    b"\x00\x00\x00\x09\x0a\x02\x0a",  # a frame longer than the file
    bytes(range(256)),
    b"plain text, not telemetry\n",
], ids=["truncated-bare", "truncated-frame", "binary", "text"])
def test_a_file_that_is_neither_otlp_json_nor_protobuf_is_one_problem(home, tmp_path, content):
    bad = write(tmp_path / "in" / "bad.otlp", content)
    write(tmp_path / "in" / "good.jsonl", jsonl([chat(1, 10, 1).as_json()]))
    summary = run_import(home, [tmp_path / "in"])
    assert summary.imported == 1
    (problem,) = summary.rejected
    assert (problem.file, problem.line, problem.field) == (str(bad), None, "file")
    assert "neither OTLP/JSON" in problem.reason and "nor OTLP protobuf" in problem.reason


def test_a_framed_file_with_one_bad_message_keeps_the_others(home, tmp_path):
    good = export_proto([chat(1, 10, 1)]).SerializeToString()
    bad = b"\x0a\x05\x12\x03abc\x12\x00"  # resource_spans, then a field the request does not have
    data = len(good).to_bytes(4, "big") + good + len(bad).to_bytes(4, "big") + bad
    summary = run_import(home, [write(tmp_path / "t.pb", data)])
    assert summary.imported == 1
    assert [(p.line, p.field) for p in summary.rejected] == [(None, "message[1]")]
