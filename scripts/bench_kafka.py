#!/usr/bin/env python3
"""Emit and read-back throughput through the Kafka log, against raw kafka-python in the same run.

For batch sizes 1 and 100 it prints:
- emit: events/s through ``Emitter`` (validate + encode + chain + sign) and ``KafkaLog.append``
  (acks=all, idempotent, blocking until acknowledged), one signed record per batch;
- read back: events/s through ``KafkaLog.read`` + ``Verifier.check_record`` (decode, signature,
  chain), from offset 0;
- the machine's own limit, measured right before on the same broker: raw kafka-python produce
  (fire-and-forget sends, one flush; same producer settings) and raw consume (assign + seek, large
  polls) of records of the same size, and the ratios (per record, and in events at batch 100).

Starts its own Tansu broker (in-memory) unless ``--url kafka://host:port`` is given. One process,
one thread per side; best of ``--repeat`` runs.

    python scripts/bench_kafka.py                       # ~1 minute
    python scripts/bench_kafka.py --url kafka://127.0.0.1:9092 --events 200000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ledger.integrity.keyring import KeyRing
from ledger.integrity.keys import SigningKey
from ledger.integrity.verify import Verifier, Where
from ledger.limits import MAX_KAFKA_REQUEST_BYTES
from ledger.log.kafka import BATCH_BYTES, FETCH_MAX_BYTES, PARTITION_FETCH_BYTES, KafkaLog
from ledger.sdk.emitter import Emitter
from ledger.testing.broker import Broker
from ledger.wire.events import Context

# event times start when the benchmark does: readers judge every claimed time against its record's append
# time (the skew window), so a fixed date in the past would be quarantined as clock_skew
T0_US = time.time_ns() // 1000
SIGNER = "bench"
READ_CHUNK = 5_000  # records per KafkaLog.read
RAW_POLL_RECORDS = 10_000  # BROKER.md §7: large polls are the consumer's best case
ACKED_RECORDS = 2_000  # records of the one-ack-at-a-time raw run (round-trip bound, slow)
VERIFY_COUNT = 20_000  # Ed25519 verifies timed for the read-back limit


def best(fn: Callable[[], float], repeat: int) -> float:
    return max(fn() for _ in range(repeat))


def new_topic(log: KafkaLog, name: str) -> str:
    topic = f"bench.{name}.{uuid.uuid4().hex[:8]}"
    log.ensure_topic(topic, 1)
    return topic


def emit_and_read(url: str, events: int, batch: int) -> tuple[float, float, int]:
    """(emit events/s, read-back events/s, bytes of one full record) for one fresh topic and signer."""
    log = KafkaLog(url)
    topic = new_topic(log, f"emit{batch}")
    key = SigningKey.generate(SIGNER)
    emitter = Emitter(log, key, topic=topic, batch_size=batch, background_flush=False,
                      context=Context(org="acme", project="bench", task="t1"))
    started = time.perf_counter()
    for i in range(events):
        emitter.action("llm.call", provider="anthropic", model="claude-sonnet-4-6", input_tokens=1000 + i % 5000,
                       output_tokens=200 + i % 700, cache_read_tokens=i % 400, event_time_us=T0_US + i)
    emitter.close()
    emit_rate = events / (time.perf_counter() - started)

    reader = KafkaLog(url)
    verifier = Verifier(KeyRing(anchors={SIGNER: key.public.raw}))  # operator-anchored: may sign anything
    verified, offset, record_bytes = 0, 0, 0
    started = time.perf_counter()
    while verified < events:
        records = reader.read(topic, 0, offset, READ_CHUNK, timeout_s=5.0)
        if not records:
            raise SystemExit(f"read back stopped at offset {offset}: {verified} of {events} events verified")
        for r in records:
            verified += len(verifier.check_record(r.value, Where.of(r)).events)
            record_bytes = max(record_bytes, len(r.value))
        offset = records[-1].offset + 1
    read_rate = verified / (time.perf_counter() - started)
    reader.close()
    log.close()
    return emit_rate, read_rate, record_bytes


def raw_produce(bootstrap: str, topic: str, records: int, size: int, *, acked_one_by_one: bool = False) -> float:
    """Records/s: kafka-python alone, the same producer settings as KafkaLog. Sends then one flush (the
    client's limit), or waiting for each ack as an append of one record does (the round-trip limit)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0,
                             batch_size=BATCH_BYTES, max_request_size=MAX_KAFKA_REQUEST_BYTES)
    value = os.urandom(size)
    started = time.perf_counter()
    for _ in range(records):
        future = producer.send(topic, key=SIGNER.encode(), value=value, partition=0)
        if acked_one_by_one:
            future.get(timeout=30)
    producer.flush()
    rate = records / (time.perf_counter() - started)
    producer.close()
    return rate


