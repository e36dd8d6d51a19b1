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

from ledger import limits
from ledger.errors import RejectCode, RejectError, ValidationError
from ledger.wire import schemas
from ledger.wire.events import BY_AVRO, Body, Context, Event, Interaction

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
            elif t != "null":  # null encodes to nothing
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


# ---------------------------------------------------------------- compiled decoder (Avro -> model objects)
#
# The mirror of the encoder: functions generated once from the current schema read the bytes
# straight into the (validating) model classes. Used when a message's writer schema is the current
# one; older writer schemas go through fastavro's schema resolution instead. Every read is bounds
# checked: a short buffer raises IndexError / _Short, which decode_event reports as TRUNCATED.


class _Short(Exception):
    """A length prefix points past the end of the buffer (reported as TRUNCATED)."""


def _rl(b: bytes, p: int) -> tuple[int, int]:
    x = b[p]
    if x < 0x80:
        return (x >> 1) ^ -(x & 1), p + 1
    z = x & 0x7F
    shift = 7
    p += 1
    while True:
        x = b[p]
        p += 1
        z |= (x & 0x7F) << shift
        if x < 0x80:
            return (z >> 1) ^ -(z & 1), p
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _rb(b: bytes, p: int) -> tuple[bytes, int]:
    n, p = _rl(b, p)
    e = p + n
    if n < 0 or e > len(b):
        raise _Short()
    return b[p:e], e


def _rs(b: bytes, p: int) -> tuple[str, int]:
    n, p = _rl(b, p)
    e = p + n
    if n < 0 or e > len(b):
        raise _Short()
    return b[p:e].decode("utf-8"), e


def _rbool(b: bytes, p: int) -> tuple[bool, int]:
    x = b[p]
    if x > 1:
        raise ValueError(f"boolean byte {x}")
    return x == 1, p + 1


def _rmap(b: bytes, p: int, value: Any) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    while True:
        n, p = _rl(b, p)
        if n == 0:
            return out, p
        if n < 0:
            n = -n
            _, p = _rl(b, p)  # block size in bytes: not needed
        if n > limits.MAX_LABELS:
            raise ValueError(f"map block of {n} entries")
        for _ in range(n):
            k, p = _rs(b, p)
            out[k], p = value(b, p)


