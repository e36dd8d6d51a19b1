"""A real ``tokenledger serve`` process on a free loopback port, for tests and benchmarks.

    with running_service(home.path) as served:
        httpx.get(served.url + "/healthz")
        token = served.token("alice", scopes=("ingest",))

The service runs as its own process (``python -m processors.cli serve --port 0``), exactly as a user starts it; its
bound port is read from the first line it prints on stderr. ``Served.kill()`` sends SIGKILL (crash tests);
leaving the block stops it with SIGTERM (a graceful shutdown) and waits for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ledger.sdk.home import Home
from ledger.sdk.tokens import SCOPES, TokenStore

START_TIMEOUT_S = 60.0  # a cold start imports FastAPI, DuckDB and the codec: slow on a busy 2-core machine
STOP_TIMEOUT_S = 20.0
_LISTENING_RE = re.compile(r"listening on (https?://\S+?:\d+)")


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    home: Path
    operator_token: str
    stderr_lines: list[str] = field(default_factory=list)

    def token(self, agent: str, scopes: Sequence[str] = SCOPES, *, rate_per_s: float = 1000.0) -> str:
        """A new agent token for ``agent`` (written to the home's token table, as ``token create`` does)."""
        store = TokenStore(Home.open(self.home).tokens_file)
        try:
            return store.create(agent=agent, scopes=scopes, rate_per_s=rate_per_s).token
        finally:
            store.close()

    def auth(self, token: str | None = None) -> dict[str, str]:
        """The Authorization header for ``token`` (default: the operator token)."""
        return {"Authorization": f"Bearer {token or self.operator_token}"}

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (what a crash does)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_service(home: Path, *, log_url: str | None = None, extra_args: Sequence[str] = (),
                    operator_rate_per_s: float = 10_000.0, ca_file: Path | None = None) -> Iterator[Served]:
    """Start ``tokenledger serve`` on the home; yield once it answers ``/healthz``; stop it after. ``ca_file``: the
    certificate to trust when ``extra_args`` serve HTTPS."""
    store = TokenStore(Home.open(home).tokens_file)
    try:
        operator = store.create(agent=None, operator=True, rate_per_s=operator_rate_per_s, note="test operator").token
    finally:
        store.close()
    cmd = [sys.executable, "-m", "processors.cli", "serve", "--home", str(home), "--port", "0", *extra_args]
    if log_url is not None:
        cmd += ["--log", log_url]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)  # noqa: S603 (no shell)
    assert proc.stderr is not None
    lines: list[str] = []
    url: list[str] = []
    ready = threading.Event()

    def pump() -> None:  # keeps reading stderr so the service never blocks on a full pipe
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            m = _LISTENING_RE.search(line)
            if m and not url:
                url.append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(START_TIMEOUT_S) or not url:
            raise RuntimeError("tokenledger serve did not start:\n" + "\n".join(lines[-40:]))
        served = Served(url[0], proc, home, operator, lines)
        _wait_healthy(served, ca_file)
        yield served
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if it is still running after ``timeout_s``; waits either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(served: Served, ca_file: Path | None) -> None:
    import ssl
    import urllib.error
    import urllib.request

    context = None if ca_file is None else ssl.create_default_context(cafile=str(ca_file))

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if served.proc.poll() is not None:
            raise RuntimeError("tokenledger serve exited:\n" + "\n".join(served.stderr_lines[-40:]))
        # not listening yet: ask again until the deadline (a loopback URL we built)
        with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(  # noqa: S310
                served.url + "/healthz", timeout=2, context=context) as r:
            if r.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("tokenledger serve did not answer /healthz:\n" + "\n".join(served.stderr_lines[-40:]))
        time.sleep(0.05)
