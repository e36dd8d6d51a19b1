"""Budgets: policies per scope and kind, and the pure fold of spends, reservations and window resets.

What this module does
    A ``BudgetPolicy`` says how much of one ``BudgetKind`` a scope (org, project, task or agent)
    may use per reset window, and what happens near and past the limits (seed 002's overage policy,
    seed 003's hard-limit actions). A ``BudgetState`` is the fold of everything that happened to
    one (scope, kind) in the current window. Every operation takes a state and an event time and
    returns the new state plus what it derived (a ``Decision``, ``Alert`` values, expired
    reservations), so a processor can store both in one transaction and a replay reaches the same
    result. A spend by an agent counts against its task, project and org budgets too: the
    ``*_chain`` functions take the levels from org down to agent and admit a spend only if every
    level admits it, applying it to all levels or to none.

    Operations: ``advance`` (window reset and reservation expiry), ``admission`` (check only),
    ``apply_spend`` (check, then spend if admitted), ``record_usage`` (a spend that already
    happened: always recorded, flagged if the policy would have refused it), ``reserve`` /
    ``commit`` / ``release`` (hold budget before a call, settle it after), ``resume``,
    ``record_confidence``, ``adjust_allocation`` and ``reallocate`` (priority-weighted transfers
    between sibling budgets, through ledger.economics.reallocation).

Limits in units (allocation ``a``, percentages of the policy)
    * hard cap    = floor(a * hard% / 100): spendable from the normal budget;
    * emergency   = floor(a * emergency% / 100): spendable beyond the hard cap, once per window;
    * ceiling     = hard cap + emergency: nothing beyond it is admitted unless the hard-limit
      action is ALLOW or ALERT_ONLY;
    * soft zone   = consumed (+ reserved + requested) >= a * soft% / 100 exactly.
    Status (seed 002, exactly): critical at utilisation >= hard%, warning >= soft%, normal >= 50%,
    healthy below. A zero allocation is critical (0 >= hard% of 0). A view reports one more:
    overdrawn when consumed > allocation, whatever the percentages; its ``remaining`` is then
    negative (allocation - consumed, as token-budget-contracts reports an overdraw), where seed
    002 clamps it at 0. The fold's own status (alerts) never says overdrawn: ``policy.status``.

Integer arithmetic (no Fraction per event)
    A policy's three percentages are exact (ints or Decimals); at construction each becomes an
    integer numerator over one scale D, the least common denominator of the three (D = 1 for whole
    percents, a divisor of a power of ten for Decimals): pct = n / D exactly. Every limit is then
    integer arithmetic on the ints involved, exact for every size (Python ints do not overflow):
    * hard cap  = (a * hard_n) // (100 * D)         floor division: rounds down, as floor(a * hard% / 100);
    * emergency = (a * emergency_n) // (100 * D)    likewise;
    * needed    = -((-total * 100 * D) // hard_n)   rounds up: ceil(100 * total / hard%);
    * thresholds by cross-multiplication, never division: total >= a * soft% / 100 is
      total * 100 * D >= soft_n * a (D > 0, so the comparison is unchanged).

Validation at the edges
    Values built by callers (policies, states, reservations) are validated when constructed. The
    operations derive their new states from validated ones with integer steps that keep every field
    in range (counters saturate at MAX_BUDGET_COUNTER, the throttle level at MAX_THROTTLE_LEVEL), so
    on the per-event path they copy the state's fields without validating them again
    (``_evolve``); a state that comes back in from outside is validated by its constructor.

Decisions
    ALLOW: go ahead. THROTTLE: go ahead after ``delay_us`` (the spend is admitted and counted).
    DENY: not admitted; ``delay_us`` > 0 is a retry-after hint (the throttle backoff for the
    THROTTLE hard-limit action, or the time to the next window for DENY and suspension).
    Evaluated in this order: suspended -> DENY; confidence gate closed -> DENY; within the hard cap
    -> ALLOW; within the emergency reserve -> ALLOW (reason emergency_reserve); beyond the
    ceiling -> by hard-limit action: ALLOW / ALERT_ONLY admit, THROTTLE denies with backoff, DENY
    denies (and suspends when ``suspend_at_hard``). An admitted spend that ends in the soft zone is
    turned into THROTTLE when ``throttle_at_soft``.

Throttle backoff (seed 003's ThrottleManager)
    Level n >= 1 waits min(THROTTLE_BASE_DELAY_US * THROTTLE_BACKOFF_FACTOR ** (n - 1),
    THROTTLE_MAX_DELAY_US): 1 s, 2 s, 4 s ... 60 s. The level rises by one with every admitted
    THROTTLE and every hard-limit THROTTLE refusal, drops to 0 with every admitted ALLOW (the
    budget is healthy again, for example after a transfer) and at every window reset.

Invariants
    * Windows start exactly at ``anchor_us + k * reset_interval_us`` (k an integer) of event time;
      a state's window is the one holding the latest event time it has seen. A late event (earlier
      than the current window) is charged to the current window; a closed window never reopens.
    * For DENY and THROTTLE policies, ``consumed + reserved <= ceiling`` after every reserve,
      commit, release, advance and apply_spend, whatever the interleaving: admission counts live
      reservations, and a commit may not exceed its reservation.
    * A reservation never outlives its window (it expires at the earlier of its TTL and the window
      end), so a reset never carries promises into a window that did not make them.
    * Transfers and reputation scaling change a window's allocation; the next window starts again
      from the policy's allocation (tokens lent to another agent come back at the reset).
    * Ordering is deterministic: reservations are kept sorted by id, chain levels run org -> agent,
      alerts come in the order they happened.

What it must never do
    Read a clock, the environment or a file; mutate a state (states are frozen; every change is a
    new value); let a refused spend change consumption; use binary floats or Fractions for amounts
    or limits on the per-event path.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NamedTuple

from ledger.economics.reallocation import (
    Participant,
    Refusal,
    Transfer,
    gate_allows,
    next_confidence,
    plan_reallocation,
)
from ledger.economics.reputation import (
    apply_multiplier,
    require_choice,
    require_exact,
    require_id,
    require_int,
    require_real,
    require_time,
)
from ledger.errors import BudgetRefused, ValidationError
from ledger.limits import (
    INT64_MAX,
    MAX_BUDGET_COUNTER,
    MAX_BUDGET_INTERVAL_US,
    MAX_BUDGET_PERCENT,
    MAX_THROTTLE_LEVEL,
)
from ledger.units import US_PER_DAY, US_PER_HOUR, US_PER_S, US_PER_WEEK
from ledger.wire.vocab import BudgetKind, HardLimitAction, ScopeLevel

# ---------------------------------------------------------------------------------------------
# Constants (units in the name)
# ---------------------------------------------------------------------------------------------

THROTTLE_BASE_DELAY_US = 1 * US_PER_S  # seed 003: INITIAL_THROTTLE_DELAY_MS = 1000
THROTTLE_BACKOFF_FACTOR = 2  # seed 003: THROTTLE_BACKOFF_MULTIPLIER = 2
THROTTLE_MAX_DELAY_US = 60 * US_PER_S  # seed 003: MAX_THROTTLE_DELAY_MS = 60000

DEFAULT_RESERVATION_TTL_US = 300 * US_PER_S  # one LLM call with its retries and 60 s backoffs
DEFAULT_MIN_RESERVE_PERCENT = 10  # token-budget-contracts: min_reserve = int(max_tokens * 0.1)
NORMAL_FROM_PERCENT = 50  # seed 002: utilisation >= 50% is "normal", below is "healthy"
# The hard-limit actions that admit a spend beyond the ceiling: a budget under them never refuses at its hard limit.
ADMITS_OVER_CEILING = frozenset((HardLimitAction.ALLOW, HardLimitAction.ALERT_ONLY))


# ---------------------------------------------------------------------------------------------
# Enumerations
# ---------------------------------------------------------------------------------------------


class BudgetStatus(str, enum.Enum):  # noqa: UP042 - str() and format() of members must stay
    """Seed 002's status levels, least to most used."""

    HEALTHY = "healthy"
    NORMAL = "normal"
    WARNING = "warning"
    CRITICAL = "critical"
    OVERDRAWN = "overdrawn"  # views only: consumed beyond the allocation (remaining < 0)


