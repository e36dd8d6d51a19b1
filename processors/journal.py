"""The journal: every accepted event, flattened into one ``events`` view an analyst can query without
knowing Avro, plus the ``rejections`` view (the runtime's quarantine) — and a dead letter on
``ledger.rejected`` for every rejected record.

One row per event: ids, signer, kind, event time, context labels, where it came from on the log, and
the kind's fields (LLM usage, bytes, compute, trust, the four cost flows of interactions); control
and derived events keep their body as JSON in ``details_json``.

The flat topic: each ``events`` row is also published once as an unsigned Avro record (``ledger.wire.flat``: the
view's public columns) on ``<prefix>.events.flat``, keyed by the agent id (UTF-8; partition = CRC-32 of the key, as
on every ledger topic), by the service's edge (``open_edge``, ``processors.runtime.flat``: exactly once per event,
never by a replay). Framing: the Confluent wire format with the schema registered under ``<topic>-value`` when a
Schema Registry is configured (``ledger.sdk.schema_registry``), Avro single-object encoding otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, ClassVar

import pyarrow as pa

from ledger import limits
from ledger.errors import ValidationError
from ledger.log import Record
from ledger.sdk import schema_registry
from ledger.sdk.home import Home
from ledger.wire import flat
from ledger.wire.events import (
    Action,
    AgentRegistered,
    Body,
    Compute,
    Data,
    Grant,
    Interaction,
    Rejected,
    Trust,
)
from processors.runtime.flat import FlatFormat, FlatPublisher
from processors.runtime.processor import BATCH, Column, Derived, Effects, Item, Processor, Quarantined, View, columns_of
from processors.runtime.runner import Runner

COMMON = (
    Column("event_id", "VARCHAR", "event id (32 hex chars, derived from signer + idempotency key or content)"),
    Column("signer_id", "VARCHAR", "who signed the event"),
    Column("agent", "VARCHAR", "the agent it is about: the one an importer recorded it for (context.agent), else the "
                               "signer"),
    Column("agent_registered", "BOOLEAN", "the agent had a registered key when the event was read (false: an agent "
                                          "named by an import that nobody registered, listed, never invented)"),
    Column("key_id", "VARCHAR", "the key that signed its batch"),
    Column("seq", "BIGINT", "position in the signer's chain (1 = genesis)"),
    Column("kind", "VARCHAR", "action | data | compute | trust | interaction | control kinds | rejected"),
    Column("event_time", "TIMESTAMP", "event time (UTC)"),
    Column("event_time_us", "BIGINT", "event time, microseconds since the Unix epoch"),
    Column("org", "VARCHAR", "context: organisation"),
    Column("project", "VARCHAR", "context: project"),
    Column("task", "VARCHAR", "context: task"),
    Column("stage", "VARCHAR", "context: stage"),
    Column("run", "VARCHAR", "context: run"),
    Column("labels_json", "VARCHAR", "context: free labels as JSON (sorted keys)"),
    Column("idempotency_key", "VARCHAR", "the producer's idempotency key, if any"),
    Column("topic", "VARCHAR", "log topic the event was read from"),
    Column("log_partition", "INTEGER", "log partition"),
    Column("log_offset", "BIGINT", "log offset of the signed batch that carried the event"),
)
ACTION = (
    Column("operation", "VARCHAR", "action: what was done"),
    Column("cost_weight_milli", "BIGINT", "action: cost weight in thousandths (1000 = 1.0)"),
    Column("result_hash", "VARCHAR", "action: committed result hash"),
    Column("provider", "VARCHAR", "action: LLM provider"),
    Column("model", "VARCHAR", "action: LLM model"),
    Column("input_tokens", "BIGINT", "action: LLM input tokens (cache read/write included)"),
    Column("output_tokens", "BIGINT", "action: LLM output tokens (reasoning included)"),
    Column("cache_read_tokens", "BIGINT", "action: part of input read from cache"),
    Column("cache_write_tokens", "BIGINT", "action: part of input written to cache"),
    Column("reasoning_tokens", "BIGINT", "action: part of output spent reasoning"),
)
DATA = (
    Column("bytes_read", "BIGINT", "data: bytes read"),
    Column("bytes_written", "BIGINT", "data: bytes written"),
    Column("source_hash", "VARCHAR", "data: source hash"),
    Column("destination_hash", "VARCHAR", "data: destination hash"),
    Column("duration_us", "BIGINT", "data: duration in microseconds"),
)
COMPUTE = (
    Column("node_id", "VARCHAR", "compute: node"),
    Column("cpu_time_slices", "BIGINT", "compute: CPU time slices"),
    Column("gpu_time_slices", "BIGINT", "compute: GPU time slices"),
    Column("peak_memory_mb", "BIGINT", "compute: peak memory, MB"),
    Column("parallel_jobs", "INTEGER", "compute: parallel jobs"),
)
TRUST = (
    Column("subject_id", "VARCHAR", "trust: the agent it is about (issuer = signer)"),
    Column("dimension", "VARCHAR", "trust: accuracy | compliance | feedback | reliability"),
    Column("trust_value_milli", "BIGINT", "trust: signed value in thousandths"),
    Column("half_life_us", "BIGINT", "trust: decay half-life (NULL = dimension default)"),
    Column("trust_source", "VARCHAR", "trust: where it comes from"),
)
INTERACTION = (
    Column("interaction_id", "VARCHAR", "interaction: id"),
    Column("requestor_id", "VARCHAR", "interaction: requestor (the signer)"),
    Column("responder_id", "VARCHAR", "interaction: responder"),
    Column("requestor_provider", "VARCHAR", "interaction: requestor's provider"),
    Column("requestor_model", "VARCHAR", "interaction: requestor's model"),
    Column("responder_provider", "VARCHAR", "interaction: responder's provider"),
    Column("responder_model", "VARCHAR", "interaction: responder's model"),
    Column("request_output_tokens", "BIGINT", "flow 1: request generated by the requestor"),
    Column("request_input_tokens", "BIGINT", "flow 2: request read by the responder"),
    Column("request_input_cached_tokens", "BIGINT", "flow 2: part of it read from cache"),
    Column("response_output_tokens", "BIGINT", "flow 3: response generated by the responder"),
    Column("response_input_tokens", "BIGINT", "flow 4: response read by the requestor"),
    Column("response_input_cached_tokens", "BIGINT", "flow 4: part of it read from cache"),
    Column("cosigned", "BOOLEAN", "interaction: the responder co-signed it"),
)
OTHER = (Column("details_json", "VARCHAR", "control and derived events: the body as JSON"),
         Column("_batch", "BIGINT", "commit batch (internal: incremental publishing)"))

EVENTS = View(name="events", doc="Every accepted event, one row each, flattened for SQL.",
              columns=COMMON + ACTION + DATA + COMPUTE + TRUST + INTERACTION + OTHER)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, tuple) and all(isinstance(x, tuple) and len(x) == 2 for x in v):
        return {k: x for k, x in v}
    return v


def details(body: Body) -> str:
    import dataclasses

    return json.dumps({f.name: _jsonable(getattr(body, f.name)) for f in dataclasses.fields(body)},  # type: ignore[arg-type]
                      sort_keys=True)


ACTION_COLS = tuple(c.name for c in ACTION)
DATA_COLS = tuple(c.name for c in DATA)
COMPUTE_COLS = tuple(c.name for c in COMPUTE)
TRUST_COLS = tuple(c.name for c in TRUST)
INTERACTION_COLS = tuple(c.name for c in INTERACTION)
COMMON_COLS = tuple(c.name for c in COMMON)


def _action(b: Action) -> tuple[Any, ...]:
    u = b.usage
    if u is None:
        return (b.operation, b.cost_weight_milli, b.result_hash, None, None, None, None, None, None, None)
    return (b.operation, b.cost_weight_milli, b.result_hash, u.provider, u.model, u.input_tokens, u.output_tokens,
            u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens)


def _data(b: Data) -> tuple[Any, ...]:
    return (b.bytes_read, b.bytes_written, b.source_hash, b.destination_hash, b.duration_us)


def _compute(b: Compute) -> tuple[Any, ...]:
    return (b.node_id, b.cpu_time_slices, b.gpu_time_slices, b.peak_memory_mb, b.parallel_jobs)


def _trust(b: Trust) -> tuple[Any, ...]:
    return (b.subject_id, b.dimension, b.value_milli, b.half_life_us, b.source)


def _interaction(b: Interaction) -> tuple[Any, ...]:
    return (b.interaction_id, b.requestor_id, b.responder_id, b.requestor_provider, b.requestor_model,
            b.responder_provider, b.responder_model, b.request_output.tokens, b.request_input.tokens,
            b.request_input.cached_tokens, b.response_output.tokens, b.response_input.tokens,
            b.response_input.cached_tokens, b.cosignature is not None)


def _other(b: Body) -> tuple[Any, ...]:
    return (details(b),)


# per body type: (its columns, a function giving their values in that order)
_FLATTEN: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {
    Action: (ACTION_COLS, _action), Data: (DATA_COLS, _data), Compute: (COMPUTE_COLS, _compute),
    Trust: (TRUST_COLS, _trust), Interaction: (INTERACTION_COLS, _interaction),
}
_OTHER = (("details_json",), _other)


def rejected_body(q: Quarantined) -> Rejected:
    value = q.record.value
    fits = len(value) <= limits.MAX_REJECTED_ORIGINAL_BYTES
    return Rejected(topic=q.record.topic, partition=q.record.partition, offset=q.record.offset, code=q.code,
                    reason=q.reason[: limits.MAX_REJECT_REASON_CHARS],
                    evidence_json=json.dumps(q.evidence, sort_keys=True,
                                             default=str)[: limits.MAX_DEAD_LETTER_EVIDENCE_CHARS],
                    original=value if fits else b"", original_size=len(value),
                    original_sha256=hashlib.sha256(value).digest())


def record_time_us(q: Quarantined) -> int:
    """Event time of a dead letter: the record's log timestamp (stored on the log, so replays agree),
    kept inside the valid event-time range."""
    t = q.record.timestamp_ms * 1000
    return min(max(t, limits.MIN_EVENT_TIME_US), limits.MAX_EVENT_TIME_US)


GRANTS = View(
    name="grants", doc="Every grant and withdrawal the operator signed (grant control events), in log order: "
                       "who may do what beyond their role.",
    columns=(
        Column("event_id", "VARCHAR", "the grant control event"),
        Column("agent_id", "VARCHAR", "the signer granted"),
        Column("capability", "VARCHAR", "backfill | notary | grader | reserve"),
        Column("scope", "VARCHAR", "reserve: '<level>:<id>'; '' otherwise"),
        Column("max_age_us", "BIGINT", "backfill: how far back its events may claim (us); 0 otherwise"),
        Column("active", "BOOLEAN", "true: granted; false: withdrawn"),
        Column("event_time_us", "BIGINT", "the grant's event time (us)"),
        Column("append_time_us", "BIGINT", "when the log appended it (us): its place in the log order"),
        Column("log_topic", "VARCHAR", "topic of the record"),
        Column("log_offset", "BIGINT", "offset of the record"),
        BATCH,
    ))


class Journal(Processor):
    name = "journal"
    derived_topics = ("rejected",)
    doc = ("every accepted event flattened into `events` (and once onto <prefix>.events.flat for Kafka tools); "
           "every rejected record in `rejections`")
    views = (EVENTS, GRANTS)
    publishes_rejections = True
    # every row is one event (or one rejected record, one grant) of the partition it was read from, and its only
    # cross-record state (``registered``) comes from control, which every shard reads whole
    shardable = True
    shard_refusal = ""
    control_rows: ClassVar[dict[str, str]] = {"events": "topic", "grants": "log_topic"}

    def __init__(self) -> None:
        # agent ids registered so far (one per registration: bounded by the operator, not by the log)
        self.registered: set[str] = set()

    def open_edge(self, home: Home, runner: Runner) -> FlatPublisher:
        """The flat topic's publisher the running service drives (module docstring); never opened by a replay."""
        return _open_flat_edge(home, runner)

    def restore(self, query: Any) -> None:
        self.registered = {r[0] for r in query(
            "SELECT DISTINCT json_extract_string(details_json, '$.agent_id') FROM events WHERE kind = ?",
            (AgentRegistered.KIND,)) if r[0] is not None}

    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        fx = Effects()
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}  # by the body's own columns
        grants: list[dict[str, Any]] = []
        for it in items:
            ev = it.decoded.event
            ctx = ev.context
            rec = it.record
            body = ev.body
            if isinstance(body, AgentRegistered):
                self.registered.add(body.agent_id)
            if isinstance(body, Grant):
                grants.append({"event_id": ev.event_id, "agent_id": body.agent_id, "capability": body.capability,
                               "scope": body.scope, "max_age_us": body.max_age_us, "active": body.active,
                               "event_time_us": ev.event_time_us, "append_time_us": rec.append_time_us,
                               "log_topic": rec.topic, "log_offset": rec.offset})
            cols, flatten = _FLATTEN.get(type(body), _OTHER)
            agent = ev.agent
            row = (ev.event_id, ev.signer_id, agent, agent == ev.signer_id or agent in self.registered, it.key_id,
                   ev.seq, body.KIND, ev.event_time_us, ev.event_time_us,
                   ctx.org, ctx.project,
                   ctx.task, ctx.stage, ctx.run, json.dumps(dict(ctx.labels), sort_keys=True) if ctx.labels else None,
                   ev.idempotency_key, rec.topic, rec.partition, rec.offset, *flatten(body))
            groups.setdefault(cols, []).append(row)
        for cols, rows in groups.items():
            # rows -> columns in C (zip), not value by value in Python
            # every row of a group has the group's columns: strict zips only assert it
            columns: dict[str, Any] = dict(zip(COMMON_COLS + cols, map(list, zip(*rows, strict=True)), strict=True))
            # microseconds straight into an Arrow timestamp column: no datetime object per event
            columns["event_time"] = pa.array(columns["event_time"], type=pa.timestamp("us"))
            fx.append("events", columns)
        if grants:
            fx.append("grants", columns_of(grants))
        for q in quarantined:
            fx.derived.append(Derived(topic="rejected", body=rejected_body(q), event_time_us=record_time_us(q),
                                      idempotency_key=f"rejected:{q.record.topic}:{q.record.partition}:{q.record.offset}"))
        return fx




