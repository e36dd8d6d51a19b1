"""Alert delivery by webhook (processors.deliveries, ledger.sdk.webhooks, `tokenledger alerts`), on real homes,
with a real HTTP receiver on loopback (stdlib http.server in a thread) that checks nothing itself: the tests verify
every HMAC they received.

- end to end under `tokenledger run` (subprocess): budget alerts (soft_limit, hard_limit) and the journal's dead
  letters (rejections) reach the sink signed; the receiver answers 500 to the first POST of each delivery and 200
  to the next, so every delivery is delivered with exactly 2 attempts; each delivery id is received twice (at
  least once) and is one row of the view; a replay of the deliveries processor gives the live digest;
- a worker that dies between a POST and its attempt record sends the same delivery again (same id), recorded once;
- a secret file that does not match the sink's secret_sha256 signs nothing (attempt failed, no request);
- a removed sink gets no further deliveries, its open ones fail; a sink signed by an agent is refused by readers;
- add-webhook refuses a bad URL naming the field and appends nothing; the secret file is 0600 and the secret is
  neither printed nor on the log; the retry schedule and its environment override.
Waits poll conditions with generous deadlines; nothing asserts how fast anything is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.econ import derived, replay_digests, rows
from typer.testing import CliRunner

from ledger import limits
from ledger.errors import RejectCode, ValidationError
from ledger.log import read_all
from ledger.sdk import webhooks
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import ENV_WEBHOOK_RETRY, Home
from ledger.testing.homes import T0, build_record, inject_bad, make_home
from ledger.units import US_PER_HOUR, US_PER_S
from ledger.wire.events import Action, BudgetPolicy, DeliveryAttempt, WebhookSink
from processors import views
from processors.cli import build_app
from processors.deliveries import Deliveries, Sender, delivery_id
from processors.host.service import open_runner

DEADLINE_S = 90.0  # a condition that holds within a second or two when green, on a busy shared machine
SECRET = "tl-test-webhook-secret-4f9c2a71"  # 31 bytes of text: above the 16-byte minimum
OTHER_SECRET = "a-different-secret-of-the-operator"
FAST_RETRY = "first=50ms,factor=2,max=200ms,attempts=5"
EVENTS = "soft_limit,hard_limit,suspended,rejections"
cli = CliRunner()


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------- the receiver


@dataclass
class Received:
    delivery_id: str
    timestamp: str
    signature: str
    body: bytes
    answered: int


@dataclass
class Receiver:
    """A webhook endpoint on loopback: answers ``fail_first`` 500s to each delivery id, then 200; keeps every POST."""

    fail_first: int = 0
    hold: threading.Event | None = None  # set: answer; unset: keep every request waiting
    posts: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server dispatches a POST to
                body = self.rfile.read(int(self.headers["Content-Length"]))
                did = self.headers.get(webhooks.DELIVERY_HEADER, "")
                with receiver.lock:
                    seen = sum(1 for p in receiver.posts if p.delivery_id == did)
                    status = 500 if seen < receiver.fail_first else 200
                    receiver.posts.append(Received(did, self.headers.get(webhooks.TIMESTAMP_HEADER, ""),
                                                   self.headers.get(webhooks.SIGNATURE_HEADER, ""), body, status))
                if receiver.hold is not None:
                    receiver.hold.wait(DEADLINE_S)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"try again later" if status == 500 else b"thanks")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def seen(self) -> list[Received]:
        with self.lock:
            return list(self.posts)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), r.handler())
    r.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/ledger"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _hmac_ok(p: Received, secret: str) -> bool:
    """The signature as a receiver computes it: HMAC-SHA256 of "<timestamp>.<body>", hex, after "sha256="."""
    want = hmac.new(secret.encode(), p.timestamp.encode() + b"." + p.body, hashlib.sha256).hexdigest()
    return p.signature == f"sha256={want}"


# ---------------------------------------------------------------------------------------------- homes and inputs


def add_webhook(h: Home, url: str, *extra: str, secret: str = SECRET) -> dict[str, Any]:
    r = cli.invoke(build_app(), ["alerts", "add-webhook", url, "--events", EVENTS, "--secret", secret,
                                 "--home", str(h.path), "--json", *extra])
    assert r.exit_code == 0, r.output
    info: dict[str, Any] = json.loads(r.stdout)
    return info


def spend(h: Home, units: int, start_us: int) -> None:
    """alice spends ``units`` action units (one per event) against a 10-unit alert-only budget (soft limit 50%)."""
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            em.emit(BudgetPolicy(scope="agent", scope_id="alice", budget_kind="action", allocation=10,
                                 reset_interval_us=US_PER_HOUR, soft_limit_pct=50, hard_limit_pct=100,
                                 throttle_at_soft=False, suspend_at_hard=False, emergency_reserve_pct=0,
                                 hard_limit_action="alert_only", effective_from_us=T0), event_time_us=T0 + 100)
    finally:
        log.close()
    with Emitter.open("alice", home=h.path) as em:
        for i in range(units):
            em.emit(Action("work"), event_time_us=start_us + i)


def run_inline(h: Home, *names: str) -> None:
    log = h.open_log()
    try:
        for name in names:
            r, store, _ = open_runner(h, name, log)
            try:
                r.run_until_caught_up()
            finally:
                store.close()
    finally:
        log.close()


@dataclass
class Worker:
    """The deliveries processor in this process, stepped by hand with its sender (as ``service.serve`` does)."""

    h: Home
    clock_us: Callable[[], int] = field(default=lambda: time.time_ns() // 1000)

    def __post_init__(self) -> None:
        self.log = self.h.open_log()
        self.runner, self.store, proc = open_runner(self.h, "deliveries", self.log)
        assert isinstance(proc, Deliveries)
        self.proc = proc
        self.sender = Sender(proc, self.runner, self.h, webhooks.parse_retry(FAST_RETRY), clock_us=self.clock_us)

    def turn(self) -> None:
        self.sender.tick(self.runner.step() == 0)

    def until(self, condition: Callable[[], bool], what: str) -> None:
        def done() -> bool:
            self.turn()
            return condition()

        _eventually(done, what)

    def settle(self) -> None:
        """Every attempt under way recorded and read back."""
        self.until(lambda: not self.sender.flights and not self.sender.recorded, "attempts recorded and folded")

    def crash(self) -> None:
        """Die without recording what is under way (the POSTs were made)."""
        self.sender.stop()
        self.store.close()
        self.log.close()

    def close(self) -> None:
        self.sender.drain()
        self.runner.run_until_caught_up()
        self.store.close()
        self.log.close()

    def deliveries(self) -> list[tuple[Any, ...]]:
        return self.store.query("SELECT kind, status, attempts, last_http_status, last_error FROM alert_deliveries "
                                "ORDER BY kind, delivery_id")


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path / "home", agents=("alice",))


def _alert_events(h: Home) -> list[tuple[str, str]]:
    """(kind, source) of every alert on the log this test's sink subscribes to."""
    kinds = set(EVENTS.split(","))
    out = [(b.alert, eid) for eid, b in derived(h, "alerts") if getattr(b, "alert", None) in kinds]
    out += [("rejections", f"rejected:{b.topic}:{b.partition}:{b.offset}") for _, b in derived(h, "rejected")]
    return out


