"""The Avro schemas of the ledger: loading, composition, fingerprints, released versions.

``schemas/`` (shipped as ``ledger/avsc``) holds one ``<name>.v<N>.avsc`` file per record type and
version. The *current* writer schema of a top-level type (``Event``, ``SignedBatch``) is composed
from the highest version of every file. Every composed schema that was ever written to a log is
kept, fully expanded, in ``schemas/released/<Type>-<fingerprint>.json``; readers resolve the writer
schema of a single-object encoded message by its fingerprint among the current and released
schemas, and read it into the current reader schema (Avro schema resolution).

Invariants:
- the current composed schema of each top-level type is released (``tests/test_schemas.py`` fails
  otherwise: run ``python scripts/release_schemas.py`` after an allowed change);
- every released schema and the current one can read each other's data (see schemas/README.md).

Pure apart from reading the packaged schema files once (cached).
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from ledger.errors import RejectCode, RejectError
from ledger.wire.avro_fast import AvroType

NAMESPACE = "tokenledger"
TOP_LEVEL = ("Event", "SignedBatch")
SINGLE_OBJECT_MARKER = b"\xc3\x01"  # Avro single-object encoding, spec 1.10+
SINGLE_OBJECT_HEADER_BYTES = 10  # marker (2) + CRC-64-AVRO fingerprint (8, little-endian)

_FILE_RE = re.compile(r"^(?P<stem>[a-z_]+)\.v(?P<version>\d+)\.avsc$")
_EMPTY = 0xC15D213AA4D7A795  # CRC-64-AVRO seed, from the Avro specification


@functools.cache
def _crc64_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


def crc64_avro(data: bytes) -> int:
    """The Rabin CRC-64 fingerprint the Avro specification defines for schemas."""
    table = _crc64_table()
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def fingerprint_of(canonical_form: str) -> bytes:
    """8-byte little-endian CRC-64-AVRO fingerprint of a parsing canonical form."""
    return crc64_avro(canonical_form.encode("utf-8")).to_bytes(8, "little")


@dataclass(frozen=True)
class Schema:
    """One composed, parsed top-level schema."""

    name: str  # "Event" or "SignedBatch"
    source: Any  # the schema JSON with every named type expanded inline
    parsed: Any  # fastavro parsed schema
    canonical: str  # Avro parsing canonical form
    fingerprint: bytes  # 8 bytes, little-endian
    header: bytes  # single-object header: marker + fingerprint

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


def _schema_dir() -> Any:
    return importlib.resources.files("ledger").joinpath("avsc")


@functools.cache
def source_files() -> dict[str, dict[int, dict[str, Any]]]:
    """{stem: {version: schema json}} for every ``.avsc`` file shipped."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for entry in _schema_dir().iterdir():
        m = _FILE_RE.match(entry.name)
        if not m:
            continue
        out.setdefault(m["stem"], {})[int(m["version"])] = json.loads(entry.read_text("utf-8"))
    return out


def latest_sources() -> dict[str, dict[str, Any]]:
    """{full type name: schema json} using the highest version of each file."""
    out = {}
    for versions in source_files().values():
        schema = versions[max(versions)]
        out[f"{schema.get('namespace', NAMESPACE)}.{schema['name']}"] = schema
    return out


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _qualify(name: str, namespace: str) -> str:
    return name if "." in name else f"{namespace}.{name}"


def _expand(node: Any, sources: dict[str, dict[str, Any]], defined: set[str], namespace: str) -> Any:
    """Inline every named type at its first use, with full names; later uses stay references."""
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = _qualify(node, namespace)
        if full in defined:
            return full
        if full not in sources:
            raise ValueError(f"schema references unknown type {full}")
        return _expand(sources[full], sources, defined, namespace)
    if isinstance(node, list):
        return [_expand(t, sources, defined, namespace) for t in node]
    if not isinstance(node, dict):
        raise ValueError(f"not a schema: {node!r}")
    kind = node.get("type")
    if kind in ("record", "enum", "fixed"):
        ns = node.get("namespace", namespace)
        full = _qualify(node["name"], ns)
        defined.add(full)
        out = {k: v for k, v in node.items() if k not in ("namespace", "fields")}
        out["name"] = full
        if kind == "record":
            out["fields"] = [{**f, "type": _expand(f["type"], sources, defined, ns)} for f in node["fields"]]
        return out
    if kind == "array":
        return {**node, "items": _expand(node["items"], sources, defined, namespace)}
    if kind == "map":
        return {**node, "values": _expand(node["values"], sources, defined, namespace)}
    return {**node, "type": _expand(kind, sources, defined, namespace)}


