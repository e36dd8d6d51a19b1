"""Battery, class "telemetry files": the importers (`tokenledger import`, ``import_files``) refuse bad files.

Each case writes one file holding only bad input and imports it through a real emitter on a real home.
Asserted: nothing is imported and no topic of the log grows; the import does not raise; the summary
has a problem naming the field (a JSON path, ``line`` or ``file``) and showing the offending value.
A few cases go through the CLI too (exit 1, the field and value in the output). An empty file is not
bad input: it imports nothing and reports nothing (a tool that made no calls writes one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Emitter
from ledger.sdk.home import Home
from ledger.sources.importers import import_files
from ledger.testing.homes import T0, make_home
from ledger.testing.samples import T0_S, agent, anthropic_payload, genai_span, openai_payload, phase, wf_doc

from .support import cli, log_records


def j(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def anthropic(**kw: Any) -> dict[str, Any]:
    return anthropic_payload(1, **kw) | {"created": T0_S}


def run(entries: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return wf_doc("wf_bad", [phase("A"), *entries], **kw)


# (kind, bytes of the file, field named, text of the offending value)
CASES = [
    # not JSON at all
    pytest.param("openai", b"\x00" * 100, "file", "\\x00", id="openai-nul-bytes"),
    pytest.param("openai", b"\xff\xfe\x00\x01garbage\x80", "file", "garbage", id="openai-binary"),
    pytest.param("openai", b"[" * 100_000 + b"]" * 100_000, "file", "[[[[", id="openai-absurd-nesting"),
    pytest.param("anthropic", j(anthropic())[:-9], "file", "msg_", id="anthropic-truncated"),
    pytest.param("otel", b"hello\nworld\n", "file", "hello", id="otel-text"),
    pytest.param("claude-code", b"", "file", "b''", id="workflow-empty-document"),
    pytest.param("claude-code", b"{\"runId\": \"wf_a\", ", "file", "runId", id="workflow-truncated"),
    # wrong shapes
    pytest.param("openai", b"42", "record", "42", id="openai-number"),
    pytest.param("openai", b"null", "record", "None", id="openai-null"),
    pytest.param("openai", b"\"text\"", "record", "text", id="openai-string"),
    pytest.param("openai", j(openai_payload(1) | {"usage": [1, 2]}), "usage", "[1, 2]", id="openai-usage-array"),
    pytest.param("otel", j(genai_span(1) | {"attributes": "x"}), "attributes", "'x'", id="otel-attributes-string"),
    pytest.param("otel", j({"resourceSpans": 5}), "resourceSpans", "5", id="otel-resource-spans-number"),
    pytest.param("claude-code", b"[]", "record", "[]", id="workflow-array"),
    pytest.param("claude-code", j({"runId": "wf_1", "totalTokens": 1, "workflowProgress": "x"}), "workflowProgress",
                 "'x'", id="workflow-progress-string"),
    # missing fields
    pytest.param("openai", j(without(openai_payload(1), "usage")), "usage", "None", id="openai-no-usage"),
    pytest.param("openai", j(without(openai_payload(1), "id")), "id", "None", id="openai-no-id"),
    pytest.param("openai", j(openai_payload(1, model=None)), "model", "None", id="openai-no-model"),
    pytest.param("anthropic", j({"id": "msg_1", "model": "m", "created": T0_S}), "usage", "None",
                 id="anthropic-no-usage"),
    pytest.param("otel", j(genai_span(1, gen_ai__usage__output_tokens=None)), "attributes.gen_ai.usage.output_tokens",
                 "None", id="otel-no-output-tokens"),
    pytest.param("claude-code", j(without(run([agent("a1", "A", "claude-haiku-4-5", 5)]), "totalTokens")),
                 "totalTokens", "None", id="workflow-no-total"),
    pytest.param("claude-code", j(wf_doc("", [phase("A"), agent("a1", "A", "claude-haiku-4-5", 5)])), "runId", "''",
                 id="workflow-empty-run-id"),
    # numbers: negative, huge, NaN, infinite, wrong type, unit mix-ups
    pytest.param("openai", j(openai_payload(1, prompt=10**400)), "usage.prompt_tokens", "1000000000",
                 id="openai-400-digit-tokens"),
    pytest.param("openai", b'{"id":"x","created":1767225600,"model":"m","usage":{"prompt_tokens":Infinity,'
                           b'"completion_tokens":1}}', "usage.prompt_tokens", "inf", id="openai-infinity"),
    pytest.param("openai", b'{"id":"x","created":1767225600,"model":"m","usage":{"prompt_tokens":NaN,'
                           b'"completion_tokens":1}}', "usage.prompt_tokens", "nan", id="openai-nan"),
    pytest.param("openai", j(openai_payload(1, completion=-4)), "usage.completion_tokens", "-4",
                 id="openai-negative-tokens"),
    pytest.param("openai", j(openai_payload(1, model=5)), "model", "5", id="openai-model-int"),
    pytest.param("openai", j(openai_payload(1, model="m" * 5000)), "model", "mmmm", id="openai-model-too-long"),
    pytest.param("openai", j(openai_payload(1, created="today")), "created", "today", id="openai-created-text"),
    pytest.param("openai", j(openai_payload(1, created=T0 // 1000)), "created", str(T0 // 1000),
                 id="openai-created-milliseconds"),
    pytest.param("anthropic", j(anthropic(output_tokens=-1)), "usage.output_tokens", "-1",
                 id="anthropic-negative-tokens"),
    pytest.param("anthropic", j(anthropic(input_tokens="lots")), "usage.input_tokens", "lots",
                 id="anthropic-tokens-text"),
    pytest.param("anthropic", j(anthropic(input_tokens=1e3)), "usage.input_tokens", "1000.0",
                 id="anthropic-tokens-float"),
    pytest.param("anthropic", j(anthropic(read=10**13)), "usage.cache_read_input_tokens", str(10**13),
                 id="anthropic-cache-huge"),
    pytest.param("otel", j(genai_span(1, gen_ai__usage__input_tokens=-3)), "attributes.gen_ai.usage.input_tokens",
                 "-3", id="otel-negative-tokens"),
    pytest.param("otel", j(genai_span(1, gen_ai__usage__input_tokens=10**13)), "attributes.gen_ai.usage.input_tokens",
                 str(10**13), id="otel-huge-tokens"),
    pytest.param("otel", j(genai_span(1) | {"spanId": "zz"}), "spanId", "zz", id="otel-span-id-not-hex"),
    pytest.param("otel", j(genai_span(1) | {"startTimeUnixNano": "-5"}), "startTimeUnixNano", "-5",
                 id="otel-time-negative"),
    pytest.param("claude-code", j(run([agent("a1", "A", "claude-haiku-4-5", -5)])), "totalTokens", "-5",
                 id="workflow-negative-total"),
    pytest.param("claude-code", j(run([agent("a1", "A", "claude-haiku-4-5", "many")], total=0)),
                 "workflowProgress[1].tokens", "many", id="workflow-tokens-text"),
    # ids with control characters
    pytest.param("openai", j(openai_payload(1) | {"id": "a\nb"}), "id", "a\\nb", id="openai-id-newline"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return make_home(tmp_path_factory.mktemp("battery-telemetry") / "home", agents=("importer", "cli-importer"))


@pytest.fixture(scope="module")
def em(home: Home) -> Iterator[Emitter]:
    log = home.open_log()
    try:
        with Emitter(log, home.load_key("importer"), topic=home.topic, state_dir=home.state_dir,
                     background_flush=False) as e:
            yield e
    finally:
        log.close()


def _name(kind: str) -> str:
    return "wf_bad.json" if kind == "claude-code" else "bad.jsonl"


@pytest.mark.parametrize("kind,data,field,value", CASES)
def test_bad_telemetry_is_a_problem_naming_field_and_value(home: Home, em: Emitter, tmp_path: Path, kind: str,
                                                           data: bytes, field: str, value: str) -> None:
    path = tmp_path / _name(kind)
    path.write_bytes(data)
    before = log_records(home)
    summary = import_files(kind, [path], em, event_time_us=T0 if kind == "claude-code" else None)
    assert summary.imported == 0, summary
    problems = [p for p in summary.rejected if p.field == field]
    assert problems, summary.rejected
    assert all(p.file == str(path) for p in summary.rejected)
    assert any(value in p.value for p in problems), problems
    assert log_records(home) == before


@pytest.mark.parametrize("data", [b"", b"\n\n   \n", b"[]"], ids=["empty", "blank-lines", "empty-array"])
def test_an_empty_file_imports_nothing_and_reports_nothing(home: Home, em: Emitter, tmp_path: Path,
                                                          data: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(data)
    before = log_records(home)
    summary = import_files("openai", [path], em)
    assert (summary.imported, summary.rejected, summary.files) == (0, (), 1)
    assert log_records(home) == before


@pytest.mark.parametrize("kind,data,field,value", [
    pytest.param("openai", j(openai_payload(1, prompt="12.7")), "usage.prompt_tokens", "12.7", id="openai"),
    pytest.param("anthropic", j(anthropic(output_tokens=-1)), "usage.output_tokens", "-1", id="anthropic"),
    pytest.param("otel", j(genai_span(1) | {"traceId": "xyz"}), "traceId", "xyz", id="otel"),
    pytest.param("claude-code", j(run([agent("a1", "A", "claude-haiku-4-5", "many")], total=0)),
                 "workflowProgress[1].tokens", "many", id="claude-code"),
])
def test_cli_import_of_a_bad_file_exits_1_naming_field_and_value(home: Home, tmp_path: Path, kind: str, data: bytes,
                                                                 field: str, value: str) -> None:
    path = tmp_path / _name(kind)
    path.write_bytes(data)
    before = log_records(home)
    extra = ["--time", str(T0)] if kind == "claude-code" else []
    r = cli(home, ["import", kind, str(path), "--signer", "cli-importer", *extra])
    assert r.exit_code == 1, r.output
    assert field in r.output and value in r.output, r.output
    assert log_records(home) == before


def test_cli_import_of_a_missing_file_is_bad_input(home: Home, tmp_path: Path) -> None:
    before = log_records(home)
    r = cli(home, ["import", "openai", str(tmp_path / "missing.jsonl"), "--signer", "cli-importer"])
    assert r.exit_code == 2 and "missing.jsonl" in r.output, r.output
    assert log_records(home) == before
