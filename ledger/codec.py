"""The canonical codec: the only definition of "bytes on the log", "bytes to hash" and "bytes to sign".

Wire format (all Avro, see schemas/):

- A log record is one ``SignedBatch`` in Avro single-object encoding (``C3 01`` + 8-byte
  CRC-64-AVRO schema fingerprint + Avro body): signer id, key id, the events as bytes, signature.
- Each event is one ``Event`` in single-object encoding. Avro encodes a record as the concatenation
  of its fields, so an event is ``header || header fields || content`` where the header fields
  (event_id, signer_id, seq, prev_hash, idempotency_key) never change layout and the *content*
  (event_time_us, context, body) is what the event id is derived from. We build the header fields by
  hand and the content with fastavro; a test proves the result equals fastavro's encoding of the
  whole record, byte for byte.
- Canonical: the model has no floats, maps are written with sorted keys, union branches are chosen
  by record name, so the same event always gives the same bytes.

Hashes and signatures (each with its own domain-separation prefix):

- ``event_hash = SHA-256(DOMAIN_EVENT || event bytes)`` — the chain link (next event's prev_hash).
- ``event_id = hex(SHA-256(DOMAIN_EVENT_ID || signer || 0 || key material)[:16])`` where the material
  is ``"k" || idempotency_key`` when the producer gave one, else ``"c" || content bytes``: a retried
  emit of the same call yields the same id.
- batch signature = Ed25519 over ``DOMAIN_BATCH || str(signer) || str(key_id) || long(n) || hash_1 .. hash_n``.
- responder co-signature = Ed25519 over ``DOMAIN_COSIGN || Avro(Interaction with cosignature null)``.

Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, fields, replace
from typing import Any

import fastavro

from ledger import limits, schemas
from ledger.errors import RejectCode, RejectError, ValidationError
from ledger.events import BY_AVRO, Body, Context, Event, Interaction

DOMAIN_EVENT = b"tokenledger/event/v1\x00"
DOMAIN_EVENT_ID = b"tokenledger/event-id/v1\x00"
DOMAIN_BATCH = b"tokenledger/batch/v1\x00"
DOMAIN_COSIGN = b"tokenledger/cosign/v1\x00"

_sha256 = hashlib.sha256


# ---------------------------------------------------------------- Avro primitives (by hand, for the header)


def _enc_long_slow(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL_LONGS = tuple(_enc_long_slow(n) for n in range(16_384))  # every long below 2**14: one lookup


def enc_long(n: int) -> bytes:
    """Avro long: zig-zag then base-128 varint."""
    if 0 <= n < 16_384:
        return _SMALL_LONGS[n]
    return _enc_long_slow(n)


def enc_bytes(b: bytes) -> bytes:
    return enc_long(len(b)) + b


_STR_CACHE: dict[str, bytes] = {}
_STR_CACHE_MAX = 8_192  # distinct strings kept encoded (ids, providers, models repeat constantly)


def enc_str(s: str) -> bytes:
    out = _STR_CACHE.get(s)
    if out is None:
        b = s.encode("utf-8")
        out = enc_long(len(b)) + b
        if len(_STR_CACHE) < _STR_CACHE_MAX and len(b) <= 256:
            _STR_CACHE[s] = out
    return out


def _dec_long(buf: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    z = 0
    while True:
        if pos >= len(buf):
            raise RejectError(RejectCode.TRUNCATED, "record ends inside a number", at_byte=pos)
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise RejectError(RejectCode.BAD_SCHEMA, "varint longer than 10 bytes", at_byte=pos)
    return (z >> 1) ^ -(z & 1), pos


def _dec_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _dec_long(buf, pos)
    if n < 0 or pos + n > len(buf):
        raise RejectError(RejectCode.TRUNCATED, "record ends inside a byte string", at_byte=pos, expected=n,
                          actual=len(buf) - pos)
    return buf[pos:pos + n], pos + n


# ---------------------------------------------------------------- compiled encoder (model objects -> Avro)
#
# fastavro needs a dict per record and resolves unions at run time (~15 us per event); the ledger
# encodes straight from the frozen model objects with functions generated once from the schema
# (~4x faster). fastavro stays the decoder and the cross-check: tests prove both give the same bytes.


_long_bytes = enc_long


class _Gen:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.env: dict[str, Any] = {"L": _long_bytes, "S": enc_str, "B": enc_bytes, "sorted": sorted}
        self.n = 0

    def var(self, value: Any) -> str:
        self.n += 1
        name = f"c{self.n}"
        self.env[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def value(self, t: Any, expr: str, indent: int) -> None:
        """Append code writing ``expr`` (of Avro type t) to list ``o``."""
        if isinstance(t, str):
            if t in ("long", "int"):
                self.emit(indent, f"o.append(L({expr}))")
            elif t == "string":
                self.emit(indent, f"o.append(S({expr}))")
            elif t == "bytes":
                self.emit(indent, f"o.append(B({expr}))")
            elif t == "boolean":
                self.emit(indent, f"o.append(b'\\x01' if {expr} else b'\\x00')")
            elif t == "null":
                pass
            else:
                self.value(self.named[t], expr, indent)
            return
        if isinstance(t, list):
            self.union(t, expr, indent)
            return
        kind = t["type"]
        if kind == "record":
            self.named[t["name"]] = t
            for f in t["fields"]:
                self.value(f["type"], f"{expr}.{f['name']}", indent)
        elif kind == "enum":
            self.named[t["name"]] = t
            idx = self.var({s: _long_bytes(i) for i, s in enumerate(t["symbols"])})
            self.emit(indent, f"o.append({idx}[{expr}])")
        elif kind == "map":
            # maps are held as key-sorted tuples of pairs in the model: canonical order for free
            v = f"m{len(self.lines)}"
            self.emit(indent, f"{v} = {expr}")
            self.emit(indent, f"if {v}:")
            self.emit(indent + 1, f"o.append(L(len({v})))")
            self.emit(indent + 1, f"for k_, v_ in {v}:")
            self.emit(indent + 2, "o.append(S(k_))")
            self.value(t["values"], "v_", indent + 2)
            self.emit(indent, "o.append(b'\\x00')")
        elif kind == "array":
            raise ValueError("arrays are not used in event content")
        else:
            self.value(kind, expr, indent)

    def union(self, branches: list[Any], expr: str, indent: int) -> None:
        if len(branches) == 2 and branches[0] == "null":
            self.emit(indent, f"if {expr} is None:")
            self.emit(indent + 1, "o.append(b'\\x00')")
            self.emit(indent, "else:")
            self.emit(indent + 1, "o.append(b'\\x02')")
            self.value(branches[1], expr, indent + 1)
            return
        # the body union: choose the branch by the model class's Avro record name
        first = True
        for i, b in enumerate(branches):
            name = b["name"] if isinstance(b, dict) else b
            cls = self.var(BY_AVRO[name])
            self.emit(indent, f"{'if' if first else 'elif'} type({expr}) is {cls}:")
            self.emit(indent + 1, f"o.append({self.var(_long_bytes(i))})")
            self.value(b, expr, indent + 1)
            first = False
        self.emit(indent, "else:")
        self.emit(indent + 1, f"raise TypeError('not an event body: %r' % ({expr},))")


def _compile(fields_: list[dict[str, Any]], args: list[str]) -> Any:
    g = _Gen()
    g.named = {}  # type: ignore[attr-defined]
    g.emit(0, f"def encode({', '.join(args)}):")
    g.emit(1, "o = []")
    for f, a in zip(fields_, args):
        g.value(f["type"], a, 1)
    g.emit(1, "return b''.join(o)")
    exec("\n".join(g.lines), g.env)  # noqa: S102 - code generated from our own schema files
    return g.env["encode"]


# ---------------------------------------------------------------- schemas used by the codec


@dataclass(frozen=True)
class _Schemas:
    event: schemas.Schema
    batch: schemas.Schema
    content: Any  # parsed schema of the Event's content suffix (event_time_us, context, body)
    interaction: Any  # parsed schema of the Interaction record alone (co-signature input)
    encode_content: Any  # compiled: (event_time_us, context, body) -> bytes
    encode_interaction: Any  # compiled: (interaction,) -> bytes


def _build() -> _Schemas:
    cur = schemas.current()
    event = cur["Event"]
    ev_fields = event.source["fields"]
    names = [f["name"] for f in ev_fields]
    assert names[:5] == ["event_id", "signer_id", "seq", "prev_hash", "idempotency_key"], names
    content = fastavro.parse_schema(
        {"type": "record", "name": "tokenledger.EventContent", "fields": ev_fields[5:]}, _force=True)
    body_union = next(f for f in ev_fields if f["name"] == "body")["type"]
    interaction = next(t for t in body_union if isinstance(t, dict) and t.get("name") == "tokenledger.Interaction")
    return _Schemas(event=event, batch=cur["SignedBatch"], content=content,
                    interaction=fastavro.parse_schema(interaction, _force=True),
                    encode_content=_compile(ev_fields[5:], ["event_time_us", "context", "body"]),
                    encode_interaction=_compile([{"name": "i", "type": interaction}], ["i"]))


_S: _Schemas | None = None


def _s() -> _Schemas:
    global _S
    if _S is None:
        _S = _build()
    return _S


# ---------------------------------------------------------------- model <-> Avro datum


def _to_datum(obj: Any) -> Any:
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


def context_from_datum(d: dict[str, Any]) -> Context:
    return Context(org=d["org"], project=d["project"], task=d["task"], stage=d["stage"], run=d["run"],
                   labels=d["labels"])


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
    # Parse the fixed header by hand: it tells where the content starts (the id is derived from it).
    event_id_b, p = _dec_bytes(raw, pos)
    signer_b, p = _dec_bytes(raw, p)
    _, p = _dec_long(raw, p)
    _, p = _dec_bytes(raw, p)
    branch, p = _dec_long(raw, p)
    if branch == 1:
        _, p = _dec_bytes(raw, p)
    elif branch != 0:
        raise RejectError(RejectCode.BAD_SCHEMA, "bad union index in idempotency_key", actual=branch)
    content_offset = p
    buf = io.BytesIO(raw)
    buf.seek(pos)
    reader = None if writer.fingerprint == _s().event.fingerprint else _s().event.parsed
    try:
        d = fastavro.schemaless_reader(buf, writer.parsed, reader, return_record_name=True,
                                       return_record_name_override=True)
    except RejectError:
        raise
    except (EOFError, StopIteration) as e:
        raise RejectError(RejectCode.TRUNCATED, f"event bytes end early: {e}") from None
    except Exception as e:  # fastavro raises many types on garbage: all mean "not an Event"
        raise RejectError(RejectCode.BAD_SCHEMA, f"event does not decode: {type(e).__name__}: {e}") from None
    if buf.tell() != len(raw):
        raise RejectError(RejectCode.BAD_SCHEMA, "trailing bytes after the event", expected=buf.tell(),
                          actual=len(raw))
    try:
        name, body_d = d["body"]
        event = Event(event_id=d["event_id"], signer_id=d["signer_id"], seq=d["seq"], prev_hash=d["prev_hash"],
                      idempotency_key=d["idempotency_key"], event_time_us=d["event_time_us"],
                      context=context_from_datum(d["context"]), body=body_from_datum(name, body_d))
    except ValidationError as e:
        raise RejectError(RejectCode.INVALID_FIELD, e.message, field=e.field, value=e.value,
                          event_id=d.get("event_id")) from None
    expected_id = derive_event_id(event.signer_id, event.idempotency_key, raw[content_offset:])
    if expected_id != event.event_id:
        raise RejectError(RejectCode.BAD_ID, "event id does not match its content", event_id=event.event_id,
                          expected=expected_id, actual=event.event_id)
    del event_id_b, signer_b
    return DecodedEvent(event=event, raw=raw, hash=event_hash(raw), content_offset=content_offset)


# ---------------------------------------------------------------- batches


def batch_signing_bytes(signer_id: str, key_id: str, event_hashes: list[bytes]) -> bytes:
    return DOMAIN_BATCH + enc_str(signer_id) + enc_str(key_id) + enc_long(len(event_hashes)) + b"".join(event_hashes)


def encode_batch(signer_id: str, key_id: str, events: list[bytes], signature: bytes) -> bytes:
    """Single-object bytes of a SignedBatch (Avro array = one block of n items, then 0)."""
    parts = [_s().batch.header, enc_str(signer_id), enc_str(key_id)]
    if events:
        parts.append(enc_long(len(events)))
        for e in events:
            parts.append(enc_long(len(e)))
            parts.append(e)
    parts.append(b"\x00")
    parts.append(enc_bytes(signature))
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    signer_id: str
    key_id: str
    events: list[bytes]
    signature: bytes


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
        d = fastavro.schemaless_reader(buf, writer.parsed, reader)
    except (EOFError, StopIteration) as e:
        raise RejectError(RejectCode.TRUNCATED, f"batch bytes end early: {e}") from None
    except Exception as e:
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
    return DecodedBatch(signer_id=d["signer_id"], key_id=d["key_id"], events=d["events"], signature=d["signature"])


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
