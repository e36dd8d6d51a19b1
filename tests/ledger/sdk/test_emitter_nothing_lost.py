"""Nothing an emitter acknowledges is lost: batches fit the log's record limit, retries never break a chain,
a key re-used for other content is refused, and a second writer for one agent is refused loudly."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections import Counter

import pytest

from ledger import Emitter, limits
from ledger.errors import ChainForkError, IdempotencyConflictError, IdempotencyWindowError, RecordTooLargeError
from ledger.integrity.keys import SigningKey, save_key
from ledger.integrity.verify import audit
from ledger.log import SqliteLog, read_all
from ledger.sdk import emitter as emitter_module
from ledger.sdk.home import Home
from ledger.testing.homes import T0, make_home
from ledger.wire import codec
from ledger.wire.events import Action, Context, KeyRotated

# 64 labels of ~1 KB: an event of about 65 KB, well inside MAX_EVENT_BYTES; 20 of them are 1.3 MB
BIG_LABELS = tuple((f"k{i:02d}", "x" * 1000) for i in range(limits.MAX_LABELS))

# what make_home appends: the operator's and two agents' registrations and the tests' skew window
HOME_EVENTS = 4


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def home(request: pytest.FixtureRequest, tmp_path):
    """A home on the embedded log, or on the test broker with topics of its own (every finding is about the log)."""
    if request.param == "kafka":
        return make_home(tmp_path / "home", agents=("alice", "bob"), log_url=request.getfixturevalue("kafka_url"),
                         topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    return make_home(tmp_path / "home", agents=("alice", "bob"))


def _audit(h: Home):
    log = h.open_log()
    try:
        return audit(log, h.ledger_topics, h.anchors())
    finally:
        log.close()


def _records(h: Home, agent: str):
    log = h.open_log()
    try:
        return [r for r in read_all(log, h.topic) if r.key == agent.encode()]
    finally:
        log.close()


def _event_ids(h: Home, agent: str) -> Counter[str]:
    return Counter(codec.decode_event(raw).event.event_id for r in _records(h, agent)
                   for raw in codec.decode_batch(r.value).events)


# ------------------------------------------------------------------ 1. batches cut by encoded bytes


def test_large_events_are_cut_into_records_under_the_record_limit_and_all_accepted(home):
    big = Context(labels=BIG_LABELS)
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        ids = [em.emit(Action("big"), event_time_us=T0 + i, context=big) for i in range(20)]
    recs = _records(home, "alice")
    assert len(recs) >= 2, "1.3 MB of events cannot be one record"
    assert all(len(r.key) + len(r.value) <= limits.MAX_RECORD_BYTES for r in recs)
    # cut by bytes, not one event per record: each record but the last holds as many as fit
    assert max(len(r.value) for r in recs) > limits.MAX_RECORD_BYTES // 2
    assert list(_event_ids(home, "alice")) == ids
    rep = _audit(home)
    assert rep.ok and rep.accepted_events == HOME_EVENTS + 20, rep.first_error


def test_an_event_whose_batch_alone_exceeds_the_record_limit_is_refused_at_emit(home, monkeypatch):
    small_limit = 50_000  # below one 65 KB event: its signed batch of one cannot be a record
    monkeypatch.setattr(limits, "MAX_RECORD_BYTES", small_limit)
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        with pytest.raises(RecordTooLargeError) as e:
            em.emit(Action("big"), event_time_us=T0, context=Context(labels=BIG_LABELS))
        assert e.value.value > small_limit and e.value.evidence["limit"] == small_limit
        assert f"{small_limit}-byte limit" in str(e.value)
        assert em.head.seq == 0 and em.stats().pending == 0, "nothing chained"
        em.action("small", event_time_us=T0 + 1)  # the chain goes on from where it was
    assert len(_records(home, "alice")) == 1
    assert _audit(home).ok


# ------------------------------------------------------------------ 2. the idempotency window


def test_a_retry_after_4100_events_returns_its_id_and_appends_nothing(home):
    with Emitter.open("alice", home=home.path, batch_size=1000, background_flush=False) as em:
        first = em.action("call", event_time_us=T0, idempotency_key="req-0")
        for i in range(4_100):
            em.action("op", event_time_us=T0 + 1 + i)
        head = em.head.seq
        assert em.action("call", event_time_us=T0 + 10**6, idempotency_key="req-0") == first
        assert em.head.seq == head and em.stats().deduplicated == 1
        em.action("after", event_time_us=T0 + 10**6 + 1)
    rep = _audit(home)
    assert rep.ok and rep.accepted_events == HOME_EVENTS + 4_102, rep.first_error
    assert max(_event_ids(home, "alice").values()) == 1


def test_a_retry_after_10000_events_and_a_restart_appends_nothing(home):
    with Emitter.open("alice", home=home.path, batch_size=1000, background_flush=False) as em:
        first = em.action("call", event_time_us=T0, idempotency_key="req-0")
        for i in range(10_000):
            em.action("op", event_time_us=T0 + 1 + i)
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        assert em.action("call", event_time_us=T0 + 10**6, idempotency_key="req-0") == first
        assert em.head.seq == 10_001
    ids = _event_ids(home, "alice")
    assert sum(ids.values()) == 10_001 and max(ids.values()) == 1, "one event id is on the ledger once"
    assert _audit(home).ok


def test_the_window_is_rebuilt_from_the_log_when_the_home_lost_it(home):
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        first = em.action("call", event_time_us=T0, idempotency_key="req-0")
    shutil.rmtree(home.state_dir)  # a new machine, or a wiped state directory: the log still has the chain
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        assert em.head.seq == 1
        assert em.action("call", event_time_us=T0 + 5, idempotency_key="req-0") == first
        with pytest.raises(IdempotencyConflictError):
            em.action("other", event_time_us=T0, idempotency_key="req-0")
    assert sum(_event_ids(home, "alice").values()) == 1


def test_the_same_key_with_other_content_is_a_typed_conflict_naming_both_hashes(home):
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        first = em.action("llm.call", provider="p", model="m", input_tokens=5, idempotency_key="resp_1",
                          event_time_us=T0)
        for pending in (True, False):  # while the first is buffered, and once it is appended
            with pytest.raises(IdempotencyConflictError) as e:
                em.action("llm.call", provider="p", model="m", input_tokens=6, idempotency_key="resp_1",
                          event_time_us=T0)
            err = e.value
            assert err.key == "resp_1" and err.evidence["event_id"] == first
            assert err.first_sha256 != err.new_sha256 and len(err.first_sha256) == 64
            assert err.first_sha256 in str(err) and err.new_sha256 in str(err)
            assert em.head.seq == 1
            if pending:
                em.flush()
    with Emitter.open("alice", home=home.path, background_flush=False) as em, \
            pytest.raises(IdempotencyConflictError):  # and after a restart
        em.action("llm.call", provider="p", model="m", input_tokens=6, idempotency_key="resp_1")
    assert len(_records(home, "alice")) == 1 and _audit(home).ok


def test_beyond_the_window_an_old_event_is_refused_never_appended_twice(home, monkeypatch):
    """With a window of 10 events and 1 ms of event time, the 40th event forgets the first; re-emitting
    the first (a retry it can no longer recognise) is refused instead of putting its id on the log twice."""
    monkeypatch.setattr(limits, "IDEMPOTENCY_WINDOW_EVENTS", 10)
    monkeypatch.setattr(limits, "IDEMPOTENCY_WINDOW_US", 1_000)
    monkeypatch.setattr(emitter_module, "_EVICT_STRIDE_EVENTS", 1)
    monkeypatch.setattr(emitter_module, "_SAVE_EVERY_EVENTS", 1)  # trims happen when the state is written
    step = 10_000  # microseconds between events: ten times the time window
    with Emitter.open("alice", home=home.path, batch_size=5, background_flush=False) as em:
        first = em.action("call", event_time_us=T0, idempotency_key="req-0")
        for i in range(1, 40):
            em.action("op", event_time_us=T0 + i * step)
        em.flush()
        with pytest.raises(IdempotencyWindowError) as e:
            em.action("call", event_time_us=T0, idempotency_key="req-0")
        assert e.value.evidence["event_id"] == first and e.value.evidence["horizon_us"] >= T0
        em.action("op", event_time_us=T0 + 35 * step)  # still in the window: a retry
        assert em.head.seq == 40 and em.stats().deduplicated == 1
        em.action("new", event_time_us=T0 + 41 * step)  # a new event after the horizon is fine
    with Emitter.open("alice", home=home.path, background_flush=False) as em, \
            pytest.raises(IdempotencyWindowError):  # the horizon survives a restart
        em.action("call", event_time_us=T0, idempotency_key="req-0")
    assert max(_event_ids(home, "alice").values()) == 1 and _audit(home).ok


def test_the_window_remembers_keyed_and_keyless_events_in_runs_across_a_restart(home):
    """The window is stored as runs of consecutive events (one row per ``_RUN_MAX_EVENTS`` at most): after a
    restart, a keyless retry in the middle of a run and a keyed one are recognised, a key re-used for other
    content is refused with the stored digest, and a keyless event stamped in the past but never emitted is new."""
    ids = {}
    with Emitter.open("alice", home=home.path, batch_size=7, background_flush=False) as em:
        for i in range(2_500):
            key = f"req-{i}" if i % 3 == 0 else None
            ids[i] = em.action(f"op-{i}", event_time_us=T0 + 10 * i, idempotency_key=key)
    db = sqlite3.connect(home.state_dir / "emitters.sqlite")
    runs = db.execute("SELECT first_seq, last_seq, length(ids) FROM idem_runs WHERE signer_id='alice'"
                      " ORDER BY first_seq").fetchall()
    db.close()
    # consecutive runs cover the chain, none longer than a run may be, a few rows in all (not one per event)
    assert runs[0][0] == 1 and runs[-1][1] == 2_500 and len(runs) <= 8
    assert all(runs[k + 1][0] == runs[k][1] + 1 for k in range(len(runs) - 1))
    assert all(n == (l_ - f + 1) * limits.EVENT_ID_HEX_CHARS and l_ - f < emitter_module._RUN_MAX_EVENTS
               for f, l_, n in runs)
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        assert em.action("op-1234", event_time_us=T0 + 12_340) == ids[1_234]  # keyless, mid-run
        assert em.action("op-1233", event_time_us=T0 + 99, idempotency_key="req-1233") == ids[1_233]
        with pytest.raises(IdempotencyConflictError) as e:
            em.action("other", event_time_us=T0, idempotency_key="req-1233")
        assert e.value.evidence["event_id"] == ids[1_233]
        assert em.stats().deduplicated == 2 and em.head.seq == 2_500
        new = em.action("op-1234", event_time_us=T0 + 12_341)  # past, but never emitted
        assert new not in ids.values()
    assert sum(_event_ids(home, "alice").values()) == 2_501 and max(_event_ids(home, "alice").values()) == 1
    assert _audit(home).ok


def test_a_window_lookup_survives_two_ids_with_the_same_first_64_bits(tmp_path):
    """The in-memory filter holds the first 64 bits of each id: an id sharing them with another is still found
    (by its run), and an unknown one sharing them is not."""
    state = emitter_module._State(tmp_path / "s.sqlite")
    a, b, c = "0123456789abcdef" + "a" * 16, "0123456789abcdef" + "b" * 16, "0123456789abcdef" + "c" * 16
    head = emitter_module.Head(3, bytes(32))
    saved = emitter_module._Saved("t", head, 0, 0, -1, -1)
    state.save("s", saved, [(a, 1, 10, bytes([1]) * 32), ("f" * 32, 2, 11, emitter_module.NO_DIGEST),
                            (b, 3, 12, emitter_module.NO_DIGEST)])
    assert state.lookup("s", a) == bytes([1]) * 32  # the filter points at b's seq; a is found in its run
    assert state.lookup("s", b) == emitter_module.NO_DIGEST
    assert state.lookup("s", c) is None and state.lookup("s", "e" * 32) is None
    state.close()


def test_a_state_file_from_before_runs_is_rebuilt_from_the_log(home):
    """A home whose state file holds the old one-row-per-event window: its heads and window are dropped and
    rebuilt from the log on the next open, so retries are still recognised."""
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        first = em.action("call", event_time_us=T0, idempotency_key="req-0")
        second = em.action("op", event_time_us=T0 + 1)
    db = sqlite3.connect(home.state_dir / "emitters.sqlite")
    db.executescript("DROP TABLE idem_runs; CREATE TABLE idem_window (signer_id TEXT NOT NULL, seq INTEGER NOT NULL,"
                     " event_id TEXT NOT NULL, event_time_us INTEGER NOT NULL, digest BLOB NOT NULL,"
                     " PRIMARY KEY(signer_id, seq)) WITHOUT ROWID;")
    db.close()
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        assert em.head.seq == 2
        assert em.action("call", event_time_us=T0 + 5, idempotency_key="req-0") == first
        assert em.action("op", event_time_us=T0 + 1) == second
        assert em.stats().deduplicated == 2
    db = sqlite3.connect(home.state_dir / "emitters.sqlite")
    tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert "idem_window" not in tables and "idem_runs" in tables
    assert sum(_event_ids(home, "alice").values()) == 2 and _audit(home).ok


def test_the_emitters_window_contains_the_readers_duplicate_window():
    # a retry readers would reject as a duplicate is always deduplicated by the emitter before signing
    assert limits.IDEMPOTENCY_WINDOW_EVENTS >= limits.DUPLICATE_WINDOW_EVENTS
    assert limits.MAX_IDEMPOTENCY_WINDOW_EVENTS >= limits.IDEMPOTENCY_WINDOW_EVENTS


# ------------------------------------------------------------------ 3. one writer per agent on the whole log


def _second_home(home: Home, tmp_path, agent: str) -> Home:
    """Another machine: its own home (own state and locks) on the same log, with the agent's key copied."""
    other = tmp_path / "machine-b"
    (other / "keys").mkdir(parents=True)
    shutil.copy(home.config_file, other / "config.json")
    shutil.copy(home.key_path(agent), other / "keys" / f"{agent}.key")
    return Home.open(other)


