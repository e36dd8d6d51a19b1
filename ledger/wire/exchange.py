"""The exchange record: what a sharded processor's router sends one owner shard (``processors.runtime.exchange``).

Not a ledger event: a record of its own type (``tokenledger.ExchangeRecord``, ``schemas/exchange_record.v<N>.avsc``),
single-object encoded, on a topic per (sender, target) pair. It carries the verified events the sender routed to
the target (each with where it was on the log and its exact bytes), the records the sender's verification refused
(for the owner's quarantine), and the sender's *mark*: the order key up to which the sender has routed every record
of its partitions, which lets the owner fold the union of its senders in the log's one order.

Signed and chained like every derived topic: Ed25519 by the sender shard's registered processor key over a domain
string and the SHA-256 of the record encoded with an empty signature; ``seq`` and ``prev_hash`` chain the records of
one (sender, target) pair, so the owner refuses a record missing, repeated, reordered, or meant for another target.

Pure: encoding, decoding and the signature's bytes; the keys are the caller's.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from ledger.errors import RejectCode, RejectError
from ledger.wire import schemas

RECORD = "ExchangeRecord"
FILE_STEM = "exchange_record"
DOMAIN = b"tokenledger.exchange.v1\x00"  # signatures over exchange records sign nothing else
GENESIS = bytes(32)  # prev_hash of a pair's first record

# (append time, topic, partition, offset, index): ledger.log.order.order_key and the event's place in its record, so
# a record's events may be split over exchange records and still be released in order exactly once
ItemKey = tuple[int, str, int, int, int]
LAST_INDEX = 2**31 - 1  # a mark through a whole record


@dataclass(frozen=True, slots=True)
class Routed:
    """One verified event routed to an owner: its record's place on the log, the key that signed its batch."""

    topic: str
    partition: int
    offset: int
    index: int
    append_time_us: int
    key_id: str
    backfilled: bool
    event: bytes

    @property
    def item_key(self) -> ItemKey:
        return (self.append_time_us, self.topic, self.partition, self.offset, self.index)


@dataclass(frozen=True, slots=True)
class Refused:
    """One record the sender's verification quarantined: the owner keeps it in its quarantine view."""

    topic: str
    partition: int
    offset: int
    append_time_us: int
    code: str
    reason: str
    evidence_json: str
    size: int
    value: bytes

    @property
    def item_key(self) -> ItemKey:
        return (self.append_time_us, self.topic, self.partition, self.offset, 0)


@dataclass(frozen=True)
class ExchangeRecord:
    sender: str
    key_id: str
    sender_index: int
    target: int
    count: int
    seq: int
    prev_hash: bytes
    through: ItemKey
    items: list[Routed] = field(default_factory=list)
    quarantined: list[Refused] = field(default_factory=list)
    signature: bytes = b""


@functools.cache
def schema() -> schemas.Schema:
    """The writer schema: the highest version of ``schemas/exchange_record.v<N>.avsc``."""
    versions = schemas.source_files()[FILE_STEM]
    source = versions[max(versions)]
    parsed = fastavro.parse_schema(source, _force=True)
    canonical = to_parsing_canonical_form(parsed)
    fp = schemas.fingerprint_of(canonical)
    return schemas.Schema(name=RECORD, source=source, parsed=parsed, canonical=canonical, fingerprint=fp,
                          header=schemas.SINGLE_OBJECT_MARKER + fp)


def _datum(r: ExchangeRecord, signature: bytes) -> dict[str, Any]:
    t, topic, partition, offset, index = r.through
    return {
        "sender": r.sender, "key_id": r.key_id, "sender_index": r.sender_index, "target": r.target,
        "count": r.count, "seq": r.seq, "prev_hash": r.prev_hash, "through_time_us": t, "through_topic": topic,
        "through_partition": partition, "through_offset": offset, "through_index": index,
        "items": [{"topic": i.topic, "partition": i.partition, "offset": i.offset, "index": i.index,
                   "append_time_us": i.append_time_us, "key_id": i.key_id, "backfilled": i.backfilled,
                   "event": i.event} for i in r.items],
        "quarantined": [{"topic": q.topic, "partition": q.partition, "offset": q.offset,
                         "append_time_us": q.append_time_us, "code": q.code, "reason": q.reason,
                         "evidence_json": q.evidence_json, "size": q.size, "value": q.value}
                        for q in r.quarantined],
        "signature": signature,
    }


def _encode(r: ExchangeRecord, signature: bytes) -> bytes:
    s = schema()
    buf = io.BytesIO()
    buf.write(s.header)
    fastavro.schemaless_writer(buf, s.parsed, _datum(r, signature))
    return buf.getvalue()


def signing_bytes(r: ExchangeRecord) -> bytes:
    """What the sender signs: the domain and the SHA-256 of the record encoded with an empty signature."""
    return DOMAIN + hashlib.sha256(_encode(r, b"")).digest()


def encode(r: ExchangeRecord) -> bytes:
    """The record with its signature, single-object encoded (what goes on the exchange topic)."""
    return _encode(r, r.signature)


def record_hash(value: bytes) -> bytes:
    """The chain link: the next record of the pair carries it as ``prev_hash``."""
    return hashlib.sha256(DOMAIN + value).digest()


def decode(value: bytes) -> ExchangeRecord:
    """Decode one exchange record; RejectError (BAD_SCHEMA / UNKNOWN_SCHEMA / TRUNCATED) naming what is wrong."""
    s = schema()
    if len(value) < schemas.SINGLE_OBJECT_HEADER_BYTES or value[:2] != schemas.SINGLE_OBJECT_MARKER:
        raise RejectError(RejectCode.BAD_SCHEMA, "not an Avro single-object exchange record",
                          actual=bytes(value[:2]).hex())
    if bytes(value[2:10]) != s.fingerprint:
        raise RejectError(RejectCode.UNKNOWN_SCHEMA, f"no known {RECORD} schema has this fingerprint",
                          fingerprint=bytes(value[2:10]).hex(), expected=s.fingerprint.hex())
    buf = io.BytesIO(value)
    buf.seek(schemas.SINGLE_OBJECT_HEADER_BYTES)
    try:
        d = fastavro.schemaless_reader(buf, s.parsed, s.parsed)
    except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise RejectError(RejectCode.BAD_SCHEMA, f"the exchange record does not decode: {e}") from None
    if buf.tell() != len(value):
        raise RejectError(RejectCode.BAD_SCHEMA, "trailing bytes after the exchange record", expected=buf.tell(),
                          actual=len(value))
    assert isinstance(d, dict)
    return ExchangeRecord(
        sender=d["sender"], key_id=d["key_id"], sender_index=d["sender_index"], target=d["target"],
        count=d["count"], seq=d["seq"], prev_hash=d["prev_hash"],
        through=(d["through_time_us"], d["through_topic"], d["through_partition"], d["through_offset"],
                 d["through_index"]),
        items=[Routed(i["topic"], i["partition"], i["offset"], i["index"], i["append_time_us"], i["key_id"],
                      i["backfilled"], i["event"]) for i in d["items"]],
        quarantined=[Refused(q["topic"], q["partition"], q["offset"], q["append_time_us"], q["code"], q["reason"],
                             q["evidence_json"], q["size"], q["value"]) for q in d["quarantined"]],
        signature=d["signature"])
