"""The canonical codec: the only definition of "bytes on the log", "bytes to hash" and "bytes to sign".

Wire format (all Avro, see schemas/):

- A log record is one ``SignedBatch`` in Avro single-object encoding (``C3 01`` + 8-byte
  CRC-64-AVRO schema fingerprint + Avro body): signer id, key id, the events as bytes, signature.
- Each event is one ``Event`` in single-object encoding. Avro encodes a record as the concatenation
  of its fields, so an event is ``header || header fields || content`` where the header fields
  (event_id, signer_id, seq, prev_hash, idempotency_key) never change layout and the *content*
  (event_time_us, context, body) is what the event id is derived from. We build the header fields by
  hand and the content with an encoder generated from the schema (``avro_fast``); a test proves the
  result equals fastavro's encoding of the whole record, byte for byte.
- Canonical: the model has no floats, maps are written with sorted keys, union branches are chosen
  by record name, so the same event always gives the same bytes.

Hashes and signatures (each with its own domain-separation prefix):

- ``event_hash = SHA-256(DOMAIN_EVENT || event bytes)`` — the chain link (next event's prev_hash).
- ``event_id = hex(SHA-256(DOMAIN_EVENT_ID || signer || 0 || key material)[:16])`` where the material
  is ``"k" || idempotency_key`` when the producer gave one, else ``"c" || content bytes``: a retried
  emit of the same call yields the same id.
- batch signature, by envelope version (the record's ``version`` field; records written with the
  first SignedBatch schema have none and are version 1):

  * v1: Ed25519 over ``DOMAIN_BATCH || str(signer) || str(key_id) || long(n) || hash_1 .. hash_n``;
  * v2 (what writers write): Ed25519 over ``DOMAIN_BATCH_V2 || str(signer) || str(key_id) || long(n) ||
    root``, ``root`` = the RFC 9162 Merkle root over the event hashes taken as the leaf hashes (each is
    already domain-separated by ``DOMAIN_EVENT``, so no leaf can pose as an interior node
    ``SHA-256(0x01 || left || right)``). One event then proves its place in a signed batch with
    ``ceil(log2 n)`` hashes instead of the whole record (ledger/integrity/proofs.py).

  A v1 record is still written with the first SignedBatch schema (byte for byte what older writers
  wrote); a v2 record with the current one.
- responder co-signature = Ed25519 over ``DOMAIN_COSIGN || Avro(Interaction with cosignature null)``.

This module is the envelope (domains, ids, hashes, batch and co-signature bytes); the generic Avro
machinery (varints, generated encoders and decoders) is ``avro_fast``.

Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, fields, replace
from typing import Any, TypedDict, cast

import fastavro

from ledger import limits
from ledger.errors import RejectCode, RejectError, ValidationError
from ledger.wire import avro_fast, schemas
from ledger.wire.avro_fast import ShortRead, enc_bytes, enc_long, enc_str, read_bytes, read_long, read_string
from ledger.wire.events import BY_AVRO, Body, Context, Cosignature, Event, Flow, Interaction, LlmUsage

DOMAIN_EVENT = b"tokenledger/event/v1\x00"
DOMAIN_EVENT_ID = b"tokenledger/event-id/v1\x00"
DOMAIN_BATCH = b"tokenledger/batch/v1\x00"
DOMAIN_BATCH_V2 = b"tokenledger/batch/v2\x00"
DOMAIN_COSIGN = b"tokenledger/cosign/v1\x00"

_sha256 = hashlib.sha256

BATCH_V1 = 1  # the signature covers every event hash
BATCH_V2 = 2  # the signature covers the Merkle root of the event hashes
BATCH_VERSIONS = (BATCH_V1, BATCH_V2)
BATCH_VERSION = BATCH_V2  # what the emitter and the processors write
# the SignedBatch schema v1 records are written with (released; the one every v1 record on a log carries)
BATCH_V1_FINGERPRINT = bytes.fromhex("abb45c45ba342bed")
_NODE_PREFIX = b"\x01"  # RFC 9162 interior node (ledger/integrity/merkle.py holds the whole tree)


# ---------------------------------------------------------------- schemas used by the codec


# Model class of each record, by full Avro name: every event body (the encoder picks the body union's branch
# by class) and the records nested in events (the decoder builds them all).
_CLASSES: dict[str, type] = {"tokenledger.Context": Context, "tokenledger.LlmUsage": LlmUsage,
                             "tokenledger.Flow": Flow, "tokenledger.Cosignature": Cosignature, **BY_AVRO}
# contexts repeat across a run's events: the decoder reuses the (immutable) object for the same bytes
_CACHED_RECORDS = frozenset({"tokenledger.Context"})


@dataclass(frozen=True)
class _Schemas:
    event: schemas.Schema
    batch: schemas.Schema
    encode_content: avro_fast.EncodeFn  # (event_time_us, context, body) -> bytes
    encode_interaction: avro_fast.EncodeFn  # (interaction,) -> bytes
    decode_event: avro_fast.DecodeFn  # (bytes, pos) -> ((8 Event fields, content offset), pos)


def _build() -> _Schemas:
    cur = schemas.current()
    event = cur["Event"]
    # cast: the composed Event schema (JSON from our own files, already accepted by fastavro.parse_schema)
    # is a record, so it has the fields the generators read
    ev_fields = cast(list[avro_fast.AvroField], event.source["fields"])
    names = [f["name"] for f in ev_fields]
    assert names[:5] == ["event_id", "signer_id", "seq", "prev_hash", "idempotency_key"], names
    body_union = next(f for f in ev_fields if f["name"] == "body")["type"]
    assert isinstance(body_union, list), body_union
    interaction = next(t for t in body_union if isinstance(t, dict) and t.get("name") == Interaction.AVRO)
    return _Schemas(event=event, batch=cur["SignedBatch"],
                    encode_content=avro_fast.compile_encoder(ev_fields[5:], ["event_time_us", "context", "body"],
                                                             _CLASSES),
                    encode_interaction=avro_fast.compile_encoder([{"name": "i", "type": interaction}], ["i"],
                                                                 _CLASSES),
                    decode_event=avro_fast.compile_decoder(ev_fields, _CLASSES, cached_records=_CACHED_RECORDS,
                                                           mark_at=5))


_S: _Schemas | None = None


def _s() -> _Schemas:
    global _S
    if _S is None:
        _S = _build()
    return _S


# ---------------------------------------------------------------- model <-> Avro datum


# What fastavro reads an Event and a SignedBatch into (record -> dict, union of records -> (name, dict) with
# return_record_name): the reader schema is our current one, so the keys are known.


class ContextDatum(TypedDict):
    org: str | None
    project: str | None
    task: str | None
    stage: str | None
    run: str | None
    labels: dict[str, str]
    agent: str | None


class _EventDatum(TypedDict):
    event_id: str
    signer_id: str
    seq: int
    prev_hash: bytes
    idempotency_key: str | None
    event_time_us: int
    context: ContextDatum
    body: tuple[str, dict[str, Any]]


class _BatchDatum(TypedDict):
    signer_id: str
    key_id: str
    events: list[bytes]
    signature: bytes
    version: int


def _to_datum(obj: Any) -> dict[str, Any]:
    """A model object (frozen dataclass) as the dict fastavro writes for its record."""
    cls = type(obj)
    d = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if f.name in cls.__dict__.get("MAPS", ()) or (cls is Context and f.name == "labels"):
            v = dict(v)  # already key-sorted: fastavro writes in insertion order
        elif hasattr(v, "__dataclass_fields__"):
            v = _to_datum(v)
        d[f.name] = v
    return d


def body_to_datum(body: Body) -> tuple[str, dict[str, Any]]:
    """The (record name, datum) pair fastavro writes as the chosen union branch."""
    return body.AVRO, _to_datum(body)


def body_from_datum(name: str, d: dict[str, Any]) -> Body:
    cls = BY_AVRO.get(name)
    if cls is None:
        raise RejectError(RejectCode.UNKNOWN_KIND, f"unknown body record {name}", kind=name)
    kw = dict(d)
    for fname, ftype in cls.NESTED.items():
        if kw.get(fname) is not None:
            kw[fname] = ftype(**kw[fname])
    return cls(**kw)


def context_from_datum(d: ContextDatum) -> Context:
    # labels as pairs, the type Context declares (it sorts and checks them, as it does a mapping)
    return Context(org=d["org"], project=d["project"], task=d["task"], stage=d["stage"], run=d["run"],
                   labels=tuple(d["labels"].items()), agent=d.get("agent"))


# ---------------------------------------------------------------- events


def encode_content(event_time_us: int, context: Context, body: Body) -> bytes:
    """The content suffix of an event: what its id is derived from."""
    return _s().encode_content(event_time_us, context, body)


def derive_event_id(signer_id: str, idempotency_key: str | None, content: bytes) -> str:
    material = b"k" + idempotency_key.encode("utf-8") if idempotency_key is not None else b"c" + content
    return _sha256(DOMAIN_EVENT_ID + signer_id.encode("utf-8") + b"\x00" + material).hexdigest()[
        : limits.EVENT_ID_HEX_CHARS]


def _header_fields(event_id: str, signer_id: str, seq: int, prev_hash: bytes, idempotency_key: str | None) -> bytes:
    idem = b"\x00" if idempotency_key is None else b"\x02" + enc_str(idempotency_key)  # union index 0/1
    return enc_str(event_id) + enc_str(signer_id) + enc_long(seq) + enc_bytes(prev_hash) + idem


def assemble_event(*, event_id: str, signer_id: str, seq: int, prev_hash: bytes, idempotency_key: str | None,
                   content: bytes) -> bytes:
    """Single-object bytes of an event from its header fields and its already-encoded content."""
    return _s().event.header + _header_fields(event_id, signer_id, seq, prev_hash, idempotency_key) + content


def encode_event(event: Event) -> bytes:
    """Canonical bytes of an event (validated model in, bytes out)."""
    content = encode_content(event.event_time_us, event.context, event.body)
    return assemble_event(event_id=event.event_id, signer_id=event.signer_id, seq=event.seq,
                          prev_hash=event.prev_hash, idempotency_key=event.idempotency_key, content=content)


def event_hash(event_bytes: bytes) -> bytes:
    """The chain link: what the signer's next event carries as prev_hash."""
    return _sha256(DOMAIN_EVENT + event_bytes).digest()


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """An event decoded from the log, with the raw facts verification needs."""

    event: Event
    raw: bytes  # the exact single-object bytes
    hash: bytes  # event_hash(raw)
    content_offset: int  # where the content (time, context, body) starts in raw


