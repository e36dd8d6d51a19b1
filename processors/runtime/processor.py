"""What a processor is: a name, the views it owns, and a pure ``fold`` from verified input to effects.

The runtime (``processors.runtime.runner``) owns everything else — polling, verification, the DuckDB
transaction, tracking, quarantine, the outbox of derived events, publishing and digests — so a
processor module is only its views and its fold. The helpers at the end (``BATCH``, ``Timeline``,
``columns_of``) are shared by several processors, which never import each other.

``fold`` must be deterministic: its output depends only on the batch and on the processor's own
state (restored from its DuckDB tables by ``restore``), never on the wall clock, randomness or the
order of dict/set iteration.
"""

from __future__ import annotations

import abc
import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from ledger import limits
from ledger.economics.reputation import TrustEvent, TrustFold
from ledger.log import Record
from ledger.units import MILLI
from ledger.wire.codec import DecodedEvent
from ledger.wire.events import Body
from processors.runtime.view import Column as Column  # re-exported: processors describe their views with these
from processors.runtime.view import View as View


@dataclass(frozen=True, slots=True)
class Item:
    """One verified event with where it came from."""

    record: Record
    key_id: str
    decoded: DecodedEvent
    # accepted only through the signer's backfill grant: its claimed time is older than the skew window allows
    # live data (``record.append_time_us - max_behind``). It counts in its own (historical) windows, but must
    # never move anything live — a window, a watermark, a reservation expiry, a cadence.
    backfilled: bool = False


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One record that failed verification."""

    record: Record
    code: str
    reason: str
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Derived:
    """A derived event the processor wants published (after its state is committed).

    ``idempotency_key`` must be derived from the inputs (e.g. ``"rejected:topic:partition:offset"``):
    it makes the event id deterministic, so a replay or a re-send after a crash cannot mint a new one.
    """

    topic: str  # logical name, e.g. "rejected" (published on <prefix>.rejected)
    body: Body
    event_time_us: int
    idempotency_key: str


@dataclass
class Effects:
    """What one batch changes: rows appended or upserted per table (column dicts, for the Arrow bulk
    path), SQL statements, and derived events — all applied in the batch's one transaction, in that
    order (appends, upserts, statements)."""

    appends: dict[str, list[dict[str, list[Any]]]] = field(default_factory=dict)
    upserts: dict[str, list[dict[str, list[Any]]]] = field(default_factory=dict)  # by primary key
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    derived: list[Derived] = field(default_factory=list)

    def append(self, table: str, columns: dict[str, Any]) -> None:
        """Rows as columns: lists, or Arrow arrays where a column needs an exact type."""
        if columns and len(next(iter(columns.values()))):
            self.appends.setdefault(table, []).append(columns)

    def upsert(self, table: str, columns: dict[str, Any]) -> None:
        """Rows that replace existing rows with the same primary key (snapshot views)."""
        if columns and len(next(iter(columns.values()))):
            self.upserts.setdefault(table, []).append(columns)


BROADCAST = "*"  # a route key meaning every shard (processors.runtime.exchange)


class Processor(abc.ABC):
    """Base class. Subclasses set ``name`` and ``views`` and implement ``fold``."""

    name: ClassVar[str]
    doc: ClassVar[str] = ""
    # logical input topics, the home maps them to <prefix>.<name>; "control" is drained before each batch
    topics: ClassVar[tuple[str, ...]] = ("control", "events")
    # logical topics its Derived events go to (besides the StateCheckpoints every processor signs, on a chain of
    # their own), so ``processors.order_by_topics`` can start a processor after those whose topics it reads. At
    # most one: all of a processor's derived events are one chain, which its readers can verify only whole, on the
    # one topic they read
    derived_topics: ClassVar[tuple[str, ...]] = ()
    # data records (signed batches) one poll brings: the batch's rows are in memory at once until they commit
    data_records_per_poll: ClassVar[int] = limits.MAX_RUNNER_DATA_RECORDS
    views: ClassVar[tuple[View, ...]] = ()
    publishes_rejections: ClassVar[bool] = False  # one processor (the journal) sends dead letters
    # sharding (processors.runtime.shards): True only when every row of every view is a function of one data
    # partition (plus control), so N instances each owning some partitions hold, together, the one instance's rows
    shardable: ClassVar[bool] = False
    # why not, naming the state that crosses partitions (shown when --instances/--shard is refused)
    shard_refusal: ClassVar[str] = "its sharding was not analysed"
    # table -> the column holding the input topic a row came from: rows of the control topic are made alike by
    # every shard (every shard reads control), so only shard 0 publishes, digests and sends them
    control_rows: ClassVar[dict[str, str]] = {}
    # sharding through the exchange (processors.runtime.exchange): True when ``route``, ``row_owner`` and
    # ``derived_owner`` say which shard owns every row and derived event, and to which shards each event must go
    exchanges: ClassVar[bool] = False
    # an exchange-sharded processor that keeps every row it folds and hides (rather than drops) the rows other shards
    # own (``row_owner_sql``): for a shard whose decisions read state it does not show (budgets folds every event that
    # can move a budget, BROADCAST; settlements keeps the rules and the watermark row on every shard)
    replicated: ClassVar[bool] = False
    # an exchange-sharded processor's tables every shard fills alike from control (prices, rules, grants): kept whole
    # on every shard, so ``restore`` finds them after a restart, and shown (published, digested) by shard 0 only
    control_tables: ClassVar[tuple[str, ...]] = ()

    def route(self, item: Item) -> tuple[str, ...]:
        """The owner keys of the state this event may change (an exchange-sharded processor's router sends it to
        the shard of each; ``BROADCAST`` sends it to every shard): every event that can change a row must reach that
        row's owner. A function of the item and of what ``observe_control`` kept."""
        return ()

    # set by an exchange shard's owner (processors.runtime.exchange): which owner keys this instance keeps
    _owner_keys: Callable[[str], bool] | None = None

    def owns(self, key: str) -> bool:
        """Whether this instance keeps the state of owner key ``key``: always, but on a shard of an exchange-sharded
        processor, where a fold may skip work for keys other shards own (an event broadcast for one effect only)."""
        return self._owner_keys is None or self._owner_keys(key)

    def observe_control(self, item: Item) -> None:  # noqa: B027  (optional hook: most routes need no control)
        """On a router's instance, every accepted control event in the log's order, before the events after it are
        routed (say, to learn each agent's registered org); replayed from control's start when the router starts."""

    def row_owner(self, table: str, row: dict[str, Any]) -> str | None:
        """The owner key of one row of ``table`` (None: a row every shard makes alike from control; shard 0 keeps
        it). Only the shard owning the key keeps the row."""
        return None

    def row_owner_sql(self, table: str) -> str | None:
        """A replicated processor's ``row_owner`` as a VARCHAR SQL expression over ``table``'s columns (None: a row
        every shard makes alike from control; shard 0 shows it)."""
        return None

    def derived_owner(self, derived: Derived) -> str | None:
        """The owner key of one derived event (None: shard 0 sends it); only that shard signs and sends it."""
        return None

    def restore(self, query: Any) -> None:  # noqa: B027  (optional hook: a stateless processor restores nothing)
        """Load in-memory state from the processor's tables (``query(sql, params) -> rows``)."""

    @abc.abstractmethod
    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        """The effects of one verified batch (pure: same state + same batch → same effects)."""


