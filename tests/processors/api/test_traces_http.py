"""``POST /v1/traces`` over real HTTP on loopback: a real ``tokenledger serve`` process, the real OpenTelemetry SDK
(``TracerProvider``, ``BatchSpanProcessor`` / ``SimpleSpanProcessor``) exporting through the real
``OTLPSpanExporter`` (protobuf, plain and gzip), OTLP/JSON posted with httpx, and the ledger read back: the importer
signer's events decoded from the log, and once the journal's ``events`` view after ``tokenledger run journal
--until-caught-up``.

Every span here is written by the test from the GenAI semantic conventions' attribute names, with its own counts;
each test uses its own traces (the SDK's random ids, or ids of its own for hand-written JSON), so the tests share one
service and home.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.importing import audit_ok, events_of, kinds, log_ends
from support.serving import problem

from ledger import limits
from ledger.sdk.home import Home
from ledger.testing.homes import T0, make_home
from ledger.testing.samples import otlp_attrs
from processors import views
from processors.testing.serve import Served, running_service

PROBLEM = "application/problem+json"
PROTOBUF = "application/x-protobuf"
SKIP_NO_USAGE = "no gen_ai.usage.*_tokens attributes"
NEVER = 600_000  # ms: a BatchSpanProcessor that exports only when flushed (one request for the whole test trace)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = make_home(tmp_path_factory.mktemp("traces") / "home", agents=("alice", "bob"))
    with running_service(home.path) as s:
        yield s


# ------------------------------------------------------------------------------------ spans and requests


def chat(provider: str, model: str, input_tokens: int, output_tokens: int, **more: Any) -> dict[str, Any]:
    """A chat span's GenAI attributes (current names); ``more`` as ``dotted_name=value`` with ``__`` for dots."""
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
             "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens}
    attrs.update({name.replace("__", "."): value for name, value in more.items()})
    return attrs


@contextlib.contextmanager
def sdk(exporter: SpanExporter, *, batch: bool = True, service_name: str = "support-bot") -> Iterator[TracerProvider]:
    """A TracerProvider exporting through ``exporter``: batched (exported only on ``force_flush``, so one trace is one
    request) or one request per ended span."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=NEVER) if batch
                                else SimpleSpanProcessor(exporter))
    try:
        yield provider
    finally:
        provider.shutdown()


def otlp(served: Served, token: str | None = None, **options: Any) -> OTLPSpanExporter:
    """The SDK's OTLP/HTTP exporter pointed at the service, with the bearer token (default: the operator's)."""
    return OTLPSpanExporter(endpoint=served.url + "/v1/traces", headers=served.auth(token), **options)


def recorded(build: Any) -> list[ReadableSpan]:
    """The spans ``build(tracer)`` makes, captured in memory (to post their protobuf encoding ourselves)."""
    memory = InMemorySpanExporter()
    with sdk(memory, batch=False) as provider:
        build(provider.get_tracer("test"))
    return list(memory.get_finished_spans())


def post(served: Served, body: bytes, content_type: str = PROTOBUF, token: str | None = None,
         **headers: str) -> httpx.Response:
    return httpx.post(served.url + "/v1/traces", content=body,
                      headers={**served.auth(token), "Content-Type": content_type, **headers}, timeout=60)


def response(r: httpx.Response) -> ExportTraceServiceResponse:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == PROTOBUF
    return ExportTraceServiceResponse.FromString(r.content)



def trace_hex(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


Call = tuple[str | None, str, str, tuple[int, int, int, int, int]]


def calls_in(home: Home, *traces: str) -> list[Call]:
    """(agent, provider, model, token kinds) of the importer's events of ``traces`` on the log, sorted."""
    return sorted((e.context.agent, e.body.usage.provider, e.body.usage.model, kinds(e.body.usage))
                  for e in events_of(home) if e.context.run in traces)


def calls(served: Served, *traces: str) -> list[Call]:
    return calls_in(_home(served), *traces)


def _home(served: Served) -> Home:
    return Home.open(served.home)


