"""Deterministic simulation of a processor under faults (TigerBeetle's VOPR, in miniature).

One seed fixes everything: the workload (signers spread over several partitions of an in-memory log,
with duplicate records and garbage mixed in), when new records arrive, which partitions a poll finds
empty (so partitions interleave differently), duplicate deliveries by the "client", and crashes at
every step of the commit protocol (the process dies: in-memory state is dropped and a new runner
opens the same DuckDB file). Event times come from a manual clock.

After every step the simulator checks the invariants against an oracle that applies exactly the
batches the runner committed, in the order it consumed them, to a fresh verifier and fold:

1. positions never move backwards, and only by whole committed batches;
2. the committed `events` and `quarantine` rows equal the oracle's (nothing lost, nothing twice);
3. no dead letter is ever published twice, and none is lost once its batch committed and the
   outbox was flushed;
4. at the end, the live state digest equals a clean rebuild's.

    python scripts/simulate.py --seed 17          # replay one seed, verbosely
    python scripts/simulate.py --seeds 0-199      # hunt
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.integrity.keyring import KeyRing
from ledger.integrity.keys import SigningKey
from ledger.integrity.verify import Verifier, Where
from ledger.log import MemoryLog, Record
from ledger.sdk.emitter import Emitter
from ledger.wire import codec
from ledger.wire.events import Action, AgentRegistered, Context, Data, Flow, Interaction, LlmUsage, Trust
from processors.journal import Journal
from processors.runtime.processor import Item, Quarantined
from processors.runtime.runner import Crash, Runner
from processors.runtime.store import Store

PREFIX = "sim"
TOPIC = f"{PREFIX}.events"
CONTROL = f"{PREFIX}.control"
T0 = 1_767_225_600_000_000
CRASH_POINTS = ("before_commit", "inside_commit", "after_commit", "before_produce", "after_produce")


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
        if topic == TOPIC and self.rng.random() < self.empty_p:
            return []  # this partition's fetch is late: other partitions go first
        recs = self.inner.read(topic, partition, offset, max_records)
        if recs and self.rng.random() < self.dup_p:
            back = max(0, offset - self.rng.randint(1, 3))
            recs = self.inner.read(topic, partition, back, max_records) + recs  # re-delivery
        return recs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Result:
    seed: int
    steps: int = 0
    crashes: Counter = field(default_factory=Counter)
    records: int = 0
    events: int = 0
    rejected: int = 0
    digest: str = ""
    trace: list[str] = field(default_factory=list)


class InvariantError(AssertionError):
    """An invariant of the simulation failed (the message says which; the seed replays it)."""


def key(name: str) -> SigningKey:
    import hashlib

    return SigningKey.from_seed(name, hashlib.sha256(b"sim-" + name.encode()).digest())


def _workload(rng: random.Random, clock: ManualClock, agents: list[str]) -> Any:
    """Endless agent events: (signer, body, time, context)."""
    n = 0
    while True:
        n += 1
        a = rng.choice(agents)
        t = clock.advance(rng.randint(1, 5_000_000))
        ctx = Context(org="sim", task=f"task{n // 7}")
        kind = rng.random()
        if kind < 0.5:
            body: Any = Action("llm.call", usage=LlmUsage("anthropic", "claude-sonnet-4-6", rng.randint(10, 5000),
                                                           rng.randint(1, 800), rng.randint(0, 5)))
        elif kind < 0.65:
            body = Data(bytes_read=rng.randint(0, 10**6), bytes_written=rng.randint(0, 10**4))
        elif kind < 0.8:
            other = rng.choice([x for x in agents if x != a])
            body = Trust(other, rng.choice(("accuracy", "reliability")), rng.randint(-500, 1000))
        else:
            other = rng.choice([x for x in agents if x != a])
            rq, rs = rng.randint(10, 3000), rng.randint(10, 3000)
            body = Interaction(f"i{n}", a, other, "anthropic", "claude-sonnet-4-6", "openai", "gpt-4.1", Flow(rq),
                               Flow(rq, rng.randint(0, rq)), Flow(rs), Flow(rs, rng.randint(0, rs)))
        yield a, body, t, ctx


def simulate(seed: int, *, steps: int = 120, partitions: int = 3, agents: int = 5, crash_p: float = 0.08,
             empty_p: float = 0.3, dup_p: float = 0.15, verbose: bool = False, workdir: Path | None = None) -> Result:
    rng = random.Random(seed)
    fault_rng = random.Random(seed * 7919 + 1)
    res = Result(seed)
    tmp = Path(tempfile.mkdtemp(prefix=f"sim-{seed}-", dir=workdir))
    try:
        return _simulate(seed, rng, fault_rng, res, tmp, steps, partitions, agents, crash_p, empty_p, dup_p, verbose)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _simulate(seed: int, rng: random.Random, fault_rng: random.Random, res: Result, tmp: Path, steps: int,
              partitions: int, n_agents: int, crash_p: float, empty_p: float, dup_p: float, verbose: bool) -> Result:
    clock = ManualClock(T0)
    mem = MemoryLog()
    mem.ensure_topic(CONTROL, 1)
    mem.ensure_topic(TOPIC, partitions)
    op = key("operator")
    anchors = {"operator": op.public.raw}
    names = [f"agent{i}" for i in range(n_agents)]
    keys = {a: key(a) for a in names}
    proc_key = key("processor.journal")
    with Emitter(mem, op, topic=CONTROL, background_flush=False, clock_ns=clock.ns) as em:
        em.emit(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), event_time_us=clock.advance(1))
        for a in names:
            em.emit(AgentRegistered(a, keys[a].key_id, keys[a].public.raw), event_time_us=clock.advance(1))
        em.emit(AgentRegistered(proc_key.signer_id, proc_key.key_id, proc_key.public.raw, "processor"),
                event_time_us=clock.advance(1))
    emitters = {a: Emitter(mem, keys[a], topic=TOPIC, batch_size=rng.randint(1, 6), background_flush=False,
                           clock_ns=clock.ns) for a in names}
    work = _workload(rng, clock, names)

    def crash_hook(point: str) -> None:
        if fault_rng.random() < crash_p:
            res.crashes[point] += 1
            raise Crash(point)

    db = tmp / "state.duckdb"
    log = FaultyLog(mem, fault_rng, empty_p=empty_p, dup_p=dup_p)

    def open_runner() -> tuple[Runner, Store]:
        store = Store(db, Journal.views)
        try:
            return Runner(Journal(), log, store, anchors=anchors, topic_prefix=PREFIX, key=proc_key,
                          crash_hook=crash_hook, max_records=fault_rng.randint(1, 6)), store
        except BaseException:
            store.close()
            raise

    # the oracle: the same verifier and fold, fed exactly what was committed, in consumption order
    oracle = Verifier(KeyRing(anchors))
    o_events: set[tuple[str, int, int]] = set()
    o_quarantine: set[tuple[str, int, int, str]] = set()
    committed = {(CONTROL, 0): 0, **{(TOPIC, p): 0 for p in range(partitions)}}

    def absorb(new_positions: dict[tuple[str, int], int]) -> None:
        """Feed the oracle what the runner committed since the last check. Within a batch the runner
        judges control records first, then data partitions in order; several batches may have been
        committed since the last check, but the control drain makes the verdicts order-independent."""
        for tp in [(CONTROL, 0)] + [(TOPIC, p) for p in range(partitions)]:
            old, new = committed[tp], new_positions.get(tp, 0)
            if new < old:
                raise InvariantError(f"position of {tp} went back from {old} to {new}")
            for rec in mem.read(tp[0], tp[1], old, new - old):
                try:
                    acc = oracle.check_record(rec.value, Where(*tp, rec.offset))
                    items = [Item(rec, acc.key_id, d) for d in acc.events]
                    qs: list[Quarantined] = []
                except Exception as e:  # RejectError
                    items = []
                    qs = [Quarantined(rec, e.code.value, e.reason, dict(e.evidence))]  # type: ignore[attr-defined]
                fx = Journal().fold(items, qs)
                for part in fx.appends.get("events", []):
                    o_events.update(zip(part["event_id"], part["log_partition"], part["log_offset"]))
                o_quarantine.update((q.record.topic, q.record.partition, q.record.offset, q.code) for q in qs)
            committed[tp] = new

    def check(store: Store) -> None:
        absorb(store.positions())
        got_events = set(store.query("SELECT event_id, log_partition, log_offset FROM events"))
        n_events = store.query("SELECT count(*) FROM events")[0][0]
        if n_events != len(got_events):
            raise InvariantError(f"{n_events - len(got_events)} event rows applied twice")
        if got_events != o_events:
            raise InvariantError(f"events differ from the oracle: missing {len(o_events - got_events)}, "
                                 f"extra {len(got_events - o_events)}")
        got_q = set(store.query("SELECT topic, log_partition, log_offset, code FROM quarantine"))
        if got_q != o_quarantine:
            raise InvariantError(f"quarantine differs: missing {o_quarantine - got_q}, extra {got_q - o_quarantine}")
        letters = Counter()
        mem.ensure_topic(f"{PREFIX}.rejected")
        for rec in mem.read(f"{PREFIX}.rejected", 0, 0, 10**6):
            for raw in codec.decode_batch(rec.value).events:
                letters[codec.decode_event(raw).event.event_id] += 1
        if letters and max(letters.values()) > 1:
            raise InvariantError("a dead letter was published twice")
        if not store.outbox() and len(letters) != len(o_quarantine):
            raise InvariantError(f"{len(o_quarantine)} rejected records but {len(letters)} dead letters")

    runner, store = None, None
    try:
        for step in range(steps):
            res.steps += 1
            # new records arrive: agent events, sometimes a duplicate record or garbage
            for _ in range(rng.randint(0, 4)):
                a, body, t, ctx = next(work)
                emitters[a].emit(body, event_time_us=t, context=ctx)
            if rng.random() < 0.5:
                rng.choice(list(emitters.values())).flush()
            if rng.random() < 0.05:
                p = rng.randrange(partitions)
                end = mem.end_offset(TOPIC, p)
                if end:
                    rec = mem.read(TOPIC, p, rng.randrange(end), 1)[0]
                    mem.append(TOPIC, [(rec.key, rec.value)])  # a producer retry appends a record twice
            if rng.random() < 0.03:
                mem.append(TOPIC, [(b"noise", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))))])
            try:
                if runner is None:
                    runner, store = open_runner()
                runner.step()
            except Crash as c:
                res.trace.append(f"step {step}: crash {c}")
                if verbose:
                    print(f"  step {step}: crash at {c}")
                store.close() if store is not None else None
                runner, store = None, None
                verify_store = Store(db, Journal.views)
                try:
                    check(verify_store)
                finally:
                    verify_store.close()
                continue
            check(store)
        for em in emitters.values():
            em.flush()
        # drain without faults
        if store is not None:
            store.close()
        log.empty_p = log.dup_p = 0.0
        crash_p_saved, crash_p = crash_p, 0.0
        del crash_p_saved
        store = Store(db, Journal.views)
        runner = Runner(Journal(), log, store, anchors=anchors, topic_prefix=PREFIX, key=proc_key)
        runner.run_until_caught_up()
        check(store)
        res.digest = store.digest()["digest"]
        res.events = len(o_events)
        res.rejected = len(o_quarantine)
        res.records = sum(committed.values())
        store.close()
        store = None
        # a clean rebuild (no faults, fixed order) reaches the same digest
        clean = Store(tmp / "clean.duckdb", Journal.views)
        try:
            Runner(Journal(), mem, clean, anchors=anchors, topic_prefix=PREFIX, produce=False).run_until_caught_up()
            if clean.digest()["digest"] != res.digest:
                raise InvariantError("live digest differs from a clean rebuild")
        finally:
            clean.close()
    finally:
        if store is not None:
            store.close()
        for em in emitters.values():
            em.close()
    return res
