"""The producer SDK: build, validate, chain, sign and append events.

    from ledger import Emitter
    with Emitter.open("researcher", home="~/.tokenledger") as em:
        em.action("web.search", cost_weight=1.5)

Guarantees:
- **Delivery.** ``emit`` validates and chains the event at once (a bad event raises
  ``ValidationError`` and changes nothing) and returns its id; the event is durable when the batch
  it belongs to has been appended: when the batch is full (``batch_size`` events), when it is
  ``linger_ms`` old (a background flusher), or on ``flush()`` / ``close()``, which return only after
  the append is acknowledged. A batch is one signed record.
- **Idempotence.** Event ids derive from the signer and the caller's ``idempotency_key`` (or, if
  none, the event's content): re-emitting the same call returns the same id and appends nothing.
- **Chain continuity.** The chain head is persisted after every append, and on start the emitter
  reconciles it with the log (records appended just before a crash are found and adopted), so a
  restarted agent continues its chain instead of forking it.
- **No fork.** Only one emitter per signer may run against one home at a time (a lock file); a
  second one gets ``ChainForkError``. An emitter also refuses to start when its saved head is ahead
  of the log (the log was replaced), instead of writing a second chain.
- **Refuses what readers reject.** An emitter given the log's control topic and trusted operator keys
  (``Emitter.open``, ``Emitter.for_operator``, ``tokenledger emit`` all do) keeps the key ring that
  topic builds, exactly as readers build it, and refuses to sign with a key the readers would refuse:
  a key never registered (``RejectError`` code ``unknown_key``) or one revoked or rotated away
  (``revoked_key``). It checks at ``emit`` (nothing is buffered) and again right before each append
  (a refused batch is dropped, never appended, and the chain head goes back to the last appended
  event). The ring is kept incrementally: each check reads only the control records appended since
  the previous one.

  One race cannot be closed by a producer: a revocation appended between the check and the append.
  Readers judge the record by the log's order and reject it (``revoked_key``, quarantined); the
  emitter learns of the revocation at its next check and refuses from then on. The check is a
  courtesy to the honest producer, never a defence: the readers are the defence.

Wall-clock time is read here, and only here, to stamp events whose caller gave no event time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.errors import ChainForkError, LedgerError, LogError, RejectCode, RejectError, ValidationError
from ledger.integrity.chain import GENESIS, Head
from ledger.integrity.keyring import KeyRing
from ledger.integrity.keys import SigningKey
from ledger.integrity.verify import Verifier, Where
from ledger.log import DEFAULT_TOPIC, Log, judges_by_log_order, partition_for
from ledger.sdk.home import OPERATOR_LOCK_WAIT_S, Home, resolve_home, resolve_log_url
from ledger.units import MILLI
from ledger.wire import codec
from ledger.wire.events import (
    EMPTY_CONTEXT,
    Action,
    Body,
    Compute,
    Context,
    Cosignature,
    Data,
    Flow,
    Interaction,
    LlmUsage,
    Trust,
    check_int,
    check_map,
    check_opt_str,
)

DEFAULT_BATCH_SIZE = 100  # events per signed record
DEFAULT_LINGER_MS = 20.0  # longest a buffered event waits before the background flusher sends it


def milli(name: str, value: Any) -> int:
    """A float/int/str like 1.5 as exact thousandths (1500); more than 3 decimals is an error."""
    if type(value) is int:
        return value * MILLI
    if isinstance(value, bool):
        raise ValidationError(name, value, "must be a number")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(name, value, "must be a number") from None
    if not d.is_finite():
        raise ValidationError(name, value, "must be a finite number")
    scaled = d * MILLI
    if scaled != scaled.to_integral_value():
        raise ValidationError(name, value, "has more than 3 decimal places")
    return int(scaled)


@dataclass(frozen=True)
class EmitterStats:
    emitted: int
    deduplicated: int
    appended_events: int
    appended_records: int
    pending: int
    head_seq: int


class _State:
    """Persisted chain heads of local emitters (one small SQLite file per home)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        # no fsync here: the log is the source of truth and a stale head is reconciled from it on start
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS heads (signer_id TEXT NOT NULL, topic TEXT NOT NULL, seq INTEGER NOT NULL,"
            " hash BLOB NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL, PRIMARY KEY(signer_id, topic));"
            "CREATE TABLE IF NOT EXISTS recent (signer_id TEXT NOT NULL, topic TEXT NOT NULL, event_id TEXT NOT NULL,"
            " seq INTEGER NOT NULL, PRIMARY KEY(signer_id, topic, event_id));")

    def load(self, signer: str, topic: str) -> tuple[Head, int, list[tuple[str, int]]]:
        row = self.db.execute("SELECT seq, hash, offset FROM heads WHERE signer_id=? AND topic=?",
                              (signer, topic)).fetchone()
        recent = self.db.execute("SELECT event_id, seq FROM recent WHERE signer_id=? AND topic=? ORDER BY seq",
                                 (signer, topic)).fetchall()
        if row is None:
            return GENESIS, -1, []
        return Head(int(row[0]), bytes(row[1])), int(row[2]), [(str(a), int(b)) for a, b in recent]

    def save(self, signer: str, topic: str, head: Head, partition: int, offset: int,
             new_ids: list[tuple[str, int]]) -> None:
        self.db.execute("BEGIN")
        self.db.execute("INSERT OR REPLACE INTO heads VALUES (?, ?, ?, ?, ?, ?)",
                        (signer, topic, head.seq, head.hash, partition, offset))
        self.db.executemany("INSERT OR REPLACE INTO recent VALUES (?, ?, ?, ?)",
                            [(signer, topic, i, s) for i, s in new_ids])
        self.db.execute("DELETE FROM recent WHERE signer_id=? AND topic=? AND seq <= ?",
                        (signer, topic, head.seq - limits.DUPLICATE_WINDOW_EVENTS))
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class ControlKeys:
    """The key ring a log's control topic builds, kept up to date incrementally.

    Every control record is verified exactly as readers verify it (signature, chain, operator
    signature, consistency with the ring; a bad one is skipped, as readers quarantine it), so the ring
    trusts nothing a reader would not. The ring judges revocations as readers do on this log: by log
    order on a log with a total clock, by event time on Kafka (``ledger.integrity.keyring``).
    ``refresh`` reads only the records appended since the last refresh: one ``end_offset`` per control
    partition when nothing is new.
    """

    def __init__(self, log: Log, control_topic: str, anchors: Mapping[str, bytes]) -> None:
        self.log = log
        self.topic = control_topic
        self.verifier = Verifier(KeyRing(dict(anchors), by_log_order=judges_by_log_order(log)))
        self._next = [0] * log.partitions(control_topic)  # per partition: the first offset not read yet

    @property
    def ring(self) -> KeyRing:
        return self.verifier.keyring

    def refresh(self) -> None:
        """Fold the control records appended since the last refresh into the ring."""
        for p, offset in enumerate(self._next):
            end = self.log.end_offset(self.topic, p)
            while offset < end:
                recs = self.log.read(self.topic, p, offset, limits.MAX_EMITTER_CONTROL_READ_RECORDS)
                if not recs:
                    break
                for r in recs:
                    # a bad control record changes no key for readers (they quarantine it): nor here
                    with contextlib.suppress(RejectError):
                        self.verifier.check_record(r.value, Where(r.topic, r.partition, r.offset))
                offset = recs[-1].offset + 1
            self._next[p] = offset

    def check(self, signer_id: str, key_id: str, event_time_us: int, *, refresh: bool = True) -> None:
        """Raise ``RejectError`` (unknown_key, signer_mismatch, revoked_key) if readers would refuse a batch
        signed now by ``key_id`` for ``signer_id`` whose latest event time is ``event_time_us``."""
        if refresh:
            self.refresh()
        try:
            self.ring.check(signer_id, key_id, event_time_us)
        except RejectError as e:
            e.evidence["appended"] = False
            if e.code is RejectCode.UNKNOWN_KEY:
                e.hint = (f"register the signer first (`tokenledger agent register {signer_id}`), "
                          "or use the key file the operator registered")
            elif e.code is RejectCode.REVOKED_KEY:
                e.hint = ("this key was revoked or rotated away: readers reject everything it signs now; "
                          "after `agent rotate`, reopen the emitter with the signer's new key")
            raise


