"""The publisher signs what it wrote: the manifest lists exactly the files on disk with their SHA-256,
replaced snapshots are removed after the new manifest, and a restarted publisher re-exports every view
instead of vouching for files an earlier run (or anyone else) left behind."""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
import threading
from pathlib import Path

import duckdb
import pytest

from ledger.errors import ViewIntegrityError
from ledger.integrity import manifest as mf
from ledger.sdk import published
from ledger.sdk.emitter import Emitter
from ledger.sdk.published import MANIFEST_FILE, private_cache, registered_keys, verify_published
from ledger.testing.homes import T0, make_home
from processors import views
from processors.host.service import open_runner
from processors.runtime.publish import Publisher, plan_merge, published_views


def on_disk(views_dir) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in views_dir.glob("*/*.parquet")}


def test_manifest_lists_exactly_what_was_written_and_a_restart_replaces_it(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice",))
    out = h.views_dir("journal")
    log = h.open_log()
    try:
        runner, store, proc = open_runner(h, "journal", log)
        try:
            runner.run_until_caught_up()
            first = Publisher(store, proc, out, key=runner.key)
            first.publish(runner.positions, runner.batch_no)
            with Emitter.open("alice", home=h.path, background_flush=False) as em:
                em.action("x", event_time_us=T0 + 1_000)
            runner.run_until_caught_up()
            first.publish(runner.positions, runner.batch_no)
            m, sig = mf.parse((out / MANIFEST_FILE).read_bytes(), "journal")
            assert {f.path for f in m.files} == on_disk(out)
            for f in m.files:
                data = (out / f.path).read_bytes()
                assert (hashlib.sha256(data).hexdigest(), len(data)) == (f.sha256, f.size)
            assert set(m.views) == {v.name for v, _ in published_views(proc)}
            assert m.batch == runner.batch_no and dict(m.positions) == json.loads(
                (out / "_state.json").read_text())["positions"]
            ring = registered_keys(h)
            assert mf.check_signature(m, sig, ring).owner == "processor.journal"
            before = on_disk(out)
            Publisher(store, proc, out, key=runner.key).publish(runner.positions, runner.batch_no)  # a restart
            after = on_disk(out)
            assert before.isdisjoint(after)  # every earlier file replaced by a fresh export
            assert {v.name for v, _ in published_views(proc)} == {p.split("/")[0] for p in after}
            checked = verify_published(out, "journal", ring)
            assert sum(len(fs) for fs in checked.files.values()) == len(after)
        finally:
            store.close()
    finally:
        log.close()


# ------------------------------------------------------------------ incremental publishing and compaction

def emit_actions(h, n: int, start: int) -> None:
    with Emitter.open("alice", home=h.path, background_flush=False) as em:
        for i in range(n):
            em.action("x", event_time_us=T0 + 10_000 + start + i)


def rows_of(files) -> list[tuple]:
    con = duckdb.connect()
    try:
        if not files:
            return []
        return sorted(con.execute("SELECT * FROM read_parquet(?, union_by_name = true)",
                                  [[str(f) for f in files]]).fetchall())
    finally:
        con.close()


def manifest_files(out, view: str) -> list:
    m, _ = mf.parse((out / MANIFEST_FILE).read_bytes(), "journal")
    return [out / f.path for f in m.files_of(view)]


def test_plan_merge_keeps_parts_logarithmic_and_under_the_limit():
    rows: list[int] = []
    most = 0
    for i in range(5_000):
        rows.append(1 + i % 3)  # small, uneven appends
        while (plan := plan_merge(rows, 6)) is not None:
            a, b = plan
            rows[a:b] = [sum(rows[a:b])]
        most = max(most, len(rows))
    assert sum(rows) == sum(1 + i % 3 for i in range(5_000))  # merges conserve rows
    assert most <= 6 and len(rows) <= 6
    # falling sizes: each part more than COMPACT_RATIO times all the newer ones together
    assert all(rows[k] > 2 * sum(rows[k + 1:]) for k in range(len(rows) - 1))


def test_incremental_publishes_with_compaction_read_the_same_as_a_full_export(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice",))
    out = h.views_dir("journal")
    log = h.open_log()
    try:
        runner, store, proc = open_runner(h, "journal", log)
        try:
            runner.run_until_caught_up()
            with Publisher(store, proc, out, key=runner.key, max_parts=3) as pub:
                pub.publish(runner.positions, runner.batch_no, changed=runner.written)
                for k in range(12):
                    emit_actions(h, 3 + k % 4, start=100 * k)
                    runner.run_until_caught_up()
                    pub.publish(runner.positions, runner.batch_no, changed=runner.written)
                    listed = manifest_files(out, "events")
                    assert len(listed) <= 3  # the limit holds in every manifest, merges in flight or not
                    assert {f"events/{p.name}" for p in listed} == {p.file.path for p in pub.parts("events")}
                    # no batch twice, none missing: the parts tile 0..batch
                    spans = [(p.first, p.last) for p in pub.parts("events")]
                    assert spans[0][0] == 0 and spans[-1][1] == runner.batch_no
                    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(spans))
                pub._collect_merges(wait=True)  # let the last merge land, then sign it
                pub.publish(runner.positions, runner.batch_no + 0, changed=runner.written)
                incremental = rows_of(manifest_files(out, "events"))
            full = tmp_path / "full"
            Publisher(store, proc, full, key=runner.key).publish(runner.positions, runner.batch_no)
            m, _ = mf.parse((full / MANIFEST_FILE).read_bytes(), "journal")
            assert incremental == rows_of([full / f.path for f in m.files_of("events")])
            assert len(incremental) == store.query("SELECT count(*) FROM events")[0][0] > 40
            # what a checked reader reads is the same
            checked = verify_published(out, "journal", registered_keys(h), copy_to=tmp_path / "copies")
            assert rows_of(checked.files["events"]) == incremental
            assert on_disk(out) == {f.path for f in mf.parse((out / MANIFEST_FILE).read_bytes(), "journal")[0].files}
        finally:
            store.close()
    finally:
        log.close()


def test_an_unchanged_snapshot_view_is_not_rewritten_and_nothing_new_writes_no_manifest(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice",))
    out = h.views_dir("reputation")
    log = h.open_log()
    try:
        runner, store, proc = open_runner(h, "reputation", log)
        try:
            runner.run_until_caught_up()
            pub = Publisher(store, proc, out, key=runner.key)
            assert pub.publish(runner.positions, runner.batch_no, changed=runner.written)
            before = on_disk(out)
            assert not pub.publish(runner.positions, runner.batch_no, changed=runner.written)  # nothing new
            written = dict(runner.written)
            emit_actions(h, 2, start=0)
            runner.run_until_caught_up()
            assert pub.publish(runner.positions, runner.batch_no, changed=written)  # batch moved, view untouched
            assert on_disk(out) == before
            assert pub.publish(runner.positions, runner.batch_no + 1, changed={"reputation": runner.batch_no + 1})
            assert on_disk(out) != before  # written since: a new snapshot replaced the old one
        finally:
            store.close()
    finally:
        log.close()


def test_a_tampered_part_is_refused_and_never_kept(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice",))
    out = h.views_dir("journal")
    emit_actions(h, 5, start=0)
    log = h.open_log()
    try:
        runner, store, proc = open_runner(h, "journal", log)
        try:
            runner.run_until_caught_up()
            Publisher(store, proc, out, key=runner.key).publish(runner.positions, runner.batch_no)
        finally:
            store.close()
    finally:
        log.close()
    ring = registered_keys(h)
    cache = private_cache(h)
    assert cache is not None and (cache.stat().st_mode & 0o777) == 0o700
    (part,) = manifest_files(out, "events")
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 1
    part.write_bytes(bytes(data))
    for _ in range(2):  # a refused file is not kept: the second read is refused all the same
        with pytest.raises(ViewIntegrityError) as e:
            verify_published(out, "journal", ring, copy_to=cache / "journal")
        assert e.value.evidence["view"] == "events"
    assert not list((cache / "journal").glob("events/*"))


def test_a_second_read_hashes_nothing_it_has_already_checked(tmp_path, monkeypatch):
    h = make_home(tmp_path / "home", agents=("alice",))
    emit_actions(h, 5, start=0)
    log = h.open_log()
    try:
        runner, store, proc = open_runner(h, "journal", log)
        try:
            runner.run_until_caught_up()
            Publisher(store, proc, h.views_dir("journal"), key=runner.key).publish(runner.positions, runner.batch_no)
        finally:
            store.close()
    finally:
        log.close()
    hashed: list[str] = []
    real = published._hash_copy
    monkeypatch.setattr(published, "_hash_copy", lambda src, f, target: hashed.append(f.path) or real(src, f, target))
    assert views.query(h, "SELECT count(*) FROM events WHERE kind = 'action'").rows == ((5,),)
    assert hashed  # the first read checks every file
    hashed.clear()
    assert views.query(h, "SELECT count(*) FROM events WHERE kind = 'action'").rows == ((5,),)
    assert hashed == []  # kept copies: nothing read or hashed again


def test_a_non_private_cache_is_not_trusted(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice",))
    h.view_cache_dir.mkdir(parents=True)
    h.view_cache_dir.chmod(0o777)  # anyone could have put a "checked" copy there
    assert private_cache(h) is None


def test_a_reader_during_publishes_sees_one_complete_publish(tmp_path):
    """Publishes (with merges removing parts) race a checked reader: every read is exactly the rows of the
    batch its manifest names, never a mix of two publishes and never a missing part."""
    h = make_home(tmp_path / "home", agents=("alice",))
    out = h.views_dir("journal")
    log = h.open_log()
    runner, store, proc = open_runner(h, "journal", log)
    counts: dict[int, int] = {}
    errors: list[BaseException] = []

    def publishing() -> None:
        try:
            with Publisher(store, proc, out, key=runner.key, max_parts=2) as pub:
                for k in range(15):
                    emit_actions(h, 2, start=100 * k)
                    runner.run_until_caught_up()
                    counts[runner.batch_no] = store.query("SELECT count(*) FROM events")[0][0]
                    pub.publish(runner.positions, runner.batch_no, changed=runner.written)
        except BaseException as e:
            errors.append(e)

    try:
        runner.run_until_caught_up()
        counts[runner.batch_no] = store.query("SELECT count(*) FROM events")[0][0]
        Publisher(store, proc, out, key=runner.key).publish(runner.positions, runner.batch_no)
        ring = registered_keys(h)
        t = threading.Thread(target=publishing)
        t.start()
        reads = 0
        while t.is_alive() or reads == 0:
            with tempfile.TemporaryDirectory() as tmp:  # fresh copies: every read checks every file again
                checked = verify_published(out, "journal", ring, copy_to=Path(tmp))
                assert checked.manifest is not None
                assert len(rows_of(checked.files["events"])) == counts[checked.manifest.batch]
            reads += 1
        t.join()
        assert not errors, errors
        assert reads >= 2
    finally:
        store.close()
        log.close()
