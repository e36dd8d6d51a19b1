"""The batch gate over a real home and its SQLite log: a client signs its own batches (codec + SigningKey, as the
emitter builds them) and the gate admits exactly what readers accept.

Every refusal is checked twice: the code is the one readers use for that record, and the log (every topic) is
unchanged. Every admission is checked against the readers: ``audit`` over the log finds nothing to reject.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.signing import Client, ids_of

from ledger import limits
from ledger.errors import ChainForkError, LogError, RecordTooLargeError, RejectCode, RejectError
from ledger.integrity.chain import GENESIS, Head
from ledger.integrity.keys import SigningKey
from ledger.integrity.verify import audit
from ledger.log import Log, Position, read_all
from ledger.sdk.batch_gate import Admitted, BatchGate
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.sdk.registration import register_signer
from ledger.testing.homes import T0, grant, make_home, revoke
from ledger.units import US_PER_DAY, US_PER_S
from ledger.wire import codec
from ledger.wire.events import EMPTY_CONTEXT, Action, Checkpoint, Context, KeyRevoked, KeyRotated, LlmUsage


def now_us() -> int:
    return time.time_ns() // 1000


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path / "home", agents=("alice", "bob"))


@pytest.fixture
def log(home: Home) -> Iterator[Log]:
    lg = home.open_log()
    try:
        yield lg
    finally:
        lg.close()


@pytest.fixture
def gate(home: Home, log: Log) -> BatchGate:
    return BatchGate.for_home(home, log)


@pytest.fixture
def alice(home: Home) -> Client:
    return Client(home.load_key("alice"))


def ends(log: Log) -> dict[tuple[str, int], int]:
    return {(t, p): log.end_offset(t, p) for t in log.topics() for p in range(log.partitions(t))}


def refused(gate: BatchGate, log: Log, raw: bytes, code: RejectCode, *, at_us: int | None = None) -> RejectError:
    """Submit ``raw``: it must be refused with ``code`` and leave every topic of the log as it was."""
    before = ends(log)
    with pytest.raises(RejectError) as e:
        gate.submit(raw, now_us() if at_us is None else at_us)
    assert e.value.code is code, e.value
    assert e.value.evidence["appended"] is False and not e.value.positioned
    assert ends(log) == before
    return e.value


def audit_clean(home: Home, log: Log) -> int:
    """Readers find nothing to reject; returns how many events they accepted."""
    rep = audit(log, home.ledger_topics, home.anchors())
    assert rep.rejected == {}, rep.first_error
    return rep.accepted_events


def alice_records(home: Home, log: Log) -> list[bytes]:
    return [r.value for r in read_all(log, home.topic) if r.key == b"alice"]


# ------------------------------------------------------------------------------- admitted


def test_a_batch_that_extends_the_chain_is_appended_under_the_signer_key(home, log, gate, alice):
    registered = audit_clean(home, log)
    first = alice.batch(3)
    a = gate.submit(first, now_us())
    assert a == Admitted(home.topic, 0, 0, "alice", 1, 3, ids_of(first), duplicate=False)
    second = alice.batch(2, t=T0 + 2_000)
    b = gate.submit(second, now_us())
    assert (b.offset, b.first_seq, b.last_seq, b.duplicate) == (1, 4, 5, False) and b.event_ids == ids_of(second)
    recs = read_all(log, home.topic)
    assert [(r.key, r.value, r.offset) for r in recs] == [(b"alice", first, 0), (b"alice", second, 1)]
    assert audit_clean(home, log) == registered + 5
    assert a.to_dict() == {"topic": home.topic, "partition": 0, "offset": 0, "signer_id": "alice", "first_seq": 1,
                           "last_seq": 3, "event_ids": list(ids_of(first)), "duplicate": False}


def test_the_gate_continues_a_chain_another_writer_appended(home, log, gate, alice):
    gate.submit(alice.batch(1), now_us())  # the gate now holds alice's chain
    # alice's own emitter (another writer on the same log) appends two events after it
    with Emitter(log, alice.key, topic=home.topic, background_flush=False) as em:
        em.action("emitted-1", event_time_us=T0 + 5_000)
        em.action("emitted-2", event_time_us=T0 + 5_001)
        head = em.head
    assert head.seq == 3
    stale = alice.batch(1, t=T0 + 6_000, advance=False)  # signed on the head the client knew: seq 2
    e = refused(gate, log, stale, RejectCode.FORK)
    assert (e.evidence["expected"], e.evidence["actual"]) == (4, 2)
    alice.head = head
    a = gate.submit(alice.batch(1, t=T0 + 6_000), now_us())
    assert (a.first_seq, a.offset, a.duplicate) == (4, 2, False)
    audit_clean(home, log)


def test_a_new_gate_finds_the_head_on_the_log(home, log, gate, alice):
    gate.submit(alice.batch(4), now_us())
    gate.submit(alice.batch(2, t=T0 + 2_000), now_us())
    other = BatchGate.for_home(home, log)  # another service process: nothing cached, the chain is read once
    a = other.submit(alice.batch(1, t=T0 + 3_000), now_us())
    assert (a.first_seq, a.last_seq, a.offset) == (7, 7, 2)
    audit_clean(home, log)


def test_the_signer_cache_is_bounded_and_a_forgotten_chain_is_read_again(home, log):
    gate = BatchGate.for_home(home, log, cached_signers=1)
    alice, bob = Client(home.load_key("alice")), Client(home.load_key("bob"))
    gate.submit(alice.batch(2), now_us())
    assert gate.cached() == ["alice"]
    gate.submit(bob.batch(1), now_us())
    assert gate.cached() == ["bob"]
    a = gate.submit(alice.batch(1, t=T0 + 2_000), now_us())  # alice's chain folded again from the log
    assert (a.first_seq, gate.cached()) == (3, ["alice"])
    refused(gate, log, alice.batch(1, t=T0 + 3_000, head=GENESIS, advance=False), RejectCode.FORK)
    audit_clean(home, log)


def test_exactly_the_record_limit_is_admitted_and_one_byte_more_is_not(home, log, gate, alice):
    key_bytes = len(b"alice")
    over = record_of_size(alice, limits.MAX_RECORD_BYTES + 1 - key_bytes)
    before = ends(log)
    with pytest.raises(RecordTooLargeError) as e:
        gate.submit(over, now_us())
    assert e.value.value == limits.MAX_RECORD_BYTES + 1 and e.value.evidence["limit"] == limits.MAX_RECORD_BYTES
    assert e.value.evidence["appended"] is False and ends(log) == before
    exact = record_of_size(alice, limits.MAX_RECORD_BYTES - key_bytes)
    a = gate.submit(exact, now_us())
    assert a.offset == 0 and a.last_seq == 16
    audit_clean(home, log)


def record_of_size(client: Client, size: int) -> bytes:
    """A batch of 16 events whose bytes are exactly ``size`` long (labels pad it), on the client's head."""
    full = Context(labels={f"k{i:02d}": "x" * 1000 for i in range(64)})

    def build(pads: int, last: int) -> bytes:
        labels = {f"p{i:02d}": "y" * 1000 for i in range(pads)} | {"zz": "z" * last}
        return client.batch(16, contexts=[full] * 15 + [Context(labels=labels)], advance=False)

    for pads in range(63):
        gap = size - len(build(pads, 0))
        if 0 <= gap < 1000:
            for last in (gap, gap - 1):  # a longer label may take one more length byte
                raw = build(pads, last)
                if len(raw) == size:
                    return raw
    raise AssertionError(f"no batch of {size} bytes")


