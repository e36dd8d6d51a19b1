"""Reading published views on the producer's side, and admission (allow / throttle / deny) from them.

What this module does
    ``read_view`` reads one published view (the Parquet parts under ``<home>/views/<processor>/<view>/``,
    found through ``ledger.sdk.home.HomeLayout``) with an in-memory DuckDB, after checking them against
    the processor's signed manifest (``ledger.sdk.published``): only the files the manifest lists, with
    the hashes it signed, copied privately before they are read (copies kept, so each file is hashed
    once). A forged file is a ``ViewIntegrityError``, never an answer. ``check`` answers "may agent A
    spend N units of kind K now?" from the latest published ``budgets`` and ``reservations`` views of
    the budgets processor: it rebuilds each level's ``BudgetState`` and ``BudgetPolicy`` from the view rows
    (``ledger.economics.budget_rows``) and asks
    ``ledger.economics.budget.admission_chain`` — the very function the processor uses — over the
    agent's hierarchy (org → project → task → agent), so producer and processor can never disagree
    about the rules. ``reservation`` is what a producer waits for after ``Emitter.reserve``.

Invariants and limits
    * The answer is **advisory**: it reflects the views as last published (a second or so behind
      the log) and other agents may be racing for the same budget. The guarantee against
      overspending is the reservation (``Emitter.reserve``): the budgets processor decides
      reservations in log order, so a reserve that would exceed the hard limit is refused there.
    * Levels without a published budget row do not constrain (no policy = not budgeted).
    * Reads only; never writes a view, never appends to the log.

What it must never do
    Import ``processors`` (dependencies point processors → ledger: the view files are found by the
    home layout), or decide differently from ``ledger.economics.budget``. This is the only module
    of ``ledger`` that imports DuckDB (the analyst side is ``processors.views``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ledger.economics import budget as b
from ledger.economics.budget_rows import hold_id, level_from_row, parse_levels
from ledger.economics.reputation import require_int, require_time
from ledger.errors import AdmissionError, ValidationError
from ledger.sdk.home import Home, HomeLayout
from ledger.sdk.published import has_published, private_cache, registered_keys, verify_published
from ledger.wire.events import BUDGET_KINDS

BUDGETS_PROCESSOR = "budgets"  # the processor whose views admission reads


@dataclass(frozen=True)
class Answer:
    """What a producer may do. ``delay_us``: wait this long before spending (THROTTLE) or before
    retrying (DENY); ``scope`` names the level that decided ("" when nothing is budgeted)."""

    verdict: str  # allow | throttle | deny
    reason: str
    delay_us: int
    available: int | None
    scope: str
    levels: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "delay_us": self.delay_us,
                "available": self.available, "scope": self.scope, "levels": list(self.levels)}


def read_parquet_files(files: list[Path], processor: str, *,
                       match: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of the Parquet ``files`` (one view of ``processor``), as dicts; [] for no files. ``match``: only
    the rows whose columns equal these values (column names are the caller's code, never outside text)."""
    if not files:
        return []
    match = match or {}
    for name in match:
        if not name.isidentifier():
            raise ValidationError("match", name, "must name a column")
    # the names are checked identifiers from the caller's code; the values are bound parameters
    where = " AND ".join(f"{name} = ?" for name in match)
    sql = "SELECT * FROM read_parquet(?, union_by_name = true)" + (f" WHERE {where}" if where else "")  # noqa: S608
    try:
        con = duckdb.connect(":memory:")
        try:
            cur = con.execute(sql, [[str(f) for f in files], *match.values()])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()
    except duckdb.Error as e:
        raise AdmissionError(f"cannot read the published views of {processor}: {e}", processor=processor,
                             hint=f"is the {processor} processor running? (`tokenledger run {processor}`)") from None


