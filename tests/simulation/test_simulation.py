"""The deterministic simulation harness (processors/testing/simulator.py): seeds pass, a seed replays
identically, and the harness catches the bugs it exists to catch (lost updates, double applies)."""

from __future__ import annotations

import pytest

from processors.runtime.store import Store
from processors.testing.simulator import InvariantError, simulate

SEEDS = range(4)


@pytest.mark.parametrize("seed", SEEDS)
def test_seed(seed, tmp_path):
    try:
        r = simulate(seed, steps=80, workdir=tmp_path)
    except InvariantError as e:
        pytest.fail(f"seed {seed}: {e}\nreplay it with: python scripts/simulate.py --seed {seed}")
    assert sum(r.crashes.values()) > 0 and r.events > 0


def test_a_seed_replays_identically(tmp_path):
    a = simulate(11, steps=60, workdir=tmp_path)
    b = simulate(11, steps=60, workdir=tmp_path)
    assert (a.digest, a.trace, a.events, a.rejected) == (b.digest, b.trace, b.events, b.rejected)
    c = simulate(12, steps=60, workdir=tmp_path)
    assert c.trace != a.trace or c.digest != a.digest


def test_harness_catches_a_lost_update(tmp_path, monkeypatch):
    """A runtime that sometimes drops rows it should write must fail the invariants."""
    real = Store.append
    calls = {"n": 0}

    def lossy(self, table, columns, **kw):
        if table == "events":
            calls["n"] += 1
            if calls["n"] % 5 == 0:
                return
        real(self, table, columns, **kw)

    monkeypatch.setattr(Store, "append", lossy)
    with pytest.raises(InvariantError):
        simulate(1, steps=80, workdir=tmp_path)


def test_harness_catches_positions_not_committed_with_state(tmp_path, monkeypatch):
    """A runtime that forgets to store its positions re-applies batches after a crash."""
    monkeypatch.setattr(Store, "save_positions", lambda self, positions: None)
    with pytest.raises(InvariantError):
        simulate(2, steps=80, workdir=tmp_path)
