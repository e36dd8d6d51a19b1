"""Custodial signing: the service signs JSON events as the agent, with the agent's key held in the service's home.

**What custody means.** ``POST /v1/events`` takes unsigned JSON; the events on the log are still signed and
chained by the agent's own key, ``<home>/keys/<agent>.key``, the file ``tokenledger agent register`` wrote. The
service holds that key and signs with it whenever a caller presents a token that may act for the agent (the agent's
own token, or an operator token naming it). So whoever holds such a token can make the ledger say the agent did
something: the token is the credential, and the signature proves only that the service's home signed it. An agent
that must prove its events itself keeps its key away from the service and sends batches it signed
(``POST /v1/batches``). Which token ingested each event is recorded in its context label ``tokenledger.token_id``
(``processors.api.events``), so the journal's ``events`` view shows it. Only signers registered with the role
``agent`` are signed for: an operator or processor key in the same home is never used here.

**One emitter per agent.** ``CustodyPool`` opens an ``Emitter`` for an agent on first use, as ``Emitter.open`` does
(the agent's key file, the home's state directory with its chain heads and idempotency windows, the control topic
and trusted operator keys, so it refuses what readers would reject), over the service's one open log; the service's
clock stamps events sent without a time. An emitter holds its agent's lock file in the home: while it is open, no
other process on this home can emit for that agent (the agent's own SDK, ``tokenledger emit``). So the pool closes an
emitter unused for ``EMITTER_IDLE_S``, keeps at most ``EMITTERS_OPEN_LIMIT`` open (the least recently used idle one
is closed to make room; when every one is in use the request is answered 503 with ``Retry-After``), and closes all
of them when the service closes (``Service.on_close``). Several service instances on one home should route each
custodial agent to one instance (sticky by agent): the second instance's open is refused, see below.

**One request at a time per agent.** ``session(agent)`` hands a request the agent's emitter exclusively, from its
first ``emit`` to its ``flush``: what a flush acknowledges is then exactly that request's events (a concurrent
request's failed flush cannot drop them unseen), and the emitter's duplicate count tells that request's duplicates.
Requests for other agents run in parallel. A request waits at most ``SESSION_WAIT_S`` for its turn (503 after).

**Refusals** (``Problem``, problem+json): another process holds the agent's emitter lock → 409 ``agent_locked``
(immediately, naming the holder's pid; never a wait); the home has no usable key file for the agent → 409
``not_custodial``; the key is registered with a role other than ``agent`` → 403 ``not_an_agent``; the pool is full of
busy emitters or the agent's turn did not come → 503 ``custody_busy`` with ``Retry-After``.

**Retired emitters.** An emitter that met another writer of its chain (``ChainForkError``) is closed after the
request, and one whose key file was replaced since it opened (``tokenledger agent rotate``: its old key signs nothing
readers accept) is closed before the request uses it (a ``stat`` of the key file per request); the request after,
or this one, opens a new emitter with the key file as it is, continuing the chain on the log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ledger import limits
from ledger.errors import ChainForkError, KeyFileError
from ledger.integrity.keys import SigningKey
from ledger.log import Log
from ledger.sdk.emitter import ControlKeys, Emitter
from ledger.sdk.home import Home
from ledger.units import NS_PER_US
from ledger.wire.vocab import Role
from processors.api.problems import Problem
from processors.api.state import Service

log = logging.getLogger("tokenledger.serve.custody")

EMITTER_IDLE_S = 300.0  # seconds an agent's emitter stays open unused (holding the agent's lock) before it is closed
# emitters open at once: each holds a lock file, a connection to the home's state file and its agent's idempotency
# window in memory (up to limits.MAX_IDEMPOTENCY_WINDOW_EVENTS ids)
EMITTERS_OPEN_LIMIT = 64
SESSION_WAIT_S = 30.0  # longest a request waits for its agent's emitter (another request's flush, or its opening)
REAP_EVERY_S = 5.0  # how often idle emitters are looked for (an idle one closes within this of EMITTER_IDLE_S)
RETRY_AFTER_S = 1  # what a 503 tells the caller to wait, seconds
EXTRA = "custody"  # the service's per-process singleton (Service.extra)


@dataclass(eq=False)
class _Slot:
    """One agent's emitter in the pool (being opened while ``ready`` is unset)."""

    agent: str
    ready: threading.Event = field(default_factory=threading.Event)
    turn: threading.Lock = field(default_factory=threading.Lock)  # held by the one request using the emitter
    emitter: Emitter | None = None
    log: Log | None = None  # the emitter's own connection to the log (closed with it)
    key_file: tuple[int, int, int] | None = None  # (inode, mtime ns, size) of the key file it was opened with
    error: Exception | None = None  # why it could not be opened (ready is set)
    users: int = 0  # requests holding or waiting for it: never closed while > 0, except when the pool closes
    last_used: float = 0.0
    broken: bool = False  # fenced by another writer, or its key file replaced: closed when its last user leaves
    closed: threading.Event | None = None  # set once out of the pool: set again when its emitter is closed
    closing: bool = False  # its close has started


