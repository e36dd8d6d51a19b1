"""The flat event topic (<prefix>.events.flat), read by consumers that are not ours.

Method: a real home (SQLite, or the Tansu test broker), events of every data kind with token counts written here,
the journal run as ``tokenledger run journal --until-caught-up`` (its own process, the live service), then the topic
read back by
- plain ``fastavro`` with nothing but ``schemas/event_flat.v1.avsc``: the single-object header checked against
  fastavro's own CRC-64-AVRO fingerprint of the file's canonical form, the body read with the file's schema;
- ``confluent-kafka``: its ``Consumer`` on the broker and its ``AvroDeserializer`` with a ``SchemaRegistryClient``
  against the loopback registry (``ledger.testing.schema_registry``), the schema id in each record's header.
Each is compared, event by event, with the journal's ``events`` view. Exactly once: a second run, a replay, a
rebuild from an empty state file and SIGKILLs at the publisher's crash points append no second copy and lose none.
"""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form
from typer.testing import CliRunner

from ledger.errors import ValidationError
from ledger.integrity.keys import SigningKey, save_key
from ledger.log import read_all
from ledger.sdk import schema_registry as sr
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, TEST_WINDOW
from ledger.testing.schema_registry import schema_registry
from ledger.wire import flat
from ledger.wire.events import AgentRegistered
from processors.cli import build_app
from processors.journal import EVENTS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "event_flat.v1.avsc"
AGENTS = ("alice", "bob", "carol")
PARTITIONS = 3
cli = CliRunner()
app = build_app()


# ---------------------------------------------------------------------------------- helpers


def _home(path: Path, log_url: str | None = None) -> Home:
    """A home with PARTITIONS event partitions (so the flat topic has as many), the operator and AGENTS registered."""
    prefix = f"t{uuid.uuid4().hex[:10]}" if log_url else "ledger"
    h = Home.init(path, log_url=log_url, topic_prefix=prefix, partitions=PARTITIONS)
    op = h.operator_key()
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            em.emit(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), event_time_us=T0)
            for i, a in enumerate(AGENTS):
                k = SigningKey.generate(a)
                save_key(h.key_path(a), k)
                em.emit(AgentRegistered(agent_id=a, key_id=k.key_id, public_key=k.public.raw, priority=i + 1),
                        event_time_us=T0 + 1 + i)
            em.emit(TEST_WINDOW, event_time_us=T0 + 1 + len(AGENTS))
    finally:
        log.close()
    return h


def _emit(h: Home, run: str) -> dict[str, str]:
    """One event of each data kind, with counts chosen here; their ids by name."""
    ids = {}
    with Emitter.open("alice", home=h.path, background_flush=False) as em:
        ids["llm"] = em.action("summarize", provider="anthropic", model="claude-sonnet-4-6", input_tokens=12_000,
                               output_tokens=900, cache_read_tokens=8_000, cache_write_tokens=1_000,
                               reasoning_tokens=200, idempotency_key=f"{run}-llm", event_time_us=T0 + 100)
        ids["data"] = em.data(bytes_read=4_096, bytes_written=512, idempotency_key=f"{run}-data",
                              event_time_us=T0 + 101)
    with Emitter.open("bob", home=h.path, background_flush=False) as em:
        ids["compute"] = em.compute(node_id="gpu-3", cpu_time_slices=7, gpu_time_slices=2, peak_memory_mb=2_048,
                                    idempotency_key=f"{run}-compute", event_time_us=T0 + 102)
        ids["trust"] = em.trust("carol", "accuracy", "0.75", idempotency_key=f"{run}-trust", event_time_us=T0 + 103)
    with Emitter.open("carol", home=h.path, background_flush=False) as em:
        ids["call"] = em.interaction(responder_id="alice", interaction_id=f"{run}-call", requestor_provider="openai",
                                     requestor_model="gpt-4.1", responder_provider="anthropic",
                                     responder_model="claude-sonnet-4-6", request_tokens=1_500,
                                     response_tokens=4_000, request_cached_tokens=300, response_cached_tokens=250,
                                     idempotency_key=f"{run}-call", event_time_us=T0 + 104)
    return ids


