"""The producer SDK: build, validate, chain, sign and append events.

    from ledger import Emitter
    with Emitter.open("researcher", home="~/.tokenledger") as em:
        em.action("web.search", cost_weight=1.5)

Guarantees:
- **Delivery.** ``emit`` validates and chains the event at once (a bad event raises
  ``ValidationError`` and changes nothing) and returns its id; the event is durable when the batch
  it belongs to has been appended: when the batch is full (``batch_size`` events, or as many bytes as
  one log record may hold, ``limits.MAX_RECORD_BYTES`` for key + value on every backend), when it is
  ``linger_ms`` old (a background flusher), or on ``flush()`` / ``close()``, which return only after
  the append is acknowledged. A batch is one signed record. An event whose signed batch alone would
  exceed the record limit is refused at ``emit`` (``RecordTooLargeError``, its size and the limit).
- **Idempotence.** Event ids derive from the signer and the caller's ``idempotency_key`` (or, if
  none, the event's content): re-emitting the same call returns the same id and appends nothing.
  The emitter checks this before it chains or signs anything, against its idempotency window: the
  signer's last ``limits.IDEMPOTENCY_WINDOW_EVENTS`` events, and any within
  ``limits.IDEMPOTENCY_WINDOW_US`` of event time of its newest (at most
  ``limits.MAX_IDEMPOTENCY_WINDOW_EVENTS``), kept in the home next to the chain head and rebuilt from
  the log when the home has none, so it survives restarts and moves. It contains the readers'
  duplicate window (``limits.DUPLICATE_WINDOW_EVENTS``), so no retry reaches a reader as a duplicate.
  A key re-used with another context or body raises ``IdempotencyConflictError`` (both content
  hashes); a retry may be stamped later (the event time is not part of what a key promises). An
  event stamped at or before the newest event time the window has forgotten is refused
  (``IdempotencyWindowError``): it cannot be told from a forgotten retry, and one id must never be
  on the ledger twice.
- **Chain continuity.** The chain head is persisted after every append, and on start the emitter
  reconciles it with the log (records appended just before a crash, or by this signer's other keys,
  are found and adopted), so a restarted agent continues its chain instead of forking it. A
  signer has one chain over every topic: an emitter refuses a topic other than the one its chain
  is on (``ChainForkError``), e.g. the operator's chain is on the control topic.
- **No fork.** Only one emitter per signer may run against one home at a time (a lock file); a
  second one gets ``ChainForkError``. An emitter also refuses to start when its saved head is ahead
  of the log (the log was replaced), instead of writing a second chain. Across homes (one agent run
  on two machines over one log) every append is read back: a record of this signer that another
  writer appended since this emitter's last one means two writers; the emitter raises
  ``ChainForkError`` and refuses from then on, and never acknowledges a record readers reject as a
  fork (when the other record came first, the flush raises instead of returning).
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
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ledger import limits
from ledger.errors import (
    ChainForkError,
    IdempotencyConflictError,
    IdempotencyWindowError,
    LedgerError,
    RecordTooLargeError,
    RejectCode,
    RejectError,
    ValidationError,
)
from ledger.integrity.chain import GENESIS, Head
from ledger.integrity.keyring import KeyRing
from ledger.integrity.keys import PublicKey, SigningKey
from ledger.integrity.verify import Accepted, Verifier, Where
from ledger.log import DEFAULT_TOPIC, Log, Record, judges_by_log_order, partition_for
from ledger.sdk.home import OPERATOR_LOCK_WAIT_S, Home, resolve_home, resolve_log_url
from ledger.units import MILLI
from ledger.wire import codec
from ledger.wire.avro_fast import enc_long
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
    KeyRevoked,
    KeyRotated,
    LlmUsage,
    Trust,
    check_int,
    check_map,
    check_opt_str,
)

if TYPE_CHECKING:
    from ledger.sdk.guard import Guard

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


class _Pending(NamedTuple):
    """A chained, not yet appended event (a tuple: one is made per event, on the emit path)."""

    event_id: str
    seq: int
    raw: bytes
    hash: bytes
    event_time_us: int
    digest: bytes  # content_digest: what a retry with the same idempotency key must match
    item: int  # codec.batch_item_bytes(raw): what it adds to its signed batch record


@dataclass(frozen=True)
class EmitterStats:
    emitted: int
    deduplicated: int
    appended_events: int
    appended_records: int
    pending: int
    head_seq: int


# appended events whose ids (and the head) are written to the home's state file together: one state transaction per
# this many events, not per record (at batch 1 a transaction per event cost a fifth of the emit rate). Losing the
# unsaved ones in a crash loses nothing: on open the emitter adopts its records after the saved offset from the
# log, ids included, as it does for any stale state.
_SAVE_EVERY_EVENTS = 1_000
_EVICT_STRIDE_EVENTS = 1_000  # the window is trimmed once per this many appended events (a trim scans its tail)
# the window is stored as runs: one row per this many consecutive events of a signer at most (a row per event cost
# more than a fifth of the emit rate at batch 100). A trim forgets whole runs, so the window keeps up to this many
# events beyond its bounds.
_RUN_MAX_EVENTS = 1_000
_ID_CHARS = limits.EVENT_ID_HEX_CHARS  # every event id is this many hex characters (readers refuse any other)
_NO_DIGEST_SLOT = bytes(32)  # a keyless event's digest slot in a run (no SHA-256 is all zeros)
# the runs a window forgets: all their events beyond the count AND older than the time window, or beyond the hard cap
_FORGOTTEN_SQL = ("SELECT first_seq, max_time_us, ids FROM idem_runs"
                  " WHERE signer_id=? AND ((last_seq <= ? AND max_time_us < ?) OR last_seq <= ?)")
_FORGET_SQL = "DELETE FROM idem_runs WHERE signer_id=? AND ((last_seq <= ? AND max_time_us < ?) OR last_seq <= ?)"


@dataclass(frozen=True)
class _Saved:
    """A signer's saved chain head: where its last known record is, and its idempotency window's bounds."""

    topic: str
    head: Head
    partition: int
    offset: int
    newest_time_us: int  # the largest event time on the signer's chain
    horizon_us: int  # the largest event time of an id the window forgot (-1: none forgotten)


class _State:
    """Chain heads and idempotency windows of local emitters: one small SQLite file per home (or memory).

    One chain per signer (not per topic): readers keep one chain per signer over every topic.
    The window (``limits.IDEMPOTENCY_WINDOW_*``) maps each remembered event id to its seq and content digest
    (SHA-256 of context + body), so a retry is recognised and a key re-used for other content is refused, across
    restarts. It is stored as runs of consecutive events (``_RUN_MAX_EVENTS``): a run's ids and digests are
    packed into one row. Rows are written only for appended events, after the append.
    """

    def __init__(self, path: Path | None) -> None:
        where = ":memory:" if path is None else str(path)
        self.db = sqlite3.connect(where, isolation_level=None, check_same_thread=False, timeout=30)
        if path is not None:
            self.db.execute("PRAGMA journal_mode=WAL")
        # no fsync here: the log is the source of truth and a stale head and window are rebuilt from it on start
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self.db.execute("SELECT 1 FROM sqlite_master WHERE name='idem_window'").fetchone():
                # a window of one row per event (written before runs): forget it and the heads that go with it;
                # each emitter rebuilds its head and window from the log, the source of truth, on its next start
                self.db.execute("DROP TABLE idem_window")
                self.db.execute("DELETE FROM chain_heads")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS chain_heads (signer_id TEXT PRIMARY KEY, topic TEXT NOT NULL,"
                " seq INTEGER NOT NULL, hash BLOB NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,"
                " newest_time_us INTEGER NOT NULL, horizon_us INTEGER NOT NULL)")
            # a run: events first_seq..last_seq of a signer; ids = their hex ids back to back (_ID_CHARS each);
            # digests = their 32-byte content digests back to back (_NO_DIGEST_SLOT: keyless), or empty when
            # every one is keyless; max_time_us = their largest event time (what a trim moves the horizon to)
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS idem_runs (signer_id TEXT NOT NULL, first_seq INTEGER NOT NULL,"
                " last_seq INTEGER NOT NULL, max_time_us INTEGER NOT NULL, ids BLOB NOT NULL, digests BLOB NOT NULL,"
                " PRIMARY KEY(signer_id, first_seq))")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        # a home written before chain_heads (heads per signer and topic, 4,096 ids without content digests)
        # has no row in chain_heads: its emitters rebuild head and window from the log, the source of truth
        # Per signer, the first 64 bits of every id in its window -> its seq, in memory: almost every emitted
        # event is new, and this answers "never seen" without a query; a hit reads the run by its seq. One
        # emitter per signer per home writes a signer's rows, so this copy stays exact; it is dropped when a
        # save forgets runs and read again on the next lookup. At most MAX_IDEMPOTENCY_WINDOW_EVENTS entries
        # (plus one run).
        self._known: dict[str, dict[int, int]] = {}

    def load(self, signer: str) -> _Saved | None:
        row = self.db.execute("SELECT topic, seq, hash, partition, offset, newest_time_us, horizon_us FROM chain_heads"
                              " WHERE signer_id=?", (signer,)).fetchone()
        if row is None:
            return None
        return _Saved(str(row[0]), Head(int(row[1]), bytes(row[2])), int(row[3]), int(row[4]), int(row[5]),
                      int(row[6]))

    def _prefixes(self, signer: str) -> dict[int, int]:
        known = self._known.get(signer)
        if known is None:
            known = {}
            for first, ids in self.db.execute("SELECT first_seq, ids FROM idem_runs WHERE signer_id=?"
                                              " ORDER BY first_seq", (signer,)):
                known.update((int(ids[k:k + 16], 16), first + k // _ID_CHARS) for k in range(0, len(ids), _ID_CHARS))
            self._known[signer] = known
        return known

    def lookup(self, signer: str, event_id: str) -> bytes | None:
        """The content digest of ``event_id`` if the window remembers it."""
        seq = self._prefixes(signer).get(_id_prefix(event_id))
        if seq is None:
            return None
        row = self.db.execute("SELECT first_seq, last_seq, ids, digests FROM idem_runs WHERE signer_id=? AND"
                              " first_seq<=? ORDER BY first_seq DESC LIMIT 1", (signer, seq)).fetchone()
        if row is not None and seq <= row[1]:
            found = _in_run(int(row[0]), bytes(row[2]), bytes(row[3]), seq, event_id)
            if found is not None:
                return found
        # another id with the same first 64 bits (about never): look for this one in every run
        for first, ids, digests in self.db.execute("SELECT first_seq, ids, digests FROM idem_runs WHERE signer_id=?",
                                                   (signer,)):
            ids = bytes(ids)
            at = ids.find(event_id.encode("ascii"))
            while at >= 0 and at % _ID_CHARS:
                at = ids.find(event_id.encode("ascii"), at + 1)
            if at >= 0:
                return _in_run(int(first), ids, bytes(digests), int(first) + at // _ID_CHARS, event_id)
        return None

    def save(self, signer: str, saved: _Saved, entries: list[tuple[str, int, int, bytes]]) -> _Saved:
        """Record the new head and the appended events' (id, seq, event time, digest), consecutive in seq; trim
        the window. Returns the head with the horizon the trim moved."""
        self.db.execute("BEGIN")
        try:
            forgot = False  # a run superseded: the prefix map is read again
            forgotten: list[tuple[int, bytes]] = []  # runs the trim forgot: their prefixes leave the map
            if entries:
                # the chain from the first seq on is this one: a run stored from there on (never, but a stale
                # state file could hold one) is superseded
                forgot = self.db.execute("DELETE FROM idem_runs WHERE signer_id=? AND first_seq>=?",
                                         (signer, entries[0][1])).rowcount > 0
                self.db.executemany("INSERT INTO idem_runs VALUES (?, ?, ?, ?, ?, ?)",
                                    [_run_row(signer, entries[k:k + _RUN_MAX_EVENTS])
                                     for k in range(0, len(entries), _RUN_MAX_EVENTS)])
            horizon = saved.horizon_us
            seq = saved.head.seq
            if entries and seq > limits.IDEMPOTENCY_WINDOW_EVENTS and (
                    seq // _EVICT_STRIDE_EVENTS != (seq - len(entries)) // _EVICT_STRIDE_EVENTS):
                args = (signer, seq - limits.IDEMPOTENCY_WINDOW_EVENTS,
                        saved.newest_time_us - limits.IDEMPOTENCY_WINDOW_US, seq - limits.MAX_IDEMPOTENCY_WINDOW_EVENTS)
                gone = self.db.execute(_FORGOTTEN_SQL, args).fetchall()
                if gone:
                    horizon = max(horizon, *(int(t) for _, t, _ in gone))
                    self.db.execute(_FORGET_SQL, args)
                    forgotten = [(int(first), bytes(ids)) for first, _, ids in gone]
            saved = replace(saved, horizon_us=horizon)
            self.db.execute("INSERT OR REPLACE INTO chain_heads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (signer, saved.topic, saved.head.seq, saved.head.hash, saved.partition, saved.offset,
                             saved.newest_time_us, saved.horizon_us))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self._known.pop(signer, None)
            raise
        if forgot:
            self._known.pop(signer, None)  # read again on the next lookup
            return saved
        known = self._known.get(signer)
        if known is not None:
            # a full window trims every _EVICT_STRIDE_EVENTS events: dropping the forgotten runs' prefixes costs
            # O(run), where reading the whole window again cost O(window) per trim (~1 s at a million events)
            for first, ids in forgotten:
                for k in range(0, len(ids), _ID_CHARS):
                    prefix = int(ids[k:k + 16], 16)
                    if known.get(prefix) == first + k // _ID_CHARS:
                        del known[prefix]
            known.update((_id_prefix(i), q) for i, q, _, _ in entries)
        return saved

    def close(self) -> None:
        self.db.close()


def _run_row(signer: str, entries: list[tuple[str, int, int, bytes]]) -> tuple[str, int, int, int, bytes, bytes]:
    """One stored run of consecutive appended events (see ``_State``)."""
    first, last = entries[0][1], entries[-1][1]
    if last - first + 1 != len(entries) or any(len(i) != _ID_CHARS for i, _, _, _ in entries):
        raise ValueError(f"a run is {len(entries)} consecutive events with {_ID_CHARS}-character ids "
                         f"(seq {first}..{last})")
    digests = b"" if all(d == NO_DIGEST for _, _, _, d in entries) else b"".join(
        d or _NO_DIGEST_SLOT for _, _, _, d in entries)
    return (signer, first, last, max(t for _, _, t, _ in entries),
            "".join(i for i, _, _, _ in entries).encode("ascii"), digests)


def _in_run(first: int, ids: bytes, digests: bytes, seq: int, event_id: str) -> bytes | None:
    """The digest of ``event_id`` if it is event ``seq`` of the run that starts at ``first``; None otherwise."""
    k = seq - first
    if ids[k * _ID_CHARS:(k + 1) * _ID_CHARS] != event_id.encode("ascii"):
        return None
    digest = digests[k * 32:(k + 1) * 32] if digests else NO_DIGEST
    return NO_DIGEST if digest == _NO_DIGEST_SLOT else digest


def _id_prefix(event_id: str) -> int:
    """The first 64 bits of an event id (hex), for the in-memory window filter."""
    return int(event_id[:16], 16)


NO_DIGEST = b""  # the stored digest of a keyless event (see Emitter.emit)


def content_digest(content: bytes, event_time_us: int) -> bytes:
    """SHA-256 of an event's context and body: what an idempotency key promises stays the same on a retry
    (its event time may differ: a retry is stamped when it is retried)."""
    return hashlib.sha256(content[len(enc_long(event_time_us)):]).digest()


class ControlKeys:
    """The key ring a log's control topic builds, kept up to date incrementally.

    Every control record is verified exactly as readers verify it (signature, chain, operator
    signature, consistency with the ring; a bad one is skipped, as readers quarantine it), so the ring
    trusts nothing a reader would not. The ring judges revocations as readers do on this log: by log
    order on a log with a total clock, by event time on Kafka (``ledger.integrity.keyring``).
    ``refresh`` reads only the records appended since the last refresh: one ``end_offset`` per control
    partition when nothing is new.
    """

    def __init__(self, log: Log, control_topic: str, anchors: Mapping[str, bytes],
                 on_accepted: Callable[[Accepted], None] | None = None) -> None:
        self.log = log
        self.topic = control_topic
        self.on_accepted = on_accepted  # told of every control record the ring accepted, in log order
        self.verifier = Verifier(KeyRing(dict(anchors), by_log_order=judges_by_log_order(log)))
        self._next = [0] * log.partitions(control_topic)  # per partition: the first offset not read yet
        self.revoked_append_us: dict[str, int] = {}  # key id -> append time of its revocation or rotation

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
                        accepted = self.verifier.check_record(r.value, Where.of(r))
                        if self.on_accepted is not None:
                            self.on_accepted(accepted)
                        for d in accepted.events:
                            body = d.event.body
                            gone = body.old_key_id if isinstance(body, KeyRotated) else (
                                body.key_id if isinstance(body, KeyRevoked) else None)
                            if gone is not None:
                                # where on the log the key stopped signing: readers on a log with one clock
                                # accept its records appended before this one (the first revocation counts)
                                self.revoked_append_us.setdefault(gone, r.append_time_us)
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

    def key_at(self, signer_id: str, key_id: str, append_time_us: int, event_time_us: int) -> PublicKey | None:
        """The public key readers verify a record of ``signer_id`` signed by ``key_id`` with, or None: the key is
        the signer's, and was not revoked (or rotated away) yet when the record was written. Readers accept a
        revoked key's record only from before the revocation: in log order on a log with one clock (its append
        time before the revocation record's), by event time otherwise (``ledger.integrity.keyring``)."""
        info = self.ring.get(key_id)
        if info is None or info.owner != signer_id:
            return None
        if info.revoked:
            if self.ring.by_log_order:
                revoked_at = self.revoked_append_us.get(key_id)
                if revoked_at is None or append_time_us >= revoked_at:
                    return None
            elif event_time_us >= info.revoked_at_us:
                return None
        return info.public

    def check_attribution(self, signer_id: str, event_id: str, agent: str) -> None:
        """Raise ``RejectError`` (not_granted) if readers would reject this event's ``Context.agent``
        (``KeyRing.check_attribution``: naming another agent needs a backfill grant)."""
        try:
            self.ring.check_attribution(signer_id, event_id, agent)
        except RejectError as e:
            e.evidence["appended"] = False
            raise

    def check_time(self, key_id: str, body: Body, event_id: str, event_time_us: int, now_us: int) -> None:
        """Raise ``RejectError`` (clock_skew) if readers would quarantine this event's claimed time: judged as
        they judge it (``KeyRing.check_time``: the skew window and backfill grants in force), with local ``now``
        standing in for the append time it will get. The append comes later than now (linger, retries), never
        earlier: the window's behind side is the wider one for that reason. Control events and processors'
        events are not judged by readers, nor here."""
        info = self.ring.get(key_id)
        if body.CONTROL or info is None or info.role == "processor":
            return
        try:
            self.ring.check_time(info.owner, event_id, event_time_us, now_us)
        except RejectError as e:
            e.evidence["appended"] = False
            raise


