"""The Anthropic importer's formats end to end: Messages responses (service tier, 5-minute / 1-hour cache split),
Message Batches results lines, and Admin API usage and cost report pages, each imported through ``import_files``
into a real home with a real SQLite log, and read back.

Method: every input is built here from the documented field names and shapes with values of our own; each test
asserts the exact tokens per ledger kind (input, cache read, cache write, its 1-hour part, output) of every
emitted event, with its key, labels, operation, service tier and event time. Anthropic's input counts exclude the
cache, so every expected input total below is written as the sum it must be. Malformed records are built one
defect at a time between two good records: each must give exactly one problem naming the line and the field's
JSON path while the good records import. Re-imports must leave the log's end offsets unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from support.importing import audit_ok, cli_app, events_of, import_runner, importer_home, log_ends, with_field, write
from typer.testing import CliRunner

from ledger.errors import ValidationError
from ledger.sdk.home import Home
from ledger.sources.anthropic import rfc3339_us
from ledger.testing.homes import T0, make_home
from ledger.testing.samples import jsonl
from ledger.wire.timefmt import fmt_time

HOUR_US = 3_600 * 1_000_000
DAY_US = 24 * HOUR_US

# ------------------------------------------------------------------------------- home helpers


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return importer_home(tmp_path)


run_import = import_runner("anthropic")


def kinds(event: Any) -> tuple[int, int, int, int, int]:
    """(input, cache read, cache write, 1-hour cache write, output) of an event's usage."""
    u = event.body.usage
    return u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens, u.output_tokens


def rfc3339(us: int, offset_hours: int = 0) -> str:
    """``us`` as RFC 3339 text in a zone ``offset_hours`` from UTC ("Z" for UTC)."""
    zone = dt.timezone(dt.timedelta(hours=offset_hours))
    text = dt.datetime.fromtimestamp(us // 1_000_000, zone).strftime("%Y-%m-%dT%H:%M:%S%z")
    return text[:-5] + "Z" if offset_hours == 0 else text[:-2] + ":" + text[-2:]


# ------------------------------------------------------------------------------- builders (documented shapes)


def message(msg_id: str, uncached: int, output: int, *, read: int = 0, five_minutes: int = 0, one_hour: int = 0,
            tier: str | None = "standard", model: str = "claude-sonnet-4-6") -> dict[str, Any]:
    usage: dict[str, Any] = {"input_tokens": uncached, "output_tokens": output,
                             "cache_creation_input_tokens": five_minutes + one_hour, "cache_read_input_tokens": read,
                             "cache_creation": {"ephemeral_5m_input_tokens": five_minutes,
                                                "ephemeral_1h_input_tokens": one_hour}}
    if tier is not None:
        usage["service_tier"] = tier
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "done"}], "stop_reason": "end_turn", "usage": usage}


