"""Deterministic simulation of any processor under faults (TigerBeetle's VOPR, in miniature).

One seed fixes everything. A ``Scenario`` builds the world: an in-memory log whose data topic has
several partitions, the operator, the demo's agents (``ledger.testing.workload``) emitting its seeded
workload with their own clock skew and batch sizes, and the operator appending **late control events**
(prices, budget policies, allocation and settlement rules, key rotations and revocations) in the middle
of the data they concern, with event times earlier than that data (back-dated). ``Knobs`` says how
much of each; every random choice is drawn from the seed.

A ``Simulation`` then runs one processor (any of ``processors.REGISTRY``) against that world, step by
step. ``inject_faults`` makes the log misbehave (a producer retry appends a record twice, garbage
arrives, polls find a partition empty so partitions interleave differently, the client re-delivers
records) and crashes the runner at every step of its commit protocol (in-memory state is dropped and
a new runner, with a new random batch size, opens the same DuckDB file). After every step an
``Oracle`` that applies exactly the batches the runner committed, in the order it consumed them,
to a fresh verifier checks:

1. positions never move backwards, and only by whole committed batches;
2. the committed ``quarantine`` rows equal the oracle's verdicts (nothing lost, nothing twice);
3. journal: the committed ``events`` rows equal the oracle's (no lost update, no double apply);
4. dead letters (the journal's): none is published twice, none is lost once the outbox was flushed.

``drain_and_compare`` finally drains the log without faults and checks the invariant that matters
most: **the live state's digest equals a replay's from offset 0** (fixed order, one batch size, no
faults), as ``tokenledger replay`` would compute it. A processor whose state depends on batch
boundaries, partition interleaving, crash points or on when a control event arrived fails it.

Settlements reads the allocations topic: its scenario runs a fault-free allocations runner upstream
after the data arrives, so the topic grows step by step like the data topic does.

    python scripts/simulate.py --seed 17 --processor budgets     # replay one seed, verbosely
    python scripts/simulate.py --seeds 0-99                      # every processor
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ledger.economics.price_events import default_price_events
from ledger.errors import RejectError
from ledger.integrity.keyring import KeyRing
from ledger.integrity.keys import SigningKey
from ledger.integrity.verify import Verifier, Where
from ledger.log import MemoryLog, Record
from ledger.sdk.emitter import Emitter
from ledger.testing.workload import AGENTS, PROJECT, demo_policies, registration, workload
from ledger.wire import codec
from ledger.wire.events import (
    ALLOCATION_METHODS,
    SETTLEMENT_TIERS,
    AgentRegistered,
    AllocationRule,
    Body,
    BudgetPolicy,
    ClockPolicy,
    Context,
    Grant,
    KeyRevoked,
    KeyRotated,
    PriceSet,
    SettlementRule,
)
from processors.journal import Journal
from processors.runtime.processor import Item, Processor
from processors.runtime.runner import Crash, Runner
from processors.runtime.store import Store

PREFIX = "sim"
TOPIC = f"{PREFIX}.events"
CONTROL = f"{PREFIX}.control"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
CRASH_POINTS = ("before_commit", "inside_commit", "after_commit", "before_produce", "after_produce")
CONTROL_KINDS = ("price_set", "budget_policy", "allocation_rule", "settlement_rule", "key_rotated", "key_revoked",
                 "clock_policy", "grant")
ECONOMIC_KINDS = ("price_set", "budget_policy", "allocation_rule", "settlement_rule")
UPSTREAM = {"allocations": "allocations"}  # input topic -> the processor that produces it
FAULT_SEED_SALT = 7919  # the fault stream is seeded apart from the workload's, so knobs change one, not both


@dataclass(frozen=True)
class Knobs:
    """How much of each thing a seed randomises. Ranges are inclusive ``(lo, hi)``; probabilities are per
    step unless said otherwise. The defaults are the full hunt; tests narrow them."""

    steps: int = 16  # each step costs a DuckDB commit or a crash and reopen: few steps, many events each
    partitions: int = 3  # of the data topic
    events_per_step: tuple[int, int] = (0, 12)  # workload events emitted per step
    emitter_batch: tuple[int, int] = (1, 6)  # events per signed record, drawn per agent (and per new key)
    max_records: tuple[int, int] = (1, 6)  # the runner's batch size, drawn each time a runner opens
    clock_skew_us: int = 0  # extra: each producer's clock is off by a seeded amount in [-skew, +skew]
    # Producer clocks against the log's (the skew window judges them): mostly a little behind or ahead, inside
    # the default window; with skew_out_p, an agent's clock is off by more, behind or ahead, and its records
    # are quarantined as clock_skew (or, behind with a backfill grant in force, accepted as backfill). Each
    # step, with skew_change_p, one agent's clock is drawn again (a clock jumps, an NTP fix).
    skew_in_us: tuple[int, int] = (-120_000_000, 30_000_000)
    skew_out_us: tuple[int, int] = (360_000_000, 3_600_000_000)
    skew_out_p: float = 0.15
    skew_change_p: float = 0.1
    crash_p: float = 0.1  # per crash point passed
    empty_p: float = 0.3  # a data partition's poll comes back empty (partitions interleave differently)
    dup_p: float = 0.15  # the client re-delivers up to 3 records already read
    retry_p: float = 0.05  # a producer retry appends an existing data record again
    garbage_p: float = 0.03  # a record that is not a batch at all
    control_p: float = 0.3  # the operator appends a control event this step
    control_kinds: tuple[str, ...] = CONTROL_KINDS  # which kinds it draws from
    backdated: frozenset[str] = frozenset(CONTROL_KINDS)  # kinds whose event time lies before "now"
    backdate_us: tuple[int, int] = (1_000_000, 90_000_000)  # how far before the newest data event
    control_late_p: float = 0.5  # the step's control event arrives after its data (else before)
    max_revocations: int = 1  # revoked agents sign nothing afterwards: keep most of the workload alive
    rotate_revoked: bool = True  # a rotation may name an already-revoked key (the operator re-keys an agent)

    def quiet(self) -> Knobs:
        """The same workload with no faults (the drain and the replay use it)."""
        return replace(self, crash_p=0.0, empty_p=0.0, dup_p=0.0)


@dataclass
class Result:
    seed: int
    processor: str = "journal"
    steps: int = 0
    crashes: Counter[str] = field(default_factory=Counter)
    controls: Counter[str] = field(default_factory=Counter)
    records: int = 0
    events: int = 0
    rejected: int = 0
    reject_codes: Counter[str] = field(default_factory=Counter)  # quarantined records by reject code
    digest: str = ""
    trace: list[str] = field(default_factory=list)


class InvariantError(AssertionError):
    """An invariant of the simulation failed (the message says which; the seed replays it)."""


def key(name: str) -> SigningKey:
    return SigningKey.from_seed(name, hashlib.sha256(b"sim-" + name.encode()).digest())


def processor_key(name: str) -> SigningKey:
    return key(f"processor.{name}")


class ManualClock:
    def __init__(self, start_us: int) -> None:
        self.now_us = start_us

    def advance(self, us: int) -> int:
        self.now_us += us
        return self.now_us

    def ns(self) -> int:
        return self.now_us * 1000


class FaultyLog:
    """The MemoryLog seen through a misbehaving client: polls that find nothing, duplicate deliveries."""

    def __init__(self, inner: MemoryLog, rng: random.Random, *, empty_p: float, dup_p: float) -> None:
        self.inner, self.rng, self.empty_p, self.dup_p = inner, rng, empty_p, dup_p
        self.url = inner.url

    def read(self, topic: str, partition: int, offset: int, max_records: int = 1000,
             timeout_s: float = 0.0) -> list[Record]:
        if topic != CONTROL and self.rng.random() < self.empty_p:
            return []  # this partition's fetch is late: other partitions go first
        recs = self.inner.read(topic, partition, offset, max_records)
        if recs and self.rng.random() < self.dup_p:
            back = max(0, offset - self.rng.randint(1, 3))
            recs = self.inner.read(topic, partition, back, max_records) + recs  # re-delivery
        return recs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# ---------------------------------------------------------------------------------------------- the world


class Scenario:
    """Setup only: the log, the keys, the registrations and default prices, the agents' emitters, and the
    seeded arrival of data and control events (``arrive``). It knows nothing about the runner under test."""

    def __init__(self, seed: int, processor: type[Processor], knobs: Knobs, tmp: Path) -> None:
        self.seed, self.processor, self.knobs, self.tmp = seed, processor, knobs, tmp
        self.rng = random.Random(seed)
        self.operator = key("operator")
        self.anchors = {"operator": self.operator.public.raw}
        self.names = [a for a, _, _, _ in AGENTS]
        self.keys = {a: key(a) for a in self.names}
        self.key_no = dict.fromkeys(self.names, 0)
        self.revoked: set[str] = set()  # agents whose current key is revoked
        self.revocations = 0
        self.skew = {a: self._draw_skew() for a in self.names}
        self.newest_us = T0  # newest event time appended so far (back-dating is relative to it)
        # the log's clock: append times follow the workload's true time (not the producers' skewed claims)
        self.clock = ManualClock(T0)
        self.mem = MemoryLog(wall_clock_us=lambda: self.clock.now_us)
        self.mem.ensure_topic(CONTROL, 1)
        self.mem.ensure_topic(TOPIC, knobs.partitions)
        self.backfill: set[str] = set()  # agents holding a backfill grant
        upstream = [UPSTREAM[t] for t in processor.topics if t in UPSTREAM]
        self.signers = {n: processor_key(n) for n in [processor.name, *upstream]}
        self.op = Emitter(self.mem, self.operator, topic=CONTROL, batch_size=1, background_flush=False,
                          clock_ns=self.clock.ns)
        self._bootstrap()
        self.emitters = {a: self._emitter(a) for a in self.names}
        self.work = self._skewed(workload(tasks=10**6, seed=seed, start_us=T0 + 1_000_000, run=f"sim{seed}"))
        self.upstream = [self._upstream_runner(n) for n in upstream]

    def _bootstrap(self) -> None:
        op = self.operator
        self.control(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), T0)
        for i, (a, _, _, prio) in enumerate(AGENTS):
            self.control(registration(a, self.keys[a].public.raw, self.keys[a].key_id, prio), T0 + 1 + i)
        for k in self.signers.values():
            self.control(AgentRegistered(k.signer_id, k.key_id, k.public.raw, "processor"), T0 + 10)
        for body in default_price_events():  # in force from the beginning, as `tokenledger init` appends them
            self.control(body, T0 + 20)
        for policy in demo_policies(start_us=T0):
            self.control(policy, T0 + 30)

    def _emitter(self, agent: str) -> Emitter:
        # one state directory per agent: after a key rotation the new emitter continues the signer's chain
        return Emitter(self.mem, self.keys[agent], topic=TOPIC, batch_size=self.rng.randint(*self.knobs.emitter_batch),
                       background_flush=False, clock_ns=self.clock.ns, state_dir=self.tmp / "emitters" / agent)

    def _draw_skew(self) -> int:
        k, rng = self.knobs, self.rng
        extra = rng.randint(-k.clock_skew_us, k.clock_skew_us)
        if rng.random() < k.skew_out_p:
            return rng.choice((-1, 1)) * rng.randint(*k.skew_out_us) + extra
        return rng.randint(*k.skew_in_us) + extra

    def _skewed(self, events: Iterator[tuple[str, Body, int, Context]]
                ) -> Iterator[tuple[str, Body, int, int, Context]]:
        """(agent, body, claimed time, true time, context): the claim is the agent's skewed clock."""
        for agent, body, t, ctx in events:
            yield agent, body, max(T0 + 1_000, t + self.skew[agent]), t, ctx

    def _upstream_runner(self, name: str) -> tuple[Runner, Store]:
        from processors import get

        cls = get(name)
        store = Store(self.tmp / f"upstream-{name}.duckdb", cls.views)
        return Runner(cls(), self.mem, store, anchors=self.anchors, topic_prefix=PREFIX,
                      key=self.signers[name]), store

    # ------------------------------------------------------------------------------------ arrivals

    def control(self, body: Body, t_us: int) -> None:
        self.op.emit(body, event_time_us=t_us)
        self.op.flush()

    def arrive(self, step: int) -> list[str]:
        """This step's new records: workload events, and perhaps one control event before or after them."""
        rng, k = self.rng, self.knobs
        notes: list[str] = []
        late = rng.random() < k.control_late_p
        want_control = rng.random() < k.control_p and bool(k.control_kinds)
        if want_control and not late:
            notes.append(self._control_event(step))
        if rng.random() < k.skew_change_p:
            agent = rng.choice(self.names)
            self.skew[agent] = self._draw_skew()
            notes.append(f"clock of {agent} now off by {self.skew[agent] // 1_000_000} s")
        for _ in range(rng.randint(*k.events_per_step)):
            agent, body, t, true_t, ctx = next(self.work)
            self.clock.now_us = max(self.clock.now_us, true_t)  # the log appends at the workload's true time
            self.emitters[agent].emit(body, event_time_us=t, context=ctx)
            self.newest_us = max(self.newest_us, t)
        if rng.random() < 0.5:
            rng.choice(list(self.emitters.values())).flush()
        if want_control and late:
            notes.append(self._control_event(step))
        for runner, _ in self.upstream:
            runner.run_until_caught_up()
        return notes

    def _control_event(self, step: int) -> str:
        rng, k = self.rng, self.knobs
        kind = rng.choice(k.control_kinds)
        backdated = kind in k.backdated
        t = max(T0 + 100, self.newest_us - rng.randint(*k.backdate_us)) if backdated else self.newest_us + 1
        live = [a for a in self.names if a not in self.revoked]
        rotatable = self.names if k.rotate_revoked else live
        if kind == "key_rotated" or (kind == "key_revoked" and (self.revocations >= k.max_revocations or not live)):
            return self._rotate(rng.choice(rotatable), t)
        if kind == "key_revoked":
            agent = rng.choice(live)
            self.emitters[agent].flush()  # what it signed before the revocation is on the log first
            self.revoked.add(agent)
            self.revocations += 1
            self.control(KeyRevoked(agent, self.keys[agent].key_id, reason="simulated"), t)
            return f"key_revoked {agent} at {t - T0}"
        if kind in ("clock_policy", "grant"):
            return self._clock_control(kind, t)
        body = self._economic(kind, t)
        self.control(body, t)
        return f"{kind} at {t - T0} effective {getattr(body, 'effective_from_us', 0) - T0}"

    def _clock_control(self, kind: str, t: int) -> str:
        """The operator's say over time: a new skew window, or a backfill grant given or withdrawn."""
        rng = self.rng
        if kind == "clock_policy":
            policy = ClockPolicy(max_behind_us=rng.choice((60_000_000, 300_000_000, 1_800_000_000)),
                                 max_ahead_us=rng.choice((10_000_000, 60_000_000, 600_000_000)))
            self.control(policy, t)
            return f"clock_policy at {t - T0} behind {policy.max_behind_us} ahead {policy.max_ahead_us}"
        agent = rng.choice(self.names)
        active = agent not in self.backfill or rng.random() < 0.3
        max_age = rng.choice((3_600_000_000, 86_400_000_000)) if active else 0
        self.control(Grant(agent, "backfill", max_age_us=max_age, active=active), t)
        (self.backfill.add if active else self.backfill.discard)(agent)
        return f"grant backfill {agent} {'max_age ' + str(max_age) if active else 'withdrawn'} at {t - T0}"

    def _rotate(self, agent: str, t: int) -> str:
        old = self.emitters.pop(agent)
        old.close()  # flushes: everything signed by the old key precedes the rotation on the log
        self.key_no[agent] += 1
        new = key(f"{agent}#{self.key_no[agent]}")
        self.control(KeyRotated(agent, self.keys[agent].key_id, new.key_id, new.public.raw), t)
        self.keys[agent] = new
        self.revoked.discard(agent)
        self.emitters[agent] = self._emitter(agent)
        return f"key_rotated {agent} at {t - T0}"

    def _economic(self, kind: str, t: int) -> Body:
        rng = self.rng
        if kind in self.knobs.backdated:  # "in force from" before the event itself, or from the start
            effective = max(0, rng.choice((0, t, t - rng.randint(0, 30_000_000))))
        else:  # in force from its announcement, or from a time still ahead
            effective = rng.choice((t, t + rng.randint(0, 30_000_000)))
        if kind == "price_set":
            base = rng.choice([p for p in default_price_events() if (p.provider, p.model) in
                               {(pr, m) for _, pr, m, _ in AGENTS}])
            scale = rng.choice((1, 2, 3, 5))
            return PriceSet(base.provider, base.model, base.input_micros_per_mtok * scale,
                            base.output_micros_per_mtok * scale, base.cache_read_micros_per_mtok * scale,
                            base.cache_write_micros_per_mtok * scale, effective_from_us=effective)
        if kind == "budget_policy":
            agent = rng.choice(self.names)
            scope, scope_id = rng.choice((("agent", agent), ("project", PROJECT)))
            return BudgetPolicy(scope=scope, scope_id=scope_id, budget_kind=rng.choice(("llm_tokens", "usd")),
                                allocation=rng.randint(10_000, 5_000_000), reset_interval_us=3_600_000_000,
                                hard_limit_action=rng.choice(("alert_only", "throttle", "deny")),
                                suspend_at_hard=False, effective_from_us=effective)
        if kind == "allocation_rule":
            method = rng.choice([m for m in ALLOCATION_METHODS if m not in ("nash_bargaining",)])
            return AllocationRule(rule_id=f"rule{rng.randint(1, 3)}", method=method,
                                  project=rng.choice((None, PROJECT)), enabled=rng.random() < 0.85,
                                  effective_from_us=effective)
        if kind == "settlement_rule":
            return SettlementRule(rule_id=f"srule{rng.randint(1, 2)}", tier=rng.choice(SETTLEMENT_TIERS),
                                  method=rng.choice(("requestor_pays", "equal_split", "proportional")),
                                  window_us=rng.choice((10_000_000, 60_000_000, 300_000_000)),
                                  threshold_micros=rng.randint(0, 50_000), enabled=rng.random() < 0.85,
                                  effective_from_us=effective)
        raise ValueError(f"unknown control kind {kind!r}")

    def faulty_producers(self, fault_rng: random.Random) -> None:
        """A producer retry appends a record twice; something that is not a batch arrives."""
        k = self.knobs
        if fault_rng.random() < k.retry_p:
            p = fault_rng.randrange(k.partitions)
            end = self.mem.end_offset(TOPIC, p)
            if end:
                rec = self.mem.read(TOPIC, p, fault_rng.randrange(end), 1)[0]
                self.mem.append(TOPIC, [(rec.key, rec.value)])
        if fault_rng.random() < k.garbage_p:
            noise = bytes(fault_rng.getrandbits(8) for _ in range(fault_rng.randint(0, 40)))
            self.mem.append(TOPIC, [(b"noise", noise)])

    def finish(self) -> None:
        """Everything emitted is on the log (the drain must see the whole workload)."""
        for em in self.emitters.values():
            em.flush()
        for runner, _ in self.upstream:
            runner.run_until_caught_up()

    def close(self) -> None:
        for em in self.emitters.values():
            em.close()
        self.op.close()
        for _, store in self.upstream:
            store.close()

    def input_partitions(self) -> list[tuple[str, int]]:
        """The processor's input partitions in the order the runner polls them: control, then by topic."""
        out: list[tuple[str, int]] = []
        for logical in self.processor.topics:
            topic = f"{PREFIX}.{logical}"
            self.mem.ensure_topic(topic)
            out += [(topic, p) for p in range(self.mem.partitions(topic))]
        return sorted(out, key=lambda tp: (tp[0] != CONTROL, tp))


