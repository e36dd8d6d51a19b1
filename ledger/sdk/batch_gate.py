"""The batch gate: admits signed batches from producers that sign themselves (``POST /v1/batches``).

A client with its own key (the SDK's wire format without the SDK's emitter: another language, a sidecar) builds
its events, chains them, signs the batch (``codec.encode_batch``) and hands the exact record bytes to a service,
which appends them to the home's events topic under the record key = the signer id, as the emitter does. The gate
decides, before appending, whether the readers would accept that record, so nothing it acknowledges is later
quarantined:

- **Size**: key (the signer id) + value at most ``limits.MAX_RECORD_BYTES`` (``RecordTooLargeError``).
- **Everything a reader checks**, by the readers' own code (``Verifier.check_record``): the frame and every event
  decode (``bad_schema``, ``truncated``, ``oversized``, ``bad_id``, ``invalid_field``); the key is registered
  (``unknown_key``), the signer's (``signer_mismatch``) and not revoked or rotated away (``revoked_key``), judged by
  the key ring the control topic builds (``ControlKeys``, folded as readers fold it); the batch signature
  (``bad_signature``); each event's claimed time within the skew window and backfill grants in force, with
  ``now_us`` standing in for the append time the record will get (``clock_skew``); derived kinds need a processor
  key (``not_processor``); an interaction is signed by its requestor and its co-signature verifies; naming another
  agent (``Context.agent``) needs a backfill grant (``not_granted``); control events need an operator key
  (``not_operator``).
- **The chain position**: the batch must extend the signer's head on the log: first seq = head seq + 1, prev_hash =
  the head's hash, consecutive after that, ids not among the signer's recent ones. Refusals carry the readers'
  chain codes (``ledger.integrity.chain``): ``sequence_gap`` (skips ahead), ``fork`` (another event holds that
  seq, or prev_hash differs), ``replay`` (an old seq re-appears), ``duplicate`` (the latest batch again in other
  bytes, or an event id the signer already used).
- **A client retry is idempotent**: exactly the bytes of a record already on the signer's chain (among the records
  holding its last ``limits.DUPLICATE_WINDOW_EVENTS`` events, the readers' duplicate window) is answered with that
  record's position and ``duplicate=True``; nothing is appended. Other bytes at an old seq are refused as above.
- **Agents only**: a key registered as ``operator`` or ``processor`` has its chain on another topic (control, or
  the processor's output); a second chain on the events topic would fork it (``ChainForkError``), as the emitter
  refuses it.

Where the signer's head comes from: the gate reads the signer's records on the topic once (``log.read_key``) and
folds them, then keeps that state (``Chains``: head and recent ids, as a reader holds them) for up to
``CACHED_SIGNERS`` signers (least recently used forgotten; folded again from the log when needed), reading only
what was appended since at each submit. The fold adopts a record when its signature verifies with a key the ring
gives the signer and had not revoked at that record (the rule the emitter uses to adopt its own chain), and it
extends the chain; other records change no chain, as readers quarantine them.

Writers: appends are serialised per signer in this process. After each append the gate reads the signer's records
back from the head it checked against: when another writer (an emitter, another service instance) appended a record
for the signer in between, the chain is folded again from the log and judged as readers will judge it: ours
accepted (the other was not a valid batch), ours a re-delivery of identical bytes that came first (answered as a
duplicate), or ours a fork (``ChainForkError``; never acknowledged: readers reject it).

One race cannot be closed before the append, as for the emitter: a revocation (or a new skew window) appended
between the check and the append. Readers judge by log order and reject that record; the gate refuses from then on.

Thread-safe. Effects: reads and appends on the ``Log`` it is given; the rest is the readers' pure code.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger import limits
from ledger.errors import ChainForkError, LogError, RecordTooLargeError, RejectCode, RejectError, ValidationError
from ledger.integrity.chain import Chains, Head
from ledger.integrity.keys import PublicKey
from ledger.integrity.verify import Verifier, Where
from ledger.log import Log, Position, Record
from ledger.sdk.emitter import ControlKeys
from ledger.sdk.home import Home
from ledger.wire import codec
from ledger.wire.events import check_int
from ledger.wire.vocab import Role

# signers whose folded chain the gate keeps in memory. Each holds the readers' window of recent ids
# (limits.DUPLICATE_WINDOW_EVENTS, ~200 bytes an id) and the digests of the records holding them: under 1 MB per
# busy signer, so 256 busy signers stay under ~256 MB. A signer beyond is folded again from the log on its next
# batch (one read of its records), never judged without its chain.
CACHED_SIGNERS = 256
FOLD_READ_RECORDS = 1_000  # records one read_key brings while the gate folds a signer's chain


@dataclass(frozen=True)
class Admitted:
    """Where an admitted batch is on the log: ``topic``/``partition``/``offset`` of its record, its signer, the
    seqs of its first and last events and their ids in order. ``duplicate``: these exact bytes were already on the
    signer's chain (a client retry); the position is the original record's and nothing was appended."""

    topic: str
    partition: int
    offset: int
    signer_id: str
    first_seq: int
    last_seq: int
    event_ids: tuple[str, ...]
    duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "signer_id": self.signer_id,
                "first_seq": self.first_seq, "last_seq": self.last_seq, "event_ids": list(self.event_ids),
                "duplicate": self.duplicate}


@dataclass(frozen=True)
class _Held:
    """A record on the signer's chain, remembered so a retry of its exact bytes is recognised."""

    partition: int
    offset: int
    last_seq: int


