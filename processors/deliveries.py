"""The deliveries processor: alerts delivered to webhook sinks, each delivery's life in ``alert_deliveries``.

What it folds (pure: the state depends only on the log, in log order)
    * ``webhook_sink`` (control, operator-signed; ``ledger.wire.events.WebhookSink``): the sinks in force, by id; a
      later version replaces a sink, ``active`` false removes it, and its open deliveries become ``failed`` with
      last_error "sink removed" (no further attempt is made).
    * ``budget_alert`` (derived, on ``<prefix>.alerts``, the budgets processor's) and ``rejected`` (derived, on
      ``<prefix>.rejected``, the journal's dead letters, kind ``rejections``): one delivery per active sink whose
      ``events`` hold the alert's kind (a budget alert's kind is its ``alert`` name), created ``pending`` and due at
      once. ``delivery_id`` = ``delivery_id(sink_id, source)``, the source being the alert's event id, or
      ``rejected:<topic>:<partition>:<offset>`` of the rejected record: stable across retries, restarts and
      replays, the receiver's de-duplication key. Only alerts read after the sink is in force are delivered.
    * ``delivery_attempt`` (derived, on ``<prefix>.deliveries``, signed by this processor's own key
      ``processor.deliveries``; others' are ignored): attempt n of an open delivery with n - 1 attempts so far
      sets its status from the attempt's outcome (delivered | retrying | failed), attempts, last_http_status,
      last_error, next_attempt_at_us and delivered_at_us (the attempt's event time). Every attempt is also a
      ``delivery_attempts`` row, with ``applied`` false for one that did not move its delivery (a late answer for
      a delivery already closed, e.g. by the sink's removal).
    It does not read ``<prefix>.checkpoints``: the state checkpoints of the processors whose topics it reads (and
    its own) are signed on chains of their own (``processor.<name>.checkpoints``), so the chains of budgets,
    journal and deliveries are whole on the topics it reads (``processors.host.service.emit_state_checkpoint``;
    links an older version signed on those chains are closed by ``processors.runtime.links``).

The effect at the edge (``Sender``; never in ``fold``, never in a replay)
    ``tokenledger run`` starts this processor like any other (``processors.host.service.serve``); ``serve`` asks
    the processor for its edge (``open_edge``) and calls ``Sender.tick`` after every step, in the loop's own
    thread. The sender:

    1. waits until the runner has caught up once since it started: then every attempt recorded by an earlier
       run of the worker has been folded (the runner produced its outbox at start), so the state says exactly
       which attempt comes next; it sends from the next turn on. ``run --until-caught-up`` stops at that very
       turn, so it folds every input and sends nothing: its state is then the log's (what a replay rebuilds),
       and no instance appends attempts after the others stopped (a shard still running would wait for the
       stopped shards' marks past them forever, see "Sharding"). Webhooks are sent by ``tokenledger run`` as a
       service;
    2. picks due open deliveries (``next_attempt_at_us`` <= the wall clock), at most ``MAX_DELIVERIES_IN_FLIGHT``
       at once, earliest first, none whose last recorded attempt the fold has not read back yet;
    3. loads the sink's secret from the home and refuses it unless its SHA-256 is the sink's ``secret_sha256``
       (the attempt then fails without a request, with the reason); otherwise POSTs in a thread pool (bounded
       by ``WEBHOOK_TIMEOUT_S`` per request) the JSON body with the ``X-Tokenledger-Delivery`` /
       ``-Timestamp`` / ``-Signature`` headers (``ledger.sdk.webhooks``);
    4. turns each finished attempt into a ``delivery_attempt`` event (outcome by the retry schedule,
       ``ledger.sdk.webhooks.RetryPolicy``: a 2xx answer is delivered, else retrying at now + backoff, or
       failed after the last attempt), idempotency key ``attempt:<delivery_id>:<n>``, signed on the
       processor's own chain through ``Runner.emit`` (committed to the outbox, then produced) and read back by
       the next step like any input.

    So the view is rebuilt by a replay from the log alone, and the bookkeeping takes effect exactly once (the
    runner's positions and state commit together; the attempt's event id comes from its key). Delivery itself
    is at least once: a worker that dies after a POST and before its attempt is committed sends it again, with
    the same delivery id, for the receiver to de-duplicate.

Sharding (``tokenledger run deliveries --instances N``; ``processors.runtime.exchange``)
    The owner key is the delivery id: shard ``owner_index(delivery_id, N)`` creates the delivery, is the only one
    whose sender POSTs it, and signs its attempts (``processor.deliveries.shard-I-of-N``). Routing:
    * ``webhook_sink`` is control: every shard folds it and keeps the sinks' rows (``control_tables``: a restarted
      shard restores them; shard 0 alone publishes and digests them), and each router keeps the sinks in force in
      log order (``observe_control``), as the fold does;
    * a ``budget_alert`` or ``rejected`` event goes to the owners of the deliveries it creates: one delivery id per
      sink in force subscribed to its kind at its place in the log (none: it goes nowhere, as it changes nothing);
    * a ``delivery_attempt`` goes to the owner of its ``delivery_id`` (the shard that signed it, whatever router
      reads the partition its signer's records land on), if its signer may sign it (``signs_attempts_of``:
      ``processor.deliveries``, one instance's key, or the owner shard's key; an attempt signed by any other
      shard is ignored by every reader, so no shard can move another's delivery).
    Each owner folds control and these events in the log's one order, and a delivery's row depends only on the
    sinks (control) and on its own alert and attempts, so it is the one instance's row; the fold skips the
    deliveries other shards own (``owns``), so a shard's open deliveries, the sender's only work, are its own, and
    a sink's removal fails only the open deliveries of the shard that holds them. The attempts rows are the
    delivery's owner's. The one-instance replay accepts the shards' attempts by the same rule: same digest.
    The alerts and dead letters may be signed by several shards of budgets and journal
    (``processor.budgets.shard-I-of-N``): each is a chain of its own, verified whole by the router reading its
    partition.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ledger import limits
from ledger.errors import LedgerError
from ledger.sdk import webhooks
from ledger.sdk.home import HomeLayout
from ledger.wire.events import BudgetAlert, DeliveryAttempt, Event, Rejected, WebhookSink
from ledger.wire.vocab import DeliveryOutcome, WebhookEvent
from processors.runtime.processor import BATCH, Column, Derived, Effects, Item, Processor, Quarantined, View, columns_of
from processors.runtime.runner import Runner
from processors.runtime.shards import SHARD_LABEL, owner_index

NAME = "deliveries"
SIGNER = f"processor.{NAME}"  # the key its attempts are signed with (processors.host.service.signer_id)
# a shard's signer (processors.host.service.signer_id with a shard): processor.deliveries.shard-I-of-N
SHARD_SIGNER = re.compile(re.escape(SIGNER + ".") + SHARD_LABEL.format(index=r"(\d{1,4})", count=r"(\d{1,4})"))
DOMAIN_DELIVERY_ID = b"tokenledger/delivery-id/v1\x00"
DELIVERY_ID_HEX_CHARS = 32
PENDING = "pending"  # created, no attempt yet
OPEN = (PENDING, DeliveryOutcome.RETRYING.value)
SINK_REMOVED = "sink removed"
DISPATCH_EVERY_S = 0.05  # how often the sender looks for due deliveries (it never waits for the loop's idle sleep)

SINKS = View(
    name="webhook_sinks", mode="snapshot", primary_key=("sink_id",),
    doc="Every webhook sink the operator declared (webhook_sink control events), as last declared.",
    columns=(
        Column("sink_id", "VARCHAR", "the sink's id"),
        Column("url", "VARCHAR", "where its alerts are POSTed (http or https)"),
        Column("events", "VARCHAR", "alert kinds it receives, comma-separated, sorted"),
        Column("secret_sha256", "VARCHAR", "SHA-256 of its signing secret, hex (the secret is only in the home)"),
        Column("active", "BOOLEAN", "false: removed (no new deliveries)"),
        Column("event_id", "VARCHAR", "the control event that declared this version"),
        Column("updated_at_us", "BIGINT", "that event's time, microseconds since the Unix epoch"),
    ))
DELIVERIES = View(
    name="alert_deliveries", mode="snapshot", primary_key=("delivery_id",),
    doc="One row per (sink, alert): where its delivery stands. Attempts are on the log (delivery_attempt events).",
    columns=(
        Column("delivery_id", "VARCHAR", "hash of the sink id and the alert: the X-Tokenledger-Delivery header"),
        Column("sink_id", "VARCHAR", "the sink delivered to"),
        Column("kind", "VARCHAR", "the alert's kind: a budget alert name or 'rejections'"),
        Column("alert_event_id", "VARCHAR", "the budget_alert or rejected (dead letter) event delivered"),
        Column("alert_time_us", "BIGINT", "that event's time, microseconds since the Unix epoch"),
        Column("status", "VARCHAR", "pending | retrying | delivered | failed"),
        Column("attempts", "INTEGER", "attempts made"),
        Column("last_http_status", "INTEGER", "the receiver's status at the last attempt (0 = no answer; "
                                              "NULL before any)"),
        Column("last_error", "VARCHAR", "why the last attempt failed ('' if none did)"),
        Column("next_attempt_at_us", "BIGINT", "pending or retrying: when the next attempt is due (wall clock, us); "
                                               "NULL otherwise"),
        Column("delivered_at_us", "BIGINT", "delivered: when (the attempt's time, us); NULL otherwise"),
        Column("updated_at_us", "BIGINT", "time of the event that last changed the row, us"),
        Column("payload_json", "VARCHAR", "the alert's fields as POSTed (with delivery_id, kind, alert_event_id)"),
    ))
ATTEMPTS = View(
    name="delivery_attempts", doc="Every delivery attempt the worker recorded (delivery_attempt events), in log order.",
    columns=(
        Column("event_id", "VARCHAR", "the delivery_attempt event"),
        Column("delivery_id", "VARCHAR", "the delivery"),
        Column("sink_id", "VARCHAR", "the sink"),
        Column("attempt", "INTEGER", "1 for the first"),
        Column("outcome", "VARCHAR", "delivered | retrying | failed"),
        Column("http_status", "INTEGER", "the receiver's HTTP status (0 = no answer)"),
        Column("error", "VARCHAR", "why it failed ('' when delivered)"),
        Column("attempted_at_us", "BIGINT", "when the attempt ended (its event time), us"),
        Column("next_attempt_at_us", "BIGINT", "retrying: when the next one is due, us; 0 otherwise"),
        Column("applied", "BOOLEAN", "false: it did not move its delivery (already closed, unknown, or out of order)"),
        BATCH,
    ))


def delivery_id(sink_id: str, source: str) -> str:
    """The delivery of one alert (``source``: its event id, or ``rejected:<topic>:<partition>:<offset>``) to one
    sink: 32 hex chars of SHA-256, the same however often it is computed."""
    material = DOMAIN_DELIVERY_ID + sink_id.encode("utf-8") + b"\x00" + source.encode("utf-8")
    return hashlib.sha256(material).hexdigest()[:DELIVERY_ID_HEX_CHARS]


def alert_of(ev: Event) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, source, fields) of an event this processor delivers, or None."""
    body = ev.body
    if isinstance(body, BudgetAlert):
        return body.alert, ev.event_id, {
            "scope": body.scope, "scope_id": body.scope_id, "budget_kind": body.budget_kind, "alert": body.alert,
            "window_start_us": body.window_start_us, "allocation": body.allocation, "consumed": body.consumed,
            "amount": body.amount, "reason": body.reason, "alert_time_us": ev.event_time_us,
            "alert_id": ev.idempotency_key}
    if isinstance(body, Rejected):
        return WebhookEvent.REJECTIONS.value, f"rejected:{body.topic}:{body.partition}:{body.offset}", {
            "topic": body.topic, "partition": body.partition, "offset": body.offset, "code": body.code,
            "reason": body.reason, "evidence_json": body.evidence_json, "original_size": body.original_size,
            "original_sha256": body.original_sha256.hex(), "alert_time_us": ev.event_time_us}
    return None


