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
    * Authenticated: ``connect_views`` checks each processor's signed manifest (``ledger.sdk.published``:
      signature by the processor's key registered on the log, SHA-256 of every file) and reads private
      copies of exactly the files it lists; a forged view is a ``ViewIntegrityError``, never an answer.
      The copies are kept (``<home>/state/view-cache/``), so a call hashes and copies only what was
      published since the last one.
    * Sandboxed: the connection ``connect_views`` yields is a read-only database whose configuration is
      locked after the views are defined, with external access off except for those copies: SQL given
      to it cannot read another file (``read_csv``), write one (``COPY ... TO``), ``ATTACH`` a state
      file, load an extension, or change a setting.
    * Reads only: never writes a view or a state file (``attach`` is read-only); the one file it writes
      is ``<home>/views/views.sql`` for plain DuckDB (``write_views_sql``), whose globs are unchecked.

What it must never do: open a processor's state file for writing, or decide how paths are laid out
(``ledger.sdk.home.HomeLayout`` does).
"""

from __future__ import annotations

import contextlib
import functools
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ledger.errors import ValidationError, ViewIntegrityError
from ledger.integrity.keyring import KeyRing
from ledger.sdk.home import Home, HomeLayout
from ledger.sdk.published import (
    VerifiedViews,
    has_published,
    listed_files,
    private_cache,
    registered_keys,
    verify_published,
)
from processors import REGISTRY
from processors.runtime.view import View, view_from_json

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


@functools.lru_cache(maxsize=1)
def _definitions() -> tuple[tuple[str, View], ...]:
    """(processor, view) of every published view: processors/data/views.json, which scripts/gen_view_catalog.py
    writes from the processors' own definitions (a test keeps it equal), so no processor's code is loaded here."""
    doc = json.loads((Path(__file__).parent / "data" / "views.json").read_text())
    return tuple((name, view_from_json(v)) for name in sorted(doc) for v in doc[name])


def catalog(home: HomeLayout) -> list[PublishedView]:
    """Every view every processor owns, sorted by processor, with its directory and whether it is published (by
    the processor, or by its shards: then ``directory`` is the processor's, above the shards' directories)."""
    out = []
    for name, view in _definitions():
        d = home.view_dir(name, view.name)
        shards = [s / view.name for s in home.shard_views_dirs(name).values()]
        published = any(x.exists() and any(x.glob("*.parquet")) for x in (d, *shards))
        out.append(PublishedView(view, name, d, published))
    return out


def published_dirs(home: HomeLayout, name: str) -> dict[str, Path]:
    """Where processor ``name``'s views were published, by the label its manifest carries: ``{name: dir}`` when it
    runs as one instance, ``{"<name>.shard-I-of-N": dir, ...}`` for every shard when it runs sharded (its views are
    the union of the shards': ``processors.runtime.shards``), {} when it never published.
    ``ViewIntegrityError`` when the directories do not make one whole: shards of different counts, a shard missing,
    or both shards and the unsharded processor (a union would count rows twice or miss some)."""
    single = home.views_dir(name)
    shard_dirs = {label: d for label, d in home.shard_views_dirs(name).items() if has_published(d)}
    if not shard_dirs:
        return {name: single} if has_published(single) else {}
    counts = {int(label.rpartition("-of-")[2]) for label in shard_dirs}
    hint = (f"keep the directories of the one layout {name} runs as under {home.views_dir(name)} and move the "
            f"others away (and stop every instance of another count)")
    if len(counts) != 1:
        raise ViewIntegrityError(f"the views of {name} were published by shards of different counts",
                                 processor=name, shards=sorted(shard_dirs), hint=hint)
    (n,) = counts
    missing = [f"shard-{i}-of-{n}" for i in range(n) if f"shard-{i}-of-{n}" not in shard_dirs]
    if missing:
        raise ViewIntegrityError(f"the views of {name} are published by shards, but not by every shard",
                                 processor=name, missing=missing,
                                 hint=f"start the missing instances (`tokenledger run {name} --shard I/{n}`)")
    if has_published(single):
        raise ViewIntegrityError(f"the views of {name} were published both as one instance and as {n} shards",
                                 processor=name, hint=hint)
    return {f"{name}.{label}": d for label, d in sorted(shard_dirs.items())}


def views_sql(home: HomeLayout) -> str:
    """CREATE VIEW statements over the published files, for plain DuckDB (`duckdb -init views.sql`).
    A view not published yet (its processor has not run) is an empty view with the right columns."""
    lines = []
    for v in catalog(home):
        if v.published:
            dirs = [d / v.view.name for d in published_dirs(home, v.processor).values()]
            globs = ", ".join(f"'{sql_literal(d / '*.parquet')}'" for d in dirs)
            # view names come from the processors' code, the path is escaped: no outside text is spliced in
            lines.append(f"CREATE OR REPLACE VIEW {v.view.name} AS SELECT * FROM read_parquet([{globs}], "  # noqa: S608
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


# what a refused statement in the sandbox looks like (DuckDB has no one exception class for it)
_SANDBOX_REFUSALS = ("file system operations are disabled", "read-only mode", "configuration has been locked",
                     "disabled through configuration", "external access")
SANDBOX_REASON = ("is refused: `tokenledger query` reads only the published views (no other files, no COPY, "
                  "no ATTACH, no writes, no settings)")


def _view_statement(v: PublishedView, files: list[Path]) -> str:
    if files:
        listed = ", ".join(f"'{sql_literal(f)}'" for f in files)
        # view names come from the processors' code, paths are escaped: no outside text is spliced in
        return f"CREATE VIEW {v.view.name} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)"  # noqa: S608
    cols = ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in v.view.columns if not c.name.startswith("_"))
    return f"CREATE VIEW {v.view.name} AS SELECT {cols} WHERE false"


@contextlib.contextmanager
def connect_views(home: HomeLayout, *, log_url: str | None = None) -> Iterator[Connection]:
    """A sandboxed, read-only DuckDB with every published view defined over checked private copies of
    the files its processor's signed manifest lists (module doc), closed and removed on exit."""
    h = home if isinstance(home, Home) else Home.open(home.path)
    ring: KeyRing | None = None
    with tempfile.TemporaryDirectory(prefix="tokenledger-views-") as tmp:
        # the kept, checked copies (each file hashed once across calls); fresh copies if none can be kept
        files_root = private_cache(h) or Path(tmp) / "files"
        checked: dict[str, list[VerifiedViews]] = {}
        for name in sorted(REGISTRY):
            # one manifest, or one per shard (each signed by its shard's signer): the view is the union of their files
            for label, d in published_dirs(h, name).items():
                ring = ring or registered_keys(h, log_url)
                checked.setdefault(name, []).append(verify_published(d, label, ring, copy_to=files_root / label))
        db = Path(tmp) / "views.duckdb"
        build = duckdb.connect(str(db))
        try:
            for v in catalog(h):
                files = [f for got in checked.get(v.processor, []) for f in got.files.get(v.view.name, [])]
                build.execute(_view_statement(v, files))
        finally:
            build.close()
        con = duckdb.connect(str(db), read_only=True)
        try:
            # order matters: the allowed directory first, then external access off, then the lock (after which
            # no statement can undo either); the views were defined before, on the copies only
            con.execute("SET allowed_directories = [?]", [str(files_root) + "/"])
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            yield con
        finally:
            con.close()


def run(con: Connection, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> Table:
    """``sql`` on ``con`` as a ``Table`` (no columns and no rows for a statement that returns none)."""
    cur = con.execute(sql, params)
    cols = tuple(d[0] for d in cur.description) if cur.description else ()
    return Table(cols, tuple(tuple(r) for r in cur.fetchall()) if cols else ())


def query(home: HomeLayout, sql: str, *, log_url: str | None = None) -> Table:
    """An analyst's SQL over the published views, in the sandbox; bad SQL, or SQL that reaches for a
    file, a setting or a write, is a ``ValidationError`` naming it."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValidationError("sql", sql, "must be a SQL statement",
                              hint='list the views with: tokenledger query "SHOW TABLES"')
    with connect_views(home, log_url=log_url) as con:
        try:
            return run(con, sql)
        except duckdb.Error as e:
            first = str(e).splitlines()[0]
            if isinstance(e, duckdb.PermissionException) or any(r in first for r in _SANDBOX_REFUSALS):
                raise ValidationError("sql", sql, SANDBOX_REASON, duckdb_error=first,
                                      hint="query the views by name (SHOW TABLES lists them); to export, use "
                                           "--csv or --json and redirect the output") from None
            raise ValidationError("sql", sql, first,
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
    """Define view ``name`` (may be schema-qualified) over the Parquet parts in ``directory``: the ones its
    manifest lists when there is one (one publish, unchecked: callers compare with live state), else all."""
    options = ", union_by_name = true" if union_by_name else ""
    files = listed_files(directory)
    source = ("[" + ", ".join(f"'{sql_literal(f)}'" for f in files) + "]" if files
              else f"'{sql_literal(directory / '*.parquet')}'")
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({source}{options})")  # noqa: S608 (callers' names)


__all__ = ["Connection", "PublishedView", "Table", "attach", "catalog", "connect", "connect_views",
           "create_parquet_view", "published_dirs", "query", "read_view", "run", "views_sql", "write_views_sql"]
