"""The Store contract (processors/runtime/store.py): what the runner relies on from a processor's
DuckDB file, checked through the Store interface on real files in a temporary directory.

- tracking rows (positions), the batch number, meta, the producer head and the verifier state round-trip,
  and survive closing and reopening the file;
- a transaction is all or nothing: an exception inside it (an ordinary one, a ``BaseException`` such as
  a crash hook's, or a DuckDB constraint violation) leaves nothing visible: views, quarantine, outbox,
  tracking, meta, producer head; a failed COMMIT raises ``StoreError`` and is rolled back too; the store
  is usable afterwards;
- writes outside a transaction and nested transactions are refused with ``StoreError``;
- the outbox keeps insertion order, numbers rows upward, and ``clear_outbox(n)`` removes exactly
  the rows up to ``n``;
- upserts replace rows by primary key, plain appends of an existing key fail;
- the digest depends only on the public content: equal content → equal digest whatever the insertion
  order, batching or internal columns; different content → different digest.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from ledger.integrity.chain import Head
from ledger.integrity.keyring import KeyRing
from ledger.integrity.verify import Verifier, Where
from ledger.log import read_all
from ledger.testing.homes import fill, make_home
from processors.runtime.processor import Column, View
from processors.runtime.store import Store, StoreError

TOTALS = View(name="totals", doc="a snapshot view keyed by agent", mode="snapshot", primary_key=("agent",),
              columns=(Column("agent", "VARCHAR", "agent id"), Column("tokens", "BIGINT", "tokens so far")))
LINES = View(name="lines", doc="an append view", columns=(
    Column("id", "BIGINT", "line id"), Column("note", "VARCHAR", "free text"), Column("_batch", "BIGINT", "internal")))
VIEWS = (TOTALS, LINES)
SIGNER = "processor.test"


class Boom(Exception):
    """An ordinary failure raised inside a transaction by the test."""


class Halt(BaseException):
    """Like the runtime's crash hook: not an Exception, so only a rollback that catches everything undoes it."""


def _open(path: Path) -> Store:
    return Store(path, VIEWS)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = _open(tmp_path / "state.duckdb")
    yield s
    s.close()


def _everything(s: Store) -> tuple[object, ...]:
    """All the state a transaction can touch, as read back through the Store."""
    return (s.positions(), s.batch(), s.query("SELECT k, v FROM _meta ORDER BY k"), s.outbox(),
            s.producer_head(SIGNER), s.query("SELECT * FROM totals ORDER BY agent"),
            s.query("SELECT * FROM lines ORDER BY id"), s.query("SELECT topic, log_offset, code FROM quarantine"),
            s.query("SELECT signer_id, seq FROM _chain_heads ORDER BY 1"), s.digest())


def _write_a_batch(s: Store, n: int) -> None:
    """One batch's worth of every kind of write the runner makes."""
    s.append("totals", {"agent": [f"a{n}"], "tokens": [n * 10]}, replace=True)
    s.append("lines", {"id": [n], "note": [f"line {n}"], "_batch": [n]})
    s.append("quarantine", {"topic": ["t"], "log_partition": [0], "log_offset": [n], "code": ["bad_schema"],
                            "reason": ["r"], "original": [b"\x00"], "original_size": [1], "_batch": [n]})
    s.add_outbox([("ledger.rejected", b"k", f"value {n}".encode())])
    s.save_producer(SIGNER, Head(n, bytes([n]) * 32))
    s.save_positions({("ledger.events", 0): n * 3, ("ledger.control", 0): n})
    s.set_meta("batch", str(n))


# ------------------------------------------------------------------------------ round trips


def test_positions_round_trip_and_are_upserted_per_partition(store: Store):
    assert store.positions() == {}
    with store.transaction():
        store.save_positions({("ledger.events", 0): 5, ("ledger.events", 1): 7, ("ledger.control", 0): 2})
    with store.transaction():
        store.save_positions({("ledger.events", 1): 9})  # one partition moves; the others keep theirs
        store.save_positions({})  # nothing to save is not an error
    assert store.positions() == {("ledger.events", 0): 5, ("ledger.events", 1): 9, ("ledger.control", 0): 2}
    assert store.query("SELECT count(*) FROM _tracking")[0][0] == 3  # one row per partition, never two


def test_meta_batch_and_producer_head_round_trip(store: Store):
    assert store.batch() == 0 and store.meta("absent") is None and store.meta("absent", "d") == "d"
    assert store.producer_head(SIGNER) == Head(0, bytes(32))
    with store.transaction():
        store.set_meta("batch", "4")
        store.set_meta("batch", "5")  # last write wins
        store.save_producer(SIGNER, Head(3, b"\x03" * 32))
        store.save_producer(SIGNER, Head(4, b"\x04" * 32))
    assert store.batch() == 5 and store.meta("batch") == "5"
    assert store.producer_head(SIGNER) == Head(4, b"\x04" * 32)
    assert store.producer_head("someone.else") == Head(0, bytes(32))