def decode_event(raw: bytes) -> DecodedEvent:
    """Decode and validate one event. Raises RejectError with a code naming what is wrong."""
    if len(raw) > limits.MAX_EVENT_BYTES:
        raise RejectError(RejectCode.OVERSIZED, "event larger than the limit", expected=limits.MAX_EVENT_BYTES,
                          actual=len(raw))
    writer, pos = schemas.writer_schema(raw, expected="Event")
    s = _s()
    try:
        # the current schema's compiled decoder, or a released older one's (fields it lacks take their defaults)
        fast = s.decode_event if writer.fingerprint == s.event.fingerprint else _older_decoder(writer)
        if fast is not None:
            (event_id, signer_id, seq, prev_hash, idem, event_time_us, context, body, content_offset), p = (
                fast(raw, pos))
            if p != len(raw):
                raise RejectError(RejectCode.BAD_SCHEMA, "trailing bytes after the event", expected=p,
                                  actual=len(raw))
        else:
            # the fixed header, by hand: it also tells where the content (the id's material) starts
            event_id, p = read_string(raw, pos)
            signer_id, p = read_string(raw, p)
            seq, p = read_long(raw, p)
            prev_hash, p = read_bytes(raw, p)
            branch, p = read_long(raw, p)
            if branch == 1:
                idem, p = read_string(raw, p)
            elif branch == 0:
                idem = None
            else:
                raise ValueError(f"union index {branch} in idempotency_key")
            content_offset = p
            event_time_us, context, body = _decode_resolving(raw, pos, writer)
        event = Event(event_id=event_id, signer_id=signer_id, seq=seq, prev_hash=prev_hash, idempotency_key=idem,
                      event_time_us=event_time_us, context=context, body=body)
    except RejectError:
        raise
    except ValidationError as e:
        raise RejectError(RejectCode.INVALID_FIELD, e.message, field=e.field, value=e.value) from None
    except (IndexError, ShortRead, EOFError, StopIteration):
        raise RejectError(RejectCode.TRUNCATED, "event bytes end early", actual=len(raw)) from None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        raise RejectError(RejectCode.BAD_SCHEMA, f"event does not decode: {type(e).__name__}: {e}") from None
    expected_id = derive_event_id(signer_id, idem, raw[content_offset:])
    if expected_id != event_id:
        raise RejectError(RejectCode.BAD_ID, "event id does not match its content", event_id=event_id,
                          expected=expected_id, actual=event_id)
    return DecodedEvent(event=event, raw=raw, hash=event_hash(raw), content_offset=content_offset)