class Emitter:
    """Signs and appends one signer's events. Thread-safe; one per signer per home.

    With ``control_topic`` and ``anchors`` (the operator keys trusted out of band) it refuses to sign
    with a key readers would refuse (``RejectError`` unknown_key / revoked_key; see the module doc):
    checked at ``emit`` and again right before each append. A revocation appended between that last
    check and the append cannot be seen: readers reject that record (log order decides), and this
    emitter refuses from its next check on.
    """

    def __init__(self, log: Log, key: SigningKey, *, topic: str = DEFAULT_TOPIC, state_dir: Path | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, linger_ms: float = DEFAULT_LINGER_MS,
                 context: Context | None = None, clock_ns: Callable[[], int] = time.time_ns,
                 background_flush: bool = True, lock_timeout_s: float = 0.0, control_topic: str | None = None,
                 anchors: Mapping[str, bytes] | None = None) -> None:
        if (control_topic is None) != (anchors is None):
            raise ValidationError("control_topic", control_topic, "give control_topic and anchors together "
                                  "(the key ring is built from both), or neither")
        check_int("batch_size", batch_size, 1, limits.MAX_BATCH_EVENTS)
        if not isinstance(linger_ms, (int, float)) or not 0 <= linger_ms <= 60_000:
            raise ValidationError("linger_ms", linger_ms, "must be between 0 and 60000")
        self.log = log
        self.key = key
        self.signer_id = key.signer_id
        self.topic = topic
        self.batch_size = batch_size
        self.linger_s = linger_ms / 1000
        self.context = context or EMPTY_CONTEXT
        self._clock_ns = clock_ns
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[tuple[str, int, bytes, bytes, int]] = []  # (event_id, seq, bytes, hash, event time)
        self._pending_since = 0.0
        self._recent: OrderedDict[str, int] = OrderedDict()
        self._counts = {"emitted": 0, "deduplicated": 0, "events": 0, "records": 0}
        self._closed = False
        self._error: LedgerError | None = None
        self._lock_fd: int | None = None
        self._state: _State | None = None
        self._key_bytes = self.signer_id.encode()
        self._lock_timeout_s = lock_timeout_s
        self._partition = partition_for(self._key_bytes, log.partitions(topic))
        self.control_keys = None if control_topic is None or anchors is None else ControlKeys(log, control_topic,
                                                                                               anchors)
        try:
            if state_dir is not None:
                self._acquire_lock(Path(state_dir))
                self._state = _State(Path(state_dir) / "emitters.sqlite")
            self._head = self._reconcile()
            self._appended_head = self._head  # the last event known appended: where a refused batch goes back to
        except BaseException:
            self._release()
            raise
        self._flusher: threading.Thread | None = None
        if background_flush and self.linger_s > 0:
            self._flusher = threading.Thread(target=self._flush_loop, name=f"emitter-{self.signer_id}", daemon=True)
            self._flusher.start()

    @classmethod
    def open(cls, agent_id: str, *, home: str | Path | None = None, log: str | None = None, **options: Any) -> Emitter:
        """An emitter for ``agent_id`` using the key, state and log of a ledger home."""
        h = Home.open(resolve_home(home))
        key = h.load_key(agent_id)
        lg = h.open_log(resolve_log_url(log, h))
        options.setdefault("topic", h.topic)
        options.setdefault("control_topic", h.control_topic)
        options.setdefault("anchors", h.anchors())
        try:
            em = cls(lg, key, state_dir=h.state_dir, **options)
        except BaseException:
            lg.close()
            raise
        em._owns_log = True
        em.home_path = h.path  # where check() finds the published budget views
        return em

    @classmethod
    def for_operator(cls, home: Home, log: Log, **options: Any) -> Emitter:
        """An emitter for ``home``'s operator control events (registrations, keys, policies, prices).

        (It lives here, not on ``Home``: the home is the layout an emitter is opened from, and
        knows nothing of emitters.)"""
        options.setdefault("background_flush", False)
        # operator commands are short; concurrent ones (two `agent register`s) take turns
        options.setdefault("lock_timeout_s", OPERATOR_LOCK_WAIT_S)
        # the operator's key is checked too: a rotated-away operator key file signs nothing readers accept
        options.setdefault("control_topic", home.control_topic)
        options.setdefault("anchors", home.anchors())
        return cls(log, home.operator_key(), topic=home.control_topic, state_dir=home.state_dir, **options)

    # ------------------------------------------------------------ emit

    def emit(self, body: Body, *, event_time_us: int | None = None, context: Context | None = None,
             idempotency_key: str | None = None) -> str:
        """Chain and buffer one event; return its id. Nothing is buffered if validation fails."""
        if not isinstance(body, Body):
            raise ValidationError("body", body,
                                  "must be an event body (Action, Data, Compute, Trust, Interaction, ...)")
        if event_time_us is None:
            event_time_us = self._clock_ns() // 1000
        check_int("event_time_us", event_time_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
        check_opt_str("idempotency_key", idempotency_key)
        ctx = self.context if context is None else context
        if not isinstance(ctx, Context):
            raise ValidationError("context", ctx, "must be a Context")
        content = codec.encode_content(event_time_us, ctx, body)
        event_id = codec.derive_event_id(self.signer_id, idempotency_key, content)
        with self._lock:
            self._check_open()
            self._counts["emitted"] += 1
            if event_id in self._recent:
                self._counts["deduplicated"] += 1
                return event_id
            if self.control_keys is not None:
                # the first event of a batch reads what is new on the control topic; the rest of the batch is
                # checked against that ring (the append re-checks with a fresh read anyway)
                self.control_keys.check(self.signer_id, self.key.key_id, event_time_us, refresh=not self._pending)
            seq = self._head.seq + 1
            raw = codec.assemble_event(event_id=event_id, signer_id=self.signer_id, seq=seq,
                                       prev_hash=self._head.hash, idempotency_key=idempotency_key, content=content)
            if len(raw) > limits.MAX_EVENT_BYTES:
                raise ValidationError("event", f"<{len(raw)} bytes>",
                                      f"encodes to more than {limits.MAX_EVENT_BYTES} bytes")
            h = codec.event_hash(raw)
            self._head = Head(seq, h)
            self._recent[event_id] = seq
            if len(self._recent) > limits.DUPLICATE_WINDOW_EVENTS:
                self._recent.popitem(last=False)
            if not self._pending:
                self._pending_since = time.monotonic()
                self._wake.notify()
            self._pending.append((event_id, seq, raw, h, event_time_us))
            if len(self._pending) >= self.batch_size:
                self._flush_locked()
        return event_id

    # typed helpers: the obvious way to emit each agent event kind

    def action(self, operation: str, *, cost_weight: float | int | str = 1, result_hash: str | None = None,
               provider: str | None = None, model: str | None = None, input_tokens: int = 0,
               output_tokens: int = 0, cache_read_tokens: int = 0, cache_write_tokens: int = 0,
               reasoning_tokens: int = 0, **common: Any) -> str:
        """An action token; pass provider and model (and token counts) when the action was an LLM call."""
        usage = None
        if provider is not None or model is not None:
            usage = LlmUsage(provider=provider, model=model, input_tokens=input_tokens,  # type: ignore[arg-type]
                             output_tokens=output_tokens, cache_read_tokens=cache_read_tokens,
                             cache_write_tokens=cache_write_tokens, reasoning_tokens=reasoning_tokens)
        elif any((input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens)):
            raise ValidationError("provider", None, "token counts need a provider and a model")
        return self.emit(Action(operation=operation, cost_weight_milli=milli("cost_weight", cost_weight),
                                result_hash=result_hash, usage=usage), **common)

    def data(self, *, bytes_read: int = 0, bytes_written: int = 0, source_hash: str | None = None,
             destination_hash: str | None = None, duration_us: int = 0, **common: Any) -> str:
        return self.emit(Data(bytes_read=bytes_read, bytes_written=bytes_written, source_hash=source_hash,
                              destination_hash=destination_hash, duration_us=duration_us), **common)

    def compute(self, *, node_id: str, cpu_time_slices: int, gpu_time_slices: int = 0, peak_memory_mb: int = 0,
                parallel_jobs: int = 1, **common: Any) -> str:
        return self.emit(Compute(node_id=node_id, cpu_time_slices=cpu_time_slices, gpu_time_slices=gpu_time_slices,
                                 peak_memory_mb=peak_memory_mb, parallel_jobs=parallel_jobs), **common)

    def trust(self, subject_id: str, dimension: str, value: float | int | str, *, half_life_us: int | None = None,
              source: str | None = None, **common: Any) -> str:
        return self.emit(Trust(subject_id=subject_id, dimension=dimension, value_milli=milli("value", value),
                               half_life_us=half_life_us, source=source), **common)

    # budgets: advisory admission, and reservations (the guarantee; see ledger/sdk/views.py)

    home_path: Path | None = None
    _owns_log: bool = False  # opened by Emitter.open: closed with the emitter

    def check(self, kind: str, amount: int, *, at_us: int | None = None) -> Any:
        """allow / throttle (delay) / deny for spending ``amount`` of ``kind`` now, from the latest
        published budgets view, over this agent's hierarchy (its context's org, project, task).
        Advisory: racing agents can only be stopped by ``reserve``, decided in log order."""
        from ledger.sdk.views import check

        if self.home_path is None:
            raise ValidationError("home", None, "check() needs an emitter opened with Emitter.open(..., home=...)")
        c = self.context
        return check(self.home_path, self.signer_id, kind, amount, org=c.org, project=c.project, task=c.task,
                     at_us=at_us)

    def reserve(self, reservation_id: str, kind: str, amount: int, *, ttl_us: int = 300_000_000,
                scope: str = "agent", scope_id: str | None = None, **common: Any) -> str:
        """Ask the budgets processor to hold ``amount`` of ``kind`` for ``ttl_us`` of event time (at every
        budgeted level of this agent's hierarchy, ``scope``/``scope_id`` in place of its level)."""
        from ledger.wire.events import Reservation

        t = common.pop("event_time_us", None)
        t = self._clock_ns() // 1000 if t is None else t
        check_int("ttl_us", ttl_us, 1, limits.MAX_DURATION_US)
        return self.emit(Reservation(reservation_id=reservation_id, action="reserve", scope=scope,
                                     scope_id=scope_id or self.signer_id, budget_kind=kind, amount=amount,
                                     expires_at_us=t + ttl_us), event_time_us=t, **common)

    def commit(self, reservation_id: str, kind: str, amount: int, *, scope: str = "agent",
               scope_id: str | None = None, **common: Any) -> str:
        """Settle a reservation with what was actually spent (the commit is the spend record)."""
        from ledger.wire.events import Reservation

        return self.emit(Reservation(reservation_id=reservation_id, action="commit", scope=scope,
                                     scope_id=scope_id or self.signer_id, budget_kind=kind, amount=amount), **common)

    def release(self, reservation_id: str, kind: str, *, scope: str = "agent", scope_id: str | None = None,
                **common: Any) -> str:
        """Free a reservation unused."""
        from ledger.wire.events import Reservation

        return self.emit(Reservation(reservation_id=reservation_id, action="release", scope=scope,
                                     scope_id=scope_id or self.signer_id, budget_kind=kind, amount=0), **common)

    def interaction(self, *, responder_id: str, interaction_id: str, requestor_provider: str, requestor_model: str,
                    responder_provider: str, responder_model: str, request_tokens: int | None = None,
                    response_tokens: int | None = None, request_output: Flow | None = None,
                    request_input: Flow | None = None, response_output: Flow | None = None,
                    response_input: Flow | None = None, request_cached_tokens: int = 0,
                    response_cached_tokens: int = 0, cosigner: SigningKey | None = None, **common: Any) -> str:
        """An agent-to-agent call. Give request/response token counts (each read once by the other side,
        with its cached part), or the four flows explicitly. ``cosigner`` = the responder's key, to co-sign."""
        if request_tokens is not None:
            request_output = request_output or Flow(request_tokens)
            request_input = request_input or Flow(request_tokens, request_cached_tokens)
        if response_tokens is not None:
            response_output = response_output or Flow(response_tokens)
            response_input = response_input or Flow(response_tokens, response_cached_tokens)
        for n, f in (("request_output", request_output), ("request_input", request_input),
                     ("response_output", response_output), ("response_input", response_input)):
            if f is None:
                raise ValidationError(n, None, "give request_tokens/response_tokens or all four flows")
        body = Interaction(interaction_id=interaction_id, requestor_id=self.signer_id, responder_id=responder_id,
                           requestor_provider=requestor_provider, requestor_model=requestor_model,
                           responder_provider=responder_provider, responder_model=responder_model,
                           request_output=request_output, request_input=request_input,  # type: ignore[arg-type]
                           response_output=response_output, response_input=response_input)  # type: ignore[arg-type]
        if cosigner is not None:
            if cosigner.signer_id != responder_id:
                raise ValidationError("cosigner", cosigner.signer_id, f"must be the responder's key ({responder_id})")
            sig = cosigner.sign(codec.cosigning_bytes(body))
            body = replace(body, cosignature=Cosignature(cosigner.key_id, sig))
        return self.emit(body, **common)

    # ------------------------------------------------------------ delivery

    def flush(self) -> None:
        """Append everything buffered; return when it is acknowledged (durable)."""
        with self._lock:
            self._check_open(allow_closed=True)
            self._flush_locked()

    def close(self) -> None:
        """Flush, stop the background flusher, release the signer lock. Idempotent.

        The lock and the log are released even when the last flush fails (a log error, or a batch refused
        because its key was revoked meanwhile): the error is raised after that."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # emit refuses from now on; the flusher, once it gets the lock, stops
            self._wake.notify_all()
        try:
            with self._lock:
                self._error = None
                self._flush_locked()
        finally:
            if self._flusher is not None:
                self._flusher.join(timeout=5)
            self._release()
            if self._owns_log:
                self.log.close()

    def stats(self) -> EmitterStats:
        with self._lock:
            return EmitterStats(self._counts["emitted"], self._counts["deduplicated"], self._counts["events"],
                                self._counts["records"], len(self._pending), self._head.seq)

    @property
    def head(self) -> Head:
        return self._head

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ internals

    def _flush_locked(self) -> None:
        while self._pending:
            batch = self._pending[: self.batch_size]
            if self.control_keys is not None:
                try:
                    self.control_keys.check(self.signer_id, self.key.key_id, max(t for *_, t in batch))
                except RejectError as e:
                    self._drop_pending(e)
                    raise
            message = codec.batch_signing_bytes(self.signer_id, self.key.key_id, [h for _, _, _, h, _ in batch])
            record = codec.encode_batch(self.signer_id, self.key.key_id, [raw for _, _, raw, _, _ in batch],
                                        self.key.sign(message))
            try:
                (pos,) = self.log.append(self.topic, [(self._key_bytes, record)])
            except LogError:
                # the batch stays pending: a later flush retries the very same signed bytes
                raise
            del self._pending[: len(batch)]
            _, last_seq, _, last_hash, _ = batch[-1]
            self._appended_head = Head(last_seq, last_hash)
            if self._state is not None:
                self._state.save(self.signer_id, self.topic, self._appended_head, pos.partition, pos.offset,
                                 [(i, s) for i, s, _, _, _ in batch])
            self._counts["events"] += len(batch)
            self._counts["records"] += 1
        self._pending_since = 0.0

    def _drop_pending(self, error: RejectError) -> None:
        """Forget every buffered event (readers would reject them): the chain head goes back to the last
        appended event and their ids may be emitted again (with a valid key)."""
        error.evidence["dropped_events"] = len(self._pending)
        for event_id, *_ in self._pending:
            self._recent.pop(event_id, None)
        self._pending.clear()
        self._head = self._appended_head
        self._pending_since = 0.0

    def _flush_loop(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._pending or self._error is not None:
                    # after a failure, retry slowly; the caller sees the error at its next emit/flush
                    self._wake.wait(max(self.linger_s, 0.1) if self._error is not None else None)
                    continue
                due = self._pending_since + self.linger_s - time.monotonic()
                if due > 0:
                    self._wake.wait(due)
                    continue
                try:
                    self._flush_locked()
                except LedgerError as e:
                    self._error = e

    def _check_open(self, allow_closed: bool = False) -> None:
        if self._closed and not allow_closed:
            raise LedgerError("emitter is closed", signer_id=self.signer_id)
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _acquire_lock(self, state_dir: Path) -> None:
        locks = state_dir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        path = locks / f"{self.signer_id}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self._lock_timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.01)  # another short-lived writer (an operator command) holds it: wait our turn
                    continue
            os.close(fd)
            holder = path.read_text().strip() or "another process"
            raise ChainForkError(f"another emitter for {self.signer_id} is running; a second one would fork its chain",
                                 signer_id=self.signer_id, holder_pid=holder,
                                 hint="use one Emitter per agent (it is thread-safe), or close the other one") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _release(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _reconcile(self) -> Head:
        """Start from the saved head, then adopt any of our records the log has beyond it."""
        head, offset = GENESIS, -1
        recent: list[tuple[str, int]] = []
        if self._state is not None:
            head, offset, recent = self._state.load(self.signer_id, self.topic)
        end = self.log.end_offset(self.topic, self._partition)
        if offset >= end:
            raise ChainForkError("saved chain head is ahead of the log: the log was replaced or truncated",
                                 signer_id=self.signer_id, expected=f"offset < {end}", actual=offset,
                                 hint="point this home at its original log, or start a new home")
        for event_id, seq in recent:
            self._recent[event_id] = seq
        last_offset = offset
        while True:
            recs = self.log.read_key(self.topic, self._key_bytes, last_offset, 1000)
            if not recs:
                break
            for rec in recs:
                last_offset = rec.offset
                head = self._adopt(rec.value, head)
        if self._state is not None and last_offset != offset:
            self._state.save(self.signer_id, self.topic, head, self._partition, last_offset,
                             list(self._recent.items())[-limits.DUPLICATE_WINDOW_EVENTS:])
        return head

    def _adopt(self, value: bytes, head: Head) -> Head:
        """Adopt a record of ours found on the log if it extends our head (others' or bad bytes: ignored)."""
        try:
            batch = codec.decode_batch(value)
            if batch.signer_id != self.signer_id or batch.key_id != self.key.key_id:
                return head
            decoded = [codec.decode_event(raw) for raw in batch.events]
            message = codec.batch_signing_bytes(batch.signer_id, batch.key_id, [d.hash for d in decoded])
            if not self.key.public.verify(batch.signature, message):
                return head
        except RejectError:
            return head
        for d in decoded:
            if d.event.seq == head.seq + 1 and d.event.prev_hash == head.hash:
                head = Head(d.event.seq, d.hash)
                self._recent[d.event.event_id] = d.event.seq
        while len(self._recent) > limits.DUPLICATE_WINDOW_EVENTS:
            self._recent.popitem(last=False)
        return head


def context(org: str | None = None, project: str | None = None, task: str | None = None, stage: str | None = None,
            run: str | None = None, labels: Mapping[str, str] | None = None) -> Context:
    """Shorthand for a Context."""
    return Context(org=org, project=project, task=task, stage=stage, run=run, labels=check_map("labels", labels or {}))
