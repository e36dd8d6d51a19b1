"""The store at any size in bounded memory (processors/runtime/store.py), on real DuckDB files.

- The state digest (``sha256-lanesum-v2``) is what its docstring says, recomputed here from the rows'
  canonical text with hashlib; it is equal for equal states whatever the batch boundaries, insertion
  order and upserts on the way (a hypothesis property), and differs when one row differs.
- Under a tiny DuckDB memory limit the digest of 100,000 rows works (the v1 digest sorted every row
  hash in one ``string_agg`` and raised DuckDB's out-of-memory error on exactly this test).
- The outbox is read in chunks of ``MAX_OUTBOX_CHUNK_RECORDS``; ``flush_outbox`` produces every record
  once, in order, one chunk per append, and leaves the outbox empty; a crash between chunks re-sends
  nothing already on the log.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import limits
from ledger.log import Log, read_all
from ledger.testing.homes import T0, make_home
from ledger.wire import codec
from ledger.wire.events import Rejected
from processors.host.service import ensure_processor_key
from processors.journal import Journal
from processors.runtime.processor import Column, Derived, View
from processors.runtime.runner import Crash, Runner
from processors.runtime.store import DIGEST_ALGORITHM, Store

TOTALS = View(name="totals", doc="a snapshot view keyed by agent", mode="snapshot", primary_key=("agent",),
              columns=(Column("agent", "VARCHAR", "agent id"), Column("tokens", "BIGINT", "tokens so far")))
LINES = View(name="lines", doc="an append view (no key: equal rows may repeat)", columns=(
    Column("id", "BIGINT", "line id"), Column("note", "VARCHAR", "free text"), Column("_batch", "BIGINT", "internal")))
VIEWS = (TOTALS, LINES)


# ------------------------------------------------------------------------------ the algorithm, recomputed


def _expected_digest(s: Store) -> str:
    """The documented algorithm in Python: lanes of each row's SHA-256 summed exactly, per table."""
    tables: dict[str, dict[str, Any]] = {}
    for v in sorted(s.views, key=lambda v: v.name):
        row = "struct_pack(" + ", ".join(f"{c} := {c}" for c in v.public_columns) + ")::VARCHAR"
        texts = [t for (t,) in s.query(f"SELECT {row} FROM {v.name}")]
        sums = [0, 0, 0, 0]
        for t in texts:
            h = hashlib.sha256(t.encode()).digest()
            for i in range(4):
                sums[i] += int.from_bytes(h[8 * i:8 * i + 8], "big")
        text = "\n".join([DIGEST_ALGORITHM, str(len(texts)), *map(str, sums)])
        tables[v.name] = {"rows": len(texts), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    canon = json.dumps(tables, sort_keys=True).encode()
    return f"{DIGEST_ALGORITHM}:{hashlib.sha256(canon).hexdigest()}"


def test_the_digest_is_the_documented_lane_sum(tmp_path: Path):
    s = Store(tmp_path / "s.duckdb", VIEWS)
    try:
        empty = s.digest()
        assert empty["algorithm"] == DIGEST_ALGORITHM and empty["digest"] == _expected_digest(s)
        with s.transaction():
            s.append("totals", {"agent": ["a", "b", "it's"], "tokens": [1, -2, 2**62]}, replace=True)
            s.append("lines", {"id": [1, 1, 2], "note": ["x", "x", None], "_batch": [1, 2, 3]})
        d = s.digest()
        assert d["digest"] == _expected_digest(s) != empty["digest"]
        assert d["tables"]["lines"]["rows"] == 3 and d["tables"]["totals"]["rows"] == 3
    finally:
        s.close()


# ------------------------------------------------------------------------------ order independence

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
_STATES = st.tuples(
    st.dictionaries(_TEXT, st.integers(-(2**62), 2**62), max_size=10),  # totals: agent -> tokens
    st.lists(st.tuples(st.integers(-5, 5), st.none() | _TEXT), max_size=25),  # lines, repeats allowed
)


def _split(data: st.DataObject, items: list[Any]) -> list[list[Any]]:
    """``items`` cut at random boundaries (empty parts allowed)."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(items)), max_size=5)))
    bounds = [0, *cuts, len(items)]
    return [items[a:b] for a, b in pairwise(bounds)]


def _build(path: Path, totals: dict[str, int], lines: list[tuple[int, str | None]], data: st.DataObject) -> Store:
    """A store holding exactly ``totals`` and ``lines``, reached by a random sequence of transactions:
    rows in a random order and batching, stale values of some agents upserted first and replaced later."""
    s = Store(path, VIEWS)
    stale = data.draw(st.lists(st.sampled_from(sorted(totals)), max_size=4)) if totals else []
    writes: list[tuple[str, Any]] = [("total", (a, totals[a] + 1 + i)) for i, a in enumerate(stale)]
    final = [("total", kv) for kv in data.draw(st.permutations(sorted(totals.items())))]
    ordered_lines = [("line", ln) for ln in data.draw(st.permutations(lines))]
    # stale upserts come before their agent's final one; everything else in any order
    tail = data.draw(st.permutations(final + ordered_lines))
    for part in _split(data, writes + tail):
        with s.transaction():
            for kind, group in ((k, [x for kk, x in part if kk == k]) for k in ("total", "line")):
                if not group:
                    continue
                if kind == "total":
                    for a, t in group:  # one row per call: a batch may upsert the same agent twice
                        s.append("totals", {"agent": [a], "tokens": [t]}, replace=True)
                else:
                    batch = data.draw(st.integers(0, 99))
                    s.append("lines", {"id": [i for i, _ in group], "note": [n for _, n in group],
                                       "_batch": [batch] * len(group)})
    return s


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=_STATES, data=st.data())
def test_the_digest_is_equal_for_equal_states_whatever_the_path_and_differs_by_one_row(state, data):
    totals, lines = state
    with tempfile.TemporaryDirectory() as d:
        one = _build(Path(d) / "one.duckdb", totals, lines, data)
        two = _build(Path(d) / "two.duckdb", totals, lines, data)
        # one row differs: a changed total, or one line more, or one line fewer
        change = data.draw(st.sampled_from(["total", "add line"] + (["drop line"] if lines else [])))
        if change == "total" and totals:
            agent = data.draw(st.sampled_from(sorted(totals)))
            other_totals, other_lines = {**totals, agent: totals[agent] + 1}, lines
        elif change == "drop line":
            k = data.draw(st.integers(0, len(lines) - 1))
            other_totals, other_lines = totals, lines[:k] + lines[k + 1:]
        else:
            other_totals, other_lines = totals, [*lines, data.draw(st.tuples(st.integers(-5, 5), st.none() | _TEXT))]
        other = _build(Path(d) / "other.duckdb", other_totals, other_lines, data)
        try:
            d1, d2, d3 = one.digest(), two.digest(), other.digest()
            assert d1 == d2
            assert d1["digest"] == _expected_digest(one)
            assert d3["digest"] != d1["digest"]
        finally:
            for s in (one, two, other):
                s.close()


# ------------------------------------------------------------------------------ bounded memory

TINY_MEMORY_LIMIT = "4MB"  # DuckDB's buffer pool for the test: the v1 digest's sort needed more
TINY_ROWS = 100_000  # rows whose v1 digest ran out of memory under TINY_MEMORY_LIMIT


def test_the_digest_of_many_rows_works_under_a_tiny_memory_limit(tmp_path: Path):
    ids = list(range(TINY_ROWS))
    small = Store(tmp_path / "small.duckdb", VIEWS, memory_limit=TINY_MEMORY_LIMIT)
    roomy = Store(tmp_path / "roomy.duckdb", VIEWS)
    try:
        step = 20_000
        for i in range(0, TINY_ROWS, step):
            with small.transaction():
                small.append("lines", {"id": ids[i:i + step], "note": [f"row {j}" for j in ids[i:i + step]],
                                       "_batch": [i] * step})
        with roomy.transaction():  # the same rows, other batching and order
            rev = ids[::-1]
            roomy.append("lines", {"id": rev, "note": [f"row {j}" for j in rev], "_batch": [0] * TINY_ROWS})
        d = small.digest()
        assert d["tables"]["lines"]["rows"] == TINY_ROWS
        assert d == roomy.digest()
    finally:
        small.close()
        roomy.close()


def test_the_outbox_is_read_one_bounded_chunk_at_a_time(tmp_path: Path):
    s = Store(tmp_path / "s.duckdb", VIEWS)
    try:
        values = [f"v{i:03d}".encode() for i in range(3 * limits.MAX_OUTBOX_CHUNK_RECORDS + 1)]
        with s.transaction():
            s.add_outbox([("t", None, v) for v in values])
        got: list[bytes] = []
        after = 0
        while chunk := s.outbox(after=after):
            assert len(chunk) <= limits.MAX_OUTBOX_CHUNK_RECORDS
            got += [v for _, _, _, v in chunk]
            after = chunk[-1][0]
        assert got == values
        assert [v for _, _, _, v in s.outbox(limit=2)] == values[:2]
    finally:
        s.close()


class CountingLog:
    """A real log that also records the size of every append (how many records one produce sent)."""

    def __init__(self, inner: Log) -> None:
        self.inner = inner
        self.appends: list[int] = []

    def append(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> Any:
        self.appends.append(len(records))
        return self.inner.append(topic, records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def journal_parts(tmp_path: Path) -> Iterator[tuple[Any, CountingLog, Store]]:
    h = make_home(tmp_path / "home", agents=())
    log = CountingLog(h.open_log())
    store = Store(tmp_path / "state.duckdb", Journal.views)
    yield h, log, store
    store.close()
    log.inner.close()


RECORD_PAD_BYTES = 40_000  # per outbox record: 60 of them are 2.4 MB, more than one chunk's worth


def _fill_outbox(h: Any, log: CountingLog, store: Store) -> tuple[str, list[bytes]]:
    key = ensure_processor_key(h, "journal", log)  # type: ignore[arg-type]
    topic = h.topic_for("rejected")
    values = [f"record {i:03d} ".encode() + bytes([i % 251]) * RECORD_PAD_BYTES for i in range(60)]
    for part in (values[:25], values[25:]):
        with store.transaction():
            store.add_outbox([(topic, key.signer_id.encode(), v) for v in part])
    return topic, values


def _runner(h: Any, log: CountingLog, store: Store, **kw: Any) -> Runner:
    return Runner(Journal(), log, store, anchors=h.anchors(),  # type: ignore[arg-type]
                  key=ensure_processor_key(h, "journal", log), **kw)  # type: ignore[arg-type]


def test_flush_produces_the_outbox_chunk_by_chunk_once_in_order(journal_parts):
    h, log, store = journal_parts
    topic, values = _fill_outbox(h, log, store)
    log.appends.clear()
    _runner(h, log, store)  # a starting runner flushes what is committed
    assert [r.value for r in read_all(log.inner, topic)] == values
    chunk = limits.MAX_OUTBOX_CHUNK_RECORDS
    assert log.appends == [chunk] * (len(values) // chunk) + ([len(values) % chunk] if len(values) % chunk else [])
    assert store.outbox() == []


def test_a_crash_between_chunks_resends_nothing_already_on_the_log(journal_parts):
    h, log, store = journal_parts
    topic, values = _fill_outbox(h, log, store)
    produced = []

    def crash_on_the_third_chunk(point: str) -> None:
        if point == "after_produce":
            produced.append(1)
            if len(produced) == 3:
                raise Crash(point)

    with pytest.raises(Crash):
        _runner(h, log, store, crash_hook=crash_on_the_third_chunk)
    on_log = [r.value for r in read_all(log.inner, topic)]
    assert on_log == values[:3 * limits.MAX_OUTBOX_CHUNK_RECORDS]  # the third chunk went out, uncleared
    assert len(store.outbox(limit=len(values))) == len(values) - 2 * limits.MAX_OUTBOX_CHUNK_RECORDS
    _runner(h, log, store)
    assert [r.value for r in read_all(log.inner, topic)] == values  # each once, in order
    assert store.outbox() == []


def test_a_fresh_store_over_a_log_with_its_output_produces_nothing_and_reads_a_chunk_at_a_time(journal_parts, tmp_path):
    """A rebuild from offset 0 with the processor's own key re-derives records already on the log: each is
    found (in step with the outbox) and skipped, never appended twice. Our records are read one chunk at a
    time as the outbox reaches them: before, every record of ours on the topic was read into one set at the
    first flush (+250 MB for allocations rebuilding a 1M-event log)."""
    h, log, store = journal_parts
    topic, values = _fill_outbox(h, log, store)
    _runner(h, log, store)
    assert [r.value for r in read_all(log.inner, topic)] == values
    reads: list[int] = []

    class KeyReads(CountingLog):
        def read_key(self, *a: Any, **kw: Any) -> Any:
            got = self.inner.read_key(*a, **kw)
            reads.append(len(got))
            return got

    fresh = Store(tmp_path / "fresh.duckdb", Journal.views)  # no produced_scan mark: the scan starts at -1
    try:
        with fresh.transaction():
            fresh.add_outbox([(topic, ensure_processor_key(h, "journal", log).signer_id.encode(), v)  # type: ignore[arg-type]
                              for v in values[:20]])
        klog = KeyReads(log.inner)
        _runner(h, klog, fresh)
        assert [r.value for r in read_all(log.inner, topic)] == values  # nothing twice
        assert klog.appends == []
        chunk = limits.MAX_OUTBOX_CHUNK_RECORDS
        assert max(reads) <= chunk and sum(reads) <= 20 + chunk  # lazily: no further than the outbox reached
        # the next flush continues from the moved mark: a record that is new goes out once, after the others
        with fresh.transaction():
            fresh.add_outbox([(topic, b"x", b"a record not on the log yet")])
        _runner(h, klog, fresh)
        assert [r.value for r in read_all(log.inner, topic)] == [*values, b"a record not on the log yet"]
    finally:
        fresh.close()


WIDE_ROWS = 100_000  # rows of ~500 B: one default Parquet row group (122,880 rows) of them passes 64 MB


def test_a_wide_view_exports_under_the_processors_memory_limit(tmp_path: Path):
    """Publishing writes Parquet in row groups of PARQUET_ROW_GROUP_ROWS: with DuckDB's default row group the
    journal's 100k-event `events` view ran out of memory at its first publish (the processor restarted forever)."""
    store = Store(tmp_path / "wide.duckdb", VIEWS)  # the processors' own limit, DUCKDB_MEMORY_LIMIT
    try:
        step = 20_000
        for i in range(0, WIDE_ROWS, step):
            with store.transaction():
                store.append("lines", {"id": list(range(i, i + step)),
                                       "note": [f"{j:08d}" + "x" * 492 for j in range(i, i + step)],
                                       "_batch": [i] * step})
        target = tmp_path / "lines.parquet"
        store.export(LINES, target)
        got = store.query(f"SELECT count(*), count(DISTINCT id), min(length(note)) FROM read_parquet('{target}')")
        assert got == [(WIDE_ROWS, WIDE_ROWS, 500)]
    finally:
        store.close()


def test_a_snapshot_digest_sees_one_committed_batch_never_an_open_one(tmp_path: Path):
    """The service digests on a second connection while its runner writes: the digest and batch number are of
    the last committed state, whatever the open transaction holds."""
    store = Store(tmp_path / "snap.duckdb", VIEWS)
    try:
        with store.transaction():
            store.append("lines", {"id": [1, 2], "note": ["a", "b"], "_batch": [1, 1]})
            store.set_meta("batch", "1")
        committed = store.digest()
        assert store.snapshot_digest() == (1, committed)
        with store.transaction():
            store.append("lines", {"id": [3], "note": ["c"], "_batch": [2]})
            store.set_meta("batch", "2")
            assert store.snapshot_digest() == (1, committed)  # the open batch is invisible to it
            assert store.digest() != committed  # (the writer's own connection sees its rows)
        assert store.snapshot_digest() == (2, store.digest())
    finally:
        store.close()


DEAD_LETTER_BYTES = 150_000  # each derived event's original: 20 of them are 3 MB, three records' worth


def test_large_derived_events_are_cut_into_records_the_log_accepts(journal_parts):
    """Derived records are cut by bytes as well as by count: a burst of dead letters (each carries its original
    record) in one batch used to become one record over MAX_RECORD_BYTES, which the log refused (the processor
    crashed and restarted on it forever)."""
    h, log, store = journal_parts
    runner = _runner(h, log, store)
    derived = [Derived(topic="rejected", event_time_us=T0 + i, idempotency_key=f"dead-{i}", body=Rejected(
        topic=h.topic, partition=0, offset=i, code="clock_skew", reason="test", evidence_json="{}",
        original=bytes([i]) * DEAD_LETTER_BYTES, original_size=DEAD_LETTER_BYTES,
        original_sha256=bytes(32))) for i in range(20)]
    before = runner.producer_head
    records = runner._sign(derived)
    assert len(records) >= 3 and all(len(r.key or b"") + len(r.value) <= limits.MAX_RECORD_BYTES for r in records)
    # one chain across the records: each continues the previous, the last is the producer's new head
    assert records[0].prev == before and all(a.head == b.prev for a, b in pairwise(records))
    assert records[-1].head == runner.producer_head and runner.producer_head.seq == before.seq + 20
    events = [e for r in records for e in codec.decode_batch(r.value).events]
    assert len(events) == 20
    assert [codec.decode_event(e).event.body.offset for e in events] == list(range(20))
    log.inner.ensure_topic(h.topic_for("rejected"))
    log.inner.append(h.topic_for("rejected"), [(r.key, r.value) for r in records])  # the log takes every one