# ---------------------------------------------------------------------------------------------- end to end


def test_alerts_reach_the_sink_signed_retried_once_and_replay_equal(home: Home, receiver: Receiver) -> None:
    receiver.fail_first = 1
    sink = add_webhook(home, receiver.url)
    spend(home, 10, T0 + 1_000)  # 5 units: soft_limit; 10: hard_limit
    bad = inject_bad(home)  # five records the journal turns into dead letters
    env = {**os.environ, ENV_WEBHOOK_RETRY: FAST_RETRY}
    p = subprocess.Popen([sys.executable, "-c", "from processors.cli import main; main()", "run", "budgets", "journal",
                          "deliveries", "--home", str(home.path)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    expected = 2 + sum(bad.values())
    try:
        def all_delivered() -> bool:
            assert p.poll() is None, p.communicate()[1]
            got = views.read_view(home, "alert_deliveries")
            return len(got) == expected and all(r["status"] == "delivered" for r in got)

        _eventually(all_delivered, f"{expected} deliveries delivered")
    finally:
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr

    published = views.read_view(home, "alert_deliveries")
    alerts = _alert_events(home)
    assert sorted(k for k, _ in alerts) == ["hard_limit"] + ["rejections"] * 5 + ["soft_limit"]
    # one delivery per alert: its id from (sink, alert), delivered on the second attempt after a 500
    assert sorted(r["delivery_id"] for r in published) == sorted(delivery_id(sink["sink_id"], s) for _, s in alerts)
    assert {(r["status"], r["attempts"], r["last_http_status"], r["last_error"]) for r in published} == {
        ("delivered", 2, 200, "")}
    posts = receiver.seen()
    assert len(posts) == 2 * expected  # each delivery: a 500, then a 200
    assert sorted({p.delivery_id for p in posts}) == sorted(r["delivery_id"] for r in published)
    assert all(_hmac_ok(p, SECRET) for p in posts)
    bodies = {p.delivery_id: json.loads(p.body) for p in posts}
    by_id = {r["delivery_id"]: r for r in published}
    for did, body in bodies.items():
        assert body["delivery_id"] == did and body["kind"] == by_id[did]["kind"]
        assert body["alert_event_id"] == by_id[did]["alert_event_id"]
    soft = next(b for b in bodies.values() if b["kind"] == "soft_limit")
    assert (soft["scope"], soft["scope_id"], soft["budget_kind"], soft["allocation"], soft["consumed"]) == (
        "agent", "alice", "action", 10, 5)
    # every attempt is a signed event on the log, recorded once
    attempts = [b for _, b in derived(home, "deliveries") if isinstance(b, DeliveryAttempt)]
    assert sorted((a.attempt, a.outcome, a.http_status) for a in attempts) == (
        [(1, "retrying", 500)] * expected + [(2, "delivered", 200)] * expected)
    d = replay_digests(home, "deliveries")
    assert d["live"] is not None and d["replay"] == d["live"]


# ---------------------------------------------------------------------------------------------- in process


def test_a_crash_between_post_and_record_sends_the_same_delivery_again(home: Home, receiver: Receiver) -> None:
    sink = add_webhook(home, receiver.url)
    spend(home, 5, T0 + 1_000)  # soft_limit only
    run_inline(home, "budgets")
    w = Worker(home)
    w.until(lambda: bool(w.sender.flights), "a POST under way")  # checked after the turn that sent it
    (flight,) = w.sender.flights.values()
    assert flight.future is not None and flight.future.result(timeout=DEADLINE_S).status == 200
    w.crash()  # answered 200, never recorded
    w = Worker(home)
    w.until(lambda: len(receiver.seen()) == 2, "the POST sent again")
    w.settle()
    (alert,) = _alert_events(home)
    did = delivery_id(sink["sink_id"], alert[1])
    assert [p.delivery_id for p in receiver.seen()] == [did, did]  # at least once, same id: the receiver dedupes
    assert w.deliveries() == [("soft_limit", "delivered", 1, 200, "")]
    w.close()
    assert rows(home, "deliveries", "SELECT count(*) FROM delivery_attempts") == [(1,)]


def test_a_secret_file_that_does_not_match_signs_nothing(home: Home, receiver: Receiver) -> None:
    sink = add_webhook(home, receiver.url)
    path = home.webhook_secret_path(sink["sink_id"])
    webhooks.save_secret(home, sink["sink_id"], OTHER_SECRET.encode())  # replaced by hand
    spend(home, 5, T0 + 1_000)
    run_inline(home, "budgets")
    now = [time.time_ns() // 1000]  # the sender's clock, moved by hand: no retry falls due while we look
    w = Worker(home, clock_us=lambda: now[0])
    w.until(lambda: w.deliveries() != [] and w.deliveries()[0][2] == 1, "the first attempt recorded")
    ((kind, status, attempts, http_status, error),) = w.deliveries()
    assert (kind, status, attempts, http_status) == ("soft_limit", "retrying", 1, 0)
    assert "does not match the sink's secret_sha256" in error and str(path) in error
    assert receiver.seen() == []
    webhooks.save_secret(home, sink["sink_id"], SECRET.encode())  # the right one again: the next attempt is sent
    now[0] += US_PER_S  # past the first retry's due time (50 ms)
    w.until(lambda: w.deliveries()[0][1] == "delivered", "delivered with the right secret")
    assert w.deliveries() == [("soft_limit", "delivered", 2, 200, "")]
    assert [_hmac_ok(p, SECRET) for p in receiver.seen()] == [True]
    w.close()


def test_a_delivery_that_keeps_failing_is_failed_after_the_last_attempt(home: Home, receiver: Receiver) -> None:
    receiver.fail_first = 100  # always 500
    add_webhook(home, receiver.url)
    spend(home, 5, T0 + 1_000)
    run_inline(home, "budgets")
    now = [time.time_ns() // 1000]
    w = Worker(home, clock_us=lambda: now[0])
    for n in range(1, 6):  # FAST_RETRY: five attempts
        w.until(lambda n=n: w.deliveries()[0][2] == n, f"attempt {n} recorded")
        now[0] += US_PER_S  # past the next retry's due time (at most 200 ms)
    assert w.deliveries() == [("soft_limit", "failed", 5, 500, "HTTP 500: try again later")]
    for _ in range(20):
        w.turn()
    assert len(receiver.seen()) == 5  # nothing after the last attempt
    attempts = w.store.query("SELECT attempt, outcome, CASE WHEN next_attempt_at_us = 0 THEN 0 "
                             "ELSE next_attempt_at_us - attempted_at_us END FROM delivery_attempts ORDER BY attempt")
    # the backoff: 50 ms, doubled, capped at 200 ms; the fifth attempt was the last (no next one)
    assert attempts == [(1, "retrying", 50_000), (2, "retrying", 100_000), (3, "retrying", 200_000),
                        (4, "retrying", 200_000), (5, "failed", 0)]
    w.close()


def test_no_more_than_the_in_flight_limit_is_sent_at_once(home: Home, receiver: Receiver) -> None:
    receiver.hold = threading.Event()  # every request waits for the test
    add_webhook(home, receiver.url)
    add_webhook(home, receiver.url, "--sink-id", "second-sink")
    spend(home, 10, T0 + 1_000)
    inject_bad(home)
    run_inline(home, "budgets", "journal")
    w = Worker(home)
    try:
        w.until(lambda: len(receiver.seen()) == limits.MAX_DELIVERIES_IN_FLIGHT, "the limit of requests open")
        for _ in range(20):
            w.turn()
        assert len(receiver.seen()) == len(w.sender.flights) == limits.MAX_DELIVERIES_IN_FLIGHT
        assert len(w.proc.open) == 2 * 7  # two sinks: soft_limit, hard_limit and five rejections each
    finally:
        receiver.hold.set()
    w.until(lambda: not w.proc.open, "every delivery delivered")
    assert len({p.delivery_id for p in receiver.seen()}) == 14
    w.close()


def test_a_removed_sink_gets_nothing_more_and_its_open_deliveries_fail(home: Home, receiver: Receiver) -> None:
    sink = add_webhook(home, receiver.url)
    spend(home, 5, T0 + 1_000)
    run_inline(home, "budgets")  # soft_limit: a delivery for the sink
    r = cli.invoke(build_app(), ["alerts", "remove", sink["sink_id"], "--home", str(home.path), "--json"])
    assert r.exit_code == 0, r.output
    assert not home.webhook_secret_path(sink["sink_id"]).exists()
    with Emitter.open("alice", home=home.path) as em:  # 5 more units: hard_limit, after the removal
        for i in range(5):
            em.emit(Action("work"), event_time_us=T0 + 2_000 + i)
    run_inline(home, "budgets")
    assert sorted(k for k, _ in _alert_events(home)) == ["hard_limit", "soft_limit"]
    w = Worker(home)
    w.until(lambda: w.sender.ready, "the sender ready")
    for _ in range(20):  # turns in which it would send, had it anything open
        w.turn()
    assert w.deliveries() == [("soft_limit", "failed", 0, None, "sink removed")]
    assert receiver.seen() == []
    w.close()
    listed = cli.invoke(build_app(), ["alerts", "list", "--home", str(home.path), "--json"])
    assert [(s["sink_id"], s["active"], s["secret"]) for s in json.loads(listed.stdout)] == [
        (sink["sink_id"], False, "removed")]
    again = cli.invoke(build_app(), ["alerts", "remove", sink["sink_id"], "--home", str(home.path)])
    assert again.exit_code == 2 and "sink_id" in again.output and "already removed" in again.output


def test_readers_refuse_a_sink_signed_by_an_agent(home: Home, receiver: Receiver) -> None:
    alice = home.load_key("alice")
    body = WebhookSink("wh-alice", receiver.url, ("soft_limit",), hashlib.sha256(SECRET.encode()).digest())
    log = home.open_log()
    try:
        rec, _ = build_record(alice, [body], t=T0 + 50)
        log.append(home.control_topic, [(b"alice", rec)])
        assert webhooks.read_sinks(log, home.control_topic, home.anchors()) == []
    finally:
        log.close()
    run_inline(home, "deliveries")
    assert rows(home, "deliveries", "SELECT count(*) FROM webhook_sinks") == [(0,)]
    assert rows(home, "deliveries", "SELECT code FROM quarantine") == [(RejectCode.NOT_OPERATOR.value,)]


# ---------------------------------------------------------------------------------------------- the CLI and secrets


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://hooks.example.test/x", "must be an http or https URL"),
    ("https://user:pw@hooks.example.test/x", "must not carry credentials"),
    ("hooks.example.test/x", "must be an http or https URL"),
    ("https:///no-host", "must name a host"),
    ("https://hooks.example.test:99999/x", "is not a valid URL"),
    ("https://hooks.example.test/x#frag", "must not have a #fragment"),
    ("https://hooks.example.test/a b", "must not contain whitespace"),
])
def test_add_webhook_refuses_a_bad_url_and_appends_nothing(home: Home, url: str, reason: str) -> None:
    log = home.open_log()
    try:
        before = log.end_offset(home.control_topic, 0)
        r = cli.invoke(build_app(), ["alerts", "add-webhook", url, "--events", EVENTS, "--secret", SECRET,
                                     "--home", str(home.path)])
        assert r.exit_code == 2, r.output
        assert "url" in r.output and reason in r.output
        assert log.end_offset(home.control_topic, 0) == before
    finally:
        log.close()
    assert not home.webhook_secrets_dir.exists()
    with pytest.raises(ValidationError) as e:
        WebhookSink("wh-x", url, ("soft_limit",), bytes(32))
    assert e.value.field == "url" and e.value.value == url


def test_add_webhook_refuses_unknown_kinds_and_short_secrets(home: Home, tmp_path: Path) -> None:
    app = build_app()
    r = cli.invoke(app, ["alerts", "add-webhook", "https://hooks.example.test/x", "--events", "soft_limit,overspent",
                         "--secret", SECRET, "--home", str(home.path)])
    assert r.exit_code == 2 and "events[1]" in r.output and "overspent" in r.output
    r = cli.invoke(app, ["alerts", "add-webhook", "https://hooks.example.test/x", "--events", "soft_limit",
                         "--secret", "short", "--home", str(home.path)])
    assert r.exit_code == 2 and "secret" in r.output and "<5 bytes>" in r.output and "short" not in r.stdout
    r = cli.invoke(app, ["alerts", "add-webhook", "https://hooks.example.test/x", "--events", "soft_limit",
                         "--home", str(home.path)])
    assert r.exit_code == 2 and "exactly one of --secret or --secret-file" in r.output


def test_the_secret_is_kept_0600_in_the_home_never_printed_nor_on_the_log(home: Home, tmp_path: Path) -> None:
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(SECRET + "\n")
    r = cli.invoke(build_app(), ["alerts", "add-webhook", "https://hooks.example.test/ledger", "--events", EVENTS,
                                 "--secret-file", str(secret_file), "--home", str(home.path)])
    assert r.exit_code == 0, r.output
    assert SECRET not in r.output
    sid = webhooks.sink_id_for("https://hooks.example.test/ledger")
    path = home.webhook_secret_path(sid)
    assert path == home.path / "secrets" / "webhooks" / f"{sid}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.webhook_secrets_dir.stat().st_mode) == 0o700
    assert path.read_bytes() == SECRET.encode()  # the trailing newline of the file given is not part of it
    log = home.open_log()
    try:
        raw = b"".join(rec.value for rec in read_all(log, home.control_topic))
        (v,) = webhooks.read_sinks(log, home.control_topic, home.anchors())
    finally:
        log.close()
    assert SECRET.encode() not in raw
    assert v.sink.secret_sha256 == hashlib.sha256(SECRET.encode()).digest()
    assert v.sink.events == ("hard_limit", "rejections", "soft_limit", "suspended")
    listed = cli.invoke(build_app(), ["alerts", "list", "--home", str(home.path), "--json"])
    assert [(s["sink_id"], s["active"], s["secret"]) for s in json.loads(listed.stdout)] == [(sid, True, "ok")]
    assert SECRET not in listed.output
    os.chmod(path, 0o644)
    listed = cli.invoke(build_app(), ["alerts", "list", "--home", str(home.path), "--json"])
    assert "readable or writable by group/others" in json.loads(listed.stdout)[0]["secret"]


# ---------------------------------------------------------------------------------------------- pure parts


def test_the_retry_schedule_doubles_to_its_cap_then_fails() -> None:
    p = webhooks.RetryPolicy(first_delay_us=10 * US_PER_S, factor=2, max_delay_us=60 * US_PER_S, max_attempts=5)
    assert [p.delay_us(n) for n in range(1, 6)] == [10 * US_PER_S, 20 * US_PER_S, 40 * US_PER_S, 60 * US_PER_S,
                                                    60 * US_PER_S]
    assert p.after_failure(1, 1_000) == 1_000 + 10 * US_PER_S
    assert p.after_failure(5, 1_000) == 0  # the fifth failed attempt was the last
    default = webhooks.RetryPolicy()
    assert (default.first_delay_us, default.factor, default.max_delay_us, default.max_attempts) == (
        10 * US_PER_S, 2, 3_600 * US_PER_S, 12)
    assert webhooks.parse_retry(FAST_RETRY) == webhooks.RetryPolicy(50_000, 2, 200_000, 5)


@pytest.mark.parametrize(("text", "field_name"), [
    ("first=50", "TOKENLEDGER_WEBHOOK_RETRY.first"),
    ("attempts=0", "retry.attempts"),
    ("factor=2.5", "TOKENLEDGER_WEBHOOK_RETRY.factor"),
    ("first=2s,max=1s", "retry.max"),
    ("delay=1s", "TOKENLEDGER_WEBHOOK_RETRY"),
])
def test_a_bad_retry_setting_names_its_field(text: str, field_name: str) -> None:
    with pytest.raises(ValidationError) as e:
        webhooks.parse_retry(text)
    assert e.value.field == field_name


def test_webhook_events_are_checked_and_kept_sorted() -> None:
    sha = hashlib.sha256(b"x" * 16).digest()
    assert WebhookSink("s", "http://127.0.0.1:8080/h", ["suspended", "breach"], sha).events == ("breach", "suspended")
    for events, fname in ((["soft_limit", "soft_limit"], "events"), (["nope"], "events[0]"), ([], "events")):
        with pytest.raises(ValidationError) as e:
            WebhookSink("s", "http://127.0.0.1/h", events, sha)
        assert e.value.field == fname
    with pytest.raises(ValidationError) as e:
        WebhookSink("s", "http://127.0.0.1/h", ["breach"], sha[:31])
    assert e.value.field == "secret_sha256"
    with pytest.raises(ValidationError) as e:
        DeliveryAttempt("d" * 32, "s", 1, "delivered", 500)
    assert e.value.field == "http_status"
    with pytest.raises(ValidationError) as e:
        DeliveryAttempt("d" * 32, "s", 1, "retrying", 503)
    assert e.value.field == "next_attempt_at_us"


def test_signatures_verify_only_with_the_secret_timestamp_and_body() -> None:
    body = webhooks.payload("d" * 32, "soft_limit", "e" * 32, {"consumed": 5, "kind": "ignored"})
    assert json.loads(body) == {"alert_event_id": "e" * 32, "consumed": 5, "delivery_id": "d" * 32,
                                "kind": "soft_limit"}
    sig = webhooks.signature(SECRET.encode(), 1_800_000_000, body)
    assert sig == "sha256=" + hmac.new(SECRET.encode(), b"1800000000." + body, hashlib.sha256).hexdigest()
    assert webhooks.verify_signature(SECRET.encode(), "1800000000", body, sig)
    assert not webhooks.verify_signature(SECRET.encode(), "1800000001", body, sig)
    assert not webhooks.verify_signature(OTHER_SECRET.encode(), "1800000000", body, sig)
    assert not webhooks.verify_signature(SECRET.encode(), "1800000000", body + b" ", sig)


def test_the_delivery_id_is_stable_and_names_sink_and_alert() -> None:
    a = delivery_id("wh-1", "e" * 32)
    assert a == delivery_id("wh-1", "e" * 32) and len(a) == 32 and int(a, 16) >= 0
    assert a != delivery_id("wh-2", "e" * 32) and a != delivery_id("wh-1", "f" * 32)
