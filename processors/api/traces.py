"""``POST /v1/traces``: an OTLP/HTTP trace receiver. Point an OpenTelemetry Collector (``otlphttp`` exporter) or an
SDK's OTLP/HTTP span exporter at ``<service>/v1/traces`` with ``Authorization: Bearer <token>``, and each GenAI span
that reports token usage becomes one signed ``llm.call`` event.

Request (OTLP/HTTP, https://opentelemetry.io/docs/specs/otlp/#otlphttp)
    * ``Content-Type: application/x-protobuf``: one binary ``ExportTraceServiceRequest``; ``application/json``: one
      OTLP/JSON ``ExportTraceServiceRequest`` object (ids in hex). Parameters (``; charset=utf-8``) are ignored; any
      other type: 415.
    * ``Content-Encoding: gzip`` (or none / ``identity``); any other coding: 415. The body as received and again once
      decompressed may hold at most ``limits.MAX_OTLP_BODY_BYTES``: beyond, 413 (decompression stops there, so a
      small gzip bomb costs no more than that). Not gzip, or truncated: 400.
    * A body that is not one request of its declared type (not protobuf, not JSON, JSON that is not an object, a
      ``resourceSpans`` that is not an array): 400 with ``field`` ``body``; nothing of it is imported.

What is imported: exactly what ``tokenledger import otel`` imports from a file (``ledger.sources.otel`` documents
every field rule: which attribute is which token kind, the cache rule, legacy names, aggregate spans, attribution),
through the same code: ``ledger.sources.importers.import_bytes`` with the declared format. Signed by the same
signer: ``importer`` (``importers.importer_key``: registered by the operator on first use, with its 30-day backfill
grant), so a span's agent goes to ``Context.agent``, and a span exported here and imported from a file is one event.

Who may send what (the choice this module makes)
    * An operator token may import any span, attributed as the span says (``gen_ai.agent.name`` / ``gen_ai.agent.id``
      of the span, its nearest ancestor in the request, or its resource), or to no one when it says nothing.
    * An agent token (scope ``ingest``) may import only its own agent's spans: a span attributed to another agent is
      rejected (a rejected span of the partial success, field ``<span path>.agent``), and a span attributed to no one
      is attributed to the token's agent. Its other spans are imported. The reason: the importer signer vouches for
      the attribution, and an agent's credentials must not let it charge its spend to another agent.

Response (200, the request's content type): an ``ExportTraceServiceResponse``, sent only once every imported span
is durably appended (the import flushes its emitter before returning). ``partial_success`` is set when any span was
not recorded: ``rejected_spans`` counts the rejected ones (a malformed span, one attributed to another agent, one
already imported with other content; a resource or scope whose structure does not read counts once), and
``error_message`` lists each rejection (span path, value, reason; the first ``limits.MAX_PROBLEM_ROWS``) and the
reasons spans were skipped with their counts. Skipped spans (no ``gen_ai.usage.*`` attributes: HTTP, tool or agent
spans; an aggregate whose totals match the calls beneath it) are accepted, not rejected: nothing in them is a call
to record, and sending them again would change nothing. Re-exporting a request is idempotent: each span's key is
``otel:{traceId}:{spanId}`` and a span already on the log is counted as already there, not again.

Errors are problem+json like every endpoint of the service (OTLP/HTTP suggests a ``google.rpc.Status`` body;
exporters act on the status code alone): 400 undecodable, 401/403 token, 413 too large, 415 type or coding, 429
rate (``Retry-After``), 503 log unavailable or the importer's chain held by another process (``Retry-After``: a
collector retries these), 422 the importer's key refused by readers.

One process holds the importer's chain (its emitter, opened on the first export, holds the signer's lock until the
service stops): while ``serve`` runs, ``tokenledger import`` with the default signer waits for it and then refuses;
route every OTLP export of one home to one service instance. Exports are imported one at a time (one chain).
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, replace

from fastapi import APIRouter, Depends
from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import Request
from starlette.responses import Response

from ledger import limits
from ledger.errors import ChainForkError, ValidationError
from ledger.sdk.emitter import Emitter
from ledger.sources import otel
from ledger.sources import records as rec
from ledger.sources.importers import (
    Admit,
    ImportRecord,
    ImportSummary,
    KnownKeys,
    import_bytes,
    importer_emitter,
    importer_key,
)
from processors.api.auth import Principal, require
from processors.api.metrics import INGEST_EVENTS
from processors.api.problems import Problem
from processors.api.state import Service, service

PROTOBUF_MEDIA = "application/x-protobuf"
JSON_MEDIA = "application/json"
FORMATS = {PROTOBUF_MEDIA: otel.PROTOBUF_FORMAT, JSON_MEDIA: otel.JSON_FORMAT}  # content type -> importer format
CODINGS = ("gzip", "identity")  # Content-Encoding values read; none given is identity
SOURCE = "POST /v1/traces"  # the input's name in problems
# how long an export waits for another process (a `tokenledger import`) to release the importer's chain before it
# answers 503: an import of a file takes seconds; a collector retries a 503 after Retry-After anyway
IMPORTER_LOCK_WAIT_S = 5.0
RETRY_AFTER_S = 5
EXTRA_NAME = "traces.importer"  # Service.extras key of the TraceImporter

router = APIRouter(tags=["telemetry"])
log = logging.getLogger("tokenledger.serve")


# ------------------------------------------------------------------------------------ the request body


@dataclass(frozen=True, slots=True)
class OtlpBody:
    """A request body as received (not yet decompressed) and how its sender encoded it."""

    media: str  # PROTOBUF_MEDIA or JSON_MEDIA
    coding: str  # one of CODINGS
    data: bytes


def media_type(header: str | None) -> str:
    """The OTLP content type of a ``Content-Type`` header (parameters ignored); 415 for any other."""
    media = (header or "").split(";", 1)[0].strip().lower()
    if media not in FORMATS:
        raise Problem(415, "Unsupported media type", code="unsupported_media_type", field="Content-Type",
                      value=header, detail=f"OTLP/HTTP traces are {PROTOBUF_MEDIA} or {JSON_MEDIA}")
    return media


def content_coding(header: str | None) -> str:
    """The ``Content-Encoding`` of a body (none: identity); 415 for one not read here."""
    coding = (header or "identity").strip().lower()
    if coding not in CODINGS:
        raise Problem(415, "Unsupported media type", code="unsupported_content_encoding", field="Content-Encoding",
                      value=header, detail=f"bodies may be sent as {' or '.join(CODINGS)}")
    return coding


def _too_large(size: str) -> Problem:
    return Problem(413, "Too large", code="oversized", field="body", value=size,
                   detail=f"an OTLP export may hold at most {limits.MAX_OTLP_BODY_BYTES:,} bytes, as sent and "
                          "decompressed (limits.MAX_OTLP_BODY_BYTES): export smaller batches",
                   limit=limits.MAX_OTLP_BODY_BYTES)


async def otlp_body(request: Request) -> OtlpBody:
    """The body, read up to ``limits.MAX_OTLP_BODY_BYTES`` (413 beyond), after its headers were checked (415)."""
    media = media_type(request.headers.get("content-type"))
    coding = content_coding(request.headers.get("content-encoding"))
    declared = (request.headers.get("content-length") or "").strip()
    # the server checked it is a number; its length first, so no absurd digit string is converted
    if declared.isdigit() and (len(declared) > len(str(limits.MAX_OTLP_BODY_BYTES))
                               or int(declared) > limits.MAX_OTLP_BODY_BYTES):
        raise _too_large(f"Content-Length {declared[:40]}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.MAX_OTLP_BODY_BYTES:  # a chunked body says no length up front
            raise _too_large(f"more than {limits.MAX_OTLP_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    return OtlpBody(media, coding, b"".join(chunks))


def gunzip(data: bytes, limit: int = limits.MAX_OTLP_BODY_BYTES) -> bytes:
    """``data`` (gzip, one member or several in a row) decompressed, at most ``limit`` bytes of it: 413 beyond,
    without decompressing further. Not gzip, truncated, or followed by anything that is not: ValidationError."""
    out = bytearray()
    rest = data
    while True:
        member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # 16+: the gzip header and trailer, checked
        try:
            out += member.decompress(rest, limit + 1 - len(out))
        except zlib.error as e:
            raise ValidationError("body", rec.short(rest[:40]), f"is not gzip (Content-Encoding: gzip): {e}") from None
        if len(out) > limit:
            raise _too_large(f"more than {limit:,} bytes decompressed")
        if not member.eof:
            raise ValidationError("body", f"{len(data):,} bytes", "is truncated gzip (Content-Encoding: gzip)")
        rest = member.unused_data
        if not rest:
            return bytes(out)


def decoded(body: OtlpBody) -> bytes:
    return gunzip(body.data) if body.coding == "gzip" else body.data


# ------------------------------------------------------------------------------------ who may import what


def agent_rule(agent: str) -> Admit:
    """The import rule of an agent token (see the module docstring): its own spans, and unattributed ones as its."""

    def admit(record: ImportRecord) -> ImportRecord:
        if record.agent is None:
            return replace(record, agent=agent)
        if record.agent != agent:
            raise ValidationError(rec.join(record.path, "agent") if record.path else "agent", record.agent,
                                  f"the span is attributed to agent {record.agent!r}, and this token imports only "
                                  f"agent {agent!r}'s spans (or unattributed ones, as {agent!r}'s)")
        return record

    return admit


def import_rule(who: Principal) -> Admit | None:
    """None (every span as it is attributed) for an operator token; ``agent_rule`` for an agent token."""
    if who.operator:
        return None
    if who.agent is None:  # an agent token always names its agent: refuse rather than import unchecked
        raise Problem(403, "Forbidden", code="forbidden_agent", detail="this token names no agent")
    return agent_rule(who.agent)


# ------------------------------------------------------------------------------------ the importer signer


class TraceImporter:
    """The service's ``importer`` emitter and the keys its chain holds, opened on the first export and kept open
    (one writer per chain: this process), so an export costs its own spans, not a scan of the signer's log.

    Exports run one at a time (one chain, and ``KnownKeys`` is current only between imports). After an import that
    raised anything but a ``ValidationError`` (which ``import_bytes`` raises only before emitting), the emitter is
    closed and the keys forgotten: the next export opens a new emitter (it reconciles its chain with the log) and
    reads the keys again, so a span whose append failed is never counted as already there.
    """

    def __init__(self, svc: Service) -> None:
        self._svc = svc
        self._lock = threading.Lock()
        self._emitter: Emitter | None = None
        self._known: KnownKeys | None = None

    def run(self, data: bytes, format: str, admit: Admit | None) -> ImportSummary:
        with self._lock:
            emitter, known = self._open()
            try:
                return import_bytes("otel", data, emitter, source=SOURCE, format=format, known_keys=known,
                                    admit=admit)
            except ValidationError:
                raise  # the body did not read: nothing was emitted, the emitter and keys stand
            except BaseException:
                self._reset()
                raise

    def _open(self) -> tuple[Emitter, KnownKeys]:
        if self._emitter is None or self._known is None:
            home, log = self._svc.home, self._svc.log
            key, _ = importer_key(home, log)
            try:
                emitter = importer_emitter(home, log, key, lock_timeout_s=IMPORTER_LOCK_WAIT_S)
            except ChainForkError as e:  # another process (a `tokenledger import`, another instance) holds it
                raise Problem(503, "Importer busy", code="importer_busy", detail=e.message,
                              headers={"Retry-After": str(RETRY_AFTER_S)}) from None
            try:
                known = KnownKeys.read(log, home.topic, key.signer_id)
            except BaseException:
                emitter.close()
                raise
            self._emitter, self._known = emitter, known
        return self._emitter, self._known

    def _reset(self) -> None:
        emitter, self._emitter, self._known = self._emitter, None, None
        if emitter is not None:
            try:
                emitter.close()  # flushes what it can, and releases the signer's lock either way
            except Exception:  # the import's own error is the one the client gets; this one is logged
                log.warning("closing the importer's emitter after a failed export failed too", exc_info=True)

    def close(self) -> None:
        with self._lock:
            emitter, self._emitter, self._known = self._emitter, None, None
            if emitter is not None:
                emitter.close()


def trace_importer(svc: Service) -> TraceImporter:
    """The process's ``TraceImporter`` (closed with the service)."""

    def make() -> TraceImporter:
        importer = TraceImporter(svc)
        svc.on_close(importer.close)
        return importer

    return svc.extra(EXTRA_NAME, make)  # noqa: S610 (our method, not Django)


