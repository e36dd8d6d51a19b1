"""The Kafka log: any Kafka-protocol cluster (Apache Kafka, Redpanda, Tansu) through kafka-python.

URL: ``kafka://host:port[,host:port...][?settings]`` (bootstrap servers). Records are opaque bytes; no ledger
semantics here.

Security (managed clusters: Confluent Cloud, MSK, Aiven, Redpanda Cloud): TLS and SASL settings are URL parameters
or the home config's ``"kafka"`` object, parsed and checked by ``ledger.log.kafka_security`` (its docstring is the
reference), e.g. ``kafka://b1:9093,b2:9093?security=sasl_ssl&sasl_mechanism=SCRAM-SHA-512&sasl_username=svc
&sasl_password_env=KAFKA_PW&ca=/etc/kafka/ca.pem``. Names: ``security`` (plaintext | ssl | sasl_plaintext |
sasl_ssl), ``ca``, ``cert``, ``key``, ``key_password_env`` / ``key_password_file``, ``check_hostname`` (true by
default), ``sasl_mechanism`` (PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 | OAUTHBEARER), ``sasl_username``,
``sasl_password_env`` / ``sasl_password_file``, ``oauth_token_command``. What this module does with them:
- TLS: one ``ssl.SSLContext`` built here (``ssl.create_default_context``: TLS 1.2 or later, certificate chain
  verified against ``ca`` or the system trust store, hostname checked unless ``check_hostname=false``; client
  certificate and key loaded when given) and handed to every kafka-python client. A missing or unreadable file,
  or a key that does not match its certificate, is a ValidationError naming the field before anything connects.
- SASL PLAIN / SCRAM: kafka-python's ``sasl_plain_username`` / ``sasl_plain_password``; OAUTHBEARER: a token
  provider that runs ``oauth_token_command`` (no shell, ``OAUTH_TOKEN_COMMAND_TIMEOUT_S``, at most
  ``limits.MAX_OAUTH_TOKEN_BYTES`` of output) each time a connection authenticates.
- Logging: kafka-python logs a client's configuration (password included) at DEBUG; a filter on its client
  loggers (``CLIENT_LOGGERS``) redacts ``SECRET_CONFIG_KEYS`` in every record's arguments.
- Secrets: ``*_file`` settings are read here (at most ``limits.MAX_SECRET_FILE_BYTES``, one trailing newline
  stripped); ``*_env`` settings are resolved by the caller, never here: ``Home.open_log`` (``ledger.sdk.home``,
  the only reader of tokenledger's environment variables) reads exactly the variables the settings name and
  passes ``env={name: value}``. A variable that is not passed is a ValidationError naming the field. Secret values
  live only inside the kafka-python configuration (``_ClientSecurity``, whose ``repr`` hides them); the URL, the
  errors and ``repr(KafkaLog)`` name variables and files, never a secret.

Invariants:
- ``append`` returns only after the cluster acknowledged every record (acks=all, idempotent
  producer: a retry can neither duplicate nor reorder records of one partition), with the real
  (partition, offset) of each from its RecordMetadata, in input order. If any record fails it raises
  LogError saying how many were acknowledged; the others may or may not be on the log. One case is
  retried inside append: when the broker no longer knows the producer (it restarted, or expired the
  producer id), the failed records are resent once with a new producer, after checking that this
  cannot reorder a partition.
- A key always maps to the same partition, the one ``ledger.log.partition_for`` names (CRC-32 of
  the key; no key -> partition 0), exactly as in the other backends: the emitter and the processors
  compute an agent's partition without knowing the backend, and a log copied between backends keeps
  its partitions. Not Kafka's murmur2: a producer in another language must use the same function.
- Positions belong to the readers: consumers ``assign`` + ``seek`` explicit partitions and offsets;
  no consumer group, no committed offsets, no automatic offset reset (a reset would silently skip or
  repeat records).
- ``read`` hands out each record of a partition once per position: records fetched beyond what a
  caller asked for stay buffered per partition and are served to the next read that continues at
  the same offset; a read at any other offset discards the buffer and seeks.
- ``end_offset`` is the high-water mark as of the call, taken from a Fetch response that a fresh
  probe consumer sent after the call began. Never ListOffsets (``end_offsets()`` /
  ``seek_to_end``): Tansu answers it with the base offset of the last batch + 1. Never a cached
  ``highwater()``: kafka-python pipelines fetches, so the last response processed may predate the
  call and miss records that were already acknowledged.
- Every kafka-python exception is translated at one boundary (``_boundary``) into LogError (the
  cluster failed or cannot be reached) or ValidationError (the request itself is bad), with the
  topic / partition / offset involved and a hint. A dead broker gives a LogError within
  ``DEAD_BROKER_ERROR_MS`` (15 s) with the default timeouts.

It never creates a topic implicitly (brokers auto-create on produce; Tansu even when told not to):
append and read refuse a topic that ``ensure_topic`` did not create.

Append time (the contract in ``ledger.log.base``):
- Topics are created with ``message.timestamp.type=LogAppendTime``: a broker that honours it (Apache
  Kafka, Redpanda) overwrites each batch's timestamp with its own clock when it appends the batch, so
  the producer cannot choose it. This log never sets a timestamp at send either (kafka-python then
  stamps CreateTime = the producer's wall clock at send).
- The record's append time is ``max(its broker timestamp * 1000, append time of the previous record in
  the partition)``: the running maximum of the stored timestamps along the partition. A broker's clock
  can step back, and leadership can move to a broker with another clock, so stored timestamps alone do
  not promise order; the running maximum does, and it is a function of the stored records only, so
  every reader, every process and every replay computes the same value. Cost: a reader that starts at
  an offset whose prefix this client has not seen reads the records before it once (their timestamps),
  then remembers a floor every ``TIME_MARK_STRIDE`` offsets; ``append`` reads the records other writers
  appended since this client's last known point of the partition (none for a single writer).
- Tansu (the test broker, 0.6.0) does NOT honour LogAppendTime. Probe: a topic created with
  ``message.timestamp.type=LogAppendTime``, a record produced with an explicit CreateTime of 1,000,000 ms
  (1970) reads back with timestamp 1000000 and timestamp_type 0 (CreateTime); the produce response
  carries no log-append time (RecordMetadata.timestamp is the CreateTime); ``describe_configs`` shows
  nothing for the topic. So on Tansu the stored timestamp is the producer's clock at send. Why this is
  still sound for the ledger: (1) replay: the timestamp is part of the stored batch, fixed once the
  broker acknowledged it, and returned unchanged by every fetch, so the append time (a function of
  stored timestamps) is identical on every read and replay; (2) order: the running maximum makes it
  non-decreasing per partition even when concurrent producers' clocks or send/append races put stored
  timestamps out of order; (3) no moving back: a producer stamping an old time cannot give its record
  an append time before its predecessor's. What Tansu does NOT give: a producer with raw write access
  can stamp a time in the future, and the running maximum then carries that time to every later
  record of the partition. Producers through this class never do (they never set a timestamp); on a
  production cluster (Apache Kafka with LogAppendTime) the broker's time wins. The contract suite
  pins both behaviours (tests/contract: test_kafka_producer_cannot_choose_the_append_time).

One order (``merge_by_append_time``; the reader's side is ``ledger.log.order``):
- Every reader (processor live or in replay, ``verify``) folds control and data merged by (append time,
  topic, partition, offset). That key is a function of the stored records only (the append time above),
  so a replay from offset 0 and ``verify`` give one order whatever the batch sizes or arrival timing; a
  control event (a revocation, a price, a policy) applies to the data after it in that order.
- A live reader must not fold a record while a partition could still receive one that sorts before it. It
  reads its clock, then every partition until a read comes back empty (``read`` then checked a fresh
  high-water mark), data first and control last; it folds only records stamped strictly before that clock
  reading less ``limits.MERGED_ORDER_MARGIN_MS``, in key order, up to the first partition cut short.
- Why that is sound: a record not on the log when its partition was read to its end is appended after the
  reader read its clock. With ``LogAppendTime`` the broker stamps it from its clock, and the running
  maximum keeps each partition's times from stepping back, so it sorts after everything folded as long as
  the broker's clock is at most the margin behind the reader's (readers and brokers on NTP: milliseconds).
  On Tansu the producer's CreateTime stands in: the promise then needs the writers' clocks at most the
  margin behind the reader's, less a send's network delay (writers on one host: the same clock).
- A record stamped in the future (Tansu: a writer whose clock runs ahead) is held, not refused, until the
  reader's clock passes it: control records appended meanwhile by writers with a correct clock would
  otherwise sort before it. The delay is the writer's skew; the reader's clock decides only WHEN a record
  is folded, never the order.
- Where the promise fails (a writer's clock behind the reader's by more than the margin, or a raw producer
  stamping the past on Tansu), a record sorts before records a live reader already folded: the runner
  detects it (``order.late_records``) and refuses to fold on rather than diverge from a replay silently; a
  replay from offset 0 rebuilds the state in the log's order.
- Rejected alternative: a periodic "tick" record on the control topic, so that control's running maximum
  alone proves it holds nothing earlier. It needs no clock agreement, but every reader of the control topic
  (emitters, processors, verify, export) would have to know and skip a record that is not a signed event,
  and readers would stall whenever the ticks stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import kafka.codec as kcodec
import kafka.errors as kerr
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.net.sasl.oauth import AbstractTokenProvider

from ledger import limits
from ledger.errors import LedgerError, LogError, ValidationError
from ledger.limits import MAX_KAFKA_POLL_RECORDS, MAX_KAFKA_REQUEST_BYTES, MAX_PARTITIONS, MAX_TOPIC_CHARS
from ledger.log.base import Position, Record, check_records, partition_for
from ledger.log.kafka_security import KafkaSecurity, SecretRef, security_for, split_url

# -- limits and defaults (units in the names)

DEFAULT_PARTITIONS = 1  # ensure_topic without a count: same as the other backends; pass partitions_default to scale
CLIENT_ID = "tokenledger"

# A dead or unreachable cluster is a LogError within DEAD_BROKER_ERROR_MS of the call that meets it, with the
# defaults below (asserted after them): connecting gives up after CONNECT_TIMEOUT_MS, an append's records expire
# after DELIVERY_TIMEOUT_MS (it waits SEND_WAIT_MARGIN_MS more for the client to report it), and a probe that did
# connect waits at most REQUEST_TIMEOUT_MS for its answer. (kafka-python's defaults add up to ~2 minutes; the
# 30 s delivery timeout used before made an SDK append on a dead broker take ~41 s.)
DEAD_BROKER_ERROR_MS = 15_000
CONNECT_TIMEOUT_MS = 5_000  # bootstrap and TCP connection set-up: a dead broker is an error after this
REQUEST_TIMEOUT_MS = 8_000  # one request/response; must exceed FETCH_MAX_WAIT_MS
DELIVERY_TIMEOUT_MS = 10_000  # a record may wait this long for its ack, retries included, then append fails
SEND_WAIT_MARGIN_MS = 2_000  # append waits this long past the delivery timeout for the client to expire a record
RECONNECT_BACKOFF_MAX_MS = 1_000  # a restarted broker is found within a second, not kafka-python's 30 s
# append blocks until acked, so a linger only adds latency; records still batch up while a request is in
# flight. Measured on Tansu, 600 B records: linger 0 / 5 ms -> 1,154 / 157 appends/s from one thread,
# 2,850 / 552 from four, ~42k records/s either way for 500 records per append.
LINGER_MS = 0
BATCH_BYTES = 256 * 1024  # per-partition produce batch; BROKER.md §7: large batches reach the client's limit
FETCH_MAX_WAIT_MS = 20  # Tansu holds every fetch this long even when data is there (BROKER.md §4)
PARTITION_FETCH_BYTES = 2 * MAX_KAFKA_REQUEST_BYTES  # per partition per fetch: at least one full-size record
FETCH_MAX_BYTES = 16 * 1024 * 1024  # per fetch response across partitions (bounds a reader's memory)
PROBE_FETCH_BYTES = 1  # the end-offset probe wants the high-water mark, not data (one batch still comes back)
POLL_SLICE_MS = 50  # a read polls in slices so deadlines are kept without busy-waiting
READ_KEY_CHUNK = 1_000  # records read_key scans per read
TOPIC_CREATED_POLL_S = 0.05  # between metadata checks while a new topic propagates
TIME_MARK_STRIDE = 4_096  # offsets between remembered append-time floors of a partition (bounds a re-read's rescan)
TIME_POINTS_KEPT = 256  # recent (offset, floor) points kept per partition besides the stride marks

OAUTH_TOKEN_COMMAND_TIMEOUT_S = 30.0  # a token command that hangs fails the connection instead of the process
# the topic configs ``layout`` reads for ``tokenledger doctor``
LAYOUT_CONFIGS = ("min.insync.replicas", "message.timestamp.type", "retention.ms", "retention.bytes",
                  "cleanup.policy")

assert CONNECT_TIMEOUT_MS + REQUEST_TIMEOUT_MS <= DEAD_BROKER_ERROR_MS  # connect, then one unanswered request
assert DELIVERY_TIMEOUT_MS + SEND_WAIT_MARGIN_MS <= DEAD_BROKER_ERROR_MS  # an append on a broker that went away
assert DELIVERY_TIMEOUT_MS >= LINGER_MS + REQUEST_TIMEOUT_MS  # kafka-python's own rule (one full attempt)

# Configs for topics this log creates. Tansu stores and ignores them; on Kafka they matter.
TOPIC_CONFIGS = {
    "retention.ms": "-1",  # the log is the ledger's source of truth: never delete by age
    "retention.bytes": "-1",  # ...nor by size
    "cleanup.policy": "delete",  # never compact: every record stays, duplicates included
    "max.message.bytes": str(MAX_KAFKA_REQUEST_BYTES),  # explicit, though Kafka's default already fits a full record
    "message.timestamp.type": "LogAppendTime",  # the broker, not the producer, stamps records (Tansu ignores it)
}

_CODECS: dict[str | None, Callable[[], bool]] = {None: lambda: True, "gzip": kcodec.has_gzip,
                                                  "snappy": kcodec.has_snappy, "lz4": kcodec.has_lz4,
                                                  "zstd": kcodec.has_zstd}
_CODEC_PACKAGES = {"gzip": "(stdlib)", "snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}
_Client = TypeVar("_Client", KafkaAdminClient, KafkaConsumer, KafkaProducer)
_T = TypeVar("_T")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_HOST_PORT_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})$")
# The broker no longer knows this idempotent producer (restarted, or expired its id): records refused, not written.
_PRODUCER_STATE_ERRORS = (kerr.UnknownProducerIdError, kerr.OutOfOrderSequenceNumberError,
                          kerr.InvalidProducerEpochError)
_CONNECTION_ERRORS = (kerr.KafkaConnectionError, kerr.NodeNotReadyError, kerr.KafkaTimeoutError,
                      kerr.RequestTimedOutError, kerr.NetworkExceptionError, kerr.BrokerNotAvailableError,
                      kerr.MetadataEmptyBrokerList)


def parse_url(url: str) -> list[str]:
    """``kafka://h1:p1,h2:p2[?settings]`` -> ["h1:p1", "h2:p2"]; ValidationError naming the URL otherwise (the
    settings are ``kafka_security.security_for``'s; an inline secret is refused, redacted, before this echoes)."""
    host_part, _ = split_url(url)
    servers = [s.strip() for s in host_part.rstrip("/").split(",")]
    if not servers or servers == [""]:
        raise ValidationError("log", url, "no bootstrap server; use kafka://host:port[,host:port]")
    for s in servers:
        m = _HOST_PORT_RE.match(s)
        if m is None or not 1 <= int(m["port"]) <= 65535:
            raise ValidationError("log", url, f"bad bootstrap server {s!r}; use host:port with a port in 1..65535")
    return servers