# ---------------------------------------------------------------------------------------------- the oracle


class Oracle:
    """Feeds a fresh verifier exactly the records the runner committed since the last check, in the order
    it consumed them, and compares the store with what that implies."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.mem = scenario.mem
        self.verifier = Verifier(KeyRing(scenario.anchors, by_log_order=scenario.mem.total_order))
        self.order = scenario.input_partitions()
        self.committed = dict.fromkeys(self.order, 0)
        self.journal = scenario.processor is Journal
        self.events: set[tuple[str, int, int]] = set()
        self.quarantine: set[tuple[str, int, int, str]] = set()
        self.accepted = 0

    def absorb(self, new_positions: dict[tuple[str, int], int]) -> None:
        """The records committed since the last check, judged in the log's one order (append time): what
        the runner commits is always a prefix of that order (``ledger.log.order``), so the records between
        two checks, merged by append time, are exactly the sequence it folded."""
        fresh: list[tuple[Record, tuple[str, int]]] = []
        for tp in self.order:
            old, new = self.committed[tp], new_positions.get(tp, 0)
            if new < old:
                raise InvariantError(f"position of {tp} went back from {old} to {new}")
            fresh += [(rec, tp) for rec in self.mem.read(tp[0], tp[1], old, new - old)]
            self.committed[tp] = new
        for rec, tp in sorted(fresh, key=lambda pair: pair[0].append_time_us):
            self._judge(rec, tp)

    def _judge(self, rec: Record, tp: tuple[str, int]) -> None:
        try:
            acc = self.verifier.check_record(rec.value, Where.of(rec))
        except RejectError as e:
            self.quarantine.add((rec.topic, rec.partition, rec.offset, e.code.value))
            return
        self.accepted += len(acc.events)
        if self.journal:
            fx = Journal().fold([Item(rec, acc.key_id, d) for d in acc.events], [])
            for part in fx.appends.get("events", []):
                self.events.update(zip(part["event_id"], part["log_partition"], part["log_offset"], strict=True))

    def check(self, store: Store) -> None:
        self.absorb(store.positions())
        got_q = set(store.query("SELECT topic, log_partition, log_offset, code FROM quarantine"))
        if got_q != self.quarantine:
            raise InvariantError(f"quarantine differs: missing {sorted(self.quarantine - got_q)[:5]}, "
                                 f"extra {sorted(got_q - self.quarantine)[:5]}")
        if self.journal:
            self._check_journal(store)

    def _check_journal(self, store: Store) -> None:
        got_events = set(store.query("SELECT event_id, log_partition, log_offset FROM events"))
        n_events = store.query("SELECT count(*) FROM events")[0][0]
        if n_events != len(got_events):
            raise InvariantError(f"{n_events - len(got_events)} event rows applied twice")
        if got_events != self.events:
            raise InvariantError(f"events differ from the oracle: missing {len(self.events - got_events)}, "
                                 f"extra {len(got_events - self.events)}")
        letters: Counter[str] = Counter()
        self.mem.ensure_topic(f"{PREFIX}.rejected")
        for rec in self.mem.read(f"{PREFIX}.rejected", 0, 0, 10**6):
            for raw in codec.decode_batch(rec.value).events:
                letters[codec.decode_event(raw).event.event_id] += 1
        if letters and max(letters.values()) > 1:
            raise InvariantError("a dead letter was published twice")
        if not store.outbox() and len(letters) != len(self.quarantine):
            raise InvariantError(f"{len(self.quarantine)} rejected records but {len(letters)} dead letters")


# ---------------------------------------------------------------------------------------------- the run


class Simulation:
    """One processor, one seed: steps with faults, then a fault-free drain compared with a replay."""

    def __init__(self, seed: int, processor: type[Processor], knobs: Knobs, tmp: Path, verbose: bool) -> None:
        self.scenario = Scenario(seed, processor, knobs, tmp)
        self.processor, self.knobs, self.tmp, self.verbose = processor, knobs, tmp, verbose
        self.fault_rng = random.Random(seed * FAULT_SEED_SALT + 1)
        self.result = Result(seed, processor.name)
        self.oracle = Oracle(self.scenario)
        self.db = tmp / "state.duckdb"
        self.log = FaultyLog(self.scenario.mem, self.fault_rng, empty_p=knobs.empty_p, dup_p=knobs.dup_p)
        self.crash_p = knobs.crash_p
        self.runner: Runner | None = None
        self.store: Store | None = None

    def _crash_hook(self, point: str) -> None:
        if self.fault_rng.random() < self.crash_p:
            self.result.crashes[point] += 1
            raise Crash(point)

    def _open(self, max_records: int) -> None:
        store = Store(self.db, self.processor.views)
        try:
            self.runner = Runner(self.processor(), self.log, store, anchors=self.scenario.anchors,
                                 topic_prefix=PREFIX, key=self.scenario.signers[self.processor.name],
                                 crash_hook=self._crash_hook, max_records=max_records)
        except BaseException:
            store.close()
            raise
        self.store = store

    def _drop(self) -> None:
        """The process dies: its in-memory state is gone; only the DuckDB file remains."""
        if self.store is not None:
            self.store.close()
        self.runner, self.store = None, None

    def run(self) -> Result:
        try:
            for step in range(self.knobs.steps):
                self.result.steps += 1
                for note in self.scenario.arrive(step):
                    self.result.controls[note.split()[0]] += 1
                    self._say(f"step {step}: {note}")
                self.inject_faults(step)
            self.drain_and_compare()
        finally:
            self._drop()
            self.scenario.close()
        return self.result

    def inject_faults(self, step: int) -> None:
        """Faulty producers, then one runner step that may crash at any commit point (then the file is
        checked by a fresh store, as the restarted process would find it); the invariants after it."""
        self.scenario.faulty_producers(self.fault_rng)
        try:
            if self.runner is None:
                self._open(self.fault_rng.randint(*self.knobs.max_records))
            assert self.runner is not None
            self.runner.step()
        except Crash as c:
            self._say(f"step {step}: crash {c}")
            self._drop()
            found = Store(self.db, self.processor.views)
            try:
                self.oracle.check(found)
            finally:
                found.close()
            return
        assert self.store is not None
        self.oracle.check(self.store)

    def drain_and_compare(self) -> None:
        """Drain without faults, check the invariants, then compare the live digest with a replay's."""
        self.scenario.finish()
        self._drop()
        self.log.empty_p = self.log.dup_p = 0.0
        self.crash_p = 0.0
        self._open(self.fault_rng.randint(*self.knobs.max_records))
        assert self.runner is not None and self.store is not None
        self.runner.run_until_caught_up()
        self.oracle.check(self.store)
        live = self.store.digest()
        res = self.result
        res.digest = live["digest"]
        res.events = len(self.oracle.events) if self.oracle.journal else self.oracle.accepted
        res.rejected = len(self.oracle.quarantine)
        res.reject_codes = Counter(code for *_, code in self.oracle.quarantine)
        res.records = sum(self.oracle.committed.values())
        replayed = replay(self.processor, self.scenario.mem, self.scenario.anchors, self.tmp / "replay.duckdb")
        if replayed["digest"] != live["digest"]:
            differ = sorted(t for t in live["tables"] if live["tables"][t] != replayed["tables"][t])
            rows = ", ".join(f"{t} {live['tables'][t]['rows']} vs {replayed['tables'][t]['rows']} rows"
                             for t in differ)
            example = self._first_difference(differ[0], self.tmp / "replay.duckdb")
            raise InvariantError(f"{self.processor.name}: live digest differs from a replay from offset 0 in "
                                 f"{rows} (live vs replay); e.g. {example}; controls appended: {dict(res.controls)}")

    def _first_difference(self, table: str, replayed: Path) -> str:
        """One row of ``table`` only the live state has and one only the replay has (for the report)."""
        assert self.store is not None
        view = next(v for v in self.store.views if v.name == table)
        # identifiers come from the processor's View definitions, never from the log
        sql = f"SELECT {', '.join(view.public_columns)} FROM {table}"  # noqa: S608
        other = Store(replayed, self.processor.views, read_only=True)
        try:
            theirs = {tuple(map(_short, r)) for r in other.query(sql)}
        finally:
            other.close()
        ours = {tuple(map(_short, r)) for r in self.store.query(sql)}
        return (f"{table} live-only {sorted(ours - theirs, key=str)[:1]}, "
                f"replay-only {sorted(theirs - ours, key=str)[:1]}")

    def _say(self, line: str) -> None:
        self.result.trace.append(line)
        if self.verbose:
            print(f"  {line}")


def _short(v: Any) -> Any:
    return v[:8].hex() + "..." if isinstance(v, (bytes, bytearray)) else v


def replay(processor: type[Processor], log: MemoryLog, anchors: dict[str, bytes], target: Path) -> dict[str, Any]:
    """A clean rebuild from offset 0 (one batch size, no faults, nothing produced), as ``tokenledger replay``."""
    store = Store(target, processor.views)
    try:
        Runner(processor(), log, store, anchors=anchors, topic_prefix=PREFIX, produce=False).run_until_caught_up()
        return store.digest()
    finally:
        store.close()


def simulate(seed: int, *, processor: type[Processor] | str = Journal, knobs: Knobs | None = None,
             steps: int | None = None, verbose: bool = False, workdir: Path | None = None) -> Result:
    """Run one seed against one processor (a class or a registry name); raises InvariantError on a failure."""
    if isinstance(processor, str):
        from processors import get

        processor = get(processor)
    knobs = knobs or Knobs()
    if steps is not None:
        knobs = replace(knobs, steps=steps)
    tmp = Path(tempfile.mkdtemp(prefix=f"sim-{processor.name}-{seed}-", dir=workdir))
    try:
        return Simulation(seed, processor, knobs, tmp, verbose).run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
