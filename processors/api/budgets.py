"""Admission over HTTP: reservations (reserve, wait for the decision, commit, release), an agent's budgets and its
usage, each answer read from the views the processors published.

Reservations (``ledger.sdk.guard`` does the same in-process; these are its steps one request each):

* ``POST /v1/reservations`` ``{"reservation_id"?, "kind", "amount", "ttl_s"?, "scope"?, "scope_id"?, "agent"?}``
  (scope ``reserve``) appends a ``reservation`` event with action ``reserve`` through the agent's custodial emitter
  (``processors.api.custody``: the service signs for the agent), flushed before the answer: 202
  ``{"reservation_id", "status": "pending", ...}``. ``amount`` is in the kind's unit (usd: micro-USD; llm_tokens:
  input + output tokens), an integer from 1 to ``limits.MAX_MICROS``; ``ttl_s`` whole seconds of event time the hold
  lasts (``DEFAULT_TTL_S``, at most ``limits.MAX_RESERVATION_TTL_S``); ``scope``/``scope_id`` as in
  ``Emitter.reserve`` (default the agent's own scope); ``reservation_id`` the agent's own id (a uuid4 hex when
  absent; at most ``RESERVATION_ID_CHARS``). ``agent``: whom the reservation is for; only an operator token names
  another agent.
  The event's idempotency key is ``api-reservation:reserve:<id>``: a second reserve of one id is never a second
  hold. Its expiry moves with the clock, so the emitter sees other content under the key: when the processor has
  published that reservation with the same kind, amount and scope, the request was a retry and is answered with it
  (200, ``"duplicate": true``); otherwise it is a 409 (idempotency conflict).
* ``GET /v1/reservations/{id}?wait=5s&agent=`` (scope ``read`` or ``reserve``): the decision the budgets processor
  published in its ``reservations`` view (``ledger.sdk.views.reservation``, checked against its signed manifest).
  With ``wait`` (a duration with a unit, at most ``limits.MAX_RESERVATION_WAIT_US``) it long-polls until there is a
  decision: every ``POLL_S`` it looks at the processor's manifest (one ``stat``) and reads the view again only when a
  new publish landed; it sleeps in between (``anyio.sleep``, the reads run in worker threads: no thread is held
  spinning) and stops early when the
  client went away. Statuses: ``pending`` (no published row yet: undecided, or the processor is not running),
  ``granted`` (the view's ``reserved``), ``denied`` (``refused``; ``reason`` says why: hard_limit, not_budgeted,
  not_permitted, duplicate_id, ...), ``committed``, ``released``, ``expired`` — the view's ``expired``, or a granted
  hold whose ``expires_us`` is at or before the service's clock (the processor marks it at the next event touching
  its budget; a commit stamped now would find it gone, so it is no longer held).
* ``POST /v1/reservations/{id}/commit`` ``{"amount", "kind"?, "agent"?}`` and ``POST /v1/reservations/{id}/release``
  ``{"kind"?, "agent"?}`` (scope ``reserve``) append the commit (the spend record: ``amount`` in the kind's unit,
  0 .. ``limits.MAX_MICROS``) or the release; ``kind`` defaults to the published reservation's (404 when it has none
  yet: give ``kind``). Idempotency keys ``api-reservation:commit:<id>`` / ``api-reservation:release:<id>``: a retry
  appends nothing, a second commit of another amount is a 409. 202 ``{"status": "accepted", "event_id", ...}``:
  appended; the processor applies it in log order (``GET`` then says ``committed`` or ``released``).

Reads (scope ``read``; an agent token reads only its own agent, 403 otherwise):

* ``GET /v1/agents/{id}/budgets?kind=``: the budgets that govern the agent, from the ``budgets`` view: its agent scope
  and the org and project its registration names (``budget_signers``); task budgets are not listed (a task is a claim
  of each event's context, nothing ties an agent to one). Per row: allocation, consumed, reserved, remaining,
  available, status, throttle level and delay, suspension and the window, amounts in the kind's unit (usd rows also
  as exact decimal dollar strings).
* ``GET /v1/agents/{id}/usage?from=&to=&group_by=model|day``: the agent's LLM calls as the allocations processor
  priced them (``llm_calls``: its actions with usage and its side of each interaction, ``agent_id`` = the agent an
  importer named, else the signer), by event time ``from`` (inclusive) .. ``to`` (exclusive), RFC 3339. Tokens per
  kind as the view counts them (``input_tokens`` includes cache reads and writes, ``output_tokens`` includes
  reasoning), ``cost_micros`` exact integer micro-USD and ``cost_usd`` the same as a decimal string; ``calls`` are the
  priced calls, ``estimated_calls`` those of them priced as a blended estimate (no input/output split). Calls the
  book could not price (the ``unpriced`` view) are counted in ``unpriced_calls`` only, never priced as $0;
  interactions of the agent that could not be priced in ``unpriced_interactions``. ``group_by=model`` groups by
  (provider, model as reported), ``day`` by UTC day of event time; without it only the totals.

Every read answer carries ``freshness`` (``Service.freshness``): per processor read, when it last published (Unix
seconds) and how old that is (``age_s``).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledger import limits
from ledger.economics.budget_rows import parse_levels
from ledger.economics.money import micros_to_usd
from ledger.errors import IdempotencyConflictError
from ledger.sdk.emitter import Emitter
from ledger.sdk.published import MANIFEST_FILE
from ledger.sdk.views import read_views, reservation
from ledger.units import US_PER_DAY, US_PER_S
from ledger.wire.events import BUDGET_KINDS, BUDGET_SCOPES, check_choice, check_str
from ledger.wire.timefmt import fmt_duration, fmt_time
from processors import views
from processors.api.auth import Principal, require
from processors.api.custody import CustodyPool
from processors.api.params import duration, time_range
from processors.api.problems import Problem
from processors.api.state import Service, service

router = APIRouter(tags=["budgets"])

BUDGETS_PROCESSOR = "budgets"  # decides reservations, publishes budgets and reservations
ALLOCATIONS_PROCESSOR = "allocations"  # prices LLM calls: llm_calls, unpriced
POLL_S = 0.02  # seconds between two looks at the budgets processor's manifest while long-polling (one stat each)
DEFAULT_TTL_S = 300  # seconds of event time a reservation holds when ttl_s is not given (Emitter.reserve's default)
IDEMPOTENCY_PREFIX = "api-reservation:"  # + action + ":" + reservation id: the key of each reservation event
_LONGEST_ACTION = "release:"
# a reservation id leaves room for its idempotency key's prefix within limits.MAX_ID_CHARS
RESERVATION_ID_CHARS = limits.MAX_ID_CHARS - len(IDEMPOTENCY_PREFIX) - len(_LONGEST_ACTION)
GROUP_BY = ("model", "day")
WAIT_DOC = ("wait up to this long for a decision: a duration with a unit (5s), at most "
            f"{fmt_duration(limits.MAX_RESERVATION_WAIT_US)}")
# the reservations view's statuses as the API names them (an absent row is "pending")
STATUS = {"reserved": "granted", "refused": "denied", "committed": "committed", "released": "released",
          "expired": "expired"}
LEVEL_ORDER = {level: i for i, level in enumerate(BUDGET_SCOPES)}  # org first, agent last


# ------------------------------------------------------------------ request bodies (strict: no coercion)


OptionalId = Annotated[str | None, Field(max_length=limits.MAX_ID_CHARS)]
KIND_DOC = "budget kind: " + " | ".join(BUDGET_KINDS)
OF_RESERVATION = "the reservation's kind (default: the published reservation's)"
AGENT_DOC = "operator tokens only: the agent it is for"


class ReserveBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    reservation_id: Annotated[OptionalId, Field(description="the agent's own id (a uuid4 hex when absent)")] = None
    kind: Annotated[str, Field(description=KIND_DOC)]
    amount: Annotated[int, Field(ge=1, le=limits.MAX_MICROS, description="units of the kind (usd: micro-USD)")]
    ttl_s: Annotated[int, Field(ge=1, le=limits.MAX_RESERVATION_TTL_S,
                                description="seconds of event time the hold lasts")] = DEFAULT_TTL_S
    scope: Annotated[str, Field(description="scope level: " + " | ".join(BUDGET_SCOPES))] = "agent"
    scope_id: Annotated[OptionalId, Field(description="its id (default: the agent, for the agent scope)")] = None
    agent: Annotated[OptionalId, Field(description=AGENT_DOC)] = None


class CommitBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    amount: Annotated[int, Field(ge=0, le=limits.MAX_MICROS, description="what was spent, in the kind's unit")]
    kind: Annotated[str | None, Field(description=OF_RESERVATION)] = None
    agent: Annotated[OptionalId, Field(description=AGENT_DOC)] = None


class ReleaseBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    kind: Annotated[str | None, Field(description=OF_RESERVATION)] = None
    agent: Annotated[OptionalId, Field(description=AGENT_DOC)] = None


# ------------------------------------------------------------------ pure helpers


def acting_agent(who: Principal, named: str | None) -> str:
    """The agent a request acts for: the one it names (an operator may name anyone, an agent token only itself),
    else the token's own agent; an operator token naming none is a 400."""
    if named is None:
        if who.agent is None:
            raise Problem(400, "Invalid field", code="invalid_field", field="agent", value=None,
                          detail="an operator token acts for no agent of its own: name the agent")
        return who.agent
    check_str("agent", named)
    who.acts_for(named)
    return named