def check_topic_name(topic: str) -> str:
    """Kafka's topic name rules, enforced here because Tansu accepts names Kafka refuses."""
    if (not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_CHARS or topic in (".", "..")
            or not _TOPIC_RE.match(topic)):
        raise ValidationError("topic", topic, f"use 1..{MAX_TOPIC_CHARS} characters from [A-Za-z0-9._-], not . or ..")
    return topic


class KafkaLog:
    """A log on a Kafka-protocol cluster. Safe to share between threads (reads are serialised).

    Clients are created on first use (admin at construction, so a dead broker fails fast) and are
    not inherited across ``fork``: each process opens its own KafkaLog from the URL.
    """

    # partitions have their own leaders and clocks: no clock across them (base module doc), but readers merge
    # them by (append time, topic, partition, offset): the module doc's "One order" says why that is sound
    total_order = False
    # an emitter hands this many signed records to one append: in flight together, one round trip for all
    records_per_append = limits.KAFKA_RECORDS_PER_APPEND
    merge_by_append_time = True

    def __init__(self, url: str, *, partitions_default: int = DEFAULT_PARTITIONS, client_id: str = CLIENT_ID,
                 connect_timeout_ms: int = CONNECT_TIMEOUT_MS, request_timeout_ms: int = REQUEST_TIMEOUT_MS,
                 delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS, linger_ms: int = LINGER_MS,
                 compression_type: str | None = None, fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
                 max_poll_records: int = MAX_KAFKA_POLL_RECORDS, replication_factor: int = 1,
                 security: KafkaSecurity | None = None, env: Mapping[str, str] | None = None) -> None:
        """``security``: TLS/SASL settings (default: the URL's own, ``kafka_security.security_for(url)``);
        ``env``: the values of the environment variables they name (``Home.open_log`` passes them)."""
        self.url = url
        self.servers = parse_url(url)
        self.bootstrap = ",".join(self.servers)
        self.security = security_for(url) if security is None else security
        self._client_security = _ClientSecurity.build(self.security, env)
        _check_range("partitions_default", partitions_default, 1, MAX_PARTITIONS)
        _check_range("connect_timeout_ms", connect_timeout_ms, 100, 300_000)
        _check_range("fetch_max_wait_ms", fetch_max_wait_ms, 0, 10_000)
        _check_range("request_timeout_ms", request_timeout_ms, fetch_max_wait_ms + 1, 300_000)
        _check_range("linger_ms", linger_ms, 0, 1_000)
        # kafka-python requires delivery >= linger + request timeout (a record must survive one full attempt)
        _check_range("delivery_timeout_ms", delivery_timeout_ms, linger_ms + request_timeout_ms, 3_600_000)
        _check_range("max_poll_records", max_poll_records, 1, 100_000)
        _check_range("replication_factor", replication_factor, 1, 32)
        if compression_type not in _CODECS:
            raise ValidationError("compression_type", compression_type, "use None, gzip, snappy, lz4 or zstd")
        if compression_type is not None and not _CODECS[compression_type]():
            raise ValidationError(
                "compression_type", compression_type,
                f"its Python package is not installed (pip install {_CODEC_PACKAGES[compression_type]})")
        self.partitions_default = partitions_default
        self.client_id = client_id
        self.connect_timeout_ms = connect_timeout_ms
        self.request_timeout_ms = request_timeout_ms
        self.delivery_timeout_ms = delivery_timeout_ms
        self.linger_ms = linger_ms
        # No compression by default. The client, not the network, is the limit on a LAN (BROKER.md §7: lz4
        # 35.0k vs 34.5k msg/s uncompressed), and hashes, signatures and ids do not shrink: gzip takes a
        # 100-event signed batch to 45 % (a 1-event one to 63 %) at ~45 MB/s of one core, slower than
        # kafka-python sends these records uncompressed (~100 MB/s here). Every codec but gzip is also another
        # dependency. Pass "gzip" (stdlib) or "zstd" (if installed) where bandwidth is the cost (a WAN link).
        self.compression_type = compression_type
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.max_poll_records = max_poll_records
        self.replication_factor = replication_factor

        self._lock = threading.RLock()  # clients' creation, admin calls, the partition cache
        self._read_lock = threading.RLock()  # the reading consumer and its buffers (KafkaConsumer is not thread-safe)
        self._closed = False
        self._partitions: dict[str, int] = {}
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._buffers: dict[TopicPartition, deque[Record]] = {}
        self._handed: dict[TopicPartition, int] = {}  # next offset the reader expects to be asked for
        self._fetched: dict[TopicPartition, int] = {}  # offset after the last record put in the buffer
        self._time_lock = threading.RLock()  # the append-time floors below (readers and appenders share them)
        self._time_marks: dict[TopicPartition, list[int]] = {}  # [k]: append time floor before offset k * STRIDE
        self._time_points: dict[TopicPartition, dict[int, int]] = {}  # offset -> floor before it (recent ones)
        with self._boundary("connect"):
            self._admin: KafkaAdminClient | None = self._new_admin()

    # ------------------------------------------------------------------ clients

    def client_settings(self) -> dict[str, Any]:
        """The connection settings (servers, client id, timeouts, TLS/SASL) for another kafka-python client of this
        log's cluster (``ledger.log.kafka_group``)."""
        return self._common()

    def errors_as_ledger_errors(self, op: str, **where: Any) -> contextlib.AbstractContextManager[None]:
        """A context in which kafka-python exceptions become ``LogError`` naming ``op`` and ``where``."""
        return self._boundary(op, **where)

    def _common(self) -> dict[str, Any]:
        """Connection settings every client shares (bounded so a dead broker is an error, not a hang)."""
        return dict(bootstrap_servers=self.servers, client_id=self.client_id,
                    request_timeout_ms=self.request_timeout_ms,
                    bootstrap_timeout_ms=self.connect_timeout_ms,  # unreachable cluster -> error after this
                    reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                    **self._client_security.config)

    def _new_admin(self) -> KafkaAdminClient:
        return _construct(KafkaAdminClient, **self._common())

    def _new_consumer(self, *, partition_fetch_bytes: int) -> KafkaConsumer:
        return _construct(
            KafkaConsumer,
            **self._common(),
            group_id=None,  # positions belong to the processors: no group, no rebalances
            enable_auto_commit=False,  # ...and nothing is ever committed to the broker
            auto_offset_reset="none",  # an out-of-range position is an error, never a silent jump
            fetch_max_wait_ms=self.fetch_max_wait_ms,  # Tansu holds each fetch this long: keep it small
            fetch_min_bytes=1,  # answer as soon as anything is there
            max_partition_fetch_bytes=partition_fetch_bytes,
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_poll_records=self.max_poll_records,
            isolation_level="read_uncommitted",  # no transactions here; Tansu's read_committed is unreliable
            # Full fetch requests: a consumer has few partitions, and every response then carries every
            # partition's high-water mark.
            enable_incremental_fetch_sessions=False,
            check_crcs=True,  # a corrupted batch is an error, not bytes handed to the verifier
        )

    def _get_producer(self) -> KafkaProducer:
        with self._lock:
            self._check_open()
            if self._producer is None:
                self._producer = _construct(
                    KafkaProducer,
                    **self._common(),
                    acks="all",  # durable: every in-sync replica has the record before append returns
                    enable_idempotence=True,  # retries cannot duplicate or reorder a partition's records
                    max_in_flight_requests_per_connection=5,  # the most idempotence keeps ordered
                    delivery_timeout_ms=self.delivery_timeout_ms,  # bound on retries: then append fails
                    max_block_ms=self.connect_timeout_ms,  # send() waits this long at most for metadata / buffer
                    linger_ms=self.linger_ms,
                    batch_size=BATCH_BYTES,
                    compression_type=self.compression_type,
                    max_request_size=MAX_KAFKA_REQUEST_BYTES,  # a full-size signed batch must fit
                    allow_auto_create_topics=False,  # topics come from ensure_topic only (Kafka honours it)
                )
            return self._producer

    def _drop_producer(self) -> None:
        """Forget a producer whose append failed: the next append starts a new one (new producer id, fresh
        sequence numbers), which is how the client recovers after the broker lost its producer state."""
        with self._lock:
            old, self._producer = self._producer, None
        if old is not None:
            # closing a producer of a dead broker can fail, with whatever the client raises; it is discarded either way
            with contextlib.suppress(Exception):
                old.close(timeout=0)

    def _get_consumer(self) -> KafkaConsumer:
        self._check_open()
        if self._consumer is None:
            self._consumer = self._new_consumer(partition_fetch_bytes=PARTITION_FETCH_BYTES)
        return self._consumer

    def _admin_call(self, op: str, fn: Callable[[KafkaAdminClient], _T], **where: Any) -> _T:
        """Run an admin request; on a connection error, reconnect once (the broker may have restarted)."""
        with self._lock, self._boundary(op, **where):
            self._check_open()
            if self._admin is not None:
                try:
                    return fn(self._admin)
                except _CONNECTION_ERRORS:  # a connection to a broker that went away: one fresh client
                    self._admin.close()
                    self._admin = None
            self._admin = self._new_admin()
            return fn(self._admin)

    # ------------------------------------------------------------------ topics

    def ensure_topic(self, topic: str, partitions: int | None = None) -> int:
        """Create the topic if missing (``partitions`` or partitions_default); return its partition count."""
        check_topic_name(topic)
        n = self.partitions_default if partitions is None else partitions
        _check_range("partitions", n, 1, MAX_PARTITIONS)

        def create(admin: KafkaAdminClient) -> None:
            with contextlib.suppress(kerr.TopicAlreadyExistsError):  # an existing topic keeps its partition count
                admin.create_topics([NewTopic(topic, n, self.replication_factor, topic_configs=TOPIC_CONFIGS)])

        self._admin_call("ensure_topic", create, topic=topic, partitions=n)
        with self._lock:
            self._partitions.pop(topic, None)  # a broker restart can lose topics: ask, do not trust the cache
        # Kafka creates topics asynchronously: metadata may not list a new topic for a moment.
        deadline = time.monotonic() + self.request_timeout_ms / 1000
        while (count := self._describe(topic)) is None:
            if time.monotonic() >= deadline:
                raise LogError("created the topic but the cluster does not list it", topic=topic,
                               servers=self.bootstrap, timeout_ms=self.request_timeout_ms)
            time.sleep(TOPIC_CREATED_POLL_S)
        return count

    def topics(self) -> list[str]:
        names = self._admin_call("topics", lambda admin: admin.list_topics())
        return sorted(t for t in names if not t.startswith("__"))  # __consumer_offsets etc. are the broker's

    def layout(self, topics: list[str]) -> ClusterLayout:
        """What ``tokenledger doctor`` judges: the brokers, and for each topic whether it exists, its partitions,
        its replication factor (the smallest replica set over its partitions), the smallest in-sync set, and the
        ``LAYOUT_CONFIGS`` the cluster reports for it (all sources, defaults included; absent if not reported)."""
        for t in topics:
            check_topic_name(t)
        cluster = self._admin_call("layout", lambda admin: admin.describe_cluster())
        descs = self._admin_call("layout", lambda admin: admin.describe_topics(list(topics))) if topics else []
        by_name = {d["name"]: d for d in descs}
        existing = [t for t in topics if t in by_name and kerr.for_code(by_name[t]["error_code"]) is kerr.NoError]
        configs: dict[str, dict[str, Any]] = {}
        if existing:
            resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in existing]
            reply = self._admin_call("layout", lambda admin: admin.describe_configs(resources, config_filter="all"))
            configs = reply.get("topic", {}) if isinstance(reply, dict) else {}
        out: list[TopicLayout] = []
        for t in topics:
            if t not in existing:
                out.append(TopicLayout(t, False, 0, 0, 0, {}))
                continue
            parts = by_name[t]["partitions"]
            rf = min((len(p["replica_nodes"]) for p in parts), default=0)
            isr = min((len(p["isr_nodes"]) for p in parts), default=0)
            values = {k: str(v["value"]) for k, v in configs.get(t, {}).items()
                      if k in LAYOUT_CONFIGS and isinstance(v, dict) and v.get("value") is not None}
            out.append(TopicLayout(t, True, len(parts), rf, isr, values))
        return ClusterLayout(str(cluster.get("cluster_id")), len(cluster.get("brokers") or []), out)

    def partitions(self, topic: str) -> int:
        """Partition count of an existing topic; LogError if it does not exist. Cached: counts never shrink."""
        with self._lock:
            n = self._partitions.get(topic)
        if n is None:
            n = self._describe(topic)
        if n is None:
            raise LogError("topic does not exist", topic=topic, servers=self.bootstrap,
                           hint="create it with ensure_topic / `tokenledger init`")
        return n

    def _describe(self, topic: str) -> int | None:
        """Partition count from the cluster's metadata (and into the cache), None if it has no such topic."""
        (desc,) = self._admin_call("partitions", lambda admin: admin.describe_topics([topic]), topic=topic)
        error = kerr.for_code(desc["error_code"])
        if error is kerr.UnknownTopicOrPartitionError:
            return None
        if error is not kerr.NoError:
            raise _translate(error(), "partitions", self.bootstrap, topic=topic)
        n = len(desc["partitions"])
        with self._lock:
            self._partitions[topic] = n
        return n

    def _check_partition(self, topic: str, partition: int) -> TopicPartition:
        n = self.partitions(topic)
        if not isinstance(partition, int) or not 0 <= partition < n:
            raise ValidationError("partition", partition, f"topic {topic} has partitions 0..{n - 1}")
        return TopicPartition(topic, partition)

    # ------------------------------------------------------------------ write

    def append(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Position]:
        if not records:
            return []
        n = self.partitions(topic)  # refuses unknown topics before the broker could auto-create one
        check_records(topic, records)  # check all first: nothing is sent if one is bad
        parts = [partition_for(key, n) for key, _ in records]
        results, send_error = self._send(topic, records, parts, list(range(len(records))))
        failed = [i for i in range(len(records)) if not isinstance(results.get(i), _Ack)]
        if failed and send_error is None and _lost_producer_state(results, parts, failed):
            # The broker no longer knows this producer (it restarted, or expired the producer id), so it wrote
            # none of its later batches. A new producer resends exactly the failed records, in order (a record
            # written despite a failure report becomes a duplicate, which readers detect, as for any retry).
            self._drop_producer()
            retry, send_error = self._send(topic, records, parts, failed)
            results.update(retry)
            failed = [i for i in failed if not isinstance(results.get(i), _Ack)]
        if not failed and send_error is None:
            acks: list[_Ack] = [results[i] for i in range(len(records))]  # type: ignore[misc]
            # every record is on the log: a failure here is about learning its time, not about writing it
            with self._boundary("append_time", topic=topic, records=len(records)):
                return self._stamp(topic, acks)
        self._drop_producer()
        acked = len(records) - len(failed)
        cause = results.get(failed[0]) if failed else None
        first = send_error if send_error is not None else _translate(cause, "append", self.bootstrap, topic=topic)  # type: ignore[arg-type]
        if isinstance(first, ValidationError) and acked == 0:
            raise first
        raise LogError(f"append failed: {acked} of {len(records)} records acknowledged; {first.message}",
                       topic=topic, records=len(records), acknowledged=acked,
                       kafka_error=first.evidence.get("kafka_error"), servers=self.bootstrap,
                       hint=first.hint or "retry the append: readers detect duplicates by content")

    def _send(self, topic: str, records: list[tuple[bytes | None, bytes]], parts: list[int],
              indexes: list[int]) -> tuple[dict[int, _Ack | BaseException], LedgerError | None]:
        """Send records[i] for i in indexes and wait for every ack or failure (bounded by the delivery timeout)."""
        futures: list[tuple[int, Any]] = []
        send_error: LedgerError | None = None
        try:
            with self._boundary("append", topic=topic, records=len(records)):
                producer = self._get_producer()
                for i in indexes:
                    key, value = records[i]
                    futures.append((i, producer.send(topic, key=key, value=value, partition=parts[i])))
        except LedgerError as e:  # e.g. no metadata within max_block_ms: what was sent before it is still waited for
            send_error = e
        results: dict[int, _Ack | BaseException] = {}
        # the client expires a record at the delivery timeout: the margin only covers reporting it
        deadline = time.monotonic() + (self.delivery_timeout_ms + SEND_WAIT_MARGIN_MS) / 1000
        for i, fut in futures:
            try:
                md = fut.get(timeout=max(0.0, deadline - time.monotonic()))
                results[i] = _Ack(md.partition, md.offset, md.timestamp)
            except Exception as e:  # noqa: BLE001 - kafka-python errors, or its timeout: judged by append, never swallowed
                results[i] = e
        return results, send_error

    def _stamp(self, topic: str, acks: list[_Ack]) -> list[Position]:
        """Positions with append times, computed in offset order per partition (each extends the floor)."""
        out: list[Position | None] = [None] * len(acks)
        for i in sorted(range(len(acks)), key=lambda i: (acks[i].partition, acks[i].offset)):
            a = acks[i]
            out[i] = Position(a.partition, a.offset,
                              self._append_time(TopicPartition(topic, a.partition), a.offset, a.timestamp_ms))
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ append time

    def _append_time(self, tp: TopicPartition, offset: int, broker_ms: int | None) -> int:
        """Append time of the record at ``offset`` whose stored timestamp is ``broker_ms`` (see the module doc)."""
        with self._time_lock:
            t_us = max(max(0, broker_ms or 0) * 1000, self._floor(tp, offset))
            self._note(tp, offset + 1, t_us)
            return t_us

    def _floor(self, tp: TopicPartition, offset: int) -> int:
        """The largest append time before ``offset`` in the partition (0 at offset 0), from the nearest point
        this client knows, reading the records between it and ``offset`` if there are any."""
        points = self._time_points.setdefault(tp, {})
        if offset in points:
            return points[offset]
        marks = self._time_marks.setdefault(tp, [0])
        k = min(offset // TIME_MARK_STRIDE, len(marks) - 1)
        start, floor = k * TIME_MARK_STRIDE, marks[k]
        for o, f in points.items():
            if start < o <= offset:
                start, floor = o, f
        return floor if start == offset else self._scan_floor(tp, start, floor, offset)

    def _note(self, tp: TopicPartition, after: int, floor: int) -> None:
        """Remember the floor before offset ``after``. Marks are only ever extended in order: every scan starts at
        a mark or at a point derived from one, and passes every stride boundary on its way."""
        marks = self._time_marks.setdefault(tp, [0])
        if after % TIME_MARK_STRIDE == 0 and after // TIME_MARK_STRIDE == len(marks):
            marks.append(floor)
        points = self._time_points.setdefault(tp, {})
        points.pop(after, None)  # re-inserted last: the dict's order is recency, the oldest point goes first
        points[after] = floor
        if len(points) > TIME_POINTS_KEPT:
            del points[next(iter(points))]

    def _scan_floor(self, tp: TopicPartition, start: int, floor: int, end: int) -> int:
        """Running maximum of the stored timestamps of offsets start..end-1, from ``floor`` (the one before
        ``start``), read with a consumer of its own (the reader's position and buffers stay untouched)."""
        self._check_open()
        scanner = self._new_consumer(partition_fetch_bytes=PARTITION_FETCH_BYTES)
        try:
            scanner.assign([tp])
            scanner.seek(tp, start)
            nxt = start
            deadline = time.monotonic() + self.request_timeout_ms / 1000
            while nxt < end:
                progressed = False
                for r in scanner.poll(timeout_ms=POLL_SLICE_MS, max_records=self.max_poll_records).get(tp, []):
                    if not nxt <= r.offset < end:
                        continue
                    floor = max(floor, max(0, r.timestamp or 0) * 1000)
                    nxt = r.offset + 1
                    self._note(tp, nxt, floor)
                    progressed = True
                if progressed:
                    deadline = time.monotonic() + self.request_timeout_ms / 1000
                elif time.monotonic() >= deadline:
                    raise LogError("cannot read the records before this offset to fix its append time",
                                   topic=tp.topic, partition=tp.partition, offset=end, reached=nxt,
                                   timeout_ms=self.request_timeout_ms, servers=self.bootstrap, hint=self._hint())
            return floor
        finally:
            scanner.close()

    # ------------------------------------------------------------------ read

    def read(self, topic: str, partition: int, offset: int, max_records: int = 1000,
             timeout_s: float = 0.0) -> list[Record]:
        """Records of one partition from ``offset``, in order, at most ``max_records``; waits up to ``timeout_s``.

        ``[]`` means no record at ``offset`` had been acknowledged when the call began (checked against a
        fresh high-water mark), nor arrived before the timeout.
        """
        tp = self._check_partition(topic, partition)
        _check_range("offset", offset, 0, limits.INT64_MAX)
        _check_range("max_records", max_records, 1, 10**9)
        deadline = time.monotonic() + max(0.0, float(timeout_s))
        catch_up_deadline: float | None = None
        with self._read_lock, self._boundary("read", topic=topic, partition=partition, offset=offset):
            consumer = self._get_consumer()
            self._position(consumer, tp, offset)
            while True:
                out = self._take(tp, max_records)
                if out:
                    return out
                remaining_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
                slice_ms = POLL_SLICE_MS if catch_up_deadline is not None else min(remaining_ms, POLL_SLICE_MS)
                try:
                    self._poll(consumer, tp, slice_ms)
                except kerr.OffsetOutOfRangeError as e:
                    self._out_of_range(consumer, tp, offset, e)
                if self._buffers[tp] or time.monotonic() < deadline:
                    continue
                # Timed out with nothing: fine if nothing is there; if the cluster has records at `offset`
                # the fetch has not caught up yet, and a read must not report an empty partition for that.
                if not self._records_exist(consumer, tp, offset):
                    return []
                now = time.monotonic()
                if catch_up_deadline is None:
                    catch_up_deadline = now + self.request_timeout_ms / 1000
                elif now >= catch_up_deadline:
                    raise LogError("the cluster reported records at this offset but no fetch returned them in time",
                                   topic=topic, partition=partition, offset=offset, servers=self.bootstrap,
                                   timeout_ms=self.request_timeout_ms, hint=self._hint())

    def _position(self, consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> None:
        """Make the consumer continue at ``offset``: keep the buffer if it continues there, else seek."""
        if tp not in self._assigned:
            self._assigned.add(tp)
            consumer.assign(sorted(self._assigned))  # keeps the state of partitions already assigned
            self._buffers[tp] = deque()
            self._handed.pop(tp, None)
        if self._handed.get(tp) != offset:
            self._buffers[tp].clear()
            consumer.seek(tp, offset)
            self._handed[tp] = offset
            self._fetched[tp] = offset
        if tp in self._paused:
            consumer.resume(tp)
            self._paused.discard(tp)

    def _take(self, tp: TopicPartition, max_records: int) -> list[Record]:
        buf = self._buffers[tp]
        out = [buf.popleft() for _ in range(min(max_records, len(buf)))]
        if out:
            self._handed[tp] = out[-1].offset + 1
        return out

    def _poll(self, consumer: KafkaConsumer, target: TopicPartition, timeout_ms: int) -> None:
        """One poll; records go to their partition's buffer. Other partitions with buffered records are paused
        so the consumer stops fetching them: memory stays bounded by one poll per partition."""
        batches = consumer.poll(timeout_ms=timeout_ms, max_records=self.max_poll_records)
        for tp, recs in batches.items():
            buf = self._buffers.setdefault(tp, deque())
            nxt = self._fetched.get(tp, 0)
            for r in recs:
                if r.offset < nxt:  # never hand out a record twice (a batch can start before the fetch offset)
                    continue
                buf.append(Record(tp.topic, tp.partition, r.offset, r.key, r.value,
                                  self._append_time(tp, r.offset, r.timestamp)))
                nxt = r.offset + 1
            self._fetched[tp] = nxt
            if tp != target and buf and tp not in self._paused:
                consumer.pause(tp)
                self._paused.add(tp)

    def _out_of_range(self, consumer: KafkaConsumer, target: TopicPartition, offset: int,
                      error: kerr.OffsetOutOfRangeError) -> None:
        """Kafka refuses a fetch beyond the end (Tansu answers it empty). For the partition being read: beyond
        the end, wait (the read's deadline bounds it) for the end to reach ``offset``; below the first retained
        record, an error, never a silent jump. Another partition of this consumer: park it until it is read."""
        where = error.args[0] if error.args and isinstance(error.args[0], dict) else {target: offset}
        for tp in where:
            if tp != target:
                consumer.pause(tp)
                self._paused.add(tp)
                self._handed.pop(tp, None)  # its next read seeks again
                self._buffers.setdefault(tp, deque()).clear()
        if target not in where:
            return
        end = self._probe_end(target)
        if offset <= end:
            raise LogError("offset is before the first retained record (deleted by retention?)", topic=target.topic,
                           partition=target.partition, offset=offset, end_offset=end, servers=self.bootstrap)
        consumer.seek(target, offset)  # re-arm the fetch
        time.sleep(POLL_SLICE_MS / 1000)

    def _records_exist(self, consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> bool:
        """Has the cluster got a record at ``offset``? The reader's own high-water mark can only lag (trust it
        when it says yes); otherwise ask a fresh probe."""
        hw = consumer.highwater(tp)
        if hw is not None and hw > offset:
            return True
        return self._probe_end(tp) > offset

    def read_key(self, topic: str, key: bytes, after_offset: int = -1, max_records: int = 1000) -> list[Record]:
        """Records of one key after an offset, in order (used to reconcile an emitter's chain head)."""
        p = partition_for(key, self.partitions(topic))
        out: list[Record] = []
        with self._read_lock:
            end = self.end_offset(topic, p)
            offset = after_offset + 1
            while offset < end and len(out) < max_records:
                recs = self.read(topic, p, offset, READ_KEY_CHUNK)
                if not recs:
                    break
                out.extend(r for r in recs if r.key == key)
                offset = recs[-1].offset + 1
        return out[:max_records]

    # ------------------------------------------------------------------ end offsets

    def end_offset(self, topic: str, partition: int) -> int:
        """The high-water mark now: every record acknowledged before this call is below it."""
        tp = self._check_partition(topic, partition)
        with self._boundary("end_offset", topic=topic, partition=partition):
            return self._probe_end(tp)

    def _probe_end(self, tp: TopicPartition) -> int:
        """High-water mark from a Fetch that a new consumer sends after this call began.

        A fresh consumer has no fetch in flight, so its first response cannot predate the call (a long-lived
        consumer's pipelined fetch can). It fetches from the last offset the reader knows, so the answer is
        a few bytes, not the partition. Costs a connection and one fetch: ~5 ms, ~25 ms on an idle partition.
        """
        self._check_open()
        probe = self._new_consumer(partition_fetch_bytes=PROBE_FETCH_BYTES)
        try:
            probe.assign([tp])
            start = max(0, self._fetched.get(tp, 0) - 1)  # a hint only: any valid offset gives the mark
            probe.seek(tp, start)
            deadline = time.monotonic() + self.request_timeout_ms / 1000
            while True:
                try:
                    probe.poll(timeout_ms=self.fetch_max_wait_ms + 5, max_records=1)
                except kerr.OffsetOutOfRangeError:  # the hint is past the end (data lost) or deleted: from 0
                    if start == 0:
                        raise
                    start = 0
                    probe.seek(tp, 0)
                    continue
                hw = probe.highwater(tp)
                if hw is not None:
                    return int(hw)
                if time.monotonic() >= deadline:
                    raise LogError("no high-water mark from the cluster in time", topic=tp.topic,
                                   partition=tp.partition, timeout_ms=self.request_timeout_ms,
                                   servers=self.bootstrap, hint=self._hint())
        finally:
            probe.close()

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Flush and close every client. Idempotent; the log cannot be used afterwards."""
        with self._lock, self._read_lock:
            if self._closed:
                return
            self._closed = True
            clients = [c for c in (self._producer, self._consumer, self._admin) if c is not None]
            self._producer = self._consumer = self._admin = None
            for c in clients:
                # closing a client of a dead broker can fail, with whatever the client raises; nothing is left to lose
                with contextlib.suppress(Exception):
                    if isinstance(c, KafkaProducer):
                        c.close(timeout=self.delivery_timeout_ms / 1000)
                    else:
                        c.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError("the log is closed", servers=self.bootstrap)

    def _hint(self) -> str:
        return _hint(self.bootstrap, self.security)

    @contextmanager
    def _boundary(self, op: str, **where: Any) -> Iterator[None]:
        """The one place kafka-python exceptions become ours."""
        try:
            yield
        except LedgerError:
            raise
        except (kerr.KafkaError, OSError, ValueError) as e:  # ValueError: kafka-python's own argument checks
            raise _translate(e, op, self.bootstrap, security=self.security, **where) from None

    def __enter__(self) -> KafkaLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KafkaLog({self.url!r})"


class TopicLayout(NamedTuple):
    """One topic as the cluster describes it (``KafkaLog.layout``)."""

    name: str
    exists: bool
    partitions: int
    replication_factor: int  # smallest replica set over the partitions
    in_sync: int  # smallest in-sync replica set over the partitions
    configs: dict[str, str]  # LAYOUT_CONFIGS the cluster reported (defaults included)


class ClusterLayout(NamedTuple):
    cluster_id: str
    brokers: int
    topics: list[TopicLayout]


class _Ack(NamedTuple):
    """What the cluster acknowledged for one record: its position and the timestamp it stored."""

    partition: int
    offset: int
    timestamp_ms: int | None


def _construct(cls: type[_Client], **config: Any) -> _Client:
    """A kafka-python client whose IO thread is stopped if construction fails: kafka-python 3.0.12 starts the
    thread before bootstrapping and leaks it when the bootstrap fails (one thread per attempt on a dead broker)."""
    # kafka-python has no type information, so cls is type[Any] here and mypy matches no overload of type.__new__
    client = cls.__new__(cls)  # type: ignore[call-overload]
    try:
        client.__init__(**config)
    except BaseException:
        net = getattr(client, "_net", None)
        if net is not None:
            net.close()
        raise
    return client


def _hint(servers: str, security: KafkaSecurity | None) -> str:
    if security is None or security.protocol == "PLAINTEXT":
        return f"is the broker running at {servers}? start one with `tokenledger broker`"
    return (f"is the broker running at {servers}, and does it take security={security.protocol.lower()} there? "
            "check the CA, client certificate and SASL settings (`tokenledger doctor` checks them)")


def _translate(e: BaseException, op: str, servers: str, security: KafkaSecurity | None = None,
               **where: Any) -> LedgerError:
    """Map a kafka-python (or socket) exception to LogError / ValidationError with evidence and a hint."""
    if isinstance(e, LedgerError):
        return e
    name = type(e).__name__
    hint = _hint(servers, security)
    evidence = dict(where, servers=servers, kafka_error=name)
    if isinstance(e, (kerr.SaslAuthenticationFailedError, kerr.UnsupportedSaslMechanismError,
                      kerr.IllegalSaslStateError)):
        return LogError(f"{op}: the cluster refused to authenticate this client: {e}",
                        hint="check sasl_mechanism, sasl_username and the password or token the settings name",
                        **evidence)
    if isinstance(e, ssl.SSLError):
        return LogError(f"{op}: TLS failed: {e}", hint="check ca (the broker's CA), check_hostname and the client "
                        "certificate", **evidence)
    if isinstance(e, (kerr.MessageSizeTooLargeError, kerr.RecordListTooLargeError)):
        return ValidationError("record_bytes", where.get("records"), f"the cluster refused the size: {e}",
                               **{k: v for k, v in evidence.items() if k != "records"})
    if isinstance(e, kerr.InvalidTopicError):
        return ValidationError("topic", where.get("topic"), f"the cluster refused the name: {e}")
    if isinstance(e, (kerr.InvalidPartitionsError, kerr.InvalidReplicationFactorError)):
        return ValidationError("partitions", where.get("partitions"), f"the cluster refused: {e}",
                               topic=where.get("topic"))
    if isinstance(e, kerr.UnknownTopicOrPartitionError):
        return LogError(f"{op}: topic or partition does not exist", hint="create it with ensure_topic", **evidence)
    if isinstance(e, kerr.AuthorizationError):
        return LogError(f"{op}: not authorised: {e}", hint="check the cluster's ACLs for this client", **evidence)
    if isinstance(e, kerr.OffsetOutOfRangeError):
        return LogError(f"{op}: offset out of range", **evidence)
    if isinstance(e, (*_CONNECTION_ERRORS, OSError)):
        return LogError(f"{op}: cannot reach the Kafka cluster ({e})", hint=hint, **evidence)
    if isinstance(e, ValueError):
        return LogError(f"{op}: the Kafka client refused the call: {e}", **evidence)
    return LogError(f"{op}: Kafka error: {e}", hint=hint if isinstance(e, kerr.RetriableError) else None,
                    **evidence)


def _lost_producer_state(results: dict[int, _Ack | BaseException], parts: list[int], failed: list[int]) -> bool:
    """Worth one resend with a new producer? Yes when the broker said it no longer knows this producer (for at
    least one record), the other failures come from the client itself (kafka-python then fails the rest of the
    producer's batches, e.g. when re-initialising the producer id is refused), none is another broker refusal
    (size, authorisation, ...: a resend would fail the same way), and in each partition the failed records come
    after every acknowledged one (so resending them cannot reorder the partition)."""
    errors = [results.get(i) for i in failed]
    if not any(isinstance(e, _PRODUCER_STATE_ERRORS) for e in errors):
        return False
    if not all(isinstance(e, kerr.KafkaError) and (isinstance(e, _PRODUCER_STATE_ERRORS)
                                                   or not isinstance(e, kerr.BrokerResponseError)) for e in errors):
        return False
    first_failed: dict[int, int] = {}
    for i in failed:
        first_failed.setdefault(parts[i], i)
    return all(isinstance(r, BaseException) for i, r in results.items() if i > first_failed.get(parts[i], len(parts)))


def _check_range(field: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(field, value, f"must be an integer in {lo}..{hi}")


# ---------------------------------------------------------------------------------------------- security

# kafka-python logs a client's whole configuration at DEBUG ("Starting KafkaAdminClient with configuration:
# {...}"), password included. Every logger of a client this module constructs gets a filter that replaces the
# secret entries of any mapping in a record's arguments before the record is formatted anywhere.
SECRET_CONFIG_KEYS = ("sasl_plain_password", "ssl_password", "sasl_oauth_token_provider")
CLIENT_LOGGERS = ("kafka.admin.client", "kafka.producer.kafka", "kafka.consumer.group", "kafka.net.manager",
                  "kafka.net.connection", "kafka.client_async", "kafka.conn")
_REDACTED = "<redacted>"


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping):
            record.args = _redacted(args)
        elif isinstance(args, tuple) and any(isinstance(a, Mapping) for a in args):
            record.args = tuple(_redacted(a) if isinstance(a, Mapping) else a for a in args)
        return True


def _redacted(m: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_REDACTED if k in SECRET_CONFIG_KEYS and v is not None else v) for k, v in m.items()}


for _name in CLIENT_LOGGERS:
    if not any(isinstance(f, _RedactSecrets) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_RedactSecrets())


@dataclass(frozen=True)
class _ClientSecurity:
    """The kafka-python arguments for TLS and SASL, secrets included. Its ``repr`` names no secret."""

    config: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"_ClientSecurity({sorted(self.config)})"

    @classmethod
    def build(cls, sec: KafkaSecurity, env: Mapping[str, str] | None) -> _ClientSecurity:
        """Check every file the settings name and read the secrets (files here, variables from ``env``)."""
        config: dict[str, Any] = {"security_protocol": sec.protocol}
        if sec.tls:
            config["ssl_context"] = _ssl_context(sec, env)
            config["ssl_check_hostname"] = sec.check_hostname  # ignored when ssl_context is given; kept consistent
        if sec.sasl:
            config["sasl_mechanism"] = sec.sasl_mechanism
            if sec.oauth_token_command is not None:
                config["sasl_oauth_token_provider"] = CommandTokenProvider(sec.oauth_token_command,
                                                                           sec.field("oauth_token_command"))
            else:
                assert sec.sasl_password is not None  # parse_security requires one for PLAIN and SCRAM
                config["sasl_plain_username"] = sec.sasl_username
                config["sasl_plain_password"] = _read_secret(sec.sasl_password, env)
        return cls(config)


def _ssl_context(sec: KafkaSecurity, env: Mapping[str, str] | None) -> ssl.SSLContext:
    """TLS 1.2+, chain verified (against ``ca`` or the system store), hostname checked unless turned off."""
    for name, path in (("ca", sec.ca), ("cert", sec.cert), ("key", sec.key)):
        if path is not None:
            _check_readable(sec.field(name), path)
    try:
        ctx = ssl.create_default_context(cafile=sec.ca)
    except (ssl.SSLError, OSError, ValueError) as e:
        raise ValidationError(sec.field("ca"), sec.ca, f"not a usable PEM file of CA certificates: {e}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = sec.check_hostname  # verify_mode stays CERT_REQUIRED either way
    if sec.cert is not None:
        password = _read_secret(sec.key_password, env) if sec.key_password is not None else None
        try:
            ctx.load_cert_chain(sec.cert, sec.key, password=password)
        except (ssl.SSLError, OSError, ValueError) as e:  # no key, key/cert mismatch, wrong passphrase
            field_name = sec.field("key") if sec.key is not None else sec.field("cert")
            raise ValidationError(field_name, sec.key or sec.cert, "cannot load the client certificate and key "
                                  f"(wrong file, key does not match, or wrong passphrase): {type(e).__name__}"
                                  ) from None
    return ctx


def _check_readable(field_name: str, path: str) -> None:
    if not os.path.isfile(path):
        raise ValidationError(field_name, path, "no such file")
    if not os.access(path, os.R_OK):
        raise ValidationError(field_name, path, "the file is not readable by this user")


def _read_secret(ref: SecretRef, env: Mapping[str, str] | None) -> str:
    """The secret ``ref`` points to. ValidationError (naming the setting, never the secret) if it is not there."""
    if ref.env is not None:
        if env is None or ref.env not in env:
            reason = ("is not set in the environment" if env is not None else
                      "was not resolved: open the log through the home (Home.open_log reads the environment)")
            raise ValidationError(ref.field, ref.env, f"the environment variable {reason}")
        value = env[ref.env]
    else:
        assert ref.file is not None
        _check_readable(ref.field, ref.file)
        with open(ref.file, "rb") as f:
            data = f.read(limits.MAX_SECRET_FILE_BYTES + 1)
        if len(data) > limits.MAX_SECRET_FILE_BYTES:
            raise ValidationError(ref.field, ref.file,
                                  f"larger than {limits.MAX_SECRET_FILE_BYTES} bytes: not a secret file")
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(ref.field, ref.file, "is not UTF-8 text") from None
        value = value.removesuffix("\n").removesuffix("\r")  # editors add one newline; a secret never ends with it
    if not value:
        raise ValidationError(ref.field, ref.env or ref.file, "the secret is empty")
    return value


class CommandTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # kafka-python has no type information
    """OAUTHBEARER tokens from a command: run (no shell) each time a connection authenticates; its standard
    output, stripped, is the token. A failure is a LogError naming the setting and the exit code; neither the
    command's output nor its error stream is ever put in the error (either may hold a token)."""

    def __init__(self, argv: tuple[str, ...], setting: str) -> None:
        super().__init__()
        self.argv = argv
        self.setting = setting

    def token(self) -> str:
        try:
            proc = subprocess.run(list(self.argv), stdin=subprocess.DEVNULL, capture_output=True,  # noqa: S603
                                  timeout=OAUTH_TOKEN_COMMAND_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LogError(f"the OAUTHBEARER token command could not run: {type(e).__name__}", setting=self.setting,
                           program=self.argv[0], timeout_s=OAUTH_TOKEN_COMMAND_TIMEOUT_S) from None
        if proc.returncode != 0:
            raise LogError("the OAUTHBEARER token command failed", setting=self.setting, program=self.argv[0],
                           exit_code=proc.returncode, hint="run it by hand to see why")
        if len(proc.stdout) > limits.MAX_OAUTH_TOKEN_BYTES:
            raise LogError(f"the OAUTHBEARER token command printed more than {limits.MAX_OAUTH_TOKEN_BYTES} bytes",
                           setting=self.setting, program=self.argv[0])
        try:
            token = proc.stdout.decode("ascii").strip()
        except UnicodeDecodeError:
            raise LogError("the OAUTHBEARER token command printed non-ASCII bytes", setting=self.setting,
                           program=self.argv[0]) from None
        if not token or any(c.isspace() for c in token):
            raise LogError("the OAUTHBEARER token command printed no token (or one with white space inside)",
                           setting=self.setting, program=self.argv[0])
        return token

    def __repr__(self) -> str:
        return f"CommandTokenProvider({self.argv[0]!r})"