def read_views(home_path: str | Path, processor: str, views: tuple[str, ...], *, log_url: str | None = None,
               match: Mapping[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The rows ``processor`` last published for each of ``views`` in the home at ``home_path``, checked
    against its signed manifest (one check for all of them, with the keys registered on ``log_url``, default
    the home's log); [] for a view not published yet. ``match``: only rows equal to it (``read_parquet_files``)."""
    layout = HomeLayout(Path(home_path))
    views_dir = layout.views_dir(processor)
    if not has_published(views_dir):  # nothing to check, and no log to open
        return {v: [] for v in views}
    home = Home.open(layout.path)
    with tempfile.TemporaryDirectory(prefix="tokenledger-views-") as tmp:
        # the kept, checked copies (each file hashed once across calls); fresh copies if none can be kept
        cache = private_cache(home)
        copy_to = Path(tmp) if cache is None else cache / processor
        checked = verify_published(views_dir, processor, registered_keys(home, log_url), copy_to=copy_to)
        return {v: read_parquet_files(checked.files.get(v, []), processor, match=match) for v in views}


def read_view(home_path: str | Path, processor: str, view: str, *, log_url: str | None = None) -> list[dict[str, Any]]:
    """The rows ``processor`` last published for ``view`` in the home at ``home_path``; [] if unpublished."""
    return read_views(home_path, processor, (view,), log_url=log_url)[view]


def check(home_path: str | Path, agent: str, kind: str, amount: int, *, org: str | None = None,
          project: str | None = None, task: str | None = None, at_us: int | None = None) -> Answer:
    """Admission for ``agent`` spending ``amount`` of ``kind`` at ``at_us`` (default: now, wall clock
    — this is the producer's side, advisory), over its hierarchy. Not budgeted anywhere → allow."""
    if kind not in BUDGET_KINDS:
        raise ValidationError("kind", kind, f"must be one of {', '.join(BUDGET_KINDS)}")
    amount = require_int("amount", amount)
    t = time.time_ns() // 1000 if at_us is None else require_time("at_us", at_us)
    published = read_views(home_path, BUDGETS_PROCESSOR, ("budgets", "reservations"))
    rows = {(r["scope"], r["scope_id"]): r for r in published["budgets"] if r["budget_kind"] == kind}
    held: dict[tuple[str, str], list[b.Reservation]] = {}
    for r in published["reservations"]:
        if r["status"] != "reserved" or r["budget_kind"] != kind or r["expires_us"] <= t:
            continue
        res = b.Reservation(hold_id(r["agent_id"], r["reservation_id"]), r["amount"], r["created_us"], r["expires_us"])
        for level in parse_levels(r["levels"]):
            held.setdefault(level, []).append(res)
    wanted = [("org", org), ("project", project), ("task", task), ("agent", agent)]
    keys = [(lvl, sid) for lvl, sid in wanted if sid is not None and (lvl, sid) in rows]
    if not keys:
        return Answer("allow", "not_budgeted", 0, None, "", ())
    levels = [level_from_row(rows[k], tuple(held.get(k, ()))) for k in keys]
    d = b.admission_chain(levels, amount, t)
    return Answer(d.verdict.value, d.reason.value, d.delay_us, d.available, f"{d.scope.level.value}:{d.scope.id}",
                  tuple(f"{lvl}:{sid}" for lvl, sid in keys))


def reservation(home_path: str | Path, reservation_id: str, agent_id: str, *,
                log_url: str | None = None) -> dict[str, Any] | None:
    """The published ``reservations`` row of ``agent_id``'s ``reservation_id`` (None until the budgets
    processor has decided and published it): what a producer waits for before it spends what it reserved.
    Reservation ids are per agent, so another agent's reserve with the same id is never this row."""
    rows = read_views(home_path, BUDGETS_PROCESSOR, ("reservations",), log_url=log_url,
                      match={"reservation_id": reservation_id, "agent_id": agent_id})["reservations"]
    return rows[0] if rows else None  # (agent_id, reservation_id) is the view's key: one row at most
