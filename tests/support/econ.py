"""Helpers for the allocations / settlements / reprice tests: a home whose log holds the default price
book as control events (support.make_home does not append it, and other tests count its events)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ledger.economics.price_events import default_price_events, price_event_time_us
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.testing.homes import T0, TEST_WINDOW, make_home
from ledger.wire import codec
from ledger.wire.events import AgentRegistered, Body, Flow, Interaction
from processors.host.service import live_digest, open_runner, replay, state_file
from processors.runtime.publish import Publisher


def econ_home(tmp_path: Path, backend: str = "sqlite", kafka_url: str | None = None,
              agents: tuple[str, ...] = ()) -> Home:
    """A home with the operator (and ``agents``) registered and the default price book on its log."""
    if backend == "kafka":
        h = Home.init(tmp_path / "home", log_url=kafka_url, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
        op = h.operator_key()
        log = h.open_log()
        try:
            with Emitter.for_operator(h, log) as em:
                em.emit(AgentRegistered("operator", op.key_id, op.public.raw, "operator"), event_time_us=T0)
                em.emit(TEST_WINDOW, event_time_us=T0)  # as make_home: the tests' hours are live data
        finally:
            log.close()
        assert not agents, "kafka homes here carry the demo agents only"
    else:
        h = make_home(tmp_path / "home", agents=agents)
    control(h, default_price_events(), times=[price_event_time_us(b) for b in default_price_events()])
    return h


def control(h: Home, bodies: list[Body], *, t: int = T0 + 10, times: list[int] | None = None) -> None:
    """Append operator control events (at ``t``, or at ``times``)."""
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            for i, body in enumerate(bodies):
                em.emit(body, event_time_us=times[i] if times else t)
    finally:
        log.close()


def run(h: Home, name: str, *, publish: bool = False) -> None:
    """Run one processor inline until it has read the whole log (producing its derived events); ``publish``: then
    publish its views, as the running service does."""
    log = h.open_log()
    try:
        r, store, proc = open_runner(h, name, log)
        try:
            r.run_until_caught_up()
            if publish:
                Publisher(store, proc, h.views_dir(name), key=r.key).publish(r.positions, r.batch_no)
        finally:
            store.close()
    finally:
        log.close()


def rows(h: Home, name: str, sql: str) -> list[tuple[Any, ...]]:
    """SQL over a (stopped) processor's state file."""
    import duckdb

    con = duckdb.connect(str(state_file(h, name)), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def derived(h: Home, topic: str) -> list[tuple[str, Body]]:
    """(event id, body) of every event on a derived topic."""
    log = h.open_log()
    try:
        log.ensure_topic(h.topic_for(topic))
        out = []
        for rec in read_all(log, h.topic_for(topic)):
            for raw in codec.decode_batch(rec.value).events:
                ev = codec.decode_event(raw).event
                out.append((ev.event_id, ev.body))
        return out
    finally:
        log.close()


def replay_digests(h: Home, name: str) -> dict[str, str | None]:
    """Live digest and a replay's (from offset 0, up to the live positions) of processor ``name``."""
    live = live_digest(h, name)
    log = h.open_log()
    try:
        rebuilt = replay(h, name, log, positions=live["positions"])
    finally:
        log.close()
    return {"live": live["digest"], "replay": rebuilt["digest"]}


def replay_equal(h: Home, name: str) -> bool:
    d = replay_digests(h, name)
    return d["live"] is not None and d["replay"] == d["live"]


def call(interaction_id: str, req: str, resp: str, *, req_model: tuple[str, str] = ("openai", "gpt-4.1"),
         resp_model: tuple[str, str] = ("openai", "gpt-4.1"), request: int = 1_000, response: int = 3_000) -> Interaction:
    """An interaction with symmetric flows (no caching)."""
    return Interaction(interaction_id=interaction_id, requestor_id=req, responder_id=resp,
                       requestor_provider=req_model[0], requestor_model=req_model[1],
                       responder_provider=resp_model[0], responder_model=resp_model[1],
                       request_output=Flow(request), request_input=Flow(request), response_output=Flow(response),
                       response_input=Flow(response))


def emit_as(h: Home, agent: str, timed: list[tuple[Body, int]]) -> None:
    """Append ``(body, event time)`` pairs signed by ``agent`` (registered in the home)."""
    from ledger.sdk.emitter import Emitter

    log = h.open_log()
    try:
        with Emitter(log, h.load_key(agent), topic=h.topic, state_dir=h.state_dir, background_flush=False) as em:
            for body, t in timed:
                em.emit(body, event_time_us=t)
    finally:
        log.close()
