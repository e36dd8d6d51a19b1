"""A processor's published table, described: its name, meaning, columns and how it is published. Its own module,
light to import: `tokenledger query` builds its views from these without loading any processor's code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    doc: str


@dataclass(frozen=True)
class View:
    """A table a processor owns and publishes for analysts.

    ``mode`` "append": rows are only ever inserted (published incrementally as part files);
    "snapshot": rows are updated in place (published whole, atomically).
    Columns whose name starts with ``_`` are internal: not published, not part of the digest.
    """

    name: str
    doc: str
    columns: tuple[Column, ...]
    mode: str = "append"
    primary_key: tuple[str, ...] = ()

    def ddl(self) -> str:
        cols = [f"{c.name} {c.sql_type}" for c in self.columns]
        if self.primary_key:
            cols.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  " + ",\n  ".join(cols) + "\n)"

    @property
    def public_columns(self) -> list[str]:
        return [c.name for c in self.columns if not c.name.startswith("_")]


def view_to_json(view: View) -> dict[str, object]:
    return {"name": view.name, "doc": view.doc, "mode": view.mode, "primary_key": list(view.primary_key),
            "columns": [{"name": c.name, "sql_type": c.sql_type, "doc": c.doc} for c in view.columns]}


def view_from_json(doc: dict[str, object]) -> View:
    cols = doc["columns"]
    assert isinstance(cols, list)
    return View(name=str(doc["name"]), doc=str(doc["doc"]), mode=str(doc["mode"]),
                primary_key=tuple(str(k) for k in doc["primary_key"]),  # type: ignore[attr-defined]
                columns=tuple(Column(str(c["name"]), str(c["sql_type"]), str(c["doc"])) for c in cols))
