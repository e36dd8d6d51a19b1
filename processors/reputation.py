"""The reputation processor: trust events decaying by event time → scores, tier and budget multiplier.

What it does
    Every ``Trust`` event (issuer = its signer) is recorded in ``trust_history``; the ones that count
    feed the subject's ``reputation`` row, computed by ``ledger.economics.reputation.reputation`` (the pure
    function: per-dimension decayed scores, the weighted overall score, seed 002's tier and budget
    multiplier). Trust an agent issues about itself is recorded with ``counted = false`` and never
    counts.

    Incentives (seed 002, ``ledger.economics.reputation.task_incentive``): an ``Outcome`` with a score,
    signed by a signer holding the operator's ``grader`` grant (a ``grant`` control event, in force from its
    event time, kept in ``reputation_grants``) about another agent (``subject_id``), is a graded task of that
    agent; a score >= 0.8 adds score * 10 accuracy trust, a score < 0.5 takes (1 - score) * 10 away. The
    change is recorded as a trust event issued by ``processor.reputation`` about the subject (id = the
    outcome's event id), so it counts like any other rating and a replay derives the same one. A
    self-reported score (no subject, or by a signer without the grant) is recorded in ``trust_history``
    with ``counted = false`` and never moves accuracy or the multiplier: an agent cannot grade itself up.

Deposits
    ``Deposit`` events (spam deposits, ``ledger.wire.events.Deposit``) are folded into ``deposits``, one row per
    deposit: ``create`` signed by the requestor commits it (``status`` committed); ``refund`` or ``forfeit``
    signed by that deposit's responder, naming the same two parties, resolves it once (refunded / forfeited).
    Anything else (a create by another signer or under a used id, a resolution of an unknown or already
    resolved deposit, by another signer or naming other parties) changes no deposit and is recorded in
    ``deposit_events`` with ``accepted = false`` and the reason, like every accepted step. Each row also says
    which tier the ledger's own reputation put the requestor in at the create (``ledger_tier``: the overall
    score x 100 classified as CWEP does, ``ledger.economics.econ.classify_reputation``; ``unknown`` while no
    trust about it counts), beside the tier the requestor priced its deposit at.

Which time
    Decay uses each trust event's claimed event time, bounded by the skew window of its record's append
    time (``ledger.integrity.verify``): a future-stamped rating can no longer stay undecayed for years.
    Append time is not
    used: it says when the log heard of a rating, not when it was given.
    ``as_of_us`` is the latest claimed time of a subject's ratings. A backfilled rating (``Item.backfilled``)
    counts, decayed by its own historical time; being older than its append time's window, it can raise
    ``as_of_us`` only while the subject has no later rating, never past what live ratings claim (and the
    row restores from ``trust_history`` alone, so no live/backfill distinction is needed to restart).

Invariants
    * A subject's row is computed at ``as_of_us`` = the event time of the latest trust event about it
      (counted or not) — a value fixed by the log, not by when or in which batches it was read, so a
      replay reaches the same digest. To see the score at a later time, decay it further with
      ``ledger.economics.reputation.reputation(..., at_us)`` over ``trust_history``.
    * Scores equal the pure function's results bit for bit while a subject has at most
      ``TRUST_RECENT_EVENTS`` counted events; past that, older ones are settled into decayed sums
      (``ledger.economics.reputation.TrustFold``, kept in ``reputation_decay``) and agree with it to float
      rounding, so a subject's state stays the same size however long the log grows.
    * ``restore`` reads the settled sums, each subject's latest ``TRUST_RECENT_EVENTS`` counted events from
      ``trust_history`` and the ``reputation`` rows: the same cost at any log size, the same bits as a replay.

Never
    Read the wall clock, count a self-issued trust event, or count a score nobody with the grader grant gave.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.economics.econ import ReputationTier, classify_reputation
from ledger.economics.reputation import (
    INCENTIVE_ISSUER,
    TrustFold,
    incentive_event,
    is_grade,
    trust_event,
)
from ledger.limits import MAX_REPUTATION_SCORE_POINTS
from ledger.units import MILLI
from ledger.wire.events import Deposit, Event, Grant, Outcome, Trust
from ledger.wire.vocab import Capability, TrustDimension
from processors.runtime.processor import (
    Column,
    Effects,
    GrantBook,
    Item,
    Processor,
    Quarantined,
    View,
    columns_of,
    grant_history_view,
    restore_trust_fold,
    trust_fold_view,
)

GRADER = Capability.GRADER.value

REPUTATION = View(
    name="reputation", mode="snapshot", primary_key=("agent_id",),
    doc="Per agent: decayed trust score per dimension and overall, tier and budget multiplier (seed 002).",
    columns=(
        Column("agent_id", "VARCHAR", "the subject of the trust events"),
        Column("as_of_us", "BIGINT", "event time the scores are computed at: its latest trust event"),
        Column("accuracy", "DOUBLE", "score in [0, 1] (0.7 = no ratings)"),
        Column("compliance", "DOUBLE", "score in [0, 1]"),
        Column("feedback", "DOUBLE", "score in [0, 1]"),
        Column("reliability", "DOUBLE", "score in [0, 1]"),
        Column("overall", "DOUBLE", "weighted mean of the four scores"),
        Column("tier", "VARCHAR", "excellent | good | standard | probation | restricted"),
        Column("multiplier", "VARCHAR", "budget multiplier, exact decimal: 1.5 | 1.2 | 1.0 | 0.8 | 0.5"),
        Column("events_counted", "BIGINT", "trust events about the agent that count"),
        Column("events_self", "BIGINT", "trust events ignored: self-issued (or out of range)"),
    ))
REPUTATION_GRANTS = grant_history_view("reputation_grants")
DECAY = trust_fold_view("reputation_decay")
HISTORY = View(
    name="trust_history", doc="Every trust event seen, counted or not, including incentive trust.",
    columns=(
        Column("event_id", "VARCHAR", "the trust event (or, for incentives, the outcome event)"),
        Column("event_time_us", "BIGINT", "event time"),
        Column("issuer", "VARCHAR", "who issued it (processor.reputation for incentives)"),
        Column("subject", "VARCHAR", "who it is about"),
        Column("dimension", "VARCHAR", "accuracy | compliance | feedback | reliability"),
        Column("value_milli", "BIGINT", "signed value in thousandths of a trust token"),
        Column("half_life_us", "BIGINT", "its own half-life (NULL = the dimension's default)"),
        Column("source", "VARCHAR", "trust: the event's source; incentives: incentive:<rule>"),
        Column("counted", "BOOLEAN", "false: self-issued (trust, or a score not given by a grader), or |value| "
                                     "beyond one event's limit (ignored)"),
        Column("_batch", "BIGINT", "commit batch (internal: incremental publishing)"),
    ))

DEPOSITS = View(
    name="deposits", mode="snapshot", primary_key=("deposit_id",),
    doc="Per spam deposit: its parties, amount and tier, and where its life cycle stands (create, refund, forfeit).",
    columns=(
        Column("deposit_id", "VARCHAR", "the deposit"),
        Column("requestor_id", "VARCHAR", "who committed it (the create's signer)"),
        Column("responder_id", "VARCHAR", "who holds it and resolves it"),
        Column("amount_micros", "BIGINT", "amount committed, micro-USD"),
        Column("reputation_tier", "VARCHAR", "tier the requestor priced it at: high | medium | low | unknown"),
        Column("ledger_tier", "VARCHAR", "tier of the requestor's ledger reputation at the create (overall x 100): "
                                         "high | medium | low | unknown (no counted trust)"),
        Column("multiplier_milli", "BIGINT", "effective multiplier (base x reputation), thousandths"),
        Column("interaction_id", "VARCHAR", "the interaction it guards (NULL: none named)"),
        Column("status", "VARCHAR", "committed | refunded | forfeited"),
        Column("created_at_us", "BIGINT", "event time of the create"),
        Column("resolved_at_us", "BIGINT", "event time of the refund or forfeit (NULL while committed)"),
        Column("created_event_id", "VARCHAR", "the create event"),
        Column("resolved_event_id", "VARCHAR", "the refund or forfeit event (NULL while committed)"),
    ))
DEPOSIT_EVENTS = View(
    name="deposit_events", doc="Every deposit event seen, accepted or not, with the reason it was not.",
    columns=(
        Column("event_id", "VARCHAR", "the deposit event"),
        Column("event_time_us", "BIGINT", "event time"),
        Column("signer", "VARCHAR", "who signed it (or, backfilled, the agent it was recorded for)"),
        Column("deposit_id", "VARCHAR", "the deposit it names"),
        Column("action", "VARCHAR", "create | refund | forfeit"),
        Column("accepted", "BOOLEAN", "whether it changed the deposit"),
        Column("reason", "VARCHAR", "why not ('' when accepted)"),
        Column("_batch", "BIGINT", "commit batch (internal: incremental publishing)"),
    ))
RESOLVED_STATUS = {"refund": "refunded", "forfeit": "forfeited"}


class Reputation(Processor):
    name = "reputation"
    # sharded through the exchange (processors.runtime.exchange): a trust event or a graded outcome goes to its
    # subject's shard, a deposit step to its requestor's (whose trust gives the deposit's ledger tier)
    exchanges = True
    control_tables = (REPUTATION_GRANTS.name,)
    doc = "trust decaying by event time: scores per agent and dimension, tier, budget multiplier"
    views = (REPUTATION, HISTORY, REPUTATION_GRANTS, DECAY, DEPOSITS, DEPOSIT_EVENTS)

    def __init__(self) -> None:
        self.trust = TrustFold()
        self.as_of: dict[str, int] = {}
        self.self_count: dict[str, int] = {}
        self.grants = GrantBook(REPUTATION_GRANTS)
        self.deposits: dict[str, dict[str, Any]] = {}  # deposit_id -> its ``deposits`` row
        self._step_requestor: dict[str, str] = {}  # this batch's deposit steps: event id -> the requestor it names

    # ------------------------------------------------------------ sharding (processors.runtime.exchange)

    def route(self, item: Item) -> tuple[str, ...]:
        ev = item.decoded.event
        body = ev.body
        if isinstance(body, Trust):
            return (body.subject_id,)
        if isinstance(body, Outcome) and body.score_milli is not None:
            return (body.subject_id or ev.signer_id,)
        if isinstance(body, Deposit):
            return (body.requestor_id,)
        return ()

    def row_owner(self, table: str, row: dict[str, Any]) -> str | None:
        if table in ("trust_history", DECAY.name):
            return str(row["subject"])
        if table == "reputation":
            return str(row["agent_id"])
        if table == DEPOSITS.name:
            return str(row["requestor_id"])
        if table == DEPOSIT_EVENTS.name:
            return self._step_requestor[row["event_id"]]
        return None  # the grants: from control, alike on every shard

    def restore(self, query: Callable[..., list[tuple[Any, ...]]]) -> None:
        self.grants.restore(query)
        restore_trust_fold(self.trust, query, DECAY, "trust_history", "counted")
        for subject, as_of, n_self in query("SELECT agent_id, as_of_us, events_self FROM reputation"):
            self.as_of[subject] = as_of
            if n_self:
                self.self_count[subject] = n_self
        names = [c.name for c in DEPOSITS.columns]
        for values in query(f"SELECT {', '.join(names)} FROM deposits"):  # noqa: S608 (our own column names)
            row = dict(zip(names, values, strict=True))
            self.deposits[row["deposit_id"]] = row

    def fold(self, items: list[Item], quarantined: list[Quarantined]) -> Effects:
        fx = Effects()
        rows: list[dict[str, Any]] = []
        touched: set[str] = set()
        steps: list[dict[str, Any]] = []
        changed: set[str] = set()
        self._step_requestor = {}
        for it in items:
            ev = it.decoded.event
            body = ev.body
            if isinstance(body, Deposit):
                steps.append(self._deposit_step(ev, body, changed))
                self._step_requestor[ev.event_id] = body.requestor_id
                continue
            if isinstance(body, Grant):
                self.grants.apply(body.agent_id, body.capability, body.scope, body.active, ev.event_time_us)
                continue
            if isinstance(body, Trust):
                row = self._trust(ev, body)
            elif isinstance(body, Outcome) and body.score_milli is not None:
                row = self._incentive(ev, body)
            else:
                continue
            if row is not None:
                rows.append(row)
                touched.add(row["subject"])
        if rows:
            fx.append("trust_history", {k: [r[k] for r in rows] for k in rows[0]})
        if touched:
            snap = [self._row(s) for s in sorted(touched)]
            fx.upsert("reputation", {k: [r[k] for r in snap] for k in snap[0]})
        if settled := self.trust.changed_rows():
            fx.upsert(DECAY.name, columns_of(settled))
        if steps:
            fx.append(DEPOSIT_EVENTS.name, columns_of(steps))
        if changed:
            fx.upsert(DEPOSITS.name, columns_of([self.deposits[d] for d in sorted(changed)]))
        self.grants.flush(fx)
        return fx

    def _deposit_step(self, ev: Event, body: Deposit, changed: set[str]) -> dict[str, Any]:
        """Apply one deposit event; its ``deposit_events`` row (``changed`` gains the deposit if it moved)."""
        reason = self._deposit(ev, body)
        if not reason:
            changed.add(body.deposit_id)
        return {"event_id": ev.event_id, "event_time_us": ev.event_time_us, "signer": ev.agent,
                "deposit_id": body.deposit_id, "action": body.action, "accepted": not reason, "reason": reason}

    def _deposit(self, ev: Event, body: Deposit) -> str:
        """Apply one deposit step; return why it was refused ('' when it was applied)."""
        row = self.deposits.get(body.deposit_id)
        if body.action == "create":
            if row is not None:
                return "deposit_id already created"
            if ev.agent != body.requestor_id:
                return f"a create is signed by the requestor ({body.requestor_id}), not {ev.agent}"
            self.deposits[body.deposit_id] = {
                "deposit_id": body.deposit_id, "requestor_id": body.requestor_id, "responder_id": body.responder_id,
                "amount_micros": body.amount_micros, "reputation_tier": body.reputation_tier,
                "ledger_tier": self._ledger_tier(body.requestor_id, ev.event_time_us),
                "multiplier_milli": body.multiplier_milli, "interaction_id": body.interaction_id,
                "status": "committed", "created_at_us": ev.event_time_us, "resolved_at_us": None,
                "created_event_id": ev.event_id, "resolved_event_id": None}
            return ""
        if row is None:
            return "no such deposit (no create before it in the log)"
        if (body.requestor_id, body.responder_id) != (row["requestor_id"], row["responder_id"]):
            return "names other parties than the create"
        if ev.agent != row["responder_id"]:
            return f"a {body.action} is signed by the responder ({row['responder_id']}), not {ev.agent}"
        if row["status"] != "committed":
            return f"already {row['status']}"
        row.update(status=RESOLVED_STATUS[body.action], resolved_at_us=ev.event_time_us,
                   resolved_event_id=ev.event_id)
        return ""

    def _ledger_tier(self, agent: str, at_us: int) -> str:
        """The CWEP tier of ``agent``'s ledger reputation at ``at_us`` (unknown while no trust about it counts)."""
        if not self.trust.counted(agent):
            return ReputationTier.UNKNOWN.value
        return classify_reputation(self.trust.score(agent, at_us).overall * MAX_REPUTATION_SCORE_POINTS).value

    def _note(self, subject: str, t: int) -> None:
        self.as_of[subject] = max(self.as_of.get(subject, t), t)

    def _trust(self, ev: Event, body: Trust) -> dict[str, Any] | None:
        te = trust_event(ev, body)
        self._note(body.subject_id, ev.event_time_us)
        if te is not None:
            self.trust.add(te)
        else:
            self.self_count[body.subject_id] = self.self_count.get(body.subject_id, 0) + 1
        return {"event_id": ev.event_id, "event_time_us": ev.event_time_us, "issuer": ev.signer_id,
                "subject": body.subject_id, "dimension": body.dimension, "value_milli": body.value_milli,
                "half_life_us": body.half_life_us, "source": body.source, "counted": te is not None}

    def _incentive(self, ev: Event, body: Outcome) -> dict[str, Any] | None:
        if not is_grade(ev, body, self.grants.holders(GRADER, ev.event_time_us)):
            # a self-reported score: kept on record (the confidence still gates budgets), never counted
            subject = body.subject_id or ev.signer_id
            self._note(subject, ev.event_time_us)
            self.self_count[subject] = self.self_count.get(subject, 0) + 1
            assert body.score_milli is not None  # fold only passes scored outcomes
            return {"event_id": ev.event_id, "event_time_us": ev.event_time_us, "issuer": ev.signer_id,
                    "subject": subject, "dimension": TrustDimension.ACCURACY.value, "value_milli": 0,
                    "half_life_us": None, "source": "self_score", "counted": False}
        got = incentive_event(ev, body, self.grants.holders(GRADER, ev.event_time_us))
        if got is None:
            return None
        te, rule = got
        self._note(te.subject, ev.event_time_us)
        self.trust.add(te)
        return {"event_id": ev.event_id, "event_time_us": ev.event_time_us, "issuer": INCENTIVE_ISSUER,
                "subject": te.subject, "dimension": te.dimension.value, "value_milli": round(te.value * MILLI),
                "half_life_us": None, "source": f"incentive:{rule}", "counted": True}

    def _row(self, subject: str) -> dict[str, Any]:
        r = self.trust.score(subject, self.as_of[subject])
        scores = {d.value: s for d, s in r.scores}
        return {"agent_id": subject, "as_of_us": r.at_us, **{d.value: scores[d.value] for d in TrustDimension},
                "overall": r.overall, "tier": r.tier.value, "multiplier": str(r.multiplier),
                "events_counted": self.trust.counted(subject), "events_self": self.self_count.get(subject, 0)}
