"""A reader of another processor's derived topic after that processor signed state checkpoints, on real homes.

The reported failure: every processor signs a ``StateCheckpoint`` (positions, digest) on ``<prefix>.checkpoints`` when
it is caught up (``processors.host.service.serve``: every ``DIGEST_EVERY_S`` while idle, and when it stops). Those
were links of the processor's one chain, on a topic its readers do not read: settlements (control + allocations)
saw a ``sequence_gap`` at the first allocation signed after allocations' first checkpoint, and - the chain head no
longer moving - quarantined every later allocation record. Live settlements silently lost allocations.

- Allocations really runs as ``tokenledger run allocations --until-caught-up`` does (``service.serve``: it signs a
  StateCheckpoint as it stops), twice around more agent traffic, so allocations derived after its checkpoint follow
  it; then settlements the same way. On a second home with the same workload no processor signs a checkpoint
  (``Runner.run_until_caught_up`` alone). Asserted: the checkpoints are signed by
  ``processor.allocations.checkpoints`` (a chain of their own), so control + allocations alone verify whole;
  settlements quarantined nothing, netted every shapley allocation exactly once, its views equal the
  checkpoint-free run's row for row, replays give the live digests, and the whole log verifies (``verify``'s audit
  and checkpoints, and every signer's chain over every topic). On SQLite and Kafka.
- Logs an older version wrote (its StateCheckpoints as links of ``processor.allocations``' chain, two in a row, then
  one more): settlements verifies those links from the checkpoints topic and loses nothing; the same views as the
  plain home; a replay equal; its chain head of processor.allocations is the producer's. On SQLite and Kafka.
- Only a StateCheckpoint is ever passed over: an allocation signed onto the checkpoints topic as such a link leaves
  the next allocation a ``sequence_gap``, and every later one (exact count and evidence).
- deliveries, which read the checkpoints topic before, keeps its old position in its file and reads it no more.
- every processor derives to one topic at most (the notary alone to the checkpoints topic).
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support.econ import derived, econ_home, replay_equal, rows, run

from ledger.integrity.checkpoints import audit_with_checkpoints, control_keyring, read_checkpoints
from ledger.integrity.verify import audit
from ledger.sdk.home import Home
from ledger.testing.homes import T0, Filler
from ledger.units import US_PER_HOUR
from ledger.wire import codec
from ledger.wire.events import Allocation, StateCheckpoint
from processors import REGISTRY
from processors.deliveries import Deliveries
from processors.host import service
from processors.runtime.processor import Derived
from processors.runtime.runner import Runner
from processors.runtime.store import DIGEST_ALGORITHM, Store

BACKENDS = [pytest.param("sqlite"), pytest.param("kafka", marks=pytest.mark.kafka)]
FIRST_TASKS = 12  # agent traffic before allocations' first run
SECOND_TASKS = 8  # and between its two runs: the allocations derived after its first StateCheckpoint
SECOND_START_US = T0 + 2 * US_PER_HOUR  # the second run's event times: later than the first's (~240 s of them)
DERIVED_TOPICS = ("allocations", "settlements", "checkpoints")  # what the processors here append
# every settlements view, each with its columns but the commit batch number (the runs batch differently)
SETTLEMENT_VIEWS = {
    "settlements": "settlement_id, rule_id, window_start_us, window_end_us, payer, payee, amount_micros, method, "
                   "tier, status, rail, tx_ref",
    "pair_balances": "rule_id, window_start_us, window_end_us, agent_a, agent_b, a_owes_b_micros, allocations, "
                     "late_allocations, status",
    "net_positions": "rule_id, window_start_us, window_end_us, agent_id, position_micros, received_micros, "
                     "paid_micros",
    "carried": "rule_id, agent_a, agent_b, a_owes_b_micros",
    "settlement_rules": "rule_id, tier, method, window_us, threshold_micros, enabled, in_force_from_us, seq",
    "settlement_progress": "key, value_us",
}


def _traffic(h: Home, *, tasks: int, seed: int, run_label: str, start_us: int) -> int:
    with Filler(h, batch_size=5) as f:
        return f.run(tasks=tasks, seed=seed, run=run_label, start_us=start_us)


def _serve_until_caught_up(h: Home, name: str) -> None:
    """``tokenledger run NAME --until-caught-up`` in this process: the live service, which signs a StateCheckpoint
    of its state when it stops."""
    log = h.open_log()
    try:
        assert service.serve(h, name, log, exit_when_caught_up=True) == 0
    finally:
        log.close()


def _seq(record: bytes) -> int:
    """The sequence number of the first event of a signed record."""
    return codec.decode_event(codec.decode_batch(record).events[0]).event.seq


def _views(h: Home) -> dict[str, list[tuple[Any, ...]]]:
    return {v: rows(h, "settlements", f"SELECT {cols} FROM {v} ORDER BY ALL") for v, cols in SETTLEMENT_VIEWS.items()}


def _state_checkpoints(h: Home, processor: str) -> list[Any]:
    log = h.open_log()
    try:
        ring = control_keyring(log, h.control_topic, h.anchors())
        return [e for e in read_checkpoints(log, h.topic_for("checkpoints"), ring)
                if isinstance(e.body, StateCheckpoint) and e.body.processor == processor]
    finally:
        log.close()


def _home(tmp_path: Path, name: str, request: pytest.FixtureRequest) -> Home:
    url = request.getfixturevalue("kafka_url") if request.param == "kafka" else None
    return econ_home(tmp_path / name, request.param, url)


@pytest.fixture(params=BACKENDS)
def homes(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Home, Home]:
    return _home(tmp_path, "checkpointed", request), _home(tmp_path, "plain", request)


def test_a_reader_of_a_derived_topic_loses_nothing_to_its_producers_state_checkpoints(homes: tuple[Home, Home]) -> None:
    checkpointed, plain = homes
    for h in (checkpointed, plain):
        _traffic(h, tasks=FIRST_TASKS, seed=3, run_label="r1", start_us=T0 + 1_000_000)
    _serve_until_caught_up(checkpointed, "allocations")  # caught up, then its StateCheckpoint as it stops
    run(plain, "allocations")  # the same state, never checkpointed
    before = len(derived(checkpointed, "allocations"))
    for h in (checkpointed, plain):
        _traffic(h, tasks=SECOND_TASKS, seed=4, run_label="r2", start_us=SECOND_START_US)
    _serve_until_caught_up(checkpointed, "allocations")  # derives allocations after its first checkpoint
    run(plain, "allocations")
    _serve_until_caught_up(checkpointed, "settlements")
    run(plain, "settlements")

    # the scenario happened: allocations signed a StateCheckpoint at each stop, and derived more after the first;
    # the checkpoints are a chain of their own, so the allocations topic alone holds processor.allocations' chain
    signed = _state_checkpoints(checkpointed, "allocations")
    assert [(e.signer_id, _seq(e.record)) for e in signed] == [("processor.allocations.checkpoints", 1),
                                                               ("processor.allocations.checkpoints", 2)]
    log = checkpointed.open_log()
    try:
        alone = audit(log, [checkpointed.control_topic, checkpointed.topic_for("allocations")], checkpointed.anchors())
    finally:
        log.close()
    assert alone.ok and alone.accepted_records == alone.records, alone.first_error
    allocations = [b for _, b in derived(checkpointed, "allocations") if isinstance(b, Allocation)]
    assert len(allocations) > before > 0
    assert [b for _, b in derived(plain, "allocations") if isinstance(b, Allocation)] == allocations

    # settlements took every allocation: nothing quarantined, every shapley one netted exactly once
    assert rows(checkpointed, "settlements", "SELECT code, count(*) FROM quarantine GROUP BY code") == []
    shapley = sum(1 for b in allocations if b.method == "shapley")
    assert rows(checkpointed, "settlements", "SELECT sum(allocations) FROM pair_balances")[0][0] == shapley
    # the same views, row for row, as where no processor ever signed a checkpoint
    assert _views(checkpointed) == _views(plain)
    assert replay_equal(checkpointed, "settlements")
    assert replay_equal(checkpointed, "allocations")

    # the whole log still verifies: every record, every chain (over every topic), every checkpoint
    log = checkpointed.open_log()
    try:
        report, cps = audit_with_checkpoints(log, checkpointed.ledger_topics, checkpointed.topic_for("checkpoints"),
                                             checkpointed.anchors())
    finally:
        log.close()
    assert report.ok, report.first_error
    assert cps.ok, (cps.first_bad_record, cps.first_divergence)
    assert cps.state_checkpoints == 3  # allocations twice, settlements once
    # and every signer's chain over every topic, derived ones included, read in the log's one order
    log = checkpointed.open_log()
    try:
        topics = [*checkpointed.ledger_topics, *(checkpointed.topic_for(t) for t in DERIVED_TOPICS)]
        everything = audit(log, topics, checkpointed.anchors())
    finally:
        log.close()
    assert everything.ok, everything.first_error
    assert everything.accepted_records == everything.records


# ---------------------------------------------------------------- logs an older version wrote


def _sign_as_before(h: Home, name: str, body: Any, idempotency_key: str) -> None:
    """What the processor ``name`` signed before state checkpoints had a chain of their own: ``body`` on
    <prefix>.checkpoints as the next link of its derived events' chain (``Runner.emit`` with its own key)."""
    log = h.open_log()
    try:
        runner, store, _ = service.open_runner(h, name, log)
        try:
            assert runner.emit([Derived(topic="checkpoints", body=body, event_time_us=T0 + US_PER_HOUR,
                                        idempotency_key=idempotency_key)]) == 1
        finally:
            store.close()
    finally:
        log.close()


