"""The embedded log: an append-only SQLite file in WAL mode (the zero-set-up default).

Layout: ``topics(name, partitions)`` and ``records(topic, partition, offset, key, value, ts_ms,
append_time_us)`` with primary key (topic, partition, offset); the next offset of a partition is max(offset) + 1.
An append is one ``BEGIN IMMEDIATE`` transaction that reads the next offset and inserts the records: several
processes may append at once (SQLite serialises writers) and read at once (WAL readers never block the writer).
``synchronous=FULL`` makes every acknowledged append survive a crash of the process or the machine; a writer killed
mid-transaction leaves nothing behind (the transaction never committed).

Append time: one clock for the whole file (``log_clock``), read and advanced inside the append's write
transaction, so no other writer (thread or process) can append between reading it and inserting. Every
record gets ``max(wall clock, previous record's append time + 1)`` over the whole file, in append order:
append times are strictly increasing across all topics and partitions, so they ARE the log's total
order (``total_order = True``). Processors read the log in that order (``clock_us`` tells them how far
it reaches), which is what makes control events apply to exactly the data appended after them, live or
in a replay, whatever the writers' clocks do. ``ts_ms`` is kept (= append time in
ms) so a file stays readable by older versions.

Migration: a file written before ``append_time_us`` existed gets the column on open (one write
transaction; concurrent openers re-check inside it). Old rows are filled deterministically from what
they stored: the running maximum of ``ts_ms`` * 1000 along each partition in offset order (their old
wall-clock stamp, made non-decreasing), so every reader of a migrated file sees the same values and the
per-partition order holds across the old/new boundary (new appends continue from the last value).
An older version can still read a migrated file but cannot append to it (its 6-value INSERT fails
loudly; it never writes a record without an append time).

No ledger semantics here: records are opaque bytes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

from ledger.errors import LogError, ValidationError
from ledger.limits import MAX_PARTITIONS
from ledger.log.base import Position, Record, check_records, next_append_time_us, partition_for

BUSY_TIMEOUT_MS = 30_000  # how long an append waits for another process's write transaction
POLL_MIN_S = 0.001  # tailing: first sleep between polls
POLL_MAX_S = 0.05  # tailing: longest sleep between polls

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key BLOB, value BLOB NOT NULL, ts_ms INTEGER NOT NULL, append_time_us INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_clock (id INTEGER PRIMARY KEY CHECK (id = 0), last_us INTEGER NOT NULL);
"""
_INSERT = ("INSERT INTO records (topic, partition, offset, key, value, ts_ms, append_time_us) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)")  # columns named: a migrated file has append_time_us last, like a new one
MIGRATE_CHUNK_ROWS = 10_000  # old rows updated per statement batch while adding append_time_us


