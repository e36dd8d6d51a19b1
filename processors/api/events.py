"""``POST /v1/events``: agent events as JSON, signed by the service as the agent (custodial); ``GET /v1/schemas``.

Body (``application/json``): ``{"events": [ {...}, ... ], "agent": "researcher"}``. ``events`` holds 1 to
``EVENTS_PER_REQUEST`` events in the shape of ``ledger.sdk.json_events`` (``GET /v1/schemas`` publishes it); the
body is at most ``BODY_LIMIT_BYTES``. The events are signed as the token's agent: an agent token signs as its own
agent (``agent`` may be left out, or must name it: 403 otherwise); an operator token must name ``agent``. The
service signs with the agent's key from its home (``processors.api.custody``: what custodial signing means).

Order of work: the token (401/403/429), the body (413/415/400), every event converted (400 naming the first bad
field as ``events[i].field``: nothing is emitted when any event is bad), then what readers would refuse is checked
for all events before any is emitted (the agent's key, each claimed time against the skew window, a grader grant
for an outcome's score: 422 with the reject code), then the events are emitted in order and flushed: the answer
comes only once they are durably appended.

Each event's context gets the label ``tokenledger.token_id`` (``TOKEN_LABEL``): the id of the API token that
ingested it, so the journal's ``events`` view shows who wrote what. It is part of the content an idempotency key
promises: a retry must come with the same token (with another one it is a different event: 409).

Answers:
- **201** ``{"agent", "signer", "token_id", "accepted", "appended", "duplicates", "event_ids"}``: every event is on
  the log, ``event_ids`` in request order; ``duplicates`` of them were there already (a retry with the same
  idempotency keys, or the same key twice in this request: the same id, nothing appended), ``appended`` were new;
- **400** ``invalid_field``: not JSON (or NaN, Infinity, a key twice in one object), the wrong shape, a bad event;
- **409** ``idempotency_conflict`` (a key used before with other content, or an event older than the agent's
  idempotency window), ``agent_locked`` / ``not_custodial`` / ``chain_conflict`` (``processors.api.custody``);
- **413** a body over ``BODY_LIMIT_BYTES``; **415** a content type other than JSON;
- **422** what readers would reject (``unknown_key``, ``revoked_key``, ``clock_skew``, ``not_granted``);
- **503** ``log_unavailable``: the log failed; the events may or may not be on it: post them again with their
  idempotency keys (events without a key and without a time would be stamped again: new events).

An emitter-side refusal of event ``i`` that no pre-check can see (an idempotency key the agent used before for
other content) comes after events ``0..i-1`` were emitted: those are flushed, and the problem lists their ids
(``accepted_event_ids``, durable) with ``event_index`` i; nothing after ``i`` is emitted.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledger import limits
from ledger.errors import LedgerError, RejectCode, RejectError, ValidationError
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import check_signer_id
from ledger.sdk.json_events import KINDS, SCHEMA_DIALECT, SCHEMA_ID_BASE, JsonEvent, events_from_json, schema, schemas
from ledger.wire.events import Outcome
from ledger.wire.vocab import Capability
from processors.api.auth import Principal, require
from processors.api.custody import CustodyPool
from processors.api.metrics import INGEST_EVENTS
from processors.api.problems import Problem
from processors.api.state import Service, service

router = APIRouter(tags=["ingest"])

# events in one request: as many as one signed batch holds (a request of JSON events is flushed as one record when
# their bytes allow), and what a client's retry re-sends at most
EVENTS_PER_REQUEST = limits.MAX_BATCH_EVENTS
# bytes of one request body, read at most: 2 KiB a event on average at EVENTS_PER_REQUEST (a parsed body holds
# several times its size in memory, per request in flight)
BODY_LIMIT_BYTES = 2 * 1024 * 1024
TOKEN_LABEL = "tokenledger.token_id"  # noqa: S105 (a label key, not a secret) - the context label naming the API token that ingested an event
_JSON_TYPES = ("application/json",)


# ---------------------------------------------------------------- the body


async def events_body(request: Request) -> bytes:
    """The raw body: a JSON content type (415), at most ``BODY_LIMIT_BYTES`` (413, from ``Content-Length`` before
    reading, or as soon as a streamed body passes it)."""
    header = request.headers.get("content-type")
    media = (header or "").split(";", 1)[0].strip().lower()
    if media not in _JSON_TYPES and not media.endswith("+json"):
        raise Problem(415, "Unsupported media type", code="unsupported_media_type", field="Content-Type",
                      value=header, detail="send the events as application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > BODY_LIMIT_BYTES:
        raise _too_large(int(declared), 0)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT_BYTES:  # a chunked body declares no length: stop reading here
            raise _too_large(size, size)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, read: int) -> Problem:
    return Problem(413, "Too large", code="oversized", field="body", value=size, limit=BODY_LIMIT_BYTES,
                   read_bytes=read, detail=f"a body of more than {BODY_LIMIT_BYTES:,} bytes (BODY_LIMIT_BYTES): send "
                                           f"at most {EVENTS_PER_REQUEST} events per request, in several requests")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise ValueError(f"the key {k!r} appears twice in one object (which one is meant cannot be told)")
            seen.add(k)
    return d


def parse_body(raw: bytes) -> Any:
    """The JSON document: numbers with a fraction as exact ``Decimal`` (never through a float), NaN and Infinity
    refused, a key given twice in one object refused."""
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise ValidationError("body", f"<{len(raw):,} bytes>", "is nested too deeply to be events") from None
    except ValueError as e:  # JSONDecodeError, invalid UTF-8, an integer of more than 4,300 digits, ours above
        raise ValidationError("body", f"<{len(raw):,} bytes>", f"is not valid JSON: {e}") from None


def _request(doc: Any, who: Principal) -> tuple[str, list[Any]]:
    """(the agent to sign as, the events array) of a parsed body, after the caller may act for the agent."""
    if type(doc) is not dict:
        raise ValidationError("body", doc if not isinstance(doc, list) else f"<array of {len(doc)}>",
                              'must be a JSON object: {"events": [...]}')
    extra = sorted(set(doc) - {"events", "agent"})
    if extra:
        raise ValidationError(extra[0], doc[extra[0]], "is not a field of the request; its fields: events, agent")
    if "agent" in doc:
        agent = check_signer_id(doc["agent"], "agent")
        who.acts_for(agent)
    elif who.agent is None:
        raise ValidationError("agent", None, "is required with an operator token: name the agent to sign as")
    else:
        agent = who.agent
    items = doc.get("events")
    if type(items) is not list:
        raise ValidationError("events", items, "must be an array of events (required)")
    if not 1 <= len(items) <= EVENTS_PER_REQUEST:
        raise ValidationError("events", f"<array of {len(items)}>",
                              f"must hold 1 to {EVENTS_PER_REQUEST} events (EVENTS_PER_REQUEST)")
    return agent, items


# ---------------------------------------------------------------- before anything is emitted


def precheck(em: Emitter, events: list[JsonEvent], items: list[Any], now_us: int) -> None:
    """Refuse what readers would reject, for every event, before the first is emitted (so a refusal emits nothing):
    the signing key (unknown, revoked), each claimed time against the skew window (the emitter stamps the others
    now: inside it), and an outcome's score without the grader grant (readers keep it but never count it: the
    service never acknowledges that). ``items``: the events as posted (to name the time field each one used).
    Raises ``Problem`` 422 with the readers' reject code, naming the field."""
    keys = em.control_keys
    assert keys is not None  # custodial emitters are opened with the control topic and anchors
    keys.refresh()
    latest = max((e.event_time_us for e in events if e.event_time_us is not None), default=now_us)
    try:
        keys.check(em.signer_id, em.key.key_id, max(latest, now_us), refresh=False)
    except RejectError as err:
        raise _rejected(err, "agent", em.signer_id) from None
    ring = keys.ring
    for i, e in enumerate(events):
        if e.event_time_us is not None:
            try:
                ring.check_time(em.signer_id, "", e.event_time_us, now_us)
            except RejectError as err:
                name = "event_time_us" if "event_time_us" in items[i] else "event_time"
                raise _rejected(err, f"events[{i}].{name}", items[i][name]) from None
        if isinstance(e.body, Outcome) and e.body.score_milli is not None and ring.granted(
                em.signer_id, Capability.GRADER.value) is None:
            raise _rejected(RejectError(
                RejectCode.NOT_GRANTED, f"{em.signer_id} holds no grader grant: its score of {e.body.subject_id} "
                "would never count", signer_id=em.signer_id, capability=Capability.GRADER.value,
                hint=f"the operator grants it: tokenledger agent grant {em.signer_id} grader; or send the outcome "
                     "without a score"), f"events[{i}].score", items[i]["score"])