def signs_attempts_of(signer_id: str, did: str) -> bool:
    """Whether ``signer_id`` may sign the attempts of delivery ``did``: the processor's own key (one instance), or
    the key of the shard that owns ``did`` (``processor.deliveries.shard-I-of-N`` with ``owner_index(did, N) == I``:
    the only shard that sends it). Anyone else's attempt is ignored, whoever registered the key."""
    if signer_id == SIGNER:
        return True
    m = SHARD_SIGNER.fullmatch(signer_id)
    if m is None:
        return False
    index, count = int(m.group(1)), int(m.group(2))
    return index < count and owner_index(did, count) == index


@dataclass
class Sink:
    sink_id: str
    url: str
    events: frozenset[str]
    secret_sha256: bytes
    active: bool
    event_id: str
    updated_at_us: int

    def row(self) -> dict[str, Any]:
        return {"sink_id": self.sink_id, "url": self.url, "events": ",".join(sorted(self.events)),
                "secret_sha256": self.secret_sha256.hex(), "active": self.active, "event_id": self.event_id,
                "updated_at_us": self.updated_at_us}


@dataclass
class Delivery:
    delivery_id: str
    sink_id: str
    kind: str
    alert_event_id: str
    alert_time_us: int
    fields: dict[str, Any]
    status: str = PENDING
    attempts: int = 0
    last_http_status: int | None = None
    last_error: str = ""
    next_attempt_at_us: int | None = None
    delivered_at_us: int | None = None
    updated_at_us: int = 0

    def row(self) -> dict[str, Any]:
        return {"delivery_id": self.delivery_id, "sink_id": self.sink_id, "kind": self.kind,
                "alert_event_id": self.alert_event_id, "alert_time_us": self.alert_time_us, "status": self.status,
                "attempts": self.attempts, "last_http_status": self.last_http_status, "last_error": self.last_error,
                "next_attempt_at_us": self.next_attempt_at_us, "delivered_at_us": self.delivered_at_us,
                "updated_at_us": self.updated_at_us,
                "payload_json": webhooks.payload(self.delivery_id, self.kind, self.alert_event_id,
                                                 self.fields).decode("ascii")}


