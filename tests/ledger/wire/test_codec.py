"""Codec: every event kind round-trips, encoding is canonical, ids and hashes are derived as documented,
and no byte string makes the decoder raise anything but a RejectError."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import limits
from ledger.errors import RejectCode, RejectError, ValidationError
from ledger.wire import codec
from ledger.wire.avro_fast import enc_long
from ledger.wire.events import (
    ALLOCATION_METHODS,
    BUDGET_KINDS,
    BUDGET_SCOPES,
    HARD_LIMIT_ACTIONS,
    ROLES,
    SETTLEMENT_TIERS,
    TRUST_DIMENSIONS,
    Action,
    AgentRegistered,
    Allocation,
    AllocationRule,
    BudgetAlert,
    BudgetPolicy,
    BudgetTransfer,
    Checkpoint,
    Compute,
    Context,
    Cosignature,
    Data,
    Event,
    Flow,
    Interaction,
    KeyRevoked,
    KeyRotated,
    LlmUsage,
    Outcome,
    PriceSet,
    Reservation,
    Settlement,
    SettlementRule,
    StateCheckpoint,
    Trust,
)

# ids hold no control (Cc) or invisible formatting characters (check_str's full-match rule for names)
INVISIBLE = "\u061c" + "".join(map(chr, [*range(0x200B, 0x2010), *range(0x2028, 0x202F), *range(0x2060, 0x206A)]))
ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Cc"),
                                     blacklist_characters=INVISIBLE),
              min_size=1, max_size=24)
opt_ids = st.none() | ids
tokens = st.integers(0, limits.MAX_TOKENS)
small = st.integers(0, 10**9)
labels = st.dictionaries(ids, st.text(max_size=16).filter(lambda s: "\x00" not in s), max_size=4)
bytes32 = st.binary(min_size=32, max_size=32)


@st.composite
def usages(draw):
    tin = draw(tokens)
    cr = draw(st.integers(0, tin))
    cw = draw(st.integers(0, tin - cr))
    tout = draw(tokens)
    return LlmUsage(draw(ids), draw(ids), tin, tout, cr, cw, draw(st.integers(0, tout)))


@st.composite
def flows(draw, output: bool = False):
    t = draw(tokens)
    return Flow(t, 0 if output else draw(st.integers(0, t)))


@st.composite
def interactions(draw):
    a, b = draw(ids), draw(ids)
    if a == b:
        b = a + "x"
    cos = draw(st.none() | st.builds(Cosignature, ids, st.binary(min_size=64, max_size=64)))
    return Interaction(draw(ids), a, b, draw(ids), draw(ids), draw(ids), draw(ids), draw(flows(True)), draw(flows()),
                       draw(flows(True)), draw(flows()), cos)


@st.composite
def budget_policies(draw):
    soft = draw(st.integers(0, 1000))
    return BudgetPolicy(draw(st.sampled_from(BUDGET_SCOPES)), draw(ids), draw(st.sampled_from(BUDGET_KINDS)),
                        draw(small), draw(small), soft, draw(st.integers(soft, 1000)), draw(st.booleans()),
                        draw(st.booleans()), draw(st.integers(0, 100)), draw(st.sampled_from(HARD_LIMIT_ACTIONS)),
                        draw(small), draw(st.integers(0, 1000)), draw(st.none() | st.integers(0, 1000)),
                        draw(st.integers(0, limits.MAX_EVENT_TIME_US)))


rates = st.integers(0, limits.MAX_RATE_MICROS_PER_MTOK)
bodies = st.one_of(
    st.builds(Action, ids, st.integers(0, limits.MAX_COUNT), opt_ids, st.none() | usages()),
    st.builds(Data, st.integers(0, limits.MAX_DATA_BYTES), st.integers(0, limits.MAX_DATA_BYTES), opt_ids, opt_ids,
              st.integers(0, limits.MAX_DURATION_US)),
    st.builds(Compute, ids, small, small, small, st.integers(1, 2**31 - 1)),
    st.builds(Trust, ids, st.sampled_from(TRUST_DIMENSIONS), st.integers(-limits.MAX_COUNT, limits.MAX_COUNT),
              st.none() | st.integers(0, limits.MAX_DURATION_US), opt_ids),
    interactions(),
    st.builds(AgentRegistered, ids, ids, bytes32, st.sampled_from(ROLES), st.integers(0, 1000), opt_ids, opt_ids,
              labels),
    st.builds(KeyRotated, ids, st.just("old"), st.just("new"), bytes32),
    st.builds(KeyRevoked, ids, ids, st.text(max_size=20).filter(lambda s: "\x00" not in s)),
    budget_policies(),
    st.builds(PriceSet, ids, ids, rates, rates, rates, rates, st.none() | rates, st.integers(0, limits.MAX_EVENT_TIME_US)),
    st.builds(AllocationRule, ids, st.sampled_from(ALLOCATION_METHODS), labels, opt_ids, opt_ids, st.booleans(),
              st.integers(0, limits.MAX_EVENT_TIME_US)),
    st.builds(SettlementRule, ids, st.sampled_from(SETTLEMENT_TIERS), st.sampled_from(ALLOCATION_METHODS),
              st.integers(1, limits.MAX_DURATION_US), st.integers(0, limits.MAX_MICROS), st.booleans(),
              st.integers(0, limits.MAX_EVENT_TIME_US)),
)
@st.composite
def allocations(draw):
    total = draw(st.integers(0, 10**12))
    req = draw(st.integers(0, total))
    flows = [draw(st.integers(0, 10**9)) for _ in range(4)]
    return Allocation(draw(ids), draw(ids), draw(ids), draw(ids), draw(ids), total, req, total - req,
                      draw(st.integers(0, 10**12)), draw(st.sampled_from(("requestor_to_responder",
                                                                           "responder_to_requestor", "none"))),
                      *flows, draw(labels))


@st.composite
def settlements(draw):
    start = draw(st.integers(0, limits.MAX_EVENT_TIME_US - 1))
    return Settlement(draw(ids), start, draw(st.integers(start, limits.MAX_EVENT_TIME_US)), draw(ids), draw(ids),
                      draw(st.integers(0, 10**12)), draw(ids), draw(ids), draw(st.sampled_from(("proposed", "settled"))),
                      draw(ids), draw(opt_ids), draw(labels))


@st.composite
def reservations(draw):
    action = draw(st.sampled_from(("reserve", "commit", "release")))
    exp = draw(st.integers(1, limits.MAX_EVENT_TIME_US)) if action == "reserve" else draw(
        st.integers(0, limits.MAX_EVENT_TIME_US))
    return Reservation(draw(ids), action, draw(st.sampled_from(BUDGET_SCOPES)), draw(ids),
                       draw(st.sampled_from(BUDGET_KINDS)), draw(st.integers(0, limits.MAX_MICROS)), exp)


bodies = st.one_of(
    bodies,
    st.builds(Checkpoint, ids, st.integers(0, 2**31 - 1), st.integers(0, 2**62), bytes32, st.integers(0, 2**62),
              st.integers(0, limits.MAX_EVENT_TIME_US)),
    st.builds(StateCheckpoint, ids, st.dictionaries(ids, st.integers(0, 2**62), max_size=4),
              st.text(alphabet="0123456789abcdef", min_size=1, max_size=64), st.just("{}")),
    allocations(), settlements(), reservations(),
    st.builds(BudgetAlert, st.sampled_from(BUDGET_SCOPES), ids, st.sampled_from(BUDGET_KINDS), ids,
              st.integers(0, limits.MAX_EVENT_TIME_US), small, small, small, st.just("")),
    st.builds(BudgetTransfer, st.sampled_from(BUDGET_KINDS), st.just("donor"), st.just("needy"),
              st.integers(1, 10**9), st.integers(0, limits.MAX_EVENT_TIME_US), st.just("")),
    st.builds(Outcome, ids, st.none() | st.integers(0, 1000), st.none() | st.integers(0, 1000), st.booleans()),
)
contexts = st.builds(Context, opt_ids, opt_ids, opt_ids, opt_ids, opt_ids, labels)
times = st.integers(limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)


def make_event(signer: str, seq: int, prev: bytes, idem: str | None, t: int, ctx: Context, body) -> tuple[Event, bytes]:
    content = codec.encode_content(t, ctx, body)
    eid = codec.derive_event_id(signer, idem, content)
    raw = codec.assemble_event(event_id=eid, signer_id=signer, seq=seq, prev_hash=prev, idempotency_key=idem,
                               content=content)
    return Event(eid, signer, seq, prev, idem, t, ctx, body), raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signer=ids, seq=st.integers(1, 2**63 - 1), prev=bytes32, idem=opt_ids, t=times, ctx=contexts, body=bodies)
def test_every_kind_round_trips_and_encoding_is_canonical(signer, seq, prev, idem, t, ctx, body):
    event, raw = make_event(signer, seq, prev, idem, t, ctx, body)
    decoded = codec.decode_event(raw)
    assert decoded.event == event
    assert decoded.hash == codec.event_hash(raw)
    # canonical: the hand-built header + compiled encoder equal fastavro's encoding of the whole record
    assert codec.encode_full_event_with_fastavro(event) == raw
    # and re-encoding the decoded event gives the same bytes
    assert codec.encode_event(decoded.event) == raw


@given(items=st.dictionaries(ids, st.text(max_size=8).filter(lambda s: "\x00" not in s), min_size=2, max_size=6))
@settings(max_examples=100, deadline=None)
def test_map_order_does_not_change_bytes(items):
    shuffled = list(items.items())
    random.Random(1).shuffle(shuffled)
    a = codec.encode_content(limits.MIN_EVENT_TIME_US, Context(labels=items), Action("x"))
    b = codec.encode_content(limits.MIN_EVENT_TIME_US, Context(labels=dict(shuffled)), Action("x"))
    assert a == b


def test_event_id_depends_on_idempotency_key_not_time_when_given():
    t = limits.MIN_EVENT_TIME_US
    c1 = codec.encode_content(t, Context(), Action("x"))
    c2 = codec.encode_content(t + 1, Context(), Action("x"))
    assert codec.derive_event_id("a", "retry-1", c1) == codec.derive_event_id("a", "retry-1", c2)
    assert codec.derive_event_id("a", None, c1) != codec.derive_event_id("a", None, c2)
    assert codec.derive_event_id("a", "k", c1) != codec.derive_event_id("b", "k", c1)  # scoped by signer
    assert len(codec.derive_event_id("a", None, c1)) == limits.EVENT_ID_HEX_CHARS


def test_domain_separation_prefixes_are_distinct():
    prefixes = {codec.DOMAIN_EVENT, codec.DOMAIN_EVENT_ID, codec.DOMAIN_BATCH, codec.DOMAIN_BATCH_V2,
                codec.DOMAIN_COSIGN}
    assert len(prefixes) == 5
    assert all(p.endswith(b"\x00") for p in prefixes)
    # an event hash (a v2 batch tree's leaf) is over bytes that never start like an interior node's (0x01)
    assert not codec.DOMAIN_EVENT.startswith(b"\x01")


def test_signed_batch_encoding_matches_fastavro():
    import io

    import fastavro

    from ledger.wire import schemas

    events = [b"\x01" * 5, b"", b"\xff" * 300]
    mine = codec.encode_batch("alice", "ed25519:00", events, b"s" * 64, codec.BATCH_V2)
    buf = io.BytesIO()
    s = schemas.current()["SignedBatch"]
    fastavro.schemaless_writer(buf, s.parsed, {"signer_id": "alice", "key_id": "ed25519:00", "events": events,
                                               "signature": b"s" * 64, "version": 2})
    assert mine == s.header + buf.getvalue()
    # v1 envelopes keep the first schema, byte for byte what writers wrote before v2
    v1 = schemas.released()[codec.BATCH_V1_FINGERPRINT]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, v1.parsed, {"signer_id": "alice", "key_id": "ed25519:00", "events": events,
                                                "signature": b"s" * 64})
    assert codec.encode_batch("alice", "ed25519:00", events, b"s" * 64) == v1.header + buf.getvalue()
    assert codec.decode_batch(v1.header + buf.getvalue()).version == codec.BATCH_V1
    assert codec.decode_batch(mine).version == codec.BATCH_V2


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 100, 257])
def test_batch_root_is_the_rfc9162_root_of_the_event_hashes(n):
    from ledger.integrity.merkle import MerkleTree, verify_inclusion

    hashes = [codec.event_hash(bytes([i % 256, i // 256])) for i in range(n)]
    tree = MerkleTree.from_leaf_hashes(hashes)
    root = codec.batch_root(hashes)
    assert root == tree.root()
    for i in {0, n // 2, n - 1}:
        verify_inclusion(hashes[i], i, n, tree.inclusion_proof(i, n), root)
    msg = codec.signing_bytes(codec.BATCH_V2, "alice", "ed25519:00", hashes)
    assert msg == codec.DOMAIN_BATCH_V2 + b"\x0aalice\x14ed25519:00" + enc_long(n) + root
    assert msg != codec.signing_bytes(codec.BATCH_V1, "alice", "ed25519:00", hashes)


def test_batch_envelope_version_is_checked_and_signed():
    """An unknown version is refused; rewriting the version of a signed batch breaks its signature."""
    from ledger.integrity.keyring import KeyRing
    from ledger.integrity.keys import SigningKey
    from ledger.integrity.verify import Verifier
    from ledger.testing.homes import build_record

    with pytest.raises(ValidationError):
        codec.encode_batch("alice", "ed25519:00", [b"x"], b"s" * 64, 3)
    garbage = codec.encode_batch("alice", "ed25519:00", [b"x"], b"s" * 64, codec.BATCH_V2)[:-1] + enc_long(3)
    with pytest.raises(RejectError) as e:
        codec.decode_batch(garbage)
    assert e.value.code is RejectCode.BAD_SCHEMA and e.value.evidence["actual"] == 3
    op = SigningKey.generate("operator")
    for version in codec.BATCH_VERSIONS:
        record, _ = build_record(op, [Action("x"), Action("y"), Action("z")], version=version)
        b = codec.decode_batch(record)
        assert b.version == version
        assert len(Verifier(KeyRing({"operator": op.public.raw})).check_record(record).events) == 3
        # the same events and signature under the other envelope: the signature no longer verifies
        other = codec.BATCH_V2 if version == codec.BATCH_V1 else codec.BATCH_V1
        swapped = codec.encode_batch(b.signer_id, b.key_id, b.events, b.signature, other)
        with pytest.raises(RejectError) as e:
            Verifier(KeyRing({"operator": op.public.raw})).check_record(swapped)
        assert e.value.code is RejectCode.BAD_SIGNATURE


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_garbage_never_crashes_the_decoders(data):
    for fn in (codec.decode_event, codec.decode_batch):
        try:
            fn(data)
        except RejectError as e:
            assert isinstance(e.code, RejectCode)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_bit_flips_in_an_event_are_rejected_or_change_its_identity(body, pos, bit):
    """A flipped bit either fails to decode, or changes what the event is (so its hash changes and
    the batch signature, which covers the hash, no longer verifies)."""
    _, raw = make_event("alice", 1, bytes(32), None, limits.MIN_EVENT_TIME_US, Context(), body)
    pos %= len(raw)
    bad = bytearray(raw)
    bad[pos] ^= 1 << bit
    try:
        d = codec.decode_event(bytes(bad))
    except RejectError:
        return
    assert d.hash != codec.event_hash(raw)


def test_truncated_and_trailing_bytes_are_rejected():
    _, raw = make_event("alice", 1, bytes(32), None, limits.MIN_EVENT_TIME_US, Context(), Action("x"))
    for cut in range(len(raw)):
        with pytest.raises(RejectError):
            codec.decode_event(raw[:cut])
    with pytest.raises(RejectError) as e:
        codec.decode_event(raw + b"\x00")
    assert e.value.code is RejectCode.BAD_SCHEMA


def test_unknown_fingerprint_is_named():
    _, raw = make_event("alice", 1, bytes(32), None, limits.MIN_EVENT_TIME_US, Context(), Action("x"))
    bad = raw[:2] + b"\x00" * 8 + raw[10:]
    with pytest.raises(RejectError) as e:
        codec.decode_event(bad)
    assert e.value.code is RejectCode.UNKNOWN_SCHEMA
    assert e.value.evidence["fingerprint"] == "00" * 8


def test_tampered_id_is_bad_id():
    content = codec.encode_content(limits.MIN_EVENT_TIME_US, Context(), Action("x"))
    forged = codec.assemble_event(event_id="0" * 32, signer_id="alice", seq=1, prev_hash=bytes(32),
                                  idempotency_key=None, content=content)
    with pytest.raises(RejectError) as e:
        codec.decode_event(forged)
    assert e.value.code is RejectCode.BAD_ID
    assert e.value.evidence["expected"] == codec.derive_event_id("alice", None, content)


def test_invalid_field_on_the_log_is_invalid_field():
    """Bytes that decode as Avro but break a domain rule (cached > tokens) are INVALID_FIELD, not a crash."""
    good = Interaction("i", "a", "b", "p", "m", "p", "m", Flow(10), Flow(10, 5), Flow(3), Flow(3))
    content = bytearray(codec.encode_content(limits.MIN_EVENT_TIME_US, Context(), good))
    # request_input is (tokens=10 -> 0x14, cached=5 -> 0x0a): make cached 11 (0x16) > tokens
    idx = content.index(bytes([0x14, 0x0A]))
    content[idx + 1] = 0x16
    eid = codec.derive_event_id("a", None, bytes(content))
    raw = codec.assemble_event(event_id=eid, signer_id="a", seq=1, prev_hash=bytes(32), idempotency_key=None,
                               content=bytes(content))
    with pytest.raises(RejectError) as e:
        codec.decode_event(raw)
    assert e.value.code is RejectCode.INVALID_FIELD
    assert e.value.evidence["field"] == "flow.cached_tokens"