def otlp_json(trace: str, spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> bytes:
    """An OTLP/JSON ExportTraceServiceRequest: hex ids, 64-bit integers as decimal strings, attributes as
    ``[{key, value: {stringValue | intValue}}]``."""
    rendered = [{"traceId": trace, "spanId": s["id"], "parentSpanId": s.get("parent", ""), "name": s["name"],
                 "kind": 3, "startTimeUnixNano": str(T0 * 1000 + i * 1_000_000),
                 "endTimeUnixNano": str(T0 * 1000 + i * 1_000_000 + 500_000), "attributes": otlp_attrs(s["attrs"])}
                for i, s in enumerate(spans)]
    return json.dumps({"resourceSpans": [{"resource": {"attributes": otlp_attrs(resource or {})},
                                          "scopeSpans": [{"scope": {"name": "hand"}, "spans": rendered}]}]}).encode()


# ------------------------------------------------------------------------------------ protobuf through the SDK


def test_sdk_batch_export_lands_each_call_with_its_exact_tokens_under_its_agent(served):
    with sdk(otlp(served)) as provider:
        tracer = provider.get_tracer("planner")
        with tracer.start_as_current_span("invoke_agent planner", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "alice",
                "gen_ai.conversation.id": "conv-7"}) as root:
            with tracer.start_as_current_span("chat gpt-4.1", attributes=chat(
                    "openai", "gpt-4.1", 1_200, 300, gen_ai__response__model="gpt-4.1-2025-04-14",
                    gen_ai__usage__cache_read__input_tokens=200, gen_ai__usage__reasoning__output_tokens=40)):
                pass
            # the legacy provider name and an Anthropic cache write, inside the input per the conventions
            with tracer.start_as_current_span("chat claude", attributes={
                    "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-sonnet-4-6",
                    "gen_ai.usage.input_tokens": 900, "gen_ai.usage.output_tokens": 100,
                    "gen_ai.usage.cache_creation.input_tokens": 50}):
                pass
            with tracer.start_as_current_span("execute_tool search", attributes={
                    "gen_ai.operation.name": "execute_tool"}):
                pass
        with tracer.start_as_current_span("chat gpt-4.1-mini", attributes=chat(
                "openai", "gpt-4.1-mini", 77, 11, gen_ai__agent__name="bob")) as other:
            pass
        assert provider.force_flush(30_000)
    planner, lone = trace_hex(root), trace_hex(other)

    assert calls(served, planner, lone) == [
        ("alice", "anthropic", "claude-sonnet-4-6", (900, 100, 0, 50, 0)),
        ("alice", "openai", "gpt-4.1-2025-04-14", (1_200, 300, 200, 0, 40)),
        ("bob", "openai", "gpt-4.1-mini", (77, 11, 0, 0, 0)),
    ]
    events = [e for e in events_of(_home(served)) if e.context.run == planner]
    assert {dict(e.context.labels)["gen_ai_conversation_id"] for e in events} == {"conv-7"}
    assert {dict(e.context.labels)["service_name"] for e in events} == {"support-bot"}
    assert audit_ok(_home(served))  # signed, chained, the importer registered with the operator's signature

    # readers accept them, attributed: the journal's events view, after the processors catch up
    subprocess.run([sys.executable, "-m", "processors.cli", "run", "journal", "--until-caught-up", "--home",
                    str(served.home)], check=True, capture_output=True, timeout=300)
    rows = views.query(_home(served), "SELECT signer_id, agent, agent_registered, input_tokens, output_tokens, "
                                      "cache_read_tokens, cache_write_tokens, reasoning_tokens FROM events "
                                      f"WHERE run IN ('{planner}', '{lone}') ORDER BY input_tokens").rows
    assert rows == (("importer", "bob", True, 77, 11, 0, 0, 0), ("importer", "alice", True, 900, 100, 0, 50, 0),
                    ("importer", "alice", True, 1_200, 300, 200, 0, 40))


def test_per_span_export_and_gzip_through_the_sdk(served):
    exporter = otlp(served, compression=Compression.Gzip)
    with sdk(exporter, batch=False) as provider:  # one request per ended span, gzip-compressed by the exporter
        tracer = provider.get_tracer("writer")
        with tracer.start_as_current_span("chat", attributes=chat(
                "openai", "gpt-4.1", 4_321, 123, gen_ai__agent__name="bob")) as first:
            pass
        with tracer.start_as_current_span("embeddings", attributes={
                "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-small", "gen_ai.usage.input_tokens": 64,
                "gen_ai.agent.name": "alice"}) as second:
            pass
    assert calls(served, trace_hex(first), trace_hex(second)) == [
        ("alice", "openai", "text-embedding-3-small", (64, 0, 0, 0, 0)),
        ("bob", "openai", "gpt-4.1", (4_321, 123, 0, 0, 0)),
    ]


