"""``import_bytes``: one input in memory with its declared format (an OTLP/HTTP body) goes through the same step as a
file of ``import_files``; ``KnownKeys`` kept current across imports; ``admit`` rules; ``importer_key`` registers the
signer once. On a real home with a real SQLite log, read back from the log.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.importing import events_of, importer, importer_home, kinds, log_ends, run_import, write

from ledger.errors import ValidationError
from ledger.sdk.home import Home
from ledger.sources import otel
from ledger.sources.importers import (
    DEFAULT_SIGNER,
    IMPORTER_BACKFILL_US,
    ImportRecord,
    KnownKeys,
    check_format,
    import_bytes,
    importer_emitter,
    importer_key,
    parse,
)
from ledger.testing.homes import T0, make_home
from ledger.testing.samples import otlp_attrs

TRACE = "7c" * 16


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return importer_home(tmp_path, backfill=True)  # as `tokenledger import` registers its signer


def request(*spans: tuple[str, dict[str, Any]], parent: str = "") -> bytes:
    """One OTLP/JSON export of ``spans`` (span id, attributes) in one trace."""
    rendered = [{"traceId": TRACE, "spanId": span_id, "parentSpanId": parent, "name": "chat",
                 "startTimeUnixNano": str(T0 * 1000 + i), "attributes": otlp_attrs(attrs)}
                for i, (span_id, attrs) in enumerate(spans)]
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": rendered}]}]}).encode()


def usage(input_tokens: int, output_tokens: int, **more: Any) -> dict[str, Any]:
    return {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4.1",
            "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
            **{k.replace("__", "."): v for k, v in more.items()}}


def test_bytes_with_a_declared_format_import_as_the_same_file_does(home, tmp_path):
    body = request(("a" * 16, usage(700, 70, gen_ai__agent__name="alice")), ("b" * 16, usage(80, 8)),
                   ("c" * 16, {"http.request.method": "GET"}))
    with importer(home) as em:
        summary = import_bytes("otel", body, em, source="body", format=otel.JSON_FORMAT)
    assert (summary.imported, summary.duplicates, len(summary.skipped), summary.rejected) == (2, 0, 1, ())
    assert [(e.context.agent, kinds(e.body.usage)) for e in events_of(home)] == [
        ("alice", (700, 70, 0, 0, 0)), (None, (80, 8, 0, 0, 0))]
    # the same bytes as a file: the same records, so nothing new
    ends = log_ends(home)
    again = run_import(home, "otel", [write(tmp_path / "trace.json", body)])
    assert (again.imported, again.duplicates) == (0, 2) and log_ends(home) == ends


def test_a_declared_format_reads_only_that_format_and_refuses_the_rest_whole(home):
    as_json = request(("a" * 16, usage(1, 1)))
    with importer(home) as em:
        before = log_ends(home)
        with pytest.raises(ValidationError) as e:
            import_bytes("otel", as_json, em, source="body", format=otel.PROTOBUF_FORMAT)
        assert e.value.field == "body" and "ExportTraceServiceRequest (protobuf)" in e.value.reason
        for bad, field in ((b"[]", "body"), (b"{", "body"), (b'{"resourceSpans": 3}', "body.resourceSpans")):
            with pytest.raises(ValidationError) as e:
                import_bytes("otel", bad, em, source="body", format=otel.JSON_FORMAT)
            assert e.value.field == field
        assert log_ends(home) == before
    # undeclared, the file importer detects JSON lines of bare spans; declared JSON is one request object only
    lines = json.dumps({"traceId": TRACE, "spanId": "d" * 16, "startTimeUnixNano": str(T0 * 1000),
                        "attributes": usage(5, 1)}).encode() + b"\n"
    assert len(parse("otel", lines + lines, source="f").records) == 2
    with pytest.raises(ValidationError):
        parse("otel", lines + lines, source="body", format=otel.JSON_FORMAT)
    # the empty protobuf request is a request with no spans
    assert parse("otel", b"", source="body", format=otel.PROTOBUF_FORMAT).records == ()


def test_formats_are_checked_per_kind():
    assert check_format("otel", None) is None and check_format("otel", "protobuf") == "protobuf"
    for kind, fmt in (("otel", "yaml"), ("openai", "json"), ("claude-code", "json"), ("otel", 1)):
        with pytest.raises(ValidationError) as e:
            check_format(kind, fmt)
        assert e.value.field == "format"


def test_known_keys_are_read_once_and_kept_current(home):
    with importer(home) as em:
        known = KnownKeys.read(em.log, em.topic, em.signer_id)
        assert len(known) == 0
        first = import_bytes("otel", request(("a" * 16, usage(10, 1))), em, source="1", format="json",
                             known_keys=known)
        assert first.imported == 1 and len(known) == 1
        # the second import learns the first one's key from the object, not from the log
        second = import_bytes("otel", request(("a" * 16, usage(10, 1)), ("b" * 16, usage(20, 2))), em, source="2",
                              format="json", known_keys=known)
        assert (second.imported, second.duplicates) == (1, 1) and len(known) == 2
        # the same key with other content: the first version stands
        changed = import_bytes("otel", request(("b" * 16, usage(21, 2))), em, source="3", format="json",
                               known_keys=known)
        assert changed.imported == 0 and len(changed.rejected) == 1
        assert changed.rejected[0].reason.startswith("was already imported with different content")
    log = home.open_log()
    try:
        assert KnownKeys.read(log, home.topic, DEFAULT_SIGNER).digests == known.digests
    finally:
        log.close()


def test_admit_attributes_or_refuses_each_record_before_it_is_emitted(home):
    def only_alice(record: ImportRecord) -> ImportRecord:
        if record.agent is None:
            return replace(record, agent="alice")
        if record.agent != "alice":
            raise ValidationError(record.path + ".agent", record.agent, "not alice's")
        return record

    body = request(("a" * 16, usage(1, 1)), ("b" * 16, usage(2, 2, gen_ai__agent__name="bob")),
                   ("c" * 16, usage(3, 3, gen_ai__agent__name="alice")))
    with importer(home) as em:
        summary = import_bytes("otel", body, em, source="body", format="json", admit=only_alice)
    assert summary.imported == 2 and [(p.field, p.value, p.reason) for p in summary.rejected] == [
        ("resourceSpans[0].scopeSpans[0].spans[1].agent", "'bob'", "not alice's")]
    assert sorted((e.context.agent, kinds(e.body.usage)) for e in events_of(home)) == [
        ("alice", (1, 1, 0, 0, 0)), ("alice", (3, 3, 0, 0, 0))]


def test_importer_key_registers_the_signer_once_with_its_backfill_grant(tmp_path):
    home = make_home(tmp_path / "home", agents=("alice",))
    log = home.open_log()
    try:
        key, registered = importer_key(home, log)
        assert registered and key.signer_id == DEFAULT_SIGNER and home.key_path(DEFAULT_SIGNER).exists()
        again, registered_again = importer_key(home, log)
        assert not registered_again and again.key_id == key.key_id
        # the grant lets it name the agent of each call, and record history up to IMPORTER_BACKFILL_US old
        body = request(("a" * 16, usage(4, 2, gen_ai__agent__name="alice")))
        with importer_emitter(home, log, key) as em:
            summary = import_bytes("otel", body, em, source="body", format="json")
        assert summary.imported == 1 and summary.rejected == ()
        assert [e.context.agent for e in events_of(home)] == ["alice"]
        assert IMPORTER_BACKFILL_US > 0
    finally:
        log.close()
