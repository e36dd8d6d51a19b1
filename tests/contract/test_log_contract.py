"""The log contract (ledger/log/base.py), one suite run unchanged against every backend.

Method: each test gets ``log_factory`` (tests/conftest.py) for sqlite, memory and kafka, writes
through the ``Log`` interface only, and checks what a reader sees: values byte for byte, offsets
contiguous from 0, one partition per key, order per key, each record exactly once, across clients,
threads and processes. Memory skips only what needs a second process or a reopen (it has neither:
it lives in one process and keeps nothing); the skip reason says so.

Records are opaque bytes to the log: foreign bytes read back unchanged and the verifier, not the
log, rejects them with their position as evidence.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import threading
import time
from collections import defaultdict

import pytest

from ledger import limits
from ledger.errors import LogError, RejectCode, RejectError, ValidationError
from ledger.integrity.keyring import KeyRing
from ledger.integrity.keys import SigningKey
from ledger.integrity.verify import Verifier, Where
from ledger.log import Log, Record, RecordTooLargeError, open_log, partition_for, read_all
from ledger.sdk.emitter import Emitter
from ledger.wire import codec
from ledger.wire.events import GENESIS_HASH, Action, Context

LARGE_RECORD_BYTES = 900 * 1024  # near MAX_RECORD_BYTES (1 MiB): a full batch must round-trip
WAIT_S = 20.0  # upper bound for anything that waits on another thread or process (never reached when green)
QUICK_S = 2.0  # an empty read with no timeout must return within this (it must not wait for data)
EVENT_TIME_US = 1_750_000_000_000_000  # 2025-06-15, inside the ledger's event-time bounds

PAST_MS = 1_000_000  # a producer clock in 1970: far behind any append time
FUTURE_MS = 4_102_444_800_000  # 2100-01-01: far ahead of any append time
EXTERNAL_KAFKA_ENV = "TOKENLEDGER_TEST_KAFKA"  # set: the suite runs on a real Kafka (tests/conftest.py), else on Tansu

NOT_SHARED = "memory:// lives in one process and keeps nothing: there is no second process or reopen to test"


def _skip_unless_shared(log_factory) -> None:  # type: ignore[no-untyped-def]
    if not log_factory.shared:
        pytest.skip(NOT_SHARED)


def _by_key(records: list[Record]) -> dict[bytes | None, list[Record]]:
    out: dict[bytes | None, list[Record]] = defaultdict(list)
    for r in records:
        out[r.key].append(r)
    return out


def _assert_contiguous(log: Log, topic: str) -> list[Record]:
    """Every partition holds offsets 0..end-1 with no gap; returns all records."""
    records = read_all(log, topic)
    for p in range(log.partitions(topic)):
        offsets = [r.offset for r in records if r.partition == p]
        assert offsets == list(range(log.end_offset(topic, p))), f"partition {p}"
    return records


# -------------------------------------------------------------------------------------- basics


def test_append_returns_positions_and_read_returns_the_same_bytes(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    assert log.ensure_topic(topic, 1) == 1
    values = [b"", b"\x00\xff" * 7, "ünïcode".encode(), bytes(range(256))]
    positions = log.append(topic, [(b"k", v) for v in values])
    assert [(p.partition, p.offset) for p in positions] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    got = log.read(topic, 0, 0)
    assert [(r.topic, r.partition, r.offset, r.key, r.value) for r in got] == [
        (topic, 0, i, b"k", v) for i, v in enumerate(values)]
    assert log.append(topic, []) == []
    assert log.end_offset(topic, 0) == 4


def test_offsets_are_contiguous_from_zero_in_every_partition(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 3)
    positions = []
    for round_ in range(5):  # several appends: offsets continue, never restart or skip
        positions += log.append(topic, [(f"agent-{i}".encode(), f"{round_}.{i}".encode()) for i in range(12)])
    records = _assert_contiguous(log, topic)
    assert len(records) == 60
    assert sorted((p.partition, p.offset) for p in positions) == sorted((r.partition, r.offset) for r in records)
    assert sum(log.end_offset(topic, p) for p in range(3)) == 60


def test_same_key_same_partition_in_order(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 4)
    keys = [f"signer-{i}".encode() for i in range(24)]
    where: dict[bytes, set[int]] = defaultdict(set)
    for seq in range(6):  # interleave keys across appends
        batch = [(k, b"%s:%d" % (k, seq)) for k in keys]
        for (k, _), pos in zip(batch, log.append(topic, batch), strict=True):
            where[k].add(pos.partition)
    assert all(len(parts) == 1 for parts in where.values()), where
    assert all(where[k] == {partition_for(k, 4)} for k in keys), "every backend partitions like partition_for"
    assert len({p for parts in where.values() for p in parts}) > 1, "24 keys should use several partitions"
    for key, recs in _by_key(read_all(log, topic)).items():
        assert key is not None
        assert {r.partition for r in recs} == where[key]
        assert [r.value for r in recs] == [b"%s:%d" % (key, s) for s in range(6)]


def test_topics_and_partitions(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    assert log.ensure_topic(topic, 3) == 3
    assert log.ensure_topic(topic, 5) == 3, "an existing topic keeps its partition count"
    assert topic in log.topics()
    assert log.partitions(topic) == 3
    missing = log_factory.topic("missing")
    with pytest.raises(LogError):
        log.partitions(missing)
    with pytest.raises(LogError):
        log.append(missing, [(b"k", b"v")])
    assert missing not in log.topics(), "an append must never create a topic"
    with pytest.raises(ValidationError):
        log.read(topic, 3, 0)


def test_read_honours_offset_and_max_records_without_skipping_or_repeating(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 1)
    log.append(topic, [(b"k", b"%d" % i) for i in range(50)])
    seen: list[int] = []
    offset = 0
    while offset < 50:  # small reads continue exactly where the previous stopped
        recs = log.read(topic, 0, offset, 7)
        assert recs and len(recs) <= 7
        seen += [r.offset for r in recs]
        offset = recs[-1].offset + 1
    assert seen == list(range(50))
    assert [r.value for r in log.read(topic, 0, 10, 3)] == [b"10", b"11", b"12"], "a re-read goes back"
    assert [r.offset for r in log.read(topic, 0, 45, 1000)] == list(range(45, 50))
    assert [r.offset for r in log.read(topic, 0, 13, 2)] == [13, 14], "and forth again"


def test_empty_topic_reads_nothing_quickly(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 2)
    for p in range(2):
        assert log.end_offset(topic, p) == 0
        started = time.monotonic()
        assert log.read(topic, p, 0) == []
        assert time.monotonic() - started < QUICK_S
    assert read_all(log, topic) == []


def test_read_with_timeout_waits_for_a_record_appended_by_another_thread(log_factory) -> None:
    log = log_factory()
    writer = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 1)
    started = time.monotonic()
    assert log.read(topic, 0, 0, timeout_s=0.3) == []
    assert time.monotonic() - started >= 0.3, "with nothing to read, read waits its timeout"
    reading = threading.Event()

    def append_later() -> None:
        reading.wait(WAIT_S)
        time.sleep(0.2)  # no observable condition for "the reader is blocked inside read": give it a moment
        writer.append(topic, [(b"k", b"late")])

    t = threading.Thread(target=append_later)
    t.start()
    reading.set()
    started = time.monotonic()
    got = log.read(topic, 0, 0, timeout_s=WAIT_S)
    elapsed = time.monotonic() - started
    t.join(WAIT_S)
    assert [r.value for r in got] == [b"late"]
    assert elapsed < WAIT_S / 2, "read returned because the record came, not because it timed out"


# -------------------------------------------------------------------------------------- clients, threads, processes


def test_resume_from_an_offset_with_a_new_client(log_factory) -> None:
    _skip_unless_shared(log_factory)
    first = log_factory()
    topic = log_factory.topic()
    first.ensure_topic(topic, 2)
    first.append(topic, [(b"a", b"a%d" % i) for i in range(30)])
    part = first.append(topic, [(b"a", b"probe")])[0].partition
    head = first.read(topic, part, 0, 12)
    resume_at = head[-1].offset + 1
    first.close()

    second = log_factory()  # a new client object: no state but the store
    rest = second.read(topic, part, resume_at, 1000)
    assert [r.offset for r in head + rest] == list(range(31))
    assert [r.value for r in head + rest] == [b"a%d" % i for i in range(30)] + [b"probe"]
    assert second.append(topic, [(b"a", b"more")])[0].offset == 31
    assert second.end_offset(topic, part) == 32


def test_several_writer_threads(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 3)
    writers, appends, per_append = 4, 25, 3
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for a in range(appends):
                log.append(topic, [(b"w%d" % w, b"%d:%d" % (w, a * per_append + i)) for i in range(per_append)])
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not errors, errors
    records = _assert_contiguous(log, topic)
    assert len(records) == writers * appends * per_append
    for w in range(writers):
        assert [r.value for r in _by_key(records)[b"w%d" % w]] == [
            b"%d:%d" % (w, i) for i in range(appends * per_append)]


def test_several_readers(log_factory) -> None:
    writer = log_factory()
    topic = log_factory.topic()
    writer.ensure_topic(topic, 2)
    writer.append(topic, [(b"k%d" % (i % 5), b"%d" % i) for i in range(200)])
    expected = {p: [r.value for r in writer.read(topic, p, 0, 1000)] for p in range(2)}
    assert sum(len(v) for v in expected.values()) == 200
    shared = log_factory()
    results: dict[str, dict[int, list[bytes]]] = {}
    errors: list[BaseException] = []

    def read(name: str, log: Log, batch: int) -> None:
        try:
            got: dict[int, list[bytes]] = {0: [], 1: []}
            offsets = {0: 0, 1: 0}
            while any(offsets[p] < len(expected[p]) for p in (0, 1)):
                for p in (0, 1):  # alternate partitions: each reader keeps its own positions
                    recs = log.read(topic, p, offsets[p], batch, timeout_s=1.0) if offsets[p] < len(expected[p]) else []
                    got[p] += [r.value for r in recs]
                    offsets[p] += len(recs)
            results[name] = got
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=read, args=(f"own-{i}", log_factory(), 9 + i)) for i in range(2)]
    readers += [threading.Thread(target=read, args=(f"shared-{i}", shared, 13 + i)) for i in range(2)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(WAIT_S)
    assert not errors, errors
    assert sorted(results) == ["own-0", "own-1", "shared-0", "shared-1"]
    for name, got in results.items():
        assert got == expected, name


def test_large_records(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 1)
    big = [os.urandom(LARGE_RECORD_BYTES) for _ in range(3)]
    log.append(topic, [(b"k", big[0])])
    log.append(topic, [(b"k", big[1]), (b"k", big[2])])  # two in one append
    got = []
    while len(got) < 3:
        recs = log.read(topic, 0, len(got), 1)
        assert recs, f"record {len(got)} missing"
        got += recs
    assert [r.value for r in got] == big


def _append_from_process(url: str, topic: str, writer: int, appends: int) -> None:
    """Child process: open the log from its URL (nothing inherited) and append a numbered sequence."""
    log = open_log(url)
    try:
        for i in range(appends):
            log.append(topic, [(b"p%d" % writer, b"%d:%d" % (writer, i))])
    finally:
        log.close()


def test_concurrent_appends_from_several_processes(log_factory) -> None:
    _skip_unless_shared(log_factory)
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 2)
    processes, appends = 3, 30
    ctx = multiprocessing.get_context("spawn")  # a forked child would share the parent's client sockets
    procs = [ctx.Process(target=_append_from_process, args=(log_factory.url, topic, w, appends))
             for w in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(WAIT_S * 2)
    assert [p.exitcode for p in procs] == [0] * processes
    records = _assert_contiguous(log, topic)
    assert len(records) == processes * appends
    assert len({r.value for r in records}) == processes * appends, "every record exactly once"
    for w in range(processes):
        assert [r.value for r in _by_key(records)[b"p%d" % w]] == [b"%d:%d" % (w, i) for i in range(appends)]


def test_read_key_returns_one_keys_records_after_an_offset(log_factory) -> None:
    log = log_factory()
    if not hasattr(log, "read_key"):
        pytest.skip(f"{type(log).__name__} has no read_key (it is not part of the Log protocol)")
    topic = log_factory.topic()
    log.ensure_topic(topic, 2)
    positions = log.append(topic, [(b"a" if i % 3 else b"b", b"%d" % i) for i in range(30)])
    a_offsets = [p.offset for i, p in enumerate(positions) if i % 3]
    got = log.read_key(topic, b"a")
    assert [r.value for r in got] == [b"%d" % i for i in range(30) if i % 3]
    assert [r.offset for r in got] == a_offsets
    after = log.read_key(topic, b"a", after_offset=a_offsets[4], max_records=3)
    assert [r.offset for r in after] == a_offsets[5:8]


# -------------------------------------------------------------------------------------- one record limit


def test_an_emitters_batches_fit_the_one_record_limit_every_backend_shares(log_factory) -> None:
    """Every backend refuses a record over limits.MAX_RECORD_BYTES, the same number (so a record the embedded
    log takes fits Kafka too), and an emitter given events worth 1.3 MB cuts them into records under it,
    each accepted by a reader."""
    log = log_factory()
    topic = log_factory.topic("ledger.events")
    log.ensure_topic(topic, 1)
    with pytest.raises(RecordTooLargeError) as info:
        log.append(topic, [(b"k", bytes(limits.MAX_RECORD_BYTES))])
    assert info.value.evidence["limit"] == limits.MAX_RECORD_BYTES
    key = SigningKey.from_seed("big", bytes(range(32)))
    labels = tuple((f"k{i:02d}", "x" * 1000) for i in range(limits.MAX_LABELS))  # ~65 KB per event
    with Emitter(log, key, topic=topic, background_flush=False) as em:
        for i in range(20):
            em.emit(Action(operation="big"), event_time_us=EVENT_TIME_US + i, context=Context(labels=labels))
    records = read_all(log, topic)
    assert len(records) >= 2
    assert all(len(r.key or b"") + len(r.value) <= limits.MAX_RECORD_BYTES for r in records)
    assert max(len(r.value) for r in records) > limits.MAX_RECORD_BYTES // 2, "cut by bytes, not one per record"
    verifier = Verifier(KeyRing(anchors={"big": key.public.raw}))
    accepted = [verifier.check_record(r.value, Where(topic, r.partition, r.offset)) for r in records]
    assert sum(len(a.events) for a in accepted) == 20


# -------------------------------------------------------------------------------------- foreign bytes


def _signed_batch(key: SigningKey) -> bytes:
    """A valid one-event batch at the start of the signer's chain."""
    content = codec.encode_content(EVENT_TIME_US, Context(), Action(operation="contract-test"))
    event_id = codec.derive_event_id(key.signer_id, None, content)
    raw = codec.assemble_event(event_id=event_id, signer_id=key.signer_id, seq=1, prev_hash=GENESIS_HASH,
                               idempotency_key=None, content=content)
    signature = key.sign(codec.batch_signing_bytes(key.signer_id, key.key_id, [codec.event_hash(raw)]))
    return codec.encode_batch(key.signer_id, key.key_id, [raw], signature)


