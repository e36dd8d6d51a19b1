"""Importers: turn usage records written by other tools into signed ``Action`` events, idempotently.

Kinds (``KINDS``): one family module each, which detects each record's format from its shape and documents every
field rule (which provider field is which token kind, cache inside or outside the input count).
    ``claude-code``  Claude Code workflow telemetry, ``wf_*.json`` (``ledger.sources.claude_code``).
    ``openai``       Chat Completions objects and streamed chunks with usage, Responses API objects, Batch output
                     lines, Usage API pages (aggregates) (``ledger.sources.openai``).
    ``anthropic``    Messages responses, Message Batches result lines, usage report pages (aggregates)
                     (``ledger.sources.anthropic``). Anthropic's ``input_tokens`` EXCLUDES the cache.
    ``litellm``      LiteLLM proxy spend logs as JSON, JSON lines or CSV (``ledger.sources.litellm``).
    ``otel``         OpenTelemetry GenAI spans: OTLP/JSON or OTLP protobuf, current and legacy attribute names,
                     agent attribution, aggregate spans not counted twice (``ledger.sources.otel``).

Attribution: a record that names the agent that made the call (OTel ``gen_ai.agent.name``, LiteLLM ``end_user``)
is written with ``Context.agent``; only a signer with a backfill grant may do that (``tokenledger import``
registers its signer with one), and every view counts the call under that agent.

Decisions
    * Provider: OTel spans name it (``gen_ai.provider.name``, else ``gen_ai.system``); OpenAI and
      Anthropic payloads are from that provider; workflow agents (and spans that name none) get it
      from the model name (``infer_provider``: claude -> anthropic, gpt / o1-o9 / text-embedding ->
      openai, gemini -> google). A name that matches none is recorded as provider ``"unknown"`` and
      still imported: the tokens were spent, and dropping them would break the run's sum. The price
      book has no ``unknown`` entries, so pricing such an event fails closed (never $0).
    * Workflow I/O split: the telemetry has one count per agent. It is recorded as
      ``input_tokens = tokens, output_tokens = 0`` with the label ``io_split=unknown``, so no reader
      can mistake it for a measured split.
    * Event time: from the record (OpenAI ``created`` in Unix seconds, OTel ``startTimeUnixNano``
      floored to microseconds). Records without one (all workflow files, Anthropic payloads) take
      the caller's ``event_time_us`` (the CLI's ``--time``); without it they are problems, and a
      ``claude-code`` import without it is refused up front. Never the wall clock, never a file's
      mtime: the same file must always give the same events.
    * Idempotency keys come from the source's identity: ``wf:{runId}:{entry index}``,
      ``openai:{id}``, ``anthropic:{id}``, ``otel:{traceId}:{spanId}`` (keys longer than an id
      may be are replaced by ``{prefix}:sha256:{hex}`` of themselves). Before emitting, the
      importer reads the keys its signer already has on the log (once per import), because the
      Emitter's idempotency window (``limits.IDEMPOTENCY_WINDOW_*``) is bounded and an import may
      replay records older than it; and because here a changed event time is a changed record
      (the Emitter lets a retry carry a later time). A key seen before with the same content is a
      duplicate; with different content it is a problem (the source changed since it was imported;
      the ledger is append-only, so the first version stands).

Invariants: a record is either emitted, counted as a duplicate, skipped with its place and reason (a non-usage
span, a stream chunk without usage, a failed batch request), or reported as an ``ImportProblem`` naming file, line
(JSON lines) or JSON path, field, value and reason. A bad record never stops the rest of its file; a file that is
not JSON is one problem. Never: turn a malformed count into 0 (a string ``"12.7"``, a float, a bool, NaN, a
negative, cache tokens above their total are all problems), guess an input/output split, or read the clock.

The parsing layer (``parse``, ``parse_workflow_run``, ``workflow_records``) is pure: bytes in,
records and problems out. ``import_files`` is the emitting layer: it reads files and the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ledger import limits
from ledger.errors import LogError, RejectCode, RejectError, ValidationError
from ledger.files import read_bounded
from ledger.limits import MAX_IMPORT_FILE_BYTES, MAX_IMPORT_FILES
from ledger.log import Log
from ledger.sdk.emitter import Emitter
from ledger.sources import anthropic, claude_code, litellm, openai, otel
from ledger.sources import records as rec
from ledger.sources.claude_code import parse_workflow_run, workflow_records
from ledger.sources.records import (
    Family,
    FileResult,
    ImportProblem,
    ImportRecord,
    ImportSummary,
    ParseResult,
    idempotency_key,
    infer_provider,
)
from ledger.wire import codec
from ledger.wire.events import Action, Context, Event, check_int

# -------------------------------------------------------------------------------- limits and names

FAMILIES: dict[str, Family] = {f.kind: f for f in (openai.FAMILY, anthropic.FAMILY, otel.FAMILY, litellm.FAMILY)}
KINDS = ("claude-code", *FAMILIES)
KEY_SCAN_RECORDS = 1_000  # log records read per request while collecting already-imported keys


DIRECTORY_PATTERNS: dict[str, tuple[str, ...]] = {"claude-code": ("wf_*.json",)} | {
    kind: f.patterns for kind, f in FAMILIES.items()}


# -------------------------------------------------------------------------------- small pure helpers


def check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind not in KINDS:  # the kinds are strings: refuses nothing more
        raise ValidationError("kind", kind, f"unknown import kind; kinds: {', '.join(KINDS)}")
    return kind


def check_import_time(kind: str, event_time_us: Any) -> int | None:
    """The fallback event time of an import: in range when given, and required for claude-code."""
    check_kind(kind)
    if event_time_us is not None:
        return check_int("time", event_time_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
    if kind == "claude-code":
        raise ValidationError("time", None, "workflow telemetry has no timestamps: give the event time of the "
                              "imported runs (--time ISO-8601 or microseconds)")
    return None



# -------------------------------------------------------------------------------- the pure entry point

def parse(kind: str, data: bytes | str, *, source: str, event_time_us: int | None = None) -> ParseResult:
    """Records and problems of one file's bytes. Pure: same input, same output.

    ``source`` names the file in problems; ``event_time_us`` is the time of records that carry none.
    """
    check_kind(kind)
    if event_time_us is not None:
        check_int("event_time_us", event_time_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if kind == "claude-code":
        return claude_code.parse_claude_code(raw, source, event_time_us)
    family = FAMILIES[kind]
    values, line_problems = family.values(raw, source)
    records: list[ImportRecord] = []
    problems = list(line_problems)
    skipped: list[ImportProblem] = []
    for line, prefix, value in values:
        try:
            units = family.expand(value, prefix)
        except ValidationError as e:
            problems.append(rec.problem(source, line, e))
            continue
        for path, unit in units:
            try:
                record = family.parse_one(unit, path, line, event_time_us)
            except ValidationError as e:
                problems.append(rec.problem(source, line, e))
                continue
            if isinstance(record, rec.Skip):
                skipped.append(ImportProblem(source, line, path or "record", "", record.reason))
            else:
                records.append(record)
    if family.finish is not None:
        records, more_problems, more_skips = family.finish(records, source)
        problems.extend(more_problems)
        skipped.extend(more_skips)
    problems.sort(key=lambda p: (p.line or 0,))  # stable: unreadable lines interleave with bad records
    skipped.sort(key=lambda p: (p.line or 0,))
    return ParseResult(tuple(records), tuple(problems), tuple(skipped))


# -------------------------------------------------------------------------------- the emitting layer


def expand_paths(kind: str, paths: Sequence[str | Path]) -> list[Path]:
    """Files to import: files as given, directories searched recursively for the kind's patterns
    (``wf_*.json`` for claude-code; ``*.json``, ``*.jsonl``, ``*.ndjson`` otherwise), sorted, each once."""
    check_kind(kind)
    if not paths:
        raise ValidationError("paths", [], "give at least one file or directory")
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = {p for pattern in DIRECTORY_PATTERNS[kind] for p in path.rglob(pattern) if p.is_file()}
            files.extend(sorted(found))
        elif path.exists():
            files.append(path)
        else:
            raise ValidationError("paths", str(path), "does not exist")
    unique = list(dict.fromkeys(files))
    if not unique:
        patterns = ", ".join(DIRECTORY_PATTERNS[kind])
        raise ValidationError("paths", [str(p) for p in paths],
                              f"no files to import (directories are searched for {patterns})")
    if len(unique) > MAX_IMPORT_FILES:
        raise ValidationError("paths", len(unique), f"more than {MAX_IMPORT_FILES:,} files in one import")
    return unique


def _signer_events(log: Log, topic: str, signer_id: str) -> Iterator[codec.DecodedEvent]:
    """Decoded events of ``signer_id`` on the log, in log order. Records that do not decode are
    left to ``verify`` (it names them); they vouch for nothing here."""
    read_key = getattr(log, "read_key", None)
    if read_key is None:
        raise LogError("this log backend cannot look up a signer's records", url=getattr(log, "url", "?"))
    key_bytes = signer_id.encode("utf-8")
    after = -1
    while True:
        records = read_key(topic, key_bytes, after, KEY_SCAN_RECORDS)
        if not records:
            return
        for record in records:
            after = record.offset
            try:
                batch = codec.decode_batch(record.value)
                decoded = [codec.decode_event(raw) for raw in batch.events] if batch.signer_id == signer_id else []
            except RejectError:
                continue
            yield from decoded


def imported_keys(log: Log, topic: str, signer_id: str) -> dict[str, bytes]:
    """Idempotency key -> SHA-256 of the event content, for every keyed event of ``signer_id`` on the log."""
    return {d.event.idempotency_key: hashlib.sha256(d.raw[d.content_offset:]).digest()
            for d in _signer_events(log, topic, signer_id) if d.event.idempotency_key is not None}


def imported_events(log: Log, topic: str, signer_id: str) -> Iterator[Event]:
    """The events ``signer_id`` has on the log, in log order (reports built from the ledger)."""
    return (d.event for d in _signer_events(log, topic, signer_id))


def _content_digest(record: ImportRecord) -> bytes:
    return hashlib.sha256(codec.encode_content(record.event_time_us, record.event_context, record.body)).digest()


def _agent_field(record: ImportRecord) -> str:
    return rec.join(record.path, "agent") if record.path else "agent"


def _read_file(path: Path) -> tuple[int, bytes | None, ImportProblem | None]:
    """(size in bytes, contents or None, the problem when it cannot be imported)."""
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_FILE_BYTES:
            return size, None, ImportProblem(str(path), None, "file", f"{size:,} bytes",
                                             f"is larger than {MAX_IMPORT_FILE_BYTES:,} bytes; split it")
        # bounded, and only regular files: /dev/zero or a FIFO would otherwise be read until memory runs out
        data = read_bounded(path, MAX_IMPORT_FILE_BYTES, field="file", limit_name="MAX_IMPORT_FILE_BYTES")
        return len(data), data, None
    except ValidationError as e:
        return 0, None, ImportProblem(str(path), None, "file", rec.short(str(path)), e.reason)
    except OSError as e:
        return 0, None, ImportProblem(str(path), None, "file", rec.short(str(path)),
                                      f"cannot be read: {e.strerror or e}")


def import_files(kind: str, paths: Sequence[str | Path], emitter: Emitter, *, event_time_us: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 known_keys: Mapping[str, bytes | None] | Collection[str] | None = None) -> ImportSummary:
    """Parse ``paths`` and emit their records through ``emitter`` (flushed before returning).

    ``known_keys``: keys already imported by this signer (key -> content digest, or bare keys when
    the content is not known); by default they are read from the emitter's log. ``progress`` is
    called with the byte size of each file once it is done.
    """
    check_import_time(kind, event_time_us)
    files = expand_paths(kind, paths)
    if known_keys is None:
        known: Mapping[str, bytes | None] = imported_keys(emitter.log, emitter.topic, emitter.signer_id)
    elif isinstance(known_keys, Mapping):
        known = known_keys
    else:
        known = dict.fromkeys(known_keys)
    emitted: dict[str, tuple[int, Context, Action]] = {}  # this import's own keys, against in-input repeats
    per_file: list[FileResult] = []
    skipped: list[ImportProblem] = []
    rejected: list[ImportProblem] = []
    for path in files:
        imported = duplicates = 0
        file_skips: tuple[ImportProblem, ...] = ()
        file_rejected: list[ImportProblem] = []
        size, data, problem = _read_file(path)
        if problem is not None:
            file_rejected.append(problem)
        if data is not None:
            result = parse(kind, data, source=str(path), event_time_us=event_time_us)
            file_rejected.extend(result.problems)
            file_skips = result.skipped
            for record in result.records:
                outcome = _emit_one(record, emitter, known, emitted, str(path))
                if outcome == "imported":
                    imported += 1
                elif outcome == "duplicate":
                    duplicates += 1
                else:
                    file_rejected.append(outcome)
        per_file.append(FileResult(str(path), imported, duplicates, len(file_skips), len(file_rejected)))
        skipped.extend(file_skips)
        rejected.extend(file_rejected)
        if progress is not None:
            progress(size)
    emitter.flush()
    return ImportSummary(kind, len(files), sum(f.imported for f in per_file), sum(f.duplicates for f in per_file),
                         tuple(skipped), tuple(rejected), tuple(per_file))


def _emit_one(record: ImportRecord, emitter: Emitter, known: Mapping[str, bytes | None],
              emitted: dict[str, tuple[int, Context, Action]],
              source: str) -> Literal["imported", "duplicate"] | ImportProblem:
    """Emit ``record`` unless its key was imported before (alike: a duplicate; not alike: a problem)."""
    key = record.idempotency_key
    context = record.event_context
    content = (record.event_time_us, context, record.body)
    if key in emitted or key in known:
        same = emitted[key] == content if key in emitted else known[key] in (None, _content_digest(record))
        if same:
            return "duplicate"
        return ImportProblem(source, record.line, record.path or "record", rec.short(key),
                             "was already imported with different content (its usage, context or event time "
                             "differ: the source, or --time, changed since); the ledger keeps the first version")
    try:
        emitter.emit(record.body, event_time_us=record.event_time_us, context=context, idempotency_key=key)
    except ValidationError as e:
        return ImportProblem(source, record.line, rec.join(record.path, e.field), rec.short(e.value), e.reason)
    except RejectError as e:
        if e.code is RejectCode.NOT_GRANTED and e.evidence.get("field") == "context.agent":
            # naming the agent that made the call needs the signer's backfill grant: this record is not imported
            return ImportProblem(source, record.line, _agent_field(record), rec.short(record.agent),
                                 f"{e.reason}; {e.hint}")
        if e.code is not RejectCode.CLOCK_SKEW:
            raise  # the signer's key itself is refused: nothing of this import would be accepted
        # readers would quarantine this record's time (outside the skew window, beyond any backfill grant): not
        # imported, and named like any bad record; the rest of the import goes on
        ev = e.evidence
        return ImportProblem(source, record.line, rec.join(record.path, "event_time_us"), str(ev["claimed_us"]),
                             f"{e.reason}: accepted from {ev['earliest_us']} to {ev['latest_us']} (append time "
                             f"~{ev['append_time_us']}); historical telemetry needs a backfill grant "
                             "(tokenledger agent grant SIGNER backfill --max-age 30d)")
    emitted[key] = content
    return "imported"


__all__ = [
    "DIRECTORY_PATTERNS",
    "KINDS",
    "MAX_IMPORT_FILES",
    "MAX_IMPORT_FILE_BYTES",
    "ImportProblem",
    "ImportRecord",
    "ImportSummary",
    "ParseResult",
    "check_import_time",
    "check_kind",
    "expand_paths",
    "idempotency_key",
    "import_files",
    "imported_events",
    "imported_keys",
    "infer_provider",
    "parse",
    "parse_workflow_run",
    "workflow_records",
]
