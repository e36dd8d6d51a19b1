"""Start each processor as its own OS process and keep it running.

A worker that dies is restarted with exponential backoff (it resumes from its own committed
positions, so a restart neither loses nor repeats work). SIGTERM/SIGINT to the supervisor are passed
on as SIGTERM to every worker, which finish their current batch and exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RESTART_BACKOFF_MIN_S = 0.5
RESTART_BACKOFF_MAX_S = 10.0
STOP_GRACE_S = 30.0  # how long workers get to finish their batch before SIGKILL
POLL_S = 0.1  # how often the supervisor looks at its workers


@dataclass
class Worker:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = RESTART_BACKOFF_MIN_S
    exit_codes: list[int] = field(default_factory=list)


def worker_command(name: str, home: Path, log: str | None, until_caught_up: bool) -> list[str]:
    cmd = [sys.executable, "-m", "processors.host.worker", name, "--home", str(home)]
    if log:
        cmd += ["--log", log]
    if until_caught_up:
        cmd.append("--until-caught-up")
    return cmd


def supervise(names: list[str], home: Path, log: str | None, *, until_caught_up: bool = False,
              on_event: Callable[[str], None] = lambda msg: None,
              max_restarts: int | None = None) -> dict[str, int]:
    """Run workers until they all exit cleanly (``until_caught_up``) or until a stop signal.

    ``max_restarts``: give up on a worker after that many failed starts (default: never when
    running as a service; 3 when running until caught up, where a persistent failure must surface)."""
    if max_restarts is None and until_caught_up:
        max_restarts = 3
    workers = [Worker(n, worker_command(n, home, log, until_caught_up)) for n in names]
    stopping = {"flag": False}

    def stop(signum: int, frame: object) -> None:
        stopping["flag"] = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping["flag"]:
            alive = [_tend(w, until_caught_up=until_caught_up, max_restarts=max_restarts, on_event=on_event)
                     for w in workers]
            if not any(alive):
                break
            time.sleep(POLL_S)
    finally:
        _stop_all(workers)
        for s, h in old.items():
            signal.signal(s, h)
    return {w.name: (w.exit_codes[-1] if w.exit_codes else 0) for w in workers}


def _tend(w: Worker, *, until_caught_up: bool, max_restarts: int | None, on_event: Callable[[str], None]) -> bool:
    """One look at a worker: start it when its backoff has passed, note its exit and schedule its restart.
    False once it is done for good (caught up, or given up on)."""
    if w.proc is None:
        if w.next_start == float("inf"):
            return False
        if time.monotonic() >= w.next_start:
            # the command is ours (worker_command): this interpreter, a module path, names from the registry
            w.proc = subprocess.Popen(w.args, start_new_session=True)  # noqa: S603  (no input reaches a shell)
            on_event(f"started {w.name} (pid {w.proc.pid})")
        return True
    code = w.proc.poll()
    if code is None:
        return True
    w.exit_codes.append(code)
    w.proc = None
    if code == 0 and until_caught_up:
        on_event(f"{w.name} caught up")
        w.next_start = float("inf")
        return False
    w.restarts += 1
    if max_restarts is not None and w.restarts > max_restarts:
        on_event(f"{w.name} exited with {code} {w.restarts} times; giving up")
        w.next_start = float("inf")
        return False
    w.next_start = time.monotonic() + w.backoff
    on_event(f"{w.name} exited with {code}; restarting in {w.backoff:.1f}s")
    w.backoff = min(w.backoff * 2, RESTART_BACKOFF_MAX_S)
    return True


def _stop_all(workers: list[Worker]) -> None:
    """SIGTERM every running worker, give them STOP_GRACE_S together to finish their batch, then SIGKILL."""
    for w in workers:
        if w.proc is not None and w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for w in workers:
        if w.proc is None:
            continue
        try:
            w.exit_codes.append(w.proc.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.exit_codes.append(w.proc.wait())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