def raw_verify(count: int) -> float:
    """Ed25519 verifies/s (cryptography, cached key): the read-back limit when every record holds one event."""
    key = SigningKey.generate(SIGNER)
    message = os.urandom(300)
    signature = key.sign(message)
    started = time.perf_counter()
    for _ in range(count):
        key.public.verify(signature, message)
    return count / (time.perf_counter() - started)


def raw_consume(bootstrap: str, topic: str, records: int) -> float:
    """Records/s: kafka-python alone, assign + seek to 0, large polls, until ``records`` arrived."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20,
                             max_poll_records=RAW_POLL_RECORDS, fetch_max_bytes=FETCH_MAX_BYTES,
                             max_partition_fetch_bytes=PARTITION_FETCH_BYTES)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    got = 0
    started = time.perf_counter()
    while got < records:
        got += sum(len(batch) for batch in consumer.poll(timeout_ms=1000).values())
    rate = got / (time.perf_counter() - started)
    consumer.close()
    return rate


def raw_limits(url: str, records: int, size: int, repeat: int) -> tuple[float, float, float]:
    """(produce, acked-one-by-one produce, consume) records/s of ``size``-byte records, best of ``repeat``."""
    log = KafkaLog(url)
    produce, acked, consume = 0.0, 0.0, 0.0
    for _ in range(repeat):
        topic = new_topic(log, f"raw{size}")
        produce = max(produce, raw_produce(log.bootstrap, topic, records, size))
        consume = max(consume, raw_consume(log.bootstrap, topic, records))
        acked = max(acked, raw_produce(log.bootstrap, topic, min(records, ACKED_RECORDS), size,
                                        acked_one_by_one=True))
    log.close()
    return produce, acked, consume


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="kafka://host:port of a running cluster (default: start Tansu)")
    ap.add_argument("--events", type=int, default=50_000, help="events per batch-100 run")
    ap.add_argument("--events-batch1", type=int, default=3_000, help="events per batch-1 run (one ack per event)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is printed")
    a = ap.parse_args()
    broker = None if a.url else Broker().start()
    url = a.url or broker.url  # type: ignore[union-attr]
    try:
        print(f"tokenledger Kafka benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"{'Tansu (in-memory) started here' if broker else url}, best of {a.repeat}")
        verify = best(lambda: raw_verify(VERIFY_COUNT), a.repeat)
        rows = []
        for batch, events in ((1, a.events_batch1), (100, a.events)):
            runs = [emit_and_read(url, events, batch) for _ in range(a.repeat)]
            emit, read, size = max(r[0] for r in runs), max(r[1] for r in runs), runs[0][2]
            produce, acked, consume = raw_limits(url, max(events // batch, 2_000), size, a.repeat)
            rows.append((batch, events, emit, read, size, produce, acked, consume))
        print()
        print("raw limits on this machine (same run, same broker, same record sizes)")
        print(f"  Ed25519 verify (cryptography)          {verify:>9,.0f} verifies/s")
        for _, _, _, _, size, produce, acked, consume in rows:
            print(f"  {size:>7,} B records: kafka-python produce {produce:>8,.0f} records/s"
                  f" (acked one by one {acked:>6,.0f}/s), consume {consume:>8,.0f} records/s")
        print()
        print("through tokenledger: emit = Emitter + KafkaLog.append (acks=all, waits for the ack); "
              "read = KafkaLog.read + Verifier.check_record")
        for batch, events, emit, read, size, produce, acked, consume in rows:
            print(f"  batch {batch:<3} ({batch} event{'s' if batch > 1 else ''}/record, {size:,} B, {events:,} events)")
            print(f"    emit {emit:>9,.0f} events/s = {emit / (produce * batch):5.2f} x raw produce,"
                  f" {emit / (acked * batch):5.2f} x raw acked-one-by-one produce (in events)")
            print(f"    read {read:>9,.0f} events/s = {read / (consume * batch):5.2f} x raw consume (in events),"
                  f" {read / batch / verify:5.2f} x raw verify rate (in records: one verify per record)")
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