def test_verifier_state_round_trips_through_a_reopen(tmp_path: Path):
    home = make_home(tmp_path / "home", agents=())
    fill(home, tasks=3, batch_size=4)
    log = home.open_log()
    try:
        verifier = Verifier(KeyRing(home.anchors()))
        touched = set()
        for topic in home.ledger_topics:
            for rec in read_all(log, topic):
                touched.add(verifier.check_record(rec.value, Where(rec.topic, rec.partition, rec.offset)).signer_id)
    finally:
        log.close()
    assert len(touched) >= 3 and "operator" in touched  # the operator and several agents signed
    path = tmp_path / "state.duckdb"
    s = _open(path)
    with s.transaction():
        s.save_verifier(verifier.chains, touched, verifier.keyring)
    s.close()
    s = _open(path)
    try:
        ring, chains = s.load_verifier(home.anchors())
    finally:
        s.close()
    assert chains.heads == verifier.chains.heads
    assert {k: list(v.items()) for k, v in chains._recent.items()} == {
        k: list(v.items()) for k, v in verifier.chains._recent.items() if k in touched}
    assert sorted(ring.keys(), key=lambda k: k.key_id) == sorted(verifier.keyring.keys(), key=lambda k: k.key_id)
    assert ring.agents == verifier.keyring.agents


def test_reopening_the_file_preserves_everything(tmp_path: Path):
    path = tmp_path / "state.duckdb"
    s = _open(path)
    for n in (1, 2, 3):
        with s.transaction():
            _write_a_batch(s, n)
    with s.transaction():
        s.clear_outbox(1)
    before = _everything(s)
    s.close()
    s = _open(path)  # reopening also re-runs the idempotent schema creation: it must not touch rows
    try:
        assert _everything(s) == before
        assert s.batch() == 3 and [v for _, _, _, v in s.outbox()] == [b"value 2", b"value 3"]
    finally:
        s.close()
    ro = Store(path, VIEWS, read_only=True)
    try:
        assert _everything(ro) == before
    finally:
        ro.close()


# ------------------------------------------------------------------------------ atomicity


@pytest.mark.parametrize("failure", [Boom("in the body"), Halt("crash hook")], ids=["exception", "base_exception"])
def test_an_exception_inside_a_transaction_leaves_nothing_visible(store: Store, failure: BaseException):
    with store.transaction():
        _write_a_batch(store, 1)
    before = _everything(store)
    with pytest.raises(type(failure)), store.transaction():
        _write_a_batch(store, 2)
        store.clear_outbox(10)
        store.execute("DELETE FROM lines")
        raise failure
    assert _everything(store) == before
    with store.transaction():  # the store is usable after a rollback
        _write_a_batch(store, 2)
    assert store.batch() == 2 and len(store.outbox()) == 2


def test_a_constraint_violation_rolls_back_the_whole_transaction(store: Store):
    with store.transaction():
        _write_a_batch(store, 1)
    before = _everything(store)
    with pytest.raises(duckdb.ConstraintException), store.transaction():
        _write_a_batch(store, 2)
        store.append("totals", {"agent": ["a1"], "tokens": [0]})  # a plain append of an existing key
    assert _everything(store) == before


def test_a_failed_commit_raises_store_error_and_is_rolled_back(tmp_path: Path):
    class FailingCommit(Store):
        armed = False

        def _commit(self) -> None:
            if self.armed:
                # makes DuckDB refuse the COMMIT for real: the transaction it would end is already gone
                self.con.execute("ROLLBACK")
            super()._commit()

    path = tmp_path / "state.duckdb"
    s = FailingCommit(path, VIEWS)
    with s.transaction():
        _write_a_batch(s, 1)
    before = _everything(s)
    s.armed = True
    try:
        with pytest.raises(StoreError) as e, s.transaction():
            _write_a_batch(s, 2)
        assert "commit failed" in e.value.message and e.value.evidence["path"] == str(path)
        assert _everything(s) == before
    finally:
        s.close()