def _rejected(err: RejectError, field: str, value: Any) -> Problem:
    """422 with the readers' code, naming the request field it is about; nothing was emitted."""
    evidence = {k: v for k, v in err.evidence.items() if k not in ("code", "field", "value", "event_id")}
    return Problem(422, "Rejected", detail=err.reason, code=err.code.value, field=field, value=value,
                   hint=err.hint, appended=False, **evidence)


# ---------------------------------------------------------------- the endpoints


def emit_all(em: Emitter, events: list[JsonEvent]) -> tuple[list[str], int]:
    """Emit ``events`` in order and flush; (their ids, how many were duplicates). Needs the emitter to itself
    (``CustodyPool.session``): the duplicate count is the emitter's, and what the flush acknowledges is ours."""
    before = em.stats().deduplicated
    ids: list[str] = []
    try:
        # a loop, not a comprehension: on a refusal, ids holds exactly the events emitted before it
        for e in events:
            ids.append(em.emit(e.body, context=e.context, event_time_us=e.event_time_us,  # noqa: PERF401
                               idempotency_key=e.idempotency_key))
    except LedgerError as err:
        i = len(ids)
        em.flush()  # the ones before are emitted: make them durable, and say so (a failed flush raises instead)
        err.evidence.update(event_index=i, accepted_event_ids=ids)
        if isinstance(err, ValidationError):
            err.field = f"events[{i}].{err.field}"
        else:
            err.evidence.setdefault("field", f"events[{i}]")
        raise
    duplicates = em.stats().deduplicated - before
    em.flush()
    return ids, duplicates


