"""Verification of log records: decode, key, signature, chain, control events — all or nothing.

``Verifier.check_record`` is the single gate every reader (the ``verify`` command, processors)
passes records through. A record (one signed batch) is accepted whole or rejected whole with a
``RejectError`` carrying the code and evidence; a rejected record changes no state.

Order of checks: frame decodes → key registered, owned by the signer, not revoked → every event
decodes and belongs to the signer → signature over the event hashes → claimed times within the skew
window of the record's append time → chain → co-signatures → control events signed by an operator and
consistent with the key ring → apply control events.

Trusted time: every event an agent signs must claim a time within the skew window in force (the ring's
``skew``, set by ``clock_policy`` control events; a policy applies to the records appended after it) of its
record's append time, or, for a signer with a backfill grant, down to ``append time - max_age``. Exempt:
control events (operator-signed; they take effect by log order, not by their claimed time) and events
signed by a processor key (their times are derived from the log's events, not read from a clock, and a
processor catching up appends them late by design). The append time comes with the record's position
(``Where.append_time_us``); a caller that has none (bytes off the log) gets no time check.

Pure: no I/O; state lives in the ``KeyRing`` and ``Chains`` it holds.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger.errors import RejectCode, RejectError
from ledger.integrity.chain import Chains
from ledger.integrity.keyring import KeyInfo, KeyRing
from ledger.log import has_merged_order, has_total_order, judges_by_log_order
from ledger.log.order import order_key
from ledger.wire import codec
from ledger.wire.events import Interaction

if TYPE_CHECKING:
    from ledger.log import Log, Record, TotalOrderLog


@dataclass(frozen=True, slots=True)
class Where:
    """Position of a record on the log (for evidence)."""

    topic: str
    partition: int
    offset: int
    append_time_us: int | None = None  # the log's time for the record: claimed times are judged against it

    @classmethod
    def of(cls, rec: Record) -> Where:
        return cls(rec.topic, rec.partition, rec.offset, rec.append_time_us)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified record: its signer, key and decoded events in order."""

    signer_id: str
    key_id: str
    events: list[codec.DecodedEvent]
    # ids of the events accepted only through a backfill grant (claimed earlier than the skew window)
    backfilled: frozenset[str] = frozenset()