# ------------------------------------------------------------------------------------ OTLP/JSON


def test_otlp_json_posted_by_hand_is_imported_and_answered_in_json(served):
    trace = "4a" * 16
    body = otlp_json(trace, [
        {"id": "1" * 16, "name": "invoke_agent researcher", "attrs": {"gen_ai.agent.name": "bob"}},
        {"id": "2" * 16, "parent": "1" * 16, "name": "chat",
         "attrs": chat("anthropic", "claude-haiku-4-5", 800, 50, gen_ai__usage__cache_read__input_tokens=100,
                       gen_ai__usage__total_tokens=850)},
        # legacy names (prompt / completion) of an older instrumentation
        {"id": "3" * 16, "parent": "1" * 16, "name": "chat",
         "attrs": {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.prompt_tokens": 31,
                   "gen_ai.usage.completion_tokens": 7}},
    ], resource={"service.name": "hand-written"})
    r = post(served, body, "application/json; charset=utf-8")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    # the invoke_agent span has no usage: skipped (accepted), so a warning with nothing rejected
    partial = r.json()["partialSuccess"]
    assert partial.get("rejectedSpans", "0") in ("0", 0)
    assert partial["errorMessage"] == f"1 skipped (accepted, nothing to record): 1 x {SKIP_NO_USAGE}: not an LLM " \
                                      "call (an HTTP, tool or agent span)"
    assert calls(served, trace) == [("bob", "anthropic", "claude-haiku-4-5", (800, 50, 100, 0, 0)),
                                    ("bob", "openai", "gpt-4o", (31, 7, 0, 0, 0))]


def test_json_partial_success_counts_the_rejected_spans_and_says_why(served):
    trace = "5b" * 16
    body = otlp_json(trace, [
        {"id": "1" * 16, "name": "chat", "attrs": chat("openai", "gpt-4.1", 10, 2, gen_ai__agent__name="alice")},
        # a count that is not an integer is never read as 0 or rounded: the span is rejected
        {"id": "2" * 16, "name": "chat", "attrs": {**chat("openai", "gpt-4.1", 0, 2, gen_ai__agent__name="alice"),
                                                   "gen_ai.usage.input_tokens": "12.5"}},
    ])
    r = post(served, body, "application/json")
    partial = r.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    field = "resourceSpans[0].scopeSpans[0].spans[1].attributes.gen_ai.usage.input_tokens"
    assert partial["errorMessage"].startswith(f"1 rejected: {field}='12.5': ")
    assert calls(served, trace) == [("alice", "openai", "gpt-4.1", (10, 2, 0, 0, 0))]


# ------------------------------------------------------------------------------------ idempotency, partial success


def test_re_export_appends_nothing(served):
    spans = recorded(lambda t: [t.start_span("chat", attributes=chat("openai", "gpt-4.1", 555, 44,
                                                                      gen_ai__agent__name="alice")).end()
                                for _ in range(3)])
    body = encode_spans(spans).SerializeToString()
    first = response(post(served, body))
    assert not first.HasField("partial_success")
    ends = log_ends(_home(served))
    again = response(post(served, body))  # the exporter's retry, or a collector replaying its queue
    assert again == first and log_ends(_home(served)) == ends
    traces = {trace_hex(s) for s in spans}
    assert calls(served, *traces) == [("alice", "openai", "gpt-4.1", (555, 44, 0, 0, 0))] * 3
    # gzip-compressed, the same request is the same spans
    assert response(post(served, gzip.compress(body), **{"Content-Encoding": "gzip"})) == first
    assert log_ends(_home(served)) == ends