_POSTED = {"application/json": {"schema": {"type": "object", "properties": {
    "agent": {"type": "string"}, "signer": {"type": "string"}, "token_id": {"type": "string"},
    "accepted": {"type": "integer"}, "appended": {"type": "integer"}, "duplicates": {"type": "integer"},
    "event_ids": {"type": "array", "items": {"type": "string"}}}}}}


@router.post(
    "/v1/events", status_code=201, response_class=JSONResponse,
    summary="Append agent events sent as JSON, signed by the service as the agent (custodial)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["events"], "properties": {
            "agent": {"type": "string", "description": "the agent to sign as (required with an operator token)"},
            "events": {"type": "array", "minItems": 1, "maxItems": EVENTS_PER_REQUEST,
                       "items": {"type": "object", "description": "one event: GET /v1/schemas/{kind}"}}}}}}}},
    responses={201: {"description": "every event is durably on the log (event_ids in request order)",
                     "content": _POSTED},
               400: {"description": "not JSON, or a bad event: field names it as events[i].field; nothing emitted"},
               403: {"description": "the token may not act for this agent, or the signer is not an agent"},
               409: {"description": "an idempotency key used before for other content; the agent's emitter is "
                                    "locked by another process; no key for the agent in the service's home"},
               413: {"description": f"a body over {BODY_LIMIT_BYTES:,} bytes"},
               415: {"description": "a content type other than application/json"},
               422: {"description": "readers would reject the events (unknown or revoked key, clock skew, a score "
                                    "without the grader grant): nothing emitted"},
               503: {"description": "the log failed (post again with the same idempotency keys), or the agent's "
                                    "emitter is busy (Retry-After)"}})