def _time(us: int | None) -> str | None:
    return None if us is None else fmt_time(us)


def reservation_answer(reservation_id: str, agent: str, row: dict[str, Any] | None, now_us: int) -> dict[str, Any]:
    """The API's view of one reservation from its published row (None: pending); see the module doc."""
    if row is None:
        return {"reservation_id": reservation_id, "agent": agent, "status": "pending", "reason": None}
    status = STATUS.get(row["status"], row["status"])
    if status == "granted" and row["expires_us"] <= now_us:
        status = "expired"
    return {"reservation_id": reservation_id, "agent": agent, "status": status, "reason": row["reason"] or None,
            "kind": row["budget_kind"], "amount": row["amount"], "committed": row["committed"],
            "scope": row["scope"], "scope_id": row["scope_id"],
            "levels": [f"{lvl}:{sid}" for lvl, sid in parse_levels(row["levels"])] if row["levels"] else [],
            "created_at": _time(row["created_us"]), "expires_at": _time(row["expires_us"]),
            "updated_at": _time(row["updated_us"]), "created_us": row["created_us"], "expires_us": row["expires_us"],
            "updated_us": row["updated_us"]}


def _usd(micros: int) -> str:
    return str(micros_to_usd(micros))


def budget_answer(row: dict[str, Any]) -> dict[str, Any]:
    """One ``budgets`` view row as the API shows it (amounts in the kind's unit; usd ones also as dollars)."""
    out = {"scope": row["scope"], "scope_id": row["scope_id"], "kind": row["budget_kind"], "unit": row["unit"],
           "allocation": row["allocation"], "consumed": row["consumed"], "reserved": row["reserved"],
           "remaining": row["remaining"], "available": row["available"], "utilisation": row["utilisation"],
           "status": row["status"], "throttle_level": row["throttle_level"],
           "throttle_delay_us": row["throttle_delay_us"], "suspended": row["suspended"],
           "hard_limit_action": row["hard_limit_action"], "unpriced_calls": row["unpriced_calls"],
           "window_start": _time(row["window_start_us"]), "window_end": _time(row["window_end_us"]),
           "window_start_us": row["window_start_us"], "window_end_us": row["window_end_us"]}
    if row["budget_kind"] == "usd":
        out["usd"] = {k: _usd(row[k]) for k in ("allocation", "consumed", "reserved", "remaining", "available")}
    return out


