"""The generated Avro encoder and decoder, on a small schema of their own: every construct they support
gives fastavro's bytes and reads them back, anything unsupported is refused when the function is
generated, and malformed bytes raise only the errors the codec turns into reject codes."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import limits
from ledger.wire import avro_fast
from ledger.wire.avro_fast import ShortRead


@dataclass(frozen=True)
class Circle:
    r: int


@dataclass(frozen=True)
class Square:
    side: int
    color: str
    note: str | None


@dataclass(frozen=True)
class Tag:
    key: str


COLOR = {"type": "enum", "name": "t.Color", "symbols": ["RED", "GREEN", "BLUE"]}
CIRCLE = {"type": "record", "name": "t.Circle", "fields": [{"name": "r", "type": "long"}]}
SQUARE = {"type": "record", "name": "t.Square", "fields": [
    {"name": "side", "type": "int"}, {"name": "color", "type": "t.Color"}, {"name": "note", "type": ["null", "string"]}]}
TAG = {"type": "record", "name": "t.Tag", "fields": [{"name": "key", "type": "string"}]}
FIELDS = [
    {"name": "n", "type": "long"},
    {"name": "flag", "type": "boolean"},
    {"name": "blob", "type": "bytes"},
    {"name": "color", "type": COLOR},
    {"name": "tags", "type": {"type": "map", "values": "string"}},
    {"name": "counts", "type": {"type": "map", "values": "long"}},
    {"name": "maybe", "type": ["null", "string"]},
    {"name": "wrapped", "type": {"type": "long"}},
    {"name": "tag", "type": TAG},
    {"name": "shape", "type": [CIRCLE, SQUARE]},
    {"name": "nothing", "type": "null"},
]
ARGS = [f["name"] for f in FIELDS]
CLASSES = {"t.Circle": Circle, "t.Square": Square, "t.Tag": Tag}
PARSED = fastavro.parse_schema({"type": "record", "name": "t.Top", "fields": FIELDS}, _force=True)

text = st.text(max_size=12)
longs = st.integers(-(2**63), 2**63 - 1)
colors = st.sampled_from(COLOR["symbols"])
shapes = st.builds(Circle, longs) | st.builds(Square, st.integers(-(2**31), 2**31 - 1), colors, st.none() | text)


def fastavro_bytes(values: dict) -> bytes:
    shape = values["shape"]
    datum = {**values, "tags": dict(values["tags"]), "counts": dict(values["counts"]), "tag": {"key": values["tag"].key},
             "shape": (("t.Circle", {"r": shape.r}) if isinstance(shape, Circle) else
                       ("t.Square", {"side": shape.side, "color": shape.color, "note": shape.note}))}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, datum)
    return buf.getvalue()


def sorted_pairs(d: dict) -> tuple:
    return tuple(sorted(d.items()))


values_st = st.fixed_dictionaries({
    "n": longs, "flag": st.booleans(), "blob": st.binary(max_size=40), "color": colors,
    "tags": st.dictionaries(text, text, max_size=5).map(sorted_pairs),
    "counts": st.dictionaries(text, longs, max_size=5).map(sorted_pairs),
    "maybe": st.none() | text, "wrapped": longs, "tag": st.builds(Tag, text), "shape": shapes, "nothing": st.none()})


@pytest.fixture(scope="module")
def encode():
    return avro_fast.compile_encoder(FIELDS, ARGS, CLASSES)


@pytest.fixture(scope="module")
def decode():
    return avro_fast.compile_decoder(FIELDS, CLASSES, cached_records=frozenset({"t.Tag"}), mark_at=3)


@settings(max_examples=300, deadline=None)
@given(values=values_st)
def test_generated_functions_match_fastavro_and_round_trip(encode, decode, values):
    raw = encode(*(values[a] for a in ARGS))
    assert raw == fastavro_bytes(values)
    out, end = decode(raw, 0)
    assert end == len(raw)
    *decoded, mark = out
    expected = [dict(values[a]) if a in ("tags", "counts") else values[a] for a in ARGS]
    assert decoded == expected
    # mark_at=3: the offset where field 3 (color) starts is n, flag and blob encoded
    assert mark == len(avro_fast.enc_long(values["n"])) + 1 + len(avro_fast.enc_bytes(values["blob"]))


def test_decoder_starts_at_the_given_offset(decode, encode):
    values = {"n": 5, "flag": True, "blob": b"x", "color": "BLUE", "tags": (), "counts": (("a", -1),),
              "maybe": "m", "wrapped": 7, "tag": Tag("k"), "shape": Circle(3), "nothing": None}
    raw = encode(*(values[a] for a in ARGS))
    out, end = decode(b"\xc3\x01junk" + raw, 6)
    assert end == 6 + len(raw)
    assert out[0] == 5 and out[9] == Circle(3)


def test_records_of_a_cached_type_are_reused_and_others_are_not(encode, decode):
    values = {"n": 1, "flag": False, "blob": b"", "color": "RED", "tags": (), "counts": (), "maybe": None,
              "wrapped": 0, "tag": Tag("same"), "shape": Circle(1), "nothing": None}
    raw = encode(*(values[a] for a in ARGS))
    a, _ = decode(raw, 0)
    b, _ = decode(raw, 0)
    assert a[8] is b[8]  # t.Tag is cached
    assert a[9] == b[9] and a[9] is not b[9]  # t.Circle is not


@pytest.mark.parametrize("n", [0, 1, 63, 64, 8191, 16_383, 16_384, 2**31, 2**62, -1, -64, -(2**63)])
def test_long_encoding_matches_avro(n):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    assert avro_fast.enc_long(n) == buf.getvalue()
    assert avro_fast.read_long(buf.getvalue(), 0) == (n, len(buf.getvalue()))


@pytest.mark.parametrize("s", ["", "a", "é€😀", "x" * 300, "y" * 5000])
def test_string_encoding_matches_avro_cached_or_not(s):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "string", s)
    assert avro_fast.enc_str(s) == buf.getvalue()
    assert avro_fast.enc_str(s) == buf.getvalue()  # the second call may come from the cache
    assert avro_fast.read_string(buf.getvalue(), 0) == (s, len(buf.getvalue()))


def test_maps_in_blocks_with_byte_sizes_are_read():
    """The Avro spec lets a writer give a block a negative count followed by its size in bytes."""
    entries = avro_fast.enc_str("a") + avro_fast.enc_long(1) + avro_fast.enc_str("b") + avro_fast.enc_long(-2)
    raw = avro_fast.enc_long(-2) + avro_fast.enc_long(len(entries)) + entries + avro_fast.enc_long(1) + \
        avro_fast.enc_str("c") + avro_fast.enc_long(3) + b"\x00"
    assert fastavro.schemaless_reader(io.BytesIO(raw), {"type": "map", "values": "long"}) == {"a": 1, "b": -2, "c": 3}
    assert avro_fast.read_map(raw, 0, avro_fast.read_long) == ({"a": 1, "b": -2, "c": 3}, len(raw))


ARRAY_FIELDS = [{"name": "names", "type": {"type": "array", "items": "string"}},
                {"name": "numbers", "type": {"type": "array", "items": "long"}}]
ARRAY_PARSED = fastavro.parse_schema({"type": "record", "name": "t.Lists", "fields": ARRAY_FIELDS}, _force=True)


@settings(max_examples=200, deadline=None)
@given(names=st.lists(text, max_size=limits.MAX_ARRAY_ITEMS).map(tuple),
       numbers=st.lists(longs, max_size=limits.MAX_ARRAY_ITEMS).map(tuple))
def test_arrays_match_fastavro_and_read_back_as_tuples(names, numbers):
    raw = avro_fast.compile_encoder(ARRAY_FIELDS, ["names", "numbers"], {})(names, numbers)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, ARRAY_PARSED, {"names": list(names), "numbers": list(numbers)})
    assert raw == buf.getvalue()
    assert avro_fast.compile_decoder(ARRAY_FIELDS, {})(raw, 0) == ((names, numbers), len(raw))


def test_array_blocks_with_byte_sizes_are_read_and_long_arrays_refused():
    """Two blocks, the first with a negative count and its byte size (the Avro spec allows both)."""
    items = avro_fast.enc_str("a") + avro_fast.enc_str("b")
    raw = avro_fast.enc_long(-2) + avro_fast.enc_long(len(items)) + items + avro_fast.enc_long(1) + \
        avro_fast.enc_str("c") + b"\x00"
    assert fastavro.schemaless_reader(io.BytesIO(raw), {"type": "array", "items": "string"}) == ["a", "b", "c"]
    assert avro_fast.read_array(raw, 0, avro_fast.read_string) == (("a", "b", "c"), len(raw))
    n = limits.MAX_ARRAY_ITEMS
    too_long = avro_fast.enc_long(n) + avro_fast.enc_str("x") * n + avro_fast.enc_long(1) + avro_fast.enc_str("y")
    with pytest.raises(ValueError, match=f"array of more than {n} items"):
        avro_fast.read_array(too_long + b"\x00", 0, avro_fast.read_string)


def test_map_blocks_over_the_label_limit_are_refused():
    raw = avro_fast.enc_long(limits.MAX_LABELS + 1) + (avro_fast.enc_str("k") + avro_fast.enc_str("v")) * 2
    with pytest.raises(ValueError, match=f"map block of {limits.MAX_LABELS + 1} entries"):
        avro_fast.read_map(raw, 0, avro_fast.read_string)


@settings(max_examples=300, deadline=None)
@given(values=values_st, data=st.data())
def test_malformed_bytes_raise_only_the_errors_the_codec_maps(encode, decode, values, data):
    """Truncated input raises IndexError or ShortRead (TRUNCATED); corrupted input may also raise
    ValueError or UnicodeDecodeError (BAD_SCHEMA); never anything else."""
    raw = encode(*(values[a] for a in ARGS))
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises((IndexError, ShortRead)):
        decode(raw[:cut], 0)
    pos = data.draw(st.integers(0, len(raw) - 1))
    bad = bytearray(raw)
    bad[pos] ^= 1 << data.draw(st.integers(0, 7))
    with contextlib.suppress(IndexError, ShortRead, ValueError, UnicodeDecodeError):
        decode(bytes(bad), 0)


@pytest.mark.parametrize(("raw", "message"), [
    (b"\x02\x05", "boolean byte 5"),  # n=1, then a boolean byte that is neither 0 nor 1
    (b"\x02\x01\x00\x06", "enum index 3"),  # ..., blob=b"", color index 3 of 3 symbols
    (b"\xff" * 11, "varint longer than 10 bytes"),
])
def test_invalid_values_are_value_errors_naming_them(decode, raw, message):
    with pytest.raises(ValueError, match=message):
        decode(raw, 0)


def test_a_bad_union_index_is_a_value_error():
    dec = avro_fast.compile_decoder([{"name": "u", "type": ["null", "long"]}], {})
    assert dec(b"\x02\x08", 0) == ((4,), 2)
    with pytest.raises(ValueError, match="union index 2"):
        dec(b"\x04\x08", 0)


def test_the_encoder_refuses_an_object_of_no_branch(encode):
    values = {"n": 1, "flag": False, "blob": b"", "color": "RED", "tags": (), "counts": (), "maybe": None,
              "wrapped": 0, "tag": Tag("t"), "shape": Tag("not a shape"), "nothing": None}
    with pytest.raises(TypeError, match="not an event body"):
        encode(*(values[a] for a in ARGS))


@pytest.mark.parametrize(("fields", "message"), [
    ([{"name": "a", "type": {"type": "array", "items": "bytes"}}], "arrays of bytes are not used"),
    ([{"name": "s", "type": [CIRCLE, {"type": "record", "name": "t.Other", "fields": []}]}], "no model class for record t.Other"),
])
def test_the_encoder_generator_refuses_what_it_does_not_support(fields, message):
    with pytest.raises(ValueError, match=message):
        avro_fast.compile_encoder(fields, [f["name"] for f in fields], CLASSES)


@pytest.mark.parametrize(("fields", "message"), [
    ([{"name": "m", "type": {"type": "map", "values": "bytes"}}], "maps of bytes are not used"),
    ([{"name": "m", "type": {"type": "map", "values": TAG}}], "maps of .* are not used"),
    ([{"name": "r", "type": {"type": "record", "name": "t.Unknown", "fields": []}}], "no model class for record t.Unknown"),
    ([{"name": "a", "type": {"type": "array", "items": "bytes"}}], "arrays of bytes are not used"),
    ([{"name": "a", "type": {"type": "array", "items": TAG}}], "arrays of .* are not used"),
    ([{"name": "f", "type": {"type": "fixed", "name": "t.F", "size": 4}}], "type fixed is not supported"),
    ([{"name": "c", "type": "t.Color"}, {"name": "d", "type": COLOR}], "type t.Color is not supported, or not defined"),
])
def test_the_decoder_generator_refuses_what_it_does_not_support(fields, message):
    with pytest.raises(ValueError, match=message):
        avro_fast.compile_decoder(fields, CLASSES)
