"""The event-id index of the notary's leaves: event id -> (topic, partition, leaf index, log offset), in a SQLite file
of the home (``<home>/state/leaf-index.sqlite``), so ``prove`` finds an event's leaf in O(log n) instead of scanning
every leaf of the notary's view (at ten million leaves a scan of the ``event_id`` column costs about half a second).
Why not an index inside the notary's DuckDB file: DuckDB's ART index lives in memory, inside the processor's memory
limit — two million ids already outgrew 64 MB — where a SQLite B-tree stays on disk behind a bounded page cache.

A cache, never trusted, kept by the provers and not by the notary (whose loop stays as it is):

- ``catch_up`` copies the leaves past its high-water mark of each partition from the notary's view, in chunks of
  ``CATCH_UP_ROWS``, each chunk one transaction (two provers at once: each re-reads the mark inside its transaction;
  ids are inserted ``OR IGNORE``, so the first leaf of an id wins, as in the view's own order);
- ``find`` answers from it; the caller checks every answer against the log (the record at the offset must hold the
  event) and the proof built on it is verified in full, so a wrong answer (a stale file, two ids sharing their first
  64 bits) costs a scan of the view, never a wrong proof.

Keyed by the first 64 bits of the id (a SQLite rowid): ~40 bytes per event on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

LEAF_INDEX_FILE = "leaf-index.sqlite"
CATCH_UP_ROWS = 100_000  # leaves copied from the notary's view per query and transaction while catching up
PAGE_CACHE_KIB = 16_384  # SQLite page cache of the index, KiB (its B-tree pages stay on disk beyond it)
BUSY_TIMEOUT_S = 30  # another prover catching up holds the write lock at most one chunk at a time

Location = tuple[str, int, int, int]  # topic, partition, leaf index, log offset
LeafQuery = Callable[..., list[tuple[Any, ...]]]


def _prefix(event_id: str) -> int | None:
    """The first 64 bits of a hex event id as a signed 64-bit integer (a SQLite rowid); None for a malformed id."""
    try:
        v = int(event_id[:16], 16)
    except ValueError:
        return None
    if len(event_id) < 16:
        return None
    return v - (1 << 64) if v >= 1 << 63 else v


class LeafIndex:
    """The index file (created on first use). Not thread-safe: one per prover."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a cache: a lost tail is caught up again
        self.db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        self.db.execute("CREATE TABLE IF NOT EXISTS leaf_ids (prefix INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
                        " log_partition INTEGER NOT NULL, leaf_index INTEGER NOT NULL, log_offset INTEGER NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS marks (topic TEXT NOT NULL, log_partition INTEGER NOT NULL,"
                        " next_leaf INTEGER NOT NULL, PRIMARY KEY (topic, log_partition))")

    def catch_up(self, query: LeafQuery, partitions: Iterable[tuple[str, int]]) -> int:
        """Copy the leaves of ``partitions`` the index does not hold yet from the notary's view (``query(sql,
        params)`` over ``merkle_leaves``); returns how many it copied."""
        copied = 0
        for topic, part in partitions:
            while True:
                mark = self._mark(topic, part)
                rows = query("SELECT event_id, leaf_index, log_offset FROM merkle_leaves WHERE topic = ? AND "
                             "log_partition = ? AND leaf_index >= ? ORDER BY leaf_index LIMIT ?",
                             [topic, part, mark, CATCH_UP_ROWS])
                if not rows:
                    break
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    if self._mark(topic, part) == mark:  # else another prover copied this chunk meanwhile
                        self.db.executemany(
                            "INSERT OR IGNORE INTO leaf_ids VALUES (?, ?, ?, ?, ?)",
                            [(p, topic, part, int(leaf), int(off)) for eid, leaf, off in rows
                             if (p := _prefix(str(eid))) is not None])
                        self.db.execute("INSERT OR REPLACE INTO marks VALUES (?, ?, ?)",
                                        (topic, part, int(rows[-1][1]) + 1))
                        copied += len(rows)
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                if len(rows) < CATCH_UP_ROWS:
                    break
        return copied

    def _mark(self, topic: str, part: int) -> int:
        row = self.db.execute("SELECT next_leaf FROM marks WHERE topic = ? AND log_partition = ?",
                              (topic, part)).fetchone()
        return int(row[0]) if row else 0

    def find(self, event_ids: Sequence[str]) -> dict[str, Location]:
        """Where the index says each id's leaf is (ids it does not know are left out): to be checked by the caller."""
        out: dict[str, Location] = {}
        for eid in event_ids:
            p = _prefix(eid)
            if p is None:
                continue
            row = self.db.execute("SELECT topic, log_partition, leaf_index, log_offset FROM leaf_ids WHERE prefix = ?",
                                  (p,)).fetchone()
            if row is not None:
                out[eid] = (str(row[0]), int(row[1]), int(row[2]), int(row[3]))
        return out

    def close(self) -> None:
        self.db.close()
