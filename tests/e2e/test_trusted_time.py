"""Attacks on time and order, on real homes with the embedded log (one clock over the whole log) and, where
marked, on Kafka (the session's broker; partitions merged by append time, ``ledger.log.order``).

The rule under attack: a control event (a price, a budget policy, a key revocation or rotation) applies to
the data appended after it and never to the data appended before it, whatever time any producer claims.
So for every processor a live run (any batch boundaries, any crash points) equals a replay from offset 0,
and ``verify`` accepts exactly what the journal accepted.

- a revoked key: ``tokenledger emit`` refuses it (nothing appended); the same record appended raw (a
  producer bypassing the SDK) is quarantined as ``revoked_key`` by the journal and by ``verify``;
- the operator's own key cannot be revoked (only rotated), and a raw ``key_revoked`` of the last operator
  key is quarantined;
- an agent whose clock runs 20 s ahead, then a rotation, then the new key: replay equals live everywhere;
- back-dated price, budget policy and revocation appended after the data they claim to reach;
- property: one log, random batch sizes and crash/restart points, live equals replay for every processor
  (on Kafka: a few fixed schedules of batch sizes and crash points).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.econ import call, control, emit_as, replay_digests, rows
from typer.testing import CliRunner

from ledger.economics.budget import US_PER_HOUR
from ledger.economics.price_events import default_price_events, price_event_time_us
from ledger.errors import RejectCode, RejectError
from ledger.integrity.keyring import KeyRing
from ledger.integrity.verify import Verifier, audit
from ledger.log import Log
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, build_record, fill, make_home
from ledger.wire import codec
from ledger.wire.events import Action, BudgetPolicy, KeyRevoked, PriceSet
from ledger.wire.timefmt import fmt_time
from processors import order_by_topics
from processors.cli import build_app
from processors.host.service import ensure_processor_key, open_runner, state_file
from processors.runtime.runner import Crash, Runner
from processors.runtime.store import Store

app = build_app()
cli = CliRunner()
PROCESSORS = [name for wave in order_by_topics() for name in wave]  # settlements after allocations
CRASH_POINTS = ("before_commit", "inside_commit", "after_commit", "before_produce", "after_produce")
SECOND = 1_000_000
SKEW_US = 20 * SECOND  # the fast agent's clock runs this far ahead
MODEL = ("anthropic", "claude-sonnet-4-6")


def tl(h: Home, *args: str):
    return cli.invoke(app, [*args, "--home", str(h.path)])


def ends(h: Home) -> dict[tuple[str, int], int]:
    """End offsets of the home's topics (a Kafka cluster may hold other homes' topics too)."""
    log = h.open_log()
    try:
        mine = [t for t in log.topics() if t.startswith(h.config.get("topic_prefix", "ledger") + ".")]
        return {(t, p): log.end_offset(t, p) for t in mine for p in range(log.partitions(t))}
    finally:
        log.close()


def chain_head(h: Home, agent: str) -> tuple[int, bytes]:
    """(seq, hash) of the last event ``agent`` has on the log: a raw record continuing it breaks no chain, so
    the key is the only thing a reader can refuse it for."""
    log = h.open_log()
    try:
        last = log.read_key(h.topic, agent.encode())[-1]
    finally:
        log.close()
    d = codec.decode_event(codec.decode_batch(last.value).events[-1])
    return d.event.seq, d.hash


def append_raw(h: Home, agent: str, record: bytes) -> None:
    log = h.open_log()
    try:
        log.append(h.topic, [(agent.encode(), record)])
    finally:
        log.close()


def run_all(h: Home) -> None:
    """Every processor inline until caught up, in waves (settlements reads what allocations derives)."""
    log = h.open_log()
    try:
        for name in PROCESSORS:
            ensure_processor_key(h, name, log)  # every registration first: the journal sees them all
        for name in PROCESSORS:
            r, store, _ = open_runner(h, name, log)
            try:
                r.run_until_caught_up()
            finally:
                store.close()
    finally:
        log.close()


def replay_digest(h: Home, name: str) -> dict[str, str | None]:
    """Live digest and a replay's (from offset 0, up to the live positions) of processor ``name``."""
    return replay_digests(h, name)