def test_writes_outside_a_transaction_and_nested_transactions_are_refused(store: Store):
    writes = [lambda: store.append("lines", {"id": [1], "note": ["x"]}), lambda: store.execute("DELETE FROM lines"),
              lambda: store.set_meta("k", "v"), lambda: store.save_positions({("t", 0): 1}),
              lambda: store.save_producer(SIGNER, Head(1, bytes(32))), lambda: store.add_outbox([("t", None, b"v")]),
              lambda: store.clear_outbox(1)]
    for write in writes:
        with pytest.raises(StoreError, match="write outside a transaction"):
            write()
    before = _everything(store)
    with pytest.raises(StoreError, match="already open"), store.transaction():
        store.set_meta("outer", "1")
        with store.transaction():
            pytest.fail("a nested transaction must be refused before its body runs")
    assert _everything(store) == before  # the outer transaction was rolled back with it


# ------------------------------------------------------------------------------ outbox and upserts


def test_the_outbox_keeps_order_and_clear_removes_exactly_up_to_n(store: Store):
    with store.transaction():
        store.add_outbox([("a", b"k1", b"v1"), ("b", None, b"v2")])
        store.add_outbox([])
    with store.transaction():
        store.add_outbox([("a", b"k3", b"v3")])
    rows = store.outbox()
    assert [(t, k, v) for _, t, k, v in rows] == [("a", b"k1", b"v1"), ("b", None, b"v2"), ("a", b"k3", b"v3")]
    ns = [n for n, _, _, _ in rows]
    assert ns == sorted(ns) and len(set(ns)) == 3
    with store.transaction():
        store.clear_outbox(ns[1])
        store.add_outbox([("c", b"k4", b"v4")])  # rows added after a clear come after the survivors
    assert [v for _, _, _, v in store.outbox()] == [b"v3", b"v4"]
    with store.transaction():
        store.clear_outbox(store.outbox()[-1][0])
    assert store.outbox() == []


def test_upserts_replace_by_primary_key(store: Store):
    with store.transaction():
        store.append("totals", {"agent": ["a", "b"], "tokens": [1, 2]}, replace=True)
    with store.transaction():
        store.append("totals", {"agent": ["b", "c"], "tokens": [20, 30]}, replace=True)
    assert store.query("SELECT agent, tokens FROM totals ORDER BY agent") == [("a", 1), ("b", 20), ("c", 30)]


# ------------------------------------------------------------------------------ digest


def test_the_digest_is_equal_for_equal_content_and_differs_otherwise(tmp_path: Path):
    one, two, other = (_open(tmp_path / f"{n}.duckdb") for n in ("one", "two", "other"))
    try:
        with one.transaction():
            one.append("totals", {"agent": ["a", "b"], "tokens": [1, 2]}, replace=True)
            one.append("lines", {"id": [1, 2, 3], "note": ["x", "y", None], "_batch": [1, 1, 1]})
        # the same content in another order, other batches, other internal columns, via an overwrite
        with two.transaction():
            two.append("lines", {"id": [3], "note": [None], "_batch": [7]})
            two.append("totals", {"agent": ["b"], "tokens": [99]}, replace=True)
        with two.transaction():
            two.append("lines", {"id": [2, 1], "note": ["y", "x"], "_batch": [8, 9]})
            two.append("totals", {"agent": ["b", "a"], "tokens": [2, 1]}, replace=True)
        with other.transaction():
            other.append("totals", {"agent": ["a", "b"], "tokens": [1, 3]}, replace=True)
            other.append("lines", {"id": [1, 2, 3], "note": ["x", "y", None], "_batch": [1, 1, 1]})
        d1, d2, d3 = one.digest(), two.digest(), other.digest()
        assert d1 == d2
        assert d1["tables"]["lines"]["rows"] == 3 and d1["tables"]["totals"]["rows"] == 2
        assert d3["digest"] != d1["digest"] and d3["tables"]["lines"] == d1["tables"]["lines"]
        assert d3["tables"]["totals"] != d1["tables"]["totals"]
    finally:
        for s in (one, two, other):
            s.close()


def test_a_state_file_of_another_view_layout_is_refused_with_the_way_out(tmp_path):
    """A view that gained a column since the file was written: opening it for writing is a typed StoreError naming
    the table and both column lists (never a failure in the middle of a batch), and the file is left as it was."""
    from ledger.errors import StoreError
    from processors.runtime.store import Store
    from processors.runtime.view import Column, View

    old = View(name="things", doc="", columns=(Column("a", "BIGINT", ""),))
    new = View(name="things", doc="", columns=(Column("a", "BIGINT", ""), Column("b", "VARCHAR", "")))
    Store(tmp_path / "state.duckdb", [old]).close()
    with pytest.raises(StoreError) as caught:
        Store(tmp_path / "state.duckdb", [new])
    ev = caught.value.evidence
    assert (ev["table"], ev["columns"], ev["expected"]) == ("things", ["a"], ["a", "b"])
    assert "rebuild" in (caught.value.hint or "")
    Store(tmp_path / "state.duckdb", [old]).close()  # untouched: the old layout still opens