# compiled decoders of the released Event schemas older than the current one, by fingerprint: at most one per
# released schema (a handful), so a log written before a schema change verifies and rebuilds at full speed
_OLDER: dict[bytes, avro_fast.DecodeFn | None] = {}


def _older_decoder(writer: schemas.Schema) -> avro_fast.DecodeFn | None:
    """A decoder compiled from an older Event schema, or None where only Avro resolution can read it (a record
    name the model does not know, or another envelope header). Evolution only adds fields with defaults and union
    branches at the end (schemas/README.md), so the writer's own layout builds the current model objects, each
    field it lacks at the model's default: what resolution against the current schema gives, without its cost."""
    if writer.fingerprint in _OLDER:
        return _OLDER[writer.fingerprint]
    fields = cast(list[avro_fast.AvroField], writer.source.get("fields", []))
    fn: avro_fast.DecodeFn | None = None
    if [f["name"] for f in fields] == ["event_id", "signer_id", "seq", "prev_hash", "idempotency_key",
                                        "event_time_us", "context", "body"]:
        try:
            fn = avro_fast.compile_decoder(fields, _CLASSES, cached_records=_CACHED_RECORDS, mark_at=5)
        except (KeyError, ValueError, TypeError):
            fn = None  # a layout the fast decoder cannot build: resolution reads it
    _OLDER[writer.fingerprint] = fn
    return fn


