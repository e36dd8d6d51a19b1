"""The processor's DuckDB file: its views, and the runtime's own tables, written in one transaction.

Runtime tables (one set per processor file):

    _tracking(topic, partition, next_offset)   where to resume; written with the state it reflects
    _chain_heads(signer_id, seq, hash, recent)  verifier state: chain heads and each signer's window of
                                                recent event ids (16 bytes each, oldest first)
    _keys(...) / _agents(...) / _grants(...)    verifier state: the key ring built from control events
                                                (its skew window is the _meta row "clock_policy")
    _producer(signer_id, seq, hash)             chain head of the processor's own derived events
    _outbox(n, topic, key, value)               derived records committed but not yet on the log (read in
                                                chunks of MAX_OUTBOX_CHUNK_RECORDS)
    _meta(k, v)                                 batch counter, publish bookkeeping
    quarantine(...)                             records that failed verification, with their bytes

This is the only module that imports duckdb. Writes go through Arrow tables (bulk), never row by row,
and only inside ``with store.transaction():`` — the one way to write, so no caller can forget the
ROLLBACK that keeps a half-applied batch invisible.

Memory: DuckDB runs under a named memory limit (DUCKDB_MEMORY_LIMIT) and spills to a directory next to the
file (DUCKDB_TEMP_SUFFIX). Nothing here reads a whole table at once: the digest is a streaming aggregate
(no sort), and the outbox is read a bounded chunk at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ledger import limits
from ledger.errors import StoreError
from ledger.integrity.chain import Chains, Head
from ledger.integrity.keyring import KeyInfo, KeyRing
from ledger.integrity.keys import PublicKey
from processors.runtime.processor import Column, View

QUARANTINE = View(
    name="quarantine",
    doc="Records that failed verification: where they were, why, and their original bytes.",
    columns=(
        Column("topic", "VARCHAR", "topic of the record"),
        Column("log_partition", "INTEGER", "partition of the record"),
        Column("log_offset", "BIGINT", "offset of the record"),
        Column("code", "VARCHAR", "reject code (ledger.errors.RejectCode)"),
        Column("reason", "VARCHAR", "human-readable reason"),
        Column("evidence_json", "VARCHAR", "the rejection's evidence, canonical JSON"),
        Column("signer_id", "VARCHAR", "claimed signer, when the frame decoded"),
        Column("event_id", "VARCHAR", "offending event, when known"),
        Column("original", "BLOB", "the record's bytes as they were on the log"),
        Column("original_size", "BIGINT", "size of the record in bytes"),
        Column("_batch", "BIGINT", "commit batch (internal)"),
    ),
)

_INTERNAL = """
CREATE TABLE IF NOT EXISTS _tracking (topic VARCHAR, partition INTEGER, next_offset BIGINT,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS _chain_heads (signer_id VARCHAR PRIMARY KEY, seq BIGINT, hash BLOB, recent BLOB);
CREATE TABLE IF NOT EXISTS _keys (key_id VARCHAR PRIMARY KEY, owner VARCHAR, role VARCHAR, public_key BLOB,
    revoked BOOLEAN, revoked_reason VARCHAR, revoked_at_us BIGINT);
CREATE TABLE IF NOT EXISTS _agents (agent_id VARCHAR PRIMARY KEY, registration_json VARCHAR);
CREATE TABLE IF NOT EXISTS _grants (agent_id VARCHAR, capability VARCHAR, scope VARCHAR, max_age_us BIGINT,
    PRIMARY KEY (agent_id, capability, scope));
CREATE TABLE IF NOT EXISTS _producer (signer_id VARCHAR PRIMARY KEY, seq BIGINT, hash BLOB);
CREATE TABLE IF NOT EXISTS _outbox (n BIGINT PRIMARY KEY, topic VARCHAR, key BLOB, value BLOB);
CREATE TABLE IF NOT EXISTS _meta (k VARCHAR PRIMARY KEY, v VARCHAR);
"""


DUCKDB_MEMORY_LIMIT = "64MB"  # per processor; DuckDB spills to disk beyond it
# The Parquet writer holds a whole row group in memory before it writes it: at DuckDB's default (122,880 rows) one
# row group of the journal's events passes the 64 MB limit (a 100k-event view failed to publish). Row groups of at
# most this many rows, and about this many bytes, keep an export's buffer a fraction of the limit.
PARQUET_ROW_GROUP_ROWS = 16_384
PARQUET_ROW_GROUP_BYTES = "8MB"
DUCKDB_TEMP_SUFFIX = ".tmp"  # spill directory: <state file>.tmp, next to the processor's DuckDB file

# The state digest's algorithm, named inside every digest text ("<algorithm>:<hex>") so a digest signed by
# an older algorithm (plain 64 hex chars, rows sorted and concatenated) is never compared with a newer one.
DIGEST_ALGORITHM = "sha256-lanesum-v2"
DIGEST_LANE_HEX = 16  # hex chars per lane: 64-bit lanes, each summed exactly into a HUGEINT (no overflow
DIGEST_LANES = 4  # below 2**64 rows); 4 lanes cover all 256 bits of a row's SHA-256


TableSums = tuple[int, list[int]]  # a table's rows and the exact sum of each digest lane over them


def digest_from_sums(sums: Mapping[str, TableSums]) -> dict[str, Any]:
    """The state digest (``Store.digest``: algorithm, digest text, per-table rows and hash) from per-table sums."""
    tables: dict[str, dict[str, Any]] = {}
    for name in sorted(sums):
        n, lanes = sums[name]
        text = "\n".join([DIGEST_ALGORITHM, str(n), *(str(x) for x in lanes)])
        tables[name] = {"rows": n, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    canon = json.dumps(tables, sort_keys=True).encode()
    # "sums": the terms themselves, so the digests of shards can be added up (processors.runtime.shards.combine)
    return {"algorithm": DIGEST_ALGORITHM, "digest": f"{DIGEST_ALGORITHM}:{hashlib.sha256(canon).hexdigest()}",
            "tables": tables, "sums": {name: [sums[name][0], *sums[name][1]] for name in sorted(sums)}}


class Store:
    def __init__(self, path: Path | str, views: Iterable[View], *, read_only: bool = False, threads: int = 1,
                 memory_limit: str = DUCKDB_MEMORY_LIMIT, hidden: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.views = (QUARANTINE, *views)
        # table -> SQL condition of rows kept but never published nor digested (a shard's copies of the rows
        # control records made: ``processors.runtime.shards.hidden_rows``); from code, never from outside text
        self.hidden: dict[str, str] = dict(hidden or {})
        try:
            # a bounded buffer pool keeps a processor's memory flat as its tables grow
            self.con = duckdb.connect(str(self.path), read_only=read_only,
                                      config={"threads": threads, "memory_limit": memory_limit,
                                              "temp_directory": str(self.path) + DUCKDB_TEMP_SUFFIX})
        except (duckdb.IOException, duckdb.ConnectionException) as e:
            # IOException: another process holds the file; ConnectionException: this process does, opened
            # with another configuration (a read-only look at a state file a runner here has open)
            raise StoreError(f"cannot open processor state: {e}", path=str(self.path),
                             hint="is another process running this processor? (`tokenledger status`)") from None
        self._in_transaction = False
        if not read_only:
            with self.transaction():
                for stmt in _INTERNAL.strip().split(";\n"):
                    if stmt.strip():
                        self.con.execute(stmt)
                for v in self.views:
                    self.con.execute(v.ddl())
            self._check_layout()

    def _check_layout(self) -> None:
        """Refuse a state file whose tables another version of these views wrote (a column added or retyped since):
        writing into it would fail mid-batch. The state is derived from the log, so the way out is a rebuild."""
        found: dict[str, list[tuple[str, str]]] = {}
        for table, column, sql_type in self.con.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position").fetchall():
            found.setdefault(table, []).append((column, sql_type))
        for v in self.views:
            want = [(c.name, c.sql_type) for c in v.columns]
            got = found.get(v.name, [])
            if [n for n, _ in got] != [n for n, _ in want]:
                self.con.close()
                raise StoreError("processor state was written by another version of its views",
                                 path=str(self.path), table=v.name, columns=[n for n, _ in got],
                                 expected=[n for n, _ in want],
                                 hint="the state is derived from the log: stop the processor, move this file "
                                      "aside and start it again to rebuild it from offset 0")

    # ---------------------------------------------------------------- reads

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> tuple[Any, ...] | None:
        # fetch everything: DuckDB refuses new work on a connection with an unfinished result
        rows = self.con.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def meta(self, k: str, default: str | None = None) -> str | None:
        row = self._one("SELECT v FROM _meta WHERE k=?", (k,))
        return default if row is None else row[0]

    def positions(self) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in self.query("SELECT topic, partition, next_offset FROM _tracking")}

    def load_verifier(self, anchors: dict[str, bytes]) -> tuple[KeyRing, Chains]:
        ring = KeyRing(anchors)
        keys = self.query("SELECT key_id, owner, role, public_key, revoked, revoked_reason, revoked_at_us FROM _keys")
        if keys:
            from ledger.wire.events import AgentRegistered

            ring._keys = {k: KeyInfo(k, o, r, PublicKey.from_raw(bytes(pk)), bool(rv), rr or "", int(at or 0))
                          for k, o, r, pk, rv, rr, at in keys}
            for agent_id, doc in self.query("SELECT agent_id, registration_json FROM _agents"):
                d = json.loads(doc)
                d["public_key"] = bytes.fromhex(d["public_key"])
                d["attributes"] = tuple(tuple(x) for x in d["attributes"])
                ring.agents[agent_id] = AgentRegistered(**d)
        from ledger.integrity.keyring import SkewWindow
        from ledger.wire.events import Grant

        # grants and the skew window are ring state like keys: a restarted runner judges the next record by
        # the window and grants in force, exactly as one that never stopped (and as a replay)
        for a, c, sc, age in self.query("SELECT agent_id, capability, scope, max_age_us FROM _grants"):
            ring.grants[(a, c, sc)] = Grant(a, c, sc, int(age))
        skew = self.meta("clock_policy")
        if skew is not None:
            behind, ahead = (int(x) for x in skew.split(","))
            ring.skew = SkewWindow(behind, ahead)
        chains = Chains()
        from collections import OrderedDict

        for signer, seq, h, recent in self.query("SELECT signer_id, seq, hash, recent FROM _chain_heads"):
            chains.heads[signer] = Head(int(seq), bytes(h))
            blob = bytes(recent or b"")
            n = len(blob) // 16
            first = int(seq) - n + 1  # the window holds the signer's last n events, in order
            chains._recent[signer] = OrderedDict(
                (blob[i * 16:(i + 1) * 16].hex(), first + i) for i in range(n))
        return ring, chains

    def producer_head(self, signer_id: str) -> Head:
        row = self._one("SELECT seq, hash FROM _producer WHERE signer_id=?", (signer_id,))
        return Head(0, bytes(32)) if row is None else Head(int(row[0]), bytes(row[1]))

    def batch(self) -> int:
        """The number of the last committed batch (0 before the first)."""
        return int(self.meta("batch", "0") or 0)

    def outbox(self, after: int = 0, limit: int = limits.MAX_OUTBOX_CHUNK_RECORDS
               ) -> list[tuple[int, str, bytes | None, bytes]]:
        """The next ``limit`` outbox records (n, topic, key, value) numbered above ``after``, in order.

        One chunk, never the whole outbox: a batch's derived records can be tens of MB, and sorting and
        fetching them at once ran DuckDB out of memory (20,000 interactions' allocations, 64 MB limit).
        The numbers come first (a top-N of integers); the chunk's records are then fetched by range and
        ordered here, so DuckDB never sorts the records' bytes, and holds one chunk's worth at most."""
        ns = self.query("SELECT n FROM _outbox WHERE n > ? ORDER BY n LIMIT ?", (after, limit))
        if not ns:
            return []
        rows = self.query("SELECT n, topic, key, value FROM _outbox WHERE n >= ? AND n <= ?", (ns[0][0], ns[-1][0]))
        chunk = [(int(n), t, None if k is None else bytes(k), bytes(v)) for n, t, k, v in rows]
        return sorted(chunk, key=lambda r: r[0])

    # ---------------------------------------------------------------- the one write transaction

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN; the body's writes; COMMIT. Any exception in the body (``BaseException`` too: a crash
        hook, Ctrl-C) or at COMMIT rolls everything back and propagates, so nothing of a failed body is
        ever visible. A COMMIT that fails raises ``StoreError``. Transactions do not nest: DuckDB has no
        savepoints, and a nested BEGIN would silently join the outer transaction's fate."""
        if self._in_transaction:
            raise StoreError("a transaction is already open on this store", path=str(self.path),
                             hint="write a batch's effects inside its one transaction, not in a nested one")
        self.con.execute("BEGIN")
        self._in_transaction = True
        try:
            yield
            self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._in_transaction = False

    def _commit(self) -> None:
        try:
            self.con.execute("COMMIT")
        except duckdb.Error as e:
            raise StoreError(f"commit failed: {type(e).__name__}: {e}", path=str(self.path)) from e

    def _rollback(self) -> None:
        with suppress(duckdb.Error):  # DuckDB already ended a transaction whose COMMIT failed: nothing to undo
            self.con.execute("ROLLBACK")

    def _writing(self, what: str) -> None:
        # outside a transaction DuckDB would auto-commit each statement: half a batch could become visible
        if not self._in_transaction:
            raise StoreError("write outside a transaction", path=str(self.path), operation=what,
                             hint="wrap the writes in `with store.transaction():`")

    def append(self, table: str, columns: dict[str, Any], *, replace: bool = False) -> None:
        """Bulk insert one column batch (by column name; missing columns are NULL); ``replace`` turns
        rows whose primary key exists into updates."""
        self._writing(f"append {table}")
        tbl = pa.table(columns)
        self.con.register("_arrow_in", tbl)
        try:
            verb = "INSERT OR REPLACE" if replace else "INSERT"
            self.con.execute(f"{verb} INTO {table} BY NAME SELECT * FROM _arrow_in")  # noqa: S608  (a view name from code)
        finally:
            # in a transaction a failed INSERT aborted, DuckDB refuses even this: the INSERT's own error
            # (a constraint violation, say) is the one to report, and the next register replaces the view
            with suppress(duckdb.Error):
                self.con.unregister("_arrow_in")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self._writing("execute")
        self.con.execute(sql, params)

    def set_meta(self, k: str, v: str) -> None:
        self._writing(f"set_meta {k}")
        self.con.execute("INSERT OR REPLACE INTO _meta VALUES (?, ?)", (k, v))

    def save_positions(self, positions: dict[tuple[str, int], int]) -> None:
        self._writing("save_positions")
        if positions:
            self.append("_tracking", replace=True, columns={"topic": [t for t, _ in positions],
                                                 "partition": [p for _, p in positions],
                                                 "next_offset": list(positions.values())})

    def save_verifier(self, chains: Chains, touched: set[str], ring: KeyRing | None) -> None:
        self._writing("save_verifier")
        if touched:
            signers = sorted(touched)
            heads = [chains.heads[s] for s in signers]
            # event ids are 32 hex chars: stored as 16 raw bytes each, oldest first
            windows = [b"".join(bytes.fromhex(i) for i in chains._recent.get(s, {})) for s in signers]
            self.append("_chain_heads", replace=True, columns={"signer_id": signers, "seq": [h.seq for h in heads],
                                                    "hash": [h.hash for h in heads], "recent": windows})
        if ring is not None:
            self.con.execute("DELETE FROM _keys")
            keys = ring.keys()
            if keys:
                self.append("_keys", {"key_id": [k.key_id for k in keys], "owner": [k.owner for k in keys],
                                      "role": [k.role for k in keys], "public_key": [k.public.raw for k in keys],
                                      "revoked": [k.revoked for k in keys],
                                      "revoked_reason": [k.revoked_reason for k in keys],
                                      "revoked_at_us": [k.revoked_at_us for k in keys]})
            self.con.execute("DELETE FROM _agents")
            if ring.agents:
                docs = []
                for a in ring.agents.values():
                    d = {"agent_id": a.agent_id, "key_id": a.key_id, "public_key": a.public_key.hex(),
                         "role": a.role, "priority": a.priority, "org": a.org, "project": a.project,
                         "attributes": [list(x) for x in a.attributes]}
                    docs.append(json.dumps(d, sort_keys=True))
                self.append("_agents", {"agent_id": list(ring.agents), "registration_json": docs})
            self.con.execute("DELETE FROM _grants")
            if ring.grants:
                gs = [ring.grants[k] for k in sorted(ring.grants)]
                self.append("_grants", {"agent_id": [g.agent_id for g in gs], "capability": [g.capability for g in gs],
                                        "scope": [g.scope for g in gs], "max_age_us": [g.max_age_us for g in gs]})
            self.set_meta("clock_policy", f"{ring.skew.max_behind_us},{ring.skew.max_ahead_us}")

    def save_producer(self, signer_id: str, head: Head) -> None:
        self._writing("save_producer")
        self.con.execute("INSERT OR REPLACE INTO _producer VALUES (?, ?, ?)", (signer_id, head.seq, head.hash))

    def add_outbox(self, rows: list[tuple[str, bytes | None, bytes]]) -> None:
        self._writing("add_outbox")
        if not rows:
            return
        row = self._one("SELECT coalesce(max(n), 0) + 1 FROM _outbox")
        assert row is not None  # an aggregate always returns one row
        start = int(row[0])
        # in chunks as they are read back: no one Arrow table (and DuckDB scan of it) holds a batch's tens of MB
        step = limits.MAX_OUTBOX_CHUNK_RECORDS
        for i in range(0, len(rows), step):
            part = rows[i:i + step]
            self.append("_outbox", {"n": list(range(start + i, start + i + len(part))),
                                    "topic": [t for t, _, _ in part], "key": [k for _, k, _ in part],
                                    "value": [v for _, _, v in part]})

    def clear_outbox(self, upto: int) -> None:
        self._writing("clear_outbox")
        self.con.execute("DELETE FROM _outbox WHERE n <= ?", (upto,))

    # ---------------------------------------------------------------- digest

    def digest(self) -> dict[str, Any]:
        """A hash over the canonical contents of every published view (internal columns excluded).

        Algorithm ``DIGEST_ALGORITHM`` ("sha256-lanesum-v2"): per row, SHA-256 of its canonical text
        (a struct of the public columns cast to text), read as 4 big-endian 64-bit lanes; per table, the
        row count and the exact (HUGEINT, non-modular) sum of each lane over its rows, hashed as the text
        ``"<algorithm>\n<rows>\n<sum 0>\n...\n<sum 3>"``; the state digest is
        ``"<algorithm>:" + SHA-256`` of the JSON ``{view: {"rows": n, "sha256": table hash}}`` with keys in
        view-name order. A sum does not depend on the order of its terms, so the digest is independent of
        insertion order and batch boundaries, and a replay reaches the same digest.

        One streaming aggregate per table: no sort, nothing of the table held at once, so it works at any
        size under the memory limit (the v1 digest sorted and concatenated every row hash in one
        ``string_agg`` and ran out of memory near 100,000 rows). It is computed on demand, not kept up
        to date at commit: ``INSERT OR REPLACE`` upserts and a fold's raw SQL statements change rows
        without showing the store what they replaced, so an incremental sum would need the replaced
        rows read back by key on every commit — a join DuckDB answers with a whole-table scan.

        A sum of hashes is a multiset hash: it detects any accidental divergence, but unlike a sorted
        list's hash it is not built to resist someone choosing many rows to force a collision."""
        return self._digest(self.con)

    def snapshot_digest(self) -> tuple[int, dict[str, Any]]:
        """(batch number, digest) of the last committed state, on a connection of its own: safe to call from
        another thread while the runner commits (one read transaction sees one committed batch, never a
        half-applied one), so a service computes its digest without pausing its loop."""
        con = self.con.cursor()
        try:
            con.execute("BEGIN TRANSACTION")
            rows = con.execute("SELECT v FROM _meta WHERE k='batch'").fetchall()
            digest = self._digest(con)
            con.execute("COMMIT")
            return (int(rows[0][0] or 0) if rows else 0), digest
        finally:
            with suppress(duckdb.Error):
                con.close()

    def _digest(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        return digest_from_sums(self._all_sums(con))

    def table_sums(self) -> dict[str, TableSums]:
        """Per published view: (row count, exact lane sums) of its visible rows, the digest's terms
        (``digest_from_sums``); a shard's are added to the others' by ``processors.runtime.shards.combine``."""
        return self._all_sums(self.con)

    def _all_sums(self, con: duckdb.DuckDBPyConnection) -> dict[str, TableSums]:
        return {v.name: self._table_sums(con, v) for v in self.views}

    def visible(self, table: str) -> str:
        """``table`` as a FROM source without its hidden rows (``hidden``)."""
        cond = self.hidden.get(table)
        return table if cond is None else f"(SELECT * FROM {table} WHERE NOT ({cond}))"  # noqa: S608 (from code)

    def _table_sums(self, con: duckdb.DuckDBPyConnection, v: View) -> tuple[int, list[int]]:
        """(row count, exact sum of each 64-bit lane of the rows' SHA-256) of view ``v``."""
        # a struct of the public columns, cast to text, is DuckDB's canonical rendering of the row
        row = "struct_pack(" + ", ".join(f"{c} := {c}" for c in v.public_columns) + ")::VARCHAR"
        lanes = ", ".join(
            f"coalesce(sum(('0x' || substr(h, {1 + i * DIGEST_LANE_HEX}, {DIGEST_LANE_HEX}))::UBIGINT), 0)"
            for i in range(DIGEST_LANES))
        source = self.visible(v.name)  # a shard's hidden rows are another shard's to digest
        got = con.execute(f"SELECT count(*), {lanes} FROM (SELECT sha256({row}) AS h FROM {source})").fetchone()  # noqa: S608  (names from code)
        assert got is not None  # an aggregate without GROUP BY returns exactly one row
        return int(got[0]), [int(x) for x in got[1:]]

    # ---------------------------------------------------------------- publishing

    def export(self, view: View, target: Path, where: str = "") -> None:
        """Write the view's public columns (optionally filtered) to a Parquet file, atomically."""
        _export(self.con, view, target, where, self.visible(view.name))

    def exporter(self) -> Exporter:
        """A second connection to this database for exporting from another thread (the publisher's
        compactions): it reads committed rows only, so the runner's open transaction never shows."""
        return Exporter(self.con.cursor(), self.visible)

    def close(self) -> None:
        with suppress(duckdb.Error):
            self.con.close()


class Exporter:
    """Exports on its own connection (``Store.exporter``); used by one thread at a time."""

    def __init__(self, con: duckdb.DuckDBPyConnection, visible: Callable[[str], str] = str) -> None:
        self.con = con
        self.visible = visible

    def export(self, view: View, target: Path, where: str = "") -> None:
        _export(self.con, view, target, where, self.visible(view.name))

    def close(self) -> None:
        with suppress(duckdb.Error):
            self.con.close()


def _export(con: duckdb.DuckDBPyConnection, view: View, target: Path, where: str, source: str) -> None:
    cols = ", ".join(view.public_columns)
    tmp = target.with_name(target.name + ".tmp")
    # names from the view definitions, ``where`` from the publisher (batch numbers), the path quoted
    sql = (f"COPY (SELECT {cols} FROM {source} {where}) TO '{_sql_path(tmp)}' "  # noqa: S608  (see above)
           f"(FORMAT parquet, ROW_GROUP_SIZE {PARQUET_ROW_GROUP_ROWS}, "
           f"ROW_GROUP_SIZE_BYTES '{PARQUET_ROW_GROUP_BYTES}')")
    con.execute(sql)
    tmp.replace(target)


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")