class _DGen:
    """Generates one flat decoding function: primitive reads are inlined (a one-byte varint, the
    common case, costs no call), records become constructor calls of the model classes."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {"RL": _rl, "RMAP": _rmap, "RS": _rs, "Short": _Short, "ValueError": ValueError}
        self.lines: list[str] = []
        self.named: dict[str, Any] = {}
        self.n = 0

    def var(self, value: Any) -> str:
        self.n += 1
        self.env[f"k{self.n}"] = value
        return f"k{self.n}"

    def tmp(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def emit(self, ind: int, line: str) -> None:
        self.lines.append("    " * ind + line)

    def long(self, ind: int, out: str) -> None:
        # zig-zag varint, inline: no call per number (timestamps and token counts are multi-byte)
        self.emit(ind, "x = b[p]")
        self.emit(ind, "p += 1")
        self.emit(ind, "if x >= 128:")
        self.emit(ind + 1, "z = x & 127")
        self.emit(ind + 1, "s = 7")
        self.emit(ind + 1, "while True:")
        self.emit(ind + 2, "x = b[p]")
        self.emit(ind + 2, "p += 1")
        self.emit(ind + 2, "z |= (x & 127) << s")
        self.emit(ind + 2, "if x < 128:")
        self.emit(ind + 3, "break")
        self.emit(ind + 2, "s += 7")
        self.emit(ind + 2, "if s > 63:")
        self.emit(ind + 3, "raise ValueError('varint longer than 10 bytes')")
        self.emit(ind + 1, "x = z")
        self.emit(ind, f"{out} = (x >> 1) ^ -(x & 1)")

    def blob(self, ind: int, out: str, text: bool) -> None:
        self.long(ind, "n")
        self.emit(ind, "e = p + n")
        self.emit(ind, "if n < 0 or e > L:")
        self.emit(ind + 1, "raise Short()")
        self.emit(ind, f"{out} = b[p:e]{'.decode()' if text else ''}")
        self.emit(ind, "p = e")

    def value(self, t: Any, ind: int, out: str) -> None:
        """Emit code that reads type t into variable ``out``."""
        if isinstance(t, str):
            if t in ("long", "int"):
                self.long(ind, out)
            elif t == "string":
                self.blob(ind, out, True)
            elif t == "bytes":
                self.blob(ind, out, False)
            elif t == "boolean":
                self.emit(ind, "x = b[p]")
                self.emit(ind, "if x > 1:")
                self.emit(ind + 1, "raise ValueError('boolean byte %d' % x)")
                self.emit(ind, f"{out} = x == 1")
                self.emit(ind, "p += 1")
            elif t == "null":
                self.emit(ind, f"{out} = None")
            else:
                self.value(self.named[t], ind, out)
            return
        if isinstance(t, list):
            self.long(ind, "u")
            for i, branch in enumerate(t):
                self.emit(ind, f"{'if' if i == 0 else 'elif'} u == {i}:")
                self.value(branch, ind + 1, out)
            self.emit(ind, "else:")
            self.emit(ind + 1, "raise ValueError('union index %d' % u)")
            return
        kind = t["type"]
        if kind == "record":
            self.named[t["name"]] = t
            cls = BY_AVRO.get(t["name"]) or _NESTED_CLASSES.get(t["name"])
            names = [(f["name"], self.tmp()) for f in t["fields"]]
            cached = t["name"] in _CACHED_RECORDS
            if cached:
                start = self.tmp()
                self.emit(ind, f"{start} = p")
            for (fname, var), f in zip(names, t["fields"]):
                self.value(f["type"], ind, var)
            build = f"{self.var(cls)}(" + ", ".join(f"{fn}={v}" for fn, v in names) + ")"
            if cached:
                # contexts repeat across a run's events: reuse the validated, immutable object
                cache = self.var({})
                key = self.tmp()
                self.emit(ind, f"{key} = b[{start}:p]")
                self.emit(ind, f"{out} = {cache}.get({key})")
                self.emit(ind, f"if {out} is None:")
                self.emit(ind + 1, f"{out} = {build}")
                self.emit(ind + 1, f"if len({cache}) < {_RECORD_CACHE_MAX}:")
                self.emit(ind + 2, f"{cache}[{key}] = {out}")
            else:
                self.emit(ind, f"{out} = {build}")
        elif kind == "enum":
            self.named[t["name"]] = t
            syms = self.var(tuple(t["symbols"]))
            self.long(ind, "u")
            self.emit(ind, f"if not 0 <= u < {len(t['symbols'])}:")
            self.emit(ind + 1, "raise ValueError('enum index %d' % u)")
            self.emit(ind, f"{out} = {syms}[u]")
        elif kind == "map":
            reader = {"string": "RS", "long": "RL"}.get(t["values"]) if isinstance(t["values"], str) else None
            if reader is None:
                raise ValueError(f"maps of {t['values']} are not used in events")
            self.emit(ind, f"{out}, p = RMAP(b, p, {reader})")
        else:
            self.value(kind, ind, out)


_NESTED_CLASSES: dict[str, type] = {}
_CACHED_RECORDS = frozenset({"tokenledger.Context"})
_RECORD_CACHE_MAX = 16_384  # distinct decoded contexts kept per process


def _compile_decoder(fields_: list[dict[str, Any]], *, mark_at: int | None = None) -> Any:
    """decode(b, p) -> ((field values...[, offset where field ``mark_at`` starts]), end position)."""
    from ledger.wire.events import Context, Cosignature, Flow, LlmUsage

    _NESTED_CLASSES.update({"tokenledger.Context": Context, "tokenledger.LlmUsage": LlmUsage,
                            "tokenledger.Flow": Flow, "tokenledger.Cosignature": Cosignature})
    g = _DGen()
    outs = [(f["name"], g.tmp()) for f in fields_]
    body: list[str] = []
    g.lines = body
    g.emit(0, "def decode(b, p):")
    g.emit(1, "L = len(b)")
    for i, (f, (_, var)) in enumerate(zip(fields_, outs)):
        if i == mark_at:
            g.emit(1, "mark = p")
        g.value(f["type"], 1, var)
    g.emit(1, "return (" + ", ".join(v for _, v in outs) + (", mark" if mark_at is not None else "") + ",), p")
    exec("\n".join(body), g.env)  # noqa: S102 - code generated from our own schema files
    return g.env["decode"]


# ---------------------------------------------------------------- schemas used by the codec


@dataclass(frozen=True)
class _Schemas:
    event: schemas.Schema
    batch: schemas.Schema
    content: Any  # parsed schema of the Event's content suffix (event_time_us, context, body)
    interaction: Any  # parsed schema of the Interaction record alone (co-signature input)
    encode_content: Any  # compiled: (event_time_us, context, body) -> bytes
    encode_interaction: Any  # compiled: (interaction,) -> bytes
    decode_event: Any  # compiled: (bytes, pos) -> ((8 Event fields, content offset), pos)


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
                    encode_interaction=_compile([{"name": "i", "type": interaction}], ["i"]),
                    decode_event=_compile_decoder(ev_fields, mark_at=5))


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
    s = _s()
    try:
        if writer.fingerprint == s.event.fingerprint:
            (event_id, signer_id, seq, prev_hash, idem, event_time_us, context, body, content_offset), p = (
                s.decode_event(raw, pos))
            if p != len(raw):
                raise RejectError(RejectCode.BAD_SCHEMA, "trailing bytes after the event", expected=p,
                                  actual=len(raw))
        else:
            # the fixed header, by hand: it also tells where the content (the id's material) starts
            event_id, p = _rs(raw, pos)
            signer_id, p = _rs(raw, p)
            seq, p = _rl(raw, p)
            prev_hash, p = _rb(raw, p)
            branch, p = _rl(raw, p)
            if branch == 1:
                idem, p = _rs(raw, p)
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
    except (IndexError, _Short, EOFError, StopIteration):
        raise RejectError(RejectCode.TRUNCATED, "event bytes end early", actual=len(raw)) from None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        raise RejectError(RejectCode.BAD_SCHEMA, f"event does not decode: {type(e).__name__}: {e}") from None
    expected_id = derive_event_id(signer_id, idem, raw[content_offset:])
    if expected_id != event_id:
        raise RejectError(RejectCode.BAD_ID, "event id does not match its content", event_id=event_id,
                          expected=expected_id, actual=event_id)
    return DecodedEvent(event=event, raw=raw, hash=event_hash(raw), content_offset=content_offset)


def _decode_resolving(raw: bytes, pos: int, writer: schemas.Schema) -> tuple[int, Context, Body]:
    """Decode an event written with an older schema into the current one (Avro schema resolution)."""
    buf = io.BytesIO(raw)
    buf.seek(pos)
    try:
        d = fastavro.schemaless_reader(buf, writer.parsed, _s().event.parsed, return_record_name=True,
                                       return_record_name_override=True)
    except (EOFError, StopIteration):
        raise
    except Exception as e:  # fastavro raises many types on garbage: all mean "not an Event"
        raise ValueError(f"{type(e).__name__}: {e}") from None
    if buf.tell() != len(raw):
        raise RejectError(RejectCode.BAD_SCHEMA, "trailing bytes after the event", expected=buf.tell(),
                          actual=len(raw))
    name, body_d = d["body"]
    return d["event_time_us"], context_from_datum(d["context"]), body_from_datum(name, body_d)


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