def _day(day_number: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day_number)).isoformat()


# ------------------------------------------------------------------ effects: the emitter and the views


def _append(svc: Service, agent: str, write: Callable[[Emitter], str]) -> str:
    """``write`` one reservation event with ``agent``'s custodial emitter, flushed: on the log before the 202 (the
    processor decides what is there); returns its event id."""
    with CustodyPool.of(svc).session(agent) as em:  # this request's alone until flushed
        event_id = write(em)
        em.flush()
    return event_id


def _key(action: str, reservation_id: str) -> str:
    """The idempotency key of a reservation event (module doc)."""
    return f"{IDEMPOTENCY_PREFIX}{action}:{reservation_id}"


def _published_row(svc: Service, reservation_id: str, agent: str) -> dict[str, Any] | None:
    return reservation(svc.home.path, reservation_id, agent, log_url=svc.log_url)


def _manifest_stamp(svc: Service) -> tuple[int, int, int] | None:
    """What identifies the budgets processor's current publish: its manifest's inode, mtime and size (a publish
    replaces the file); None when it has published nothing."""
    try:
        st = os.stat(svc.home.views_dir(BUDGETS_PROCESSOR) / MANIFEST_FILE)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _check_reservation_id(reservation_id: str) -> str:
    return check_str("reservation_id", reservation_id, RESERVATION_ID_CHARS)