def _old_state_checkpoint(h: Home, name: str) -> StateCheckpoint:
    positions = rows(h, name, "SELECT topic || '/' || partition, next_offset FROM _tracking ORDER BY ALL")
    return StateCheckpoint(processor=name, positions=tuple(positions), digest=f"{DIGEST_ALGORITHM}:{'0' * 64}")


@pytest.fixture(params=BACKENDS)
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Home, Home]:
    """A home whose allocations chain has state checkpoint links on <prefix>.checkpoints (as an older version signed
    them), two in a row after its first run and one after its second, with allocations derived after each; and the
    same workload on a home without them."""
    old, plain = _home(tmp_path, "old", request), _home(tmp_path, "plain", request)
    for h in (old, plain):
        _traffic(h, tasks=FIRST_TASKS, seed=3, run_label="r1", start_us=T0 + 1_000_000)
        run(h, "allocations")
    for n in (1, 2):
        _sign_as_before(old, "allocations", _old_state_checkpoint(old, "allocations"), f"state:allocations:{n}")
    for h in (old, plain):
        _traffic(h, tasks=SECOND_TASKS, seed=4, run_label="r2", start_us=SECOND_START_US)
        run(h, "allocations")
    _sign_as_before(old, "allocations", _old_state_checkpoint(old, "allocations"), "state:allocations:3")
    for h in (old, plain):
        _traffic(h, tasks=SECOND_TASKS, seed=5, run_label="r3", start_us=SECOND_START_US + US_PER_HOUR)
        run(h, "allocations")
    return old, plain


