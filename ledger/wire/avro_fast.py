"""Fast Avro binary encoding and decoding: varint primitives and functions generated once per schema.

fastavro needs a dict per record and resolves unions at run time (~15 us per event); the ledger
encodes straight from its frozen model objects with functions generated once from the schema
(~4x faster), and decodes straight into the (validating) model classes the same way. fastavro stays
the reference: tests prove both give the same bytes, and schema resolution of older writer schemas
goes through fastavro.

What the generators support is what the ledger's schemas use: primitives, records, enums,
``["null", T]`` unions, unions of records (the branch chosen by the object's class), maps of
strings or longs held in the model as key-sorted tuples of pairs, and arrays of strings or longs held in the
model as tuples (written as one block, read into a tuple). Anything else raises ValueError
when the function is generated, never when it runs.

Generated code: the functions are built as Python source and ``exec``-uted once per process. The
source is made only from our own packaged schema files (field names, record names, symbols) and
fixed templates in this module, never from data read off the log; every value it refers to is
passed in a namespace, not spelled into the source. That is what keeps the ``exec`` safe.

Pure: no I/O, no clock, no environment. Knows nothing of the ledger's envelope (see codec.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Required, TypeAlias, TypedDict, cast

from ledger import limits

# ---------------------------------------------------------------- schema JSON, as the generators read it


class AvroField(TypedDict):
    name: str
    type: AvroType


class AvroComplex(TypedDict, total=False):
    """A schema object. Which keys are present depends on ``type`` (Avro specification, "Complex Types")."""

    type: Required[str]
    name: str  # record, enum, fixed: the full name
    fields: list[AvroField]  # record
    symbols: list[str]  # enum
    values: AvroType  # map
    items: AvroType  # array


AvroType: TypeAlias = "str | list[AvroType] | AvroComplex"  # a name (primitive or named type), union, object

EncodeFn: TypeAlias = Callable[..., bytes]  # positional arguments as named when compiled
DecodeFn: TypeAlias = Callable[[bytes, int], tuple[tuple[Any, ...], int]]  # (buf, pos) -> (values, end)

# ---------------------------------------------------------------- encoding primitives


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
_STR_CACHE_MAX_BYTES = 256  # longest string kept (UTF-8 bytes): the cache holds at most ~2 MiB


def enc_str(s: str) -> bytes:
    out = _STR_CACHE.get(s)
    if out is None:
        b = s.encode("utf-8")
        out = enc_long(len(b)) + b
        if len(_STR_CACHE) < _STR_CACHE_MAX and len(b) <= _STR_CACHE_MAX_BYTES:
            _STR_CACHE[s] = out
    return out


# ---------------------------------------------------------------- decoding primitives
#
# Every read is bounds checked: reading past the end raises IndexError (a varint or a fixed byte)
# or ShortRead (a length prefix pointing past the end); callers report both as truncation.


class ShortRead(Exception):
    """A length prefix points past the end of the buffer."""


def read_long(b: bytes, p: int) -> tuple[int, int]:
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


def read_bytes(b: bytes, p: int) -> tuple[bytes, int]:
    n, p = read_long(b, p)
    e = p + n
    if n < 0 or e > len(b):
        raise ShortRead()
    return b[p:e], e


def read_string(b: bytes, p: int) -> tuple[str, int]:
    n, p = read_long(b, p)
    e = p + n
    if n < 0 or e > len(b):
        raise ShortRead()
    return b[p:e].decode("utf-8"), e


def read_map(b: bytes, p: int, value: Callable[[bytes, int], tuple[Any, int]]) -> tuple[dict[str, Any], int]:
    """An Avro map (blocks of entries, a negative count carrying a byte size, then 0) into a dict."""
    out: dict[str, Any] = {}
    while True:
        n, p = read_long(b, p)
        if n == 0:
            return out, p
        if n < 0:
            n = -n
            _, p = read_long(b, p)  # block size in bytes: not needed
        if n > limits.MAX_LABELS:
            raise ValueError(f"map block of {n} entries")
        for _ in range(n):
            k, p = read_string(b, p)
            out[k], p = value(b, p)


def read_array(b: bytes, p: int, item: Callable[[bytes, int], tuple[Any, int]]) -> tuple[tuple[Any, ...], int]:
    """An Avro array (blocks of items, a negative count carrying a byte size, then 0) into a tuple; at most
    ``limits.MAX_ARRAY_ITEMS`` items in all (arrays in events are short lists of names)."""
    out: list[Any] = []
    while True:
        n, p = read_long(b, p)
        if n == 0:
            return tuple(out), p
        if n < 0:
            n = -n
            _, p = read_long(b, p)  # block size in bytes: not needed
        if len(out) + n > limits.MAX_ARRAY_ITEMS:
            raise ValueError(f"array of more than {limits.MAX_ARRAY_ITEMS} items")
        for _ in range(n):
            x, p = item(b, p)
            out.append(x)


# ---------------------------------------------------------------- code generation, shared


class _Source:
    """Lines of one generated function and the namespace its names refer to."""

    def __init__(self, env: dict[str, object], prefix: str, classes: Mapping[str, type]) -> None:
        self.lines: list[str] = []
        self.env = env
        self.classes = classes  # model class of each record, by full name
        self.named: dict[str, AvroType] = {}  # named types seen so far: later uses are bare names
        self.n = 0
        self._prefix = prefix

    def var(self, value: object) -> str:
        """A fresh name in the namespace bound to ``value``."""
        self.n += 1
        name = f"{self._prefix}{self.n}"
        self.env[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def _named_type(self, name: str) -> AvroType:
        t = self.named.get(name)
        if t is None:  # e.g. "fixed", "array" in the decoder, or a name used before its definition
            raise ValueError(f"type {name} is not supported, or not defined before its use")
        return t

    def _class_of(self, record_name: str) -> type:
        cls = self.classes.get(record_name)
        if cls is None:
            raise ValueError(f"no model class for record {record_name}")
        return cls

    def define(self, fn_name: str) -> object:
        # safe: the source comes from our own schema files and this module's templates (module docstring)
        exec("\n".join(self.lines), self.env)  # noqa: S102
        return self.env[fn_name]


def _record_name(t: AvroType) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, dict) and "name" in t:
        return t["name"]
    raise ValueError(f"union branch {t!r} is neither a name nor a named type")


# ---------------------------------------------------------------- compiled encoder (model objects -> Avro)


class _Encoder(_Source):
    """Generates code appending the encoding of one expression to the list ``o``."""

    def __init__(self, classes: Mapping[str, type]) -> None:
        super().__init__({"L": enc_long, "S": enc_str, "B": enc_bytes, "sorted": sorted}, "c", classes)

    def value(self, t: AvroType, expr: str, indent: int) -> None:
        """Append code writing ``expr`` (of Avro type t) to list ``o``."""
        if isinstance(t, str):
            self.primitive(t, expr, indent)
        elif isinstance(t, list):
            self.union(t, expr, indent)
        elif t["type"] == "record":
            self.record(t, expr, indent)
        elif t["type"] == "enum":
            self.enum(t, expr, indent)
        elif t["type"] == "map":
            self.map(t, expr, indent)
        elif t["type"] == "array":
            self.array(t, expr, indent)
        else:
            self.value(t["type"], expr, indent)

    def primitive(self, t: str, expr: str, indent: int) -> None:
        if t in ("long", "int"):
            self.emit(indent, f"o.append(L({expr}))")
        elif t == "string":
            self.emit(indent, f"o.append(S({expr}))")
        elif t == "bytes":
            self.emit(indent, f"o.append(B({expr}))")
        elif t == "boolean":
            self.emit(indent, f"o.append(b'\\x01' if {expr} else b'\\x00')")
        elif t != "null":  # null encodes to nothing; any other name is a named type defined earlier
            self.value(self._named_type(t), expr, indent)

    def record(self, t: AvroComplex, expr: str, indent: int) -> None:
        # Avro writes a record as its fields in order: the model object has them as attributes
        self.named[t["name"]] = t
        for f in t["fields"]:
            self.value(f["type"], f"{expr}.{f['name']}", indent)

    def enum(self, t: AvroComplex, expr: str, indent: int) -> None:
        self.named[t["name"]] = t
        idx = self.var({s: enc_long(i) for i, s in enumerate(t["symbols"])})
        self.emit(indent, f"o.append({idx}[{expr}])")

    def map(self, t: AvroComplex, expr: str, indent: int) -> None:
        # maps are held as key-sorted tuples of pairs in the model: canonical order for free
        v = f"m{len(self.lines)}"
        self.emit(indent, f"{v} = {expr}")
        self.emit(indent, f"if {v}:")
        self.emit(indent + 1, f"o.append(L(len({v})))")
        self.emit(indent + 1, f"for k_, v_ in {v}:")
        self.emit(indent + 2, "o.append(S(k_))")
        self.value(t["values"], "v_", indent + 2)
        self.emit(indent, "o.append(b'\\x00')")

    def array(self, t: AvroComplex, expr: str, indent: int) -> None:
        # one block of every item, then the end marker (an empty array is the marker alone); the items the
        # decoder reads (strings, longs) are the ones written
        if t["items"] not in ("string", "long"):
            raise ValueError(f"arrays of {t['items']} are not used in events")
        v = f"a{len(self.lines)}"
        x = f"x{len(self.lines)}"
        self.emit(indent, f"{v} = {expr}")
        self.emit(indent, f"if {v}:")
        self.emit(indent + 1, f"o.append(L(len({v})))")
        self.emit(indent + 1, f"for {x} in {v}:")
        self.value(t["items"], x, indent + 2)
        self.emit(indent, "o.append(b'\\x00')")

    def union(self, branches: list[AvroType], expr: str, indent: int) -> None:
        if len(branches) == 2 and branches[0] == "null":
            self.emit(indent, f"if {expr} is None:")
            self.emit(indent + 1, "o.append(b'\\x00')")
            self.emit(indent, "else:")
            self.emit(indent + 1, "o.append(b'\\x02')")
            self.value(branches[1], expr, indent + 1)
            return
        # a union of records: choose the branch by the object's class, found by the record's name
        for i, b in enumerate(branches):
            cls = self.var(self._class_of(_record_name(b)))
            self.emit(indent, f"{'if' if i == 0 else 'elif'} type({expr}) is {cls}:")
            self.emit(indent + 1, f"o.append({self.var(enc_long(i))})")
            self.value(b, expr, indent + 1)
        self.emit(indent, "else:")
        self.emit(indent + 1, f"raise TypeError('not an event body: %r' % ({expr},))")


def compile_encoder(fields: list[AvroField], args: list[str], classes: Mapping[str, type]) -> EncodeFn:
    """``encode(*args) -> bytes``: the Avro encoding of ``fields`` in order, argument i holding field i.

    ``classes`` maps the full name of every record that appears as a branch of a union of records
    to the model class whose instances take that branch."""
    g = _Encoder(classes)
    g.emit(0, f"def encode({', '.join(args)}):")
    g.emit(1, "o = []")
    for f, a in zip(fields, args, strict=True):
        g.value(f["type"], a, 1)
    g.emit(1, "return b''.join(o)")
    return cast(EncodeFn, g.define("encode"))  # cast: exec just defined it from the source above


# ---------------------------------------------------------------- compiled decoder (Avro -> model objects)

_RECORD_CACHE_MAX = 16_384  # distinct decoded records kept per cached record type, per process


class _Decoder(_Source):
    """Generates one flat decoding function: primitive reads are inlined (a one-byte varint, the
    common case, costs no call), records become constructor calls of the model classes."""

    def __init__(self, classes: Mapping[str, type], cached_records: frozenset[str]) -> None:
        super().__init__({"RL": read_long, "RMAP": read_map, "RARR": read_array, "RS": read_string, "Short": ShortRead,
                          "ValueError": ValueError}, "k", classes)
        self.cached_records = cached_records

    def tmp(self) -> str:
        """A fresh local variable name (shares the counter with ``var``, so names never clash)."""
        self.n += 1
        return f"v{self.n}"

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

    def value(self, t: AvroType, ind: int, out: str) -> None:
        """Emit code that reads type t into variable ``out``."""
        if isinstance(t, str):
            self.primitive(t, ind, out)
        elif isinstance(t, list):
            self.union(t, ind, out)
        elif t["type"] == "record":
            self.record(t, ind, out)
        elif t["type"] == "enum":
            self.enum(t, ind, out)
        elif t["type"] == "map":
            self.map(t, ind, out)
        elif t["type"] == "array":
            self.array(t, ind, out)
        else:
            self.value(t["type"], ind, out)

    def primitive(self, t: str, ind: int, out: str) -> None:
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
        else:  # a named type defined earlier
            self.value(self._named_type(t), ind, out)

    def union(self, branches: list[AvroType], ind: int, out: str) -> None:
        self.long(ind, "u")
        for i, branch in enumerate(branches):
            self.emit(ind, f"{'if' if i == 0 else 'elif'} u == {i}:")
            self.value(branch, ind + 1, out)
        self.emit(ind, "else:")
        self.emit(ind + 1, "raise ValueError('union index %d' % u)")

    def record(self, t: AvroComplex, ind: int, out: str) -> None:
        name = t["name"]
        self.named[name] = t
        cls = self._class_of(name)
        names = [(f["name"], self.tmp()) for f in t["fields"]]
        cached = name in self.cached_records
        start = ""
        if cached:
            start = self.tmp()
            self.emit(ind, f"{start} = p")
        for (_, var), f in zip(names, t["fields"], strict=True):
            self.value(f["type"], ind, var)
        build = f"{self.var(cls)}(" + ", ".join(f"{fn}={v}" for fn, v in names) + ")"
        if not cached:
            self.emit(ind, f"{out} = {build}")
            return
        # records of a cached type repeat (a run's contexts): reuse the validated, immutable object
        cache = self.var({})
        key = self.tmp()
        self.emit(ind, f"{key} = b[{start}:p]")
        self.emit(ind, f"{out} = {cache}.get({key})")
        self.emit(ind, f"if {out} is None:")
        self.emit(ind + 1, f"{out} = {build}")
        self.emit(ind + 1, f"if len({cache}) < {_RECORD_CACHE_MAX}:")
        self.emit(ind + 2, f"{cache}[{key}] = {out}")

    def enum(self, t: AvroComplex, ind: int, out: str) -> None:
        self.named[t["name"]] = t
        syms = self.var(tuple(t["symbols"]))
        self.long(ind, "u")
        self.emit(ind, f"if not 0 <= u < {len(t['symbols'])}:")
        self.emit(ind + 1, "raise ValueError('enum index %d' % u)")
        self.emit(ind, f"{out} = {syms}[u]")

    def map(self, t: AvroComplex, ind: int, out: str) -> None:
        values = t["values"]
        reader = {"string": "RS", "long": "RL"}.get(values) if isinstance(values, str) else None
        if reader is None:
            raise ValueError(f"maps of {values} are not used in events")
        self.emit(ind, f"{out}, p = RMAP(b, p, {reader})")

    def array(self, t: AvroComplex, ind: int, out: str) -> None:
        items = t["items"]
        reader = {"string": "RS", "long": "RL"}.get(items) if isinstance(items, str) else None
        if reader is None:
            raise ValueError(f"arrays of {items} are not used in events")
        self.emit(ind, f"{out}, p = RARR(b, p, {reader})")


def compile_decoder(fields: list[AvroField], classes: Mapping[str, type], *,
                    cached_records: frozenset[str] = frozenset(), mark_at: int | None = None) -> DecodeFn:
    """``decode(b, p) -> ((field values...[, offset where field mark_at starts]), end position)``.

    ``classes`` maps the full name of every record to the model class it is built into (by keyword
    arguments named as the fields); decoded records of a type named in ``cached_records`` are reused
    when their bytes repeat, so those classes must be immutable."""
    g = _Decoder(classes, cached_records)
    outs = [g.tmp() for _ in fields]
    g.emit(0, "def decode(b, p):")
    g.emit(1, "L = len(b)")
    for i, (f, var) in enumerate(zip(fields, outs, strict=True)):
        if i == mark_at:
            g.emit(1, "mark = p")
        g.value(f["type"], 1, var)
    g.emit(1, "return (" + ", ".join(outs) + (", mark" if mark_at is not None else "") + ",), p")
    return cast(DecodeFn, g.define("decode"))  # cast: exec just defined it from the source above
