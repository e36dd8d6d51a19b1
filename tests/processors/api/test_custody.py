"""``CustodyPool`` in process, on a real home and its SQLite log: one emitter per agent opened on first use and
holding the agent's lock, closed when idle (a hand-driven monotonic clock: no sleeping, no timing), the least
recently used idle one closed to make room, 503 when every one is busy, 409 naming the pid when another process holds
an agent's lock, and everything closed with the service."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from ledger.errors import ChainForkError
from ledger.integrity.verify import audit
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, make_home
from ledger.wire import codec
from ledger.wire.events import Data
from processors.api.custody import CustodyPool
from processors.api.problems import Problem
from processors.api.state import Service

AGENTS = ("alice", "bob", "carol")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def home(tmp_path) -> Home:
    return make_home(tmp_path / "home", agents=AGENTS)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(home: Home, clock: Clock) -> Iterator[CustodyPool]:
    log = home.open_log()
    p = CustodyPool(home, log, str(home.config["log"]), clock_us=lambda: T0 + 5_000_000, idle_s=60.0, max_open=2,
                    session_wait_s=5.0, reap_every_s=3_600.0, monotonic=clock)
    try:
        yield p
    finally:
        p.close()
        log.close()


def lock_is_free(home: Home, agent: str) -> bool:
    """Whether another emitter for ``agent`` could start now (the pool's holds the agent's lock file)."""
    try:
        Emitter.open(agent, home=home.path, background_flush=False).close()
    except ChainForkError:
        return False
    return True


def signed_events(home: Home, agent: str) -> list[tuple[int, Data]]:
    log = home.open_log()
    try:
        return [(d.event.event_time_us, d.event.body) for r in read_all(log, home.topic) if r.key == agent.encode()
                for d in (codec.decode_event(raw) for raw in codec.decode_batch(r.value).events)]
    finally:
        log.close()


def test_an_agents_emitter_opens_on_first_use_holds_its_lock_and_signs_with_the_service_clock(home, pool):
    assert pool.open_agents() == [] and lock_is_free(home, "alice")
    with pool.session("alice") as em:
        assert em.signer_id == "alice" and em.home_path == home.path
        em.emit(Data(bytes_read=5, bytes_written=0))
        em.flush()
    assert pool.open_agents() == ["alice"]
    assert not lock_is_free(home, "alice")  # open between requests: the agent's other writers are refused
    assert signed_events(home, "alice") == [(T0 + 5_000_000, Data(bytes_read=5, bytes_written=0))]
    with pool.session("alice") as again:
        assert again is em  # the same emitter, not a second one


def test_an_idle_emitter_is_closed_and_its_lock_released(home, pool, clock):
    with pool.session("alice"):
        pass
    clock.now += 59.0
    assert pool.close_idle() == [] and pool.open_agents() == ["alice"]
    clock.now += 1.0
    assert pool.close_idle() == ["alice"] and pool.open_agents() == []
    assert lock_is_free(home, "alice")
    with pool.session("alice") as em:  # and reopened on the next use, continuing the chain
        em.emit(Data(bytes_read=1, bytes_written=0), event_time_us=T0 + 1)
        em.flush()
        assert em.head.seq == 1


def test_an_emitter_in_use_is_never_closed_as_idle(home, pool, clock):
    with pool.session("alice"):
        clock.now += 3_600.0
        assert pool.close_idle() == []
    assert pool.open_agents() == ["alice"]


def test_the_least_recently_used_idle_emitter_makes_room(home, pool, clock):
    for agent in ("alice", "bob"):
        with pool.session(agent):
            pass
    with pool.session("alice"):
        pass  # alice used last: bob is the least recently used
    with pool.session("carol"):
        assert pool.open_agents() == ["alice", "carol"]
    assert lock_is_free(home, "bob") and not lock_is_free(home, "alice")


def test_a_full_pool_of_busy_emitters_answers_503(home, pool):
    with pool.session("alice"), pool.session("bob"):
        with pytest.raises(Problem) as e, pool.session("carol"):
            pass
        assert e.value.status == 503 and e.value.code == "custody_busy" and e.value.headers == {"Retry-After": "1"}
    assert pool.open_agents() == ["alice", "bob"] and lock_is_free(home, "carol")


def test_another_process_holding_the_lock_is_a_409_naming_it_at_once(home, pool):
    mine = Emitter.open("bob", home=home.path, background_flush=False)  # this test process: the lock's holder
    try:
        with pytest.raises(Problem) as e, pool.session("bob"):
            pass
        assert e.value.status == 409 and e.value.code == "agent_locked"
        assert e.value.extra["holder_pid"] == str(os.getpid()) and pool.open_agents() == []
    finally:
        mine.close()
    with pool.session("bob") as em:  # released: the next request opens it
        assert em.signer_id == "bob"


def test_no_key_in_the_home_and_a_non_agent_signer_are_refused(home, pool):
    home.key_path("carol").unlink()
    with pytest.raises(Problem) as e, pool.session("carol"):
        pass
    assert (e.value.status, e.value.code) == (409, "not_custodial")
    with pytest.raises(Problem) as e, pool.session("operator"):
        pass
    assert (e.value.status, e.value.code, e.value.extra["role"]) == (403, "not_an_agent", "operator")
    assert pool.open_agents() == []


def test_one_request_at_a_time_per_agent(home, pool):
    inside = threading.Event()
    leave = threading.Event()
    order: list[str] = []

    def use(name: str) -> None:
        with pool.session("alice"):
            order.append(f"{name} in")
            inside.set()
            leave.wait(60)
            order.append(f"{name} out")

    first = threading.Thread(target=use, args=("first",))
    first.start()
    assert inside.wait(60)
    second = threading.Thread(target=use, args=("second",))
    second.start()
    while pool._slots["alice"].users < 2:  # the second request has come in and waits for its turn
        threading.Event().wait(0.01)
    with pool.session("bob"):  # another agent is not held up by alice's requests
        order.append("bob")
    assert order == ["first in", "bob"]
    leave.set()
    first.join(60)
    second.join(60)
    assert order == ["first in", "bob", "first out", "second in", "second out"]


def test_a_rotated_key_retires_the_emitter_and_the_next_request_signs_with_the_new_key(home, pool):
    with pool.session("alice") as old:
        old.emit(Data(bytes_read=1, bytes_written=0), event_time_us=T0 + 1)
        old.flush()
    subprocess.run([sys.executable, "-m", "processors.cli", "agent", "rotate", "alice", "--home", str(home.path)],
                   check=True, capture_output=True, timeout=120)
    new_key = home.load_key("alice").key_id
    assert new_key != old.key.key_id
    with pool.session("alice") as em:
        assert em is not old and em.key.key_id == new_key
        em.emit(Data(bytes_read=2, bytes_written=0), event_time_us=T0 + 2)
        em.flush()
        assert em.head.seq == 2  # the chain goes on under the new key
    assert pool.open_agents() == ["alice"]
    log = home.open_log()
    try:
        assert audit(log, home.ledger_topics, home.anchors()).rejected == {}
    finally:
        log.close()


def test_closing_the_service_closes_every_emitter(home):
    svc = Service.open(home.path)
    pool = CustodyPool.of(svc)
    assert CustodyPool.of(svc) is pool
    with pool.session("alice"):
        pass
    assert not lock_is_free(home, "alice")
    svc.close()
    assert lock_is_free(home, "alice") and pool.open_agents() == []
    with pytest.raises(Problem) as e, pool.session("alice"):
        pass
    assert e.value.status == 503
