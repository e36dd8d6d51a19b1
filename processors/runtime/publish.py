"""Publishing views for analysts, without ever blocking the processor, signed so readers can trust them.

DuckDB lets one process hold a database file for writing, so analysts never open a processor's
file. Instead the processor exports its views as Parquet under ``<home>/views/<processor>/<view>/``:

- append-mode views: each publish writes only the rows committed since the last one, as a new
  ``part-<batch>-<run>.parquet`` (written to a temporary name, then renamed: readers never see half a file);
- snapshot-mode views: the whole view, as a new ``snapshot-<n>-<run>.parquet`` each publish.

``<run>`` is a token of this publisher, so a restarted processor never rewrites a name a reader may be
reading. Its first publish re-exports every view whole from the state file (the processor's truth),
so files left by an earlier run, or rewritten by someone else, are replaced, never re-signed.

After the files, each publish writes ``_manifest.json`` (``ledger.integrity.manifest``): the SHA-256
and size of every file, computed as the file was written, the input positions, batch and state
digest, signed with the processor's key. Files no longer listed (old snapshots, an earlier run's
parts) are removed only after the new manifest is in place. ``_state.json`` records the same
positions, batch and digest unsigned, for status displays.

``tokenledger query``, ``report`` and ``budget check`` read only what a valid manifest lists
(``ledger.sdk.published``); plain DuckDB can read ``read_parquet('<dir>/<view>/*.parquet')`` unchecked.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from ledger.integrity import manifest as mf
from ledger.integrity.keys import SigningKey
from ledger.sdk.published import MANIFEST_FILE
from processors.runtime.processor import Processor, View
from processors.runtime.store import QUARANTINE, Store

REJECTIONS = View(name="rejections", doc="Records that failed verification (the journal's quarantine).",
                  columns=QUARANTINE.columns)
HASH_CHUNK_BYTES = 1 << 20  # one read while hashing a file just written


def published_views(processor: Processor) -> list[tuple[View, str]]:
    """(view, table it is read from) for everything the processor publishes."""
    out = [(v, v.name) for v in processor.views]
    if processor.publishes_rejections:
        out.append((REJECTIONS, "quarantine"))
    return out


class Publisher:
    def __init__(self, store: Store, processor: Processor, out_dir: Path, *, key: SigningKey,
                 min_interval_s: float = 1.0) -> None:
        self.store = store
        self.processor = processor
        self.out = out_dir
        self.key = key
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._run = secrets.token_hex(4)  # this publisher's file names never collide with an earlier run's
        self._snapshots = 0
        self._files: dict[str, mf.ManifestFile] = {}  # path under out -> what this publisher wrote there
        self._started = False

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.min_interval_s

    def publish(self, positions: dict[tuple[str, int], int], batch_no: int, *,
                digest: dict[str, Any] | None = None) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        first = not self._started
        updates = {}
        for view, table in published_views(self.processor):
            (self.out / view.name).mkdir(exist_ok=True)
            source = view if table == view.name else QUARANTINE
            if view.mode == "snapshot":
                for old in [p for p in self._files if p.startswith(f"{view.name}/")]:
                    del self._files[old]  # the new snapshot replaces it (removed once the manifest moved on)
                self._snapshots += 1
                self._export(source, f"{view.name}/snapshot-{self._snapshots:012d}-{self._run}.parquet")
                continue
            if first:
                # the whole view from the state file, one part: earlier files are not ours to vouch for
                self._export(source, f"{view.name}/part-{batch_no:012d}-{self._run}.parquet",
                             where=f"WHERE _batch <= {batch_no}")
                updates[f"published:{view.name}"] = str(batch_no)
                continue
            last = int(self.store.meta(f"published:{view.name}", "-1") or -1)
            if batch_no <= last:
                continue
            count_sql = f"SELECT count(*) FROM {table} WHERE _batch > ? AND _batch <= ?"  # noqa: S608  (a view name from code)
            if self.store.query(count_sql, (last, batch_no))[0][0]:
                self._export(source, f"{view.name}/part-{batch_no:012d}-{self._run}.parquet",
                             where=f"WHERE _batch > {last} AND _batch <= {batch_no}")
            updates[f"published:{view.name}"] = str(batch_no)  # nothing new: no empty part file
        if updates:
            with self.store.transaction():
                for k, v in updates.items():
                    self.store.set_meta(k, v)
        pos = {f"{t}/{p}": o for (t, p), o in sorted(positions.items())}
        state = {"processor": self.processor.name, "batch": batch_no, "published_at": time.time(),
                 "positions": pos, "views": [v.name for v, _ in published_views(self.processor)]}
        if digest is not None:
            state["digest"] = digest
        _write_atomically(self.out / "_state.json", (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())
        m = mf.ViewManifest(processor=self.processor.name, signer_id=self.key.signer_id, key_id=self.key.key_id,
                            batch=batch_no, positions=tuple(sorted(pos.items())),
                            digest=None if digest is None else str(digest["digest"]),
                            views=tuple(v.name for v, _ in published_views(self.processor)),
                            files=tuple(self._files[p] for p in sorted(self._files)))
        _write_atomically(self.out / MANIFEST_FILE, mf.sign(m, self.key))
        self._remove_unlisted()
        self._started = True
        self._last = time.monotonic()

    def _export(self, source: View, path: str, where: str = "") -> None:
        target = self.out / path
        self.store.export(source, target, where=where)
        # hashed right after this process wrote it: the manifest vouches only for bytes it produced
        self._files[path] = mf.ManifestFile(path, _sha256(target), target.stat().st_size)

    def _remove_unlisted(self) -> None:
        """Parquet files the manifest does not list (replaced snapshots, an earlier run's files): gone, after
        the manifest that no longer names them is in place, so a reader of the previous one retries."""
        for view, _ in published_views(self.processor):
            for p in (self.out / view.name).glob("*.parquet*"):
                if f"{view.name}/{p.name}" not in self._files:
                    p.unlink(missing_ok=True)


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
