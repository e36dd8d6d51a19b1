"""Start each processor as its own OS process and keep it running.

A worker that dies is restarted with exponential backoff (it resumes from its own committed
positions, so a restart neither loses nor repeats work); a worker that ran for
``limits.RESTART_BACKOFF_RESET_S`` is healthy, and its next restart waits the shortest backoff again.
SIGTERM/SIGINT to the supervisor are passed on as SIGTERM to every worker, which finish their current
batch and exit. Workers die with their supervisor even when it is SIGKILLed (``processors.host.worker``:
a parent-death signal, and a watchdog on its parent pid).

One supervisor per home: it holds ``<home>/processors/supervisor.lock`` (an ``flock``, released by the
kernel however the process ends) and a second one refuses at once with ``HomeBusyError`` naming the
holder's pid, instead of starting workers that fail on each state file's lock and restart forever.

``until_caught_up`` runs the processors in dependency waves (``processors.order_by_topics``): a
processor that reads another's derived topic starts only once that one has caught up and exited, so
it reads its input to the end (settlements never finishes before allocations has produced).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ledger import limits
from ledger.errors import ExitCode, HomeBusyError
from ledger.sdk.home import Home, resolve_log_url
from processors import get, order_by_topics
from processors.host import service
from processors.runtime.shards import Shard, require_shardable

RESTART_BACKOFF_MIN_S = 0.5
RESTART_BACKOFF_MAX_S = 10.0
STOP_GRACE_S = 30.0  # how long workers get to finish their batch before SIGKILL
POLL_S = 0.1  # how often the supervisor looks at its workers
LOCK_FILE = "supervisor.lock"  # in <home>/processors/: held by the one supervisor of the home
PROCESSORS_DIR = "processors"  # Home.processor_dir's parent (the supervisor gets a path, not a Home)


@dataclass
class Worker:
    name: str  # what it is called in messages and results: the processor, or "<processor>/shard-I-of-N"
    args: list[str]
    processor: str = ""  # the processor it runs ("" = name)
    shard: Shard | None = None  # one instance of a sharded processor
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0  # monotonic time of the last start (how long it has been healthy)
    backoff: float = RESTART_BACKOFF_MIN_S
    exit_codes: list[int] = field(default_factory=list)


def worker_command(name: str, home: Path, log: str | None, until_caught_up: bool,
                   shard: Shard | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "processors.host.worker", name, "--home", str(home),
           "--supervisor-pid", str(os.getpid())]
    if shard is not None:
        cmd += ["--shard", f"{shard.index}/{shard.count}"]
    if log:
        cmd += ["--log", log]
    if until_caught_up:
        cmd.append("--until-caught-up")
    return cmd


def lock_path(home: Path) -> Path:
    return home / PROCESSORS_DIR / LOCK_FILE


@contextlib.contextmanager
def home_lock(home: Path) -> Iterator[None]:
    """Hold the home's supervisor lock, or raise ``HomeBusyError`` naming the pid that holds it."""
    path = lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    f: IO[str] = open(path, "a+")  # noqa: SIM115 - held open for the whole run: closing it releases the lock
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            raise HomeBusyError(
                f"another `tokenledger run` (pid {holder or 'unknown'}) is running this home's processors",
                home=str(home), pid=int(holder) if holder.isdigit() else holder or None, lock=str(path),
                hint="stop it (SIGTERM / Ctrl-C) first; `tokenledger status` shows its processors") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        f.close()  # releases the flock (the kernel also does when the process dies, SIGKILL included)


def supervise(names: list[str], home: Path, log: str | None, *, until_caught_up: bool = False,
              on_event: Callable[[str], None] = lambda msg: None,
              max_restarts: int | None = None,
              shards: Mapping[str, list[Shard]] | None = None) -> dict[str, int]:
    """Run workers until they all exit cleanly (``until_caught_up``) or until a stop signal.

    ``shards``: processor -> the instances of it to run here (``processors.runtime.shards``), one worker each,
    named ``<processor>/shard-I-of-N`` in messages and results; a processor not in it runs as one worker.

    ``max_restarts``: give up on a worker after that many failed starts (default: never when
    running as a service; 3 when running until caught up, where a persistent failure must surface).
    Raises ``HomeBusyError`` (before starting anything) when another supervisor runs this home."""
    if max_restarts is None and until_caught_up:
        max_restarts = 3
    # as a service every processor runs at once (each follows the log live); until caught up, in waves
    waves = order_by_topics(names) if until_caught_up else [sorted(names)]
    workers, members = _workers(waves, home, log, until_caught_up, shards or {})
    ledger_home = Home.open(home)

    def exited(w: Worker, pid: int, code: int) -> None:
        if code != 0:  # a worker killed outright left "running" in its status: say it is not, and why
            service.note_exit(ledger_home, w.processor or w.name, pid, code, w.shard)

    stopping = {"flag": False}

    def stop(signum: int, frame: object) -> None:
        stopping["flag"] = True

    with home_lock(home):
        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i, wave in enumerate(waves):
                if i > 0:
                    failed = [k for w in waves[:i] for n in w for k in members[n] if workers[k].exit_codes[-1:] != [0]]
                    if failed:
                        on_event(f"not starting {', '.join(wave)}: {', '.join(failed)} did not catch up")
                        break
                    on_event(f"{', '.join(waves[i - 1])} caught up; starting {', '.join(wave)}")
                _register_shard_signers(ledger_home, log, wave, shards or {})
                _run_wave([workers[k] for n in wave for k in members[n]], stopping, until_caught_up=until_caught_up,
                          max_restarts=max_restarts, on_event=on_event, on_exit=exited)
                if stopping["flag"]:
                    break
        finally:
            _stop_all(list(workers.values()))
            for s, h in old.items():
                signal.signal(s, h)
    return {n: _result(w, until_caught_up) for n, w in workers.items()}