class Verifier:
    """Checks records all or nothing (schema, key, signature, chain) and folds accepted ones into its state."""

    def __init__(self, keyring: KeyRing, chains: Chains | None = None) -> None:
        self.keyring = keyring
        self.chains = chains or Chains()

    def check_record(self, value: bytes, where: Where | None = None) -> Accepted:
        """Verify one record and fold it into the state; raise RejectError (state unchanged) if bad."""
        try:
            return self._check(value, None if where is None else where.append_time_us)
        except RejectError as e:
            if where is None:
                raise
            # the same rejection placed at its record (at() copies; the traceback is the original's)
            raise e.at(topic=where.topic, partition=where.partition, offset=where.offset) from None

    def _check(self, value: bytes, append_time_us: int | None) -> Accepted:
        batch = codec.decode_batch(value)
        self.keyring.check(batch.signer_id, batch.key_id, None)  # unknown keys fail before any decoding work
        decoded = [codec.decode_event(raw) for raw in batch.events]
        info = self.keyring.check(batch.signer_id, batch.key_id, max(d.event.event_time_us for d in decoded))
        for d in decoded:
            if d.event.signer_id != batch.signer_id:
                raise RejectError(RejectCode.SIGNER_MISMATCH, "event signer differs from the batch signer",
                                  event_id=d.event.event_id, expected=batch.signer_id, actual=d.event.signer_id)
        message = codec.batch_message(batch, [d.hash for d in decoded])
        if not info.public.verify(batch.signature, message):
            raise RejectError(RejectCode.BAD_SIGNATURE, "batch signature does not verify",
                              signer_id=batch.signer_id, key_id=batch.key_id,
                              first_event_id=decoded[0].event.event_id)
        backfilled = self._check_times(info, decoded, append_time_us) if append_time_us is not None else frozenset()
        controls = []
        for d in decoded:
            body = d.event.body
            if body.CONTROL:
                controls.append(d)
            elif body.DERIVED:
                if info.role != "processor":
                    raise RejectError(RejectCode.NOT_PROCESSOR, f"{body.KIND} must be signed by a processor key",
                                      signer_id=batch.signer_id, key_id=batch.key_id, kind=body.KIND,
                                      event_id=d.event.event_id)
            elif isinstance(body, Interaction):
                self._check_interaction(batch.signer_id, d)
            if not body.CONTROL and d.event.context.agent is not None:
                self.keyring.check_attribution(batch.signer_id, d.event.event_id, d.event.context.agent)
        ring = self._ring_after(info, controls) if controls else self.keyring
        self.chains.check_batch(batch.signer_id, [(d.event, d.hash) for d in decoded])
        if controls:
            self.keyring.adopt(ring)
        return Accepted(batch.signer_id, batch.key_id, decoded, backfilled)

    def _check_times(self, info: KeyInfo, decoded: list[codec.DecodedEvent], append_time_us: int) -> frozenset[str]:
        """Every event's claimed time against the append time, by the window and grants in force before this
        record (its own control events apply to the records after it); the ids of backfilled events."""
        if info.role == "processor":
            return frozenset()
        out = set()
        for d in decoded:
            if d.event.body.CONTROL:
                continue
            if self.keyring.check_time(info.owner, d.event.event_id, d.event.event_time_us, append_time_us):
                out.add(d.event.event_id)
        return frozenset(out)

    def _ring_after(self, info: KeyInfo, controls: list[codec.DecodedEvent]) -> KeyRing:
        """The key ring with the batch's control events applied, on a copy (adopted only if the whole
        batch passes): several control events in one batch see each other (register, then rotate)."""
        ring = self.keyring.copy()
        for d in controls:
            try:
                ring.validate_control(info, d.event.body)
            except RejectError as e:
                e.evidence.setdefault("event_id", d.event.event_id)
                raise
            ring.apply(d.event.body, d.event.event_time_us)
        return ring

    def _check_interaction(self, signer_id: str, d: codec.DecodedEvent) -> None:
        body = d.event.body
        assert isinstance(body, Interaction)
        if body.requestor_id != signer_id:
            raise RejectError(RejectCode.SIGNER_MISMATCH, "an interaction is signed by its requestor",
                              event_id=d.event.event_id, expected=body.requestor_id, actual=signer_id)
        if body.cosignature is None:
            return
        co = self.keyring.check(body.responder_id, body.cosignature.key_id, d.event.event_time_us)
        if not co.public.verify(body.cosignature.signature, codec.cosigning_bytes(body)):
            raise RejectError(RejectCode.BAD_SIGNATURE, "responder co-signature does not verify",
                              event_id=d.event.event_id, signer_id=body.responder_id,
                              key_id=body.cosignature.key_id)


@dataclass
class AuditReport:
    """What ``audit`` found: totals, rejections by code, and the first bad record with its evidence."""

    records: int = 0
    events: int = 0
    accepted_records: int = 0
    accepted_events: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    first_error: dict[str, object] | None = None
    signers: int = 0

    @property
    def ok(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "records": self.records, "accepted_records": self.accepted_records,
                "accepted_events": self.accepted_events, "signers": self.signers,
                "rejected": dict(self.rejected), "first_error": self.first_error}