# ------------------------------------------------------------------------------------ the response


def partial_message(summary: ImportSummary, max_rows: int = limits.MAX_PROBLEM_ROWS) -> str:
    """What ``partial_success.error_message`` says: each rejection (its first ``max_rows``) and the skip reasons
    with their counts; '' when every span was recorded or already there."""
    parts: list[str] = []
    if summary.rejected:
        shown = [f"{p.field}={p.value}: {p.reason}" if p.value else f"{p.field}: {p.reason}"
                 for p in summary.rejected[:max_rows]]
        more = len(summary.rejected) - len(shown)
        parts.append(f"{len(summary.rejected)} rejected: " + "; ".join(shown) + (f"; and {more} more" if more else ""))
    if summary.skipped:
        reasons = Counter(p.reason for p in summary.skipped).most_common()
        shown = [f"{n} x {reason}" for reason, n in reasons[:max_rows]]
        more = len(reasons) - len(shown)
        parts.append(f"{len(summary.skipped)} skipped (accepted, nothing to record): " + "; ".join(shown)
                     + (f"; and {more} more reasons" if more else ""))
    return " | ".join(parts)


def export_response(summary: ImportSummary, media: str) -> Response:
    """The ``ExportTraceServiceResponse`` of an import, encoded as the request was."""
    message = ExportTraceServiceResponse()
    text = partial_message(summary)
    if text:
        message.partial_success.rejected_spans = len(summary.rejected)
        message.partial_success.error_message = text
    if media == PROTOBUF_MEDIA:
        return Response(message.SerializeToString(), media_type=PROTOBUF_MEDIA)
    return Response(json.dumps(json_format.MessageToDict(message), separators=(",", ":")), media_type=JSON_MEDIA)


