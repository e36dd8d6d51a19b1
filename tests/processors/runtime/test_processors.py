"""Processor runtime and the journal, on both log backends (embedded SQLite and Kafka):

- the `events` view equals the verified log; bad records land in `rejections` and as dead letters
  on `<prefix>.rejected`, once each;
- crash consistency: a journal process killed with SIGKILL at random moments and at every commit
  step (20+ times) ends with the same state digest as an uninterrupted rebuild; nothing lost or doubled;
- replay equality: the live digest equals the replay digest;
- analysts' queries in a loop while the processor ingests: neither side errors or stalls.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.integrity.verify import audit
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, TEST_WINDOW, fill, inject_bad, make_home
from ledger.wire import codec
from processors.cli import build_app
from processors.host.service import live_digest, open_runner, replay

app = build_app()  # the whole `tokenledger` command, as the console script builds it

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()
BACKENDS = [pytest.param("sqlite"), pytest.param("kafka", marks=pytest.mark.kafka)]


@pytest.fixture(params=BACKENDS)
def home(request, tmp_path) -> Home:
    """A home with the demo's workload plus bad records, on the requested backend."""
    if request.param == "kafka":
        url = request.getfixturevalue("kafka_url")
        h = Home.init(tmp_path / "home", log_url=url, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
        _register_operator(h)
    else:
        h = make_home(tmp_path / "home", agents=())
    h.events_emitted = fill(h, tasks=12, batch_size=5)  # type: ignore[attr-defined]
    h.bad = inject_bad(h)  # type: ignore[attr-defined]
    return h


def _register_operator(h: Home) -> None:
    from ledger.wire.events import AgentRegistered

    op = h.operator_key()
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            em.emit(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), event_time_us=1_767_225_600_000_000)
            em.emit(TEST_WINDOW, event_time_us=T0)  # as make_home: the tests' hours are live data
    finally:
        log.close()


def run_inline(h: Home) -> None:
    log = h.open_log()
    try:
        r, store, _ = open_runner(h, "journal", log)
        try:
            r.run_until_caught_up()
        finally:
            store.close()
    finally:
        log.close()


def expected(h: Home):
    log = h.open_log()
    try:
        return audit(log, h.ledger_topics, h.anchors())
    finally:
        log.close()


def dead_letters(h: Home) -> Counter:
    log = h.open_log()
    try:
        log.ensure_topic(h.topic_for("rejected"))
        c = Counter()
        for rec in read_all(log, h.topic_for("rejected")):
            for raw in codec.decode_batch(rec.value).events:
                body = codec.decode_event(raw).event.body
                c[(body.topic, body.partition, body.offset, body.code)] += 1
        return c
    finally:
        log.close()


