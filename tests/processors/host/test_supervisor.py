"""The supervisor and its workers as real processes on real homes (embedded SQLite log, or a Tansu broker).

What an operator relies on: workers never outlive their supervisor (even a SIGKILLed one); one
supervisor per home (a second refuses at once, exit 3, naming the first's pid); a crash after a
healthy run restarts after the shortest backoff; ``status`` always says why a processor is not
running; ``--until-caught-up`` runs a processor only after those whose output it reads; a log that
went backwards stops a processor with ``LogRewoundError`` (exit 4) instead of being skipped.
Waits poll with generous deadlines; nothing asserts how fast anything is.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.econ import econ_home

from ledger.errors import ExitCode
from ledger.sdk.home import Home
from ledger.testing.broker import Broker, free_port
from ledger.testing.homes import fill, make_home
from processors.host import service, supervisor
from processors.host.supervisor import RESTART_BACKOFF_MIN_S, Worker, _tend
from processors.services import replay as replay_service

DEADLINE_S = 90.0  # a condition that holds within a second or two when green, on a busy shared machine


def _eventually(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    """No such process, or only a zombie left (an orphan's new parent may be slow to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        return not supervisor.pid_alive(pid)


def _status(home: Home, name: str) -> dict[str, Any]:
    """The processor's status file as written ({} before it wrote one)."""
    try:
        status: dict[str, Any] = json.loads(service.status_file(home, name).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return status


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from processors.cli import main; main()", *args]


def _worker(home: Home, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processors.host.worker", name, "--home", str(home.path), *extra],
                          capture_output=True, text=True, timeout=300, check=False)


def _running_pids(home: Home, names: list[str]) -> dict[str, int] | None:
    """The pids of ``names`` once each status file says it is running (None until then)."""
    pids = {}
    for n in names:
        s = _status(home, n)
        if s.get("state") != "running" or not supervisor.pid_alive(int(s.get("pid", 0))):
            return None
        pids[n] = int(s["pid"])
    return pids


def _start_run(home: Home, names: list[str]) -> tuple[subprocess.Popen[str], dict[str, int]]:
    p = subprocess.Popen(_cli("run", *names, "--home", str(home.path)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    found: dict[str, int] = {}

    def running() -> bool:
        assert p.poll() is None, p.communicate()[1]
        pids = _running_pids(home, names)
        if pids is not None:
            found.update(pids)
        return pids is not None

    _eventually(running, f"{names} running")
    return p, found


def _stop(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=120)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path / "home")
    fill(h, tasks=4)
    return h


# -------------------------------------------------------------------------------------- the supervisor's life


def test_workers_die_with_a_sigkilled_supervisor(home: Home) -> None:
    p, pids = _start_run(home, ["journal", "budgets"])
    try:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        _eventually(lambda: all(_gone(pid) for pid in pids.values()), f"workers {pids} to exit after their supervisor")
    finally:
        for pid in pids.values():
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)  # do not leave them behind if the assertion failed


def test_a_worker_whose_parent_is_already_gone_exits(home: Home) -> None:
    """The parent died before the worker armed its death signal: it must notice on its own (and exit cleanly,
    through its SIGTERM handler or before it started work). Pid 1 is not its parent here (this test is)."""
    r = _worker(home, "journal", "--supervisor-pid", "1")
    assert r.returncode in (0, -signal.SIGTERM), r.stderr


def test_a_second_run_on_the_same_home_refuses_once_with_exit_3(home: Home) -> None:
    p, _pids = _start_run(home, ["journal"])
    try:
        second = subprocess.run(_cli("run", "journal", "--home", str(home.path), "--until-caught-up"),
                                capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == ExitCode.HOME, second.stderr
        assert f"another `tokenledger run` (pid {p.pid}) is running this home's processors" in second.stderr, \
            second.stderr
        assert f"pid: {p.pid}" in second.stderr
        assert "started journal" not in second.stderr  # refused before starting any worker
    finally:
        _stop(p)
    assert p.returncode == 0, p.stderr
    # the lock went with the first supervisor: a new run on the home works
    again = subprocess.run(_cli("run", "journal", "--home", str(home.path), "--until-caught-up"),
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr


def test_restart_backoff_resets_after_a_healthy_run(tmp_path: Path) -> None:
    """A worker that fails after a healthy run restarts after the shortest backoff every time; one that
    fails at once (a crash loop) waits twice as long each time."""
    crash = [sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(1)"]

    def backoffs(healthy_s: float) -> list[str]:
        events: list[str] = []
        w = Worker("crashy", crash)
        deadline = time.monotonic() + DEADLINE_S  # a broken restart must fail the test, not hang it
        while w.restarts < 3:
            assert time.monotonic() < deadline, f"only {w.restarts} restarts in {DEADLINE_S} s"
            _tend(w, until_caught_up=False, max_restarts=None, on_event=events.append, healthy_s=healthy_s)
            time.sleep(0.02)
        if w.proc is not None:
            w.proc.kill()
            w.proc.wait()
        return [e.rsplit(" ", 1)[1] for e in events if "restarting in" in e]

    assert backoffs(healthy_s=0.2) == [f"{RESTART_BACKOFF_MIN_S:.1f}s"] * 3
    assert backoffs(healthy_s=3600.0) == [f"{RESTART_BACKOFF_MIN_S * f:.1f}s" for f in (1, 2, 4)]


# -------------------------------------------------------------------------------------- status


def test_status_shows_why_a_processor_cannot_reach_a_dead_broker(tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    h = Home.init(tmp_path / "home", log_url=f"kafka://127.0.0.1:{port}")
    r = _worker(h, "journal")
    assert r.returncode == ExitCode.LOG, r.stderr
    (row,) = [s for s in replay_service.status(h) if s.processor == "journal"]
    assert row.state == "failed"
    assert row.last_error is not None and "cannot reach the Kafka cluster" in row.last_error
    assert f"127.0.0.1:{port}" in row.last_error
    shown = subprocess.run(_cli("status", "--home", str(h.path), "--json"), capture_output=True, text=True,
                           timeout=120, check=True)
    (journal,) = [s for s in json.loads(shown.stdout) if s["processor"] == "journal"]
    assert "cannot reach the Kafka cluster" in journal["last_error"]


def test_status_keeps_the_last_error_across_a_restart_and_names_a_kill(home: Home) -> None:
    p, pids = _start_run(home, ["journal"])
    try:
        os.kill(pids["journal"], signal.SIGKILL)  # no chance to write anything itself
        _eventually(lambda: "killed by signal 9" in (_status(home, "journal").get("last_error") or ""),
                    "the supervisor to record the kill")
        # restarted: running again, and still showing the error that caused the restart
        _eventually(lambda: (_running_pids(home, ["journal"]) or {}).get("journal", pids["journal"])
                    != pids["journal"], "journal to be restarted")
        (row,) = [s for s in replay_service.status(home) if s.processor == "journal"]
        assert row.state == "running"
        assert row.last_error is not None and f"process {pids['journal']} killed by signal 9" in row.last_error
    finally:
        _stop(p)


# -------------------------------------------------------------------------------------- dependencies


def test_until_caught_up_runs_settlements_after_allocations_has_produced(tmp_path: Path) -> None:
    home = econ_home(tmp_path)  # the price book on the log: the workload's calls get priced and allocated
    fill(home, tasks=4)
    events: list[str] = []
    codes = supervisor.supervise(["settlements", "allocations"], home.path, None, until_caught_up=True,
                                 on_event=events.append)
    assert codes == {"allocations": 0, "settlements": 0}, events
    started = [e.split()[1] for e in events if e.startswith("started ")]
    assert started == ["allocations", "settlements"], events
    assert events.index("allocations caught up") < next(i for i, e in enumerate(events)
                                                         if e.startswith("started settlements"))
    # settlements read allocations' output to its end, and there was output to read
    log = home.open_log()
    try:
        topic = f"{home.config.get('topic_prefix', 'ledger')}.allocations"
        end = log.end_offset(topic, 0)
    finally:
        log.close()
    assert end > 0
    assert _status(home, "settlements")["positions"][f"{topic}/0"] == end


def test_until_caught_up_does_not_start_a_reader_whose_input_failed(tmp_path: Path) -> None:
    h = make_home(tmp_path / "home")
    fill(h, tasks=2)
    # allocations cannot open its state file (a directory is in the way): it fails every start
    service.state_file(h, "allocations").mkdir(parents=True)
    events: list[str] = []
    codes = supervisor.supervise(["settlements", "allocations"], h.path, None, until_caught_up=True,
                                 on_event=events.append, max_restarts=0)
    assert codes["allocations"] != 0
    assert codes["settlements"] == ExitCode.BAD_INPUT
    assert not any(e.startswith("started settlements") for e in events), events
    assert any(e.startswith("not starting settlements") for e in events), events


# -------------------------------------------------------------------------------------- a log that went backwards


def _assert_stops_on_rewind(home: Home) -> None:
    r = _worker(home, "journal", "--until-caught-up")
    assert r.returncode == ExitCode.LOG, r.stderr
    assert "went backwards" in r.stderr, r.stderr
    status = _status(home, "journal")
    assert status["state"] == "failed"
    assert status["last_error"].startswith("LogRewoundError: ")
    assert status["exit_code"] == ExitCode.LOG


def test_a_shorter_embedded_log_stops_the_processor_with_exit_4(tmp_path: Path, home: Home) -> None:
    assert _worker(home, "journal", "--until-caught-up").returncode == 0
    shorter = make_home(tmp_path / "other")  # registrations only: far fewer records than the home's log
    for suffix in ("", "-wal", "-shm"):
        Path(str(home.log_file) + suffix).unlink(missing_ok=True)
    shutil.copy(shorter.log_file, home.log_file)
    _assert_stops_on_rewind(home)


@pytest.mark.kafka
def test_a_restarted_empty_broker_stops_the_processor_with_exit_4(tmp_path: Path, fresh_broker: Broker) -> None:
    h = make_home(tmp_path / "home", log_url=fresh_broker.url)
    fill(h, tasks=2)
    assert _worker(h, "journal", "--until-caught-up").returncode == 0
    fresh_broker.restart()  # Tansu keeps its data in memory: it comes back empty
    _assert_stops_on_rewind(h)