def succeeded(custom_id: str, msg: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": msg}}


def report_result(uncached: int, output: int, *, read: int = 0, five_minutes: int = 0, one_hour: int = 0,
                  **fields: Any) -> dict[str, Any]:
    out = {"uncached_input_tokens": uncached, "cache_read_input_tokens": read,
           "cache_creation": {"ephemeral_5m_input_tokens": five_minutes, "ephemeral_1h_input_tokens": one_hour},
           "output_tokens": output, "server_tool_use": {"web_search_requests": 0}, "model": None,
           "api_key_id": None, "workspace_id": None, "service_tier": None, "context_window": None}
    out.update(fields)
    return out


def report_bucket(start_us: int, results: list[Any], *, end_us: int | None = None,
                  offset_hours: int = 0) -> dict[str, Any]:
    end = start_us + HOUR_US if end_us is None else end_us
    return {"starting_at": rfc3339(start_us, offset_hours), "ending_at": rfc3339(end, offset_hours),
            "results": results}


def report_page(buckets: list[Any]) -> dict[str, Any]:
    return {"data": buckets, "has_more": False, "next_page": None}


# ------------------------------------------------------------------------------- 5. messages


def test_messages_keep_the_cache_split_and_the_service_tier(home, tmp_path):
    path = write(tmp_path / "messages.jsonl", jsonl([
        message("msg_a", 100, 400, read=30_000, five_minutes=1_500, one_hour=500, tier="priority"),
        message("msg_b", 2_000, 10, tier="standard"),
    ]))
    summary = run_import(home, [path], event_time_us=T0)
    assert (summary.imported, summary.rejected) == (2, ())
    a, b = events_of(home)
    assert kinds(a) == (100 + 30_000 + 1_500 + 500, 30_000, 2_000, 500, 400) and kinds(b) == (2_000, 0, 0, 0, 10)
    assert (a.body.usage.service_tier, b.body.usage.service_tier) == ("priority", "")
    assert (a.idempotency_key, a.event_time_us, a.body.operation) == ("anthropic:msg_a", T0, "llm.call")


# ------------------------------------------------------------------------------- 6. Message Batches results


def test_batch_results_import_at_the_batch_tier_and_unbilled_results_are_skips(home, tmp_path):
    path = write(tmp_path / "batch_results.jsonl", jsonl([
        succeeded("req-1", message("msg_b1", 300, 700, read=9_000, five_minutes=1_000, one_hour=2_000,
                                   tier="batch")),
        succeeded("req-2", message("msg_b2", 50, 5, tier="standard", model="claude-haiku-4-5")),
        {"custom_id": "req-3", "result": {"type": "errored", "error": {
            "type": "error", "error": {"type": "invalid_request_error", "message": "bad max_tokens"}}}},
        {"custom_id": "req-4", "result": {"type": "canceled"}},
        {"custom_id": "req-5", "result": {"type": "expired"}},
    ]))

    summary = run_import(home, [path], event_time_us=T0 + 7)

    assert (summary.imported, summary.rejected) == (2, ())
    assert [(s.line, s.reason) for s in summary.skipped] == [
        (3, "a batch request that errored (invalid_request_error): no tokens were billed"),
        (4, "a batch request that canceled: no tokens were billed"),
        (5, "a batch request that expired: no tokens were billed")]
    first, second = events_of(home)
    assert kinds(first) == (300 + 9_000 + 1_000 + 2_000, 9_000, 3_000, 2_000, 700)
    assert kinds(second) == (50, 0, 0, 0, 5)
    assert (first.idempotency_key, second.idempotency_key) == ("anthropic-batch:req-1:msg_b1",
                                                               "anthropic-batch:req-2:msg_b2")
    assert (first.body.usage.service_tier, second.body.usage.service_tier) == ("batch", "batch")
    assert dict(first.context.labels) == {"source": "anthropic", "custom_id": "req-1"}
    assert (first.event_time_us, second.event_time_us) == (T0 + 7, T0 + 7)  # results carry no time: --time


def test_batch_results_need_an_event_time(home, tmp_path):
    path = write(tmp_path / "batch_results.jsonl", jsonl([succeeded("req-1", message("msg_t1", 1, 1)),
                                                          succeeded("req-2", message("msg_t2", 2, 2))]))
    summary = run_import(home, [path])
    assert summary.imported == 0
    assert [(p.line, p.field) for p in summary.rejected] == [(1, "result.message.created"),
                                                             (2, "result.message.created")]
    assert "--time" in summary.rejected[0].reason


# ------------------------------------------------------------------------------- 7. usage and cost reports


def usage_report_doc() -> dict[str, Any]:
    return report_page([
        report_bucket(T0, [
            report_result(1_500, 2_500, read=20_000, five_minutes=3_000, one_hour=1_000, model="claude-sonnet-4-6",
                          api_key_id="apikey_01", workspace_id="wrkspc_01", service_tier="standard",
                          context_window="0-200k", server_tool_use={"web_search_requests": 7}),
            report_result(400, 60, model=None, service_tier="batch"),
        ]),
        # the same kind of bucket written with a +02:00 offset: the instant is what counts
        report_bucket(T0 + HOUR_US, [report_result(10, 1, model="claude-haiku-4-5", service_tier="priority")],
                      offset_hours=2),
        report_bucket(T0 + 2 * HOUR_US, []),
    ])


def test_usage_report_results_import_as_aggregates(home, tmp_path):
    path = write(tmp_path / "usage_report.json", json.dumps(usage_report_doc(), indent=2))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected, summary.skipped) == (3, (), ())
    grouped, ungrouped, later = events_of(home)
    assert {e.body.operation for e in (grouped, ungrouped, later)} == {"llm.usage_aggregate"}
    # uncached + cache read + 5-minute + 1-hour writes: the cache is outside uncached_input_tokens
    assert kinds(grouped) == (1_500 + 20_000 + 3_000 + 1_000, 20_000, 4_000, 1_000, 2_500)
    assert kinds(ungrouped) == (400, 0, 0, 0, 60) and kinds(later) == (10, 0, 0, 0, 1)
    assert (ungrouped.body.usage.model, ungrouped.body.usage.provider) == ("unknown", "anthropic")
    assert [e.body.usage.service_tier for e in (grouped, ungrouped, later)] == ["", "batch", "priority"]
    assert (grouped.event_time_us, later.event_time_us) == (T0, T0 + HOUR_US)
    assert grouped.idempotency_key == (f"anthropic-usage:{T0}:{T0 + HOUR_US}:model=claude-sonnet-4-6:"
                                       "api_key_id=apikey_01:workspace_id=wrkspc_01:service_tier=standard:"
                                       "context_window=0-200k")
    assert ungrouped.idempotency_key == f"anthropic-usage:{T0}:{T0 + HOUR_US}:service_tier=batch"
    assert dict(grouped.context.labels) == {
        "source": "anthropic", "aggregate": "true", "bucket_start": fmt_time(T0),
        "bucket_end": fmt_time(T0 + HOUR_US), "api_key_id": "apikey_01", "workspace_id": "wrkspc_01",
        "context_window": "0-200k", "server_tool_use.web_search_requests": "7"}
    assert dict(later.context.labels)["bucket_end"] == fmt_time(T0 + 2 * HOUR_US)
    assert audit_ok(home)