def test_links_an_older_version_signed_on_the_derived_chain_are_verified_and_passed_over(
        legacy: tuple[Home, Home]) -> None:
    old, plain = legacy
    run(old, "settlements")
    run(plain, "settlements")
    assert rows(old, "settlements", "SELECT code, count(*) FROM quarantine GROUP BY code") == []
    shapley = sum(1 for _, b in derived(old, "allocations") if isinstance(b, Allocation) and b.method == "shapley")
    assert rows(old, "settlements", "SELECT sum(allocations) FROM pair_balances")[0][0] == shapley
    assert _views(old) == _views(plain)
    assert replay_equal(old, "settlements")  # a rebuild from offset 0 finds the same links
    # the links were verified into settlements' chain of processor.allocations: its head is the producer's
    head = rows(old, "allocations", "SELECT seq FROM _producer WHERE signer_id = 'processor.allocations'")
    assert rows(old, "settlements", "SELECT seq FROM _chain_heads WHERE signer_id = 'processor.allocations'") == head


def test_a_gap_only_a_state_checkpoint_may_fill_an_allocation_misplaced_there_stays_a_gap(tmp_path: Path) -> None:
    """A link that is not a state checkpoint (an allocation signed onto the checkpoints topic) is never passed over:
    settlements would drop it unseen. The next allocation is refused as a gap, and, the chain head stuck before it,
    every later one too: nothing is dropped silently."""
    h = econ_home(tmp_path / "home")
    _traffic(h, tasks=FIRST_TASKS, seed=3, run_label="r1", start_us=T0 + 1_000_000)
    run(h, "allocations")
    first = [b for _, b in derived(h, "allocations") if isinstance(b, Allocation)]
    _sign_as_before(h, "allocations", first[0], "misplaced")
    records_before = _records(h, "allocations")
    _traffic(h, tasks=SECOND_TASKS, seed=4, run_label="r2", start_us=SECOND_START_US)
    run(h, "allocations")
    later = _records(h, "allocations") - records_before
    assert later > 0
    run(h, "settlements")
    assert rows(h, "settlements", "SELECT code, count(*) FROM quarantine GROUP BY code") == [("sequence_gap", later)]
    gap = rows(h, "settlements", "SELECT evidence_json FROM quarantine ORDER BY log_offset LIMIT 1")[0][0]
    head = rows(h, "settlements", "SELECT seq FROM _chain_heads WHERE signer_id = 'processor.allocations'")[0][0]
    assert json.loads(gap)["expected"] == head + 1 and json.loads(gap)["actual"] == head + 2
    shapley = sum(1 for b in first if b.method == "shapley")
    assert rows(h, "settlements", "SELECT sum(allocations) FROM pair_balances")[0][0] == shapley
    assert replay_equal(h, "settlements")


