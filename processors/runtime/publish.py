"""Publishing views for analysts, without ever blocking the processor.

DuckDB lets one process hold a database file for writing, so analysts never open a processor's
file. Instead the processor exports its views as Parquet under ``<home>/views/<processor>/<view>/``:

- append-mode views: each publish writes only the rows committed since the last one, as a new
  ``part-<batch>.parquet`` (written to a temporary name, then renamed: readers never see half a file);
- snapshot-mode views: the whole view to ``snapshot.parquet`` (atomically replaced).

``_state.json`` next to them records what the files reflect (input positions, batch, the state
digest when computed). ``tokenledger query`` and plain DuckDB read the files with
``read_parquet('<dir>/<view>/*.parquet')``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from processors.runtime.processor import Processor, View
from processors.runtime.store import QUARANTINE, Store

REJECTIONS = View(name="rejections", doc="Records that failed verification (the journal's quarantine).",
                  columns=QUARANTINE.columns)


def published_views(processor: Processor) -> list[tuple[View, str]]:
    """(view, table it is read from) for everything the processor publishes."""
    out = [(v, v.name) for v in processor.views]
    if processor.publishes_rejections:
        out.append((REJECTIONS, "quarantine"))
    return out


class Publisher:
    def __init__(self, store: Store, processor: Processor, out_dir: Path, *, min_interval_s: float = 1.0) -> None:
        self.store = store
        self.processor = processor
        self.out = out_dir
        self.min_interval_s = min_interval_s
        self._last = 0.0

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.min_interval_s

    def publish(self, positions: dict[tuple[str, int], int], batch_no: int, *,
                digest: dict[str, Any] | None = None) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        updates = {}
        for view, table in published_views(self.processor):
            d = self.out / view.name
            d.mkdir(exist_ok=True)
            source = view if table == view.name else QUARANTINE
            if view.mode == "snapshot":
                self.store.export(source, d / "snapshot.parquet")
                continue
            last = int(self.store.meta(f"published:{view.name}", "-1") or -1)
            has_part = any(d.glob("part-*.parquet"))
            count_sql = f"SELECT count(*) FROM {table} WHERE _batch > ? AND _batch <= ?"  # noqa: S608  (a view name from code)
            fresh = self.store.query(count_sql, (last, batch_no))[0][0]
            if batch_no > last and has_part and not fresh:
                updates[f"published:{view.name}"] = str(batch_no)  # nothing new: no empty part file
            elif batch_no > last or not has_part:
                self.store.export(source, d / f"part-{batch_no:012d}.parquet",
                                  where=f"WHERE _batch > {last} AND _batch <= {batch_no}")
                updates[f"published:{view.name}"] = str(batch_no)
        if updates:
            with self.store.transaction():
                for k, v in updates.items():
                    self.store.set_meta(k, v)
        state = {"processor": self.processor.name, "batch": batch_no, "published_at": time.time(),
                 "positions": {f"{t}/{p}": o for (t, p), o in sorted(positions.items())},
                 "views": [v.name for v, _ in published_views(self.processor)]}
        if digest is not None:
            state["digest"] = digest
        tmp = self.out / "_state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.out / "_state.json")
        self._last = time.monotonic()


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
