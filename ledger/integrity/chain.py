"""Per-signer hash chains: every event names its signer's previous event.

Rules (each break has its own reject code):
- the first event of a signer has seq 1 and prev_hash = 32 zero bytes (genesis);
- event n+1 has seq = n + 1 and prev_hash = hash of event n;
- the latest batch delivered again is a DUPLICATE; older events re-appearing after newer ones are a
  REPLAY; another event at a sequence number already taken (within the recent window), or a
  prev_hash that does not match, is a FORK; a skipped seq is a SEQUENCE_GAP;
- an event id seen among the signer's recent events is a DUPLICATE even under a new seq (a producer
  that re-emitted a retried call). The window is ``limits.DUPLICATE_WINDOW_EVENTS`` per signer. The
  SDK's emitter deduplicates before it signs, over a window that contains this one
  (``limits.IDEMPOTENCY_WINDOW_*``) and refuses events older than what it forgot, so an honest
  producer never appends an id twice: this check catches only a producer that does not use it.
  Such a batch is rejected whole, and the producer's later batches no longer extend the chain.

One chain per signer over every topic it writes (the key is the signer id, never the topic).

Pure: a ``Chains`` value is advanced only through ``check_batch``, which is all-or-nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TypedDict

from ledger import limits
from ledger.errors import RejectCode, RejectError
from ledger.wire.events import GENESIS_HASH, Event


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: bytes


GENESIS = Head(0, GENESIS_HASH)


class _Evidence(TypedDict):
    """What every chain rejection names about the event."""

    event_id: str
    signer_id: str
    seq: int


def _stale(event: Event, head: Head, recent: OrderedDict[str, int] | None, last_seq: int,
           ev: _Evidence) -> RejectError:
    """Why an event at or below the chain head is refused: the batch re-delivered, a replay or a fork."""
    known = recent.get(event.event_id) if recent is not None else None
    if known == event.seq:
        if last_seq == head.seq:
            return RejectError(RejectCode.DUPLICATE, "this batch is already on the chain (re-delivered)", **ev)
        return RejectError(RejectCode.REPLAY, "an old event re-appears after newer ones",
                           expected=head.seq + 1, actual=event.seq, **ev)
    if event.seq > head.seq - limits.DUPLICATE_WINDOW_EVENTS:
        return RejectError(RejectCode.FORK, "another event already holds this sequence number",
                           expected=head.seq + 1, actual=event.seq, **ev)
    return RejectError(RejectCode.REPLAY, "sequence number is older than the chain head",
                       expected=head.seq + 1, actual=event.seq, **ev)


class Chains:
    """The heads of every signer's chain, plus a window of recent ids per signer."""

    def __init__(self) -> None:
        self.heads: dict[str, Head] = {}
        self._recent: dict[str, OrderedDict[str, int]] = {}

    def head(self, signer_id: str) -> Head:
        return self.heads.get(signer_id, GENESIS)

    def check_batch(self, signer_id: str, events: list[tuple[Event, bytes]]) -> None:
        """Check a batch of (event, hash) from one signer in order; advance only if all pass."""
        head = self.head(signer_id)
        recent = self._recent.get(signer_id)
        batch_ids: set[str] = set()
        for event, h in events:
            ev = _Evidence(event_id=event.event_id, signer_id=signer_id, seq=event.seq)
            if event.signer_id != signer_id:
                raise RejectError(RejectCode.SIGNER_MISMATCH, "event signer differs from the batch signer",
                                  expected=signer_id, actual=event.signer_id, event_id=event.event_id)
            if event.seq <= head.seq:
                raise _stale(event, head, recent, events[-1][0].seq, ev)
            if event.seq > head.seq + 1:
                raise RejectError(RejectCode.SEQUENCE_GAP, "sequence number skips ahead",
                                  expected=head.seq + 1, actual=event.seq, **ev)
            if event.prev_hash != head.hash:
                raise RejectError(RejectCode.FORK, "previous hash does not match the chain head",
                                  expected=head.hash.hex(), actual=event.prev_hash.hex(), **ev)
            if event.event_id in batch_ids or (recent is not None and event.event_id in recent):
                raise RejectError(RejectCode.DUPLICATE, "event id already used by this signer", **ev)
            batch_ids.add(event.event_id)
            head = Head(event.seq, h)
        # all passed: commit
        self.heads[signer_id] = head
        if recent is None:
            recent = self._recent[signer_id] = OrderedDict()
        for event, _ in events:
            recent[event.event_id] = event.seq
        while len(recent) > limits.DUPLICATE_WINDOW_EVENTS:
            recent.popitem(last=False)