_STATUS_RANK = {s: i for i, s in enumerate(BudgetStatus)}


class Verdict(str, enum.Enum):  # noqa: UP042 - str() and format() of members must stay
    ALLOW = "allow"
    THROTTLE = "throttle"
    DENY = "deny"


class Reason(str, enum.Enum):  # noqa: UP042 - str() and format() of members must stay
    """Why a decision came out as it did."""

    WITHIN_BUDGET = "within_budget"
    SOFT_LIMIT = "soft_limit"  # admitted, throttled because it ends at or above the soft limit
    EMERGENCY_RESERVE = "emergency_reserve"  # admitted beyond the hard cap, from the emergency reserve
    OVER_CEILING = "over_ceiling"  # admitted beyond the ceiling (ALLOW / ALERT_ONLY)
    HARD_LIMIT = "hard_limit"  # refused: beyond the ceiling
    SUSPENDED = "suspended"  # refused: the budget is suspended until the next window or a resume
    CONFIDENCE_GATE = "confidence_gate"  # refused: the last reported confidence reached the threshold
    RESERVED = "reserved"  # a commit within its reservation
    NOT_RESERVED = "not_reserved"  # a commit of a reservation that is not live (unknown or expired)


class AlertKind(str, enum.Enum):  # noqa: UP042 - str() and format() of members must stay
    SOFT_LIMIT = "soft_limit"  # consumption reached soft%
    HARD_LIMIT = "hard_limit"  # consumption reached hard%
    EMERGENCY_RESERVE = "emergency_reserve"  # consumption drew on the emergency reserve
    SUSPENDED = "suspended"
    RESUMED = "resumed"  # by a window reset or an operator's resume
    BREACH = "breach"  # consumption the policy does not cover: ALERT_ONLY overspend, or refused usage recorded anyway


# ---------------------------------------------------------------------------------------------
# Scopes and policies
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """One node of the hierarchy. Ids are unique per level (as seed 003's ``task:<id>`` keys)."""

    level: ScopeLevel
    id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", require_choice(ScopeLevel, "scope level", self.level))
        require_id("scope id", self.id)


def scope_chain(
    *, org: str | None = None, project: str | None = None, task: str | None = None, agent: str | None = None
) -> tuple[Scope, ...]:
    """The scopes a spend counts against, org first; absent levels are skipped (seed 003)."""
    ids = ((ScopeLevel.ORG, org), (ScopeLevel.PROJECT, project), (ScopeLevel.TASK, task), (ScopeLevel.AGENT, agent))
    chain = tuple(Scope(level, i) for level, i in ids if i is not None)
    if not chain:
        raise ValidationError("scope", None, "name at least one of org, project, task, agent")
    return chain


def _require_bool(field_name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field_name, value, "must be a bool")
    return value


@dataclass(frozen=True)
class OveragePolicy:
    """Seed 002's overage policy. Percentages are ints or Decimals of the allocation."""

    soft_limit_pct: int | Decimal = 80
    hard_limit_pct: int | Decimal = 100
    throttle_at_soft: bool = True
    suspend_at_hard: bool = False
    emergency_reserve_pct: int | Decimal = 0
    # The percentages as integers in units of 1/_scale percent (see "Integer arithmetic" in the
    # module doc), computed once so that no limit needs a Fraction per event.
    _scale: int = field(init=False, repr=False, compare=False)
    _soft_n: int = field(init=False, repr=False, compare=False)
    _hard_n: int = field(init=False, repr=False, compare=False)
    _emergency_n: int = field(init=False, repr=False, compare=False)
    _cap_den: int = field(init=False, repr=False, compare=False)  # 100 * _scale: a limit's divisor
    _normal_n: int = field(init=False, repr=False, compare=False)  # NORMAL_FROM_PERCENT in the same units

    def __post_init__(self) -> None:
        soft = require_exact("soft_limit_pct", self.soft_limit_pct, low=0, high=MAX_BUDGET_PERCENT)
        hard = require_exact("hard_limit_pct", self.hard_limit_pct, low=0, high=MAX_BUDGET_PERCENT)
        if hard == 0:
            raise ValidationError("hard_limit_pct", self.hard_limit_pct, "must be above 0")
        if soft > hard:
            raise ValidationError(
                "soft_limit_pct",
                self.soft_limit_pct,
                "must not exceed hard_limit_pct",
                hard_limit_pct=self.hard_limit_pct,
            )
        emergency = require_exact("emergency_reserve_pct", self.emergency_reserve_pct, low=0, high=MAX_BUDGET_PERCENT)
        _require_bool("throttle_at_soft", self.throttle_at_soft)
        _require_bool("suspend_at_hard", self.suspend_at_hard)
        # The least common denominator of the three exact percentages (1 for whole percents; a
        # Decimal's denominator divides a power of ten): each becomes an exact integer numerator.
        scale = math.lcm(soft.denominator, hard.denominator, emergency.denominator)
        object.__setattr__(self, "_scale", scale)
        object.__setattr__(self, "_soft_n", int(soft * scale))
        object.__setattr__(self, "_hard_n", int(hard * scale))
        object.__setattr__(self, "_emergency_n", int(emergency * scale))
        object.__setattr__(self, "_cap_den", 100 * scale)
        object.__setattr__(self, "_normal_n", NORMAL_FROM_PERCENT * scale)


