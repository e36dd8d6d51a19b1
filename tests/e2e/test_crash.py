"""Crash test: a writer process killed with SIGKILL mid-stream, many times.

Story: the writer appends events with idempotency keys k0..kN and reports each durable prefix
("ACK i"). We kill it at random moments (often inside an append), restart it a little before its
last acknowledged point (as a real agent retrying its work would), and repeat. Afterwards every
acknowledged event is on the log exactly once, every key k0..kN is there exactly once, and the
chain verifies end to end: nothing acknowledged was lost, nothing doubled, no fork.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter

from ledger.integrity.verify import audit
from ledger.log import read_all
from ledger.testing.homes import T0, make_home
from ledger.wire import codec

KILLS = 20
TOTAL = 3000


def start(home, begin: int, every: int) -> subprocess.Popen:
    """The crash harness's writer process (the same one ``scripts/crash.py`` kills)."""
    return subprocess.Popen([sys.executable, "-m", "ledger.testing.crash_writer", str(home.path), "alice", str(begin),
                             str(TOTAL), str(every), str(T0)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_sigkill_mid_stream_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(20261125)
    home = make_home(tmp_path / "home", agents=("alice",))
    acked = -1
    kills = 0
    while kills < KILLS:
        every = rng.choice((1, 3, 10, 40))
        p = start(home, max(0, acked + 1 - rng.randint(0, 5)), every)
        target = rng.randint(1, 12)
        seen = 0
        line = p.stdout.readline()
        assert line.startswith("HEAD"), line + p.stderr.read()
        while seen < target:
            line = p.stdout.readline()
            if not line or line.startswith("DONE"):
                break
            acked = max(acked, int(line.split()[1]))
            seen += 1
        time.sleep(rng.random() * 0.004)  # land somewhere inside the next append
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        kills += 1
        if acked >= TOTAL - 1:
            break
    # a final, clean run finishes the work
    p = start(home, max(0, acked + 1 - 3), 50)
    _out, errs = p.communicate(timeout=120)
    assert p.returncode == 0, errs
    assert kills == KILLS

    log = home.open_log()
    try:
        report = audit(log, home.ledger_topics, home.anchors())
        keys = Counter()
        seqs = []
        for rec in read_all(log, home.topic):
            if rec.key != b"alice":
                continue
            for raw in codec.decode_batch(rec.value).events:
                ev = codec.decode_event(raw).event
                keys[ev.idempotency_key] += 1
                seqs.append(ev.seq)
    finally:
        log.close()
    assert report.ok, report.first_error
    assert seqs == list(range(1, TOTAL + 1))  # one unbroken chain
    assert set(keys) == {f"k{i}" for i in range(TOTAL)}
    assert max(keys.values()) == 1  # nothing doubled
    assert acked > 0
