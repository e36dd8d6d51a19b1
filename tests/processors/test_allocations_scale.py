"""Allocations on one large batch of consecutive interactions, in bounded DuckDB memory.

One poll of thousands of interactions derives thousands of signed ``allocation`` events (records of
~640 KB each). Producing them read the whole outbox sorted in one query: at a 64 MB memory limit
20,000 interactions ran DuckDB out of memory in ``Store.outbox``, and so does this scaled-down batch
(3,000 interactions at 12 MB) on the code before chunking. Read one bounded chunk at a time, every
derived event is produced exactly once and the outbox ends empty.
"""

from __future__ import annotations

from support.econ import call, derived, econ_home, emit_as

from ledger.testing.homes import T0
from processors import get
from processors.allocations import DEFAULT_METHODS
from processors.host.service import ensure_processor_key
from processors.runtime.runner import Runner
from processors.runtime.store import Store

INTERACTIONS = 3_000  # one poll's worth: every derived record of the batch is in the outbox at once
SMALL_MEMORY_LIMIT = "12MB"  # the whole outbox sorted at once needed more; one chunk needs far less


def test_one_large_batch_of_allocations_is_produced_once_under_a_small_memory_limit(tmp_path):
    h = econ_home(tmp_path, agents=("alice", "bob"))
    emit_as(h, "alice", [(call(f"i{i}", "alice", "bob"), T0 + 2_000_000 + i) for i in range(INTERACTIONS)])
    processor = get("allocations")()
    log = h.open_log()
    store = Store(tmp_path / "allocations.duckdb", processor.views, memory_limit=SMALL_MEMORY_LIMIT)
    try:
        runner = Runner(processor, log, store, anchors=h.anchors(), key=ensure_processor_key(h, "allocations", log),
                        topic_prefix=h.config.get("topic_prefix", "ledger"))
        runner.run_until_caught_up()
        assert runner.stats.batches == 1  # the whole workload was one batch, as in the failure measured
        assert store.outbox() == []
        assert store.query("SELECT count(*) FROM allocations")[0][0] == INTERACTIONS * len(DEFAULT_METHODS)
    finally:
        store.close()
        log.close()
    ids = [event_id for event_id, _ in derived(h, "allocations")]
    assert len(ids) == len(set(ids)) == INTERACTIONS * len(DEFAULT_METHODS)
