"""Shared helpers for the ledger tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ledger import limits
from ledger.integrity.keys import SigningKey, save_key
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import OPERATOR_ID, Home
from ledger.units import US_PER_HOUR
from ledger.wire import codec
from ledger.wire.events import AgentRegistered, Body, ClockPolicy, Context, Grant, KeyRevoked

# The tests' event times start here: six hours before the hour the test run began. Readers judge every
# agent's claimed time against its record's append time (the skew window), and the log appends at the wall
# clock, so test data must claim times near the wall clock; ``make_home`` widens the window to its maximum
# (a day behind) so the tests' few hours of workload are live data, not backfill. Hour-aligned: tests about
# hourly budget windows see the same boundaries as with a fixed date.
# The environment carries it to the processes a test starts (writers, racers), so they claim the same times.
_NOW_US = time.time_ns() // 1000
T0 = int(os.environ.setdefault("TOKENLEDGER_TEST_T0", str(_NOW_US - _NOW_US % US_PER_HOUR - 6 * US_PER_HOUR)))
TEST_WINDOW = ClockPolicy(max_behind_us=limits.MAX_CLOCK_SKEW_US, max_ahead_us=limits.DEFAULT_MAX_CLOCK_AHEAD_US)


def seed_key(name: str) -> SigningKey:
    """A deterministic key (golden vectors, reproducible tests)."""
    return SigningKey.from_seed(name, hashlib.sha256(b"tokenledger-test-" + name.encode()).digest())


def make_home(path: Path, *, agents: tuple[str, ...] = ("alice", "bob"), log_url: str | None = None,
              topic_prefix: str | None = None) -> Home:
    """A ledger home whose log holds the operator's and the agents' registrations (``topic_prefix``: topics of
    its own on a shared cluster)."""
    home = Home.init(path, log_url=log_url) if topic_prefix is None else Home.init(path, log_url=log_url,
                                                                                  topic_prefix=topic_prefix)
    op = home.operator_key()
    log = home.open_log()
    try:
        with Emitter.for_operator(home, log) as em:
            em.emit(AgentRegistered(agent_id=OPERATOR_ID, key_id=op.key_id, public_key=op.public.raw, role="operator"),
                    event_time_us=T0)
            for i, a in enumerate(agents):
                k = SigningKey.generate(a)
                save_key(home.key_path(a), k)
                em.emit(AgentRegistered(agent_id=a, key_id=k.key_id, public_key=k.public.raw, priority=i + 1),
                        event_time_us=T0 + 1 + i)
            em.emit(TEST_WINDOW, event_time_us=T0 + 1 + len(agents))
    finally:
        log.close()
    return home


def revoke(home: Home, agent: str, t: int = T0 + 500) -> None:
    log = home.open_log()
    try:
        with Emitter.for_operator(home, log) as em:
            em.emit(KeyRevoked(agent_id=agent, key_id=home.load_key(agent).key_id, reason="test"), event_time_us=t)
    finally:
        log.close()


def grant(home: Home, agent: str, capability: str, scope: str = "", *, max_age_us: int = 0, active: bool = True,
          t: int = T0 + 50) -> str:
    """Append the operator's ``grant`` control event (``active=False`` withdraws it); returns its event id."""
    log = home.open_log()
    try:
        with Emitter.for_operator(home, log) as em:
            return em.emit(Grant(agent_id=agent, capability=capability, scope=scope, max_age_us=max_age_us,
                                 active=active), event_time_us=t)
    finally:
        log.close()


