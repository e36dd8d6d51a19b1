"""Helpers for the HTTP tests of ``tokenledger serve``: processors running as ``tokenledger run`` does, waiting for
their published views to catch up with the log, operator control events, and problem+json answers."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ledger.integrity.verify import audit
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.wire.events import Body
from processors.testing.serve import stop

T = TypeVar("T")
WAIT_S = 180.0  # upper bound for processors to catch up or a decision to appear (never an assertion on time)
POLL_S = 0.1
STOP_S = 60.0
PROBLEM = "application/problem+json"


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
    """``probe()``'s first truthy answer, polled until ``timeout_s`` (then the test fails naming ``what``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(POLL_S)


def control(h: Home, timed: Sequence[tuple[Body, int]]) -> None:
    """Append operator control events, each at its event time."""
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            for body, t in timed:
                em.emit(body, event_time_us=t)
    finally:
        log.close()


def published_positions(h: Home, name: str) -> dict[str, int] | None:
    """The log positions processor ``name``'s last publish covers ("topic/partition" -> next offset)."""
    try:
        state = json.loads((h.views_dir(name) / "_state.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: int(v) for k, v in state.get("positions", {}).items()}


def caught_up(h: Home, names: Sequence[str]) -> bool:
    """Whether each processor has published views covering the whole agent topic as it is now."""
    log = h.open_log()
    try:
        ends = {f"{h.topic}/{p}": log.end_offset(h.topic, p) for p in range(log.partitions(h.topic))}
    finally:
        log.close()
    for name in names:
        pos = published_positions(h, name)
        if pos is None or any(pos.get(k, 0) < end for k, end in ends.items()):
            return False
    return True


@contextlib.contextmanager
def processors_running(h: Home, names: Sequence[str], log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``tokenledger run NAMES`` on the home as its own process (its output in ``log_file``), stopped with SIGTERM
    (its clean shutdown) on leaving."""
    with log_file.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "processors.cli", "run", *names, "--home", str(h.path)],
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            stop(proc, STOP_S)


def problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """The problem+json body of ``r``, checked: its status, code and (when given) the field it names."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["code"] == code and body["type"].endswith("/" + code), body
    if field is not None:
        assert body["field"] == field, body
    return body


def ends(home: Home) -> dict[tuple[str, int], int]:
    """The end offset of every partition of every topic on the home's log (unchanged when nothing was appended)."""
    log = home.open_log()
    try:
        return {(t, p): log.end_offset(t, p) for t in log.topics() for p in range(log.partitions(t))}
    finally:
        log.close()


def audit_clean(home: Home) -> None:
    """Every record on the home's ledger topics passes the audit (signatures, chains, anchors)."""
    log = home.open_log()
    try:
        rep = audit(log, home.ledger_topics, home.anchors())
    finally:
        log.close()
    assert rep.rejected == {}, rep.first_error