def test_cost_report_results_are_skipped_as_money_not_tokens(home, tmp_path):
    cost = {"currency": "USD", "amount": "123.45", "workspace_id": "wrkspc_01", "description": "input tokens",
            "cost_type": "tokens", "context_window": "0-200k", "model": "claude-sonnet-4-6",
            "service_tier": "standard", "token_type": "uncached_input_tokens"}
    page = report_page([{"starting_at": rfc3339(T0), "ending_at": rfc3339(T0 + DAY_US), "results": [
        cost, cost | {"amount": "0.5", "token_type": "output_tokens"}]}])
    path = write(tmp_path / "cost_report.json", json.dumps(page))

    summary = run_import(home, [path])

    assert (summary.imported, summary.rejected) == (0, ())
    assert [s.field for s in summary.skipped] == ["data[0].results[0]", "data[0].results[1]"]
    assert all("carries money, not tokens" in s.reason for s in summary.skipped)
    assert "'123.45' in cents of 'USD'" in summary.skipped[0].reason
    assert events_of(home) == []


@pytest.mark.parametrize("starting_at", [
    "2026-01-01 00:00:00Z", "2026-01-01T00:00:00", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:60Z", "2026-01-01T00:00:00+25:00", "2026-01-01T00:00:00+02:60", "2026-01-01",
    "1767225600", 1767225600, None, "1999-12-31T23:59:59Z", "2026-01-01T00:00:00.Z", " 2026-01-01T00:00:00Z",
], ids=lambda v: repr(v))
def test_a_bucket_start_that_is_not_strict_rfc3339_is_one_problem(home, tmp_path, starting_at):
    bad = report_bucket(T0, [report_result(1, 1, model="claude-haiku-4-5")]) | {"starting_at": starting_at}
    good = report_bucket(T0 + HOUR_US, [report_result(2, 2, model="claude-haiku-4-5")])
    path = write(tmp_path / "usage_report.json", json.dumps(report_page([bad, good])))

    summary = run_import(home, [path])

    assert summary.imported == 1
    (problem,) = summary.rejected
    assert problem.field == "data[0].starting_at" and problem.line is None, problem
    assert [kinds(e) for e in events_of(home)] == [(2, 0, 0, 0, 2)]


def test_rfc3339_reads_zones_fractions_and_either_case():
    base = rfc3339_us("2026-01-01T00:00:00Z", "t")
    assert rfc3339_us("2026-01-01t02:00:00+02:00", "t") == base
    assert rfc3339_us("2025-12-31T19:30:00-04:30", "t") == base
    assert rfc3339_us("2026-01-01T00:00:00.1234569z", "t") == base + 123_456  # floored to microseconds
    assert rfc3339_us("2026-01-01T00:00:00.5Z", "t") == base + 500_000
    assert base == 1_767_225_600_000_000
    with pytest.raises(ValidationError) as e:
        rfc3339_us("2026-01-01T00:00:00.1234567890Z", "starting_at")
    assert (e.value.field, e.value.value) == ("starting_at", "2026-01-01T00:00:00.1234567890Z")


