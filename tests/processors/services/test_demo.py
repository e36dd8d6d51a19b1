"""The demo use case without the CLI: a new home is bootstrapped once, processors run in topic order
until caught up, the views answer every demo question, and the result is a frozen, typed record."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.economics.price_events import seed_events
from ledger.sdk.home import HomeLayout
from ledger.testing.workload import AGENTS, TASK_SPACING_US, demo_clock, demo_policies
from processors import REGISTRY, get, order_by_topics
from processors.services import demo


def test_order_by_topics_puts_readers_after_the_processors_they_read():
    waves = order_by_topics()
    assert sorted(n for wave in waves for n in wave) == sorted(REGISTRY)  # each exactly once
    seen: set[str] = set()
    for wave in waves:
        for name in wave:
            for topic in get(name).topics:
                producers = {p for p in REGISTRY if topic in get(p).derived_topics and p != name}
                assert producers <= seen, (name, topic, producers)
        seen.update(wave)
    assert waves.index(next(w for w in waves if "settlements" in w)) > waves.index(
        next(w for w in waves if "allocations" in w))
    assert order_by_topics(["settlements"]) == [["settlements"]]  # only the chosen ones wait on each other


def test_demo_runs_end_to_end_without_the_cli(tmp_path):
    path = tmp_path / "home"
    h, created = demo.open_or_create(path)
    assert created and HomeLayout(path).config_file.exists()
    messages: list[str] = []
    emitted: list[int] = []
    r = demo.run_demo(h, tasks=4, seed=11, progress=emitted.append, on_event=messages.append)
    assert isinstance(r, demo.DemoResult) and r.verify["ok"] and r.tasks == 4
    assert sum(emitted) == r.events
    assert set(r.per_agent) == {a for a, *_ in AGENTS}
    assert r.processors == tuple(sorted(REGISTRY))
    assert list(r.views) == [title for title, _ in demo.DEMO_VIEWS]
    kinds = dict(r.views["events by kind"].rows)
    # verified: the workload plus the operator's and the agents' registrations, the default price book and
    # the demo's budget policies; the journal saw all of them (and, racing with it, processors registering)
    registrations = 1 + len(AGENTS)
    notary = 2  # init registers the notary's key and grants it
    assert r.verify["accepted_events"] == (
        r.events + registrations + notary + len(seed_events()) + len(demo_policies(start_us=0))
        + len(demo_clock(4 * TASK_SPACING_US, [a for a, *_ in AGENTS])))  # and its skew window
    assert kinds["agent_registered"] >= registrations
    assert sum(n for kind, n in kinds.items() if kind != "agent_registered") == (
        r.verify["accepted_events"] - registrations - 1)  # the notary's registration is one too (its grant is not)
    assert HomeLayout(path).report_file.stat().st_size > 0 and r.report == str(HomeLayout(path).report_file)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.events = 0  # type: ignore[misc]
    assert r.to_dict()["views"]["events by kind"][0].keys() == {"kind", "events"}
    h2, created = demo.open_or_create(path)  # a second run appends to the same home, no second bootstrap
    assert not created and h2.config == h.config