def test_two_emitters_for_one_agent_in_two_homes_never_acknowledge_a_fork(home, tmp_path):
    b_home = _second_home(home, tmp_path, "alice")
    a = Emitter.open("alice", home=home.path, background_flush=False)
    b = Emitter.open("alice", home=b_home.path, background_flush=False)
    try:
        a.action("from-a", event_time_us=T0 + 1)
        a.flush()  # first on the log: readers accept it
        b.action("from-b", event_time_us=T0 + 2)
        with pytest.raises(ChainForkError) as e:
            b.flush()  # same sequence number, second on the log: a fork, never acknowledged
        assert e.value.evidence["readers_accept_ours"] is False
        with pytest.raises(ChainForkError):
            b.action("again", event_time_us=T0 + 3)  # refused from now on
        a.action("from-a-2", event_time_us=T0 + 4)
        a.flush()  # b's record is below the head a extends: readers rejected it, a's chain is intact
        a.action("from-a-3", event_time_us=T0 + 5)
        a.flush()
    finally:
        a.close()  # nothing pending: closing loses nothing, and releases the lock
        b.close()
    rep = _audit(home)
    assert rep.accepted_events == HOME_EVENTS + 3 and rep.rejected == {"fork": 1}
    # once the other writer is stopped, a reopened emitter continues the chain readers accept
    with Emitter.open("alice", home=b_home.path, background_flush=False) as em:
        assert em.head.seq == 3
        em.action("b-continues", event_time_us=T0 + 6)
    assert _audit(home).accepted_events == HOME_EVENTS + 4


