"""The publisher signs what it wrote: the manifest lists exactly the files on disk with their SHA-256,
replaced snapshots are removed after the new manifest, and a restarted publisher re-exports every view
instead of vouching for files an earlier run (or anyone else) left behind."""

from __future__ import annotations

import hashlib
import json

from ledger.integrity import manifest as mf
from ledger.sdk.emitter import Emitter
from ledger.sdk.published import MANIFEST_FILE, registered_keys, verify_published
from ledger.testing.homes import T0, make_home
from processors.host.service import open_runner
from processors.runtime.publish import Publisher, published_views


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