# ------------------------------------------------------------------------------- mixed files, re-import


def test_formats_are_detected_per_record_in_one_file(home, tmp_path):
    path = write(tmp_path / "mixed.jsonl", jsonl([
        message("msg_m1", 10, 1, read=5),
        succeeded("m2", message("msg_m2", 20, 2, one_hour=4)),
        report_page([report_bucket(T0, [report_result(30, 3, read=6, model="claude-sonnet-4-6")])]),
        report_bucket(T0 + HOUR_US, [report_result(40, 4, five_minutes=8, model="claude-sonnet-4-6")]),
        {"custom_id": "m5", "result": {"type": "canceled"}},
    ]))

    summary = run_import(home, [path], event_time_us=T0 + 3)

    assert (summary.imported, summary.rejected, [s.line for s in summary.skipped]) == (4, (), [5])
    assert [(e.body.operation, e.idempotency_key.split(":")[0], kinds(e), e.body.usage.service_tier)
            for e in events_of(home)] == [
        ("llm.call", "anthropic", (15, 5, 0, 0, 1), ""),
        ("llm.call", "anthropic-batch", (24, 0, 4, 4, 2), "batch"),
        ("llm.usage_aggregate", "anthropic-usage", (36, 6, 0, 0, 3), ""),
        ("llm.usage_aggregate", "anthropic-usage", (48, 0, 8, 0, 4), "")]


def test_importing_every_format_again_appends_nothing(home, tmp_path):
    files = [
        write(tmp_path / "messages.json", json.dumps([message(f"msg_r{i}", 10 + i, 1, read=i) for i in range(6)])),
        write(tmp_path / "batch.jsonl", jsonl([succeeded(f"c{i}", message(f"msg_c{i}", 5, 5)) for i in range(3)]
                                              + [{"custom_id": "c9", "result": {"type": "expired"}}])),
        write(tmp_path / "usage.json", json.dumps(usage_report_doc())),
    ]
    first = run_import(home, files, event_time_us=T0)
    ends = log_ends(home)

    again = run_import(home, files, event_time_us=T0)

    assert (first.imported, len(first.skipped), first.rejected) == (6 + 3 + 3, 1, ())
    assert (again.imported, again.duplicates, len(again.skipped), again.rejected) == (0, first.imported, 1, ())
    assert log_ends(home) == ends and audit_ok(home)


# ------------------------------------------------------------------------------- malformed records


GOOD_BATCH = succeeded("x", message("msg_x", 100, 10, read=50, five_minutes=20, one_hour=10))
GOOD_PAGE = report_page([report_bucket(T0, [report_result(100, 10, read=50, five_minutes=20, one_hour=10,
                                                          model="claude-sonnet-4-6")])])
R0 = "data.0.results.0"
MSG = "result.message"