def audit(log: Log, topics: str | list[str], anchors: dict[str, bytes], *, batch: int = 2_000,
          progress: Callable[[int], None] | None = None, verifier: Verifier | None = None,
          on_accepted: Callable[[Where, Accepted], None] | None = None) -> AuditReport:
    """Re-check every record of the topics from offset 0: schemas, signatures, keys, chains.

    On a log with a total clock the records of all topics are read merged in append order, exactly as
    the processors read them (``ledger.log.order``); on Kafka merged by (append time, topic, partition,
    offset), again as the processors read it; on a log that declares neither, topic by topic in the
    order given (the control topic first, as every reader does there). A bad
    record is counted and skipped (it changes no state), so one bad record does not hide the next;
    the first one is reported with its full evidence. ``verifier`` (default: a fresh one over
    ``anchors``) is left holding the final key ring; ``on_accepted`` sees every accepted record
    (the checkpoint audit rebuilds its Merkle trees from them).
    """
    verifier = verifier or Verifier(KeyRing(anchors))
    report = AuditReport()
    names = [topics] if isinstance(topics, str) else list(topics)
    # judge keys exactly as the processors do on this log
    verifier.keyring.by_log_order = judges_by_log_order(log)
    if has_total_order(log) or has_merged_order(log):
        # the log's one order (ledger.log.order): control interleaved with data as appended, as processors read it
        merged = _in_append_order(log, names, batch) if has_total_order(log) else _in_key_order(log, names, batch)
        for rec in merged:
            _audit_record(rec, verifier, report, on_accepted)
            if progress is not None:
                progress(1)
    else:
        for topic in names:
            _audit_topic(log, topic, verifier, report, batch, progress, on_accepted)
    report.signers = len(verifier.chains.heads)
    return report


def _in_append_order(log: TotalOrderLog, topics: list[str], batch: int) -> Iterator[Record]:
    """Every record of the topics appended before this call, merged by append time (one batch per partition
    in memory). Records appended while the audit runs get later times and are left for the next audit."""
    clock_us = log.clock_us()

    def partition(topic: str, p: int) -> Iterator[Record]:
        offset, end = 0, log.end_offset(topic, p)
        while offset < end:
            recs = log.read(topic, p, offset, batch)
            if not recs:
                return
            for r in recs:
                if r.append_time_us > clock_us:
                    return
                yield r
            offset = recs[-1].offset + 1

    streams = [partition(t, p) for t in topics for p in range(log.partitions(t))]
    return heapq.merge(*streams, key=lambda r: r.append_time_us)


def _in_key_order(log: Log, topics: list[str], batch: int) -> Iterator[Record]:
    """Every record of the topics below the high-water marks taken at the start, merged by ``order_key``
    (one batch per partition in memory): a live processor's order on a log without a clock (Kafka)."""
    ends = {(t, p): log.end_offset(t, p) for t in topics for p in range(log.partitions(t))}

    def partition(topic: str, p: int) -> Iterator[Record]:
        offset, end = 0, ends[(topic, p)]
        while offset < end:
            recs = log.read(topic, p, offset, min(batch, end - offset))
            if not recs:
                return
            for r in recs:
                if r.offset >= end:
                    return
                yield r
            offset = recs[-1].offset + 1

    return heapq.merge(*(partition(t, p) for (t, p) in ends), key=order_key)


def _audit_record(rec: Record, verifier: Verifier, report: AuditReport,
                  on_accepted: Callable[[Where, Accepted], None] | None) -> None:
    where = Where.of(rec)
    report.records += 1
    try:
        acc = verifier.check_record(rec.value, where)
    except RejectError as e:
        report.rejected[e.code.value] = report.rejected.get(e.code.value, 0) + 1
        if report.first_error is None:
            report.first_error = e.to_dict()
        return
    report.accepted_records += 1
    report.accepted_events += len(acc.events)
    if on_accepted is not None:
        on_accepted(where, acc)


def _audit_topic(log: Log, topic: str, verifier: Verifier, report: AuditReport, batch: int,
                 progress: Callable[[int], None] | None,
                 on_accepted: Callable[[Where, Accepted], None] | None = None) -> None:
    for partition in range(log.partitions(topic)):
        end = log.end_offset(topic, partition)
        offset = 0
        while offset < end:
            recs = log.read(topic, partition, offset, batch)
            if not recs:
                break
            for rec in recs:
                _audit_record(rec, verifier, report, on_accepted)
            offset = recs[-1].offset + 1
            if progress is not None:
                progress(len(recs))
