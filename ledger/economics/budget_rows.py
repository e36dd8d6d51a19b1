"""Budget rows: the conversions between the pure budget model and the rows the budgets processor
stores and publishes, shared by the processor (which writes them) and the producer-side reader
``ledger.sdk.views`` (which reads them back), so the row layout is defined once.

    * a ``BudgetPolicy`` control event to the pure policy (``policy_from_event``);
    * a policy to the ``budgets`` view's policy columns (``policy_columns``) and back (``policy_from_row``);
    * a ``budgets`` view row to (state, policy) (``level_from_row``);
    * the levels a reservation holds budget at, to and from the ``reservations`` view's text column.

Pure: no I/O, no clock, no DuckDB. What it must never do: decide anything; ``ledger.economics.budget``
decides.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ledger.economics import budget as b
from ledger.economics.reputation import require_choice
from ledger.units import MILLI  # confidences travel as thousandths on the log
from ledger.wire.events import BudgetPolicy as PolicyEvent
from ledger.wire.vocab import BudgetKind, HardLimitAction


def policy_from_event(body: PolicyEvent) -> b.BudgetPolicy:
    """The pure policy of a ``BudgetPolicy`` control event. ``effective_from_us`` anchors the reset
    windows (they start at effective_from + k * interval). Raises ``ValidationError`` for a policy
    the pure model refuses (priority 0, interval 0, min_reserve above the allocation, suspend_at_hard
    without the deny action)."""
    threshold = None if body.confidence_threshold_milli is None else body.confidence_threshold_milli / MILLI
    # the event carries the vocabulary as plain strings (the wire form); the model computes with the enums
    return b.BudgetPolicy(
        kind=require_choice(BudgetKind, "kind", body.budget_kind), allocation=body.allocation,
        reset_interval_us=body.reset_interval_us,
        overage=b.OveragePolicy(body.soft_limit_pct, body.hard_limit_pct, body.throttle_at_soft, body.suspend_at_hard,
                                body.emergency_reserve_pct),
        hard_limit_action=require_choice(HardLimitAction, "hard_limit_action", body.hard_limit_action),
        min_reserve=body.min_reserve, priority=body.priority,
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


def hold_id(agent_id: str, reservation_id: str) -> str:
    """The id a reservation is held under in the pure model: reservation ids are the reserving agent's own
    (the key is (agent, reservation id)), so two agents may use the same id without touching each other's
    hold. A digest, not a join: ids may hold any character and the pure model bounds an id's length."""
    digest = hashlib.sha256(agent_id.encode() + b"\x00" + reservation_id.encode()).hexdigest()
    return f"hold-{digest[:32]}"