def test_protobuf_partial_success_rejects_and_skips_with_reasons(served):
    def build(tracer: Any) -> None:
        tracer.start_span("chat ok", attributes=chat("openai", "gpt-4.1", 300, 30, gen_ai__agent__name="bob")).end()
        # cache read above the input with no total to tell which convention: not guessed
        tracer.start_span("chat bad", attributes=chat("anthropic", "claude-sonnet-4-6", 10, 5,
                                                      gen_ai__usage__cache_read__input_tokens=400,
                                                      gen_ai__agent__name="bob")).end()
        tracer.start_span("GET /search", attributes={"http.request.method": "GET"}).end()
    spans = recorded(build)
    got = response(post(served, encode_spans(spans).SerializeToString()))
    assert got.partial_success.rejected_spans == 1
    message = got.partial_success.error_message
    assert message.startswith("1 rejected: resourceSpans[0].scopeSpans[0].spans[1].attributes.gen_ai.usage."
                              "cache_read.input_tokens=400: cache read (400) + cache creation (0) tokens are parts of")
    assert message.endswith(f" | 1 skipped (accepted, nothing to record): 1 x {SKIP_NO_USAGE}: not an LLM call (an "
                            "HTTP, tool or agent span)")
    assert calls(served, *{trace_hex(s) for s in spans}) == [("bob", "openai", "gpt-4.1", (300, 30, 0, 0, 0))]


# ------------------------------------------------------------------------------------ who may import what


def test_an_agent_token_imports_its_own_and_unattributed_spans_only(served):
    token = served.token("alice", scopes=("ingest",))

    def build(tracer: Any) -> None:
        tracer.start_span("mine", attributes=chat("openai", "gpt-4.1", 100, 10, gen_ai__agent__name="alice")).end()
        tracer.start_span("nobody's", attributes=chat("openai", "gpt-4.1", 200, 20)).end()
        tracer.start_span("bob's", attributes=chat("openai", "gpt-4.1", 300, 30, gen_ai__agent__name="bob")).end()
    spans = recorded(build)
    got = response(post(served, encode_spans(spans).SerializeToString(), token=token))
    assert got.partial_success.rejected_spans == 1
    assert got.partial_success.error_message == (
        "1 rejected: resourceSpans[0].scopeSpans[0].spans[2].agent='bob': the span is attributed to agent 'bob', and "
        "this token imports only agent 'alice''s spans (or unattributed ones, as 'alice''s)")
    assert calls(served, *{trace_hex(s) for s in spans}) == [("alice", "openai", "gpt-4.1", (100, 10, 0, 0, 0)),
                                                             ("alice", "openai", "gpt-4.1", (200, 20, 0, 0, 0))]
    # the same spans through the SDK's exporter with that token: the two imported are already there
    ends = log_ends(_home(served))
    assert otlp(served, token).export(spans) is SpanExportResult.SUCCESS
    assert log_ends(_home(served)) == ends

    reader = served.token("alice", scopes=("read",))
    problem(post(served, encode_spans(spans).SerializeToString(), token=reader), 403, "missing_scope")


def test_without_a_valid_token_nothing_is_read_or_appended(served):
    spans = recorded(lambda t: t.start_span("chat", attributes=chat("openai", "gpt-4.1", 9, 1)).end())
    body = encode_spans(spans).SerializeToString()
    ends = log_ends(_home(served))
    r = httpx.post(served.url + "/v1/traces", content=body, headers={"Content-Type": PROTOBUF})
    assert problem(r, 401, "unauthorized") and r.headers["www-authenticate"] == "Bearer"
    problem(post(served, body, token="tlk_000000000000_" + "A" * 43), 401, "unauthorized")
    # the token is checked first: an unauthenticated caller learns nothing about what the endpoint reads
    r = httpx.post(served.url + "/v1/traces", content=b"x", headers={"Content-Type": "text/plain"})
    problem(r, 401, "unauthorized")
    # the SDK's exporter without the header: its export fails (401 is not retried)
    bare = OTLPSpanExporter(endpoint=served.url + "/v1/traces", timeout=30)
    assert bare.export(spans) is SpanExportResult.FAILURE
    assert log_ends(_home(served)) == ends and calls(served, trace_hex(spans[0])) == []


# ------------------------------------------------------------------------------------ what is refused whole


def test_other_content_types_and_encodings_are_415(served):
    body = encode_spans(recorded(lambda t: t.start_span("chat").end())).SerializeToString()
    got = problem(post(served, body, "text/plain"), 415, "unsupported_media_type")
    assert got["field"] == "Content-Type" and got["value"] == "text/plain"
    problem(post(served, body, "application/protobuf+json"), 415, "unsupported_media_type")
    got = problem(post(served, body, **{"Content-Encoding": "deflate"}), 415, "unsupported_content_encoding")
    assert got["field"] == "Content-Encoding" and got["value"] == "deflate"