def _sink_of(ev: Event, body: WebhookSink) -> Sink:
    return Sink(body.sink_id, body.url, frozenset(body.events), body.secret_sha256, body.active, ev.event_id,
                ev.event_time_us)


class Deliveries(Processor):
    name = NAME
    doc = "alerts and dead letters delivered to webhook sinks: signed POSTs, retried with backoff, attempts on the log"
    topics: ClassVar[tuple[str, ...]] = ("control", "alerts", "rejected", "deliveries")
    derived_topics: ClassVar[tuple[str, ...]] = ("deliveries",)
    # sharded through the exchange (processors.runtime.exchange) by delivery id: module docstring, "Sharding"
    exchanges = True
    control_tables = (SINKS.name,)  # every shard folds the sinks (its alerts need them); shard 0 shows them
    views = (SINKS, DELIVERIES, ATTEMPTS)

    def __init__(self) -> None:
        self.sinks: dict[str, Sink] = {}
        # pending or retrying: what the sender may still attempt (on a shard, only the deliveries it owns)
        self.open: dict[str, Delivery] = {}

    # ------------------------------------------------------------ sharding (processors.runtime.exchange)

    def observe_control(self, item: Item) -> None:
        """The router's sinks, as the fold keeps them at the same place in the log (``route`` needs them)."""
        ev = item.decoded.event
        if isinstance(ev.body, WebhookSink):
            self.sinks[ev.body.sink_id] = _sink_of(ev, ev.body)

    def route(self, item: Item) -> tuple[str, ...]:
        ev = item.decoded.event
        body = ev.body
        if isinstance(body, DeliveryAttempt):
            # only an attempt the fold accepts can change a row (an ignored one is not even an attempts row)
            return (body.delivery_id,) if signs_attempts_of(ev.signer_id, body.delivery_id) else ()
        alert = alert_of(ev)
        if alert is None:
            return ()
        kind, source, _ = alert
        return tuple(delivery_id(sid, source) for sid in self._subscribers(kind))

    def row_owner(self, table: str, row: dict[str, Any]) -> str | None:
        if table in (DELIVERIES.name, ATTEMPTS.name):
            return str(row["delivery_id"])
        return None  # the sinks: from control, alike on every shard

    def derived_owner(self, derived: Derived) -> str | None:
        body = derived.body
        return body.delivery_id if isinstance(body, DeliveryAttempt) else None

    def _subscribers(self, kind: str) -> list[str]:
        """The sinks in force that receive alerts of ``kind``, by id."""
        return [sid for sid in sorted(self.sinks) if self.sinks[sid].active and kind in self.sinks[sid].events]

    # ------------------------------------------------------------ restore

    def restore(self, query: Any) -> None:
        for sid, url, events, sha, active, eid, t in query(
                "SELECT sink_id, url, events, secret_sha256, active, event_id, updated_at_us FROM webhook_sinks"):
            self.sinks[sid] = Sink(sid, url, frozenset(events.split(",")), bytes.fromhex(sha), bool(active), eid, t)
        for row in query(
                "SELECT delivery_id, sink_id, kind, alert_event_id, alert_time_us, status, attempts, last_http_status, "
                "last_error, next_attempt_at_us, delivered_at_us, updated_at_us, payload_json FROM alert_deliveries "
                "WHERE status IN (?, ?)", list(OPEN)):
            doc = json.loads(row[12])
            for k in ("delivery_id", "kind", "alert_event_id"):
                doc.pop(k)  # payload() adds them back
            self.open[row[0]] = Delivery(
                delivery_id=row[0], sink_id=row[1], kind=row[2], alert_event_id=row[3], alert_time_us=row[4],
                fields=doc, status=row[5], attempts=row[6], last_http_status=row[7], last_error=row[8],
                next_attempt_at_us=row[9], delivered_at_us=row[10], updated_at_us=row[11])

    # ------------------------------------------------------------ fold

    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        fx = Effects()
        sinks: set[str] = set()
        changed: dict[str, Delivery] = {}
        attempts: list[dict[str, Any]] = []
        for it in items:
            ev = it.decoded.event
            body = ev.body
            if isinstance(body, WebhookSink):
                self._sink(ev, body, changed)
                sinks.add(body.sink_id)
            elif isinstance(body, DeliveryAttempt):
                if signs_attempts_of(ev.signer_id, body.delivery_id):
                    attempts.append(self._attempt(ev, body, changed))
            else:
                alert = alert_of(ev)
                if alert is not None:
                    self._alert(ev, *alert, changed)
        if sinks:
            fx.upsert(SINKS.name, columns_of([self.sinks[s].row() for s in sorted(sinks)]))
        if changed:
            fx.upsert(DELIVERIES.name, columns_of([changed[d].row() for d in sorted(changed)]))
        if attempts:
            fx.append(ATTEMPTS.name, columns_of(attempts))
        return fx

    def _sink(self, ev: Event, body: WebhookSink, changed: dict[str, Delivery]) -> None:
        self.sinks[body.sink_id] = _sink_of(ev, body)
        if body.active:
            return
        for d in [d for d in self.open.values() if d.sink_id == body.sink_id]:
            # removed: no further attempt; a POST already in flight may still be recorded (applied = false)
            d.status, d.last_error, d.next_attempt_at_us = DeliveryOutcome.FAILED.value, SINK_REMOVED, None
            d.updated_at_us = ev.event_time_us
            del self.open[d.delivery_id]
            changed[d.delivery_id] = d

    def _alert(self, ev: Event, kind: str, source: str, fields: dict[str, Any], changed: dict[str, Delivery]) -> None:
        for sid in self._subscribers(kind):
            did = delivery_id(sid, source)
            if not self.owns(did):
                continue  # another shard's delivery: it creates, sends and records it (the router sent it there too)
            d = Delivery(did, sid, kind, ev.event_id, ev.event_time_us, fields, next_attempt_at_us=ev.event_time_us,
                         updated_at_us=ev.event_time_us)
            self.open[did] = d
            changed[did] = d

    def _attempt(self, ev: Event, body: DeliveryAttempt, changed: dict[str, Delivery]) -> dict[str, Any]:
        d = self.open.get(body.delivery_id)
        applied = d is not None and d.sink_id == body.sink_id and body.attempt == d.attempts + 1
        if d is not None and applied:
            d.attempts = body.attempt
            d.status = body.outcome
            d.last_http_status = body.http_status
            d.last_error = body.error
            d.updated_at_us = ev.event_time_us
            d.next_attempt_at_us = body.next_attempt_at_us if body.outcome == DeliveryOutcome.RETRYING.value else None
            if body.outcome == DeliveryOutcome.DELIVERED.value:
                d.delivered_at_us = ev.event_time_us
            if d.status not in OPEN:
                del self.open[d.delivery_id]
            changed[d.delivery_id] = d
        return {"event_id": ev.event_id, "delivery_id": body.delivery_id, "sink_id": body.sink_id,
                "attempt": body.attempt, "outcome": body.outcome, "http_status": body.http_status,
                "error": body.error, "attempted_at_us": ev.event_time_us,
                "next_attempt_at_us": body.next_attempt_at_us, "applied": applied}

    # ------------------------------------------------------------ the edge

    def open_edge(self, home: HomeLayout, runner: Runner) -> Sender:
        """The sender the running service drives (``processors.host.service.serve``); never opened by a replay."""
        return Sender(self, runner, home, webhooks.retry_policy())