def assert_replay_equals_live(h: Home) -> None:
    digests = {name: replay_digest(h, name) for name in PROCESSORS}
    differ = {n: d for n, d in digests.items() if d["live"] is None or d["live"] != d["replay"]}
    assert not differ, f"replay differs from live: {differ}"


def verify_report(h: Home) -> tuple[set[str], Counter[str]]:
    """What ``verify`` accepts (event ids) and rejects (codes), over the signed input topics."""
    accepted: set[str] = set()
    log = h.open_log()
    try:
        rep = audit(log, h.ledger_topics, h.anchors(),
                    on_accepted=lambda _w, acc: accepted.update(d.event.event_id for d in acc.events))
    finally:
        log.close()
    return accepted, Counter(rep.rejected or {})


def journal_verdicts(h: Home) -> tuple[set[str], Counter[str]]:
    accepted = {eid for (eid,) in rows(h, "journal", "SELECT event_id FROM events")}
    signed = "', '".join(h.ledger_topics)  # the home's control and events topics (names from its config)
    codes = Counter(code for (code,) in rows(h, "journal", f"SELECT code FROM quarantine WHERE topic IN ('{signed}')"))
    return accepted, codes


def assert_verify_agrees_with_journal(h: Home) -> Counter[str]:
    v_acc, v_rej = verify_report(h)
    j_acc, j_rej = journal_verdicts(h)
    assert v_acc == j_acc
    assert v_rej == j_rej
    return j_rej


def policy(scope_id: str, allocation: int, *, effective_from_us: int = T0) -> BudgetPolicy:
    return BudgetPolicy(scope="agent", scope_id=scope_id, budget_kind="usd", allocation=allocation, soft_limit_pct=80,
                        hard_limit_pct=100, throttle_at_soft=False, suspend_at_hard=False, emergency_reserve_pct=0,
                        hard_limit_action="deny", reset_interval_us=US_PER_HOUR, effective_from_us=effective_from_us)


def price(usd_per_mtok: int, effective_from_us: int) -> PriceSet:
    rate = usd_per_mtok * 1_000_000
    return PriceSet(provider=MODEL[0], model=MODEL[1], input_micros_per_mtok=rate, output_micros_per_mtok=rate,
                    cache_read_micros_per_mtok=rate, cache_write_micros_per_mtok=rate,
                    effective_from_us=effective_from_us)


NewHome = Callable[[tuple[str, ...]], Home]