@pytest.mark.parametrize(("content_type", "body", "field"), [
    (PROTOBUF, b"\xff\xfe not a protobuf message", "body"),
    (PROTOBUF, b'{"resourceSpans": []}', "body"),  # JSON sent as protobuf
    ("application/json", b'{"resourceSpans": [', "body"),
    ("application/json", b"[]", "body"),
    ("application/json", b'{"resourceSpans": {"scopeSpans": []}}', "body.resourceSpans"),
])
def test_an_undecodable_body_is_400_naming_it(served, content_type, body, field):
    ends = log_ends(_home(served))
    got = problem(post(served, body, content_type), 400, "invalid_field")
    assert got["field"] == field
    assert log_ends(_home(served)) == ends


def test_gzip_that_is_not_gzip_or_is_truncated_is_400(served):
    body = gzip.compress(encode_spans(recorded(lambda t: t.start_span("chat").end())).SerializeToString())
    for bad, reason in ((b"plainly not gzip", "is not gzip"), (body[:-6], "is truncated gzip"),
                        (body + b"trailing", "is not gzip")):
        got = problem(post(served, bad, **{"Content-Encoding": "gzip"}), 400, "invalid_field")
        assert got["field"] == "body" and got["reason"].startswith(reason + " (Content-Encoding: gzip)")


def test_a_body_over_the_limit_is_413_as_sent_or_decompressed(served):
    # a gzip bomb: ~20 KB on the wire, one byte more than the limit once decompressed
    bomb = gzip.compress(b"\x00" * (limits.MAX_OTLP_BODY_BYTES + 1))
    assert len(bomb) < limits.MAX_OTLP_BODY_BYTES // 100
    got = problem(post(served, bomb, **{"Content-Encoding": "gzip"}), 413, "oversized")
    assert got["limit"] == limits.MAX_OTLP_BODY_BYTES
    # exactly the limit decompressed is read (and is not a request: 400, not 413)
    exact = gzip.compress(b"\x00" * limits.MAX_OTLP_BODY_BYTES)
    problem(post(served, exact, **{"Content-Encoding": "gzip"}), 400, "invalid_field")

    # a declared length over the limit is refused before the body is read
    url = urlsplit(served.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: {PROTOBUF}\r\n"
                     f"Authorization: Bearer {served.operator_token}\r\n"
                     f"Content-Length: {limits.MAX_OTLP_BODY_BYTES + 1}\r\n\r\n".encode())
        head = sock.recv(65_536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413 ")


# ------------------------------------------------------------------------------------ concurrency, restarts


def test_concurrent_exports_of_the_same_and_other_spans_land_exactly_once(served):
    spans = recorded(lambda t: [t.start_span("chat", attributes=chat("openai", "gpt-4.1", 1_000 + i, i,
                                                                      gen_ai__agent__name="bob")).end()
                                for i in range(6)])
    same = encode_spans(spans[:2]).SerializeToString()
    bodies = [same] * 4 + [encode_spans([s]).SerializeToString() for s in spans[2:]]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        answers = list(pool.map(lambda body: response(post(served, body)), bodies))
    assert all(not a.HasField("partial_success") for a in answers)
    assert calls(served, *{trace_hex(s) for s in spans}) == [
        ("bob", "openai", "gpt-4.1", (1_000 + i, i, 0, 0, 0)) for i in range(6)]


def test_a_restarted_service_knows_what_it_imported_and_a_second_one_waits_its_turn(tmp_path):
    home = make_home(tmp_path / "home", agents=("alice",))
    spans = recorded(lambda t: t.start_span("chat", attributes=chat("anthropic", "claude-opus-4-1", 64, 16,
                                                                     gen_ai__agent__name="alice")).end())
    body = encode_spans(spans).SerializeToString()
    with running_service(home.path) as first:
        assert not response(post(first, body)).HasField("partial_success")
        ends = log_ends(home)
        # a second instance on the home: the first holds the importer's chain, so exports there are turned away
        # with a retry hint (a collector retries 503), never signed on a second chain
        with running_service(home.path) as second:
            r = post(second, body)
            assert problem(r, 503, "importer_busy")["detail"] and r.headers["retry-after"] == "5"
        assert log_ends(home) == ends
    with running_service(home.path) as again:  # a new process: the keys are read back from the log
        assert not response(post(again, body)).HasField("partial_success")
    assert log_ends(home) == ends
    assert calls_in(home, trace_hex(spans[0])) == [("alice", "anthropic", "claude-opus-4-1", (64, 16, 0, 0, 0))]