def _count(summary: ImportSummary) -> None:
    for outcome, n in (("accepted", summary.imported), ("duplicate", summary.duplicates),
                       ("refused", len(summary.rejected))):
        if n:
            INGEST_EVENTS.labels(route="traces", outcome=outcome).inc(n)


# ------------------------------------------------------------------------------------ the endpoint

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_OBJECT = {"schema": {"type": "object"}}


@router.post(
    "/v1/traces", response_class=Response, summary="OTLP/HTTP trace export: GenAI spans as signed llm.call events",
    openapi_extra={"requestBody": {"required": True, "content": {PROTOBUF_MEDIA: _BINARY, JSON_MEDIA: _OBJECT}}},
    responses={200: {"description": "ExportTraceServiceResponse (partial_success when spans were not recorded)",
                     "content": {PROTOBUF_MEDIA: _BINARY, JSON_MEDIA: _OBJECT}},
               400: {"description": "the body is not an OTLP request of its content type"},
               413: {"description": "more than limits.MAX_OTLP_BODY_BYTES, as sent or decompressed"},
               415: {"description": "a content type or encoding other than OTLP/HTTP's"}})
def export_traces(who: Principal = Depends(require("ingest")),  # noqa: B008 (FastAPI idiom)
                  body: OtlpBody = Depends(otlp_body),  # noqa: B008
                  svc: Service = Depends(service)) -> Response:  # noqa: B008
    """Import an OTLP/HTTP export of spans (see the module docstring); answered once its spans are appended."""
    admit = import_rule(who)
    data = decoded(body)
    summary = trace_importer(svc).run(data, FORMATS[body.media], admit)
    _count(summary)
    return export_response(summary, body.media)


__all__ = [
    "CODINGS",
    "FORMATS",
    "JSON_MEDIA",
    "PROTOBUF_MEDIA",
    "OtlpBody",
    "TraceImporter",
    "agent_rule",
    "content_coding",
    "export_response",
    "export_traces",
    "gunzip",
    "import_rule",
    "media_type",
    "otlp_body",
    "partial_message",
    "router",
    "trace_importer",
]
