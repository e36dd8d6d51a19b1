"""Crash runs: emitter and processor processes killed with SIGKILL many times, on any log backend, with
the figures that say whether anything acknowledged was lost or doubled.

- ``emitter_kills``: a writer process (``ledger.testing.crash_writer``) appends events with idempotency
  keys and reports each durable prefix; it is killed at random moments (often inside an append) and
  restarted a little before its last acknowledged point, as a real agent retrying its work would.
  Afterwards: every acknowledged key is on the log (lost = acknowledged keys missing), no key twice
  (duplicated), one unbroken chain, and the whole log verifies.
- ``processor_kills``: more work (with bad records) is appended, then a processor worker process is
  killed — half the time at a named step of its commit protocol (the worker kills itself there,
  deterministic), half after a random delay. After a clean finish: its digest equals a rebuild from
  offset 0, every accepted event is in the journal's view once (lost / duplicated), every bad record
  is quarantined and dead-lettered exactly once, and no derived event was published twice.

Used by ``scripts/crash.py`` (the full counts, figures printed) and by the slow crash test (smaller
counts, asserted). Nothing here sleeps to wait for a result: waits are on process output or exit.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from ledger.integrity.verify import audit
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.sdk.registration import bootstrap, register_signer
from ledger.testing.homes import TEST_WINDOW, fill, inject_bad
from ledger.wire import codec
from ledger.wire.events import Rejected
from processors import REGISTRY
from processors.host.service import live_digest, replay, state_file
from processors.runtime.store import Store

COMMIT_POINTS = ("before_commit", "inside_commit", "after_commit", "before_produce", "after_produce")
PROCESS_TIMEOUT_S = 300  # one worker or writer run; far above any healthy run, so a hang fails instead of waiting


@dataclasses.dataclass
class EmitterFigures:
    backend: str
    kills: int
    acknowledged: int  # distinct events acknowledged (durable) before some kill
    on_log: int  # distinct idempotency keys on the log at the end
    lost: int  # acknowledged keys missing from the log
    duplicated: int  # keys on the log more than once
    chain_ok: bool  # seq 1..N unbroken and the whole log verifies

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.chain_ok and self.kills > 0


@dataclasses.dataclass
class ProcessorFigures:
    backend: str
    processors: tuple[str, ...]
    kills: int
    accepted: int  # events the log verifies as accepted
    in_view: int  # distinct events in the journal's events table
    lost: int  # accepted events missing from the view
    duplicated: int  # event rows beyond the first per event id, plus derived events published twice
    bad_records: int  # records the log rejects (garbage, truncated, unknown key, re-delivered)
    dead_letters_once: bool  # every bad record dead-lettered exactly once
    replay_equal: bool  # every killed processor's live digest equals its rebuild from offset 0

    @property
    def ok(self) -> bool:
        # every kill round appends one task of several events: fewer accepted than kills means the workload
        # itself was refused (and the kills proved nothing)
        return (self.lost == 0 and self.duplicated == 0 and self.dead_letters_once and self.replay_equal
                and self.accepted > self.kills)


def crash_home(path: Path, log_url: str | None = None, *, agents: tuple[str, ...] = ()) -> Home:
    """A fresh home (own topic prefix, so a shared broker is no problem) with the operator and ``agents``
    registered."""
    home = Home.init(path, log_url=log_url, topic_prefix=f"crash{uuid.uuid4().hex[:10]}")
    log = home.open_log()
    try:
        bootstrap(home, log, price_book=True)
        for agent in agents:
            register_signer(home, log, agent)
        # the workload claims times from a few hours ago (ledger.testing.homes.T0): the tests' skew window
        # keeps it live data instead of clock_skew rejects, so the kills land on real work
        with Emitter.for_operator(home, log) as em:
            em.emit(TEST_WINDOW)
    finally:
        log.close()
    return home


def backend_of(home: Home) -> str:
    return str(home.config["log"]).split("://", 1)[0]


# ---------------------------------------------------------------------------------------- emitters


def _writer(home: Home, agent: str, begin: int, total: int, every: int, base_us: int) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "ledger.testing.crash_writer", str(home.path), agent, str(begin), str(total),
            str(every), str(base_us)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603  (no shell)


def emitter_kills(home: Home, kills: int, *, total: int, seed: int, agent: str = "alice") -> EmitterFigures:
    """Kill the writer ``kills`` times (fewer only if it finishes all ``total`` events first), then finish."""
    rng = random.Random(seed)
    base_us = time.time_ns() // 1000  # one base for the whole run: retries rebuild identical events
    acked = -1
    done = 0
    while done < kills and acked < total - 1:
        every = rng.choice((1, 3, 10, 40))
        p = _writer(home, agent, max(0, acked + 1 - rng.randint(0, 5)), total, every, base_us)
        assert p.stdout is not None and p.stderr is not None
        line = p.stdout.readline()
        if not line.startswith("HEAD"):
            raise RuntimeError(f"writer did not start: {line!r} {p.stderr.read()}")
        for _ in range(rng.randint(1, 12)):
            line = p.stdout.readline()
            if not line or line.startswith("DONE"):
                break
            acked = max(acked, int(line.split()[1]))
        time.sleep(rng.random() * 0.004)  # land somewhere inside the next append
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=PROCESS_TIMEOUT_S)
        p.stdout.close()
        p.stderr.close()
        done += 1
    p = _writer(home, agent, max(0, acked + 1 - 3), total, 50, base_us)  # a clean run finishes the work
    _out, errs = p.communicate(timeout=PROCESS_TIMEOUT_S)
    if p.returncode != 0:
        raise RuntimeError(f"the final writer run failed: {errs}")

    log = home.open_log()
    try:
        report = audit(log, home.ledger_topics, home.anchors())
        keys: Counter[str] = Counter()
        seqs = []
        for rec in read_all(log, home.topic):
            batch = codec.decode_batch(rec.value)
            if batch.signer_id != agent:
                continue
            for raw in batch.events:
                ev = codec.decode_event(raw).event
                keys[str(ev.idempotency_key)] += 1
                seqs.append(ev.seq)
    finally:
        log.close()
    acknowledged = {f"k{i}" for i in range(acked + 1)}
    return EmitterFigures(
        backend=backend_of(home), kills=done, acknowledged=len(acknowledged), on_log=len(keys),
        lost=len(acknowledged - set(keys)), duplicated=sum(n - 1 for n in keys.values() if n > 1),
        chain_ok=report.ok and seqs == list(range(1, len(seqs) + 1)) and set(keys) == {f"k{i}" for i in range(total)})


# ---------------------------------------------------------------------------------------- processors


def _worker(home: Home, name: str, *, until_caught_up: bool = False, crash_at: str | None = None,
            max_records: int = 3) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "processors.host.worker", name, "--home", str(home.path), "--max-records",
           str(max_records)]
    if until_caught_up:
        cmd.append("--until-caught-up")
    if crash_at:
        cmd += ["--crash-at", crash_at]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # noqa: S603  (no shell)


def _finish(home: Home, name: str) -> None:
    p = _worker(home, name, until_caught_up=True, max_records=50)
    _out, errs = p.communicate(timeout=PROCESS_TIMEOUT_S)
    if p.returncode != 0:
        raise RuntimeError(f"{name} did not finish cleanly: {errs}")


def processor_kills(home: Home, kills: int, *, seed: int, names: tuple[str, ...] = ("journal", "allocations"),
                    max_delay_s: float = 2.0) -> ProcessorFigures:
    """``kills`` SIGKILLs spread round-robin over ``names`` (the journal must be among them), then a clean
    finish of every processor in ``names`` and the checks in the module docstring."""
    if "journal" not in names:
        raise ValueError("the journal must be among the killed processors: its view is what is counted")
    rng = random.Random(seed)
    for i in range(kills):
        fill(home, tasks=1, batch_size=3, seed=seed * 1000 + i, run=f"crash{i}")
        inject_bad(home)
        name = names[i % len(names)]
        if i % 2 == 0:
            point = COMMIT_POINTS[(i // 2) % len(COMMIT_POINTS)]
            p = _worker(home, name, crash_at=f"{point}:{1 if 'produce' in point else rng.randint(1, 3)}",
                        until_caught_up=True)
            code = p.wait(timeout=PROCESS_TIMEOUT_S)
            assert p.stderr is not None
            errs = p.stderr.read()
            p.stderr.close()
            if code != -signal.SIGKILL:  # the named step was never reached: not a kill, and a failure if it died
                raise RuntimeError(f"{name} did not die at {point}: exit {code} {errs}")
        else:
            p = _worker(home, name)
            time.sleep(rng.uniform(0.2, max_delay_s))  # anywhere from start-up to mid-batch
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=PROCESS_TIMEOUT_S)
            assert p.stderr is not None
            p.stderr.close()
    # the journal last: a processor whose key file was never saved (every earlier run of it was killed first)
    # registers a key on its clean run, and the journal's view must include that control event too
    for name in sorted(names, key=lambda n: n == "journal"):
        _finish(home, name)
    return _processor_figures(home, names, kills)


def _processor_figures(home: Home, names: tuple[str, ...], kills: int) -> ProcessorFigures:
    log = home.open_log()
    try:
        rep = audit(log, home.ledger_topics, home.anchors())
        replay_equal = True
        for n in names:  # a rebuild up to the live positions (the log may have grown since, by later finishes)
            live = live_digest(home, n)
            replay_equal &= live["digest"] == replay(home, n, log, positions=live["positions"])["digest"]
        letters: Counter[tuple[str, int, int]] = Counter()
        derived: Counter[str] = Counter()
        for name in names:
            for logical in REGISTRY[name].derived_topics:
                topic = home.topic_for(logical)
                log.ensure_topic(topic)
                for rec in read_all(log, topic):
                    for raw in codec.decode_batch(rec.value).events:
                        ev = codec.decode_event(raw).event
                        derived[ev.event_id] += 1
                        if isinstance(ev.body, Rejected):
                            letters[(ev.body.topic, ev.body.partition, ev.body.offset)] += 1
    finally:
        log.close()
    store = Store(state_file(home, "journal"), REGISTRY["journal"]().views, read_only=True)
    try:
        rows: list[Any] = store.query("SELECT count(*), count(DISTINCT event_id) FROM events")
        (n_rows, n_ids), = rows
    finally:
        store.close()
    bad = sum(rep.rejected.values())
    return ProcessorFigures(
        backend=backend_of(home), processors=names, kills=kills, accepted=rep.accepted_events, in_view=n_ids,
        lost=rep.accepted_events - n_ids, duplicated=(n_rows - n_ids) + sum(n - 1 for n in derived.values() if n > 1),
        bad_records=bad, dead_letters_once=len(letters) == bad and set(letters.values()) <= {1},
        replay_equal=replay_equal)