FLAT_TOPIC = "events.flat"  # logical: published on <prefix>.events.flat
# where the flat encoder finds these among the view's public columns (= the flat schema's fields, in order)
_AGENT, _EVENT_TIME, _EVENT_TIME_US = (EVENTS.public_columns.index(c) for c in ("agent", "event_time", "event_time_us"))


def flat_format(registry: schema_registry.SchemaRegistry | None, topic: str) -> FlatFormat:
    """How an ``events`` row becomes a flat record on ``topic``, and back: Confluent wire format under the
    registry's id for the current flat schema (registered here, idempotently), else single-object encoding."""
    frame: Any
    if registry is not None:
        schema_id = registry.register(schema_registry.value_subject(topic), flat.schema_text())

        def frame(body: bytes) -> bytes:
            return flat.frame_confluent(schema_id, body)

        describe = f"confluent wire format, schema id {schema_id} at {registry.url}"
    else:
        frame = flat.frame_single_object
        describe = f"avro single-object, fingerprint {flat.current().fingerprint_hex}"

    def encode(values: tuple[Any, ...]) -> tuple[bytes, bytes]:
        # the view's TIMESTAMP reads back as a naive datetime: the record carries the exact microseconds instead
        v = list(values)
        v[_EVENT_TIME] = v[_EVENT_TIME_US]
        return v[_AGENT].encode(), frame(flat.encode_values(v))

    def position(rec: Record) -> tuple[str, str, int, int, int]:
        if rec.key is None:
            raise ValidationError("key", None, "a flat record is keyed by its agent id",
                                  topic=rec.topic, partition=rec.partition, offset=rec.offset)
        f = flat.decode(rec.value, None if registry is None else registry.flat_schema).fields
        return rec.key.decode(), f["topic"], f["log_partition"], f["log_offset"], f["seq"]

    return FlatFormat(encode=encode, position=position, describe=describe)


def _open_flat_edge(home: Home, runner: Runner) -> FlatPublisher:
    if tuple(EVENTS.public_columns) != flat.field_names():
        # a column added to the view needs a new schema version (schemas/README.md), never a silent mismatch
        raise ValidationError("events.flat", flat.current().fingerprint_hex,
                              "the flat schema's fields are not the events view's public columns",
                              view=EVENTS.public_columns, schema=list(flat.field_names()))
    url = schema_registry.configured_url(home.config)
    registry = schema_registry.SchemaRegistry(url) if url else None
    topic = runner.topic(FLAT_TOPIC)
    # as many partitions as the events topic: the flat records of an agent follow its key like its signed ones
    return FlatPublisher(runner, EVENTS, topic, flat_format(registry, topic),
                         partitions=int(home.config.get("partitions", 1)))