def build_record(key: SigningKey, bodies: list[Body], *, start_seq: int = 1, prev_hash: bytes = bytes(32),
                 t: int = T0, context: Context | None = None, key_id: str | None = None,
                 version: int = codec.BATCH_V1) -> tuple[bytes, bytes]:
    """A signed batch built by hand (no emitter): returns (record bytes, hash of its last event). ``version``:
    the envelope (v1, what writers wrote before v2, by default: hand-built records keep the old one covered)."""
    ctx = context or Context()
    raws, hashes = [], []
    h = prev_hash
    for i, body in enumerate(bodies):
        content = codec.encode_content(t + i, ctx, body)
        eid = codec.derive_event_id(key.signer_id, None, content)
        raw = codec.assemble_event(event_id=eid, signer_id=key.signer_id, seq=start_seq + i, prev_hash=h,
                                   idempotency_key=None, content=content)
        h = codec.event_hash(raw)
        raws.append(raw)
        hashes.append(h)
    kid = key_id or key.key_id
    sig = key.sign(codec.signing_bytes(version, key.signer_id, kid, hashes))
    return codec.encode_batch(key.signer_id, kid, raws, sig, version), h


def fill(home: Home, *, tasks: int = 20, batch_size: int = 7, seed: int = 3, run: str = "r1") -> int:
    """Register the demo's agents and append its workload; returns the number of agent events."""
    with Filler(home, batch_size=batch_size) as f:
        return f.run(tasks=tasks, seed=seed, run=run)


class Filler:
    """``fill`` that keeps its log and emitters open across calls: a long build (scripts/bench_scale.py) would
    otherwise reopen every agent's emitter per call, reloading an idempotency window that grows with the log."""

    def __init__(self, home: Home, *, batch_size: int = 7) -> None:
        from ledger.testing.workload import AGENTS, registration

        self.log = home.open_log()
        try:
            keys = {}
            with Emitter.for_operator(home, self.log) as op:
                for i, (agent, _, _, prio) in enumerate(AGENTS):
                    if home.key_path(agent).exists():
                        keys[agent] = home.load_key(agent)
                        continue
                    keys[agent] = SigningKey.generate(agent)
                    save_key(home.key_path(agent), keys[agent])
                    op.emit(registration(agent, keys[agent].public.raw, keys[agent].key_id, prio),
                            event_time_us=T0 + i)
            self.emitters = {a: Emitter(self.log, k, topic=home.topic, state_dir=home.state_dir,
                                        batch_size=batch_size, background_flush=False) for a, k in keys.items()}
        except BaseException:
            self.log.close()
            raise

    def run(self, *, tasks: int, seed: int, run: str, start_us: int = T0 + 1_000_000) -> int:
        """Append one demo workload (``tasks`` tasks, labelled ``run``, from event time ``start_us``); returns
        its number of events."""
        from ledger.testing.workload import workload

        n = 0
        for agent, body, t, ctx in workload(tasks=tasks, seed=seed, start_us=start_us, run=run):
            self.emitters[agent].emit(body, event_time_us=t, context=ctx)
            n += 1
        return n

    def close(self) -> None:
        try:
            for em in self.emitters.values():
                em.close()
        finally:
            self.log.close()

    def __enter__(self) -> Filler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def inject_bad(home: Home) -> dict[str, int]:
    """Append records that must be rejected: garbage, truncated, foreign JSON, an unregistered signer,
    a re-delivered batch. Returns {expected reject code: count}."""
    from ledger.wire.events import Action

    log = home.open_log()
    try:
        topic = home.topic
        recs: list[tuple[bytes | None, bytes]] = []
        end = log.end_offset(topic, 0)
        last = log.read(topic, 0, end - 1, 1)[0]
        recs.append((b"junk", b"\x00garbage\xff" * 3))
        recs.append((last.key, last.value[: len(last.value) // 2]))
        recs.append((b"other-app", b'{"type": "page_view", "user": 42}'))
        mallory = SigningKey.generate("mallory")
        rec, _ = build_record(mallory, [Action("steal")])
        recs.append((b"mallory", rec))
        recs.append((last.key, last.value))  # the latest batch again
        log.append(topic, recs)
    finally:
        log.close()
    return {"bad_schema": 2, "truncated": 1, "unknown_key": 1, "duplicate": 1}