def _kind_and_scope(svc: Service, reservation_id: str, agent: str,
                    kind: str | None) -> tuple[str, str, str | None]:
    """The (kind, scope, scope id) a commit or release names: the published reservation's, or ``kind`` given."""
    if kind is not None:
        return check_choice("kind", kind, BUDGET_KINDS), "agent", None
    row = _published_row(svc, reservation_id, agent)
    if row is None:
        raise Problem(404, "Not found", code="reservation_not_found", field="reservation_id", value=reservation_id,
                      detail=f"the budgets processor has published no reservation {reservation_id!r} of agent "
                             f"{agent!r} yet: give its kind")
    return row["budget_kind"], row["scope"], row["scope_id"]


# ------------------------------------------------------------------ endpoints


@router.post("/v1/reservations", status_code=202, summary="Reserve budget before a spend (decided by the budgets "
             "processor in log order)")
def reserve(body: ReserveBody, who: Principal = Depends(require("reserve")),  # noqa: B008 (FastAPI idiom)
            svc: Service = Depends(service)) -> JSONResponse:  # noqa: B008
    agent = acting_agent(who, body.agent)
    rid = _check_reservation_id(body.reservation_id) if body.reservation_id is not None else uuid.uuid4().hex
    kind = check_choice("kind", body.kind, BUDGET_KINDS)
    scope = check_choice("scope", body.scope, BUDGET_SCOPES)
    scope_id = agent if body.scope_id is None and scope == "agent" else body.scope_id
    if scope_id is None:
        raise Problem(400, "Invalid field", code="invalid_field", field="scope_id", value=None,
                      detail=f"a {scope} reservation names its {scope} id")
    check_str("scope_id", scope_id)
    now = svc.now_us()
    ttl_us = body.ttl_s * US_PER_S
    try:
        event_id = _append(svc, agent, lambda em: em.reserve(rid, kind, body.amount, ttl_us=ttl_us, scope=scope,
                                                             scope_id=scope_id, event_time_us=now,
                                                             idempotency_key=_key("reserve", rid)))
    except IdempotencyConflictError:
        # a retry of a reserve whose answer was lost: its expiry is computed from the retry's time, so the emitter
        # sees other content under the same key. The same kind, amount and scope as the reservation the processor
        # published is that retry (answered with the original); anything else, or nothing published yet, stays 409
        row = _published_row(svc, rid, agent)
        if row is None or (row["budget_kind"], row["amount"], row["scope"], row["scope_id"]) != (
                kind, body.amount, scope, scope_id):
            raise
        answer = reservation_answer(rid, agent, row, now)
        answer["duplicate"] = True
        return JSONResponse(answer, status_code=200)
    location = f"/v1/reservations/{rid}" + ("" if who.agent == agent else f"?agent={agent}")
    return JSONResponse({"reservation_id": rid, "agent": agent, "status": "pending", "reason": None, "kind": kind,
                         "amount": body.amount, "scope": scope, "scope_id": scope_id, "event_id": event_id,
                         "created_at": fmt_time(now), "expires_at": fmt_time(now + ttl_us), "created_us": now,
                         "expires_us": now + ttl_us, "decision": location},
                        status_code=202, headers={"Location": location})


@router.get("/v1/reservations/{reservation_id}", summary="The budgets processor's decision on a reservation "
            "(long-polls with ?wait=)")