def _records(h: Home, topic: str) -> int:
    log = h.open_log()
    try:
        return log.end_offset(h.topic_for(topic), 0)
    finally:
        log.close()


def test_deliveries_upgraded_from_reading_checkpoints_reads_them_no_more(tmp_path: Path) -> None:
    """deliveries read <prefix>.checkpoints until state checkpoints had a chain of their own: its state file keeps
    that position, and the runner reads only the topics the processor declares now."""

    class DeliveriesBefore(Deliveries):
        topics: ClassVar[tuple[str, ...]] = (*Deliveries.topics, "checkpoints")

    h = econ_home(tmp_path / "home")
    _traffic(h, tasks=4, seed=3, run_label="r1", start_us=T0 + 1_000_000)
    _serve_until_caught_up(h, "allocations")  # a StateCheckpoint on <prefix>.checkpoints
    checkpoints = (h.topic_for("checkpoints"), 0)
    service.state_file(h, "deliveries").parent.mkdir(parents=True)
    log = h.open_log()
    try:
        with closing(Store(service.state_file(h, "deliveries"), Deliveries.views)) as store:
            before = Runner(DeliveriesBefore(), log, store, anchors=h.anchors(), topic_prefix="ledger", produce=False)
            before.run_until_caught_up()
            assert before.positions[checkpoints] == 1
        _serve_until_caught_up(h, "allocations")  # nothing new to fold: no new batch, no new checkpoint
        _traffic(h, tasks=2, seed=4, run_label="r2", start_us=SECOND_START_US)
        _serve_until_caught_up(h, "allocations")  # another StateCheckpoint
        assert log.end_offset(*checkpoints) == 2
        with closing(Store(service.state_file(h, "deliveries"), Deliveries.views)) as store:
            now = Runner(Deliveries(), log, store, anchors=h.anchors(), topic_prefix="ledger", produce=False)
            assert checkpoints not in now.positions and now.caught_up()
            assert now.step() == 0
            assert store.positions()[checkpoints] == 1  # kept in the file, never read on
    finally:
        log.close()


def test_every_processor_writes_its_derived_events_to_one_topic() -> None:
    """A processor's derived events are one chain; its readers verify it whole only if it is on the one topic they
    read (a second topic would be the bug above again, for a reader of one of them)."""
    assert [name for name in REGISTRY if len(REGISTRY[name].derived_topics) > 1] == []
    assert [name for name in REGISTRY if "checkpoints" in REGISTRY[name].derived_topics] == ["notary"]
