"""``POST /v1/batches``: signed batches from clients that sign themselves.

The body is one signed batch exactly as it goes on the log (``ledger.wire.codec.encode_batch``: the SDK's wire
format, single-object Avro), sent with ``Content-Type: application/vnd.tokenledger.batch``. The service appends it to
the home's events topic, record key = the signer id, only when readers will accept it: the checks, the chain rule and
the refusal codes are ``ledger.sdk.batch_gate``'s (one ``BatchGate`` per service process).

Answers:
- **201** ``{"topic", "partition", "offset", "signer_id", "first_seq", "last_seq", "event_ids", "duplicate": false}``:
  appended and durable, and readers will take it;
- **200**, the same with ``"duplicate": true``: these exact bytes are already on the signer's chain (a retry); the
  position is the original record's, nothing was appended;
- **401/403/429**: the token (``require("ingest")``); an agent token may submit only its own agent's batches (403
  ``forbidden_agent``, judged on the signer the batch names, before any log work);
- **413** ``oversized``: a body over ``BODY_LIMIT_BYTES`` (refused from ``Content-Length`` or as it streams, before
  it is all read), or a record (signer id + body) over ``limits.MAX_RECORD_BYTES``;
- **415** ``unsupported_media_type``: any other content type;
- **422** with the readers' reject code (``bad_schema``, ``truncated``, ``unknown_key``, ``revoked_key``,
  ``bad_signature``, ``clock_skew``, ``not_granted``, ``sequence_gap``, ``fork``, ``replay``, ``duplicate``, ...):
  readers would quarantine it, so it was not appended;
- **409** ``chain_conflict``: another writer took the position this batch extends (``appended: true``: ours is on the
  log as a fork readers reject, never acknowledged), or the signer's chain lives on another topic (an operator or
  processor key);
- **503** ``log_unavailable``: the log failed; the batch may have been appended, and sending the same bytes again is
  safe (answered 200 ``duplicate`` if it was).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledger import limits
from ledger.errors import LedgerError, RecordTooLargeError, RejectError
from ledger.sdk.batch_gate import BatchGate
from ledger.wire import codec
from processors.api.auth import Principal, require
from processors.api.metrics import INGEST_EVENTS
from processors.api.problems import Problem
from processors.api.state import Service, service

router = APIRouter(tags=["ingest"])

BATCH_MEDIA = "application/vnd.tokenledger.batch"
# the most of a body read: a body is one record's value, and no record holds more (the key, the signer id, counts
# too: the gate refuses a body that fits here but not with its key)
BODY_LIMIT_BYTES = limits.MAX_RECORD_BYTES
GATE = "batch_gate"  # the service's per-process singleton (Service.extra)


def batch_gate(svc: Service) -> BatchGate:
    """The service's gate over its home's events topic, made on first use."""
    return svc.extra(GATE, lambda: BatchGate.for_home(svc.home, svc.log))  # noqa: S610 (our method, not Django)


async def batch_body(request: Request) -> bytes:
    """The body, after its content type was checked (415), read up to ``BODY_LIMIT_BYTES`` (413 beyond: from the
    declared ``Content-Length`` before reading any of it, or as soon as a streamed body passes the limit)."""
    header = request.headers.get("content-type")
    if (header or "").split(";", 1)[0].strip().lower() != BATCH_MEDIA:
        raise Problem(415, "Unsupported media type", code="unsupported_media_type", field="Content-Type",
                      value=header, detail=f"a signed batch is sent as {BATCH_MEDIA} (the bytes of "
                                           "ledger.wire.codec.encode_batch)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > BODY_LIMIT_BYTES:
        raise RecordTooLargeError(int(declared), BODY_LIMIT_BYTES, read_bytes=0, appended=False)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT_BYTES:  # a chunked body declares no length: stop reading here
            raise RecordTooLargeError(size, BODY_LIMIT_BYTES, read_bytes=size, appended=False)
        chunks.append(chunk)
    return b"".join(chunks)


def _events_in(raw: bytes) -> int:
    """How many events a refused body carried (0 when its frame does not decode: not events at all)."""
    try:
        return len(codec.decode_batch(raw).events)
    except RejectError:
        return 0


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ADMITTED = {"application/json": {"schema": {"type": "object", "properties": {
    "topic": {"type": "string"}, "partition": {"type": "integer"}, "offset": {"type": "integer"},
    "signer_id": {"type": "string"}, "first_seq": {"type": "integer"}, "last_seq": {"type": "integer"},
    "event_ids": {"type": "array", "items": {"type": "string"}}, "duplicate": {"type": "boolean"}}}}}


@router.post(
    "/v1/batches", status_code=201, response_class=JSONResponse,
    summary="Append a batch its producer signed (appended only if readers will accept it)",
    openapi_extra={"requestBody": {"required": True, "content": {BATCH_MEDIA: _BINARY}}},
    responses={201: {"description": "appended", "content": _ADMITTED},
               200: {"description": "these exact bytes are already on the log (a retry): the original position",
                     "content": _ADMITTED},
               403: {"description": "an agent token submitting another signer's batch"},
               409: {"description": "another writer took this position (a fork), or the signer's chain is on "
                                    "another topic"},
               413: {"description": "a body or record larger than limits.MAX_RECORD_BYTES"},
               415: {"description": f"a content type other than {BATCH_MEDIA}"},
               422: {"description": "readers would reject it: the reject code names why (not appended)"},
               503: {"description": "the log failed: send the same bytes again"}})
def submit_batch(who: Principal = Depends(require("ingest")),  # noqa: B008 (FastAPI idiom)
                 raw: bytes = Depends(batch_body),
                 svc: Service = Depends(service)) -> JSONResponse:  # noqa: B008
    """Append one signed batch (see the module docstring); answered once it is durable."""
    try:
        admitted = batch_gate(svc).submit(raw, svc.now_us(), acts_for=who.acts_for)
    except LedgerError:
        refused = _events_in(raw)
        if refused:
            INGEST_EVENTS.labels(route="batches", outcome="refused").inc(refused)
        raise
    outcome = "duplicate" if admitted.duplicate else "accepted"
    INGEST_EVENTS.labels(route="batches", outcome=outcome).inc(len(admitted.event_ids))
    return JSONResponse(admitted.to_dict(), status_code=200 if admitted.duplicate else 201)


__all__ = ["BATCH_MEDIA", "BODY_LIMIT_BYTES", "batch_body", "batch_gate", "router", "submit_batch"]