def query(h: Home, sql: str) -> list[dict]:
    r = runner.invoke(app, ["query", sql, "--home", str(h.path), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_journal_events_view_equals_the_verified_log(home):
    run_inline(home)
    rep = expected(home)
    assert sum(rep.rejected.values()) == sum(home.bad.values())
    d = live_digest(home, "journal")
    assert d["tables"]["events"]["rows"] == rep.accepted_events
    assert d["tables"]["quarantine"]["rows"] == sum(home.bad.values())
    letters = dead_letters(home)
    assert len(letters) == sum(home.bad.values()) and set(letters.values()) == {1}
    assert Counter(code for (_, _, _, code) in letters) == Counter(rep.rejected)
    # the published views answer SQL (publish happens in the service loop: run it once)
    proc = _worker(home, until_caught_up=True)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    rows = query(home, "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events")
    assert rows == [{"n": rep.accepted_events, "ids": rep.accepted_events}]
    rows = query(home, "SELECT code, count(*) AS n FROM rejections GROUP BY code ORDER BY code")
    assert {r["code"]: r["n"] for r in rows} == rep.rejected
    rows = query(home, "SELECT sum(request_output_tokens) AS ro, sum(request_input_cached_tokens) AS ric "
                       "FROM events WHERE kind = 'interaction'")
    assert rows[0]["ro"] > 0 and rows[0]["ric"] >= 0


def _worker(h: Home, *, until_caught_up: bool = False, crash_at: str | None = None, max_records: int = 3):
    cmd = [sys.executable, "-m", "processors.host.worker", "journal", "--home", str(h.path), "--max-records",
           str(max_records)]
    if until_caught_up:
        cmd.append("--until-caught-up")
    if crash_at:
        cmd += ["--crash-at", crash_at]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


POINTS = ("before_commit", "inside_commit", "after_commit", "before_produce", "after_produce")


@pytest.mark.slow  # ~40 s over both logs; scripts/slow_tests.sh
def test_sigkill_at_random_moments_and_every_commit_step(home):
    """Story: 24 times, append more work (with bad records), start the journal (3 records a batch)
    and kill it — half the time at a named step of the commit protocol (deterministic), half after a
    random delay. Then let it finish. Its digest must equal a clean rebuild's; every event once;
    every dead letter exactly once."""
    rng = random.Random(4242)
    kills = 0
    for i in range(24):
        fill(home, tasks=1, batch_size=3, seed=100 + i, run=f"crash{i}")
        inject_bad(home)
        if i % 2 == 0:
            point = POINTS[(i // 2) % len(POINTS)]
            n = 1 if "produce" in point else rng.randint(1, 3)
            p = _worker(home, crash_at=f"{point}:{n}", until_caught_up=True)
            code = p.wait(timeout=120)
            assert code == -signal.SIGKILL, (point, code, p.stderr.read())
        else:
            p = _worker(home)
            time.sleep(rng.uniform(0.05, 0.5))
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
        kills += 1
    assert kills >= 20
    p = _worker(home, until_caught_up=True)
    assert p.wait(timeout=120) == 0, p.stderr.read()

    rep = expected(home)
    live = live_digest(home, "journal")
    log = home.open_log()
    try:
        clean = replay(home, "journal", log)
    finally:
        log.close()
    assert live["digest"] == clean["digest"]
    assert live["tables"]["events"]["rows"] == rep.accepted_events
    assert live["tables"]["quarantine"]["rows"] == sum(rep.rejected.values())
    letters = dead_letters(home)
    assert len(letters) == sum(rep.rejected.values()) and set(letters.values()) == {1}
    rows = query(home, "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events")
    assert rows == [{"n": rep.accepted_events, "ids": rep.accepted_events}]


def test_replay_equals_live_including_rejected_events(home):
    p = _worker(home, until_caught_up=True, max_records=4)
    assert p.wait(timeout=120) == 0, p.stderr.read()
    r = runner.invoke(app, ["replay", "journal", "--home", str(home.path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["equal"] and res["live"]["tables"]["quarantine"]["rows"] == sum(home.bad.values())
    # and a replay of a state that differs is caught: tamper with the live state file
    import duckdb

    con = duckdb.connect(str(home.path / "processors" / "journal" / "state.duckdb"))
    con.execute("UPDATE events SET input_tokens = input_tokens + 1 WHERE kind = 'action' AND model IS NOT NULL "
                "AND event_id = (SELECT min(event_id) FROM events WHERE model IS NOT NULL)")
    con.close()
    r = runner.invoke(app, ["replay", "journal", "--home", str(home.path), "--json"])
    assert r.exit_code == 1 and not json.loads(r.stdout)["equal"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_queries_in_a_loop_while_ingesting(tmp_path, backend):
    h = make_home(tmp_path / "home", agents=())
    fill(h, tasks=3, batch_size=5, run="warmup")
    worker = subprocess.Popen([sys.executable, "-m", "processors.host.worker", "journal", "--home", str(h.path),
                               "--max-records", "5"], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    stop = threading.Event()
    appended = {"events": 0}
    errors: list[str] = []

    seen: list[int] = []

    def writer():
        try:
            for i in range(25):
                if stop.is_set():
                    break
                appended["events"] += fill(h, tasks=2, batch_size=5, seed=i, run=f"w{i}")
                # interleave by what happened, not by speed: the next append waits for a query after this one
                # (a slow query, e.g. on a busy machine, must not let the writer finish before any ran)
                queried = len(seen)
                until = time.monotonic() + 30
                while len(seen) == queried and time.monotonic() < until:
                    time.sleep(0.005)
        except Exception as e:  # surfaced below
            errors.append(repr(e))

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 60
    try:
        while t.is_alive() and time.monotonic() < deadline:
            rows = query(h, "SELECT count(*) AS n FROM events")
            seen.append(rows[0]["n"])
    finally:
        t.join(timeout=60)
    assert not errors, errors
    assert len(seen) >= 5 and seen == sorted(seen)  # monotone: published views only grow
    want = expected(h).accepted_events
    deadline = time.monotonic() + 60
    while query(h, "SELECT count(*) AS n FROM events")[0]["n"] < want and time.monotonic() < deadline:
        time.sleep(0.05)
    assert query(h, "SELECT count(*) AS n FROM events")[0]["n"] == want  # the processor did not stall
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.stderr.read()  # SIGTERM: finish the batch, exit cleanly
    status = json.loads((h.path / "processors" / "journal" / "status.json").read_text())
    assert status["state"] == "stopped" and status["lag"] == 0


def test_no_two_processors_publish_a_view_under_one_name():
    """The views of every processor are attached into one query database: a shared name would collide there."""
    from collections import Counter

    from processors import REGISTRY

    names = Counter(v.name for cls in REGISTRY.values() for v in cls.views)
    assert [n for n, c in names.items() if c > 1] == []


def test_the_registry_names_each_processor_class_by_its_own_name() -> None:
    """``processors.REGISTRY`` imports a processor's module only when asked for it; each entry is the class
    whose ``name`` it is listed under."""
    from processors import REGISTRY

    assert sorted(REGISTRY) == ["allocations", "budgets", "deliveries", "journal", "notary", "reputation", "settlements"]
    for name, cls in REGISTRY.items():
        assert cls.name == name
