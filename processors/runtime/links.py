"""Legacy links: the state checkpoints an older version signed as links of a processor's derived-event chain.

Every processor signs ``StateCheckpoint`` events (input positions, state digest) on ``<prefix>.checkpoints``. Logs
written before state checkpoints had a chain of their own (``processor.<name>.checkpoints``, see
``processors.host.service.emit_state_checkpoint``) hold them as links of the processor's one chain
(``processor.<name>``), whose other links are on its derived topic. A reader of that topic alone (settlements
reading allocations) then meets a ``sequence_gap`` at the first record after each such link, and, its chain head no
longer moving, refuses every later record of that signer. Rebuilding does not help: the gap is in the log.

``LegacyLinks.fill`` closes exactly such a gap, the way the log itself would have if the reader had read the
checkpoints topic: the records keyed by the signer on ``<prefix>.checkpoints`` (the runtime keys every record it
produces with its signer id) that hold the missing sequence numbers, in order, are passed through the reader's own
``Verifier`` (key registered and not revoked, signature, chain: each must continue the head exactly). Only records
made of ``StateCheckpoint`` events alone qualify: they carry nothing any reader folds, so passing over them drops no
input. A gap that some other record would fill (a derived record that is missing, withheld or on the wrong topic) is
left a gap, and everything after it too, as before.

Deterministic: the links a gap needs were appended before the record after them (one producer appends its chain in
order, each append acknowledged before the next batch is made), and the log is append-only, so a live run and a
replay from offset 0 find the same links and reach the same chain heads. One caveat of reading a link late: it is
judged by the key ring at the reader's position, so a link whose key was rotated or revoked before the record after
it was appended (a processor key rotated while it was stopped) is refused, and that gap stays a gap.

Bounded: a page of ``LINK_PAGE_RECORDS`` records in memory at a time; per signer, the offset up to which its records
were looked at (``_mark``: the next search starts after it) and the sequence number a search found no link for
(``_missing``: asked again, refused without reading; nothing appended later can fill it, by the argument above).
"""

from __future__ import annotations

from ledger import limits
from ledger.errors import RejectError
from ledger.integrity.verify import Verifier, Where
from ledger.log import Log
from ledger.wire import codec
from ledger.wire.events import StateCheckpoint

LINK_PAGE_RECORDS = limits.MAX_OUTBOX_CHUNK_RECORDS  # records read per page while looking (each at most 1 MB)


def state_checkpoint_seqs(value: bytes, signer_id: str) -> tuple[int, int] | None:
    """(first seq, last seq) of a record by ``signer_id`` that holds StateCheckpoint events only; None for any other
    record, or one that does not decode (never a link; the reader's verifier never sees it)."""
    try:
        batch = codec.decode_batch(value)
        if batch.signer_id != signer_id or not batch.events:
            return None
        events = [codec.decode_event(raw).event for raw in batch.events]
    except RejectError:
        return None
    if not all(isinstance(e.body, StateCheckpoint) for e in events):
        return None
    return events[0].seq, events[-1].seq


class LegacyLinks:
    """Finds and verifies a signer's legacy state checkpoint links on one checkpoints topic (module doc)."""

    def __init__(self, log: Log, topic: str) -> None:
        self.log = log
        self.topic = topic
        self._mark: dict[str, int] = {}  # signer -> offset of the last of its records looked at
        self._missing: dict[str, int] = {}  # signer -> a sequence number no link holds

    def fill(self, verifier: Verifier, signer_id: str, expected: int, actual: int) -> bool:
        """Verify into ``verifier`` the signer's links holding sequence numbers ``expected`` .. ``actual - 1`` (its
        chain head is at ``expected - 1``), in order, as far as they go. Returns whether any link was accepted
        (the chain head moved); the caller checks the record at ``actual`` again either way."""
        if actual <= expected or self._missing.get(signer_id) == expected or self.topic not in self.log.topics():
            return False
        key = signer_id.encode()
        need = expected
        moved = False
        while True:
            page = self.log.read_key(self.topic, key, self._mark.get(signer_id, -1), LINK_PAGE_RECORDS)
            if not page:
                self._missing[signer_id] = need
                return moved
            for rec in page:
                # looked at: never wanted again, since the chain head only moves forward (a record holding a later
                # link than ``need`` cannot come before ``need``'s own link in one producer's order)
                self._mark[signer_id] = rec.offset
                seqs = state_checkpoint_seqs(rec.value, signer_id)
                if seqs is None or seqs[0] != need or seqs[1] >= actual:
                    continue  # not a link, a link the chain is past, or a stray
                try:
                    verifier.check_record(rec.value, Where.of(rec))
                except RejectError:
                    continue  # does not verify here (forged; its key rotated away since): not a link
                moved = True
                need = seqs[1] + 1
                if need == actual:
                    return moved


__all__ = ["LINK_PAGE_RECORDS", "LegacyLinks", "state_checkpoint_seqs"]
