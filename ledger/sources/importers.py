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
records and problems out. ``import_files`` (files) and ``import_bytes`` (one input in memory, e.g. an OTLP/HTTP body
with its declared format) are the emitting layer: both run each input through the same step (parse, the caller's
``admit`` rule, idempotency against ``KnownKeys``, emit) and flush before returning. ``importer_key`` and
``importer_emitter`` give the signer they emit as (``tokenledger import`` and the service's ``POST /v1/traces``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ledger import limits
from ledger.errors import LogError, RejectCode, RejectError, ValidationError
from ledger.files import read_bounded
from ledger.integrity.keys import SigningKey, save_key
from ledger.limits import MAX_IMPORT_FILE_BYTES, MAX_IMPORT_FILES
from ledger.log import Log
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home, check_signer_id
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
from ledger.units import US_PER_DAY
from ledger.wire import codec
from ledger.wire.events import AgentRegistered, Event, Grant, check_int

# -------------------------------------------------------------------------------- limits and names

FAMILIES: dict[str, Family] = {f.kind: f for f in (openai.FAMILY, anthropic.FAMILY, otel.FAMILY, litellm.FAMILY)}
KINDS = ("claude-code", *FAMILIES)
KEY_SCAN_RECORDS = 1_000  # log records read per request while collecting already-imported keys
DEFAULT_SIGNER = "importer"
# the backfill grant the importer signer gets when it is registered (``importer_key``): records up to 30 days old, and
# the right to name the agent that made each call (Context.agent); older history needs `agent grant SIGNER backfill`
IMPORTER_BACKFILL_US = 30 * US_PER_DAY


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

def check_format(kind: str, format: Any) -> str | None:
    """A declared input format of ``kind`` (None: detected from the bytes); ``ValidationError`` for one it has not."""
    check_kind(kind)
    if format is None:
        return None
    formats = FAMILIES[kind].formats if kind in FAMILIES else {}
    if not isinstance(format, str) or format not in formats:
        raise ValidationError("format", format, f"is not a format the {kind} importer reads as declared; formats: "
                                                f"{', '.join(formats) or 'none (it detects the format)'}")
    return format


def parse(kind: str, data: bytes | str, *, source: str, event_time_us: int | None = None,
          format: str | None = None) -> ParseResult:
    """Records and problems of one file's bytes. Pure: same input, same output.

    ``source`` names the file in problems; ``event_time_us`` is the time of records that carry none. ``format``: the
    encoding the sender declared (one of the family's ``formats``, e.g. otel ``json`` / ``protobuf`` for an OTLP/HTTP
    body), read as exactly that: bytes that are not one input of it raise ``ValidationError`` (field ``body``) and
    nothing is read; None detects the format from the bytes, and bytes that read as nothing are a problem.
    """
    check_format(kind, format)
    if event_time_us is not None:
        check_int("event_time_us", event_time_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if kind == "claude-code":
        return claude_code.parse_claude_code(raw, source, event_time_us)
    family = FAMILIES[kind]
    values, line_problems = (family.values if format is None else family.formats[format])(raw, source)
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


@dataclass
class KnownKeys:
    """The idempotency keys a signer has on the log: key -> SHA-256 of its event's content (None: only the key is
    known, the content not), and the keys the imports using it emitted since.

    Read once (``KnownKeys.read``) and kept current by the imports given it, so that a long-lived importer (the
    service's OTLP receiver) does not scan the signer's events on the log for every input. That holds while one
    emitter of the signer is open and every import of it goes through this object: one writer per chain, so nobody
    else appends the signer's events. An import that raises may have noted keys its emitter never appended: read
    them again from the log then (with a new emitter, which reconciles its chain with the log).
    """

    digests: dict[str, bytes | None] = field(default_factory=dict)

    @classmethod
    def read(cls, log: Log, topic: str, signer_id: str) -> KnownKeys:
        return cls(dict(imported_keys(log, topic, signer_id)))

    @classmethod
    def given(cls, known: Mapping[str, bytes | None] | Collection[str]) -> KnownKeys:
        """Keys a caller already knows (key -> digest, or bare keys when the content is not known)."""
        return cls(dict(known) if isinstance(known, Mapping) else dict.fromkeys(known))

    def __len__(self) -> int:
        return len(self.digests)


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


# a caller's rule over each parsed record before it is emitted: the record to emit (perhaps attributed to an agent),
# or ValidationError (naming the record's field) to leave it out as a problem
Admit = Callable[[ImportRecord], ImportRecord]


@dataclass(frozen=True, slots=True)
class _Input:
    """What one input (a file, a request body) gave."""

    result: FileResult
    skipped: tuple[ImportProblem, ...]
    rejected: tuple[ImportProblem, ...]


def _import_input(kind: str, source: str, data: bytes | None, problem: ImportProblem | None, emitter: Emitter,
                  known: KnownKeys, event_time_us: int | None, format: str | None, admit: Admit | None) -> _Input:
    """Parse one input's bytes and emit its records (not flushed): the shared step of ``import_files`` and
    ``import_bytes``. ``problem``: why the input could not be read (then ``data`` is None)."""
    imported = duplicates = 0
    skips: tuple[ImportProblem, ...] = ()
    rejected: list[ImportProblem] = [] if problem is None else [problem]
    if data is not None:
        result = parse(kind, data, source=source, event_time_us=event_time_us, format=format)
        rejected.extend(result.problems)
        skips = result.skipped
        for record in result.records:
            admitted = _admit(record, admit, source)
            outcome = _emit_one(admitted, emitter, known, source) if isinstance(admitted, ImportRecord) else admitted
            if outcome == "imported":
                imported += 1
            elif outcome == "duplicate":
                duplicates += 1
            else:
                rejected.append(outcome)
    return _Input(FileResult(source, imported, duplicates, len(skips), len(rejected)), skips, tuple(rejected))


def _admit(record: ImportRecord, admit: Admit | None, source: str) -> ImportRecord | ImportProblem:
    if admit is None:
        return record
    try:
        return admit(record)
    except ValidationError as e:
        return ImportProblem(source, record.line, e.field, rec.short(e.value), e.reason)


def _summary(kind: str, inputs: Sequence[_Input]) -> ImportSummary:
    per_file = tuple(i.result for i in inputs)
    return ImportSummary(kind, len(inputs), sum(f.imported for f in per_file), sum(f.duplicates for f in per_file),
                         tuple(p for i in inputs for p in i.skipped), tuple(p for i in inputs for p in i.rejected),
                         per_file)


def import_files(kind: str, paths: Sequence[str | Path], emitter: Emitter, *, event_time_us: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 known_keys: Mapping[str, bytes | None] | Collection[str] | KnownKeys | None = None) -> ImportSummary:
    """Parse ``paths`` and emit their records through ``emitter`` (flushed before returning).

    ``known_keys``: keys already imported by this signer (key -> content digest, or bare keys when
    the content is not known; a ``KnownKeys`` is kept current with what this import emits); by default they are
    read from the emitter's log. ``progress`` is called with the byte size of each file once it is done.
    """
    check_import_time(kind, event_time_us)
    files = expand_paths(kind, paths)
    known = _known(emitter, known_keys)
    inputs: list[_Input] = []
    for path in files:
        size, data, problem = _read_file(path)
        inputs.append(_import_input(kind, str(path), data, problem, emitter, known, event_time_us, None, None))
        if progress is not None:
            progress(size)
    emitter.flush()
    return _summary(kind, inputs)


def import_bytes(kind: str, data: bytes, emitter: Emitter, *, source: str, format: str | None = None,
                 event_time_us: int | None = None,
                 known_keys: Mapping[str, bytes | None] | Collection[str] | KnownKeys | None = None,
                 admit: Admit | None = None) -> ImportSummary:
    """Import one input given as bytes (an HTTP request body), as ``import_files`` imports one file: the same parse,
    the same idempotency (keys), the same problems and skips; flushed (durably appended) before returning.

    ``source`` names the input in problems. ``format``: the encoding its sender declared (see ``parse``): bytes that
    are not one input of it raise ``ValidationError`` on ``body`` before anything is emitted. ``known_keys`` as for
    ``import_files``. ``admit``: the caller's rule over each record before it is emitted (see ``Admit``); a record
    it refuses is a problem of the summary, the others are imported. Inputs over
    ``limits.MAX_IMPORT_FILE_BYTES`` are refused (``ValidationError`` on ``body``), as files over it are.
    """
    check_import_time(kind, event_time_us)
    check_format(kind, format)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValidationError("body", rec.short(data), "must be bytes")
    if len(data) > MAX_IMPORT_FILE_BYTES:
        raise ValidationError("body", f"{len(data):,} bytes", f"is larger than {MAX_IMPORT_FILE_BYTES:,} bytes "
                                                             "(limits.MAX_IMPORT_FILE_BYTES)")
    known = _known(emitter, known_keys)
    # the whole input is parsed before its first record is emitted: bytes not of the declared format raise there
    one = _import_input(kind, source, bytes(data), None, emitter, known, event_time_us, format, admit)
    emitter.flush()
    return _summary(kind, [one])


def _known(emitter: Emitter, known_keys: Mapping[str, bytes | None] | Collection[str] | KnownKeys | None) -> KnownKeys:
    if known_keys is None:
        return KnownKeys.read(emitter.log, emitter.topic, emitter.signer_id)
    return known_keys if isinstance(known_keys, KnownKeys) else KnownKeys.given(known_keys)


def _emit_one(record: ImportRecord, emitter: Emitter, known: KnownKeys,
              source: str) -> Literal["imported", "duplicate"] | ImportProblem:
    """Emit ``record`` unless its key was imported before (alike: a duplicate; not alike: a problem)."""
    key = record.idempotency_key
    context = record.event_context
    digest = _content_digest(record)
    if key in known.digests:
        if known.digests[key] in (None, digest):
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
    known.digests[key] = digest
    return "imported"


# -------------------------------------------------------------------------------- the importer signer


def importer_key(home: Home, log: Log, signer: str = DEFAULT_SIGNER) -> tuple[SigningKey, bool]:
    """The importer signer's key, and whether it was registered just now: a home without one gets a new key,
    registered by the operator (``agent_registered``, attribute ``purpose=importer``) with a
    ``IMPORTER_BACKFILL_US`` backfill grant, both appended before the key file is written (a failed registration
    never leaves a key that signs events nobody trusts). ``tokenledger import`` and the service's OTLP receiver
    sign with it."""
    check_signer_id(signer, "signer")
    path = home.key_path(signer)
    if path.exists():
        return home.load_key(signer), False
    key = SigningKey.generate(signer)
    with Emitter.for_operator(home, log) as em:
        em.emit(AgentRegistered(agent_id=signer, key_id=key.key_id, public_key=key.public.raw,
                                attributes=(("purpose", "importer"),)))
        # an importer records other agents' past calls: history and attribution are its job
        em.emit(Grant(agent_id=signer, capability="backfill", max_age_us=IMPORTER_BACKFILL_US))
    save_key(path, key)
    return key, True


def importer_emitter(home: Home, log: Log, key: SigningKey, **options: Any) -> Emitter:
    """An emitter signing imports with ``key`` on ``home``'s topic, its chain state in the home, flushed by the
    import (no background flusher), checking the key ring as readers build it (never "imported" for what readers
    reject). ``options`` go to ``Emitter`` (e.g. ``lock_timeout_s``)."""
    options.setdefault("background_flush", False)
    return Emitter(log, key, topic=home.topic, state_dir=home.state_dir, control_topic=home.control_topic,
                   anchors=home.anchors(), **options)


__all__ = [
    "DEFAULT_SIGNER",
    "DIRECTORY_PATTERNS",
    "IMPORTER_BACKFILL_US",
    "KINDS",
    "MAX_IMPORT_FILES",
    "MAX_IMPORT_FILE_BYTES",
    "Admit",
    "ImportProblem",
    "ImportRecord",
    "ImportSummary",
    "KnownKeys",
    "ParseResult",
    "check_format",
    "check_import_time",
    "check_kind",
    "expand_paths",
    "idempotency_key",
    "import_bytes",
    "import_files",
    "imported_events",
    "imported_keys",
    "importer_emitter",
    "importer_key",
    "infer_provider",
    "parse",
    "parse_workflow_run",
    "workflow_records",
]
