"""Admission for producers: allow / throttle (with the backoff delay) / deny, before a spend.

What this module does
    ``check`` answers "may agent A spend N units of kind K now?" from the latest **published**
    ``budgets`` and ``reservations`` views of the budgets processor (Parquet files under
    ``<home>/views/budgets/<view>/``, read with an in-memory DuckDB). It rebuilds each level's
    ``BudgetState`` and ``BudgetPolicy`` from the view rows and asks ``ledger.economics.budget.admission_chain``
    — the very function the processor uses — over the agent's hierarchy (org → project → task →
    agent), so producer and processor can never disagree about the rules.

    It also holds the conversions the budgets processor shares with it: a ``BudgetPolicy`` control
    event to the pure policy (``policy_from_event``), and a view row back to (state, policy)
    (``level_from_row``), so the row layout is defined once.

Invariants and limits
    * The answer is **advisory**: it reflects the views as last published (a second or so behind
      the log) and other agents may be racing for the same budget. The guarantee against
      overspending is the reservation (``Emitter.reserve``): the budgets processor decides
      reservations in log order, so a reserve that would exceed the hard limit is refused there.
    * Levels without a published budget row do not constrain (no policy = not budgeted).
    * Reads only; never writes a view, never appends to the log.

What it must never do
    Import ``processors`` (dependencies point processors → ledger: the view files are found by path
    convention), or decide differently from ``ledger.economics.budget``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.economics import budget as b
from ledger.errors import AdmissionError, ValidationError
from ledger.units import MILLI  # confidences travel as thousandths on the log
from ledger.wire.events import BUDGET_KINDS
from ledger.wire.events import BudgetPolicy as PolicyEvent

BUDGETS_VIEW_DIR = ("views", "budgets")  # <home>/views/budgets/<view>/*.parquet (processors/publish.py)


def policy_from_event(body: PolicyEvent) -> b.BudgetPolicy:
    """The pure policy of a ``BudgetPolicy`` control event. ``effective_from_us`` anchors the reset
    windows (they start at effective_from + k * interval). Raises ``ValidationError`` for a policy
    the pure model refuses (priority 0, interval 0, min_reserve above the allocation, suspend_at_hard
    without the deny action)."""
    threshold = None if body.confidence_threshold_milli is None else body.confidence_threshold_milli / MILLI
    return b.BudgetPolicy(
        kind=body.budget_kind, allocation=body.allocation, reset_interval_us=body.reset_interval_us,
        overage=b.OveragePolicy(body.soft_limit_pct, body.hard_limit_pct, body.throttle_at_soft, body.suspend_at_hard,
                                body.emergency_reserve_pct),
        hard_limit_action=body.hard_limit_action, min_reserve=body.min_reserve, priority=body.priority,
        confidence_threshold=threshold, anchor_us=body.effective_from_us)


def policy_columns(policy: b.BudgetPolicy) -> dict[str, Any]:
    """The policy's fields as the ``budgets`` view stores them (``level_from_row`` reads them back)."""
    o = policy.overage
    return {
        "policy_allocation": policy.allocation, "reset_interval_us": policy.reset_interval_us,
        "soft_limit_pct": int(o.soft_limit_pct), "hard_limit_pct": int(o.hard_limit_pct),
        "throttle_at_soft": o.throttle_at_soft, "suspend_at_hard": o.suspend_at_hard,
        "emergency_reserve_pct": int(o.emergency_reserve_pct), "hard_limit_action": policy.hard_limit_action.value,
        "min_reserve": policy.min_reserve, "priority": policy.priority,
        "confidence_threshold_milli": None if policy.confidence_threshold is None
        else round(policy.confidence_threshold * MILLI),
        "effective_from_us": policy.anchor_us,
    }