async def get_reservation(request: Request, reservation_id: str,
                          wait: Annotated[str | None, Query(description=WAIT_DOC)] = None,
                          agent: Annotated[str | None, Query(description="operator tokens: whose")] = None,
                          who: Principal = Depends(require("read", "reserve")),  # noqa: B008 (FastAPI idiom)
                          svc: Service = Depends(service)) -> dict[str, Any]:  # noqa: B008
    rid = _check_reservation_id(reservation_id)
    whose = acting_agent(who, agent)
    wait_s = 0.0 if wait is None else duration("wait", wait, limits.MAX_RESERVATION_WAIT_US) / US_PER_S
    deadline = anyio.current_time() + wait_s
    seen: tuple[int, int, int] | str | None = "unread"  # the manifest stamp the last read saw
    row = None
    while True:
        stamp = await anyio.to_thread.run_sync(_manifest_stamp, svc)
        if stamp != seen:  # a new publish (or the first look): read the view again
            seen = stamp
            row = await anyio.to_thread.run_sync(_published_row, svc, rid, whose)
            if row is not None:
                break
        left = deadline - anyio.current_time()
        if left <= 0 or await request.is_disconnected():
            break
        await anyio.sleep(min(POLL_S, left))
    fresh = await anyio.to_thread.run_sync(svc.freshness, BUDGETS_PROCESSOR)
    return {**reservation_answer(rid, whose, row, svc.now_us()), "freshness": fresh}


@router.post("/v1/reservations/{reservation_id}/commit", status_code=202,
             summary="Commit what was spent against a reservation (frees the rest)")
def commit(reservation_id: str, body: CommitBody,
           who: Principal = Depends(require("reserve")),  # noqa: B008 (FastAPI idiom)
           svc: Service = Depends(service)) -> dict[str, Any]:  # noqa: B008
    rid = _check_reservation_id(reservation_id)
    agent = acting_agent(who, body.agent)
    kind, scope, scope_id = _kind_and_scope(svc, rid, agent, body.kind)
    event_id = _append(svc, agent, lambda em: em.commit(rid, kind, body.amount, scope=scope, scope_id=scope_id,
                                                        idempotency_key=_key("commit", rid)))
    return {"reservation_id": rid, "agent": agent, "action": "commit", "status": "accepted", "kind": kind,
            "amount": body.amount, "event_id": event_id}


@router.post("/v1/reservations/{reservation_id}/release", status_code=202, summary="Release a reservation unused")
def release(reservation_id: str, body: ReleaseBody | None = None,
            who: Principal = Depends(require("reserve")),  # noqa: B008 (FastAPI idiom)
            svc: Service = Depends(service)) -> dict[str, Any]:  # noqa: B008
    rid = _check_reservation_id(reservation_id)
    body = body or ReleaseBody()
    agent = acting_agent(who, body.agent)
    kind, scope, scope_id = _kind_and_scope(svc, rid, agent, body.kind)
    event_id = _append(svc, agent, lambda em: em.release(rid, kind, scope=scope, scope_id=scope_id,
                                                         idempotency_key=_key("release", rid)))
    return {"reservation_id": rid, "agent": agent, "action": "release", "status": "accepted", "kind": kind,
            "event_id": event_id}


@router.get("/v1/agents/{agent}/budgets", summary="The budgets that govern an agent: allocation, use, what is left")
def agent_budgets(agent: str, kind: Annotated[str | None, Query(description="only this budget kind")] = None,
                  who: Principal = Depends(require("read")),  # noqa: B008 (FastAPI idiom)
                  svc: Service = Depends(service)) -> dict[str, Any]:  # noqa: B008
    check_str("agent", agent)
    who.acts_for(agent)
    if kind is not None:
        check_choice("kind", kind, BUDGET_KINDS)
    published = read_views(svc.home.path, BUDGETS_PROCESSOR, ("budgets", "budget_signers"), log_url=svc.log_url)
    registered = next((r for r in published["budget_signers"] if r["agent_id"] == agent), None)
    scopes = {("agent", agent)}
    if registered is not None:
        scopes |= {(lvl, registered[lvl]) for lvl in ("org", "project") if registered[lvl] is not None}
    rows = sorted((r for r in published["budgets"] if (r["scope"], r["scope_id"]) in scopes
                   and (kind is None or r["budget_kind"] == kind)),
                  key=lambda r: (LEVEL_ORDER[r["scope"]], r["scope_id"], r["budget_kind"]))
    return {"agent": agent, "budgets": [budget_answer(r) for r in rows],
            "freshness": svc.freshness(BUDGETS_PROCESSOR)}


_USAGE_SUMS = """count(*) AS calls, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
    sum(cache_write_1h_tokens) AS cache_write_1h_tokens, sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_micros) AS cost_micros, count(*) FILTER (WHERE estimate) AS estimated_calls"""
_GROUP_COLUMNS = {None: (), "model": ("provider", "model"), "day": (f"event_time_us // {US_PER_DAY}",)}
_COUNTS = ("calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
           "cache_write_1h_tokens", "reasoning_tokens", "cost_micros", "estimated_calls")