def _register_shard_signers(home: Home, log_url: str | None, names: list[str],
                            shards: Mapping[str, list[Shard]]) -> None:
    """The signers of every shard of ``names`` registered before any shard starts: a shard registers its own when it
    starts, but a control record appended while the others run is one they must fold too, and one that caught up
    before it would exit without it (``--until-caught-up`` would end at different points of the log)."""
    todo = [(n, sh) for n in names for sh in shards.get(n, [])
            if not home.key_path(service.signer_id(n, sh)).exists()]
    if not todo:
        return
    lg = home.open_log(resolve_log_url(log_url, home))
    try:
        for n, sh in todo:
            service.ensure_processor_key(home, n, lg, sh)
    finally:
        lg.close()


def _workers(waves: list[list[str]], home: Path, log: str | None, until_caught_up: bool,
             shards: Mapping[str, list[Shard]]) -> tuple[dict[str, Worker], dict[str, list[str]]]:
    """The workers by name, and each processor's workers' names (one, or one per shard)."""
    for n, instances in shards.items():
        for one in instances:
            require_shardable(get(n), one)  # refused before anything starts
    members: dict[str, list[str]] = {}
    workers: dict[str, Worker] = {}
    for wave in waves:
        for n in wave:
            mine: list[Shard | None] = [*shards[n]] if shards.get(n) else [None]
            for sh in mine:
                key = n if sh is None else f"{n}/{sh.label}"
                workers[key] = Worker(key, worker_command(n, home, log, until_caught_up, sh), processor=n, shard=sh)
                members.setdefault(n, []).append(key)
    return workers, members


def _result(w: Worker, until_caught_up: bool) -> int:
    if w.exit_codes:
        return w.exit_codes[-1]
    # never started: its dependencies did not catch up (or a stop came first), so it is not caught up either;
    # as for any work asked for that failed (ExitCode.BAD_INPUT), nothing is corrupt
    return int(ExitCode.BAD_INPUT) if until_caught_up else 0


def _run_wave(wave: list[Worker], stopping: dict[str, bool], *, until_caught_up: bool, max_restarts: int | None,
              on_event: Callable[[str], None], on_exit: Callable[[Worker, int, int], None]) -> None:
    while not stopping["flag"]:
        alive = [_tend(w, until_caught_up=until_caught_up, max_restarts=max_restarts, on_event=on_event,
                       on_exit=on_exit) for w in wave]
        if not any(alive):
            return
        time.sleep(POLL_S)


def _tend(w: Worker, *, until_caught_up: bool, max_restarts: int | None, on_event: Callable[[str], None],
          on_exit: Callable[[Worker, int, int], None] = lambda w, pid, code: None,
          healthy_s: float = limits.RESTART_BACKOFF_RESET_S) -> bool:
    """One look at a worker: start it when its backoff has passed, note its exit and schedule its restart.
    False once it is done for good (caught up, or given up on). ``healthy_s``: a run at least this long
    (seconds) resets the backoff."""
    if w.proc is None:
        if w.next_start == float("inf"):
            return False
        if time.monotonic() >= w.next_start:
            # the command is ours (worker_command): this interpreter, a module path, names from the registry
            w.proc = subprocess.Popen(w.args, start_new_session=True)  # noqa: S603  (no input reaches a shell)
            w.started_at = time.monotonic()
            on_event(f"started {w.name} (pid {w.proc.pid})")
        return True
    code = w.proc.poll()
    if code is None:
        return True
    w.exit_codes.append(code)
    on_exit(w, w.proc.pid, code)
    w.proc = None
    if code == 0 and until_caught_up:
        on_event(f"{w.name} caught up")
        w.next_start = float("inf")
        return False
    if time.monotonic() - w.started_at >= healthy_s:
        # it ran healthy for a while: this is a new failure, not the next turn of a crash loop
        w.backoff = RESTART_BACKOFF_MIN_S
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