def post_events(who: Principal = Depends(require("ingest")),  # noqa: B008 (FastAPI idiom)
                raw: bytes = Depends(events_body),
                svc: Service = Depends(service)) -> JSONResponse:  # noqa: B008
    """Sign and append a list of JSON events as one agent (see the module docstring); answered once durable."""
    n = 0
    try:
        agent, items = _request(parse_body(raw), who)
        n = len(items)
        events = events_from_json(items, signer=agent, path="events", service_labels={TOKEN_LABEL: who.token_id})
        with CustodyPool.of(svc).session(agent) as em:
            precheck(em, events, items, svc.now_us())
            ids, duplicates = emit_all(em, events)
    except (LedgerError, Problem) as e:
        accepted = len(e.evidence.get("accepted_event_ids", ())) if isinstance(e, LedgerError) else 0
        if n - accepted:
            INGEST_EVENTS.labels(route="events", outcome="refused").inc(n - accepted)
        if accepted:
            INGEST_EVENTS.labels(route="events", outcome="accepted").inc(accepted)
        raise
    if duplicates:
        INGEST_EVENTS.labels(route="events", outcome="duplicate").inc(duplicates)
    INGEST_EVENTS.labels(route="events", outcome="accepted").inc(len(ids) - duplicates)
    return JSONResponse({"agent": agent, "signer": agent, "token_id": who.token_id, "accepted": len(ids),
                         "appended": len(ids) - duplicates, "duplicates": duplicates, "event_ids": ids},
                        status_code=201)


def request_schema() -> dict[str, Any]:
    """The JSON Schema of a ``POST /v1/events`` body (events by reference to each kind's schema)."""
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_ID_BASE}request.json",
        "title": "POST /v1/events body",
        "description": "Events to sign as one agent. An agent token signs as its agent; an operator token names it.",
        "type": "object",
        "properties": {
            "agent": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$",
                      "description": "The agent to sign as (required with an operator token; with an agent token, "
                                     "its own agent or left out)."},
            "events": {"type": "array", "minItems": 1, "maxItems": EVENTS_PER_REQUEST,
                       "items": {"oneOf": [{"$ref": f"{SCHEMA_ID_BASE}{k}.json"} for k in KINDS]}},
        },
        "required": ["events"],
        "additionalProperties": False,
    }


# every schema is fixed for the life of the process: encoded once
_ALL = json.dumps({"kinds": list(KINDS), "request": request_schema(), "schemas": schemas()}).encode()
_ONE = {k: json.dumps(schema(k)).encode() for k in KINDS}


@router.get("/v1/schemas", tags=["schemas"], summary="The JSON Schema (draft 2020-12) of every JSON event kind",
            responses={200: {"description": '{"kinds": [...], "request": {...}, "schemas": {kind: schema}}'}})
def get_schemas() -> Response:
    """Public (no token): what ``POST /v1/events`` accepts, one schema per kind, and the request body's schema."""
    return Response(_ALL, media_type="application/json")


@router.get("/v1/schemas/{kind}", tags=["schemas"], summary="The JSON Schema of one JSON event kind",
            responses={404: {"description": "not a kind POST /v1/events takes"}})
def get_schema(kind: str) -> Response:
    """Public (no token): one kind's schema; 404 ``unknown_kind`` for any other name."""
    body = _ONE.get(kind)
    if body is None:
        raise Problem(404, "Not found", code="unknown_kind", field="kind", value=kind,
                      detail=f"the event kinds are {', '.join(KINDS)}")
    return Response(body, media_type="application/schema+json")


__all__ = ["BODY_LIMIT_BYTES", "EVENTS_PER_REQUEST", "TOKEN_LABEL", "emit_all", "events_body", "get_schema",
           "get_schemas", "parse_body", "post_events", "precheck", "request_schema", "router"]