def _decode_resolving(raw: bytes, pos: int, writer: schemas.Schema) -> tuple[int, Context, Body]:
    """Decode an event written with an older schema into the current one (Avro schema resolution)."""
    buf = io.BytesIO(raw)
    buf.seek(pos)
    try:
        # cast: read into the current Event schema, so fastavro returns an Event record (see _EventDatum)
        d = cast(_EventDatum, fastavro.schemaless_reader(buf, writer.parsed, _s().event.parsed,
                                                         return_record_name=True,
                                                         return_record_name_override=True))
    except (EOFError, StopIteration):
        raise
    except Exception as e:  # noqa: BLE001 - fastavro raises many types on garbage: all mean "not an Event"
        raise ValueError(f"{type(e).__name__}: {e}") from None
    if buf.tell() != len(raw):
        raise RejectError(RejectCode.BAD_SCHEMA, "trailing bytes after the event", expected=buf.tell(),
                          actual=len(raw))
    name, body_d = d["body"]
    return d["event_time_us"], context_from_datum(d["context"]), body_from_datum(name, body_d)


# ---------------------------------------------------------------- batches


def batch_signing_bytes(signer_id: str, key_id: str, event_hashes: list[bytes]) -> bytes:
    """What a v1 envelope's signature covers: every event hash."""
    return DOMAIN_BATCH + enc_str(signer_id) + enc_str(key_id) + enc_long(len(event_hashes)) + b"".join(event_hashes)