class _Signer:
    """One signer's chain as readers hold it, folded from its records on the gate's topic. Guarded by ``lock``;
    ``users`` (guarded by the gate's table lock) keeps a state in use from being forgotten."""

    def __init__(self, signer_id: str) -> None:
        self.signer_id = signer_id
        self.key = signer_id.encode()
        self.lock = threading.Lock()
        self.users = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next catch-up folds the whole chain from the log."""
        self.chains = Chains()
        self.last_offset = -1  # the last offset of the signer's partition whose record was folded
        # sha256 of a record's bytes -> where it is, for the records holding the readers' window of recent events
        self.held: OrderedDict[bytes, _Held] = OrderedDict()

    @property
    def head(self) -> Head:
        return self.chains.head(self.signer_id)

    def hold(self, digest: bytes, held: _Held) -> None:
        self.held[digest] = held
        oldest = self.head.seq - limits.DUPLICATE_WINDOW_EVENTS
        while self.held and next(iter(self.held.values())).last_seq <= oldest:
            self.held.popitem(last=False)


class BatchGate:
    """Admits signed batches to ``topic`` when readers will accept them (module doc). Thread-safe."""

    def __init__(self, log: Log, topic: str, control_topic: str, anchors: Mapping[str, bytes], *,
                 cached_signers: int = CACHED_SIGNERS) -> None:
        check_int("cached_signers", cached_signers, 1, limits.INT32_MAX)
        self.log = log
        self.topic = topic
        self.control_keys = ControlKeys(log, control_topic, anchors)
        self.cached_signers = cached_signers
        self._ring_lock = threading.Lock()  # the key ring: refreshed and read by one thread at a time
        self._table_lock = threading.Lock()  # the signer table below
        self._signers: OrderedDict[str, _Signer] = OrderedDict()  # least recently used first

    @classmethod
    def for_home(cls, home: Home, log: Log, **options: Any) -> BatchGate:
        """A gate for ``home``'s events topic, its key ring from the home's control topic and operator keys."""
        return cls(log, home.topic, home.control_topic, home.anchors(), **options)

    # ------------------------------------------------------------ the one entry point

    def submit(self, raw: bytes, now_us: int, *, acts_for: Callable[[str], None] | None = None) -> Admitted:
        """Append the signed batch ``raw`` (one record's value) if readers will accept it; return where it is.

        ``now_us`` stands in for the append time readers judge claimed event times against. ``acts_for(signer_id)``
        runs as soon as the frame names its signer, before any log work (an HTTP caller's authorisation).
        Raises ``RecordTooLargeError``, ``RejectError`` (the readers' code, ``appended=False`` in its evidence),
        ``ChainForkError`` (another writer took the position, or the signer's chain is on another topic), or
        ``LogError`` (the log failed; the batch may have been appended: submitting it again is safe)."""
        if not isinstance(raw, bytes):
            raise ValidationError("body", type(raw).__name__, "must be the bytes of one signed batch")
        check_int("now_us", now_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
        if len(raw) > limits.MAX_RECORD_BYTES:  # before decoding: the value alone is already too large
            raise RecordTooLargeError(len(raw), limits.MAX_RECORD_BYTES, topic=self.topic, appended=False)
        try:
            batch = codec.decode_batch(raw)
        except RejectError as e:
            raise _refused(e) from None
        size = len(raw) + len(batch.signer_id.encode())  # the record key is the signer id
        if size > limits.MAX_RECORD_BYTES:
            raise RecordTooLargeError(size, limits.MAX_RECORD_BYTES, topic=self.topic, signer_id=batch.signer_id,
                                      appended=False)
        if acts_for is not None:
            acts_for(batch.signer_id)
        st = self._acquire(batch.signer_id)
        try:
            with st.lock:
                return self._submit_locked(st, batch, raw, now_us)
        finally:
            self._release(st)

    def cached(self) -> list[str]:
        """The signers whose chain is held in memory, least recently used first."""
        with self._table_lock:
            return list(self._signers)

    # ------------------------------------------------------------ internals

    def _submit_locked(self, st: _Signer, batch: codec.DecodedBatch, raw: bytes, now_us: int) -> Admitted:
        with self._ring_lock:
            self.control_keys.refresh()  # keys, grants and skew window as readers have them now
        self._catch_up(st)
        digest = hashlib.sha256(raw).digest()
        held = st.held.get(digest)
        if held is not None:
            return self._admitted(st.signer_id, [codec.decode_event(e) for e in batch.events], held.partition,
                                  held.offset, duplicate=True)
        before = st.last_offset
        with self._ring_lock:
            self._check_role(batch)
            try:
                # the readers' gate, against this signer's chain; it advances the chain only when all passes. The
                # position is a stand-in (the record has none yet) carrying the append time: dropped from refusals
                accepted = Verifier(self.control_keys.ring, st.chains).check_record(raw, Where(self.topic, 0, 0,
                                                                                               now_us))
            except RejectError as e:
                raise _refused(e) from None
        try:
            (pos,) = self.log.append(self.topic, [(st.key, raw)])
        except BaseException:
            st.reset()  # the chain counted the batch, the log may or may not hold it: fold again from the log
            raise
        return self._read_back(st, accepted.events, digest, pos, before)

    def _read_back(self, st: _Signer, events: list[codec.DecodedEvent], digest: bytes, pos: Position,
                   before: int) -> Admitted:
        """Acknowledge ``pos`` only if readers take it: no other record of the signer between ``before`` (the last
        one folded when the batch was checked) and ours; otherwise judge the chain again from the log."""
        first = self.log.read_key(self.topic, st.key, before, 1)
        if first and first[0].offset == pos.offset:
            st.last_offset = pos.offset
            st.hold(digest, _Held(pos.partition, pos.offset, events[-1].event.seq))
            return self._admitted(st.signer_id, events, pos.partition, pos.offset, duplicate=False)
        # another writer appended for this signer in between: what readers take is decided by log order
        st.reset()
        self._catch_up(st)
        if st.last_offset < pos.offset:
            raise LogError("the appended batch is not on the log when read back", topic=self.topic,
                           partition=pos.partition, offset=pos.offset, signer_id=st.signer_id)
        held = st.held.get(digest)
        if held is not None:
            # ours (the other record was no valid batch of this signer), or identical bytes that came first (a
            # client retry sent to two instances): our copy is then a re-delivery readers drop as a duplicate
            return self._admitted(st.signer_id, events, held.partition, held.offset,
                                  duplicate=held.offset != pos.offset)
        raise ChainForkError(f"another writer appended a batch for {st.signer_id} at the position this one extends: "
                             "readers take the first, so this one is a fork and is not acknowledged",
                             signer_id=st.signer_id, topic=self.topic, partition=pos.partition, our_offset=pos.offset,
                             first_seq=events[0].event.seq, head_seq=st.head.seq, appended=True,
                             hint="one writer per agent on the whole log: stop the other writer, then sign this "
                                  "batch's events again after the chain's current head")

    def _catch_up(self, st: _Signer) -> None:
        """Fold the signer's records appended since the last one folded (all of them for a new state)."""
        while True:
            recs = self.log.read_key(self.topic, st.key, st.last_offset, FOLD_READ_RECORDS)
            for rec in recs:
                self._fold(st, rec)
                st.last_offset = rec.offset
            if len(recs) < FOLD_READ_RECORDS:  # a short read reached the end
                return

    def _fold(self, st: _Signer, rec: Record) -> None:
        """Adopt ``rec`` into the signer's chain if it is a batch of the signer, signed by a key readers accepted
        for it there, that extends the chain; anything else changes no chain (readers quarantine it)."""
        try:
            batch = codec.decode_batch(rec.value)
            if batch.signer_id != st.signer_id:
                return
            decoded = [codec.decode_event(e) for e in batch.events]
        except RejectError:
            return
        public = self._key_at(batch.signer_id, batch.key_id, rec.append_time_us,
                              max(d.event.event_time_us for d in decoded))
        if public is None or not public.verify(batch.signature, codec.batch_message(batch, [d.hash for d in decoded])):
            return
        try:
            st.chains.check_batch(st.signer_id, [(d.event, d.hash) for d in decoded])
        except RejectError:
            return
        st.hold(hashlib.sha256(rec.value).digest(), _Held(rec.partition, rec.offset, decoded[-1].event.seq))

    def _key_at(self, signer_id: str, key_id: str, append_time_us: int, event_time_us: int) -> PublicKey | None:
        """The public key readers verified a record of ``signer_id`` signed by ``key_id`` with, or None: the key
        is the signer's and was not revoked (or rotated away) yet: before the revocation's record on a log judged
        by log order, before its event time otherwise (``ledger.integrity.keyring``; as ``Emitter`` adopts)."""
        with self._ring_lock:
            return self.control_keys.key_at(signer_id, key_id, append_time_us, event_time_us)

    def _check_role(self, batch: codec.DecodedBatch) -> None:
        """Refuse a signer whose chain lives on another topic (ring lock held)."""
        info = self.control_keys.ring.get(batch.key_id)
        if info is None or info.owner != batch.signer_id or info.role == Role.AGENT.value:
            return  # an agent; an unknown or foreign key is the verifier's refusal (unknown_key, signer_mismatch)
        raise ChainForkError(f"{batch.signer_id} signs as {info.role}: its chain is on another topic, and a second "
                             f"chain on {self.topic} would fork it", signer_id=batch.signer_id, key_id=batch.key_id,
                             role=info.role, topic=self.topic, appended=False,
                             hint="submit agents' batches here; the operator's control events and processors' "
                                  "derived events are appended by the CLI and the processors")

    def _admitted(self, signer_id: str, events: list[codec.DecodedEvent], partition: int, offset: int, *,
                  duplicate: bool) -> Admitted:
        return Admitted(self.topic, partition, offset, signer_id, events[0].event.seq, events[-1].event.seq,
                        tuple(d.event.event_id for d in events), duplicate)

    def _acquire(self, signer_id: str) -> _Signer:
        with self._table_lock:
            st = self._signers.get(signer_id)
            if st is None:
                st = self._signers[signer_id] = _Signer(signer_id)
            else:
                self._signers.move_to_end(signer_id)
            st.users += 1
            excess = len(self._signers) - self.cached_signers
            if excess > 0:
                # the least recently used states nobody is using; one in use stays (its lock is held)
                idle = [name for name, s in self._signers.items() if s.users == 0][:excess]
                for name in idle:
                    del self._signers[name]
            return st

    def _release(self, st: _Signer) -> None:
        with self._table_lock:
            st.users -= 1


_HINTS = {
    RejectCode.UNKNOWN_KEY: "the operator registers the signer first (`tokenledger agent register NAME`); sign with "
                            "the key it registered",
    RejectCode.REVOKED_KEY: "this key was revoked or rotated away: readers reject everything it signs now; sign with "
                            "the signer's current key",
    RejectCode.SEQUENCE_GAP: "a batch extends the signer's head on the log: its first seq is the head's + 1",
    RejectCode.FORK: "a batch extends the signer's head on the log: its first prev_hash is the head event's hash",
    RejectCode.REPLAY: "this seq is already on the signer's chain; a retry must send the very same bytes",
}


def _refused(e: RejectError) -> RejectError:
    """The readers' rejection of a batch that was not appended: no log position (it has none), ``appended=False``,
    and a hint for the refusals a producer can act on."""
    evidence = {k: v for k, v in e.evidence.items() if k not in ("code", "topic", "partition", "offset")}
    evidence["appended"] = False
    out = RejectError(e.code, e.reason, **evidence)
    out.hint = e.hint or _HINTS.get(e.code)
    return out


__all__ = ["CACHED_SIGNERS", "FOLD_READ_RECORDS", "Admitted", "BatchGate"]