MALFORMED = [
    ("batch-unknown-result", with_field(GOOD_BATCH, "result.type", "pending"), "result.type", "must be one of"),
    ("batch-result-missing", with_field(GOOD_BATCH, "result", ...), "result", "required"),
    ("batch-custom-id-number", with_field(GOOD_BATCH, "custom_id", 5), "custom_id", "string"),
    ("batch-no-message", with_field(GOOD_BATCH, f"{MSG}", None), MSG, "must not be null"),
    ("batch-message-other-type", with_field(GOOD_BATCH, f"{MSG}.type", "message_start"), f"{MSG}.type", "message"),
    ("batch-negative-input", with_field(GOOD_BATCH, f"{MSG}.usage.input_tokens", -1), f"{MSG}.usage.input_tokens",
     "between 0"),
    ("batch-split-mismatch", with_field(GOOD_BATCH, f"{MSG}.usage.cache_creation.ephemeral_1h_input_tokens", 11),
     f"{MSG}.usage.cache_creation", "add up"),
    ("batch-priority-tier", with_field(GOOD_BATCH, f"{MSG}.usage.service_tier", "priority"),
     f"{MSG}.usage.service_tier", "batch"),
    ("report-string-count", with_field(GOOD_PAGE, f"{R0}.uncached_input_tokens", "100"),
     "data[0].results[0].uncached_input_tokens", "integer"),
    ("report-missing-output", with_field(GOOD_PAGE, f"{R0}.output_tokens", ...), "data[0].results[0].output_tokens",
     "required"),
    ("report-negative-1h", with_field(GOOD_PAGE, f"{R0}.cache_creation.ephemeral_1h_input_tokens", -1),
     "data[0].results[0].cache_creation.ephemeral_1h_input_tokens", "between 0"),
    ("report-cache-creation-list", with_field(GOOD_PAGE, f"{R0}.cache_creation", [1]),
     "data[0].results[0].cache_creation", "JSON object"),
    ("report-web-search-text", with_field(GOOD_PAGE, f"{R0}.server_tool_use.web_search_requests", "many"),
     "data[0].results[0].server_tool_use.web_search_requests", "integer"),
    ("report-model-number", with_field(GOOD_PAGE, f"{R0}.model", 3), "data[0].results[0].model", "string"),
    ("report-end-before-start", with_field(GOOD_PAGE, "data.0.ending_at", rfc3339(T0 - HOUR_US)), "data[0].ending_at",
     "later"),
    ("report-end-text", with_field(GOOD_PAGE, "data.0.ending_at", "soon"), "data[0].ending_at", "RFC 3339"),
    ("report-results-missing", with_field(GOOD_PAGE, "data.0.results", ...), "data[0].results", "required"),
    ("report-data-object", with_field(GOOD_PAGE, "data", {}), "data", "array"),
    ("stream-event", {"type": "message_start", "message": {}}, "type", "not a record"),
]


@pytest.mark.parametrize("bad,field,reason", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_record_is_one_problem_at_its_line_and_field(home, tmp_path, bad, field, reason):
    path = write(tmp_path / "in.jsonl", jsonl([message("msg_g1", 10, 1), bad, message("msg_g3", 30, 3)]))

    summary = run_import(home, [path], event_time_us=T0)

    assert summary.imported == 2, summary.rejected
    (problem,) = summary.rejected
    assert (problem.file, problem.line, problem.field) == (str(path), 2, field), problem
    assert reason in problem.reason, problem
    assert [kinds(e) for e in events_of(home)] == [(10, 0, 0, 0, 1), (30, 0, 0, 0, 3)]


def test_the_good_variants_of_the_malformed_records_import(home, tmp_path):
    """Every malformed record above differs from one of these in the one field its test names."""
    path = write(tmp_path / "good.jsonl", jsonl([GOOD_BATCH, GOOD_PAGE]))
    summary = run_import(home, [path], event_time_us=T0)
    assert (summary.imported, summary.rejected, summary.skipped) == (2, (), ())
    assert [kinds(e) for e in events_of(home)] == [(180, 50, 30, 10, 10), (180, 50, 30, 10, 10)]


# ------------------------------------------------------------------------------- the command

runner = CliRunner()


def test_cli_imports_batch_results_with_a_time(tmp_path):
    home = make_home(tmp_path / "home", agents=())
    path = write(tmp_path / "results.jsonl", jsonl([
        succeeded("job-1", message("msg_cli1", 1_000, 100, read=4_000)),
        {"custom_id": "job-2", "result": {"type": "expired"}}]))
    args = ["import", "anthropic", str(path), "--home", str(home.path), "--time", fmt_time(T0), "--json"]

    first = runner.invoke(cli_app(), args)
    assert first.exit_code == 1, first.output  # one result skipped, without --allow-skips
    result = json.loads(first.stdout)
    assert (result["imported"], result["skipped"], result["rejected"]) == (1, 1, [])
    assert result["skips"][0]["line"] == 2 and "expired" in result["skips"][0]["reason"]

    again = runner.invoke(cli_app(), [*args, "--allow-skips"])
    assert again.exit_code == 0, again.output
    assert (json.loads(again.stdout)["imported"], json.loads(again.stdout)["duplicates"]) == (0, 1)
    (event,) = events_of(home)
    assert kinds(event) == (5_000, 4_000, 0, 0, 100) and event.body.usage.service_tier == "batch"
    assert event.event_time_us == T0 and event.idempotency_key == "anthropic-batch:job-1:msg_cli1"