def batch_root(event_hashes: list[bytes]) -> bytes:
    """RFC 9162 Merkle root over the event hashes as leaf hashes (a v2 envelope signs it). Requires n >= 1.

    Bottom-up, an odd last node carried up unchanged: the same root as RFC 9162's split at the largest
    power of two below n (tests/ledger/wire/test_codec.py proves it against ledger/integrity/merkle.py)."""
    level = event_hashes
    while len(level) > 1:
        nxt = [_sha256(_NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def batch_signing_bytes_v2(signer_id: str, key_id: str, count: int, root: bytes) -> bytes:
    """What a v2 envelope's signature covers: the event count and the Merkle root of the event hashes."""
    return DOMAIN_BATCH_V2 + enc_str(signer_id) + enc_str(key_id) + enc_long(count) + root


def signing_bytes(version: int, signer_id: str, key_id: str, event_hashes: list[bytes]) -> bytes:
    """The bytes a batch of envelope ``version`` signs over these event hashes."""
    if version == BATCH_V2:
        return batch_signing_bytes_v2(signer_id, key_id, len(event_hashes), batch_root(event_hashes))
    return batch_signing_bytes(signer_id, key_id, event_hashes)


def batch_item_bytes(raw: bytes) -> int:
    """What one event adds to a signed batch record: its bytes and their Avro length prefix (a zig-zag varint
    of 7 bits a byte, counted without encoding it)."""
    n = len(raw)
    return n + ((2 * n).bit_length() + 6) // 7 if n else 1


def batch_overhead_bytes(signer_id: str, key_id: str, version: int = BATCH_V1) -> int:
    """A signed batch record's bytes besides its events (the log key, which is the signer id, included): the
    frame, ids, event count (counted at its largest) and signature. A record is this plus its events' items
    (``batch_item_bytes``), and is cut so that the sum stays within ``limits.MAX_RECORD_BYTES``."""
    return (len(signer_id.encode()) + len(enc_long(limits.MAX_BATCH_EVENTS))
            + len(encode_batch(signer_id, key_id, [], bytes(limits.SIGNATURE_BYTES), version)))


def encode_batch(signer_id: str, key_id: str, events: list[bytes], signature: bytes,
                 version: int = BATCH_V1) -> bytes:
    """Single-object bytes of a SignedBatch (Avro array = one block of n items, then 0).

    ``version`` is the envelope the signature was made for (see ``signing_bytes``): v1 is written with
    the first SignedBatch schema, exactly as older writers did; v2 with the current one."""
    if version not in BATCH_VERSIONS:
        raise ValidationError("version", version, f"must be one of {BATCH_VERSIONS}")
    header = schemas.SINGLE_OBJECT_MARKER + BATCH_V1_FINGERPRINT if version == BATCH_V1 else _s().batch.header
    parts = [header, enc_str(signer_id), enc_str(key_id)]
    if events:
        parts.append(enc_long(len(events)))
        for e in events:
            parts.append(enc_long(len(e)))
            parts.append(e)
    parts.append(b"\x00")
    parts.append(enc_bytes(signature))
    if version != BATCH_V1:
        parts.append(enc_long(version))  # Avro int and long share the zig-zag varint
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    signer_id: str
    key_id: str
    events: list[bytes]
    signature: bytes
    version: int = BATCH_V1


def batch_message(batch: DecodedBatch, event_hashes: list[bytes]) -> bytes:
    """The bytes ``batch.signature`` must verify over, given the hashes of all its events."""
    return signing_bytes(batch.version, batch.signer_id, batch.key_id, event_hashes)


def decode_batch(raw: bytes) -> DecodedBatch:
    """Decode the batch frame (not its events). Raises RejectError on anything malformed."""
    if len(raw) > limits.MAX_RECORD_BYTES:
        raise RejectError(RejectCode.OVERSIZED, "record larger than the limit", expected=limits.MAX_RECORD_BYTES,
                          actual=len(raw))
    writer, pos = schemas.writer_schema(raw, expected="SignedBatch")
    buf = io.BytesIO(raw)
    buf.seek(pos)
    reader = None if writer.fingerprint == _s().batch.fingerprint else _s().batch.parsed
    try:
        # cast: read into the current SignedBatch schema, so fastavro returns that record (see _BatchDatum)
        d = cast(_BatchDatum, fastavro.schemaless_reader(buf, writer.parsed, reader))
    except (EOFError, StopIteration) as e:
        raise RejectError(RejectCode.TRUNCATED, f"batch bytes end early: {e}") from None
    except Exception as e:  # noqa: BLE001 - fastavro raises many types on garbage: all mean "not a batch"
        raise RejectError(RejectCode.BAD_SCHEMA, f"batch does not decode: {type(e).__name__}: {e}") from None
    if buf.tell() != len(raw):
        raise RejectError(RejectCode.BAD_SCHEMA, "trailing bytes after the batch", expected=buf.tell(),
                          actual=len(raw))
    n = len(d["events"])
    if n == 0 or n > limits.MAX_BATCH_EVENTS:
        raise RejectError(RejectCode.OVERSIZED if n else RejectCode.INVALID_FIELD,
                          f"a batch holds 1..{limits.MAX_BATCH_EVENTS} events", actual=n)
    if len(d["signature"]) != limits.SIGNATURE_BYTES:
        raise RejectError(RejectCode.BAD_SIGNATURE, "signature has the wrong length",
                          expected=limits.SIGNATURE_BYTES, actual=len(d["signature"]))
    version = d["version"]
    if version not in BATCH_VERSIONS:
        raise RejectError(RejectCode.BAD_SCHEMA, "unknown batch envelope version", field="version",
                          expected=f"one of {BATCH_VERSIONS}", actual=version)
    return DecodedBatch(signer_id=d["signer_id"], key_id=d["key_id"], events=d["events"], signature=d["signature"],
                        version=version)


# ---------------------------------------------------------------- co-signatures


def cosigning_bytes(interaction: Interaction) -> bytes:
    """What a responder signs to co-sign an interaction: the interaction with its co-signature left out."""
    return DOMAIN_COSIGN + _s().encode_interaction(replace(interaction, cosignature=None))


def encode_full_event_with_fastavro(event: Event) -> bytes:
    """Reference encoding through fastavro alone (tests prove encode_event equals it)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _s().event.parsed, {
        "event_id": event.event_id, "signer_id": event.signer_id, "seq": event.seq, "prev_hash": event.prev_hash,
        "idempotency_key": event.idempotency_key, "event_time_us": event.event_time_us,
        "context": _to_datum(event.context), "body": body_to_datum(event.body)})
    return _s().event.header + buf.getvalue()