def policy_from_row(row: dict[str, Any]) -> b.BudgetPolicy:
    threshold = row["confidence_threshold_milli"]
    return b.BudgetPolicy(
        kind=row["budget_kind"], allocation=row["policy_allocation"], reset_interval_us=row["reset_interval_us"],
        overage=b.OveragePolicy(row["soft_limit_pct"], row["hard_limit_pct"], bool(row["throttle_at_soft"]),
                                bool(row["suspend_at_hard"]), row["emergency_reserve_pct"]),
        hard_limit_action=row["hard_limit_action"], min_reserve=row["min_reserve"], priority=row["priority"],
        confidence_threshold=None if threshold is None else threshold / MILLI, anchor_us=row["effective_from_us"])


def level_from_row(row: dict[str, Any], reservations: tuple[b.Reservation, ...] = ()) -> b.Level:
    """(state, policy) of one ``budgets`` view row, with its live reservations (sorted by id)."""
    conf = row["last_confidence_milli"]
    state = b.BudgetState(
        scope=b.Scope(row["scope"], row["scope_id"]), kind=row["budget_kind"], window_start_us=row["window_start_us"],
        allocation=row["allocation"], consumed=row["consumed"], emergency_used=row["emergency_used"],
        throttle_level=row["throttle_level"], suspended=bool(row["suspended"]),
        last_confidence=None if conf is None else conf / MILLI,
        reservations=tuple(sorted(reservations, key=lambda r: r.reservation_id)))
    return state, policy_from_row(row)


def levels_text(scopes: list[b.Scope]) -> str:
    """The levels a reservation holds budget at, as stored in the ``reservations`` view."""
    return "/".join(f"{s.level.value}:{s.id}" for s in scopes)


def parse_levels(text: str) -> list[tuple[str, str]]:
    return [tuple(part.split(":", 1)) for part in text.split("/") if part]  # type: ignore[misc]


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


def read_view(path: Path) -> list[dict[str, Any]]:
    """The rows of one published view directory (every Parquet part in it), as dicts; [] if unpublished."""
    files = sorted(path.glob("*.parquet"))
    if not files:
        return []
    import duckdb

    try:
        con = duckdb.connect(":memory:")
        try:
            cur = con.execute("SELECT * FROM read_parquet(?)", [[str(f) for f in files]])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            con.close()
    except duckdb.Error as e:
        raise AdmissionError(f"cannot read the published view at {path}: {e}", path=str(path),
                             hint="is the budgets processor running? (`tokenledger run budgets`)") from None


def check(home_path: str | Path, agent: str, kind: str, amount: int, *, org: str | None = None,
          project: str | None = None, task: str | None = None, at_us: int | None = None) -> Answer:
    """Admission for ``agent`` spending ``amount`` of ``kind`` at ``at_us`` (default: now, wall clock
    — this is the producer's side, advisory), over its hierarchy. Not budgeted anywhere → allow."""
    if kind not in BUDGET_KINDS:
        raise ValidationError("kind", kind, f"must be one of {', '.join(BUDGET_KINDS)}")
    amount = b.require_int("amount", amount)
    t = time.time_ns() // 1000 if at_us is None else b.require_time("at_us", at_us)
    root = Path(home_path).joinpath(*BUDGETS_VIEW_DIR)
    rows = {(r["scope"], r["scope_id"]): r for r in read_view(root / "budgets") if r["budget_kind"] == kind}
    held: dict[tuple[str, str], list[b.Reservation]] = {}
    for r in read_view(root / "reservations"):
        if r["status"] != "reserved" or r["budget_kind"] != kind or r["expires_us"] <= t:
            continue
        res = b.Reservation(r["reservation_id"], r["amount"], r["created_us"], r["expires_us"])
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


def reservation(home_path: str | Path, reservation_id: str) -> dict[str, Any] | None:
    """The published ``reservations`` row of ``reservation_id`` (None until the budgets processor has
    decided and published it): what a producer waits for before it spends what it reserved."""
    for r in read_view(Path(home_path).joinpath(*BUDGETS_VIEW_DIR) / "reservations"):
        if r["reservation_id"] == reservation_id:
            return r
    return None