@dataclass(frozen=True)
class BudgetPolicy:
    """How much of one kind a scope may use per window, and what happens at the limits.

    ``min_reserve`` (units) is what reallocation never takes from this budget; None means 10% of
    the allocation, rounded down (the reference's default). ``priority`` ranks budgets for
    reallocation (higher = more important). ``confidence_threshold`` enables confidence gating.
    ``anchor_us`` aligns the windows: they start at ``anchor_us + k * reset_interval_us``; the
    default 0 starts days at 00:00 UTC and weeks on Thursdays (the epoch was a Thursday).
    ``suspend_at_hard`` needs the DENY action: a suspension is a refusal that lasts.
    """

    kind: BudgetKind
    allocation: int
    reset_interval_us: int
    overage: OveragePolicy = field(default_factory=OveragePolicy)
    hard_limit_action: HardLimitAction = HardLimitAction.DENY
    min_reserve: int | None = None
    priority: int = 1
    confidence_threshold: float | None = None
    anchor_us: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", require_choice(BudgetKind, "kind", self.kind))
        require_int("allocation", self.allocation)
        require_int("reset_interval_us", self.reset_interval_us, low=1, high=MAX_BUDGET_INTERVAL_US)
        if not isinstance(self.overage, OveragePolicy):
            raise ValidationError("overage", self.overage, "must be an OveragePolicy")
        action = require_choice(HardLimitAction, "hard_limit_action", self.hard_limit_action)
        object.__setattr__(self, "hard_limit_action", action)
        if self.overage.suspend_at_hard and action is not HardLimitAction.DENY:
            raise ValidationError("hard_limit_action", action.value, "suspend_at_hard needs the deny action")
        if self.min_reserve is None:
            object.__setattr__(self, "min_reserve", self.allocation * DEFAULT_MIN_RESERVE_PERCENT // 100)
        require_int("min_reserve", self.min_reserve, high=self.allocation)
        require_int("priority", self.priority, low=1, high=2**31 - 1)
        if self.confidence_threshold is not None:
            threshold = require_real("confidence_threshold", self.confidence_threshold, low=0.0, high=1.0)
            object.__setattr__(self, "confidence_threshold", threshold)
        require_time("anchor_us", self.anchor_us)

    @property
    def resolved_min_reserve(self) -> int:
        """``min_reserve`` resolved: the field accepts None (the 10% default) and ``__post_init__``
        replaces it, so after construction it is always an int."""
        assert self.min_reserve is not None  # resolved in __post_init__
        return self.min_reserve

    # Limits in units, for an allocation that transfers may have moved away from the policy's.

    def hard_cap(self, allocation: int) -> int:
        o = self.overage
        return allocation * o._hard_n // o._cap_den

    def emergency_allowance(self, allocation: int) -> int:
        o = self.overage
        return allocation * o._emergency_n // o._cap_den

    def ceiling(self, allocation: int) -> int:
        return self.caps(allocation)[1]

    def caps(self, allocation: int) -> tuple[int, int]:
        """(hard cap, ceiling) for ``allocation``: the two limits every decision needs, in one call."""
        o = self.overage
        hard_cap = allocation * o._hard_n // o._cap_den
        return hard_cap, hard_cap + allocation * o._emergency_n // o._cap_den

    def in_soft_zone(self, total: int, allocation: int) -> bool:
        o = self.overage
        return total * o._cap_den >= o._soft_n * allocation

    def allocation_needed(self, total: int) -> int:
        """The smallest allocation whose hard cap covers ``total``: ceil(100 * total / hard%)."""
        o = self.overage
        return -(-total * o._cap_den // o._hard_n)

    def status(self, consumed: int, allocation: int) -> BudgetStatus:
        """Seed 002's status, on exact integer percentages."""
        o = self.overage
        used = consumed * o._cap_den
        if used >= o._hard_n * allocation:
            return BudgetStatus.CRITICAL
        if used >= o._soft_n * allocation:
            return BudgetStatus.WARNING
        if used >= o._normal_n * allocation:
            return BudgetStatus.NORMAL
        return BudgetStatus.HEALTHY

    def window_start(self, event_time_us: int) -> int:
        return _window_start(event_time_us, self.reset_interval_us, self.anchor_us)


# Seed 002 (createAgentBudget) for the four tokens; seed 003 (Budget defaults: 1,000,000 tokens,
# 100 USD, alert at 80%, hard-limit action throttle) for LLM tokens and USD. Seed 003's period is
# "task", "daily" or "monthly"; windows here are fixed lengths of event time, so both take daily.
# Seed 002 suspends at the hard limit whatever suspendAtHard says; we suspend only where it is set.
_DEFAULTS: Mapping[BudgetKind, Mapping[str, Any]] = MappingProxyType(
    {
        BudgetKind.ACTION: dict(
            allocation=5_000,
            reset_interval_us=US_PER_DAY,
            overage=OveragePolicy(80, 100, True, True, 10),
        ),
        BudgetKind.DATA: dict(
            allocation=2_000_000,
            reset_interval_us=US_PER_DAY,
            overage=OveragePolicy(85, 100, True, False, 5),
        ),
        BudgetKind.COMPUTE: dict(
            allocation=500,
            reset_interval_us=US_PER_HOUR,
            overage=OveragePolicy(75, 90, True, True, 15),
        ),
        BudgetKind.TRUST: dict(
            allocation=1_000,
            reset_interval_us=US_PER_WEEK,
            overage=OveragePolicy(90, 100, False, False, 0),
        ),
        BudgetKind.LLM_TOKENS: dict(
            allocation=1_000_000,
            reset_interval_us=US_PER_DAY,
            overage=OveragePolicy(80, 100, False, False, 0),
            hard_limit_action=HardLimitAction.THROTTLE,
        ),
        BudgetKind.USD: dict(
            allocation=100_000_000,
            reset_interval_us=US_PER_DAY,
            overage=OveragePolicy(80, 100, False, False, 0),
            hard_limit_action=HardLimitAction.THROTTLE,
        ),
    }
)


def default_policy(kind: BudgetKind | str, /, **changes: Any) -> BudgetPolicy:
    """The seed default for ``kind``, with ``changes`` (any BudgetPolicy field) applied.

    ``min_reserve`` follows a changed allocation unless it is given too.
    """
    kind = require_choice(BudgetKind, "kind", kind)
    unknown = sorted(set(changes) - set(BudgetPolicy.__dataclass_fields__) | ({"kind"} & set(changes)))
    if unknown:
        raise ValidationError("changes", unknown, "are not BudgetPolicy fields that can be changed")
    return BudgetPolicy(kind=kind, **{**_DEFAULTS[kind], **changes})


DEFAULT_POLICIES: Mapping[BudgetKind, BudgetPolicy] = MappingProxyType({k: default_policy(k) for k in BudgetKind})


def scale_policy(policy: BudgetPolicy, multiplier: int | Decimal) -> BudgetPolicy:
    """The policy with its allocation scaled by ``multiplier`` (seed 002's reputation multiplier),
    rounded down; ``min_reserve`` is kept, but never above the new allocation. A running window
    keeps its allocation; the scaled one applies from the next reset (or via adjust_allocation).
    """
    allocation = apply_multiplier(policy.allocation, multiplier)
    return replace(policy, allocation=allocation, min_reserve=min(policy.resolved_min_reserve, allocation))


# ---------------------------------------------------------------------------------------------
# Windows and backoff
# ---------------------------------------------------------------------------------------------


def _window_start(event_time_us: int, reset_interval_us: int, anchor_us: int) -> int:
    # Floor division rounds towards minus infinity, so times before the anchor land correctly too.
    return anchor_us + (event_time_us - anchor_us) // reset_interval_us * reset_interval_us


def window_start(event_time_us: int, reset_interval_us: int, anchor_us: int = 0) -> int:
    """The start of the window holding ``event_time_us``: the largest ``anchor_us + k * interval``
    (k an integer, possibly negative) that is <= the event time. Exact integer arithmetic."""
    require_time("event_time_us", event_time_us)
    require_int("reset_interval_us", reset_interval_us, low=1, high=MAX_BUDGET_INTERVAL_US)
    require_time("anchor_us", anchor_us)
    return _window_start(event_time_us, reset_interval_us, anchor_us)


def backoff_delay_us(level: int) -> int:
    """The throttle delay at ``level`` (0 = not throttled): 1 s doubling per level, at most 60 s."""
    level = require_int("throttle level", level, high=MAX_THROTTLE_LEVEL)
    if level == 0:
        return 0
    # int ** int is typed Any (a negative exponent would give a float); level >= 1 keeps it an int
    delay: int = THROTTLE_BASE_DELAY_US * THROTTLE_BACKOFF_FACTOR ** (level - 1)
    return min(delay, THROTTLE_MAX_DELAY_US)


# ---------------------------------------------------------------------------------------------
# State and outputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reservation:
    """Budget held for a call that has not happened yet; live while ``event time < expires_us``."""

    reservation_id: str
    amount: int
    created_us: int
    expires_us: int

    def __post_init__(self) -> None:
        require_id("reservation_id", self.reservation_id)
        require_int("amount", self.amount)
        require_time("created_us", self.created_us)
        require_int("expires_us", self.expires_us, low=self.created_us + 1, high=INT64_MAX)


@dataclass(frozen=True)
class BudgetState:
    """One (scope, kind) in its current window. Build the first with ``open_budget``.

    ``allocation`` is this window's (the policy's, moved by transfers); ``emergency_used`` is how
    much consumption this window drew on the emergency reserve; ``throttle_level`` is the backoff
    level (0 = not throttled); ``last_confidence`` is the agent's last reported confidence, kept
    across windows (it is about results, not budget periods); ``reservations`` are the live ones,
    sorted by id.
    """

    scope: Scope
    kind: BudgetKind
    window_start_us: int
    allocation: int
    consumed: int = 0
    emergency_used: int = 0
    throttle_level: int = 0
    suspended: bool = False
    last_confidence: float | None = None
    reservations: tuple[Reservation, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.scope, Scope):
            raise ValidationError("scope", self.scope, "must be a Scope")
        object.__setattr__(self, "kind", require_choice(BudgetKind, "kind", self.kind))
        require_int("window_start_us", self.window_start_us, low=-INT64_MAX, high=INT64_MAX)
        require_int("allocation", self.allocation)
        require_int("consumed", self.consumed)
        require_int("emergency_used", self.emergency_used)
        require_int("throttle_level", self.throttle_level, high=MAX_THROTTLE_LEVEL)
        _require_bool("suspended", self.suspended)
        if self.last_confidence is not None:
            require_real("last_confidence", self.last_confidence, low=0.0, high=1.0)
        ids = [r.reservation_id for r in self.reservations if isinstance(r, Reservation)]
        if len(ids) != len(self.reservations) or ids != sorted(set(ids)):
            raise ValidationError("reservations", ids, "must be Reservation values with unique ids, sorted by id")

    @property
    def reserved(self) -> int:
        return sum(r.amount for r in self.reservations) if self.reservations else 0

    def reservation(self, reservation_id: str) -> Reservation | None:
        return next((r for r in self.reservations if r.reservation_id == reservation_id), None)


def _evolve(state: BudgetState, **changes: Any) -> BudgetState:
    """``replace(state, **changes)`` without re-running the validation: for the operations' own
    steps, which derive in-range fields from a validated state (see "Validation at the edges").
    A dict copy instead of a validated construction per event."""
    new = object.__new__(BudgetState)
    fields = new.__dict__
    fields.update(state.__dict__)
    fields.update(changes)
    return new


def open_budget(scope: Scope, policy: BudgetPolicy, event_time_us: int) -> BudgetState:
    """A fresh state for ``scope`` in the window holding ``event_time_us``."""
    require_time("event_time_us", event_time_us)
    return BudgetState(scope, policy.kind, policy.window_start(event_time_us), policy.allocation)


@dataclass(frozen=True)
class Decision:
    """The verdict on one request. ``available`` is what the deciding level could still admit
    (ceiling - consumed - reserved, at least 0); ``scope`` is the level that decided."""

    verdict: Verdict
    reason: Reason
    delay_us: int
    requested: int
    available: int
    scope: Scope
    kind: BudgetKind

    @property
    def admitted(self) -> bool:
        return self.verdict is not Verdict.DENY

    def require(self) -> Decision:
        """This decision if admitted; otherwise raise ``BudgetRefused`` with the evidence."""
        if self.admitted:
            return self
        raise BudgetRefused(
            f"{self.kind.value} budget of {self.scope.level.value} {self.scope.id!r} refused {self.requested}",
            hint="retry after delay_us" if self.delay_us else None,
            scope=f"{self.scope.level.value}:{self.scope.id}",
            kind=self.kind,
            requested=self.requested,
            available=self.available,
            reason=self.reason,
            delay_us=self.delay_us,
        )


@dataclass(frozen=True)
class Alert:
    """A budget event worth telling someone about. ``amount`` is the spend or draw that raised it
    (0 for a resumption); ``reason`` says why for BREACH and SUSPENDED."""

    kind: AlertKind
    scope: Scope
    budget_kind: BudgetKind
    event_time_us: int
    window_start_us: int
    allocation: int
    consumed: int
    amount: int
    reason: Reason | None = None


@dataclass(frozen=True)
class BudgetView:
    """What a view row shows for one (scope, kind)."""

    scope: Scope
    kind: BudgetKind
    window_start_us: int
    window_end_us: int
    allocation: int
    consumed: int
    reserved: int
    remaining: int  # allocation - consumed: negative when overdrawn (seed 002 clamps at 0; we report the overdraw)
    available: int  # what admission could still admit: ceiling - consumed - reserved, at least 0
    utilisation: float  # consumed / allocation (0.0 or inf for a zero allocation)
    status: BudgetStatus  # overdrawn when remaining < 0, else the seed's status
    emergency_used: int
    throttle_level: int
    suspended: bool


class Advanced(NamedTuple):
    state: BudgetState
    expired: tuple[Reservation, ...]
    alerts: tuple[Alert, ...]


class SpendResult(NamedTuple):
    state: BudgetState
    decision: Decision
    alerts: tuple[Alert, ...]


class ChainResult(NamedTuple):
    states: tuple[BudgetState, ...]  # one per level, org first
    decision: Decision
    alerts: tuple[Alert, ...]


class Released(NamedTuple):
    state: BudgetState
    reservation: Reservation | None  # None: it was not live (unknown, expired or settled)
    alerts: tuple[Alert, ...]


class Reallocated(NamedTuple):
    states: tuple[BudgetState, ...]  # in the order given
    transfers: tuple[Transfer, ...]
    alerts: tuple[Alert, ...]


Level = tuple[BudgetState, BudgetPolicy]


# ---------------------------------------------------------------------------------------------
# The fold's core
# ---------------------------------------------------------------------------------------------


def _alert(kind: AlertKind, state: BudgetState, t: int, amount: int, reason: Reason | None = None) -> Alert:
    return Alert(
        kind, state.scope, state.kind, t, state.window_start_us, state.allocation, state.consumed, amount, reason
    )


def _check_level(state: object, policy: object) -> None:
    if not isinstance(state, BudgetState) or not isinstance(policy, BudgetPolicy):
        raise ValidationError("level", (state, policy), "must be a (BudgetState, BudgetPolicy) pair")
    if state.kind is not policy.kind:
        raise ValidationError(
            "policy", policy.kind.value, "is for another kind than the state", state_kind=state.kind.value
        )


def _advance(state: BudgetState, policy: BudgetPolicy, t: int) -> Advanced:
    start = _window_start(t, policy.reset_interval_us, policy.anchor_us)
    if start > state.window_start_us:
        # A new window: consumption, emergency use, throttling and suspension start over, and every
        # reservation has expired (none outlives its window end, which is <= start).
        fresh = BudgetState(state.scope, state.kind, start, policy.allocation, last_confidence=state.last_confidence)
        alerts = (_alert(AlertKind.RESUMED, fresh, t, 0),) if state.suspended else ()
        return Advanced(fresh, state.reservations, alerts)
    expired = tuple(r for r in state.reservations if r.expires_us <= t)
    if not expired:
        return Advanced(state, (), ())
    live = tuple(r for r in state.reservations if r.expires_us > t)
    return Advanced(_evolve(state, reservations=live), expired, ())


def _decide(state: BudgetState, policy: BudgetPolicy, amount: int, t: int) -> Decision:
    """The decision on ``amount`` at ``t`` for an advanced state; changes nothing."""
    allocation = state.allocation
    committed = state.consumed + state.reserved
    hard_cap, ceiling = policy.caps(allocation)
    available = max(0, ceiling - committed)
    if state.suspended:
        window_end = state.window_start_us + policy.reset_interval_us
        return Decision(Verdict.DENY, Reason.SUSPENDED, window_end - t, amount, available, state.scope, state.kind)
    if not gate_allows(policy.confidence_threshold, state.last_confidence):
        return Decision(Verdict.DENY, Reason.CONFIDENCE_GATE, 0, amount, available, state.scope, state.kind)
    total = committed + amount
    if total <= hard_cap:
        reason = Reason.WITHIN_BUDGET
    elif total <= ceiling:
        reason = Reason.EMERGENCY_RESERVE
    elif policy.hard_limit_action in ADMITS_OVER_CEILING:
        reason = Reason.OVER_CEILING
    else:
        if policy.hard_limit_action is HardLimitAction.THROTTLE:
            delay_us = _next_delay_us(state)
        else:  # DENY: retry in the next window
            delay_us = state.window_start_us + policy.reset_interval_us - t
        return Decision(Verdict.DENY, Reason.HARD_LIMIT, delay_us, amount, available, state.scope, state.kind)
    if policy.overage.throttle_at_soft and policy.in_soft_zone(total, allocation):
        reason = Reason.SOFT_LIMIT if reason is Reason.WITHIN_BUDGET else reason
        return Decision(Verdict.THROTTLE, reason, _next_delay_us(state), amount, available, state.scope, state.kind)
    return Decision(Verdict.ALLOW, reason, 0, amount, available, state.scope, state.kind)


def _next_delay_us(state: BudgetState) -> int:
    """The backoff of the throttle level one above the state's (what a THROTTLE now waits)."""
    return backoff_delay_us(min(state.throttle_level + 1, MAX_THROTTLE_LEVEL))


def _combine(decisions: Sequence[Decision]) -> Decision:
    """One decision for a chain: the first refusal (org first); else the longest throttle; else
    the level with the least left (the binding one)."""
    for d in decisions:
        if not d.admitted:
            return d
    throttled = [d for d in decisions if d.verdict is Verdict.THROTTLE]
    if throttled:
        return max(throttled, key=lambda d: d.delay_us)
    return min(decisions, key=lambda d: d.available)


def _admitted_effects(state: BudgetState, decision: Decision) -> BudgetState:
    if decision.verdict is Verdict.THROTTLE:
        level = min(state.throttle_level + 1, MAX_THROTTLE_LEVEL)
    elif decision.verdict is Verdict.ALLOW:
        level = 0
    else:
        return state
    return state if level == state.throttle_level else _evolve(state, throttle_level=level)


def _refused_effects(
    state: BudgetState, policy: BudgetPolicy, decision: Decision, t: int
) -> tuple[BudgetState, tuple[Alert, ...]]:
    if decision.reason is not Reason.HARD_LIMIT:
        return state, ()
    if policy.hard_limit_action is HardLimitAction.THROTTLE:
        return _evolve(state, throttle_level=min(state.throttle_level + 1, MAX_THROTTLE_LEVEL)), ()
    if policy.overage.suspend_at_hard and not state.suspended:
        suspended = _evolve(state, suspended=True)
        return suspended, (_alert(AlertKind.SUSPENDED, suspended, t, decision.requested, Reason.HARD_LIMIT),)
    return state, ()


def _consume(
    state: BudgetState, policy: BudgetPolicy, amount: int, t: int, decision: Decision
) -> tuple[BudgetState, tuple[Alert, ...]]:
    """Add ``amount`` to consumption and raise the alerts its crossing of the limits calls for."""
    # saturate (ledger.limits.MAX_BUDGET_COUNTER): a counter at its bound is past every ceiling already
    before, after = state.consumed, min(state.consumed + amount, MAX_BUDGET_COUNTER)
    allocation = state.allocation
    hard_cap, ceiling = policy.caps(allocation)
    # Emergency use is the consumption that lands between the hard cap and the ceiling.
    draw = min(max(after, hard_cap), ceiling) - min(max(before, hard_cap), ceiling)
    new = _evolve(state, consumed=after, emergency_used=min(state.emergency_used + draw, MAX_BUDGET_COUNTER))
    rank_before = _STATUS_RANK[policy.status(before, allocation)]
    rank_after = _STATUS_RANK[policy.status(after, allocation)]
    alerts = []
    if rank_before < _STATUS_RANK[BudgetStatus.WARNING] <= rank_after:
        alerts.append(_alert(AlertKind.SOFT_LIMIT, new, t, amount))
    if rank_before < _STATUS_RANK[BudgetStatus.CRITICAL] <= rank_after:
        alerts.append(_alert(AlertKind.HARD_LIMIT, new, t, amount))
    if draw:
        alerts.append(_alert(AlertKind.EMERGENCY_RESERVE, new, t, draw))
    if not decision.admitted:
        alerts.append(_alert(AlertKind.BREACH, new, t, amount, decision.reason))
    elif after > ceiling and amount and policy.hard_limit_action is HardLimitAction.ALERT_ONLY:
        alerts.append(_alert(AlertKind.BREACH, new, t, amount, Reason.OVER_CEILING))
    return new, tuple(alerts)


def _check_chain(levels: Sequence[Level]) -> list[Level]:
    checked = list(levels)
    if not checked:
        raise ValidationError("levels", [], "must hold at least one (state, policy) level")
    for state, policy in checked:
        _check_level(state, policy)
    kinds = {state.kind for state, _ in checked}
    if len(kinds) != 1:
        raise ValidationError("levels", sorted(k.value for k in kinds), "must all be of one budget kind")
    depths = [state.scope.level.depth for state, _ in checked]
    if any(a >= b for a, b in itertools.pairwise(depths)):
        raise ValidationError(
            "levels", [s.scope.level.value for s, _ in checked], "must run from org down to agent, one per level"
        )
    return checked


def _admit_chain(
    levels: Sequence[Level],
    amount: int,
    t: int,
    admit: Callable[[BudgetState, BudgetPolicy, Decision], tuple[BudgetState, tuple[Alert, ...]]],
    check: Callable[[BudgetState], None] = lambda state: None,
) -> ChainResult:
    """Decide ``amount`` at every level; if all admit, ``admit`` it at every level, else apply the
    refusal's effects (throttle level, suspension) at the levels that refused and nothing else."""
    checked = _check_chain(levels)
    amount = require_int("amount", amount)
    t = require_time("event_time_us", t)
    advanced = [_advance(state, policy, t) for state, policy in checked]
    for a in advanced:
        check(a.state)
    own = [_decide(a.state, policy, amount, t) for a, (_, policy) in zip(advanced, checked, strict=True)]
    combined = _combine(own)
    alerts = [alert for a in advanced for alert in a.alerts]
    states = []
    for a, (_, policy), decision in zip(advanced, checked, own, strict=True):
        state = a.state
        more: tuple[Alert, ...] = ()
        if combined.admitted:
            state, more = admit(_admitted_effects(state, decision), policy, decision)
        elif not decision.admitted:
            state, more = _refused_effects(state, policy, decision, t)
        states.append(state)
        alerts.extend(more)
    return ChainResult(tuple(states), combined, tuple(alerts))


def _single(result: ChainResult) -> SpendResult:
    return SpendResult(result.states[0], result.decision, result.alerts)


# ---------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------


def advance(state: BudgetState, policy: BudgetPolicy, event_time_us: int) -> Advanced:
    """Bring the state to ``event_time_us``: reset at a window boundary, expire reservations whose
    time is up. Every other operation does this first; call it alone to learn what expired."""
    _check_level(state, policy)
    return _advance(state, policy, require_time("event_time_us", event_time_us))


def view(state: BudgetState, policy: BudgetPolicy, at_us: int | None = None) -> BudgetView:
    """The view row of the state (advanced to ``at_us`` first, if given)."""
    _check_level(state, policy)
    if at_us is not None:
        state = _advance(state, policy, require_time("at_us", at_us)).state
    allocation, consumed, reserved = state.allocation, state.consumed, state.reserved
    # a zero allocation is infinitely used once anything is consumed, and unused otherwise
    utilisation = consumed / allocation if allocation else (math.inf if consumed else 0.0)
    return BudgetView(
        scope=state.scope,
        kind=state.kind,
        window_start_us=state.window_start_us,
        window_end_us=state.window_start_us + policy.reset_interval_us,
        allocation=allocation,
        consumed=consumed,
        reserved=reserved,
        remaining=allocation - consumed,
        available=max(0, policy.ceiling(allocation) - consumed - reserved),
        utilisation=utilisation,
        status=view_status(policy, consumed, allocation),
        emergency_used=state.emergency_used,
        throttle_level=state.throttle_level,
        suspended=state.suspended,
    )


def view_status(policy: BudgetPolicy, consumed: int, allocation: int) -> BudgetStatus:
    """A view's status: overdrawn when ``consumed`` exceeds ``allocation``, else the seed's (``policy.status``)."""
    return BudgetStatus.OVERDRAWN if consumed > allocation else policy.status(consumed, allocation)


def admission_chain(levels: Sequence[Level], amount: int, event_time_us: int) -> Decision:
    """The decision on spending ``amount`` at every level (org first), checked before the spend;
    changes nothing. The same path as ``apply_spend_chain``, so the two always agree."""
    return _admit_chain(levels, amount, event_time_us, lambda state, policy, decision: (state, ())).decision


def admission(state: BudgetState, policy: BudgetPolicy, amount: int, event_time_us: int) -> Decision:
    """``admission_chain`` for one level."""
    return admission_chain(((state, policy),), amount, event_time_us)


def apply_spend_chain(levels: Sequence[Level], amount: int, event_time_us: int) -> ChainResult:
    """Admit ``amount`` at every level and, if all admit, count it at every level; else count it
    nowhere (the refusing levels still raise their throttle level or suspend)."""

    def spend(state: BudgetState, policy: BudgetPolicy, decision: Decision) -> tuple[BudgetState, tuple[Alert, ...]]:
        return _consume(state, policy, amount, event_time_us, decision)

    return _admit_chain(levels, amount, event_time_us, spend)


def apply_spend(state: BudgetState, policy: BudgetPolicy, amount: int, event_time_us: int) -> SpendResult:
    """``apply_spend_chain`` for one level."""
    return _single(apply_spend_chain(((state, policy),), amount, event_time_us))


def record_usage(state: BudgetState, policy: BudgetPolicy, amount: int, event_time_us: int) -> SpendResult:
    """Count a spend that already happened (a usage event on the log: a fact, not a request).

    It is always counted. The decision is what admission would have said just before it; if that
    was a refusal, a BREACH alert carries the reason, and a hard-limit refusal under a suspending
    policy suspends the budget. Apply it to every level of the chain (each level is independent,
    since nothing is refused).
    """
    _check_level(state, policy)
    amount = require_int("amount", amount)
    t = require_time("event_time_us", event_time_us)
    advanced = _advance(state, policy, t)
    decision = _decide(advanced.state, policy, amount, t)
    if decision.admitted:
        counted, alerts = _consume(_admitted_effects(advanced.state, decision), policy, amount, t, decision)
        return SpendResult(counted, decision, advanced.alerts + alerts)
    counted, alerts = _consume(advanced.state, policy, amount, t, decision)
    counted, more = _refused_effects(counted, policy, decision, t)
    return SpendResult(counted, decision, advanced.alerts + alerts + more)


def reserve_chain(
    levels: Sequence[Level],
    reservation_id: str,
    amount: int,
    event_time_us: int,
    ttl_us: int = DEFAULT_RESERVATION_TTL_US,
) -> ChainResult:
    """Hold ``amount`` at every level until ``event_time_us + ttl_us`` (or the earliest window end
    of the chain, if sooner), if every level admits it. A racing request that would push any level
    past its ceiling is refused; the first one admitted keeps its hold."""
    reservation_id = require_id("reservation_id", reservation_id)
    ttl_us = require_int("ttl_us", ttl_us, low=1, high=MAX_BUDGET_INTERVAL_US)
    t = require_time("event_time_us", event_time_us)
    checked = _check_chain(levels)
    # The end of each level's window once advanced to t (a late event keeps the current window).
    ends = [max(state.window_start_us, policy.window_start(t)) + policy.reset_interval_us for state, policy in checked]
    expires_us = min(t + ttl_us, *ends)

    def unique(state: BudgetState) -> None:
        if state.reservation(reservation_id) is not None:
            raise ValidationError("reservation_id", reservation_id, "is already live", scope=state.scope.id)

    def hold(state: BudgetState, policy: BudgetPolicy, decision: Decision) -> tuple[BudgetState, tuple[Alert, ...]]:
        held = Reservation(reservation_id, decision.requested, t, expires_us)
        ordered = tuple(sorted((*state.reservations, held), key=lambda r: r.reservation_id))
        return _evolve(state, reservations=ordered), ()

    return _admit_chain(checked, amount, t, hold, unique)


def reserve(
    state: BudgetState,
    policy: BudgetPolicy,
    reservation_id: str,
    amount: int,
    event_time_us: int,
    ttl_us: int = DEFAULT_RESERVATION_TTL_US,
) -> SpendResult:
    """``reserve_chain`` for one level."""
    return _single(reserve_chain(((state, policy),), reservation_id, amount, event_time_us, ttl_us))


def commit_chain(levels: Sequence[Level], reservation_id: str, amount: int, event_time_us: int) -> ChainResult:
    """Settle a live reservation with the ``amount`` actually spent (<= the amount held) at every
    level; the rest of the hold is freed. A reservation that is not live at every level (unknown,
    expired, already settled) is refused with NOT_RESERVED and nothing changes but the advance.
    Spending more than was reserved is an input error: reserve more, or record the excess as a
    spend of its own."""
    checked = _check_chain(levels)
    reservation_id = require_id("reservation_id", reservation_id)
    amount = require_int("amount", amount)
    t = require_time("event_time_us", event_time_us)
    advanced = [_advance(state, policy, t) for state, policy in checked]
    alerts = [alert for a in advanced for alert in a.alerts]
    decisions = []
    for a, (_, policy) in zip(advanced, checked, strict=True):
        state = a.state
        held = state.reservation(reservation_id)
        available = max(0, policy.ceiling(state.allocation) - state.consumed - state.reserved)
        if held is None:
            refused = Decision(Verdict.DENY, Reason.NOT_RESERVED, 0, amount, available, state.scope, state.kind)
            return ChainResult(tuple(a.state for a in advanced), refused, tuple(alerts))
        if amount > held.amount:
            raise ValidationError(
                "amount", amount, "exceeds the reservation", reservation_id=reservation_id, reserved=held.amount
            )
        decisions.append(Decision(Verdict.ALLOW, Reason.RESERVED, 0, amount, available, state.scope, state.kind))
    states = []
    for a, (_, policy), decision in zip(advanced, checked, decisions, strict=True):
        live = tuple(r for r in a.state.reservations if r.reservation_id != reservation_id)
        released = _evolve(a.state, reservations=live)
        state, more = _consume(released, policy, amount, t, decision)
        states.append(state)
        alerts.extend(more)
    return ChainResult(tuple(states), _combine(decisions), tuple(alerts))


def commit(
    state: BudgetState, policy: BudgetPolicy, reservation_id: str, amount: int, event_time_us: int
) -> SpendResult:
    """``commit_chain`` for one level."""
    return _single(commit_chain(((state, policy),), reservation_id, amount, event_time_us))


def release(state: BudgetState, policy: BudgetPolicy, reservation_id: str, event_time_us: int) -> Released:
    """Free a reservation unused. Releasing one that is not live is not an error (it may have
    expired a moment earlier): ``reservation`` is then None. Apply to every level of the chain."""
    _check_level(state, policy)
    reservation_id = require_id("reservation_id", reservation_id)
    advanced = _advance(state, policy, require_time("event_time_us", event_time_us))
    held = advanced.state.reservation(reservation_id)
    if held is None:
        return Released(advanced.state, None, advanced.alerts)
    live = tuple(r for r in advanced.state.reservations if r.reservation_id != reservation_id)
    return Released(_evolve(advanced.state, reservations=live), held, advanced.alerts)


def resume(state: BudgetState, policy: BudgetPolicy, event_time_us: int) -> Advanced:
    """Lift a suspension before the window ends (an operator's decision), with a RESUMED alert."""
    advanced = advance(state, policy, event_time_us)
    if not advanced.state.suspended:
        return advanced
    resumed = replace(advanced.state, suspended=False)
    return Advanced(resumed, advanced.expired, (*advanced.alerts, _alert(AlertKind.RESUMED, resumed, event_time_us, 0)))


def record_confidence(state: BudgetState, confidence: float | None) -> BudgetState:
    """The state after a result reported with ``confidence`` (None: reported without one, which
    keeps the last value). The gate then closes at confidence >= the policy's threshold and reopens
    only when a lower confidence is reported."""
    if not isinstance(state, BudgetState):
        raise ValidationError("state", state, "must be a BudgetState")
    return replace(state, last_confidence=next_confidence(state.last_confidence, confidence))


# ---------------------------------------------------------------------------------------------
# Reallocation between sibling budgets (ledger.economics.reallocation plans; this applies)
# ---------------------------------------------------------------------------------------------


def reallocatable(state: BudgetState, policy: BudgetPolicy) -> int:
    """The allocation this budget does not need: what it could give before its reserve is counted.

    It keeps enough allocation that its hard cap still covers consumed + reserved (for a hard
    limit below 100% that is more than consumed + reserved), so giving never pushes it over.
    """
    _check_level(state, policy)
    committed = state.consumed + state.reserved
    return max(0, state.allocation - max(committed, policy.allocation_needed(committed)))


def shortfall(state: BudgetState, policy: BudgetPolicy, amount: int) -> int:
    """How much more allocation this budget needs for ``amount`` to fit under its hard cap.

    The emergency reserve is left out on purpose: lending idle budget from a sibling comes before
    drawing on the reserve.
    """
    _check_level(state, policy)
    total = state.consumed + state.reserved + require_int("amount", amount)
    return max(0, policy.allocation_needed(total) - state.allocation)


def participant(state: BudgetState, policy: BudgetPolicy) -> Participant:
    """The budget as reallocation sees it (its agent id is the scope id)."""
    return Participant(state.scope.id, policy.priority, reallocatable(state, policy), policy.resolved_min_reserve)


def adjust_allocation(state: BudgetState, policy: BudgetPolicy, delta: int, event_time_us: int) -> Advanced:
    """Move this window's allocation by ``delta`` (one side of a transfer). A negative delta may not
    take more than the budget can spare above its reserve."""
    delta = require_int("delta", delta, low=-INT64_MAX, high=INT64_MAX)
    advanced = advance(state, policy, event_time_us)
    current = advanced.state
    spare = max(0, reallocatable(current, policy) - policy.resolved_min_reserve)
    if -delta > spare:
        raise ValidationError("delta", delta, "would take the budget below its reserve or its commitments", spare=spare)
    allocation = require_int("allocation", current.allocation + delta)
    return Advanced(replace(current, allocation=allocation), advanced.expired, advanced.alerts)


def reallocate(budgets: Sequence[Level], needy: str, amount: int, event_time_us: int) -> Reallocated | Refusal:
    """Cover ``needy``'s shortfall for a spend of ``amount`` from its siblings, atomically.

    ``budgets`` are sibling budgets of one kind at one scope level (the needy one among them).
    Returns every budget advanced to ``event_time_us`` with the transfers applied, or a Refusal
    when the eligible donors cannot cover it all, in which case nothing moves.
    """
    levels = list(budgets)
    if not levels:
        raise ValidationError("budgets", [], "must hold the needy budget and its siblings")
    for state, policy in levels:
        _check_level(state, policy)
    if len({(s.kind, s.scope.level) for s, _ in levels}) != 1:
        raise ValidationError(
            "budgets",
            [(s.kind.value, s.scope.level.value) for s, _ in levels],
            "must share one kind and one scope level",
        )
    t = require_time("event_time_us", event_time_us)
    advanced = [_advance(state, policy, t) for state, policy in levels]
    participants = [participant(a.state, policy) for a, (_, policy) in zip(advanced, levels, strict=True)]
    ids = [p.agent_id for p in participants]
    require_id("needy", needy)
    if needy not in ids:
        raise ValidationError("needy", needy, "is not among the budgets")
    index = ids.index(needy)
    plan = plan_reallocation(participants, needy, shortfall(advanced[index].state, levels[index][1], amount))
    if isinstance(plan, Refusal):
        return plan
    delta = dict.fromkeys(ids, 0)
    for transfer in plan:
        delta[transfer.donor] -= transfer.amount
        delta[transfer.recipient] += transfer.amount
    states = tuple(replace(a.state, allocation=a.state.allocation + delta[a.state.scope.id]) for a in advanced)
    return Reallocated(states, plan, tuple(alert for a in advanced for alert in a.alerts))