def _range_sql(start: int | None, end: int | None) -> tuple[str, list[Any]]:
    sql, params = "", list[Any]()
    if start is not None:
        sql, params = sql + " AND event_time_us >= ?", [*params, start]
    if end is not None:
        sql, params = sql + " AND event_time_us < ?", [*params, end]
    return sql, params


def _usage(svc: Service, agent: str, start: int | None, end: int | None, group_by: str | None) -> dict[str, Any]:
    """The usage answer (module doc), from one sandboxed connection over the published views."""
    cols = _GROUP_COLUMNS[group_by]
    keys = [f"g{i}" for i in range(len(cols))]
    select = "".join(f"{c} AS {k}, " for c, k in zip(cols, keys, strict=True))
    group = f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
    where, params = _range_sql(start, end)
    # the SQL is this module's text; the agent and the times are bound parameters
    calls_sql = f"SELECT {select}{_USAGE_SUMS} FROM llm_calls WHERE agent_id = ?{where}{group}"  # noqa: S608
    unpriced_sql = (f"SELECT {select}count(DISTINCT event_id) AS n FROM unpriced WHERE source = 'call' "  # noqa: S608
                    f"AND requestor_id = ?{where}{group}")
    inter_sql = ("SELECT count(DISTINCT event_id) FROM unpriced WHERE source = 'interaction' "  # noqa: S608
                 f"AND stage = 'pricing' AND (requestor_id = ? OR responder_id = ?){where}")
    with views.connect_views(svc.home, log_url=svc.log_url) as con:
        priced = views.run(con, calls_sql, [agent, *params]).records()
        unpriced = views.run(con, unpriced_sql, [agent, *params]).records()
        inter = views.run(con, inter_sql, [agent, agent, *params]).rows
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in priced:
        if not r["calls"]:
            continue  # the totals' one row over no calls
        groups[tuple(r[k] for k in keys)] = {c: int(r[c] or 0) for c in _COUNTS} | {"unpriced_calls": 0}
    for r in unpriced:
        if r["n"]:
            zero = {c: 0 for c in _COUNTS} | {"unpriced_calls": 0}
            groups.setdefault(tuple(r[k] for k in keys), zero)["unpriced_calls"] = int(r["n"])

    def shaped(sums: dict[str, Any], key: tuple[Any, ...] = ()) -> dict[str, Any]:
        named: dict[str, Any] = {}
        if key and group_by == "model":
            named = {"provider": key[0], "model": key[1]}
        elif key and group_by == "day":
            named = {"day": _day(int(key[0]))}
        return {**named, **sums, "cost_usd": _usd(sums["cost_micros"])}

    totals = {c: sum(g[c] for g in groups.values()) for c in (*_COUNTS, "unpriced_calls")}
    out: dict[str, Any] = {"agent": agent, "from": _time(start), "to": _time(end), "group_by": group_by,
                           "totals": {**shaped(totals), "unpriced_interactions": int(inter[0][0])}}
    if group_by is not None:
        ordered = sorted(groups.items(), key=lambda kv: tuple((v is None, v) for v in kv[0]))
        out["groups"] = [shaped(g, k) for k, g in ordered]
    return out


@router.get("/v1/agents/{agent}/usage", summary="An agent's LLM usage and its cost, by model or by day")
def agent_usage(agent: str,
                from_: Annotated[str | None, Query(alias="from", description="RFC 3339, inclusive")] = None,
                to: Annotated[str | None, Query(description="RFC 3339, exclusive")] = None,
                group_by: Annotated[str | None, Query(description="model | day")] = None,
                who: Principal = Depends(require("read")),  # noqa: B008 (FastAPI idiom)
                svc: Service = Depends(service)) -> dict[str, Any]:  # noqa: B008
    check_str("agent", agent)
    who.acts_for(agent)
    start, end = time_range(from_, to)
    if group_by is not None:
        check_choice("group_by", group_by, GROUP_BY)
    return {**_usage(svc, agent, start, end, group_by), "freshness": svc.freshness(ALLOCATIONS_PROCESSOR)}


__all__ = ["DEFAULT_TTL_S", "POLL_S", "STATUS", "acting_agent", "budget_answer",
           "reservation_answer", "router"]
