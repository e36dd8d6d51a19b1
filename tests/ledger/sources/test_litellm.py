"""The LiteLLM spend-log importer: ``LiteLLM_SpendLogs`` rows as JSON (array, lines) and as a CSV export.

Method: rows are written here with the table's column names (``request_id``, ``prompt_tokens``, ``spend``,
``startTime``, ``metadata`` with ``additional_usage_values``...) and values of our own, rendered as a JSON array,
as JSON lines with the JSON columns as text (a database export), and as CSV (every cell text, times as PostgreSQL
writes a zone-less timestamp). Each file is imported through ``import_files`` into a real home with a real SQLite
log and read back; the three renderings must give the same records.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.importing import audit_ok, events_of, import_runner, importer_home, kinds, log_ends, write

from ledger.sdk.home import Home
from ledger.sources.importers import expand_paths, parse
from ledger.testing.homes import T0
from ledger.testing.samples import jsonl

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
KEY_HASH = hashlib.sha256(b"sk-test-key-of-our-own").hexdigest()  # the proxy stores keys hashed
COLUMNS = ["request_id", "call_type", "api_key", "spend", "total_tokens", "prompt_tokens", "completion_tokens",
           "startTime", "endTime", "model", "model_group", "custom_llm_provider", "api_base", "user", "metadata",
           "cache_hit", "cache_key", "request_tags", "team_id", "end_user", "status"]


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return importer_home(tmp_path, backfill=True)  # as `tokenledger import` registers its signer


run_import = import_runner("litellm")


def iso(us: int, *, postgres: bool = False) -> str:
    t = EPOCH + dt.timedelta(microseconds=us)
    if postgres:  # a `timestamp(3) without time zone` column as psql's CSV writes it
        return t.replace(tzinfo=None).isoformat(sep=" ")
    return t.isoformat().replace("+00:00", "Z")


def row(i: int, prompt: int, completion: int, *, usage: dict[str, Any] | None = None, **columns: Any
        ) -> dict[str, Any]:
    """One LiteLLM_SpendLogs row as the proxy stores it (our own values)."""
    metadata: dict[str, Any] = {"user_api_key": KEY_HASH, "user_api_key_user_id": "u-ops",
                                "user_api_key_team_id": "team-research", "status": "success"}
    if usage is not None:
        metadata["additional_usage_values"] = usage
    base = {"request_id": f"chatcmpl-{i:04d}", "call_type": "acompletion", "api_key": KEY_HASH, "spend": 0.0,
            "total_tokens": prompt + completion, "prompt_tokens": prompt, "completion_tokens": completion,
            "startTime": iso(T0 + i * 1_000_123), "endTime": iso(T0 + i * 1_000_123 + 850_000), "model": "gpt-4o",
            "model_group": "gpt-4o", "custom_llm_provider": "openai", "api_base": "https://llm.internal/v1",
            "user": "u-ops", "metadata": metadata, "cache_hit": "False", "cache_key": "Cache OFF",
            "request_tags": [], "team_id": "team-research", "end_user": "", "status": "success"}
    base.update(columns)
    return base


def sample_rows() -> list[dict[str, Any]]:
    return [
        # OpenAI through the proxy: 1,024 of 2,048 prompt tokens cached, 64 of 300 completion tokens reasoning;
        # $0.0012345 is 1,234.5 micro-USD: half to even -> 1,234
        row(1, 2_048, 300, spend=0.0012345, end_user="researcher", request_tags=["nightly", "eval"],
            usage={"prompt_tokens_details": {"cached_tokens": 1_024, "audio_tokens": 0},
                   "completion_tokens_details": {"reasoning_tokens": 64}}),
        # Anthropic: LiteLLM's prompt_tokens (12,600) already adds the 12,000 read and 500 written to the 100
        # uncached; 9,712.5 micro-USD -> 9,712
        row(2, 12_600, 250, spend=0.0097125, model="claude-sonnet-4-6", model_group="claude",
            custom_llm_provider="anthropic",
            usage={"cache_read_input_tokens": 12_000, "cache_creation_input_tokens": 500,
                   "prompt_tokens_details": {"cached_tokens": 12_000}}),
        # served from the proxy's cache: the cached response's tokens, no provider call, no spend
        row(3, 2_048, 300, cache_hit="True", request_id="chatcmpl-0001_cache_hit1718000000.5"),
        # a failed request: nothing metered
        row(4, 0, 0, status="failure", model=""),
        # no provider column: inferred from the model; 2.5 micro-USD -> 2
        row(5, 900, 100, spend=0.0000025, model="gemini-2.5-pro", model_group="gemini", custom_llm_provider="",
            end_user="writer"),
    ]


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        cells = []
        for name in COLUMNS:
            value = r.get(name)
            if name in ("metadata", "request_tags"):
                cells.append(json.dumps(value))
            elif name in ("startTime", "endTime"):
                cells.append(iso(parse_iso(value), postgres=True))
            elif value is None:
                cells.append("")
            else:
                cells.append(repr(value) if isinstance(value, float) else str(value))
        writer.writerow(cells)
    return out.getvalue()


def parse_iso(text: str) -> int:
    return (dt.datetime.fromisoformat(text.replace("Z", "+00:00")) - EPOCH) // dt.timedelta(microseconds=1)


def as_db_jsonl(rows: list[dict[str, Any]]) -> str:
    """JSON lines as a database export writes them: Json columns as JSON text."""
    return jsonl([r | {"metadata": json.dumps(r["metadata"]), "request_tags": json.dumps(r["request_tags"])}
                  for r in rows])


# ------------------------------------------------------------------------------- the three renderings


def test_a_json_export_imports_with_exact_tokens_cost_and_labels_once(home, tmp_path):
    path = write(tmp_path / "spend_logs.json", json.dumps(sample_rows(), indent=1))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected) == (3, ())
    assert [(p.field, p.reason) for p in summary.skipped] == [
        ("[2]", "served from LiteLLM's cache: no provider call (its 2,348 tokens are the cached response's)"),
        ("[3]", "a failed request with no tokens: nothing was metered")]
    openai_call, anthropic_call, gemini_call = events_of(home)
    assert kinds(openai_call.body.usage) == (2_048, 300, 1_024, 0, 64)
    assert kinds(anthropic_call.body.usage) == (12_600, 250, 12_000, 500, 0)
    assert kinds(gemini_call.body.usage) == (900, 100, 0, 0, 0)
    assert [(e.body.usage.provider, e.body.usage.model, e.body.usage.provider_cost_micros)
            for e in (openai_call, anthropic_call, gemini_call)] == [
        ("openai", "gpt-4o", 1_234), ("anthropic", "claude-sonnet-4-6", 9_712), ("google", "gemini-2.5-pro", 2)]
    assert openai_call.idempotency_key == "litellm:chatcmpl-0001"
    assert openai_call.event_time_us == T0 + 1_000_123
    assert dict(openai_call.context.labels) == {
        "source": "litellm", "user": "u-ops", "team_id": "team-research", "end_user": "researcher",
        "request_tags": '["nightly","eval"]', "call_type": "acompletion", "model_group": "gpt-4o"}
    assert "end_user" not in dict(anthropic_call.context.labels)
    assert [e.context.agent for e in (openai_call, anthropic_call, gemini_call)] == ["researcher", "u-ops", "writer"]

    ends = log_ends(home)
    again = run_import(home, [path])
    assert (again.imported, again.duplicates, again.rejected) == (0, 3, ()) and log_ends(home) == ends
    assert audit_ok(home)


def test_csv_and_database_json_lines_give_the_same_records_as_the_json_array(home, tmp_path):
    rows = sample_rows()
    array = parse("litellm", json.dumps(rows), source="x")
    lines = parse("litellm", as_db_jsonl(rows), source="x")
    text = as_csv(rows)
    assert text.splitlines()[1].startswith("chatcmpl-0001,acompletion,") and " " in text.splitlines()[1]
    table = parse("litellm", text, source="x")

    def same(result: Any) -> list[Any]:
        return [(r.idempotency_key, r.body, r.event_time_us, r.context, r.agent) for r in result.records]

    assert array.problems == lines.problems == table.problems == ()
    assert same(table) == same(lines) == same(array) and len(array.records) == 3
    assert [r.line for r in table.records] == [2, 3, 6]  # the line each row starts on, after the header
    assert [p.line for p in table.skipped] == [4, 5]

    path = write(tmp_path / "exports" / "spend_logs.csv", text)
    assert expand_paths("litellm", [tmp_path / "exports"]) == [path]  # *.csv is searched for in a directory
    summary = run_import(home, [tmp_path / "exports"])
    assert (summary.imported, summary.rejected) == (3, ())
    assert [kinds(e.body.usage) for e in events_of(home)] == [
        (2_048, 300, 1_024, 0, 64), (12_600, 250, 12_000, 500, 0), (900, 100, 0, 0, 0)]
    ends = log_ends(home)
    again = run_import(home, [write(tmp_path / "again.jsonl", as_db_jsonl(rows))])  # the JSON lines twin
    assert (again.imported, again.duplicates) == (0, 3) and log_ends(home) == ends


def test_calls_are_attributed_to_the_end_user_else_the_keys_user():
    rows = [*sample_rows(),
            row(6, 1_000, 0, spend=0.001, end_user="researcher"),
            row(7, 40, 2, spend=0.0, user="", end_user="", metadata={}),  # tokens, no owner named anywhere
            row(8, 0, 0, spend=0.04, call_type="aimage_generation", model="dall-e-3")]  # spend without tokens
    result = parse("litellm", jsonl(rows), source="x")
    assert result.problems == ()
    per_agent: Counter[str | None] = Counter()
    for r in result.records:
        per_agent[r.agent] += r.body.usage.input_tokens + r.body.usage.output_tokens
    assert per_agent == {"researcher": 2_348 + 1_000, "u-ops": 12_850 + 0, "writer": 1_000, None: 42}
    assert [r.body.usage.provider_cost_micros for r in result.records if r.agent == "u-ops"] == [9_712, 40_000]


@pytest.mark.parametrize("usd,micros", [(0.0000005, 0), (0.0000015, 2), (0.0000025, 2), (1.2345675, 1_234_568),
                                        (0, 0), (3, 3_000_000)])
def test_spend_is_rounded_half_to_even_to_micro_usd(usd, micros):
    (record,) = parse("litellm", json.dumps([row(1, 10, 1, spend=usd)]), source="x").records
    assert record.body.usage.provider_cost_micros == micros
    (from_csv,) = parse("litellm", as_csv([row(1, 10, 1, spend=usd)]), source="x").records
    assert from_csv.body.usage.provider_cost_micros == micros


# ------------------------------------------------------------------------------- malformed rows


MALFORMED_JSON = [
    (row(9, 2048, 1, prompt_tokens="2048"), "prompt_tokens", "integer"),
    (row(9, 10, 1, total_tokens=12), "total_tokens", "must equal"),
    (row(9, 10, 1, spend="lots"), "spend", "JSON number"),
    (row(9, 10, 1, spend=-0.5), "spend", "non-negative"),
    (row(9, 10, 1, startTime="15/01/2025 10:20"), "startTime", "ISO 8601"),
    (row(9, 10, 1, startTime="2025-02-30T10:20:30Z"), "startTime", "not a valid time"),
    (row(9, 10, 1, startTime="1999-12-31T23:59:59Z"), "startTime", "event-time range"),
    (row(9, 100, 1, usage={"cache_read_input_tokens": 80, "cache_creation_input_tokens": 30}), "prompt_tokens",
     "must include the cache"),
    (row(9, 100, 1, usage={"cache_read_input_tokens": 80, "prompt_tokens_details": {"cached_tokens": 60}}),
     "metadata.additional_usage_values.cache_read_input_tokens", "differs from"),
    (row(9, 100, 5, usage={"completion_tokens_details": {"reasoning_tokens": 6}}),
     "metadata.additional_usage_values.completion_tokens_details.reasoning_tokens", "cannot exceed"),
    (row(9, 10, 1, cache_hit="True", spend=0.01), "spend", "cache hit"),
    (row(9, 10, 1, cache_hit="maybe"), "cache_hit", "True or False"),
    (row(9, 10, 1, status="timeout"), "status", "success or failure"),
    (row(9, 10, 1, user="someone-else"), "user", "differs from metadata.user_api_key_user_id"),
    (row(9, 10, 1, metadata="{not json"), "metadata", "must hold JSON"),
    (row(9, 10, 1, request_tags={"a": 1}), "request_tags", "array"),
    (row(9, 10, 1, model=""), "model", "required"),
    ({k: v for k, v in row(9, 10, 1).items() if k != "completion_tokens"}, "completion_tokens", "required"),
]


@pytest.mark.parametrize("bad,field,reason", MALFORMED_JSON, ids=[f"{f}-{r}" for _, f, r in MALFORMED_JSON])
def test_a_malformed_json_row_is_one_problem_at_its_line(home, tmp_path, bad, field, reason):
    path = write(tmp_path / "logs.jsonl", jsonl([row(1, 10, 1), bad, row(3, 10, 1)]))

    summary = run_import(home, [path])

    assert summary.imported == 2, summary.rejected
    (problem,) = summary.rejected
    assert (problem.file, problem.line, problem.field) == (str(path), 2, field)
    assert reason in problem.reason, problem


def test_a_malformed_row_in_a_json_array_is_named_by_its_index():
    result = parse("litellm", json.dumps([row(1, 10, 1), row(2, -1, 1)]), source="a.json")
    assert [(p.line, p.field) for p in result.problems] == [(None, "[1].prompt_tokens")]


def test_a_malformed_csv_row_is_one_problem_at_the_line_it_starts_on(home, tmp_path):
    rows = [row(1, 10, 1, cache_key="a key\non two lines"), row(2, 10, 1), row(3, 10, 1), row(4, 10, 1),
            row(5, 10, 1), row(6, 10, 1)]
    lines = as_csv(rows).splitlines()
    assert len(lines) == 8  # header, a row spanning lines 2-3, then one row a line
    lines[3] = lines[3].replace(",10,1,", ",12.7,1,", 1)  # row 2 (line 4): prompt_tokens "12.7"
    lines[4] = lines[4].replace("chatcmpl-0003,", "chatcmpl-0003,extra,", 1)  # row 3 (line 5): a field too many
    lines[5] = lines[5].replace(iso(T0 + 4 * 1_000_123, postgres=True), "yesterday", 1)  # row 4 (line 6)
    lines[6] = lines[6].replace(",10,1,", ",10,1.0,", 1)  # row 5 (line 7): completion_tokens "1.0"
    path = write(tmp_path / "logs.csv", "\n".join(lines) + "\n")

    summary = run_import(home, [path])

    assert summary.imported == 2
    assert [(p.line, p.field) for p in summary.rejected] == [
        (4, "prompt_tokens"), (5, "row"), (6, "startTime"), (7, "completion_tokens")]
    assert summary.rejected[0].value == "'12.7'" and "decimal digits" in summary.rejected[0].reason
    assert [e.idempotency_key for e in events_of(home)] == ["litellm:chatcmpl-0001", "litellm:chatcmpl-0006"]


@pytest.mark.parametrize("content", ["id,tokens\n1,2\n", "hello\n", "\xff\xfe garbage"], ids=["other-csv", "text",
                                                                                              "not-utf8"])
def test_a_file_that_is_no_spend_log_export_is_one_problem(tmp_path, content):
    data = content.encode("latin-1")
    result = parse("litellm", data, source="f")
    assert [(p.line, p.field) for p in result.problems] == [(None, "file")] and result.records == ()


def test_an_unterminated_quote_stops_the_csv_with_a_problem_at_its_line():
    text = as_csv([row(1, 10, 1)]) + 'chatcmpl-0002,"acompletion\n'
    result = parse("litellm", text, source="f")
    assert len(result.records) == 1 and [(p.line, p.field) for p in result.problems] == [(3, "line")]