def test_foreign_bytes_read_back_and_are_rejected_with_their_position(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic("ledger.events")
    log.ensure_topic(topic, 1)
    key = SigningKey.from_seed("op", bytes(range(32)))
    valid = _signed_batch(key)
    foreign = [
        b"\x00garbage\xff" * 9,
        json.dumps({"type": "order.created", "id": 17, "amount": "9.99"}).encode(),  # another app's message
        valid[: len(valid) // 2],  # truncated
        valid[:-1],
        b"",
    ]
    positions = log.append(topic, [(b"op", v) for v in [*foreign, valid]])
    records = log.read(topic, 0, 0)
    assert [r.value for r in records] == [*foreign, valid], "the log returns bytes as they were given"

    verifier = Verifier(KeyRing(anchors={"op": key.public.raw}))
    for rec, pos in zip(records[:-1], positions[:-1], strict=True):
        with pytest.raises(RejectError) as info:
            verifier.check_record(rec.value, Where(rec.topic, rec.partition, rec.offset))
        assert info.value.evidence["topic"] == topic
        assert (info.value.evidence["partition"], info.value.evidence["offset"]) == (pos.partition, pos.offset)
    accepted = verifier.check_record(records[-1].value, Where(topic, 0, records[-1].offset))
    assert accepted.signer_id == "op", "garbage before it does not stop a valid record"


# -------------------------------------------------------------------------------------- append time


def _times_by_partition(records: list[Record]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.partition].append(r.append_time_us)
    return out


def _assert_non_decreasing(records: list[Record]) -> None:
    for p, times in _times_by_partition(records).items():
        assert all(a <= b for a, b in itertools.pairwise(times)), f"partition {p}: append time went back: {times}"


def test_append_returns_the_append_time_every_read_returns(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 2)
    positions = []
    for round_ in range(4):
        positions += log.append(topic, [(b"k%d" % i, b"%d.%d" % (round_, i)) for i in range(6)])
    assert all(p.append_time_us >= limits.MIN_EVENT_TIME_US for p in positions), "a real time in microseconds"
    by_position = {(r.partition, r.offset): r.append_time_us for r in read_all(log, topic)}
    assert {(p.partition, p.offset): p.append_time_us for p in positions} == by_position
    assert all(r.timestamp_ms == r.append_time_us // 1000 for r in read_all(log, topic))


def test_append_time_never_decreases_in_a_partition_across_appends_and_writers(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 3)
    writers = [log, log_factory()]  # two clients of one store (for Kafka: two producers)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for a in range(20):
                writers[w].append(topic, [(b"key-%d" % i, b"%d:%d:%d" % (w, a, i)) for i in range(5)])
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not errors, errors
    records = _assert_contiguous(log, topic)
    assert len(records) == 200
    _assert_non_decreasing(records)
    assert len({r.partition for r in records}) > 1


def test_append_time_is_the_same_on_every_read_from_any_offset_and_client(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 1)
    total = 5_000  # beyond one Kafka time mark stride (4,096): a late start re-derives the floor from the prefix
    for a in range(5):
        log.append(topic, [(b"k", b"%d" % (a * 1000 + i)) for i in range(1000)])
    first = read_all(log, topic)
    assert len(first) == total
    _assert_non_decreasing(first)
    times = [r.append_time_us for r in first]
    other = log_factory()  # a fresh client (for Kafka: nothing of the prefix seen yet) reading from the middle
    for start in (4_500, 10, 4_096, 0):
        got = other.read(topic, 0, start, 300)
        assert [r.append_time_us for r in got] == times[start:start + 300], f"read from {start}"
    assert [r.append_time_us for r in read_all(log_factory(), topic)] == times, "a replay sees the same values"
    if hasattr(other, "read_key"):
        assert [r.append_time_us for r in other.read_key(topic, b"k", after_offset=4_900)] == times[4_901:]


def test_append_time_survives_reopen_and_keeps_increasing_from_another_process(log_factory) -> None:
    _skip_unless_shared(log_factory)
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 2)
    log.append(topic, [(b"p%d" % i, b"before") for i in range(4)])
    before = read_all(log, topic)
    log.close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_from_process, args=(log_factory.url, topic, w, 15)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(WAIT_S * 2)
    assert [p.exitcode for p in procs] == [0, 0]
    reopened = log_factory()
    after = _assert_contiguous(reopened, topic)
    assert len(after) == 4 + 30
    old = {(r.partition, r.offset): r.append_time_us for r in before}
    now = {(r.partition, r.offset): r.append_time_us for r in after}
    assert {k: now[k] for k in old} == old, "stored with the record, not re-stamped on reopen"
    _assert_non_decreasing(after)


def _raw_kafka_produce(url: str, topic: str, partition: int, key: bytes, value: bytes, timestamp_ms: int) -> None:
    """Produce with a timestamp the producer chose, past this package's KafkaLog (which never sets one)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=url[len("kafka://"):].split(","), acks="all")
    try:
        producer.send(topic, key=key, value=value, partition=partition, timestamp_ms=timestamp_ms).get(WAIT_S)
    finally:
        producer.close()


def test_a_writer_whose_clock_is_behind_cannot_move_the_append_time_back(log_factory, monkeypatch) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 1)
    (first,) = log.append(topic, [(b"k", b"first")])
    if log_factory.backend == "kafka":  # the producer's clock is what Tansu stores: stamp 1970 explicitly
        _raw_kafka_produce(log_factory.url, topic, 0, b"k", b"behind", PAST_MS)
    else:  # the embedded logs read the wall clock: step it back to 1970
        monkeypatch.setattr("ledger.log.base.time.time_ns", lambda: PAST_MS * 1_000_000)
        log.append(topic, [(b"k", b"behind")])
        monkeypatch.undo()
    got = log_factory().read(topic, 0, 0)
    assert [r.value for r in got] == [b"first", b"behind"]
    assert got[0].append_time_us == first.append_time_us
    assert got[1].append_time_us >= first.append_time_us, "never before its predecessor in the partition"
    assert got[1].append_time_us > PAST_MS * 1000
    (third,) = log.append(topic, [(b"k", b"third")])
    assert third.append_time_us >= got[1].append_time_us


@pytest.mark.parametrize("log_factory", [pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True)
def test_kafka_producer_cannot_choose_the_append_time(log_factory) -> None:
    """Apache Kafka honours message.timestamp.type=LogAppendTime (the broker stamps); Tansu 0.6 does not: it keeps
    the producer's CreateTime. Pinned both ways, so a change of either broker shows up here (ledger/log/kafka.py)."""
    from kafka import KafkaConsumer, TopicPartition

    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 1)
    (first,) = log.append(topic, [(b"k", b"ours")])
    _raw_kafka_produce(log_factory.url, topic, 0, b"k", b"future", FUTURE_MS)
    (after,) = log.append(topic, [(b"k", b"after")])
    consumer = KafkaConsumer(bootstrap_servers=log_factory.url[len("kafka://"):].split(","), fetch_max_wait_ms=20,
                             enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        raw: list = []  # type: ignore[type-arg]
        deadline = time.monotonic() + WAIT_S
        while len(raw) < 3 and time.monotonic() < deadline:
            raw += consumer.poll(timeout_ms=100).get(tp, [])
    finally:
        consumer.close()
    got = log.read(topic, 0, 0)
    assert [r.value for r in got] == [b"ours", b"future", b"after"]
    assert [r.append_time_us for r in got] == [first.append_time_us, got[1].append_time_us, after.append_time_us]
    _assert_non_decreasing(got)
    if os.environ.get(EXTERNAL_KAFKA_ENV, "").strip():  # a real Kafka: the broker's clock wins
        assert [r.timestamp_type for r in raw] == [1, 1, 1], "LogAppendTime"
        assert got[1].append_time_us < FUTURE_MS * 1000
    else:  # Tansu: the gap kafka.py documents -- the producer's stamp is stored and carried forward
        assert [r.timestamp_type for r in raw] == [0, 0, 0], "Tansu stores CreateTime (LogAppendTime ignored)"
        assert raw[1].timestamp == FUTURE_MS
        assert got[1].append_time_us == FUTURE_MS * 1000
        assert after.append_time_us == FUTURE_MS * 1000, "the running maximum carries a future stamp forward"


_OLD_SQLITE_SCHEMA = """
CREATE TABLE topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE records (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key BLOB, value BLOB NOT NULL, ts_ms INTEGER NOT NULL, PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
"""


@pytest.mark.parametrize("log_factory", ["sqlite"], indirect=True)
def test_an_embedded_log_written_before_append_times_is_migrated_on_open(log_factory) -> None:
    """A file from before append_time_us: the column is added on open, old rows get the running maximum of their
    stored ts_ms (deterministic: every opener computes the same), and new appends continue from it."""
    import sqlite3

    path = log_factory.url[len("sqlite://"):]
    db = sqlite3.connect(path)
    db.executescript(_OLD_SQLITE_SCHEMA)
    db.execute("INSERT INTO topics VALUES ('old', 2)")
    stamps = {0: [1_700_000_000_000, 1_700_000_000_500, 1_699_999_999_000, 1_700_000_001_000],  # one step back
              1: [1_700_000_000_200]}
    db.executemany("INSERT INTO records VALUES ('old', ?, ?, ?, ?, ?)",
                   [(p, o, b"k%d" % p, b"v%d.%d" % (p, o), t) for p, ts in stamps.items() for o, t in enumerate(ts)])
    db.commit()
    db.close()

    log = log_factory()
    expected = {0: [1_700_000_000_000_000, 1_700_000_000_500_000, 1_700_000_000_500_000, 1_700_000_001_000_000],
                1: [1_700_000_000_200_000]}
    assert _times_by_partition(read_all(log, "old")) == expected
    assert [r.value for r in log.read("old", 0, 0)] == [b"v0.%d" % o for o in range(4)], "records untouched"
    assert _times_by_partition(read_all(log_factory(), "old")) == expected, "a second opener: same values, no rework"
    partition = partition_for(b"new", 2)
    (pos,) = log.append("old", [(b"new", b"after migration")])
    assert pos.offset == len(stamps[partition])
    assert pos.append_time_us >= expected[partition][-1]
    _assert_non_decreasing(read_all(log, "old"))


# -------------------------------------------------------------------------------------- size limit


def test_a_record_over_the_size_limit_is_refused_and_nothing_of_the_call_is_written(log_factory) -> None:
    log = log_factory()
    topic = log_factory.topic()
    log.ensure_topic(topic, 1)
    key = b"signer"
    at_limit = os.urandom(limits.MAX_RECORD_BYTES - len(key))
    assert limits.MAX_RECORD_BYTES < 1_048_576, "below Kafka's default message size (1 MiB), framing included"
    with pytest.raises(RecordTooLargeError) as info:
        log.append(topic, [(key, b"small"), (key, at_limit + b"!")])
    assert isinstance(info.value, ValidationError)
    assert info.value.field == "record_bytes"
    assert info.value.value == limits.MAX_RECORD_BYTES + 1, "the error names the size"
    assert info.value.evidence["index"] == 1
    assert info.value.code is RejectCode.OVERSIZED
    assert log.end_offset(topic, 0) == 0, "checked before anything is written"
    (pos,) = log.append(topic, [(key, at_limit)])
    assert pos.offset == 0, "key + value exactly at the limit fits"
    assert [r.value for r in log.read(topic, 0, 0)] == [at_limit]