def compose(sources: dict[str, dict[str, Any]]) -> dict[str, Schema]:
    """Compose the top-level schemas from named record schemas (one per file), fully expanded."""
    return {name: _make(name, _expand(f"{NAMESPACE}.{name}", sources, set(), NAMESPACE)) for name in TOP_LEVEL}


def _make(name: str, schema_json: Any) -> Schema:
    parsed = fastavro.parse_schema(schema_json, _force=True)
    canonical = to_parsing_canonical_form(parsed)
    fp = fingerprint_of(canonical)
    return Schema(name=name, source=schema_json, parsed=parsed, canonical=canonical, fingerprint=fp,
                  header=SINGLE_OBJECT_MARKER + fp)


@functools.cache
def current() -> dict[str, Schema]:
    """The current writer (and reader) schema of each top-level type."""
    return compose(latest_sources())


@functools.cache
def released() -> dict[bytes, Schema]:
    """Every released writer schema by fingerprint, plus the current ones."""
    out: dict[bytes, Schema] = {}
    folder = _schema_dir().joinpath("released")
    for entry in folder.iterdir():
        if not entry.name.endswith(".json"):
            continue
        name = entry.name.split("-", 1)[0]
        s = _make(name, json.loads(entry.read_text("utf-8")))
        out[s.fingerprint] = s
    for s in current().values():
        out.setdefault(s.fingerprint, s)
    return out


def writer_schema(data: bytes, *, expected: str) -> tuple[Schema, int]:
    """Find the writer schema of a single-object encoded message.

    Returns (schema, offset of the Avro body). Raises RejectError (TRUNCATED, BAD_SCHEMA,
    UNKNOWN_SCHEMA) with the evidence when the header is wrong.
    """
    if len(data) < SINGLE_OBJECT_HEADER_BYTES:
        raise RejectError(RejectCode.TRUNCATED, f"{len(data)} bytes is shorter than a single-object header",
                          expected=SINGLE_OBJECT_HEADER_BYTES, actual=len(data))
    if data[:2] != SINGLE_OBJECT_MARKER:
        raise RejectError(RejectCode.BAD_SCHEMA, "not Avro single-object encoding",
                          expected=SINGLE_OBJECT_MARKER.hex(), actual=data[:2].hex())
    fp = bytes(data[2:10])
    schema = released().get(fp)
    if schema is None or schema.name != expected:
        raise RejectError(RejectCode.UNKNOWN_SCHEMA, f"no known {expected} schema has this fingerprint",
                          fingerprint=fp.hex(), expected=expected)
    return schema, SINGLE_OBJECT_HEADER_BYTES


# ---------------------------------------------------------------- evolution rules (schemas/README.md)


