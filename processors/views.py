"""The analyst's side of the published views: SQL that plain DuckDB runs over the Parquet files.

Used by ``tokenledger query`` and ``demo`` and by the report; it reads files only, so it never
blocks a running processor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.sdk.home import Home
from processors import REGISTRY
from processors.runtime.publish import published_views
from processors.runtime.service import views_dir


def _catalog(h: Home) -> list[tuple[Any, str, Path, bool]]:
    """(view, processor, directory, published?) for every view every processor owns."""
    out_ = []
    for name in sorted(REGISTRY):
        for view, _ in published_views(REGISTRY[name]()):
            d = views_dir(h, name) / view.name
            out_.append((view, name, d, d.exists() and any(d.glob("*.parquet"))))
    return out_


def views_sql(h: Home) -> str:
    """CREATE VIEW statements over the published files, for plain DuckDB (`duckdb -init views.sql`).
    A view not published yet (its processor has not run) is an empty view with the right columns."""
    lines = []
    for view, _, d, published in _catalog(h):
        if published:
            glob = str(d / "*.parquet").replace("'", "''")
            lines.append(f"CREATE OR REPLACE VIEW {view.name} AS SELECT * FROM read_parquet('{glob}', "
                         "union_by_name = true);")
        else:
            cols = ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in view.columns
                             if not c.name.startswith("_"))
            lines.append(f"CREATE OR REPLACE VIEW {view.name} AS SELECT {cols} WHERE false;")
    return "\n".join(lines) + "\n"
