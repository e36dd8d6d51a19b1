"""The deterministic simulation harness (processors/testing/simulator.py): seeds pass for every processor, a
seed replays identically, and the harness catches the bugs it exists to catch (lost updates, double
applies, live state that a replay from offset 0 does not reproduce)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from processors import REGISTRY
from processors.runtime.store import Store
from processors.testing.simulator import CONTROL_KINDS, ECONOMIC_KINDS, InvariantError, Knobs, simulate

SEEDS = range(4)
# The journal's original hunt: agent data only, no control events after the bootstrap.
DATA_ONLY = Knobs(steps=30, control_kinds=())
# Late control events dated "now" (after the data they follow), no rotation of a revoked key and no late
# budget policy: the workload main passes today. The rest is exercised by the known-bug tests below.
ON_TIME = Knobs(backdated=frozenset(), rotate_revoked=False,
                control_kinds=tuple(k for k in CONTROL_KINDS if k != "budget_policy"))


@pytest.mark.parametrize("seed", SEEDS)
def test_seed(seed, tmp_path):
    try:
        r = simulate(seed, knobs=DATA_ONLY, workdir=tmp_path)
    except InvariantError as e:
        pytest.fail(f"seed {seed}: {e}\nreplay it with: python scripts/simulate.py --seed {seed}")
    assert sum(r.crashes.values()) > 0 and r.events > 0


def test_a_seed_replays_identically(tmp_path):
    a = simulate(11, steps=20, workdir=tmp_path)
    b = simulate(11, steps=20, workdir=tmp_path)
    assert (a.digest, a.trace, a.events, a.rejected) == (b.digest, b.trace, b.events, b.rejected)
    c = simulate(12, steps=20, workdir=tmp_path)
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
        simulate(1, knobs=DATA_ONLY, workdir=tmp_path)


def test_harness_catches_positions_not_committed_with_state(tmp_path, monkeypatch):
    """A runtime that forgets to store its positions re-applies batches after a crash."""
    monkeypatch.setattr(Store, "save_positions", lambda self, positions: None)
    with pytest.raises(InvariantError):
        simulate(2, knobs=DATA_ONLY, workdir=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_processor_survives_faults_and_late_control_events(name, tmp_path):
    """Each processor, under crashes, re-deliveries and random batch sizes, with late control events of
    every kind, ends with the state a replay from offset 0 computes."""
    for seed in (0, 1):
        try:
            r = simulate(seed, processor=name, knobs=ON_TIME, workdir=tmp_path)
        except InvariantError as e:
            pytest.fail(f"{name} seed {seed}: {e}\nreplay: python scripts/simulate.py --seed {seed} "
                        f"--processor {name} --backdate none")
        assert r.processor == name and r.records > 0 and sum(r.controls.values()) > 0


def test_settlements_reads_what_an_upstream_allocations_runner_produced(tmp_path):
    r = simulate(3, processor="settlements", knobs=replace(ON_TIME, control_kinds=("settlement_rule",)),
                 workdir=tmp_path)
    assert r.events > 0  # allocation events arrived on the derived topic and were verified


def test_harness_catches_a_processor_whose_state_depends_on_batch_boundaries(tmp_path, monkeypatch):
    """The digest comparison with a replay from offset 0 catches state that depends on how records were
    batched (here: the reputation fold silently skips the last trust event of every batch)."""
    from processors.reputation import Reputation

    real = Reputation.fold

    def skips_last(self, items, quarantined):
        return real(self, items[:-1] if len(items) > 1 else items, quarantined)

    monkeypatch.setattr(Reputation, "fold", skips_last)
    with pytest.raises(InvariantError, match="live digest differs from a replay"):
        simulate(0, processor="reputation", knobs=DATA_ONLY, workdir=tmp_path)


# Bugs the simulator found (fixed by reading the log in its one order, ledger.log.order): kept as tests.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["allocations", "budgets"])
def test_back_dated_price_is_not_retroactive(name, tmp_path):
    knobs = replace(ON_TIME, control_kinds=("price_set",), backdated=frozenset({"price_set"}), control_p=0.5)
    for seed in range(4):
        simulate(seed, processor=name, knobs=knobs, workdir=tmp_path)


@pytest.mark.slow
def test_rotating_a_revoked_key_does_not_unrevoke_it(tmp_path):
    knobs = replace(ON_TIME, control_kinds=("key_revoked", "key_rotated"), rotate_revoked=True, control_p=0.5)
    for seed in range(6):
        simulate(seed, knobs=knobs, workdir=tmp_path)


@pytest.mark.slow
def test_a_late_budget_policy_applies_as_it_did_live(tmp_path):
    knobs = replace(ON_TIME, control_kinds=("budget_policy",), control_p=0.5)
    for seed in range(4):
        simulate(seed, processor="budgets", knobs=knobs, workdir=tmp_path)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_processor_replays_equal_with_back_dated_control_of_every_kind(name, tmp_path):
    """The default workload: prices, policies, rules, rotations and revocations appended late AND stamped
    in the past; live state (crashes, re-deliveries, random batch sizes) equals a replay from offset 0."""
    for seed in (0, 1):
        try:
            r = simulate(seed, processor=name, workdir=tmp_path)
        except InvariantError as e:
            pytest.fail(f"{name} seed {seed}: {e}\nreplay: python scripts/simulate.py --seed {seed} --processor {name}")
        assert sum(r.controls.values()) > 0


def test_harness_catches_control_applied_before_the_data_appended_ahead_of_it(tmp_path, monkeypatch):
    """The planted bug: a reader that drains every control event before the data (ignoring append order)
    applies a late revocation or price to records appended before it, so live state and a replay differ
    and the simulator must say so."""
    from ledger.log.memory import MemoryLog

    monkeypatch.setattr(MemoryLog, "total_order", False)  # readers fall back to control-first, by event time
    failures = 0
    for seed in range(6):
        try:
            simulate(seed, processor="journal", workdir=tmp_path)
        except InvariantError:
            failures += 1
    assert failures > 0


def test_skewed_producer_clocks_are_quarantined_as_clock_skew_live_and_in_replay(tmp_path):
    """Some agents' clocks lie outside the skew window: their records are quarantined as clock_skew, and the
    live state (crashes, re-deliveries, clock_policy and backfill grants appended mid-run) equals a replay."""
    skewed = Knobs(skew_out_p=0.5, control_kinds=("clock_policy", "grant", "price_set"))
    codes: Counter[str] = Counter()
    for seed in (0, 1, 2):
        try:
            r = simulate(seed, processor="budgets", knobs=skewed, workdir=tmp_path)
        except InvariantError as e:
            pytest.fail(f"seed {seed}: {e}")
        codes += r.reject_codes
    assert codes["clock_skew"] > 0


def test_knobs_name_every_control_kind():
    assert set(ECONOMIC_KINDS) < set(CONTROL_KINDS) == set(Knobs().backdated)
