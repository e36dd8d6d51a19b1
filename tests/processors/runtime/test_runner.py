"""The runner's failure discipline and its commit-time invariants, with the journal on a real home
(embedded SQLite log, real keys, a real DuckDB file).

- A batch whose commit fails leaves nothing committed and the runner FAILED: it refuses to step or
  emit again (``RunnerFailedError``) and positions do not move. Why: verification has already advanced
  the in-memory chain heads past records whose state was never committed; stepping on would judge
  the next records against them. A fresh runner on the same file resumes from its tracking rows and
  reaches the digest of a clean replay, with every dead letter produced exactly once.
- A failure while polling (before anything in memory moved) leaves the runner READY.
- Inside the commit the runner checks that the batch continues what is committed: positions never
  go back, the batch number goes up by one, derived records continue the committed producer chain.
  Each violation raises ``RunnerInvariantError`` naming the invariant with before/after, and the
  batch is rolled back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import LogError
from ledger.integrity.chain import Head
from ledger.integrity.verify import audit
from ledger.log import Log, read_all
from ledger.sdk.home import Home
from ledger.testing.homes import fill, inject_bad, make_home
from ledger.wire import codec
from ledger.wire.events import StateCheckpoint
from processors.host.service import ensure_processor_key, replay
from processors.journal import Journal
from processors.runtime.processor import Derived, Effects, Item, Quarantined
from processors.runtime.runner import Runner, RunnerFailedError, RunnerInvariantError, RunnerState
from processors.runtime.store import Store, StoreError

RECORDS_PER_BATCH = 3  # small batches: the work spans many commits


class CommitFailsWhenArmed(Store):
    """A real store whose next COMMIT fails once armed (as a full disk or an I/O error would): the
    seam is the store's own ``_commit``, so the transaction's rollback path is the production one."""

    armed = False

    def _commit(self) -> None:
        if self.armed:
            self.armed = False
            raise StoreError("injected commit failure", path=str(self.path))
        super()._commit()


class FoldFailsOnce(Journal):
    """The journal, except that its first fold raises (a processor bug met mid-batch)."""

    failed = False

    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        if not self.failed:
            self.failed = True
            raise RuntimeError("injected fold failure")
        return super().fold(items, quarantined)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path / "home", agents=())
    fill(h, tasks=6, batch_size=4)
    inject_bad(h)
    fill(h, tasks=4, batch_size=4, seed=9, run="r2")
    return h


@pytest.fixture
def log(home: Home) -> Iterator[Log]:
    lg = home.open_log()
    yield lg
    lg.close()


def _runner(home: Home, log: Log, store: Store, processor: Journal | None = None) -> Runner:
    return Runner(processor or Journal(), log, store, anchors=home.anchors(), key=ensure_processor_key(home, "journal", log),
                  topic_prefix=home.config.get("topic_prefix", "ledger"), max_records=RECORDS_PER_BATCH)


def _committed(store: Store) -> tuple[object, ...]:
    """Everything a batch commits, as the file holds it."""
    return (store.positions(), store.batch(), store.digest()["digest"], store.outbox(),
            store.query("SELECT count(*) FROM quarantine")[0][0], store.query("SELECT * FROM _chain_heads ORDER BY 1"))


def _dead_letters(home: Home, log: Log) -> Counter[str]:
    topic = home.topic_for("rejected")
    log.ensure_topic(topic)
    return Counter(codec.decode_event(raw).event.event_id
                   for rec in read_all(log, topic) for raw in codec.decode_batch(rec.value).events)


def _assert_resumes_to_replay(home: Home, log: Log, store: Store, tmp_path: Path) -> None:
    fresh = _runner(home, log, store)
    assert fresh.state is RunnerState.READY
    fresh.run_until_caught_up()
    clean = replay(home, "journal", log, target=tmp_path / "replay.duckdb")
    assert store.digest()["digest"] == clean["digest"]
    rep = audit(log, home.ledger_topics, home.anchors())
    assert store.query("SELECT count(*) FROM events")[0][0] == rep.accepted_events
    letters = _dead_letters(home, log)
    assert len(letters) == sum(rep.rejected.values()) and set(letters.values()) == {1}


def test_a_failed_commit_leaves_the_runner_failed_and_a_fresh_runner_resumes(home: Home, log: Log, tmp_path: Path):
    store = CommitFailsWhenArmed(tmp_path / "state.duckdb", Journal.views)
    try:
        runner = _runner(home, log, store)
        for _ in range(2):
            assert runner.step() > 0
        positions, batch_no, before = dict(runner.positions), runner.batch_no, _committed(store)

        store.armed = True
        with pytest.raises(StoreError, match="injected commit failure"):
            runner.step()
        assert runner.state is RunnerState.FAILED
        assert runner.positions == positions and runner.batch_no == batch_no
        assert _committed(store) == before  # nothing of the batch is visible

        with pytest.raises(RunnerFailedError) as refused:
            runner.step()
        assert refused.value.evidence["processor"] == "journal"
        assert "injected commit failure" in refused.value.evidence["cause"]
        assert refused.value.evidence["batch"] == batch_no
        checkpoint = Derived(topic="checkpoints", event_time_us=1_767_225_600_000_000, idempotency_key="refused",
                             body=StateCheckpoint(processor="journal", positions={}, digest="0" * 64, tables_json=""))
        with pytest.raises(RunnerFailedError):
            runner.emit([checkpoint])
        assert runner.positions == positions and _committed(store) == before

        _assert_resumes_to_replay(home, log, store, tmp_path)
    finally:
        store.close()


def test_a_failed_fold_leaves_the_runner_failed_and_a_fresh_runner_resumes(home: Home, log: Log, tmp_path: Path):
    store = Store(tmp_path / "state.duckdb", Journal.views)
    try:
        runner = _runner(home, log, store, FoldFailsOnce())
        before = _committed(store)
        with pytest.raises(RuntimeError, match="injected fold failure"):
            runner.step()
        assert runner.state is RunnerState.FAILED and _committed(store) == before
        with pytest.raises(RunnerFailedError):
            runner.step()
        _assert_resumes_to_replay(home, log, store, tmp_path)
    finally:
        store.close()


def test_a_failed_poll_leaves_the_runner_ready(home: Home, log: Log, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
    store = Store(tmp_path / "state.duckdb", Journal.views)
    try:
        runner = _runner(home, log, store)
        real = log.read

        def unreachable(*args: object, **kwargs: object) -> object:
            monkeypatch.setattr(log, "read", real)  # fails once, like a dropped connection
            raise LogError("injected read failure")

        monkeypatch.setattr(log, "read", unreachable)
        with pytest.raises(LogError):
            runner.step()
        assert runner.state is RunnerState.READY and runner.batch_no == 0
        assert runner.step() > 0 and runner.batch_no == 1
    finally:
        store.close()


# ---------------------------------------------------------------------------------- invariants


def _tamper(store: Store, **writes: object) -> None:
    """A second writer's commit, behind the runner's back."""
    with store.transaction():
        if "positions" in writes:
            store.save_positions(writes["positions"])  # type: ignore[arg-type]
        if "batch" in writes:
            store.set_meta("batch", str(writes["batch"]))
        if "producer" in writes:
            signer, head = writes["producer"]  # type: ignore[misc]
            store.save_producer(signer, head)


def test_positions_that_would_go_back_are_refused(home: Home, log: Log, tmp_path: Path):
    store = Store(tmp_path / "state.duckdb", Journal.views)
    try:
        runner = _runner(home, log, store)
        runner.step()
        tp = (home.topic, 0)
        ahead = runner.positions[tp] + 1_000
        _tamper(store, positions={tp: ahead})
        before = _committed(store)
        with pytest.raises(RunnerInvariantError) as e:
            runner.step()
        ev = e.value.evidence
        assert ev["invariant"] == "positions_monotonic" and ev["processor"] == "journal"
        assert (ev["topic"], ev["partition"], ev["before"]) == (tp[0], tp[1], ahead)
        assert ev["after"] < ahead and ev["in_memory"] == runner.positions[tp]
        assert runner.state is RunnerState.FAILED and _committed(store) == before
    finally:
        store.close()


def test_a_batch_number_that_does_not_follow_the_committed_one_is_refused(home: Home, log: Log, tmp_path: Path):
    store = Store(tmp_path / "state.duckdb", Journal.views)
    try:
        runner = _runner(home, log, store)
        runner.step()
        _tamper(store, batch=runner.batch_no + 7)
        before = _committed(store)
        with pytest.raises(RunnerInvariantError) as e:
            runner.step()
        assert e.value.evidence["invariant"] == "batch_monotonic"
        assert (e.value.evidence["before"], e.value.evidence["after"]) == (runner.batch_no + 7, runner.batch_no + 1)
        assert runner.state is RunnerState.FAILED and _committed(store) == before
    finally:
        store.close()


def test_derived_records_that_do_not_continue_the_committed_producer_chain_are_refused(home: Home, log: Log,
                                                                                       tmp_path: Path):
    store = Store(tmp_path / "state.duckdb", Journal.views)
    try:
        runner = _runner(home, log, store)
        assert runner.key is not None
        foreign = Head(99, b"\x07" * 32)
        _tamper(store, producer=(runner.key.signer_id, foreign))
        with pytest.raises(RunnerInvariantError) as e:
            for _ in range(200):  # batches without dead letters commit; the first one with some must not
                runner.step()
        ev = e.value.evidence
        assert ev["invariant"] == "outbox_head_continuity"
        assert ev["before"] == f"99:{foreign.hash.hex()}" and ev["after"].startswith("0:")
        assert runner.state is RunnerState.FAILED
        assert store.outbox() == [] and store.producer_head(runner.key.signer_id) == foreign
        assert store.query("SELECT count(*) FROM quarantine")[0][0] == 0
    finally:
        store.close()


def test_emit_refuses_a_broken_producer_chain_and_keeps_its_head(home: Home, log: Log, tmp_path: Path):
    store = Store(tmp_path / "state.duckdb", Journal.views)
    try:
        runner = _runner(home, log, store)
        assert runner.key is not None
        head = runner.producer_head
        _tamper(store, producer=(runner.key.signer_id, Head(5, b"\x01" * 32)))
        d = Derived(topic="checkpoints", event_time_us=1_767_225_600_000_000, idempotency_key="emit-1",
                    body=StateCheckpoint(processor="journal", positions={}, digest="0" * 64, tables_json=""))
        with pytest.raises(RunnerInvariantError) as e:
            runner.emit([d])
        assert e.value.evidence["invariant"] == "outbox_head_continuity"
        assert runner.producer_head == head and store.outbox() == []
    finally:
        store.close()