class _PipelinedLog(SqliteLog):
    """The embedded log, asking emitters for three signed records per append (as Kafka asks for several), and
    noting how many each append carried."""

    records_per_append = 3

    def __init__(self, path) -> None:
        super().__init__(path)
        self.appends: list[int] = []

    def append(self, topic, records):
        self.appends.append(len(records))
        return super().append(topic, records)


def test_records_handed_to_one_append_chain_and_verify(tmp_path):
    home = make_home(tmp_path / "home", agents=("alice",))
    log = _PipelinedLog(home.log_file)
    em = Emitter(log, home.load_key("alice"), topic=home.topic, state_dir=home.state_dir, batch_size=2,
                 background_flush=False)
    for i in range(25):
        em.action(f"op-{i}", event_time_us=T0 + i)
        assert em.stats().appended_events == 6 * ((i + 1) // 6)  # nothing goes until three batches wait
    em.close()
    log.close()
    assert log.appends == [3, 3, 3, 3, 1]  # 4 appends of 3 full batches, then close sends the last event
    assert len(_records(home, "alice")) == 13
    rep = _audit(home)
    assert rep.ok and rep.accepted_events == 3 + 25, rep.first_error


def test_a_fork_in_an_append_of_several_records_acknowledges_none_of_them(tmp_path):
    home = make_home(tmp_path / "home", agents=("alice",))
    b_home = _second_home(home, tmp_path, "alice")
    a = Emitter.open("alice", home=home.path, background_flush=False)
    log = _PipelinedLog(home.log_file)
    b = Emitter(log, b_home.load_key("alice"), topic=home.topic, state_dir=b_home.state_dir, batch_size=2,
                background_flush=False)
    try:
        a.action("from-a", event_time_us=T0 + 1)
        a.flush()  # first on the log: readers accept it
        for i in range(5):
            b.action(f"from-b-{i}", event_time_us=T0 + 2 + i)
        with pytest.raises(ChainForkError) as e:
            b.action("from-b-5", event_time_us=T0 + 7)  # the sixth fills three batches: one append of three
        assert e.value.evidence["readers_accept_ours"] is False and "the 6 events" in e.value.hint
        assert b.stats().appended_events == 0 and b.stats().pending == 0 and b.head.seq == 0
        assert log.appends == [3]
    finally:
        a.close()
        b.close()
        log.close()
    rep = _audit(home)
    assert rep.accepted_events == 3 + 1 and sum(rep.rejected.values()) == 3, rep.rejected


def test_an_agent_moved_to_another_home_continues_its_chain(home, tmp_path):
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        em.action("a", event_time_us=T0)
    b_home = _second_home(home, tmp_path, "alice")
    with Emitter.open("alice", home=b_home.path, background_flush=False) as em:
        assert em.head.seq == 1
        em.action("b", event_time_us=T0 + 1)
    rep = _audit(home)
    assert rep.ok and rep.accepted_events == HOME_EVENTS + 2


def test_after_a_rotation_a_new_home_adopts_the_old_keys_records_readers_accept(home, tmp_path):
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        em.action("old-key-1", event_time_us=T0 + 10)
        em.action("old-key-2", event_time_us=T0 + 11)
    new = SigningKey.generate("alice")
    log = home.open_log()
    try:
        with Emitter.for_operator(home, log) as op:
            op.emit(KeyRotated(agent_id="alice", old_key_id=home.load_key("alice").key_id, new_key_id=new.key_id,
                               new_public_key=new.public.raw), event_time_us=T0 + 20)
    finally:
        log.close()
    b = tmp_path / "machine-b"  # the agent moves, with only its new key, to a home with no emitter state
    (b / "keys").mkdir(parents=True)
    shutil.copy(home.config_file, b / "config.json")
    save_key(b / "keys" / "alice.key", new)
    with Emitter.open("alice", home=b, background_flush=False) as em:
        assert em.head.seq == 2, "the old key's records came before its rotation: readers accept them"
        em.action("new-key", event_time_us=T0 + 30)
    rep = _audit(home)
    assert rep.ok and rep.accepted_events == HOME_EVENTS + 2 + 1 + 1, rep.first_error


def test_a_signer_has_one_chain_the_operator_cannot_also_write_the_events_topic(home):
    log = home.open_log()
    try:
        ends = log.end_offset(home.topic, 0)
        with pytest.raises(ChainForkError) as e:
            Emitter(log, home.operator_key(), topic=home.topic, state_dir=home.state_dir, background_flush=False,
                    control_topic=home.control_topic, anchors=home.anchors())
        assert e.value.evidence["chain_topic"] == home.control_topic
        assert log.end_offset(home.topic, 0) == ends
    finally:
        log.close()
    # the state file keeps one head per signer (its chain's), not one per signer and topic
    db = sqlite3.connect(home.state_dir / "emitters.sqlite")
    try:
        rows = db.execute("SELECT signer_id, topic FROM chain_heads").fetchall()
    finally:
        db.close()
    assert rows == [("operator", home.control_topic)]


def test_a_full_window_trims_its_id_map_in_place_and_still_recognises_what_it_keeps(home, monkeypatch):
    """At its cap the window trims every few events. The in-memory id map drops exactly the forgotten runs (it
    used to be read again whole after every trim: ~1 s per 1,000 events for a signer with a million remembered):
    it stays equal to a fresh read of the stored runs, a retry of a kept event returns its id and appends nothing,
    and a forgotten one is refused."""
    monkeypatch.setattr(limits, "IDEMPOTENCY_WINDOW_EVENTS", 20)
    monkeypatch.setattr(limits, "MAX_IDEMPOTENCY_WINDOW_EVENTS", 50)
    monkeypatch.setattr(emitter_module, "_RUN_MAX_EVENTS", 5)
    monkeypatch.setattr(emitter_module, "_EVICT_STRIDE_EVENTS", 5)
    monkeypatch.setattr(emitter_module, "_SAVE_EVERY_EVENTS", 1)
    ids = {}
    with Emitter.open("alice", home=home.path, batch_size=5, background_flush=False) as em:
        for i in range(300):  # all within the time window: only the cap of 50 events trims; keyed, so every
            # event is looked up in the map (a keyless one stamped after all others skips it)
            ids[i] = em.action(f"op-{i}", event_time_us=T0 + i, idempotency_key=f"k{i}")
        em.flush()
        state = em._state
        kept = dict(state._known["alice"])
        assert 50 <= len(kept) <= 60  # the cap plus at most one run and one stride
        state._known.pop("alice")
        assert state._prefixes("alice") == kept  # what a fresh read of the stored runs gives
        assert em.action("op-290", event_time_us=T0 + 290, idempotency_key="k290") == ids[290]
        with pytest.raises(IdempotencyWindowError):
            em.action("op-10", event_time_us=T0 + 10, idempotency_key="k10")
        assert em.head.seq == 300 and em.stats().deduplicated == 1
    assert max(_event_ids(home, "alice").values()) == 1 and _audit(home).ok
