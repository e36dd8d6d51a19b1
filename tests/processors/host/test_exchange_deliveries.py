"""The deliveries processor sharded through the exchange (``processors.runtime.exchange``; processors/deliveries.py,
"Sharding"), on real homes with 6 event partitions and a real HTTP receiver on loopback (stdlib http.server in a
thread) that checks nothing itself: the tests verify every HMAC they received.

The alerts and dead letters come from budgets and the journal run as 3 instances each (so they are signed by several
shard signers): 8 agents, each with an alert-only budget of 4 action units it spends (soft_limit at 2, hard_limit at
4), and 2 forged records (2 dead letters). Two sinks subscribe to them: ``steady`` answers 200 at once, ``flaky``
answers 500 to the first POST of each delivery and 200 to the next. So 18 alerts, 36 deliveries.

- ``run deliveries --instances 3 --until-caught-up`` folds and sends nothing (the sender starts one turn after the
  catch-up, at which that run stops): the combined digest is the one instance's, ``tokenledger replay`` says equal;
- the 3 instances as a service: every delivery reaches its sink from its owner shard only (the receiver counts
  POSTs by delivery id: one per steady delivery, two per flaky one, each HMAC valid), every attempt on the log is
  signed by the owner shard, and the combined digest is still the one instance's;
- an instance SIGKILLed while its POSTs are under way (the receiver holds them) and started again sends those again,
  with the same delivery ids, as the at-least-once contract documents, and nothing else twice; the others' deliveries
  are POSTed once; each delivery has one attempt on the log.
Waits poll conditions with generous deadlines; nothing asserts how fast anything is.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ledger import limits
from ledger.log import read_all
from ledger.sdk import webhooks
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import ENV_WEBHOOK_RETRY, Home
from ledger.testing.homes import T0
from ledger.units import US_PER_HOUR
from ledger.wire import codec
from ledger.wire.events import Action, BudgetPolicy, DeliveryAttempt
from processors import views
from processors.deliveries import Deliveries, delivery_id, signs_attempts_of
from processors.host import service
from processors.runtime.shards import Shard, hidden_rows, owner_index
from processors.runtime.store import Store
from tests.processors.host.test_sharding import AGENTS, INSTANCES, ROOT, _cli, _home, combined_digest, single_replay
from tests.processors.test_deliveries import (
    DEADLINE_S,
    FAST_RETRY,
    SECRET,
    Received,
    _eventually,
    _hmac_ok,
    add_webhook,
)

NAME = "deliveries"
SINKS = ("steady", "flaky")
ALLOCATION = 4  # action units per agent: soft_limit (50%) at the 2nd, hard_limit at the 4th
FORGED = ("agent-0", "agent-5")  # a forged record on each one's partition: a dead letter each
N_ALERTS = 2 * len(AGENTS) + len(FORGED)
N_DELIVERIES = N_ALERTS * len(SINKS)


# ---------------------------------------------------------------------------------------------- the receiver


@dataclass
class Receiver:
    """A webhook endpoint on loopback: POSTs to ``/hooks/flaky`` are answered 500 the first time per delivery id,
    everything else 200; POSTs of the deliveries ``held`` picks wait until ``release`` is set. Keeps every POST."""

    held: Callable[[str], bool] = lambda did: False
    release: threading.Event = field(default_factory=threading.Event)
    posts: list[tuple[str, Received]] = field(default_factory=list)  # (path, what came)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server dispatches a POST to
                body = self.rfile.read(int(self.headers["Content-Length"]))
                did = self.headers.get(webhooks.DELIVERY_HEADER, "")
                with receiver.lock:
                    seen = sum(1 for _, p in receiver.posts if p.delivery_id == did)
                    status = 500 if self.path.endswith("/flaky") and seen == 0 else 200
                    receiver.posts.append((self.path, Received(
                        did, self.headers.get(webhooks.TIMESTAMP_HEADER, ""),
                        self.headers.get(webhooks.SIGNATURE_HEADER, ""), body, status)))
                if receiver.held(did):
                    receiver.release.wait(DEADLINE_S)
                # the sender may have died while its request was held: nobody reads the answer then
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"try again later" if status == 500 else b"thanks")

            def log_message(self, *args: Any) -> None:
                """Silent: the test reads ``posts``, not a log on stderr."""

        return Handler

    def seen(self) -> list[tuple[str, Received]]:
        with self.lock:
            return list(self.posts)

    def count(self) -> Counter[str]:
        return Counter(p.delivery_id for _, p in self.seen())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), r.handler())
    r.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


# ---------------------------------------------------------------------------------------------- homes and inputs


def _alerting_home(path: Path, receiver: Receiver, sinks: tuple[str, ...] = SINKS) -> tuple[Home, list[str]]:
    """The home, its sinks, the alerts (budgets, 3 instances) and dead letters (journal, 3 instances); the ids of
    the deliveries they make, from the alerts on the log."""
    h = _home(path)
    for s in sinks:
        add_webhook(h, f"{receiver.url}/{s}", "--sink-id", s)
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            for a in AGENTS:
                em.emit(BudgetPolicy(scope="agent", scope_id=a, budget_kind="action", allocation=ALLOCATION,
                                     reset_interval_us=US_PER_HOUR, soft_limit_pct=50, hard_limit_pct=100,
                                     throttle_at_soft=False, suspend_at_hard=False, emergency_reserve_pct=0,
                                     hard_limit_action="alert_only", effective_from_us=T0),
                        event_time_us=T0 + 100, idempotency_key=f"policy-{a}")
    finally:
        log.close()
    for a in AGENTS:
        with Emitter.open(a, home=h.path) as em:
            for n in range(ALLOCATION):
                em.emit(Action("work"), event_time_us=T0 + 1_000 + n, idempotency_key=f"{a}-work-{n}")
    _forge(h, *FORGED)
    p = _cli("run", "budgets", "journal", "--instances", str(INSTANCES), "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    sources = [eid for eid, b in _derived(h, "alerts") if b.__class__.__name__ == "BudgetAlert"]
    dead = [f"rejected:{b.topic}:{b.partition}:{b.offset}" for _, b in _derived(h, "rejected")]
    assert (len(sources), len(dead)) == (2 * len(AGENTS), len(FORGED))
    signers = {s for s, _ in _signed(h, "alerts")} | {s for s, _ in _signed(h, "rejected")}
    assert len(signers) >= 3, "alerts and dead letters signed by several shards of budgets and journal"
    return h, sorted(delivery_id(s, src) for s in sinks for src in sources + dead)


def _forge(h: Home, *agents: str) -> None:
    """A record no one signed on each agent's partition: the journal's dead letter each."""
    log = h.open_log()
    try:
        log.append(h.topic_for("events"), [(a.encode(), b"not a signed batch") for a in agents])
    finally:
        log.close()


def _signed(h: Home, topic: str) -> list[tuple[str, Any]]:
    """(signer, decoded event) of every event on a derived topic."""
    log = h.open_log()
    try:
        out = []
        for rec in read_all(log, h.topic_for(topic)):
            for raw in codec.decode_batch(rec.value).events:
                ev = codec.decode_event(raw).event
                out.append((ev.signer_id, ev))
        return out
    finally:
        log.close()


def _derived(h: Home, topic: str) -> list[tuple[str, Any]]:
    return [(ev.event_id, ev.body) for _, ev in _signed(h, topic)]


def _owner(did: str) -> int:
    return owner_index(did, INSTANCES)


def _combined(h: Home) -> dict[str, Any]:
    return combined_digest(h, NAME)


def _single(h: Home) -> dict[str, Any]:
    return single_replay(h, NAME)


def _assert_one_instance(h: Home) -> None:
    live, single = _combined(h), _single(h)
    assert live["source"] == f"{INSTANCES} shards combined"
    assert live["tables"] == single["tables"]
    assert live["digest"] == single["digest"]
    p = _cli("replay", NAME, "--json", "--home", str(h.path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["equal"] is True


def _shard_rows(h: Home, table: str, column: str, *, shown: bool = False) -> dict[int, list[str]]:
    """Per shard, ``column`` of every row of ``table`` in its state file (``shown``: of the rows it publishes and
    digests)."""
    out = {}
    for i in range(INSTANCES):
        sh = Shard(i, INSTANCES)
        store = Store(service.state_file(h, NAME, sh), Deliveries.views, read_only=True,
                      hidden=hidden_rows(Deliveries(), sh, h.control_topic))
        try:
            source = store.visible(table) if shown else table
            out[i] = sorted(r[0] for r in store.query(f"SELECT {column} FROM {source}"))
        finally:
            store.close()
    return out


def _attempts(h: Home) -> list[tuple[str, DeliveryAttempt]]:
    return [(s, ev.body) for s, ev in _signed(h, NAME) if isinstance(ev.body, DeliveryAttempt)]


def _all_delivered(h: Home, n: int, procs: list[subprocess.Popen[str]]) -> Callable[[], bool]:
    def done() -> bool:
        for p in procs:
            assert p.poll() is None, p.communicate()[1]
        got = views.read_view(h, "alert_deliveries")
        return len(got) == n and all(r["status"] == "delivered" for r in got)

    return done


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err


def _worker(h: Home, index: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "processors.host.worker", NAME, "--home", str(h.path), "--shard",
                             f"{index}/{INSTANCES}"], env={**os.environ, ENV_WEBHOOK_RETRY: FAST_RETRY},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


# ---------------------------------------------------------------------------------------------- the tests


def test_three_instances_post_each_webhook_from_its_owner_once(tmp_path: Path, receiver: Receiver) -> None:
    h, ids = _alerting_home(tmp_path / "home", receiver)
    assert len(ids) == N_DELIVERIES
    assert {_owner(d) for d in ids} == set(range(INSTANCES)), "every shard owns deliveries"

    # until caught up: everything folded, nothing sent; the one instance's state
    p = _cli("run", NAME, "--instances", str(INSTANCES), "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    assert receiver.seen() == []
    _assert_one_instance(h)
    rows = _shard_rows(h, "alert_deliveries", "delivery_id")
    assert {i: sorted(d for d in ids if _owner(d) == i) for i in range(INSTANCES)} == rows  # each on its owner only
    # the sinks (control's): on every shard (a restart restores them), shown by shard 0 only
    assert _shard_rows(h, "webhook_sinks", "sink_id") == {i: sorted(SINKS) for i in range(INSTANCES)}
    assert _shard_rows(h, "webhook_sinks", "sink_id", shown=True) == {0: sorted(SINKS), 1: [], 2: []}

    # as a service: each delivery POSTed by its owner, the flaky sink's retried once
    env = {**os.environ, ENV_WEBHOOK_RETRY: FAST_RETRY}
    run = subprocess.Popen([sys.executable, "-m", "processors.cli", "run", NAME, "--instances", str(INSTANCES),
                            "--home", str(h.path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT)
    try:
        _eventually(_all_delivered(h, N_DELIVERIES, [run]), f"{N_DELIVERIES} deliveries delivered")
    finally:
        _stop([run])
    posts = receiver.seen()
    by_sink = {s: sorted(r["delivery_id"] for r in views.read_view(h, "alert_deliveries") if r["sink_id"] == s)
               for s in SINKS}
    steady = set(by_sink["steady"])
    assert sorted(by_sink["steady"] + by_sink["flaky"]) == ids
    # each webhook once per attempt: a steady delivery once, a flaky one twice (500, then 200); all signed
    assert receiver.count() == {d: 1 if d in steady else 2 for d in ids}
    assert all(_hmac_ok(p, SECRET) for _, p in posts)
    assert {(path, p.delivery_id in steady) for path, p in posts} == {("/hooks/steady", True),
                                                                      ("/hooks/flaky", False)}
    # every attempt on the log once, signed by the shard that owns its delivery
    attempts = _attempts(h)
    assert sorted((a.delivery_id, a.attempt, a.outcome, a.http_status) for _, a in attempts) == sorted(
        [(d, 1, "delivered", 200) for d in steady]
        + [(d, n, o, s) for d in by_sink["flaky"] for n, o, s in ((1, "retrying", 500), (2, "delivered", 200))])
    assert all(s == f"processor.{NAME}.shard-{_owner(a.delivery_id)}-of-{INSTANCES}" for s, a in attempts)
    assert {r["delivery_id"]: (r["status"], r["attempts"], r["last_http_status"])
            for r in views.read_view(h, "alert_deliveries")} == {
        d: ("delivered", 1 if d in steady else 2, 200) for d in ids}
    _assert_one_instance(h)
    assert _shard_rows(h, "delivery_attempts", "delivery_id") == {
        i: sorted(a.delivery_id for _, a in attempts if _owner(a.delivery_id) == i) for i in range(INSTANCES)}

    # a dead letter after the restarts: each shard's restored sinks make its deliveries, as one instance's would
    _forge(h, AGENTS[3])
    p = _cli("run", "journal", "--instances", str(INSTANCES), "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    p = _cli("run", NAME, "--instances", str(INSTANCES), "--until-caught-up", "--home", str(h.path))
    assert p.returncode == 0, p.stderr
    dead = [f"rejected:{b.topic}:{b.partition}:{b.offset}" for _, b in _derived(h, "rejected")]
    new = sorted({delivery_id(s, src) for s in SINKS for src in dead} - set(ids))
    assert len(new) == len(SINKS)
    assert {r["delivery_id"]: r["status"] for r in views.read_view(h, "alert_deliveries") if r["delivery_id"] in new} \
        == dict.fromkeys(new, "pending")
    _assert_one_instance(h)


def test_a_killed_instance_restarted_sends_again_only_what_it_had_not_recorded(tmp_path: Path,
                                                                              receiver: Receiver) -> None:
    """Shard 1 is SIGKILLed while the receiver holds its POSTs (sent, never answered, so never recorded); started
    again, it sends those again with the same delivery ids (the documented at-least-once), and the rest once."""
    killed = 1
    receiver.held = lambda did: _owner(did) == killed and not receiver.release.is_set()
    h, ids = _alerting_home(tmp_path / "home", receiver, sinks=("steady",))
    mine = [d for d in ids if _owner(d) == killed]
    in_flight = min(limits.MAX_DELIVERIES_IN_FLIGHT, len(mine))
    assert in_flight > 0
    procs = [_worker(h, i) for i in range(INSTANCES)]
    try:
        def killed_posts() -> int:
            assert procs[killed].poll() is None, procs[killed].communicate()[1]
            return sum(1 for _, p in receiver.seen() if _owner(p.delivery_id) == killed)

        _eventually(lambda: killed_posts() == in_flight, f"shard {killed}'s {in_flight} POSTs held")
        procs[killed].kill()
        assert procs[killed].wait(timeout=DEADLINE_S) == -signal.SIGKILL
        held = {p.delivery_id for _, p in receiver.seen() if _owner(p.delivery_id) == killed}
        receiver.release.set()
        procs[killed] = _worker(h, killed)
        _eventually(_all_delivered(h, len(ids), procs), f"{len(ids)} deliveries delivered")
    finally:
        _stop(procs)
    assert len(held) == in_flight
    # the held ones twice (same id, each signed), every other delivery once: nothing else sent twice
    assert receiver.count() == {d: 2 if d in held else 1 for d in ids}
    assert all(_hmac_ok(p, SECRET) for _, p in receiver.seen())
    # one attempt per delivery on the log, by its owner: the bookkeeping once
    attempts = _attempts(h)
    assert sorted((a.delivery_id, a.attempt, a.outcome) for _, a in attempts) == [(d, 1, "delivered") for d in ids]
    assert all(s == f"processor.{NAME}.shard-{_owner(a.delivery_id)}-of-{INSTANCES}" for s, a in attempts)
    _assert_one_instance(h)


def test_only_the_owner_shard_or_the_one_instance_may_sign_a_deliverys_attempts() -> None:
    did = delivery_id("steady", "e" * 32)
    owner = owner_index(did, INSTANCES)
    assert signs_attempts_of(f"processor.{NAME}", did)
    assert signs_attempts_of(f"processor.{NAME}.shard-{owner}-of-{INSTANCES}", did)
    others = [i for i in range(INSTANCES) if i != owner]
    assert not any(signs_attempts_of(f"processor.{NAME}.shard-{i}-of-{INSTANCES}", did) for i in others)
    assert signs_attempts_of(f"processor.{NAME}.shard-0-of-1", did)
    for signer in (f"processor.{NAME}.shard-{owner}-of-0", f"processor.{NAME}.shard-3-of-3", "processor.budgets",
                   f"processor.budgets.shard-{owner}-of-{INSTANCES}", f"processor.{NAME}.checkpoints", "alice",
                   f"processor.{NAME}.shard-{owner}-of-{INSTANCES}.checkpoints"):
        assert not signs_attempts_of(signer, did), signer