class CustodyPool:
    """The service's custodial emitters, one per agent (see the module docstring). Thread-safe."""

    def __init__(self, home: Home, log_: Log, log_url: str, *, clock_us: Callable[[], int],
                 idle_s: float = EMITTER_IDLE_S,
                 max_open: int = EMITTERS_OPEN_LIMIT, session_wait_s: float = SESSION_WAIT_S,
                 reap_every_s: float = REAP_EVERY_S, monotonic: Callable[[], float] = time.monotonic) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        self.home = home
        self.log = log_
        self.log_url = log_url
        self.idle_s = idle_s
        self.max_open = max_open
        self.session_wait_s = session_wait_s
        self._clock_us = clock_us
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._slots: OrderedDict[str, _Slot] = OrderedDict()  # least recently used first
        self._leaving: dict[str, _Slot] = {}  # agent -> its slot out of the pool whose emitter is not closed yet
        self._closed = False
        # the key ring, for the role of a key before anything is opened with it (incremental: only what is new)
        self._keys = ControlKeys(log_, home.control_topic, home.anchors())
        self._keys_lock = threading.Lock()
        self._reaper = threading.Thread(target=self._reap_loop, args=(reap_every_s,), name="custody-reaper",
                                        daemon=True)
        self._reaper.start()

    @classmethod
    def of(cls, svc: Service) -> CustodyPool:
        """The service's pool, made on first use and closed with the service."""

        def make() -> CustodyPool:
            pool = cls(svc.home, svc.log, svc.log_url, clock_us=svc.now_us)
            svc.on_close(pool.close)
            return pool

        return svc.extra(EXTRA, make)  # noqa: S610 (our method, not Django)

    # ------------------------------------------------------------ use

    @contextlib.contextmanager
    def session(self, agent: str) -> Iterator[Emitter]:
        """``agent``'s emitter, for this caller alone until the block ends (opened first if needed). An emitter whose
        key file was replaced since it opened (``tokenledger agent rotate``) is retired and a new one opened."""
        slot = self._enter(agent)
        if self._stale(slot):
            slot.broken = True
            self._leave(slot)
            slot = self._enter(agent)
        try:
            if not slot.turn.acquire(timeout=self.session_wait_s):
                raise Problem(503, "Agent busy", code="custody_busy", headers={"Retry-After": str(RETRY_AFTER_S)},
                              detail=f"other requests for {agent} held its emitter for {self.session_wait_s:g} s",
                              agent=agent)
            try:
                assert slot.emitter is not None  # _enter returns only an opened slot
                yield slot.emitter
            except ChainForkError:
                slot.broken = True  # fenced: every later call raises; reopened fresh by the next request
                raise
            finally:
                slot.turn.release()
        finally:
            self._leave(slot)

    def open_agents(self) -> list[str]:
        """The agents whose emitter is open (or opening), least recently used first."""
        with self._lock:
            return list(self._slots)

    def close_idle(self) -> list[str]:
        """Close every emitter unused for ``idle_s``; returns their agents (the reaper calls this)."""
        now = self._monotonic()
        with self._lock:
            idle = [s for s in self._slots.values()
                    if s.users == 0 and s.emitter is not None and now - s.last_used >= self.idle_s]
            for s in idle:
                self._detach(s)
        for s in idle:
            self._close_slot(s)
        return [s.agent for s in idle]

    def close(self) -> None:
        """Close every emitter (flushing what is buffered: nothing, after a finished request) and stop the reaper."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
            slots = list(self._slots.values())
            for s in slots:
                self._detach(s)
        self._reaper.join(timeout=REAP_EVERY_S)
        for s in slots:
            self._close_slot(s)

    # ------------------------------------------------------------ internals

    def _enter(self, agent: str) -> _Slot:
        """Count the caller in on ``agent``'s slot, opening its emitter if this caller is the first."""
        with self._lock:
            if self._closed:
                raise Problem(503, "Shutting down", code="custody_busy", headers={"Retry-After": str(RETRY_AFTER_S)},
                              detail="the service is closing", agent=agent)
            slot = self._slots.get(agent)
            opener = slot is None
            victims: list[_Slot] = []
            if slot is None:
                victims = self._make_room(agent)
                slot = self._slots[agent] = _Slot(agent)
            else:
                self._slots.move_to_end(agent)
            slot.users += 1
        if opener:
            for victim in victims:
                self._close_slot(victim)
            self._open(slot)
        elif not slot.ready.wait(self.session_wait_s):
            self._leave(slot)
            raise Problem(503, "Agent busy", code="custody_busy", headers={"Retry-After": str(RETRY_AFTER_S)},
                          detail=f"{agent}'s emitter did not open within {self.session_wait_s:g} s", agent=agent)
        if slot.error is not None:
            self._leave(slot)
            raise slot.error  # every caller waiting on this opening gets its answer (the next request retries)
        return slot

    def _make_room(self, agent: str) -> list[_Slot]:
        """(Under the lock.) Detach the least recently used idle slots so that one more fits; 503 if too few are
        idle (every other emitter is in use)."""
        need = len(self._slots) - self.max_open + 1
        if need <= 0:
            return []
        idle = [s for s in self._slots.values() if s.users == 0 and s.ready.is_set()][:need]
        if len(idle) < need:
            raise Problem(503, "Custody full", code="custody_busy", headers={"Retry-After": str(RETRY_AFTER_S)},
                          detail=f"all {self.max_open} custodial emitters are in use; {agent}'s cannot open now",
                          agent=agent)
        for s in idle:
            self._detach(s)
        return idle

    def _detach(self, slot: _Slot) -> None:
        """(Under the lock.) Take ``slot`` out of the pool: new requests for its agent open a new emitter, which
        waits until this one has released the agent's lock (``_close_slot``)."""
        if self._slots.get(slot.agent) is slot:
            del self._slots[slot.agent]
        if slot.closed is None:
            slot.closed = threading.Event()
            self._leaving[slot.agent] = slot

    def _close_slot(self, slot: _Slot) -> None:
        with self._lock:
            if slot.closing:
                return
            slot.closing = True
        try:
            if slot.emitter is not None:
                slot.emitter.close()
        except Exception:  # a fenced emitter raises its fork again on close: the lock is released all the same
            log.warning("closing %s's custodial emitter", slot.agent, exc_info=True)
        finally:
            if slot.log is not None:
                slot.log.close()
            with self._lock:
                if self._leaving.get(slot.agent) is slot:
                    del self._leaving[slot.agent]
            if slot.closed is not None:
                slot.closed.set()

    def _open(self, slot: _Slot) -> None:
        """Open ``slot``'s emitter (outside the pool lock: reconciling a chain reads the log); errors are kept on the
        slot for the callers waiting on it, and the slot leaves the pool so the next request tries again."""
        agent = slot.agent
        try:
            with self._lock:
                leaving = self._leaving.get(agent)
            if leaving is not None and leaving.closed is not None and not leaving.closed.wait(self.session_wait_s):
                # our own previous emitter of this agent still serves a request, or is releasing the lock
                raise Problem(503, "Agent busy", code="custody_busy", headers={"Retry-After": str(RETRY_AFTER_S)},
                              detail=f"{agent}'s previous emitter did not close within {self.session_wait_s:g} s",
                              agent=agent)
            key, slot.key_file = self._custodial_key(agent)
            # its own connection to the log, as Emitter.open gives it: one agent's append (an fsync on SQLite) or
            # read never waits for another agent's on a shared connection
            slot.log = self.home.open_log(self.log_url)
            em = Emitter(slot.log, key, topic=self.home.topic, state_dir=self.home.state_dir,
                         control_topic=self.home.control_topic, anchors=self.home.anchors(),
                         batch_size=limits.MAX_BATCH_EVENTS, background_flush=False,
                         clock_ns=lambda: self._clock_us() * NS_PER_US)
            em.home_path = self.home.path  # as Emitter.open sets it (check() reads the published views there)
            with self._lock:
                detached = self._slots.get(agent) is not slot  # the pool closed meanwhile
            if detached:
                em.close()
                raise Problem(503, "Shutting down", code="custody_busy", agent=agent,
                              headers={"Retry-After": str(RETRY_AFTER_S)}, detail="the service is closing")
            slot.emitter = em
        except ChainForkError as e:
            slot.error = self._refusal(agent, e)
        except Exception as e:  # noqa: BLE001 - kept for every caller waiting on this opening, raised to each
            slot.error = e
        if slot.error is not None:
            if slot.log is not None and slot.emitter is None:
                slot.log.close()
                slot.log = None
            with self._lock:
                if self._slots.get(agent) is slot:
                    del self._slots[agent]
        slot.ready.set()

    def _key_file(self, agent: str) -> tuple[int, int, int] | None:
        try:
            st = self.home.key_path(agent).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _stale(self, slot: _Slot) -> bool:
        """Whether the agent's key file changed since its emitter opened (rotated: the old key signs nothing now)."""
        return self._key_file(slot.agent) != slot.key_file

    def _custodial_key(self, agent: str) -> tuple[SigningKey, tuple[int, int, int] | None]:
        stamp = self._key_file(agent)  # before reading it: a file replaced in between is seen as changed next time
        try:
            key = self.home.load_key(agent)
        except KeyFileError as e:
            raise Problem(409, "Not custodial", code="not_custodial", agent=agent, reason=e.message,
                          detail=f"this service's home holds no usable key for {agent}: custodial signing needs the "
                                 f"agent's key file in {self.home.path}/keys (tokenledger agent register {agent})"
                          ) from None
        with self._keys_lock:
            self._keys.refresh()
            info = self._keys.ring.get(key.key_id)
        if info is not None and info.role != Role.AGENT.value:
            raise Problem(403, "Not an agent", code="not_an_agent", agent=agent, role=info.role,
                          detail=f"{agent} is registered as {info.role}: the service signs only for agents")
        return key, stamp

    @staticmethod
    def _refusal(agent: str, e: ChainForkError) -> Exception:
        """Another process's lock on the agent's chain is a 409 naming it; any other fork refusal stays itself."""
        holder = e.evidence.get("holder_pid")
        if holder is None:
            return e
        return Problem(409, "Agent locked", code="agent_locked", agent=agent, holder_pid=holder,
                       detail=f"another process (pid {holder}) holds {agent}'s emitter lock in this home: a second "
                              "writer would fork its chain. Stop it, or send this agent's events through it",
                       hint="one writer per agent: route each custodial agent to one service instance")

    def _leave(self, slot: _Slot) -> None:
        with self._lock:
            slot.users -= 1
            slot.last_used = self._monotonic()
            if slot.broken and self._slots.get(slot.agent) is slot:
                self._detach(slot)  # new requests open a fresh emitter (after this one is closed)
            close_now = slot.broken and slot.users == 0 and slot.emitter is not None
        if close_now:
            self._close_slot(slot)

    def _reap_loop(self, every_s: float) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._wake.wait(every_s)
                if self._closed:
                    return
            try:
                self.close_idle()
            except Exception:  # the reaper must outlive one failed close
                log.exception("closing idle custodial emitters")


__all__ = ["EMITTERS_OPEN_LIMIT", "EMITTER_IDLE_S", "SESSION_WAIT_S", "CustodyPool"]
