"""The flat event record: one accepted event as one Avro record, for tools of the Kafka ecosystem.

The record (``tokenledger.EventFlat``, ``schemas/event_flat.v<N>.avsc``, the highest version is the writer schema)
has one field per public column of the journal's ``events`` view, in the view's order and with its meaning
(``processors/VIEWS.md``): VARCHAR -> string, BIGINT -> long, INTEGER -> int, BOOLEAN -> boolean, and ``event_time``
-> long with logicalType ``timestamp-micros`` (microseconds since the Unix epoch, UTC: the same number as
``event_time_us``). Columns the view always fills (ids, signer, agent, key, seq, kind, times, where on the log) are
plain types; every other column is ``["null", T]`` with default null (null where the event's kind has no such field).
Token counts are copied from the event as signed: ``input_tokens`` includes cache reads and writes,
``output_tokens`` includes reasoning, exactly as the view says.

It is derived output, not a signed event: nothing in it is signed, and a consumer that needs proof reads the signed
topics or asks ``tokenledger prove``. The bytes of one Avro body are framed in one of two ways:

- Confluent wire format: byte ``0x00``, the schema id a Schema Registry assigned (4 bytes, big-endian, a positive
  signed 32-bit integer), the Avro binary body.
- Avro single-object encoding (no registry): ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the
  schema's parsing canonical form, the Avro binary body (as the signed topics use it).

Pure: encoding and decoding only; the registry is reached by ``ledger.sdk.schema_registry``.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from ledger.errors import ValidationError
from ledger.wire import avro_fast, schemas

FLAT_RECORD = "EventFlat"  # record name in schemas/, and the prefix of its released files
FLAT_FILE_STEM = "event_flat"  # schemas/event_flat.v<N>.avsc
CONFLUENT_MAGIC = 0  # first byte of the Confluent wire format
CONFLUENT_HEADER_BYTES = 5  # magic (1) + schema id (4, big-endian)
SCHEMA_ID_MAX = 2**31 - 1  # Schema Registry ids are positive signed 32-bit integers


@dataclass(frozen=True)
class FlatRecord:
    """A decoded flat record: how it was framed, which schema wrote it, and its fields."""

    framing: str  # "confluent" | "single-object"
    schema_ref: str  # the registry id (decimal) or the fingerprint (16 hex chars)
    fields: dict[str, Any]


def _make(schema_json: Any) -> schemas.Schema:
    parsed = fastavro.parse_schema(schema_json, _force=True)
    canonical = to_parsing_canonical_form(parsed)
    fp = schemas.fingerprint_of(canonical)
    return schemas.Schema(name=FLAT_RECORD, source=schema_json, parsed=parsed, canonical=canonical, fingerprint=fp,
                          header=schemas.SINGLE_OBJECT_MARKER + fp)


@functools.cache
def current() -> schemas.Schema:
    """The writer schema: the highest version of ``schemas/event_flat.v<N>.avsc``."""
    versions = schemas.source_files()[FLAT_FILE_STEM]
    return _make(versions[max(versions)])


@functools.cache
def released() -> dict[bytes, schemas.Schema]:
    """Every released flat schema (``schemas/released/EventFlat-<fingerprint>.json``) and the current one, by
    fingerprint: what a single-object record may have been written with."""
    out = {fp: _make(s.source) for fp, s in schemas.released().items() if s.name == FLAT_RECORD}
    cur = current()
    out.setdefault(cur.fingerprint, cur)
    return out


def schema_text() -> str:
    """The writer schema as the JSON text a Schema Registry is given (its parsing canonical form keeps no docs, so
    the full source is sent: readers see the field docs)."""
    return json.dumps(current().source, separators=(",", ":"), sort_keys=True)


@functools.cache
def field_names() -> tuple[str, ...]:
    return tuple(f["name"] for f in current().source["fields"])


@functools.cache
def _values_encoder() -> Callable[..., bytes]:
    fields = current().source["fields"]
    return avro_fast.compile_encoder(fields, [f"v{i}" for i in range(len(fields))], {})


def encode_values(values: Sequence[Any]) -> bytes:
    """The Avro binary body of one record from its field values in schema order (``field_names()``; ``event_time``
    as microseconds), by the generated encoder of ``ledger.wire.avro_fast`` (fastavro, ``encode_body``, is the
    reference: tests prove both give the same bytes). ValidationError when a value does not fit its field."""
    if len(values) != len(field_names()):
        raise ValidationError("events.flat", len(values), f"an {FLAT_RECORD} record has {len(field_names())} fields")
    try:
        return _values_encoder()(*values)
    except (ValueError, TypeError, AttributeError, OverflowError) as e:
        raise ValidationError("events.flat", values[0], f"not an {FLAT_RECORD} record: {e}") from None


def encode_body(row: Mapping[str, Any]) -> bytes:
    """The Avro binary body of one row (one value per field; a missing nullable field is null)."""
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, current().parsed, row)
    except (ValueError, TypeError) as e:  # fastavro names the field and value it could not write
        raise ValidationError("events.flat", row.get("event_id"), f"not an {FLAT_RECORD} record: {e}") from None
    return buf.getvalue()


def frame_confluent(schema_id: int, body: bytes) -> bytes:
    """Confluent wire format: 0x00, the schema id (4 bytes big-endian), the body."""
    check_schema_id("schema_id", schema_id)
    return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big") + body


def frame_single_object(body: bytes) -> bytes:
    """Avro single-object encoding with the current schema: C3 01, its fingerprint, the body."""
    return current().header + body


def check_schema_id(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= SCHEMA_ID_MAX:
        raise ValidationError(field, value, f"a schema id is a whole number from 1 to {SCHEMA_ID_MAX}")
    return value


def decode(value: bytes, schema_for_id: Callable[[int], schemas.Schema] | None = None) -> FlatRecord:
    """One flat record's fields, read into the current schema. ``schema_for_id`` resolves a Confluent schema id to
    its writer schema (a registry lookup); without it only single-object records can be read.

    Refuses (ValidationError naming ``value`` and the bytes' start) what is neither framing, a header cut short,
    an unknown fingerprint, and a body that does not decode to exactly its bytes."""
    data = bytes(value)
    if data[:2] == schemas.SINGLE_OBJECT_MARKER:
        if len(data) < schemas.SINGLE_OBJECT_HEADER_BYTES:
            raise ValidationError("value", data.hex(), "shorter than an Avro single-object header")
        fp = data[2:schemas.SINGLE_OBJECT_HEADER_BYTES]
        writer = released().get(fp)
        if writer is None:
            raise ValidationError("value", data[:schemas.SINGLE_OBJECT_HEADER_BYTES].hex(),
                                  f"no released {FLAT_RECORD} schema has this fingerprint")
        return FlatRecord("single-object", fp.hex(), _read(data, schemas.SINGLE_OBJECT_HEADER_BYTES, writer))
    if data[:1] == bytes([CONFLUENT_MAGIC]):
        if len(data) < CONFLUENT_HEADER_BYTES:
            raise ValidationError("value", data.hex(), "shorter than a Confluent wire-format header")
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_BYTES], "big")
        if schema_for_id is None:
            raise ValidationError("value", data[:CONFLUENT_HEADER_BYTES].hex(),
                                  "a Confluent wire-format record needs a schema registry to be read")
        writer = schema_for_id(check_schema_id("schema_id", schema_id))
        return FlatRecord("confluent", str(schema_id), _read(data, CONFLUENT_HEADER_BYTES, writer))
    raise ValidationError("value", data[:schemas.SINGLE_OBJECT_HEADER_BYTES].hex(),
                          "neither the Confluent wire format (00) nor Avro single-object encoding (c301)")


def schema_from_text(text: str) -> schemas.Schema:
    """A writer schema from a registry's JSON text (ValidationError when it is not an Avro record schema)."""
    try:
        return _make(json.loads(text))
    except (ValueError, TypeError, KeyError) as e:
        raise ValidationError("schema", text[:200], f"not an Avro schema: {e}") from None


def _read(data: bytes, start: int, writer: schemas.Schema) -> dict[str, Any]:
    buf = io.BytesIO(data)
    buf.seek(start)
    try:
        out = fastavro.schemaless_reader(buf, writer.parsed, current().parsed)
    except (ValueError, TypeError, EOFError, IndexError, UnicodeDecodeError) as e:
        raise ValidationError("value", data[:start].hex(), f"the Avro body does not decode: {e}") from None
    if buf.tell() != len(data):
        raise ValidationError("value", data[:start].hex(),
                              f"{len(data) - buf.tell()} bytes follow the record's Avro body")
    if not isinstance(out, dict):
        raise ValidationError("value", data[:start].hex(), f"decodes to {type(out).__name__}, not a record")
    return out