@dataclass
class _Flight:
    """One attempt under way: what it is and, once sent, the request's future (None: failed before sending)."""

    delivery: Delivery
    attempt: int
    future: Future[webhooks.Response] | None = None
    refused: str = ""  # why it was not sent (the secret could not be used)
    done_at_us: int = 0


@dataclass
class Sender:
    """Sends due deliveries and records each attempt (see the module docstring, "The effect at the edge").

    Driven by ``tick`` from the service loop's thread (the one that steps the runner): it reads the processor's
    state and signs through ``Runner.emit`` only there (on a shard: its own open deliveries, with its own key).
    The POSTs run in a pool of ``MAX_DELIVERIES_IN_FLIGHT`` threads that touch nothing but their request.
    ``clock_us`` is the wall clock (the edge's one clock: due times and attempt times); tests may pass another."""

    processor: Deliveries
    runner: Runner
    home: HomeLayout
    policy: webhooks.RetryPolicy
    clock_us: Callable[[], int] = field(default=lambda: time.time_ns() // 1000)
    ready: bool = False  # caught up once since start: every earlier attempt is folded
    flights: dict[str, _Flight] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)  # attempt numbers emitted, not yet read back
    last_dispatch: float = 0.0

    def __post_init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=limits.MAX_DELIVERIES_IN_FLIGHT, thread_name_prefix="webhook")

    def tick(self, idle: bool) -> None:
        """One turn after a runner step (``idle``: it read nothing): record finished attempts, start due ones."""
        if not self.ready:
            # the first POST waits for the turn after the one that caught up: a run that stops at its first
            # caught-up turn (``run --until-caught-up``) sends nothing (module docstring, step 1)
            self.ready = idle and self.runner.caught_up()
            return
        self._record([f for f in self.flights.values() if f.future is None or f.future.done()])
        now = time.monotonic()
        if now - self.last_dispatch >= DISPATCH_EVERY_S:
            self.last_dispatch = now
            self._dispatch()

    def drain(self) -> None:
        """Stopping: wait for the requests under way (each bounded by its timeout) and record them."""
        self.pool.shutdown(wait=True)
        if self.ready and self.flights:
            self._record(list(self.flights.values()))

    def stop(self) -> None:
        """Stopping after a failure: abandon what is under way (it is sent again after the restart)."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _dispatch(self) -> None:
        for did, n in list(self.recorded.items()):
            d = self.processor.open.get(did)
            if d is None or d.attempts >= n:
                del self.recorded[did]  # the fold has read the attempt back
        free = limits.MAX_DELIVERIES_IN_FLIGHT - len(self.flights)
        if free <= 0:
            return
        now_us = self.clock_us()
        # a shard's open deliveries are its own (the fold creates no other); owns() says so again, cheaply, so
        # no change there can make two shards POST one delivery
        due = [d for d in self.processor.open.values()
               if d.delivery_id not in self.flights and d.delivery_id not in self.recorded
               and (d.next_attempt_at_us or 0) <= now_us and self.processor.owns(d.delivery_id)]
        for d in heapq.nsmallest(free, due, key=lambda d: (d.next_attempt_at_us or 0, d.delivery_id)):
            sink = self.processor.sinks.get(d.sink_id)
            if sink is None or not sink.active:
                continue  # the fold closes it (a removal fails the sink's open deliveries)
            flight = _Flight(d, d.attempts + 1)
            self.flights[d.delivery_id] = flight
            try:
                secret = webhooks.load_secret(self.home, sink.sink_id, sink.secret_sha256)
            except LedgerError as e:
                flight.refused = webhooks.cut_error(f"not sent: {e.message} "
                                                    f"({self.home.webhook_secret_path(sink.sink_id)})")
                flight.done_at_us = now_us
                continue
            ts = now_us // 1_000_000
            body = webhooks.payload(d.delivery_id, d.kind, d.alert_event_id, d.fields)
            hdrs = webhooks.headers(d.delivery_id, ts, webhooks.signature(secret, ts, body))
            flight.future = self.pool.submit(webhooks.post, sink.url, body, hdrs, limits.WEBHOOK_TIMEOUT_S)

    def _record(self, done: list[_Flight]) -> None:
        if not done:
            return
        derived = []
        for f in sorted(done, key=lambda f: f.delivery.delivery_id):
            now_us = max(self.clock_us(), f.done_at_us)
            if f.future is None:
                status, error = 0, f.refused
            elif f.future.cancelled():
                del self.flights[f.delivery.delivery_id]
                continue  # never sent: the next run attempts it
            elif (exc := f.future.exception()) is not None:  # post() answers network failures itself: a bug
                status, error = 0, webhooks.cut_error(f"not sent: {type(exc).__name__}: {exc}")
            else:
                r = f.future.result()
                status, error = r.status, r.error
            t = min(max(now_us, limits.MIN_EVENT_TIME_US), limits.MAX_EVENT_TIME_US)
            if 200 <= status < 300:
                outcome, nxt = DeliveryOutcome.DELIVERED.value, 0
            else:
                nxt = self.policy.after_failure(f.attempt, t)
                outcome = DeliveryOutcome.RETRYING.value if nxt else DeliveryOutcome.FAILED.value
            body = DeliveryAttempt(delivery_id=f.delivery.delivery_id, sink_id=f.delivery.sink_id, attempt=f.attempt,
                                   outcome=outcome, http_status=status, error=error,
                                   next_attempt_at_us=min(nxt, limits.MAX_EVENT_TIME_US))
            derived.append(Derived(topic=NAME, body=body, event_time_us=t,
                                   idempotency_key=f"attempt:{f.delivery.delivery_id}:{f.attempt}"))
        if derived:
            self.runner.emit(derived)
        for d in derived:
            assert isinstance(d.body, DeliveryAttempt)
            self.recorded[d.body.delivery_id] = d.body.attempt
            self.flights.pop(d.body.delivery_id, None)


__all__ = ["ATTEMPTS", "DELIVERIES", "SINKS", "Deliveries", "Sender", "alert_of", "delivery_id"]
