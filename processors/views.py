"""The analyst side of DuckDB: SQL over the views the processors published, never their state files.

Every reader of published views in ``processors`` comes here (``tokenledger query``, the report, the
demo, ``reprice``, the proofs): ``views_sql`` is the one definition of "a view over its Parquet
parts", ``connect_views`` an in-memory DuckDB with every view defined, ``query`` and ``read_view``
the two ways to ask it. ``connect``, ``attach`` and ``create_parquet_view`` serve the use cases that
compare a side file with the live views (``reprice``) or fall back to Parquet when a processor holds
its file (proofs).

Invariants
    * A view whose processor has not published yet is an empty view with the right columns, so a
      query never fails because a processor has not run.
    * Reads only: never writes a view or a state file (``attach`` is read-only); the one file it writes
      is ``<home>/views/views.sql`` for plain DuckDB (``write_views_sql``).

What it must never do: open a processor's state file for writing, or decide how paths are laid out
(``ledger.sdk.home.HomeLayout`` does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ledger.errors import ValidationError
from ledger.sdk.home import HomeLayout
from processors import REGISTRY
from processors.runtime.processor import View
from processors.runtime.publish import published_views

Connection = duckdb.DuckDBPyConnection


@dataclass(frozen=True)
class PublishedView:
    """A view some processor owns, where its Parquet parts live, and whether it has published any."""

    view: View
    processor: str
    directory: Path
    published: bool


@dataclass(frozen=True)
class Table:
    """A query's answer: column names and rows, in the order DuckDB returned them."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


def sql_literal(text: str | Path) -> str:
    """``text`` as the body of a single-quoted SQL string (paths with quotes stay one literal)."""
    return str(text).replace("'", "''")


def catalog(home: HomeLayout) -> list[PublishedView]:
    """Every view every processor owns, sorted by processor, with its directory and whether it is published."""
    out = []
    for name in sorted(REGISTRY):
        for view, _ in published_views(REGISTRY[name]()):
            d = home.view_dir(name, view.name)
            out.append(PublishedView(view, name, d, d.exists() and any(d.glob("*.parquet"))))
    return out


def views_sql(home: HomeLayout) -> str:
    """CREATE VIEW statements over the published files, for plain DuckDB (`duckdb -init views.sql`).
    A view not published yet (its processor has not run) is an empty view with the right columns."""
    lines = []
    for v in catalog(home):
        if v.published:
            glob = sql_literal(v.directory / "*.parquet")
            # view names come from the processors' code, the path is escaped: no outside text is spliced in
            lines.append(f"CREATE OR REPLACE VIEW {v.view.name} AS SELECT * FROM read_parquet('{glob}', "  # noqa: S608
                         "union_by_name = true);")
        else:
            cols = ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in v.view.columns
                             if not c.name.startswith("_"))
            lines.append(f"CREATE OR REPLACE VIEW {v.view.name} AS SELECT {cols} WHERE false;")
    return "\n".join(lines) + "\n"


def write_views_sql(home: HomeLayout) -> Path:
    """Write ``views_sql`` to the home's ``views/views.sql`` (for `duckdb -init`) and return its path."""
    home.views_root.mkdir(exist_ok=True)
    home.views_sql_file.write_text(views_sql(home))
    return home.views_sql_file


@contextlib.contextmanager
def connect() -> Iterator[Connection]:
    """A private in-memory DuckDB, closed on exit."""
    con = duckdb.connect()
    try:
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def connect_views(home: HomeLayout) -> Iterator[Connection]:
    """An in-memory DuckDB with every published view defined (``views_sql``), closed on exit."""
    with connect() as con:
        for stmt in views_sql(home).strip().splitlines():
            con.execute(stmt)
        yield con


def run(con: Connection, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> Table:
    """``sql`` on ``con`` as a ``Table`` (no columns and no rows for a statement that returns none)."""
    cur = con.execute(sql, params)
    cols = tuple(d[0] for d in cur.description) if cur.description else ()
    return Table(cols, tuple(tuple(r) for r in cur.fetchall()) if cols else ())


def query(home: HomeLayout, sql: str) -> Table:
    """An analyst's SQL over the published views; bad SQL is a ``ValidationError`` naming it.

    The connection may read the published views' directory and nothing else: analysts' SQL is outside
    text, and DuckDB would otherwise read any file (``read_csv('/etc/passwd')``), write one (``COPY ... TO``)
    or attach another database with the user's rights. The setting is locked so the SQL cannot lift it."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValidationError("sql", sql, "must be a SQL statement",
                              hint='list the views with: tokenledger query "SHOW TABLES"')
    with connect_views(home) as con:
        con.execute(f"SET allowed_directories=['{sql_literal(home.views_root)}/']")
        con.execute("SET enable_external_access=false")
        con.execute("SET lock_configuration=true")
        try:
            return run(con, sql)
        except duckdb.Error as e:
            raise ValidationError("sql", sql, str(e).splitlines()[0],
                                  hint='list the views with: tokenledger query "SHOW TABLES"') from None


def read_view(home: HomeLayout, view: str) -> list[dict[str, Any]]:
    """Every row of one published view (by its name, as in ``SHOW TABLES``), as dicts; [] if unpublished."""
    if view not in {v.view.name for v in catalog(home)}:
        raise ValidationError("view", view, "is not a view any processor publishes")
    with connect_views(home) as con:
        return run(con, f"SELECT * FROM {view}").records()  # noqa: S608 (checked against the catalog above)


def attach(con: Connection, path: Path, alias: str) -> bool:
    """Attach the DuckDB file at ``path`` read-only as ``alias``; False when a running processor holds
    it (DuckDB lets one process hold a file for writing), so the caller can read what it published."""
    try:
        con.execute(f"ATTACH '{sql_literal(path)}' AS {alias} (READ_ONLY)")
    except duckdb.Error:
        return False
    return True


def create_parquet_view(con: Connection, name: str, directory: Path, *, union_by_name: bool = True) -> None:
    """Define view ``name`` (may be schema-qualified) over the Parquet parts in ``directory``."""
    options = ", union_by_name = true" if union_by_name else ""
    glob = sql_literal(directory / "*.parquet")
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{glob}'{options})")  # noqa: S608 (callers' names)


__all__ = ["Connection", "PublishedView", "Table", "attach", "catalog", "connect", "connect_views",
           "create_parquet_view", "query", "read_view", "run", "views_sql", "write_views_sql"]