def sample_data(schema: Any, count: int) -> list[Any]:
    """``count`` deterministic datums of a schema; datum i takes union branch i (mod branches) and enum
    symbol i, so a few dozen samples visit every event kind and every symbol."""
    named: dict[str, Any] = {}

    def gen(t: Any, i: int) -> Any:
        if isinstance(t, str):
            if t in named:
                return gen(named[t], i)
            return {"null": None, "boolean": bool(i % 2), "int": i % 1000, "long": 1_000_000_000 + i,
                    "float": float(i), "double": float(i), "bytes": bytes([i % 256]) * 32,
                    "string": f"s{i}"}[t]
        if isinstance(t, list):
            branch = t[i % len(t)]
            value = gen(branch, i // len(t) + i)
            name = branch if isinstance(branch, str) else branch.get("name")
            target = named.get(name, branch) if isinstance(branch, str) else branch
            if isinstance(target, dict) and target.get("type") == "record":
                return (target["name"], value)  # tuple notation: the branch is explicit
            return value
        kind = t["type"]
        if kind == "record":
            named[t["name"]] = t
            return {f["name"]: gen(f["type"], i + k) for k, f in enumerate(t["fields"])}
        if kind == "enum":
            named[t["name"]] = t
            return t["symbols"][i % len(t["symbols"])]
        if kind == "array":
            return [gen(t["items"], i + k) for k in range(i % 3)]
        if kind == "map":
            return {f"k{k}": gen(t["values"], i + k) for k in range(i % 3)}
        if kind == "fixed":
            named[t["name"]] = t
            return bytes(t["size"])
        return gen(kind, i)

    return [gen(schema, i) for i in range(count)]


def can_read(writer: Schema, reader: Schema, samples: int = 48) -> list[str]:
    """Problems found when ``reader`` reads data written with ``writer`` (empty list = compatible)."""
    problems = []
    known = set(_records(reader.source))
    for i, datum in enumerate(sample_data(writer.source, samples)):
        if not _record_names(datum) <= known:
            continue  # a kind this reader predates: it must reject it (UNKNOWN_KIND), as designed
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, writer.parsed, datum)
            buf.seek(0)
            fastavro.schemaless_reader(buf, writer.parsed, reader.parsed)
        except Exception as e:  # noqa: BLE001 - any failure is a compatibility problem to report, not to raise
            problems.append(f"sample {i}: {type(e).__name__}: {e}")
    return problems


def evolution_problems(old: Any, new: Any) -> list[str]:
    """Static rules between two versions of a record: no field removed, none retyped, added ones have defaults."""
    problems: list[str] = []
    old_records = _records(old)
    new_records = _records(new)
    for name, o in old_records.items():
        n = new_records.get(name)
        if n is None:
            continue  # a record may leave a union only through a new top-level type; caught by can_read
        of = {f["name"]: f for f in o["fields"]}
        nf = {f["name"]: f for f in n["fields"]}
        for fname in of:
            if fname not in nf:
                problems.append(f"{name}.{fname} was removed")
            elif _type_name(of[fname]["type"]) != _type_name(nf[fname]["type"]) and not _union_grew(
                    of[fname]["type"], nf[fname]["type"]):
                problems.append(f"{name}.{fname} changed type from {_type_name(of[fname]['type'])} to "
                                f"{_type_name(nf[fname]['type'])}")
        for fname, f in nf.items():
            if fname not in of and "default" not in f:
                problems.append(f"{name}.{fname} was added without a default")
    return problems


def _union_grew(old: Any, new: Any) -> bool:
    """A union may gain branches at its end (new event kinds); the old ones keep their places."""
    if not (isinstance(old, list) and isinstance(new, list)) or len(new) <= len(old):
        return False
    return [_type_name(t) for t in old] == [_type_name(t) for t in new[: len(old)]]


def _record_names(datum: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(datum, tuple) and len(datum) == 2 and isinstance(datum[0], str):
        out.add(datum[0])
        out |= _record_names(datum[1])
    elif isinstance(datum, dict):
        for v in datum.values():
            out |= _record_names(v)
    elif isinstance(datum, list):
        for v in datum:
            out |= _record_names(v)
    return out


def _records(schema: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(t: Any) -> None:
        if isinstance(t, list):
            for x in t:
                walk(x)
        elif isinstance(t, dict):
            if t.get("type") == "record":
                out[t["name"]] = t
                for f in t["fields"]:
                    walk(f["type"])
            elif t.get("type") == "array":
                walk(t["items"])
            elif t.get("type") == "map":
                walk(t["values"])

    walk(schema)
    return out


def _type_name(t: AvroType) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, list):
        return "[" + ",".join(_type_name(x) for x in t) + "]"
    if t.get("type") in ("record", "enum", "fixed"):
        return t["name"]
    return t["type"]


def released_file_name(schema: Schema) -> str:
    return f"{schema.name}-{schema.fingerprint_hex}.json"