# ------------------------------------------------------------------ helpers shared by processors

# The runner fills ``_batch`` with the commit batch number in every view that has it, so the publisher
# can write an append-only view incrementally (only the rows of batches it has not published yet).
BATCH = Column("_batch", "BIGINT", "commit batch (internal: incremental publishing)")


V = TypeVar("V")


class Timeline(Generic[V]):
    """Versions of one thing over event time: the one in force at t has the latest (start, seq) <= t.

    ``seq`` is the order the versions were read from the log, so two versions with the same start are
    decided by the log (the later one wins), never by arrival timing."""

    __slots__ = ("keys", "values")

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []
        self.values: list[V] = []

    def add(self, start_us: int, seq: int, value: V) -> None:
        i = bisect.bisect_right(self.keys, (start_us, seq))
        self.keys.insert(i, (start_us, seq))
        self.values.insert(i, value)

    def at(self, t_us: int) -> V | None:
        # (t, +inf) sorts after every (t, seq): the latest version starting at or before t
        i = bisect.bisect_right(self.keys, (t_us, float("inf"))) - 1
        return self.values[i] if i >= 0 else None


def columns_of(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row dicts (same keys) to the column dict ``Effects.append`` takes."""
    keys = list(rows[0])
    return {k: [r[k] for r in rows] for k in keys}


# The grants a processor acts on, as it folds them: from the operator-signed ``grant`` control events it reads,
# each in force from its EVENT time. Every reader now folds control and data in the log's one order
# (``ledger.log.order``), so live and replay see the same grants at every record either way; the event time (bounded
# by the skew window) keeps a grant's start visible and independent of which batch carried it. Kept in an
# append-only view of its own so ``restore`` brings the history back. The journal's ``grants`` view is the public
# record of every grant; this is only what a processor needs to decide. Each processor names its own view (the
# views of all processors share one query namespace).
def grant_history_view(name: str) -> View:
    """The append-only view a processor keeps its ``GrantBook`` in, under its own ``name``."""
    return View(
        name=name,
        doc="Operator grants this processor acts on (grader, reserve, ...), each in force from its event time.",
        columns=(
            Column("agent_id", "VARCHAR", "the signer granted"),
            Column("capability", "VARCHAR", "backfill | notary | grader | reserve"),
            Column("scope", "VARCHAR", "reserve: '<level>:<id>'; '' otherwise"),
            Column("active", "BOOLEAN", "true: granted; false: withdrawn"),
            Column("event_time_us", "BIGINT", "the grant's event time: in force from then on (us)"),
            Column("seq", "BIGINT", "the order this processor read the grants in (ties at one event time)"),
            BATCH,
        ))


def trust_fold_view(name: str) -> View:
    """The snapshot view a processor keeps its ``TrustFold``'s settled sums in, under its own ``name``."""
    return View(
        name=name, mode="snapshot", primary_key=("subject", "dimension", "half_life_us"),
        doc="Trust settled into decayed sums: per subject, dimension and half-life, every counted trust event "
            "older than the subject's latest TRUST_RECENT_EVENTS, decayed to ref_us (the rest are kept one by one).",
        columns=(
            Column("subject", "VARCHAR", "who the trust is about"),
            Column("dimension", "VARCHAR", "accuracy | compliance | feedback | reliability"),
            Column("half_life_us", "BIGINT", "the half-life the settled events decay by"),
            Column("ref_us", "BIGINT", "event time the sum is decayed to: the latest settled event's"),
            Column("total", "DOUBLE", "the settled events' values decayed to ref_us, summed (trust tokens)"),
            Column("events", "BIGINT", "trust events settled into the sum"),
        ))


def restore_trust_fold(fold: TrustFold, query: Callable[..., list[tuple[Any, ...]]], view: View,
                       history: str, counted: str = "TRUE") -> None:
    """Bring ``fold`` back from ``view`` (its settled sums) and the ``history`` table (every counted trust event;
    ``counted`` is the SQL condition that picks them): only each subject's latest ``fold.recent`` events are
    read, so a restore costs the same at any log size."""
    sums = query(f"SELECT subject, dimension, half_life_us, ref_us, total, events FROM {view.name}")  # noqa: S608
    recent = query(
        "SELECT event_id, event_time_us, issuer, subject, dimension, value_milli, half_life_us FROM ("  # noqa: S608
        "  SELECT *, row_number() OVER (PARTITION BY subject ORDER BY event_time_us DESC, event_id DESC) AS n"
        f"  FROM {history} WHERE {counted}) WHERE n <= ?", [fold.recent])
    fold.restore(sums, (TrustEvent(eid, issuer, subject, dim, vm / MILLI, t, hl)
                        for eid, t, issuer, subject, dim, vm, hl in recent))


class GrantBook:
    """The grants one processor acts on (see ``grant_history_view``): per (agent, capability, scope) a timeline of
    grants and withdrawals over event time."""

    __slots__ = ("pending", "seq", "timelines", "view")

    def __init__(self, view: View) -> None:
        self.view = view
        self.timelines: dict[tuple[str, str, str], Timeline[bool]] = {}
        self.seq = 0
        self.pending: list[dict[str, Any]] = []

    def restore(self, query: Any) -> None:
        for agent, capability, scope, active, t, seq in query(
                f"SELECT agent_id, capability, scope, active, event_time_us, seq FROM {self.view.name} "  # noqa: S608
                "ORDER BY seq"):
            self.timelines.setdefault((agent, capability, scope), Timeline()).add(t, seq, bool(active))
            self.seq = max(self.seq, seq)

    def apply(self, agent_id: str, capability: str, scope: str, active: bool, event_time_us: int) -> None:
        self.seq += 1
        self.timelines.setdefault((agent_id, capability, scope), Timeline()).add(event_time_us, self.seq, active)
        self.pending.append({"agent_id": agent_id, "capability": capability, "scope": scope, "active": active,
                             "event_time_us": event_time_us, "seq": self.seq})

    def has(self, agent_id: str, capability: str, scope: str, at_us: int) -> bool:
        """Whether the grant is in force at event time ``at_us``."""
        tl = self.timelines.get((agent_id, capability, scope))
        return bool(tl is not None and tl.at(at_us))

    def holders(self, capability: str, at_us: int) -> frozenset[str]:
        """The signers holding ``capability`` (without a scope) at event time ``at_us``."""
        return frozenset(a for (a, c, s), tl in self.timelines.items() if c == capability and not s and tl.at(at_us))

    def flush(self, fx: Effects) -> None:
        """Append the grants read since the last flush to this processor's grant view."""
        if self.pending:
            fx.append(self.view.name, columns_of(self.pending))
            self.pending = []
