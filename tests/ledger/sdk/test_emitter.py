"""The producer SDK: batching, linger, idempotent ids, chain continuity across restarts, no forks."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ledger import Emitter, KeyRing, Verifier
from ledger.errors import ChainForkError, LedgerError, LogError
from ledger.integrity.chain import GENESIS
from ledger.integrity.verify import audit
from ledger.log import read_all
from ledger.testing.homes import T0, make_home
from ledger.wire.events import Action


@pytest.fixture
def home(tmp_path):
    return make_home(tmp_path / "home", agents=("alice", "bob"))


def records_of(h, agent):
    log = h.open_log()
    try:
        return [r for r in read_all(log, h.topic) if r.key == agent.encode()]
    finally:
        log.close()


def test_three_line_usage(home):
    with Emitter.open("alice", home=home.path) as em:
        event_id = em.action("web.search", cost_weight=1.5)
    assert len(event_id) == 32
    assert len(records_of(home, "alice")) == 1


def test_batches_by_size_one_signed_record_each(home):
    with Emitter.open("alice", home=home.path, batch_size=10, background_flush=False) as em:
        for i in range(25):
            em.action("op", event_time_us=T0 + i)
        assert em.stats().appended_records == 2 and em.stats().pending == 5
    recs = records_of(home, "alice")
    assert len(recs) == 3
    log = home.open_log()
    try:
        rep = audit(log, home.ledger_topics, home.anchors())
    finally:
        log.close()
    assert rep.ok and rep.accepted_events == 3 + 1 + 25  # registrations, make_home's skew window, the events


def test_linger_flushes_without_further_emits(home):
    em = Emitter.open("alice", home=home.path, batch_size=1000, linger_ms=30)
    try:
        em.action("op")
        deadline = time.monotonic() + 5
        while not records_of(home, "alice") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(records_of(home, "alice")) == 1
        assert em.stats().pending == 0
    finally:
        em.close()


def test_retried_emit_returns_the_same_id_and_appends_nothing(home):
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        a = em.action("llm.call", provider="p", model="m", input_tokens=5, idempotency_key="resp_123")
        b = em.action("llm.call", provider="p", model="m", input_tokens=5, idempotency_key="resp_123",
                      event_time_us=T0 + 99)  # a retry stamped later: still the same call
        c = em.emit(Action("x"), event_time_us=T0)
        d = em.emit(Action("x"), event_time_us=T0)  # same content, no key: same id
        assert a == b and c == d and a != c
        assert em.stats().deduplicated == 2 and em.head.seq == 2
    # and across a restart
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        assert em.action("llm.call", provider="p", model="m", input_tokens=5, idempotency_key="resp_123") == a
        assert em.head.seq == 2 and em.stats().deduplicated == 1


def test_restart_continues_the_chain(home):
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        for i in range(7):
            em.action("op", event_time_us=T0 + i)
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        assert em.head.seq == 7
        em.action("op", event_time_us=T0 + 100)
    log = home.open_log()
    try:
        assert audit(log, home.ledger_topics, home.anchors()).ok
    finally:
        log.close()


def test_head_is_recovered_from_the_log_when_state_was_not_saved(home):
    """Simulates a crash between the append and saving the head: the state file is stale."""
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        em.action("a", event_time_us=T0)
    import shutil

    shutil.copy(home.state_dir / "emitters.sqlite", home.path / "stale.sqlite")
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        em.action("b", event_time_us=T0 + 1)
        em.action("c", event_time_us=T0 + 2)
    for suffix in ("-wal", "-shm"):
        (home.state_dir / f"emitters.sqlite{suffix}").unlink(missing_ok=True)
    shutil.copy(home.path / "stale.sqlite", home.state_dir / "emitters.sqlite")
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        assert em.head.seq == 3
        em.action("d", event_time_us=T0 + 3)
    log = home.open_log()
    try:
        rep = audit(log, home.ledger_topics, home.anchors())
    finally:
        log.close()
    assert rep.ok and rep.accepted_events == 3 + 1 + 4  # registrations, make_home's skew window, the events


def test_second_emitter_for_one_signer_is_refused(home):
    em = Emitter.open("alice", home=home.path)
    try:
        with pytest.raises(ChainForkError) as e:
            Emitter.open("alice", home=home.path)
        assert "would fork" in e.value.message
        code = ("from ledger import Emitter\n"
                f"Emitter.open('alice', home={str(home.path)!r})\n")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "ChainForkError" in p.stderr
        Emitter.open("bob", home=home.path).close()  # other signers are unaffected
    finally:
        em.close()
    Emitter.open("alice", home=home.path).close()  # released on close


def test_state_ahead_of_the_log_is_refused(home, tmp_path):
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        em.action("a")
    # point the home at a brand-new, empty log
    other = make_home(tmp_path / "other", agents=())
    home.config["log"] = other.config["log"]
    (home.path / "config.json").write_text(__import__("json").dumps(home.config))
    with pytest.raises(ChainForkError) as e:
        Emitter.open("alice", home=home.path)
    assert "ahead of the log" in e.value.message


def test_cosigned_interaction_verifies_and_a_forged_cosignature_does_not(home):
    bob = home.load_key("bob")
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        em.interaction(responder_id="bob", interaction_id="i1", requestor_provider="anthropic",
                       requestor_model="claude-sonnet-4-6", responder_provider="openai", responder_model="gpt-4.1",
                       request_tokens=100, response_tokens=50, request_cached_tokens=10, cosigner=bob,
                       event_time_us=T0)
    log = home.open_log()
    try:
        assert audit(log, home.ledger_topics, home.anchors()).ok
    finally:
        log.close()
    from ledger.integrity.keys import SigningKey

    impostor = SigningKey.generate("bob")
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        em.interaction(responder_id="bob", interaction_id="i2", requestor_provider="anthropic",
                       requestor_model="claude-sonnet-4-6", responder_provider="openai", responder_model="gpt-4.1",
                       request_tokens=100, response_tokens=50, cosigner=impostor, event_time_us=T0 + 1)
    log = home.open_log()
    try:
        rep = audit(log, home.ledger_topics, home.anchors())
    finally:
        log.close()
    assert rep.rejected == {"unknown_key": 1} and rep.first_error["signer_id"] == "bob"


def test_append_failure_keeps_the_batch_and_a_retry_delivers_it(home):
    class FlakyLog:
        def __init__(self, inner):
            self.inner, self.fail, self.url = inner, True, inner.url

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def append(self, topic, records):
            if self.fail:
                self.fail = False
                raise LogError("disk on fire", topic=topic)
            return self.inner.append(topic, records)

    log = FlakyLog(home.open_log())
    em = Emitter(log, home.load_key("alice"), topic=home.topic, state_dir=home.state_dir, background_flush=False)
    em.action("a", event_time_us=T0)
    with pytest.raises(LogError):
        em.flush()
    assert em.stats().pending == 1
    em.flush()
    em.close()
    rep = audit(log.inner, home.ledger_topics, home.anchors())
    log.inner.close()
    assert rep.ok and rep.accepted_events == 3 + 1 + 1  # registrations, make_home's skew window, the action


def test_closed_emitter_refuses(home):
    em = Emitter.open("alice", home=home.path)
    em.close()
    with pytest.raises(LedgerError):
        em.action("late")
    em.close()  # idempotent


def test_verifier_keeps_state_unchanged_on_reject(home):
    log = home.open_log()
    try:
        v = Verifier(KeyRing(home.anchors()))
        for topic in home.ledger_topics:
            for r in read_all(log, topic):
                v.check_record(r.value)
        heads = dict(v.chains.heads)
        from ledger.errors import RejectError

        with pytest.raises(RejectError):
            v.check_record(b"\xc3\x01" + b"\x00" * 20)
        assert v.chains.heads == heads
        assert v.chains.head("nobody") == GENESIS
    finally:
        log.close()


# ------------------------------------------------------------------ refusing what readers reject


def test_unregistered_key_is_refused_before_anything_is_appended(home):
    from ledger.errors import RejectCode, RejectError
    from ledger.integrity.keys import SigningKey, save_key

    save_key(home.key_path("spare"), SigningKey.generate("spare"))  # a key file the operator never registered
    with Emitter.open("spare", home=home.path, background_flush=False) as em:
        with pytest.raises(RejectError) as e:
            em.action("x", event_time_us=T0)
        assert e.value.code is RejectCode.UNKNOWN_KEY and e.value.evidence["appended"] is False
        assert em.stats().pending == 0 and em.head == GENESIS
    assert records_of(home, "spare") == []


def test_revocation_between_emit_and_append_drops_the_batch_and_refuses_from_then_on(home):
    """The emit was checked against the ring of its time; the revocation lands before the append: the append
    re-checks, drops the batch (never appended), and the head goes back to the last appended event."""
    from ledger.errors import RejectCode, RejectError
    from ledger.testing.homes import revoke

    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        em.action("kept", event_time_us=T0 + 1)
        em.flush()
        head = em.head
        em.action("late", event_time_us=T0 + 2)
        revoke(home, "alice", T0 + 10_000)  # the operator, meanwhile
        with pytest.raises(RejectError) as e:
            em.flush()
        assert e.value.code is RejectCode.REVOKED_KEY and e.value.evidence["dropped_events"] == 1
        assert em.head == head and em.stats().pending == 0
        with pytest.raises(RejectError):
            em.action("after", event_time_us=T0 + 3)
    assert len(records_of(home, "alice")) == 1  # only the batch appended before the revocation


def test_the_key_ring_is_read_incrementally(home):
    """Each check reads only control records appended since the previous one."""
    reads = []

    class CountingLog:
        def __init__(self, inner):
            self.inner = inner

        def read(self, topic, partition, offset, max_records=1000, timeout_s=0.0):
            recs = self.inner.read(topic, partition, offset, max_records, timeout_s)
            if topic == home.control_topic:
                reads.append(len(recs))
            return recs

        def __getattr__(self, name):
            return getattr(self.inner, name)

    log = CountingLog(home.open_log())
    try:
        with Emitter(log, home.load_key("alice"), topic=home.topic, state_dir=home.state_dir, batch_size=1,
                     background_flush=False, control_topic=home.control_topic, anchors=home.anchors()) as em:
            em.action("a", event_time_us=T0)
            first = sum(reads)
            assert first == log.inner.end_offset(home.control_topic, 0)  # the whole topic, once
            for i in range(5):
                em.action(f"b{i}", event_time_us=T0 + 1 + i)
            assert sum(reads) == first  # nothing new on the control topic: nothing read again
            from ledger.testing.homes import revoke

            revoke(home, "bob")
            em.action("c", event_time_us=T0 + 10)
            assert sum(reads) == first + 1  # just the one new control record
    finally:
        log.inner.close()