# the broker form of a test marked with it runs with the slow ones (scripts/slow_tests.sh): its SQLite form stays in
# the default suite, and the other tests here keep both
KAFKA_SLOW = pytest.mark.parametrize(
    "new_home", ["sqlite", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.slow])], indirect=True)


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def new_home(request: pytest.FixtureRequest, tmp_path: Path) -> NewHome:
    """Makes the test's home (with ``agents`` registered) on the embedded log, or on Kafka with topics of its own."""
    if request.param == "kafka":
        url = request.getfixturevalue("kafka_url")
        return lambda agents: make_home(tmp_path / "home", agents=agents, log_url=url,
                                        topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    return lambda agents: make_home(tmp_path / "home", agents=agents)


def priced_home(path: Path, agents: tuple[str, ...]) -> Home:
    return priced(make_home(path, agents=agents), agents)


def priced(h: Home, agents: tuple[str, ...]) -> Home:
    """``h`` with the default price book and a budget policy for each of ``agents`` appended."""
    control(h, default_price_events(), times=[price_event_time_us(b) for b in default_price_events()])
    control(h, [policy(a, 50 * 1_000_000) for a in agents], t=T0 + 20)
    return h


def llm_calls(h: Home, agent: str, times: list[int], *, key_file_agent: str | None = None) -> None:
    with Emitter.open(key_file_agent or agent, home=h.path, background_flush=False, batch_size=2) as em:
        for t in times:
            em.action("llm", provider=MODEL[0], model=MODEL[1], input_tokens=100_000, output_tokens=10_000,
                      event_time_us=t)


# ------------------------------------------------------------------ a revoked key


def test_revoked_key_emit_refused_and_raw_record_quarantined(new_home):
    h = new_home(("alice", "eve"))
    assert tl(h, "emit", "action", "-a", "eve", "--operation", "before", "--time", fmt_time(T0 + 1_000_000)).exit_code == 0
    assert tl(h, "agent", "revoke", "eve", "--reason", "stolen").exit_code == 0
    before = ends(h)
    r = tl(h, "emit", "action", "-a", "eve", "--operation", "x", "--time", "2025-01-01T00:00:00Z")
    assert r.exit_code == 1 and "revoked_key" in r.output and "appended" not in r.stdout
    assert ends(h) == before  # nothing appended
    # the very record, built by hand (continuing eve's chain) and appended bypassing the SDK
    seq, prev = chain_head(h, "eve")
    back_dated = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z: a year before the revocation's event time
    rec, _ = build_record(h.load_key("eve"), [Action("x")], start_seq=seq + 1, prev_hash=prev, t=back_dated)
    append_raw(h, "eve", rec)
    run_all(h)
    (row,) = rows(h, "journal", "SELECT code, signer_id FROM quarantine")
    assert row == ("revoked_key", "eve")
    r = tl(h, "verify", "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["rejected"] == {"revoked_key": 1} and out["first_error"]["signer_id"] == "eve"
    assert assert_verify_agrees_with_journal(h) == Counter({"revoked_key": 1})
    assert tl(h, "emit", "action", "-a", "alice", "--operation", "fine").exit_code == 0  # others are unaffected


def test_operator_key_is_rotated_never_revoked(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice",))
    before = ends(h)
    r = tl(h, "agent", "revoke", "operator")
    assert r.exit_code == 2 and "rotate" in r.output
    assert ends(h) == before
    old = h.operator_key()
    assert tl(h, "agent", "rotate", "operator").exit_code == 0
    assert h.operator_key().key_id != old.key_id
    # the successor signs control events readers accept; the old operator key is refused by the emitter
    assert tl(h, "agent", "register", "carol").exit_code == 0
    assert tl(h, "emit", "action", "-a", "carol", "--operation", "hello").exit_code == 0
    log = h.open_log()
    try:
        with Emitter(log, old, topic=h.control_topic, background_flush=False, control_topic=h.control_topic,
                     anchors=h.anchors()) as em, pytest.raises(RejectError) as e:
            em.emit(KeyRevoked(agent_id="alice", key_id=h.load_key("alice").key_id), event_time_us=T0 + 10)
    finally:
        log.close()
    assert e.value.code is RejectCode.REVOKED_KEY
    assert tl(h, "verify").exit_code == 0


def test_raw_revocation_of_the_last_operator_key_is_quarantined(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice",))
    op = h.operator_key()
    log = h.open_log()
    try:
        for name in PROCESSORS:
            # registered first: the operator's chain continues from the refused record, so readers would refuse
            # every later control event of this operator as a sequence gap
            ensure_processor_key(h, name, log)
        # an operator tool without the SDK's checks (no control_topic given): it appends whatever it signs
        with Emitter(log, op, topic=h.control_topic, state_dir=h.state_dir, background_flush=False) as em:
            em.emit(KeyRevoked(agent_id="operator", key_id=op.key_id, reason="oops"), event_time_us=T0 + 50)
    finally:
        log.close()
    run_all(h)
    ((code, reason),) = rows(h, "journal", "SELECT code, reason FROM quarantine")
    assert code == "invalid_field" and "no valid operator key" in reason
    assert assert_verify_agrees_with_journal(h) == Counter({"invalid_field": 1})
    verifier = Verifier(KeyRing(h.anchors()))
    log = h.open_log()
    try:
        audit(log, h.ledger_topics, h.anchors(), verifier=verifier)
    finally:
        log.close()
    info = verifier.keyring.get(op.key_id)
    assert info is not None and not info.revoked  # the operator's key still signs


# ------------------------------------------------------------------ skewed clock and rotation


@KAFKA_SLOW
def test_fast_clock_then_rotation_replay_equals_live_everywhere(new_home):
    h = priced(new_home(("alice", "fast")), ("alice", "fast"))
    now = T0 + 100 * SECOND
    llm_calls(h, "alice", [now + i for i in range(3)])
    llm_calls(h, "fast", [now + SKEW_US + i for i in range(3)])  # its clock runs 20 s ahead
    emit_as(h, "alice", [(call("i1", "alice", "fast", req_model=MODEL, resp_model=MODEL), now + 10)])
    emit_as(h, "fast", [(call("i2", "fast", "alice", req_model=MODEL, resp_model=MODEL), now + SKEW_US + 10)])
    run_all(h)
    old = h.load_key("fast")
    seq, prev = chain_head(h, "fast")
    assert tl(h, "agent", "rotate", "fast").exit_code == 0
    # the old key (a stolen copy) is refused by the SDK ...
    log = h.open_log()
    try:
        with Emitter(log, old, topic=h.topic, background_flush=False, control_topic=h.control_topic,
                     anchors=h.anchors()) as em, pytest.raises(RejectError) as e:
            em.action("stale", event_time_us=now + 1)
    finally:
        log.close()
    assert e.value.code is RejectCode.REVOKED_KEY
    # ... and, appended raw and dated before the rotation, quarantined: the log order says it came after
    rec, _ = build_record(old, [Action("stale")], start_seq=seq + 1, prev_hash=prev, t=now + 1)
    append_raw(h, "fast", rec)
    # the new key continues the chain (still 20 s ahead), then alice, now behind it
    llm_calls(h, "fast", [now + SKEW_US + 100 + i for i in range(3)])
    emit_as(h, "fast", [(call("i3", "fast", "alice", req_model=MODEL, resp_model=MODEL), now + SKEW_US + 200)])
    llm_calls(h, "alice", [now + 50 + i for i in range(2)])
    run_all(h)
    assert_replay_equals_live(h)
    assert assert_verify_agrees_with_journal(h) == Counter({"revoked_key": 1})
    keys = Counter(k for (k,) in rows(h, "journal", "SELECT key_id FROM events WHERE signer_id = 'fast'"))
    assert keys[old.key_id] == 4 and keys[h.load_key("fast").key_id] == 4  # 3 calls + 1 interaction each side


# ------------------------------------------------------------------ back-dated control after the data


@KAFKA_SLOW
def test_back_dated_controls_after_the_data_replay_equals_live_everywhere(new_home):
    h = priced(new_home(("alice", "bob")), ("alice", "bob"))
    now = T0 + 1_000 * SECOND
    llm_calls(h, "alice", [now + i for i in range(4)])
    llm_calls(h, "bob", [now + 10 + i for i in range(4)])
    emit_as(h, "alice", [(call("i1", "alice", "bob", req_model=MODEL, resp_model=MODEL), now + 20)])
    run_all(h)
    bob_events_before = rows(h, "journal", "SELECT count(*) FROM events WHERE signer_id = 'bob'")[0][0]
    seq, prev = chain_head(h, "bob")
    # all three claim a time before the data they follow
    control(h, [price(50, T0)], t=T0 + 30)
    control(h, [policy("alice", 1, effective_from_us=T0)], t=T0 + 31)
    control(h, [KeyRevoked(agent_id="bob", key_id=h.load_key("bob").key_id, reason="back-dated")], t=T0 + 32)
    run_all(h)
    # a back-dated revocation does not reach bob's records appended before it
    assert rows(h, "journal", "SELECT count(*) FROM events WHERE signer_id = 'bob'")[0][0] == bob_events_before
    # bob's record appended after it is refused whatever it claims (raw: the SDK refuses it)
    rec, _ = build_record(h.load_key("bob"), [Action("late")], start_seq=seq + 1, prev_hash=prev, t=now + 15)
    append_raw(h, "bob", rec)
    llm_calls(h, "alice", [now + 30 + i for i in range(3)])
    emit_as(h, "alice", [(call("i2", "alice", "bob", req_model=MODEL, resp_model=MODEL), now + 40)])
    run_all(h)
    assert_replay_equals_live(h)
    assert assert_verify_agrees_with_journal(h) == Counter({"revoked_key": 1})


# ------------------------------------------------------------------ property: batch boundaries and crashes


def _interleaved_home(path: Path, *, log_url: str | None = None, topic_prefix: str | None = None) -> Home:
    """One log with the demo workload in three parts and control events (back-dated prices and policies, a
    rotation, a revocation, whose victim keeps appending raw-through-its-emitter) appended between them."""
    h = make_home(path, agents=(), log_url=log_url, topic_prefix=topic_prefix)
    control(h, default_price_events(), times=[price_event_time_us(b) for b in default_price_events()])
    fill(h, tasks=3, batch_size=3, seed=5, run="r1")
    control(h, [price(40, T0)], t=T0 + 40)
    control(h, [policy("planner", 2_000_000, effective_from_us=T0)], t=T0 + 41)
    assert tl(h, "agent", "rotate", "researcher").exit_code == 0
    fill(h, tasks=3, batch_size=2, seed=6, run="r2")
    control(h, [KeyRevoked(agent_id="writer", key_id=h.load_key("writer").key_id, reason="gone")], t=T0 + 42)
    fill(h, tasks=3, batch_size=4, seed=7, run="r3")  # the writer's events here are refused by every reader
    return h


@pytest.fixture(scope="module")
def interleaved_template(tmp_path_factory) -> Path:
    h = _interleaved_home(tmp_path_factory.mktemp("template") / "home")
    log = h.open_log()
    try:
        for name in PROCESSORS:
            ensure_processor_key(h, name, log)  # registered once: every example's log starts the same
    finally:
        log.close()
    return h.path


LIFE = st.tuples(st.integers(1, 7), st.sampled_from((*CRASH_POINTS, None)), st.integers(1, 4))


def _run_with_crashes(h: Home, name: str, lives: list[tuple[int, str | None, int]], final_batch: int) -> int:
    """Run ``name`` live through ``lives`` (batch size, crash point, crash on the n-th pass), each life a new
    runner on the same DuckDB file, then one last life to the end. Returns the number of crashes."""
    crashes = 0
    log = h.open_log()
    try:
        key = h.load_key(f"processor.{name}")
        from processors import get

        for max_records, point, nth in [*lives, (final_batch, None, 0)]:
            left = {"n": nth}

            def hook(p: str, point: str | None = point, left: dict[str, int] = left) -> None:
                if p == point:
                    left["n"] -= 1
                    if left["n"] <= 0:
                        raise Crash(p)

            proc = get(name)()
            state_file(h, name).parent.mkdir(parents=True, exist_ok=True)
            store = Store(state_file(h, name), proc.views)
            try:
                r = Runner(proc, log, store, anchors=h.anchors(), key=key, crash_hook=hook, max_records=max_records,
                           topic_prefix=h.config.get("topic_prefix", "ledger"))
                r.run_until_caught_up()
            except Crash:
                crashes += 1  # the process died: only the DuckDB file (and what it appended) remains
            finally:
                store.close()
    finally:
        log.close()
    return crashes


@pytest.mark.slow  # six examples, each six processors run through crashes and replayed: minutes on a busy machine
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(schedule=st.fixed_dictionaries({n: st.lists(LIFE, max_size=3) for n in PROCESSORS}),
       final_batch=st.integers(1, 9))
def test_any_batch_boundaries_and_crash_points_reach_the_replay_digest(interleaved_template, schedule, final_batch):
    tmp = Path(tempfile.mkdtemp(prefix="trusted-time-"))
    try:
        shutil.copytree(interleaved_template, tmp / "home")
        h = Home.open(tmp / "home")
        for name in PROCESSORS:
            _run_with_crashes(h, name, schedule[name], final_batch)
        assert_replay_equals_live(h)
        rejected = assert_verify_agrees_with_journal(h)
        assert rejected["revoked_key"] > 0  # the writer's records after its revocation were refused
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ Kafka: batch sizes and crashes, live = replay


@pytest.mark.kafka
@pytest.mark.slow  # ~40 s for the three; scripts/slow_tests.sh
@pytest.mark.parametrize("lives,final_batch", [
    ([], 1),  # one record per poll: control and data interleave at every record boundary
    ([(3, "after_commit", 2), (1, "before_produce", 1)], 7),
    ([(2, "inside_commit", 3), (5, None, 0)], 200),  # ends with the default batch size
])
def test_kafka_live_batch_sizes_and_crashes_reach_the_replay_digest(kafka_url, tmp_path, lives, final_batch):
    """On Kafka the partitions are merged by append time while the log is read live, batch after batch and
    across restarts: every processor ends where a replay from offset 0 does, and verify agrees with the journal."""
    h = _interleaved_home(tmp_path / "home", log_url=kafka_url, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    log = h.open_log()
    try:
        for name in PROCESSORS:
            ensure_processor_key(h, name, log)
    finally:
        log.close()
    for name in PROCESSORS:
        _run_with_crashes(h, name, lives, final_batch)
    assert_replay_equals_live(h)
    rejected = assert_verify_agrees_with_journal(h)
    assert rejected["revoked_key"] > 0  # the writer's records after its revocation were refused


def _raw_produce(h: Home, topic: str, value: bytes, timestamp_ms: int) -> None:
    """Append with a timestamp the producer chose, past KafkaLog (which never sets one): Tansu stores it."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=h.config["log"][len("kafka://"):].split(","), acks="all")
    try:
        producer.send(topic, key=b"raw", value=value, partition=0, timestamp_ms=timestamp_ms).get(30)
    finally:
        producer.close()


def _journal(h: Home, log: Log) -> tuple[Runner, Store]:
    from processors import get

    proc = get("journal")()
    state_file(h, "journal").parent.mkdir(parents=True, exist_ok=True)
    store = Store(state_file(h, "journal"), proc.views)
    return Runner(proc, log, store, anchors=h.anchors(), key=h.load_key("processor.journal"),
                  topic_prefix=h.config["topic_prefix"]), store


@pytest.mark.kafka
@pytest.mark.skipif(bool(os.environ.get("TOKENLEDGER_TEST_KAFKA", "").strip()),
                    reason="needs a broker that keeps the producer's timestamp (Tansu); Kafka stamps LogAppendTime")
def test_kafka_control_stamped_behind_what_was_folded_stops_the_runner_and_a_future_stamp_waits(kafka_url, tmp_path):
    """Where the log's promise fails (a writer whose clock is behind: a control record stamped before data a
    live reader already folded), the runner refuses to fold on instead of diverging from a replay; and
    a record stamped ahead of the reader's clock is held, never folded early."""
    from ledger.errors import RunnerInvariantError

    h = make_home(tmp_path / "home", agents=("alice",), log_url=kafka_url, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    log = h.open_log()
    try:
        ensure_processor_key(h, "journal", log)
        llm_calls(h, "alice", [T0 + i for i in range(2)])
        r, store = _journal(h, log)
        try:
            r.run_until_caught_up()
            folded = dict(r.positions)
            # data stamped an hour ahead: complete partitions, yet it is not folded before the clock gets there
            _raw_produce(h, h.topic, b"from the future", int(time.time() * 1000) + 3_600_000)
            assert r.step() == 0 and r.positions == folded and not r.caught_up()
            # control stamped in 1970: its append time is control's running maximum, before the folded data's
            _raw_produce(h, h.control_topic, b"from the past", 1_000)
            with pytest.raises(RunnerInvariantError) as e:
                r.step()
            assert e.value.evidence["invariant"] == "merged_order"
            assert e.value.evidence["topic"] == h.control_topic
            assert r.positions == folded
        finally:
            store.close()
        r, store = _journal(h, log)  # a restart remembers how far the order was folded
        try:
            with pytest.raises(RunnerInvariantError):
                r.step()
        finally:
            store.close()
    finally:
        log.close()
