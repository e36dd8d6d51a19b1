"""Publishing views for analysts, without ever blocking the processor, signed so readers can trust them.

DuckDB lets one process hold a database file for writing, so analysts never open a processor's
file. Instead the processor exports its views as Parquet under ``<home>/views/<processor>/<view>/``:

- append-mode views: each publish writes only the rows committed since the last one (by the ``_batch``
  column the runner fills), as a new ``part-<first>-<last>-<run>.parquet`` holding batches first..last
  (written to a temporary name, then renamed: readers never see half a file);
- snapshot-mode views: the whole view, as a new ``snapshot-<n>-<run>.parquet``, only when a batch wrote
  the view since its last snapshot (``changed``, from ``Runner.written``).

``<run>`` is a token of this publisher, so a restarted processor never rewrites a name a reader may be
reading. Its first publish re-exports every view whole from the state file (the processor's truth),
so files left by an earlier run, or rewritten by someone else, are replaced, never re-signed.

Compaction keeps each append-mode view at most ``limits.MAX_VIEW_PARTS`` parts. After each publish
the newest parts are merged while an older one holds at most ``COMPACT_RATIO`` times the rows of all
newer ones (a binary counter: part sizes fall geometrically, so a view of n rows has about log2(n)
parts and each row is rewritten about log2(n) times). A merge re-exports the batch range from the state
file, never from the published files (a forged part is replaced, not copied), on a second connection in
a worker thread, so publishing goes on meanwhile; the next publish swaps the merged part in for the parts
it covers. Only if a view would still exceed the limit does a publish wait for, or run, a merge itself.

After the files, each publish writes ``_manifest.json`` (``ledger.integrity.manifest``): the SHA-256
and size of every file, computed as the file was written (so no publish re-reads earlier files), the
input positions and batch, signed with the processor's key; the state digest only when the caller
passes one computed at this very batch (publishing never waits for a digest: ``serve`` publishes, then
digests, then re-signs the manifest with the digest, which writes no file). Files no longer listed
(old snapshots, merged parts, an earlier run's files) are removed only after the new manifest is in
place. ``_state.json`` records the same positions, batch and digest unsigned, for status displays.

``tokenledger query``, ``report`` and ``budget check`` read only what a valid manifest lists
(``ledger.sdk.published``); plain DuckDB can read ``read_parquet('<dir>/<view>/*.parquet')`` unchecked
(it may then see a merged part and the parts it replaces, for the moment between the manifest and the
removal).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.integrity import manifest as mf
from ledger.integrity.keys import SigningKey
from ledger.sdk.published import MANIFEST_FILE
from processors.runtime.processor import Processor, View
from processors.runtime.store import QUARANTINE, Exporter, Store

REJECTIONS = View(name="rejections", doc="Records that failed verification (the journal's quarantine).",
                  columns=QUARANTINE.columns)
HASH_CHUNK_BYTES = 1 << 20  # one read while hashing a file just written
PUBLISH_INTERVAL_S = 0.25  # a busy processor publishes at most this often (an idle one as soon as it is idle)
# publishing may take at most 1/(1 + PUBLISH_DUTY_FACTOR) of the loop: the next publish waits this many times
# the last one's duration (wall clock paces publishing only; it never changes state)
PUBLISH_DUTY_FACTOR = 4.0
COMPACT_RATIO = 2  # merge the newest parts while an older part holds at most this many times their rows
ANY_TABLE = "*"  # in ``changed``: a batch ran SQL statements, which may have written any table


def published_views(processor: Processor) -> list[tuple[View, str]]:
    """(view, table it is read from) for everything the processor publishes."""
    out = [(v, v.name) for v in processor.views]
    if processor.publishes_rejections:
        out.append((REJECTIONS, "quarantine"))
    return out


@dataclass(frozen=True)
class Part:
    """One part file of an append-mode view: batches ``first``..``last`` (inclusive), ``rows`` rows."""

    file: mf.ManifestFile
    first: int
    last: int
    rows: int


def plan_merge(rows: list[int], max_parts: int) -> tuple[int, int] | None:
    """Which parts to merge (a slice ``[start, stop)`` of the view's parts, oldest first, given their row
    counts), or None. The newest parts while an older one holds at most ``COMPACT_RATIO`` times their rows
    (so sizes fall geometrically from oldest to newest); else, above ``max_parts``, the adjacent pair with
    the fewest rows together."""
    n = len(rows)
    if n < 2:
        return None
    start, acc = n - 1, rows[-1]
    while start > 0 and rows[start - 1] <= COMPACT_RATIO * acc:
        start -= 1
        acc += rows[start]
    if start < n - 1:
        return start, n
    if n > max_parts:
        i = min(range(n - 1), key=lambda k: rows[k] + rows[k + 1])
        return i, i + 2
    return None


@dataclass(frozen=True)
class _Merge:
    view: str
    replaces: tuple[str, ...]  # paths of the parts the merged one covers
    part: Part


class Publisher:
    def __init__(self, store: Store, processor: Processor, out_dir: Path, *, key: SigningKey,
                 min_interval_s: float = PUBLISH_INTERVAL_S, max_parts: int = limits.MAX_VIEW_PARTS,
                 label: str | None = None) -> None:
        self.store = store
        self.processor = processor
        # the name in the manifest and _state.json: the processor's, or ``<name>.shard-I-of-N`` for a shard, whose
        # manifest is then checked against signer ``processor.<name>.shard-I-of-N`` (processors.runtime.shards)
        self.label = label or processor.name
        self.out = out_dir
        self.key = key
        self.min_interval_s = min_interval_s
        self.max_parts = max(2, max_parts)
        self._last = 0.0  # monotonic end of the last publish
        self._took = 0.0  # how long it took
        self._run = secrets.token_hex(4)  # this publisher's file names never collide with an earlier run's
        self._snapshots = 0
        self._files: dict[str, mf.ManifestFile] = {}  # path under out -> what this publisher wrote there
        self._parts: dict[str, list[Part]] = {}  # append-mode view -> its parts, oldest first
        self._view_batch: dict[str, int] = {}  # view -> the batch its published files reflect
        self._batch = -1  # the batch the current manifest reflects
        self._digest: str | None = None  # the digest the current manifest carries
        self._started = False
        self._pool: ThreadPoolExecutor | None = None
        self._exporter: Exporter | None = None
        self._merging: Future[list[_Merge]] | None = None
        self._merge_targets: set[str] = set()  # paths the merge in flight writes

    def due(self, idle: bool = False) -> bool:
        """Whether to publish now: an idle processor as soon as the last publish's duty gap has passed, a busy
        one (catching up, or under load) every ``min_interval_s`` at most, so views stay fresh either way."""
        gap = time.monotonic() - self._last
        wait = PUBLISH_DUTY_FACTOR * self._took
        return gap >= (wait if idle else max(self.min_interval_s, wait))

    def publish(self, positions: dict[tuple[str, int], int], batch_no: int, *,
                digest: dict[str, Any] | None = None, changed: Mapping[str, int] | None = None) -> bool:
        """Publish what was committed up to ``batch_no`` (positions: where the input stands after it).
        ``digest``: the state digest at exactly this batch, to sign with it. ``changed``: table -> the last
        batch that wrote it (None: unknown, every snapshot view is re-exported). Returns whether a new
        manifest was written (False: nothing new since the last one)."""
        started = time.monotonic()
        digest_text = None if digest is None else str(digest["digest"])
        merged = self._collect_merges(wait=False)
        if self._started and batch_no == self._batch and not merged and (digest_text is None
                                                                           or digest_text == self._digest):
            return False
        self.out.mkdir(parents=True, exist_ok=True)
        first = not self._started
        names = [v.name for v, _ in published_views(self.processor)]
        pos = {f"{t}/{p}": o for (t, p), o in sorted(positions.items())}
        if first and not (self.out / MANIFEST_FILE).exists():
            # a reader takes view files without a signed manifest for tampering: the very first manifest (listing no
            # file yet, at the positions before anything was published) is in place before the first file is
            # written, so a reader during this first publish sees empty views, never an integrity error
            empty = mf.ViewManifest(processor=self.label, signer_id=self.key.signer_id, key_id=self.key.key_id,
                                    batch=batch_no, positions=tuple(sorted(pos.items())), digest=None,
                                    views=tuple(names), files=())
            _write_atomically(self.out / MANIFEST_FILE, mf.sign(empty, self.key))
        for view, table in published_views(self.processor):
            (self.out / view.name).mkdir(exist_ok=True)
            source = view if table == view.name else QUARANTINE
            if view.mode == "snapshot":
                if first or _changed_since(changed, table, self._view_batch.get(view.name, -1), batch_no):
                    self._export_snapshot(view, source)
            else:
                self._export_new_rows(view, source, table, batch_no, first=first)
            self._view_batch[view.name] = batch_no
        self._compact()
        state = {"processor": self.label, "batch": batch_no, "published_at": time.time(),
                 "positions": pos, "views": names}
        if digest is not None:
            state["digest"] = digest
        _write_atomically(self.out / "_state.json", (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())
        m = mf.ViewManifest(processor=self.label, signer_id=self.key.signer_id, key_id=self.key.key_id,
                            batch=batch_no, positions=tuple(sorted(pos.items())), digest=digest_text,
                            views=tuple(names), files=tuple(self._files[p] for p in sorted(self._files)))
        _write_atomically(self.out / MANIFEST_FILE, mf.sign(m, self.key))
        self._remove_unlisted()
        self._started = True
        self._batch, self._digest = batch_no, digest_text
        self._last = time.monotonic()
        self._took = self._last - started
        return True

    def parts(self, view: str) -> list[Part]:
        """The parts the current manifest lists for append-mode ``view``, oldest first."""
        return list(self._parts.get(view, ()))

    def close(self) -> None:
        """Wait for a merge in flight (its files stay unlisted until a publish swaps them in) and stop the
        worker; the store may be closed after this."""
        if self._merging is not None:
            self._merging.exception()  # its result is dropped with this publisher; a failure has nowhere to go
            self._merging = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._exporter is not None:
            self._exporter.close()
            self._exporter = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ exports

    def _export_snapshot(self, view: View, source: View) -> None:
        for old in [p for p in self._files if p.startswith(f"{view.name}/")]:
            del self._files[old]  # the new snapshot replaces it (removed once the manifest moved on)
        self._snapshots += 1
        path = f"{view.name}/snapshot-{self._snapshots:012d}-{self._run}.parquet"
        self.store.export(source, self.out / path)
        self._files[path] = _listed(self.out, path)

    def _export_new_rows(self, view: View, source: View, table: str, batch_no: int, *, first: bool) -> None:
        # first publish: the whole view from the state file, one part: earlier files are not ours to vouch for
        last = -1 if first else self._view_batch.get(view.name, -1)
        if batch_no <= last:
            return
        rows_of = self.store.visible(table)  # a shard's hidden rows are not its to publish (processors.runtime.shards)
        count_sql = f"SELECT count(*) FROM {rows_of} WHERE _batch > ? AND _batch <= ?"  # noqa: S608  (names from code)
        rows = int(self.store.query(count_sql, (last, batch_no))[0][0])
        if not rows and not first:
            return  # nothing new: no empty part file (the first one is written even empty: it carries the schema)
        part = _export_part(self.store, self.out, view, source, last + 1, batch_no, rows, self._run)
        self._files[part.file.path] = part.file
        self._parts.setdefault(view.name, []).append(part)

    # ------------------------------------------------------------ compaction

    def _compact(self) -> None:
        """Start merges in the worker (one batch of merges in flight at a time); if a view is above
        ``max_parts`` all the same (merges could not keep up), finish merging here before signing."""
        for name, parts in self._parts.items():
            while len(parts) > self.max_parts:
                if self._merging is not None:
                    self._collect_merges(wait=True)
                    parts = self._parts[name]
                    continue
                plan = plan_merge([p.rows for p in parts], self.max_parts)
                assert plan is not None  # above max_parts there is always a pair to merge
                self._apply(_run_merges(self.store, self.out, self._run, [self._job(name, *plan)]))
                parts = self._parts[name]
        if self._merging is None:
            jobs = []
            for name, parts in self._parts.items():
                plan = plan_merge([p.rows for p in parts], self.max_parts)
                if plan is not None:
                    jobs.append(self._job(name, *plan))
            if jobs:
                if self._pool is None or self._exporter is None:
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"compact-{self.processor.name}")
                    self._exporter = self.store.exporter()
                self._merge_targets = {_part_path(v.name, ps[0].first, ps[-1].last, self._run) for v, _, ps in jobs}
                self._merging = self._pool.submit(_run_merges, self._exporter, self.out, self._run, jobs)

    def _job(self, name: str, start: int, stop: int) -> tuple[View, View, tuple[Part, ...]]:
        view, table = next((v, t) for v, t in published_views(self.processor) if v.name == name)
        return view, (view if table == view.name else QUARANTINE), tuple(self._parts[name][start:stop])

    def _collect_merges(self, *, wait: bool) -> bool:
        """Swap in the parts a finished merge wrote (a merge's failure is raised here, as a publish's)."""
        if self._merging is None or not (wait or self._merging.done()):
            return False
        fut, self._merging = self._merging, None
        self._merge_targets = set()
        self._apply(fut.result())
        return True

    def _apply(self, merges: list[_Merge]) -> None:
        for m in merges:
            parts = self._parts[m.view]
            idx = [i for i, p in enumerate(parts) if p.file.path in m.replaces]
            # the merged parts are contiguous and still listed: only merges remove parts, one batch at a time
            assert len(idx) == len(m.replaces) and idx == list(range(idx[0], idx[0] + len(idx)))
            parts[idx[0]:idx[-1] + 1] = [m.part]
            for p in m.replaces:
                del self._files[p]
            self._files[m.part.file.path] = m.part.file

    def _remove_unlisted(self) -> None:
        """Parquet files the manifest does not list (replaced snapshots, merged parts, an earlier run's files):
        gone, after the manifest that no longer names them is in place, so a reader of the previous one
        retries. The files of a merge in flight are not listed yet: they are left alone."""
        for view, _ in published_views(self.processor):
            for p in (self.out / view.name).glob("*.parquet*"):
                path = f"{view.name}/{p.name}"
                if path not in self._files and path.removesuffix(".tmp") not in self._merge_targets:
                    p.unlink(missing_ok=True)


def _changed_since(changed: Mapping[str, int] | None, table: str, since: int, batch_no: int) -> bool:
    if batch_no <= since:
        return False
    if changed is None:
        return True
    return max(changed.get(table, -1), changed.get(ANY_TABLE, -1)) > since


def _export_part(store: Store | Exporter, out: Path, view: View, source: View, first: int, last: int, rows: int,
                 run: str) -> Part:
    path = _part_path(view.name, first, last, run)
    store.export(source, out / path, where=f"WHERE _batch >= {first} AND _batch <= {last}")
    return Part(_listed(out, path), first, last, rows)


def _part_path(view: str, first: int, last: int, run: str) -> str:
    return f"{view}/part-{first:012d}-{last:012d}-{run}.parquet"


def _run_merges(store: Store | Exporter, out: Path, run: str,
                jobs: list[tuple[View, View, tuple[Part, ...]]]) -> list[_Merge]:
    """Each job's parts re-exported from the state file as one part (their batches are committed and an
    append-mode view never changes a committed row, so the range reads the same on any connection)."""
    done = []
    for view, source, parts in jobs:
        part = _export_part(store, out, view, source, parts[0].first, parts[-1].last, sum(p.rows for p in parts), run)
        done.append(_Merge(view.name, tuple(p.file.path for p in parts), part))
    return done


def _listed(out: Path, path: str) -> mf.ManifestFile:
    # hashed right after this process wrote it: the manifest vouches only for bytes it produced
    target = out / path
    return mf.ManifestFile(path, _sha256(target), target.stat().st_size)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_state(out_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((out_dir / "_state.json").read_text())
        return state
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def parse_positions(state: dict[str, Any]) -> dict[tuple[str, int], int]:
    out = {}
    for k, v in state.get("positions", {}).items():
        topic, _, part = k.rpartition("/")
        out[(topic, int(part))] = int(v)
    return out