# ------------------------------------------------------------------------------- refused: the readers' codes


def test_an_oversized_body_is_refused_before_it_is_decoded(log, gate):
    before = ends(log)
    with pytest.raises(RecordTooLargeError) as e:
        gate.submit(b"\x00" * (limits.MAX_RECORD_BYTES + 1), now_us())
    assert e.value.value == limits.MAX_RECORD_BYTES + 1 and ends(log) == before


def test_bytes_that_are_not_a_batch_are_refused(log, gate, alice):
    refused(gate, log, b"\x00garbage\xff" * 3, RejectCode.BAD_SCHEMA)
    good = alice.batch(2, advance=False)
    refused(gate, log, good[: len(good) // 2], RejectCode.TRUNCATED)
    refused(gate, log, good + b"\x00", RejectCode.BAD_SCHEMA)


def test_a_bad_signature_is_refused(home, log, gate, alice):
    e = refused(gate, log, alice.batch(2, sign_with=home.load_key("bob"), advance=False), RejectCode.BAD_SIGNATURE)
    assert e.evidence["signer_id"] == "alice"
    # the right key over other events: the signature covers every event hash
    signed = alice.batch(2, advance=False)
    batch = codec.decode_batch(signed)
    other = codec.decode_batch(alice.batch(2, op="other", advance=False))
    forged = codec.encode_batch("alice", batch.key_id, other.events, batch.signature, batch.version)
    refused(gate, log, forged, RejectCode.BAD_SIGNATURE)
    assert gate.submit(signed, now_us()).offset == 0  # the honest one still extends genesis


def test_an_unregistered_key_is_refused(home, log, gate):
    carol = Client(SigningKey.generate("carol"))  # never registered
    e = refused(gate, log, carol.batch(1), RejectCode.UNKNOWN_KEY)
    assert e.evidence["key_id"] == carol.key.key_id and "agent register" in (e.hint or "")
    # a key of its own that alice never had registered
    impostor = Client(SigningKey.generate("alice"))
    refused(gate, log, impostor.batch(1), RejectCode.UNKNOWN_KEY)
    # bob's registered key naming alice as the signer
    bob_as_alice = Client(home.load_key("bob"))
    raw = bob_as_alice.batch(1, advance=False)
    b = codec.decode_batch(raw)
    refused(gate, log, codec.encode_batch("alice", b.key_id, b.events, b.signature, b.version),
            RejectCode.SIGNER_MISMATCH)


def test_a_key_revoked_after_the_gate_started_is_refused(home, log, gate, alice):
    gate.submit(alice.batch(1), now_us())
    revoke(home, "alice")  # appended by another client of the log, after the gate built its ring
    e = refused(gate, log, alice.batch(1, t=T0 + 2_000, advance=False), RejectCode.REVOKED_KEY)
    assert e.evidence["key_id"] == alice.key.key_id and "revoked" in (e.hint or "")
    audit_clean(home, log)


def test_claimed_times_outside_the_skew_window_are_refused_unless_a_backfill_grant_covers_them(home, log, gate,
                                                                                             alice):
    now = now_us()
    # make_home's window: a day behind, a minute ahead
    ahead = alice.batch(1, t=now + 2 * 60 * US_PER_S, advance=False)
    e = refused(gate, log, ahead, RejectCode.CLOCK_SKEW, at_us=now)
    assert e.evidence["append_time_us"] == now and e.evidence["latest_us"] == now + 60 * US_PER_S
    behind = alice.batch(1, t=now - 2 * US_PER_DAY, advance=False)
    refused(gate, log, behind, RejectCode.CLOCK_SKEW, at_us=now)
    grant(home, "alice", "backfill", max_age_us=30 * US_PER_DAY)
    refused(gate, log, ahead, RejectCode.CLOCK_SKEW, at_us=now)  # a grant never widens the future side
    a = gate.submit(behind, now_us())
    assert (a.first_seq, a.duplicate) == (1, False)
    audit_clean(home, log)


def test_naming_another_agent_needs_a_backfill_grant(home, log, gate, alice):
    raw = alice.batch(1, contexts=[Context(agent="bob")], advance=False)
    e = refused(gate, log, raw, RejectCode.NOT_GRANTED)
    assert e.evidence["agent"] == "bob"


def test_a_sequence_gap_and_a_wrong_prev_hash_are_refused(home, log, gate, alice):
    gate.submit(alice.batch(2), now_us())
    skipped = alice.batch(1, t=T0 + 2_000, head=Head(alice.head.seq + 1, alice.head.hash), advance=False)
    e = refused(gate, log, skipped, RejectCode.SEQUENCE_GAP)
    assert (e.evidence["expected"], e.evidence["actual"]) == (3, 4)
    wrong_prev = alice.batch(1, t=T0 + 2_000, head=Head(alice.head.seq, bytes(32)), advance=False)
    refused(gate, log, wrong_prev, RejectCode.FORK)
    assert gate.submit(alice.batch(1, t=T0 + 2_000), now_us()).first_seq == 3


def test_after_a_rotation_the_old_keys_records_still_make_the_chain(home, log, gate, alice):
    gate.submit(alice.batch(2), now_us())
    new = SigningKey.generate("alice")
    with Emitter.for_operator(home, log) as op:
        op.emit(KeyRotated(agent_id="alice", old_key_id=alice.key.key_id, new_key_id=new.key_id,
                           new_public_key=new.public.raw), event_time_us=T0 + 1_500)
    refused(gate, log, alice.batch(1, t=T0 + 2_000, advance=False), RejectCode.REVOKED_KEY)
    rotated = Client(new)
    rotated.head = alice.head
    # a gate that reads alice's chain from the log now: the old key's records came before the rotation
    a = BatchGate.for_home(home, log).submit(rotated.batch(1, t=T0 + 2_000), now_us())
    assert (a.first_seq, a.offset) == (3, 1)
    assert gate.submit(rotated.batch(1, t=T0 + 3_000), now_us()).first_seq == 4
    audit_clean(home, log)


class LostAckLog:
    """The real log whose next append fails after (``lands=True``) or before writing: an acknowledgment lost in
    transit, or a log that was unreachable."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.fail: bool | None = None  # None: no failure; else whether the failing append lands

    def __getattr__(self, name: str) -> object:
        return getattr(self.log, name)

    def append(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Position]:
        lands, self.fail = self.fail, None
        if lands is None:
            return self.log.append(topic, records)
        if lands:
            self.log.append(topic, records)
        raise LogError("connection lost", topic=topic)


@pytest.mark.parametrize("lands", [True, False])
def test_a_failed_append_is_retried_safely(home, log, alice, lands):
    flaky = LostAckLog(log)
    gate = BatchGate(flaky, home.topic, home.control_topic, home.anchors())  # type: ignore[arg-type]
    gate.submit(alice.batch(1), now_us())
    raw = alice.batch(2, t=T0 + 2_000)
    flaky.fail = lands
    with pytest.raises(LogError):
        gate.submit(raw, now_us())
    a = gate.submit(raw, now_us())  # the client retries the very same bytes
    assert (a.offset, a.first_seq, a.last_seq, a.duplicate) == (1, 2, 3, lands)
    assert alice_records(home, log)[1:] == [raw]
    assert gate.submit(alice.batch(1, t=T0 + 3_000), now_us()).first_seq == 4
    audit_clean(home, log)


def test_the_same_bytes_again_are_a_duplicate_with_the_original_position(home, log, gate, alice):
    first = alice.batch(2)
    second = alice.batch(1, t=T0 + 2_000)
    a = gate.submit(first, now_us())
    b = gate.submit(second, now_us())
    before = ends(log)
    for raw, original in ((second, b), (first, a)):  # the latest record, and an older one
        again = gate.submit(raw, now_us())
        assert again == Admitted(original.topic, original.partition, original.offset, "alice", original.first_seq,
                                 original.last_seq, original.event_ids, duplicate=True)
    assert ends(log) == before
    # another gate (another service process) recognises the retry from the log alone
    again = BatchGate.for_home(home, log).submit(first, now_us())
    assert (again.offset, again.duplicate) == (0, True)
    # a retry is recognised even after the key was revoked: it is on the log already, nothing is appended
    revoke(home, "alice")
    before = ends(log)
    assert gate.submit(second, now_us()).duplicate
    assert ends(log) == before and alice_records(home, log) == [first, second]
    audit_clean(home, log)


def test_other_bytes_at_an_old_seq_are_refused_with_the_readers_chain_code(home, log, gate, alice):
    first = alice.batch(2)
    second = alice.batch(1, t=T0 + 2_000)
    gate.submit(first, now_us())
    gate.submit(second, now_us())
    # other events at seq 1 (a second chain from genesis): another event holds that seq
    e = refused(gate, log, alice.batch(1, t=T0 + 3_000, head=GENESIS, advance=False), RejectCode.FORK)
    assert (e.evidence["expected"], e.evidence["actual"]) == (4, 1)
    # the very same events in other bytes (the older v1 envelope): the latest batch is a duplicate, an older one a
    # replay; neither is the retry of a record, so both are refused
    latest_v1 = alice.batch(1, t=T0 + 2_000, head=Head(2, codec.event_hash(codec.decode_batch(first).events[1])),
                            version=codec.BATCH_V1, advance=False)
    assert latest_v1 != second and ids_of(latest_v1) == ids_of(second)
    refused(gate, log, latest_v1, RejectCode.DUPLICATE)
    older_v1 = alice.batch(2, head=GENESIS, version=codec.BATCH_V1, advance=False)
    assert ids_of(older_v1) == ids_of(first)
    refused(gate, log, older_v1, RejectCode.REPLAY)
    assert alice_records(home, log) == [first, second]
    audit_clean(home, log)


def test_an_event_id_the_signer_already_used_is_refused_at_a_new_seq(home, log, gate, alice):
    call = [Context(labels={"call": "resp_1"})]
    gate.submit(alice.batch(1, contexts=call, keys=["resp_1"]), now_us())
    # the same idempotency key and content, chained as a new event: readers reject it as a duplicate id
    again = alice.batch(1, contexts=call, keys=["resp_1"], advance=False)
    assert again != alice_records(home, log)[0]
    refused(gate, log, again, RejectCode.DUPLICATE)


def test_acts_for_runs_before_any_log_work(log, gate, alice):
    seen = []

    def only_bob(signer: str) -> None:
        seen.append(signer)
        raise PermissionError(signer)

    before = ends(log)
    with pytest.raises(PermissionError):
        gate.submit(alice.batch(1, advance=False), now_us(), acts_for=only_bob)
    assert seen == ["alice"] and ends(log) == before


def test_derived_and_control_events_need_their_roles(home, log, gate, alice):
    checkpoint = Checkpoint(topic=home.topic, partition=0, tree_size=1, root_hash=bytes(32), next_offset=1)
    e = refused(gate, log, alice.batch(bodies=[checkpoint], advance=False), RejectCode.NOT_PROCESSOR)
    assert e.evidence["kind"] == "checkpoint"
    revocation = KeyRevoked(agent_id="bob", key_id=home.load_key("bob").key_id, reason="alice says so")
    refused(gate, log, alice.batch(bodies=[revocation], advance=False), RejectCode.NOT_OPERATOR)


def test_operator_and_processor_chains_live_on_other_topics(home, log, gate):
    register_signer(home, log, "processor.test", role="processor")
    for signer in (home.operator_key(), home.load_key("processor.test")):
        before = ends(log)
        with pytest.raises(ChainForkError) as e:
            gate.submit(Client(signer).batch(1), now_us())
        assert e.value.evidence["signer_id"] == signer.signer_id and e.value.evidence["appended"] is False
        assert ends(log) == before


# ------------------------------------------------------------------------------- writers racing on one chain


class RacingLog:
    """The real log, with another writer's record appended just before each of ours (a second writer for the same
    signer, e.g. another service instance, winning the race between the gate's check and its append)."""

    def __init__(self, log: Log, before_ours: list[bytes]) -> None:
        self.log = log
        self.before_ours = before_ours

    def __getattr__(self, name: str) -> object:
        return getattr(self.log, name)

    def append(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Position]:
        if self.before_ours:
            self.log.append(topic, [(records[0][0], self.before_ours.pop(0))])
        return self.log.append(topic, records)


def test_another_writers_batch_at_the_same_position_makes_ours_a_fork_never_acknowledged(home, log, alice):
    racing = BatchGate(RacingLog(log, []), home.topic, home.control_topic, home.anchors())  # type: ignore[arg-type]
    racing.submit(alice.batch(1), now_us())
    theirs = alice.batch(1, t=T0 + 2_000, op="theirs", advance=False)
    ours = alice.batch(1, t=T0 + 2_000, op="ours", advance=False)
    racing.log.before_ours.append(theirs)  # type: ignore[attr-defined] - it wins the race to seq 2
    with pytest.raises(ChainForkError) as e:
        racing.submit(ours, now_us())
    assert e.value.evidence["appended"] is True and e.value.evidence["our_offset"] == 2
    assert alice_records(home, log)[1:] == [theirs, ours]
    rep = audit(log, home.ledger_topics, home.anchors())
    assert rep.rejected == {"fork": 1}  # readers take theirs and reject ours, as the gate said
    # the gate holds the chain readers hold: the next batch extends theirs
    alice.head = Head(2, codec.event_hash(codec.decode_batch(theirs).events[0]))
    assert racing.submit(alice.batch(1, t=T0 + 3_000), now_us()).first_seq == 3


def test_identical_bytes_from_another_writer_first_make_ours_a_duplicate(home, log, alice):
    gate = BatchGate(RacingLog(log, []), home.topic, home.control_topic, home.anchors())  # type: ignore[arg-type]
    gate.submit(alice.batch(1), now_us())
    raw = alice.batch(1, t=T0 + 2_000)
    gate.log.before_ours.append(raw)  # type: ignore[attr-defined] - the same client retried at another instance
    a = gate.submit(raw, now_us())
    assert (a.offset, a.first_seq, a.duplicate) == (1, 2, True)
    assert alice_records(home, log)[1:] == [raw, raw]
    rep = audit(log, home.ledger_topics, home.anchors())
    assert rep.rejected == {"duplicate": 1}  # our copy: a re-delivery readers drop


def test_concurrent_retries_append_once(home, log, gate, alice):
    raws = [alice.batch(2, t=T0 + 1_000 * (k + 1)) for k in range(3)]
    bob = Client(home.load_key("bob"))
    bobs = [bob.batch(1, t=T0 + 1_000 * (k + 1)) for k in range(3)]
    results: list[Admitted] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(batches: list[bytes]) -> None:
        try:
            for raw in batches:
                a = gate.submit(raw, now_us())
                with lock:
                    results.append(a)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    # four clients each send alice's three batches in order (three of them are retries), two send bob's
    threads = [threading.Thread(target=client, args=(raws,)) for _ in range(4)]
    threads += [threading.Thread(target=client, args=(bobs,)) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert alice_records(home, log) == raws
    assert [r.value for r in read_all(log, home.topic) if r.key == b"bob"] == bobs
    assert sorted((a.signer_id, a.first_seq, a.duplicate) for a in results) == sorted(
        [("alice", s, d) for s in (1, 3, 5) for d in (False, True, True, True)]
        + [("bob", s, d) for s in (1, 2, 3) for d in (False, True)])
    audit_clean(home, log)


def test_an_llm_call_is_admitted_with_its_token_counts(home, log, gate, alice):
    """What a client sends is what readers read: the exact token counts of each kind."""
    usage = LlmUsage(provider="anthropic", model="claude-sonnet-4-6", input_tokens=12_000, output_tokens=900,
                     cache_read_tokens=8_000)
    content = codec.encode_content(T0 + 10, EMPTY_CONTEXT, Action("llm.call", usage=usage))
    event_id = codec.derive_event_id("alice", "resp_9", content)
    raw_event = codec.assemble_event(event_id=event_id, signer_id="alice", seq=1, prev_hash=GENESIS.hash,
                                     idempotency_key="resp_9", content=content)
    sig = alice.key.sign(codec.signing_bytes(codec.BATCH_VERSION, "alice", alice.key.key_id,
                                             [codec.event_hash(raw_event)]))
    raw = codec.encode_batch("alice", alice.key.key_id, [raw_event], sig, codec.BATCH_VERSION)
    a = gate.submit(raw, now_us())
    assert a.event_ids == (event_id,)
    (rec,) = alice_records(home, log)
    got = codec.decode_event(codec.decode_batch(rec).events[0]).event.body
    assert isinstance(got, Action) and got.usage is not None
    assert (got.usage.input_tokens, got.usage.output_tokens, got.usage.cache_read_tokens,
            got.usage.cache_write_tokens, got.usage.reasoning_tokens) == (12_000, 900, 8_000, 0, 0)
    audit_clean(home, log)