class Emitter:
    """Signs and appends one signer's events. Thread-safe; one per signer on the whole log (a second one
    in the same home cannot start; one in another home is caught at its first append, see the module doc).

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
        self._pending: list[_Pending] = []
        self._pending_ids: dict[str, bytes] = {}  # event id -> content digest, of the pending events
        self._pending_bytes = 0  # what the pending events add to a record (each: its length prefix and bytes)
        self._pending_since = 0.0
        self._counts = {"emitted": 0, "deduplicated": 0, "events": 0, "records": 0}
        self._closed = False
        self._error: LedgerError | None = None
        self._lock_fd: int | None = None
        self._state = _State(None)  # replaced by the home's file when there is a home
        self._saved: _Saved | None = None
        # appended, not yet in the state file (see _SAVE_EVERY_EVENTS): ids -> digest, and the rows to write
        self._unsaved_ids: dict[str, bytes] = {}
        self._unsaved: list[tuple[str, int, int, bytes]] = []
        self._unsaved_offset = -1
        self._fenced: ChainForkError | None = None  # another writer was seen: every later call raises this
        self._fence_from = -1  # the last offset of our partition whose records of this signer were examined
        self._key_bytes = self.signer_id.encode()
        self._lock_timeout_s = lock_timeout_s
        self._partition = partition_for(self._key_bytes, log.partitions(topic))
        # signed records handed to one append (the log's choice: several where an append is a round trip)
        self._per_append = max(1, int(getattr(log, "records_per_append", 1)))
        # a record's bytes besides its events: key, frame, ids, event count (counted at its largest), signature;
        # batches are cut so that this plus their events stays within limits.MAX_RECORD_BYTES
        self._record_overhead = codec.batch_overhead_bytes(self.signer_id, key.key_id, codec.BATCH_VERSION)
        self.control_keys = None if control_topic is None or anchors is None else ControlKeys(log, control_topic,
                                                                                               anchors)
        try:
            if state_dir is not None:
                self._acquire_lock(Path(state_dir))
                self._state.close()
                self._state = _State(Path(state_dir) / "emitters.sqlite")
            self._head = self._reconcile()
            # the largest event time of any event this emitter knows of (window, unsaved or pending; -1: none)
            self._newest_us = self._saved.newest_time_us if self._saved is not None else -1
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

    def _check_readers_accept(self, keys: ControlKeys, body: Body, ctx: Context, event_id: str,
                              event_time_us: int) -> None:
        """Raise what readers would reject this event for (key, claimed time, attribution): never acknowledged.
        The first event of a batch reads what is new on the control topic; the rest of the batch is checked
        against that ring (the append re-checks with a fresh read anyway)."""
        keys.check(self.signer_id, self.key.key_id, event_time_us, refresh=not self._pending)
        keys.check_time(self.key.key_id, body, event_id, event_time_us, self._clock_ns() // 1000)
        if ctx.agent is not None and not body.CONTROL:
            keys.check_attribution(self.signer_id, event_id, ctx.agent)

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
        # only a key can give one id to two contents (a keyless id hashes the content and its time): keyless
        # events need no digest to tell a retry from a conflict, and skip the hash
        digest = content_digest(content, event_time_us) if idempotency_key is not None else NO_DIGEST
        with self._lock:
            self._check_open()
            # idempotency first, before anything is chained or signed: a retry returns its id and changes nothing
            # a keyless id hashes its event time: stamped after every event this emitter knows, it is new (the
            # common case, a clock that moves forward, skips the window)
            if (idempotency_key is not None or event_time_us <= self._newest_us) and self._seen(
                    event_id, digest, idempotency_key, event_time_us):
                self._counts["emitted"] += 1
                self._counts["deduplicated"] += 1
                return event_id
            if self.control_keys is not None:
                self._check_readers_accept(self.control_keys, body, ctx, event_id, event_time_us)
            seq = self._head.seq + 1
            raw = codec.assemble_event(event_id=event_id, signer_id=self.signer_id, seq=seq,
                                       prev_hash=self._head.hash, idempotency_key=idempotency_key, content=content)
            if len(raw) > limits.MAX_EVENT_BYTES:
                raise ValidationError("event", f"<{len(raw)} bytes>",
                                      f"encodes to more than {limits.MAX_EVENT_BYTES} bytes")
            item = codec.batch_item_bytes(raw)
            if self._record_overhead + item > limits.MAX_RECORD_BYTES:
                # even alone, its signed batch is larger than any log accepts: refused now, never appended
                raise RecordTooLargeError(self._record_overhead + item, limits.MAX_RECORD_BYTES,
                                          event_id=event_id, signer_id=self.signer_id, event_bytes=len(raw))
            if self._pending and self._record_overhead + self._pending_bytes + item > limits.MAX_RECORD_BYTES:
                # the pending batch is as large as one record may be: it goes first (its chain is unchanged)
                self._flush_locked()
                seq = self._head.seq + 1  # unchanged by a flush; recomputed so the reader need not know that
            h = codec.event_hash(raw)
            self._head = Head(seq, h)
            if not self._pending:
                self._pending_since = time.monotonic()
                self._wake.notify()
            self._pending.append(_Pending(event_id, seq, raw, h, event_time_us, digest, item))
            if event_time_us > self._newest_us:
                self._newest_us = event_time_us
            self._pending_ids[event_id] = digest
            self._pending_bytes += item
            self._counts["emitted"] += 1
            if len(self._pending) >= self.batch_size * self._per_append:
                self._flush_locked()
        return event_id

    def _seen(self, event_id: str, digest: bytes, idempotency_key: str | None, event_time_us: int) -> bool:
        """Whether ``event_id`` is pending or in the idempotency window (a retry). Raises
        ``IdempotencyConflictError`` for a key seen with other content, and ``IdempotencyWindowError`` for an
        unseen event stamped at or before the window's horizon (it may be a retry the window forgot)."""
        known = self._pending_ids.get(event_id)
        if known is None:
            known = self._unsaved_ids.get(event_id)
        if known is None:
            known = self._state.lookup(self.signer_id, event_id)
        if known is not None:
            if known != digest:
                # only a key can give one id to two contents (an id without a key is its content's hash)
                raise IdempotencyConflictError(str(idempotency_key), event_id, known.hex(), digest.hex(),
                                               signer_id=self.signer_id)
            return True
        horizon = self._saved.horizon_us if self._saved is not None else -1
        if event_time_us <= horizon:
            raise IdempotencyWindowError(event_time_us, horizon, signer_id=self.signer_id, event_id=event_id)
        return False

    # typed helpers: the obvious way to emit each agent event kind

    def action(self, operation: str, *, cost_weight: float | int | str = 1, result_hash: str | None = None,
               provider: str | None = None, model: str | None = None, input_tokens: int = 0,
               output_tokens: int = 0, cache_read_tokens: int = 0, cache_write_tokens: int = 0,
               reasoning_tokens: int = 0, cache_write_1h_tokens: int = 0, service_tier: str = "",
               provider_cost_micros: int | None = None, **common: Any) -> str:
        """An action token; pass provider and model (and token counts) when the action was an LLM call.

        Cache reads and writes are parts of ``input_tokens``, 1-hour writes part of ``cache_write_tokens``, reasoning
        part of ``output_tokens``; ``service_tier`` as the provider reported it ('' = standard; batch, flex,
        priority, ...); ``provider_cost_micros`` the cost the provider or a gateway reported, kept beside the
        ledger's own (``cost_discrepancies`` lists the calls where they differ)."""
        usage = None
        if provider is not None or model is not None:
            usage = LlmUsage(provider=provider, model=model, input_tokens=input_tokens,  # type: ignore[arg-type]
                             output_tokens=output_tokens, cache_read_tokens=cache_read_tokens,
                             cache_write_tokens=cache_write_tokens, reasoning_tokens=reasoning_tokens,
                             cache_write_1h_tokens=cache_write_1h_tokens, service_tier=service_tier,
                             provider_cost_micros=provider_cost_micros)
        elif any((input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
                  cache_write_1h_tokens)) or provider_cost_micros is not None:
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

    def guard(self, kind: str, **options: Any) -> Guard:
        """A spend guard for ``kind`` ("usd" with ``estimate_micros``, "llm_tokens" with ``estimate_tokens``, or no
        estimate: reserved at the first instrumented call): ``with em.guard(...) as g:`` or ``@em.guard(...)``
        reserves, waits for the decision, refuses before the call, commits what was used (``ledger.sdk.guard``)."""
        from ledger.sdk.guard import guard

        return guard(self, kind, **options)

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

    def _take_batch(self, start: int = 0) -> list[_Pending]:
        """The longest run of pending events from ``start`` that is one record: at most ``batch_size`` events,
        and at most ``limits.MAX_RECORD_BYTES`` encoded (every event fits alone: ``emit`` checked)."""
        size = self._record_overhead
        n = 0
        for p in self._pending[start:start + self.batch_size]:
            item = p.item
            if n and size + item > limits.MAX_RECORD_BYTES:
                break
            size += item
            n += 1
        return self._pending[start:start + n]

    def _take_batches(self) -> list[list[_Pending]]:
        """Up to ``_per_append`` consecutive batches from the front of the pending events."""
        batches: list[list[_Pending]] = []
        taken = 0
        while taken < len(self._pending) and len(batches) < self._per_append:
            batch = self._take_batch(taken)
            batches.append(batch)
            taken += len(batch)
        return batches

    def _flush_locked(self) -> None:
        while self._pending:
            if self._fenced is not None:
                raise self._fenced
            batches = self._take_batches()
            if self.control_keys is not None:
                try:
                    self.control_keys.check(self.signer_id, self.key.key_id,
                                            max(p.event_time_us for b in batches for p in b))
                except RejectError as e:
                    self._drop_pending(e)
                    raise
            records = [codec.encode_batch(self.signer_id, self.key.key_id, [p.raw for p in b], self.key.sign(
                codec.signing_bytes(codec.BATCH_VERSION, self.signer_id, self.key.key_id, [p.hash for p in b])),
                codec.BATCH_VERSION) for b in batches]
            # several records in one append are in flight together (on Kafka: one round trip for all, kept in
            # order by the idempotent producer); if the append fails they all stay pending, and a later flush
            # retries the very same signed bytes (LogError propagates)
            positions = self.log.append(self.topic, [(self._key_bytes, r) for r in records])
            accepted = self._read_back([pos.offset for pos in positions], records, batches)
            for batch, pos in zip(batches[:accepted], positions, strict=False):
                del self._pending[: len(batch)]
                for p in batch:
                    self._pending_ids.pop(p.event_id, None)
                    self._pending_bytes -= p.item
                self._appended_head = Head(batch[-1].seq, batch[-1].hash)
                self._remember(pos.offset, [(p.event_id, p.seq, p.event_time_us, p.digest) for p in batch])
                self._counts["events"] += len(batch)
                self._counts["records"] += 1
            if accepted < len(batches):
                # the rest are a fork readers reject: never acknowledged; their events may be emitted again
                assert self._fenced is not None  # _read_back fences whenever it finds another writer
                for p in self._pending:
                    self._pending_ids.pop(p.event_id, None)
                self._pending.clear()
                self._pending_bytes = 0
                self._head = self._appended_head
                raise self._fenced
        self._pending_since = 0.0

    def _remember(self, offset: int, entries: list[tuple[str, int, int, bytes]]) -> None:
        """Note appended events for the window; the state file gets them every ``_SAVE_EVERY_EVENTS``."""
        self._unsaved.extend(entries)
        self._unsaved_ids.update((i, d) for i, _, _, d in entries)
        self._unsaved_offset = offset
        if len(self._unsaved) >= _SAVE_EVERY_EVENTS:
            self._persist()

    def _persist(self) -> None:
        """Write the noted events and the head they end at to the state file."""
        if not self._unsaved:
            return
        self._save(self._unsaved_offset, self._unsaved)
        self._unsaved, self._unsaved_ids = [], {}

    def _save(self, offset: int, entries: list[tuple[str, int, int, bytes]]) -> None:
        old = self._saved
        newest = max([t for _, _, t, _ in entries] + ([old.newest_time_us] if old is not None else []), default=-1)
        self._saved = self._state.save(self.signer_id, _Saved(
            self.topic, self._appended_head, self._partition, offset, newest,
            old.horizon_us if old is not None else -1), entries)

    def _read_back(self, offsets: list[int], records: list[bytes], batches: list[list[_Pending]]) -> int:
        """Fencing, after each append: read this signer's records between the last one this emitter knew
        and the ones it just appended. Another writer's record there means ours is a fork (readers accept
        the first record at a sequence number); one after ours means it is theirs. Either way a second
        writer exists: this emitter refuses from now on (``_fenced``), loudly, and never acknowledges a
        forked record. Returns how many of ours (in order) readers accept: a fork's records and every one
        after it in our chain are not."""
        if offsets == list(range(self._fence_from + 1, self._fence_from + 1 + len(offsets))):
            # ours directly follow the last record examined: no other record lies before any of them, so readers
            # take ours; a record after them is another writer's fork, examined at the next append's read-back
            self._fence_from = offsets[-1]
            return len(records)
        last = self._fence_from
        others: list[int] = []
        ours = set(records)
        # the head each of our records extends: the one before the append, then the end of each batch
        heads = [self._appended_head] + [Head(b[-1].seq, b[-1].hash) for b in batches[:-1]]
        accepted = len(records)
        more = True
        while more:
            recs = self.log.read_key(self.topic, self._key_bytes, last, limits.MAX_EMITTER_CONTROL_READ_RECORDS)
            more = len(recs) == limits.MAX_EMITTER_CONTROL_READ_RECORDS  # a short read reached the end: no 2nd query
            for r in recs:
                last = r.offset
                if r.offset in offsets or r.value in ours:
                    continue  # ours, or our own bytes again (a producer retry that landed twice): no other writer
                theirs = self._verified_batch(r)
                if theirs is None:
                    continue  # not a valid batch of this signer: readers reject it, it changes no chain
                first = theirs[0].event
                if first.seq <= self._appended_head.seq:
                    # below the head ours extends: a re-delivered old record (ours, by a producer retry) or a
                    # stale writer's fork; readers reject it, it changes no chain, and a stale writer sees
                    # our records at its own read-back
                    continue
                others.append(r.offset)
                for k in range(accepted):
                    if r.offset < offsets[k] and first.seq == heads[k].seq + 1 and first.prev_hash == heads[k].hash:
                        accepted = k  # it extends the head our k-th extends, and came first: readers take it
                        break
        self._fence_from = max(last, *offsets)
        if not others:
            return accepted
        forked = sum(len(b) for b in batches[accepted:])
        self._fenced = ChainForkError(
            f"another writer appended records for {self.signer_id}: two emitters (two homes or machines) write "
            "one chain", signer_id=self.signer_id, topic=self.topic, partition=self._partition,
            our_offset=offsets[0], other_offsets=others[:10], appended=True,
            readers_accept_ours=accepted == len(records),
            hint=("stop the other writer (one emitter per agent on the whole log), then reopen this emitter: it "
                  "continues from the chain on the log" + ("" if not forked else
                                                            f"; the {forked} events just appended are a fork "
                                                            "that readers reject: emit them again")))
        # what readers accept is acknowledged (the caller learns of the other writer at its next call)
        return accepted

    def _verified_batch(self, rec: Record) -> list[codec.DecodedEvent] | None:
        """The events of a record that is a batch of this signer, signed by a key readers accept for it there
        (this emitter's own, or one the ring gives the signer and had not revoked yet); None otherwise."""
        try:
            batch = codec.decode_batch(rec.value)
            if batch.signer_id != self.signer_id:
                return None
            decoded = [codec.decode_event(raw) for raw in batch.events]
        except RejectError:
            return None
        public = self._public_key(batch.key_id, rec.append_time_us, max(d.event.event_time_us for d in decoded))
        message = codec.batch_message(batch, [d.hash for d in decoded])  # either envelope version
        return decoded if public is not None and public.verify(batch.signature, message) else None

    def _public_key(self, key_id: str, append_time_us: int, event_time_us: int) -> PublicKey | None:
        if key_id == self.key.key_id:
            return self.key.public
        if self.control_keys is None:
            return None
        return self.control_keys.key_at(self.signer_id, key_id, append_time_us, event_time_us)

    def _drop_pending(self, error: RejectError) -> None:
        """Forget every buffered event (readers would reject them): the chain head goes back to the last
        appended event and their ids may be emitted again (with a valid key)."""
        error.evidence["dropped_events"] = len(self._pending)
        self._pending.clear()
        self._pending_ids.clear()
        self._pending_bytes = 0
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
        if self._fenced is not None:
            raise self._fenced
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
        try:
            self._persist()
        finally:
            self._state.close()
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _reconcile(self) -> Head:
        """Start from the saved head, then adopt any of our records the log has beyond it.

        Records of this signer signed by another of its keys (``agent rotate``, or the same agent run from
        another home before) are adopted too when they extend the chain: the chain is the signer's, not a
        key's or a home's. With no saved head (a new home, a lost or pre-window state file) the whole chain
        is read from the log, and with it the idempotency window."""
        if self.control_keys is not None:
            self.control_keys.refresh()  # the keys our signer's records may be signed with
            if self.control_keys.topic != self.topic and self.log.read_key(self.control_keys.topic,
                                                                           self._key_bytes, -1, 1):
                # readers keep one chain per signer over every topic, and on Kafka they read the control topic
                # ahead of the others: a chain split over two topics cannot be ordered, so it forks
                raise ChainForkError(f"{self.signer_id} signs control events: its chain is on "
                                     f"{self.control_keys.topic}, and a second chain on {self.topic} would fork it",
                                     signer_id=self.signer_id, topic=self.topic, chain_topic=self.control_keys.topic,
                                     hint="sign these events as an agent (register one with "
                                          "`tokenledger agent register NAME`), not as the operator")
        saved = self._state.load(self.signer_id)
        if saved is not None and saved.topic != self.topic:
            raise ChainForkError(f"{self.signer_id}'s chain is on topic {saved.topic}: a second chain on "
                                 f"{self.topic} would fork it", signer_id=self.signer_id, topic=self.topic,
                                 chain_topic=saved.topic, hint="write each signer's events to one topic")
        head, offset = (GENESIS, -1) if saved is None else (saved.head, saved.offset)
        end = self.log.end_offset(self.topic, self._partition)
        if offset >= end:
            raise ChainForkError("saved chain head is ahead of the log: the log was replaced or truncated",
                                 signer_id=self.signer_id, expected=f"offset < {end}", actual=offset,
                                 hint="point this home at its original log, or start a new home")
        self._saved = saved
        # every record of this partition below `end` that carries our key is read by the loop below: an append's
        # read-back starts after them (not at the saved offset, which for a new signer is the partition's start)
        self._fence_from = end - 1
        last_offset = offset
        entries: list[tuple[str, int, int, bytes]] = []
        while True:
            recs = self.log.read_key(self.topic, self._key_bytes, last_offset, 1000)
            if not recs:
                break
            for rec in recs:
                last_offset = rec.offset
                head = self._adopt(rec, head, entries)
            if len(entries) >= limits.MAX_IDEMPOTENCY_WINDOW_EVENTS:
                # bounded memory on a long chain: what is collected so far goes to the window now
                self._appended_head = head
                self._save(last_offset, entries)
                entries = []
        if last_offset != offset:
            self._appended_head = head
            self._save(last_offset, entries)
        return head

    def _adopt(self, rec: Record, head: Head, entries: list[tuple[str, int, int, bytes]]) -> Head:
        """Adopt a record of ours found on the log if it extends our head (others' or bad bytes: ignored)."""
        decoded = self._verified_batch(rec)
        if decoded is None:
            return head
        new = head
        for d in decoded:
            if d.event.seq != new.seq + 1 or d.event.prev_hash != new.hash:
                # a fork, a replay or a re-delivery: readers reject the whole record, so adopt none of it
                return head
            new = Head(d.event.seq, d.hash)
        for d in decoded:
            ev = d.event
            entries.append((ev.event_id, ev.seq, ev.event_time_us,
                            NO_DIGEST if ev.idempotency_key is None
                            else content_digest(d.raw[d.content_offset:], ev.event_time_us)))
        return new

def context(org: str | None = None, project: str | None = None, task: str | None = None, stage: str | None = None,
            run: str | None = None, labels: Mapping[str, str] | None = None) -> Context:
    """Shorthand for a Context."""
    return Context(org=org, project=project, task=task, stage=stage, run=run, labels=check_map("labels", labels or {}))