def _run(h: Home, *extra: str) -> None:
    p = subprocess.run([sys.executable, "-m", "processors.cli", "run", "journal", "--until-caught-up", "--home",
                        str(h.path), *extra], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr


def _worker(h: Home, crash_at: str) -> int:
    p = subprocess.run([sys.executable, "-m", "processors.host.worker", "journal", "--home", str(h.path),
                        "--until-caught-up", "--max-records", "2", "--crash-at", crash_at],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    return p.returncode


def _view(h: Home) -> dict[str, dict[str, Any]]:
    """The journal's published events view, by event id (event_time left out: it is event_time_us)."""
    r = cli.invoke(app, ["query", "SELECT * EXCLUDE (event_time) FROM events", "--home", str(h.path), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    return {row["event_id"]: row for row in rows}


def _flat(h: Home) -> list[Any]:
    log = h.open_log()
    try:
        return read_all(log, h.topic_for("events.flat"))
    finally:
        log.close()


def _plain_fastavro(value: bytes) -> dict[str, Any]:
    """Decode a single-object record knowing nothing but the schema file (and the Avro specification)."""
    schema = fastavro.parse_schema(json.loads(SCHEMA_FILE.read_text()))
    assert value[:2] == b"\xc3\x01"
    assert value[2:10].hex() == fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)
    again = io.BytesIO()
    fastavro.schemaless_writer(again, schema, record)
    assert again.getvalue() == value[10:], "the journal's encoder and fastavro (the reference) differ"
    return record


def _check_against_view(h: Home, decoded: list[tuple[bytes | None, dict[str, Any]]], ids: dict[str, str]) -> None:
    view = _view(h)
    by_id = {f["event_id"]: (key, f) for key, f in decoded}
    assert len(by_id) == len(decoded), "an event was published twice"
    assert set(by_id) == set(view)
    for eid, row in view.items():
        key, f = by_id[eid]
        assert key == row["agent"].encode()
        assert f["event_time"].timestamp() * 1_000_000 == pytest.approx(row["event_time_us"], abs=1)
        assert {k: v for k, v in f.items() if k != "event_time"} == row
    llm = by_id[ids["llm"]][1]
    assert (llm["kind"], llm["provider"], llm["model"]) == ("action", "anthropic", "claude-sonnet-4-6")
    assert (llm["input_tokens"], llm["output_tokens"], llm["cache_read_tokens"], llm["cache_write_tokens"],
            llm["reasoning_tokens"]) == (12_000, 900, 8_000, 1_000, 200)
    assert llm["request_output_tokens"] is None and llm["details_json"] is None
    data = by_id[ids["data"]][1]
    assert (data["kind"], data["bytes_read"], data["bytes_written"], data["input_tokens"]) == ("data", 4_096, 512, None)
    comp = by_id[ids["compute"]][1]
    assert (comp["node_id"], comp["cpu_time_slices"], comp["gpu_time_slices"], comp["peak_memory_mb"]) == \
        ("gpu-3", 7, 2, 2_048)
    trust = by_id[ids["trust"]][1]
    assert (trust["subject_id"], trust["dimension"], trust["trust_value_milli"]) == ("carol", "accuracy", 750)
    call = by_id[ids["call"]][1]
    assert (call["request_output_tokens"], call["request_input_tokens"], call["request_input_cached_tokens"],
            call["response_output_tokens"], call["response_input_tokens"], call["response_input_cached_tokens"]) == \
        (1_500, 1_500, 300, 4_000, 4_000, 250)
    assert (call["requestor_id"], call["responder_id"], by_id[ids["call"]][0]) == ("carol", "alice", b"carol")


def _plain(h: Home) -> list[tuple[bytes | None, dict[str, Any]]]:
    return [(r.key, _plain_fastavro(r.value)) for r in _flat(h)]


# ---------------------------------------------------------------------------------- the schema


def test_the_schema_file_is_the_events_views_public_columns():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert (schema["name"], schema["namespace"]) == ("EventFlat", "tokenledger")
    avro = {"VARCHAR": "string", "BIGINT": "long", "INTEGER": "int", "BOOLEAN": "boolean"}
    cols = [c for c in EVENTS.columns if not c.name.startswith("_")]
    assert [f["name"] for f in schema["fields"]] == [c.name for c in cols]
    always = {"event_id", "signer_id", "agent", "agent_registered", "key_id", "seq", "kind", "event_time",
              "event_time_us", "topic", "log_partition", "log_offset"}
    for f, c in zip(schema["fields"], cols, strict=True):
        t = {"type": "long", "logicalType": "timestamp-micros"} if c.sql_type == "TIMESTAMP" else avro[c.sql_type]
        if c.name in always:
            assert f["type"] == t, c.name
        else:
            assert (f["type"], f["default"]) == (["null", t], None), c.name


def test_the_current_flat_schema_is_released():
    assert (ROOT / "schemas" / "released" / f"EventFlat-{flat.current().fingerprint_hex}.json").exists()
    assert flat.current().fingerprint in flat.released()


# ---------------------------------------------------------------------------------- single-object, fastavro


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def home(request, tmp_path) -> Home:
    if request.param == "kafka":
        return _home(tmp_path / "home", request.getfixturevalue("kafka_url"))
    return _home(tmp_path / "home")


def test_every_accepted_event_once_decoded_by_plain_fastavro(home):
    ids = _emit(home, "r1")
    _run(home)
    first = _plain(home)
    _check_against_view(home, first, ids)
    assert {r.partition for r in _flat(home)} <= set(range(PARTITIONS))
    # every agent's records in one partition: the key's
    by_key: dict[bytes | None, set[int]] = {}
    for r in _flat(home):
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(ps) == 1 for ps in by_key.values())
    # a second run and a replay append nothing
    _run(home)
    r = cli.invoke(app, ["replay", "journal", "--home", str(home.path)])
    assert r.exit_code == 0, r.output
    assert len(_flat(home)) == len(first)
    # more events: only they are added
    more = _emit(home, "r2")
    _run(home)
    after = _plain(home)
    assert len(after) == len(first) + len(more)
    _check_against_view(home, after, more)


@pytest.mark.parametrize("point", ["after_commit:1", "before_flat_produce:1", "after_flat_produce:1",
                                   "after_flat_produce:3"])
def test_a_crash_around_the_publish_neither_loses_nor_duplicates(tmp_path, point):
    h = _home(tmp_path / "home")
    ids = _emit(h, "r1")
    assert _worker(h, point) == -signal.SIGKILL
    if point.startswith("after_flat_produce"):
        assert _flat(h), "the crash came after an append: records are on the log, unconfirmed"
    _run(h)
    _check_against_view(h, _plain(h), ids)


def test_a_rebuild_from_an_empty_state_appends_no_second_copy(tmp_path):
    h = _home(tmp_path / "home")
    _emit(h, "r1")
    _run(h)
    n = len(_flat(h))
    shutil.move(h.processor_dir("journal"), tmp_path / "old-journal-state")
    ids = _emit(h, "r2")
    _run(h)
    decoded = _plain(h)
    assert len(decoded) == n + len(ids)
    _check_against_view(h, decoded, ids)


# ---------------------------------------------------------------------------------- Confluent, with a registry


def _confluent_deserialize(url: str, topic: str, value: bytes) -> dict[str, Any]:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    return AvroDeserializer(SchemaRegistryClient({"url": url}))(value, SerializationContext(topic, MessageField.VALUE))


def test_registry_from_the_home_config_on_sqlite(tmp_path):
    h = _home(tmp_path / "home")
    ids = _emit(h, "r1")
    with schema_registry() as (url, state):
        cfg = json.loads((h.path / "config.json").read_text())
        (h.path / "config.json").write_text(json.dumps({**cfg, "schema_registry": url}))
        _run(h)
        topic = h.topic_for("events.flat")
        latest = sr.SchemaRegistry(url).latest(f"{topic}-value")
        records = _flat(h)
        assert records and all(r.value[:1] == b"\x00" for r in records)
        assert {int.from_bytes(r.value[1:5], "big") for r in records} == {latest["id"]}
        assert json.loads(latest["schema"]) == json.loads(SCHEMA_FILE.read_text())
        _check_against_view(h, [(r.key, _confluent_deserialize(url, topic, r.value)) for r in records], ids)
        assert ("POST", f"/subjects/{topic}-value/versions") in state.requests


@pytest.mark.kafka
def test_confluent_consumer_and_deserializer_read_the_topic_on_kafka(tmp_path, kafka_url):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    h = _home(tmp_path / "home", kafka_url)
    ids = _emit(h, "r1")
    topic = h.topic_for("events.flat")
    with schema_registry() as (url, _):
        _run(h, "--schema-registry", url)
        _run(h, "--schema-registry", url)  # a second run appends nothing
        expected = len(_view(h))
        consumer = Consumer({"bootstrap.servers": kafka_url.removeprefix("kafka://"), "group.id": f"g{uuid.uuid4()}",
                             "enable.auto.commit": False})
        try:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
            got: list[tuple[bytes | None, dict[str, Any]]] = []
            polls = 0
            while len(got) < expected + 1 and polls < 60:  # one more than expected: a duplicate would show
                polls += 1
                for m in consumer.consume(num_messages=500, timeout=1.0):
                    assert m.error() is None, m.error()
                    got.append((m.key(), _confluent_deserialize(url, topic, m.value())))
                if len(got) >= expected and polls > 3:
                    break
        finally:
            consumer.close()
        sid = sr.SchemaRegistry(url).latest(f"{topic}-value")["id"]
    assert len(got) == expected
    _check_against_view(h, got, ids)
    assert {int.from_bytes(r.value[1:5], "big") for r in _flat(h)} == {sid}


# ---------------------------------------------------------------------------------- refusals


def test_decode_refuses_what_is_not_a_flat_record():
    body = flat.encode_body({"event_id": "e" * 32, "signer_id": "alice", "agent": "alice", "agent_registered": True,
                             "key_id": "k", "seq": 1, "kind": "data", "event_time": T0, "event_time_us": T0,
                             "topic": "ledger.events", "log_partition": 0, "log_offset": 0, "bytes_read": 10})
    assert flat.decode(flat.frame_single_object(body)).fields["bytes_read"] == 10
    cases = [
        (b"\x01\x02\x03", "neither"),
        (b"\xc3\x01\x00", "shorter than an Avro single-object header"),
        (b"\xc3\x01" + bytes(8) + body, "no released EventFlat schema"),
        (flat.frame_single_object(body) + b"\x00", "1 bytes follow"),
        (flat.frame_single_object(body[:-3]), "does not decode"),
        (b"\x00\x00\x00", "shorter than a Confluent wire-format header"),
        (flat.frame_confluent(7, body), "needs a schema registry"),
    ]
    for value, reason in cases:
        with pytest.raises(ValidationError) as e:
            flat.decode(value)
        assert e.value.field == "value" and reason in e.value.reason, (value, e.value.reason)
    with pytest.raises(ValidationError) as e:
        flat.frame_confluent(0, body)
    assert e.value.field == "schema_id" and e.value.value == 0


def test_registry_urls_and_answers_are_checked(tmp_path):
    for bad, reason in [("ftp://h/", "http:// or https://"), ("http://u:p@h:8081", "credentials"),
                        ("http://h:8081/?x=1", "query"), ("http://h:99999", "port"), ("", "http(s) URL")]:
        with pytest.raises(ValidationError) as e:
            sr.check_url(bad)
        assert e.value.field == "schema_registry" and reason in e.value.reason
    assert sr.configured_url({"schema_registry": "http://h:8081/"}, {}) == "http://h:8081"
    assert sr.configured_url({"schema_registry": "http://a:1"}, {sr.ENV_VAR: "http://b:2"}) == "http://b:2"
    assert sr.configured_url({}, {}) is None
    with schema_registry() as (url, _):
        reg = sr.SchemaRegistry(url)
        with pytest.raises(sr.SchemaRegistryError) as e:
            reg.register("x-value", "{not json")
        assert e.value.evidence["status"] == 422 and e.value.evidence["error_code"] == 42201
        with pytest.raises(sr.SchemaRegistryError) as e:
            reg.flat_schema(99)
        assert e.value.evidence["error_code"] == 40403
    with pytest.raises(sr.SchemaRegistryError):
        sr.SchemaRegistry(url).register("x-value", flat.schema_text())  # the registry is gone
    h = _home(tmp_path / "home")
    r = cli.invoke(app, ["run", "journal", "--until-caught-up", "--home", str(h.path), "--schema-registry", "ftp://x"])
    assert r.exit_code == 2 and "schema-registry" in r.output


# ---------------------------------------------------------------------------------- the README's tools


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(marker)
    fence = text.rindex("```", 0, start)
    return text[text.index("\n", fence) + 1:text.index("```", start)]


@pytest.mark.kafka
@pytest.mark.slow  # scripts/slow_tests.sh
def test_the_readme_duckdb_block_reads_the_topic(tmp_path, kafka_url):
    h = _home(tmp_path / "home", kafka_url)
    _emit(h, "r1")
    _run(h)
    topic = h.topic_for("events.flat")
    bootstrap = kafka_url.removeprefix("kafka://")
    script = tmp_path / "flat_to_duckdb.py"
    script.write_text(_readme_block("# flat_to_duckdb.py"))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={**os.environ, "BOOTSTRAP": bootstrap, "TOPIC": topic, "SCHEMA": str(SCHEMA_FILE)})
    assert p.returncode == 0, p.stderr
    got = {kind: (n, tokens) for kind, n, tokens in ast.literal_eval(p.stdout.strip())}
    expected: dict[str, tuple[int, int | None]] = {}
    for r in _view(h).values():
        n, tokens = expected.get(r["kind"], (0, None))
        expected[r["kind"]] = (n + 1, tokens if r["input_tokens"] is None else (tokens or 0) + r["input_tokens"])
    assert got == expected
    assert got["action"] == (1, 12_000) and got["interaction"] == (1, None)


def test_tail_refuses_the_flat_topic(tmp_path):
    """tail decodes signed batches: it names the flat topic a bad choice rather than show its records as rejected."""
    h = _home(tmp_path / "home")
    r = cli.invoke(app, ["tail", "--topic", "events.flat", "--home", str(h.path)])
    assert r.exit_code == 2 and "events.flat" in r.output