class SqliteLog:
    """A durable log in one SQLite file. Safe to share between threads of one process."""

    total_order = True  # append times strictly increase over the whole file (see the module doc)
    records_per_append = 1  # an append is one local transaction: nothing to gain from more

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValidationError("synchronous", synchronous, "must be FULL or NORMAL")
        self.path = Path(path)
        self.url = f"sqlite://{self.path.resolve()}"
        if not self.path.parent.exists():
            raise LogError("log directory does not exist", path=str(self.path.parent),
                           hint="run `tokenledger init` first, or pass --home to an existing ledger home")
        self._lock = threading.RLock()
        self._partitions: dict[str, int] = {}
        try:
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db.executescript(_SCHEMA)
            self._migrate()
            self._seed_clock()
        except sqlite3.Error as e:
            raise LogError(f"cannot open the embedded log: {e}", path=str(self.path)) from None
        # owner-only where we may set it; a file another user created keeps its mode (its owner chose it)
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)

    # -- topics

    def ensure_topic(self, topic: str, partitions: int = 1) -> int:
        if not isinstance(partitions, int) or not 1 <= partitions <= MAX_PARTITIONS:
            raise ValidationError("partitions", partitions, f"must be between 1 and {MAX_PARTITIONS}")
        with self._lock, self._tx():
            row = self._db.execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
            if row:
                n = int(row[0])
            else:
                self._db.execute("INSERT INTO topics VALUES (?, ?)", (topic, partitions))
                n = partitions
        self._partitions[topic] = n
        return n

    def topics(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM topics ORDER BY name")]

    def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            with self._lock:
                row = self._db.execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
            if row is None:
                raise LogError("topic does not exist", topic=topic,
                               hint="create it with ensure_topic / `tokenledger init`")
            n = self._partitions[topic] = int(row[0])
        return n

    # -- write

    def append(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Position]:
        if not records:
            return []
        n = self.partitions(topic)
        check_records(topic, records)
        by_part: dict[int, list[int]] = {}
        for i, (key, _) in enumerate(records):
            by_part.setdefault(partition_for(key, n), []).append(i)
        out: list[Position | None] = [None] * len(records)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    rows = []
                    # inside the write transaction: nobody appends between reading the clock and the insert
                    t_us = next_append_time_us(self._clock() + 1)
                    next_off = {p: self._head(topic, p)[0] for p in by_part}
                    for i, (key, value) in enumerate(records):
                        p = partition_for(key, n)
                        rows.append((topic, p, next_off[p], key, value, t_us // 1000, t_us))
                        out[i] = Position(p, next_off[p], t_us)
                        next_off[p] += 1
                        t_us += 1  # one distinct time per record: the file's total order
                    self._db.execute("INSERT OR REPLACE INTO log_clock VALUES (0, ?)", (t_us - 1,))
                    self._db.executemany(_INSERT, rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise LogError(f"append failed: {e}", topic=topic, path=str(self.path)) from None
        return out  # type: ignore[return-value]

    # -- read

    def read(self, topic: str, partition: int, offset: int, max_records: int = 1000,
             timeout_s: float = 0.0) -> list[Record]:
        self._check_partition(topic, partition)
        deadline = time.monotonic() + timeout_s
        sleep = POLL_MIN_S
        while True:
            with self._lock:
                try:
                    rows = self._db.execute(
                        "SELECT offset, key, value, append_time_us FROM records WHERE topic=? AND partition=? "
                        "AND offset>=? ORDER BY offset LIMIT ?", (topic, partition, offset, max_records)).fetchall()
                except sqlite3.Error as e:
                    raise LogError(f"read failed: {e}", topic=topic, partition=partition, offset=offset) from None
            if rows or time.monotonic() >= deadline:
                return [Record(topic, partition, o, k, v, t) for o, k, v, t in rows]
            time.sleep(min(sleep, max(0.0, deadline - time.monotonic())))
            sleep = min(sleep * 2, POLL_MAX_S)

    def read_key(self, topic: str, key: bytes, after_offset: int = -1, max_records: int = 1000) -> list[Record]:
        """Records of one key after an offset (used to reconcile an emitter's chain head)."""
        p = partition_for(key, self.partitions(topic))
        with self._lock:
            rows = self._db.execute(
                "SELECT offset, key, value, append_time_us FROM records WHERE topic=? AND partition=? AND offset>? "
                "AND key=? "
                "ORDER BY offset LIMIT ?", (topic, p, after_offset, key, max_records)).fetchall()
        return [Record(topic, p, o, k, v, t) for o, k, v, t in rows]

    def end_offset(self, topic: str, partition: int) -> int:
        self._check_partition(topic, partition)
        with self._lock:
            return self._next_offset(topic, partition)

    def _next_offset(self, topic: str, partition: int) -> int:
        # the primary key index answers max(offset) in O(log n); no separate head row to rewrite
        row = self._db.execute("SELECT max(offset) FROM records WHERE topic=? AND partition=?",
                               (topic, partition)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def clock_us(self) -> int:
        """The largest append time given so far: every record appended after this call gets a larger one."""
        with self._lock:
            try:
                return self._clock()
            except sqlite3.Error as e:
                raise LogError(f"read failed: {e}", path=str(self.path)) from None

    def _seed_clock(self) -> None:
        """Give a file written before the clock row existed its row, once, on open: readers then never scan
        the records to learn the clock (``clock_us`` is read on every processor poll)."""
        if self._db.execute("SELECT 1 FROM log_clock WHERE id = 0").fetchone() is not None:
            return
        with self._lock, self._tx():
            self._db.execute("INSERT OR IGNORE INTO log_clock VALUES (0, ?)", (self._clock(),))

    def _clock(self) -> int:
        row = self._db.execute("SELECT last_us FROM log_clock WHERE id = 0").fetchone()
        if row is not None:
            return int(row[0])
        # a file written before the clock row existed: its largest append time (a one-time scan)
        row = self._db.execute("SELECT max(append_time_us) FROM records").fetchone()
        return 0 if row[0] is None else int(row[0])

    def _head(self, topic: str, partition: int) -> tuple[int, int]:
        """(next offset, append time of the last record or 0) of a partition, from the primary key index."""
        row = self._db.execute("SELECT offset, append_time_us FROM records WHERE topic=? AND partition=? "
                               "ORDER BY offset DESC LIMIT 1", (topic, partition)).fetchone()
        return (0, 0) if row is None else (int(row[0]) + 1, int(row[1]))

    def _migrate(self) -> None:
        """Add append_time_us to a file written before it existed (see the module doc for the fill rule)."""
        if self._has_append_time():
            return
        with self._lock, self._tx():
            if self._has_append_time():  # another process migrated it while we waited for the write lock
                return
            self._db.execute("ALTER TABLE records ADD COLUMN append_time_us INTEGER NOT NULL DEFAULT 0")
            where: tuple[str, int] | None = None
            running = 0
            after: tuple[str, int, int] = ("", -1, -1)  # keyset paging: no cursor stays open across the UPDATEs
            while chunk := self._db.execute(
                    "SELECT topic, partition, offset, ts_ms FROM records WHERE (topic, partition, offset) > (?, ?, ?) "
                    "ORDER BY topic, partition, offset LIMIT ?", (*after, MIGRATE_CHUNK_ROWS)).fetchall():
                updates = []
                for topic, part, off, ts_ms in chunk:
                    if (topic, part) != where:
                        where, running = (topic, part), 0
                    running = max(running, int(ts_ms) * 1000)
                    updates.append((running, topic, part, off))
                self._db.executemany("UPDATE records SET append_time_us=? WHERE topic=? AND partition=? AND offset=?",
                                     updates)
                after = chunk[-1][:3]

    def _has_append_time(self) -> bool:
        return any(row[1] == "append_time_us" for row in self._db.execute("PRAGMA table_info(records)"))

    def close(self) -> None:
        # closing is best effort: the connection is dropped either way
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    # -- helpers

    def _check_partition(self, topic: str, partition: int) -> None:
        n = self.partitions(topic)
        if not 0 <= partition < n:
            raise ValidationError("partition", partition, f"topic {topic} has partitions 0..{n - 1}")

    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def __enter__(self) -> SqliteLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteLog({str(self.path)!r})"


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
