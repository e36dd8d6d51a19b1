"""Budgets sharded through the exchange (``processors.runtime.exchange``), on real homes with 6 event partitions
(SQLite, and the Tansu test broker). Agents of one org, registered on several partitions, race for the org's last
budget: reservations appended concurrently from several threads, each agent asking more than its share. Three
instances (each its own process, through the CLI) must decide every reservation exactly as one instance does (same
combined digest, same admitted set) and never admit more than the org's allocation; an instance killed mid-stream
and started again changes none of that."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ledger.integrity.keys import SigningKey, save_key
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, TEST_WINDOW
from ledger.wire.events import AgentRegistered, BudgetPolicy
from processors.budgets import Budgets
from processors.host import service
from processors.runtime.exchange import owner_index
from processors.runtime.shards import Shard, hidden_rows
from processors.runtime.store import Store
from tests.processors.host.test_sharding import ROOT, _cli, combined_digest, run_instances, single_replay

NAME = "budgets"
INSTANCES = 3
PARTITIONS = 6
AGENTS = tuple(f"agent-{i}" for i in range(8))
ORG = "acme"
ALLOCATION = 100  # action units the org may spend in its window
ASK = 30  # what each reservation asks: 8 agents x 2 rounds x 30 = 480, almost five times the allocation
US_PER_HOUR = 3_600_000_000


def _home(path: Path, log_url: str | None = None) -> Home:
    prefix = f"t{uuid.uuid4().hex[:10]}" if log_url else "ledger"
    h = Home.init(path, log_url=log_url, topic_prefix=prefix, partitions=PARTITIONS)
    op = h.operator_key()
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            em.emit(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), event_time_us=T0)
            for i, a in enumerate(AGENTS):
                k = SigningKey.generate(a)
                save_key(h.key_path(a), k)
                em.emit(AgentRegistered(agent_id=a, key_id=k.key_id, public_key=k.public.raw, org=ORG),
                        event_time_us=T0 + 1 + i)
            em.emit(TEST_WINDOW, event_time_us=T0 + 20)
            em.emit(BudgetPolicy(scope="org", scope_id=ORG, budget_kind="action", allocation=ALLOCATION,
                                 soft_limit_pct=80, hard_limit_pct=100, throttle_at_soft=False, suspend_at_hard=False,
                                 emergency_reserve_pct=0, hard_limit_action="deny", reset_interval_us=US_PER_HOUR,
                                 effective_from_us=T0), event_time_us=T0 + 30)
    finally:
        log.close()
    return h


def _race(h: Home, run: str) -> None:
    """Every agent reserves ASK of the org's action budget at once, from a thread of its own; then spends 1 unit."""
    def one(i: int) -> None:
        a = AGENTS[i]
        with Emitter.open(a, home=h.path, background_flush=False) as em:
            em.reserve(f"{run}-{a}", "action", ASK, scope="org", scope_id=ORG, event_time_us=T0 + 1_000 + i)
            em.flush()
            em.action("step", cost_weight=1, idempotency_key=f"{run}-{a}-act", event_time_us=T0 + 2_000 + i)

    with ThreadPoolExecutor(len(AGENTS)) as pool:
        list(pool.map(one, range(len(AGENTS))))


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def home(request, tmp_path) -> Home:
    if request.param == "kafka":
        return _home(tmp_path / "home", request.getfixturevalue("kafka_url"))
    return _home(tmp_path / "home")


def _run(h: Home) -> None:
    run_instances(h, NAME)


def _combined(h: Home) -> dict:
    return combined_digest(h, NAME)


def _single(h: Home) -> tuple[dict, list[tuple]]:
    """One instance rebuilt from the log: its digest and its reservations (id, status, reason)."""
    r = single_replay(h, NAME)
    store = Store(r["file"], Budgets.views, read_only=True)
    try:
        rows = sorted(store.query("SELECT reservation_id, status, reason FROM reservations"))
    finally:
        store.close()
    return r, rows


def _sharded_reservations(h: Home, rounds: int) -> list[tuple]:
    out = []
    for i in range(INSTANCES):
        sh = Shard(i, INSTANCES)
        store = Store(service.state_file(h, NAME, sh), Budgets.views, read_only=True,
                      hidden=hidden_rows(Budgets(), sh, h.control_topic))
        try:
            # every shard holds the whole state; it shows (publishes, digests) the rows it owns
            assert len(store.query("SELECT * FROM reservations")) == len(AGENTS) * rounds
            mine = store.query("SELECT agent_id, reservation_id, status, reason "
                               f"FROM {store.visible('reservations')}")
        finally:
            store.close()
        assert all(owner_index(f"{a}:{r}", INSTANCES) == i for a, r, _, _ in mine)
        out.extend((r, s, why) for _, r, s, why in mine)
    return sorted(out)


def _org_row(h: Home) -> tuple:
    owner = owner_index(f"org:{ORG}:action", INSTANCES)
    sh = Shard(owner, INSTANCES)
    store = Store(service.state_file(h, NAME, sh), Budgets.views, read_only=True,
                  hidden=hidden_rows(Budgets(), sh, h.control_topic))
    try:
        (row,) = store.query("SELECT consumed, reserved FROM "
                             f"{store.visible('budgets')} WHERE scope = 'org' AND scope_id = ?", [ORG])
    finally:
        store.close()
    return row


def _check(h: Home, rounds: int) -> None:
    live = _combined(h)
    single, single_rows = _single(h)
    assert live["source"] == f"{INSTANCES} shards combined"
    assert live["tables"] == single["tables"]
    assert live["digest"] == single["digest"]
    rows = _sharded_reservations(h, rounds)
    assert rows == single_rows
    assert len(rows) == rounds * len(AGENTS)
    admitted = [r for r in rows if r[1] == "reserved"]
    # never more than the org's allocation: 3 holds of 30 fit in 100 (minus what the actions spent), a 4th never
    assert 0 < len(admitted) * ASK <= ALLOCATION
    consumed, reserved = _org_row(h)
    assert consumed + reserved <= ALLOCATION
    assert reserved == len(admitted) * ASK


def test_racing_org_reservations_never_overspend_and_match_one_instance(home):
    _race(home, "r1")
    log = home.open_log()
    try:
        used = {r.partition for r in read_all(log, home.topic_for("events"))}
    finally:
        log.close()
    assert {p % INSTANCES for p in used} == set(range(INSTANCES)), "the racing agents sit on every shard"
    _run(home)
    _check(home, 1)
    p = _cli("replay", NAME, "--json", "--home", str(home.path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["equal"] is True
    _race(home, "r2")  # a second race against what is left
    _run(home)
    _check(home, 2)


def test_a_killed_instance_restarted_decides_the_same(tmp_path):
    h = _home(tmp_path / "home")
    _race(h, "r1")

    def worker(i: int, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "processors.host.worker", NAME, "--home", str(h.path),
                                 "--shard", f"{i}/{INSTANCES}", "--until-caught-up", *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    others = [worker(0), worker(2)]
    killed = worker(1, "--max-records", "1", "--crash-at", "after_commit:4")
    assert killed.wait(timeout=300) == -signal.SIGKILL
    again = worker(1)
    for p in (again, *others):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    _check(h, 1)
