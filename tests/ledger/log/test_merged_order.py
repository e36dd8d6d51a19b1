"""The merged order of a log without a clock (Kafka): which records a live reader may fold, and in what order.

Pure functions over hand-made records: ``order_key`` (append time, topic, partition, offset),
``ready_in_merged_order`` (the known prefix of that order) and ``late_records`` (a record appended behind
what was folded)."""

from __future__ import annotations

import random

from ledger.log.base import Record
from ledger.log.order import late_records, order_key, ready_in_merged_order

CONTROL = ("x.control", 0)
EVENTS = ("x.events", 0)
EVENTS_1 = ("x.events", 1)


def rec(tp: tuple[str, int], offset: int, t_us: int) -> Record:
    return Record(tp[0], tp[1], offset, None, b"v", t_us)


def test_ties_are_broken_by_topic_partition_offset_and_a_partition_keeps_offset_order():
    a, b, c = rec(EVENTS, 0, 5_000), rec(CONTROL, 3, 5_000), rec(EVENTS, 1, 5_000)
    assert sorted([c, a, b], key=order_key) == [b, a, c]


def test_complete_partitions_release_everything_before_the_horizon_in_key_order():
    control = [rec(CONTROL, 0, 2_000), rec(CONTROL, 1, 9_000)]
    events = [rec(EVENTS, 0, 1_000), rec(EVENTS, 1, 3_000), rec(EVENTS, 2, 9_000)]
    got = ready_in_merged_order({CONTROL: control, EVENTS: events}, {CONTROL, EVENTS}, horizon_us=9_000)
    assert [(r.topic, r.offset) for r in got] == [("x.events", 0), ("x.control", 0), ("x.events", 1)]
    # no horizon (a replay up to its stop positions): all of it, the tie at 9 ms control first
    got = ready_in_merged_order({CONTROL: control, EVENTS: events}, {CONTROL, EVENTS})
    assert [(r.topic, r.offset) for r in got][-2:] == [("x.control", 1), ("x.events", 2)]


def test_a_partition_cut_short_bounds_the_others():
    control = [rec(CONTROL, 0, 4_000)]  # complete
    events = [rec(EVENTS, 0, 1_000), rec(EVENTS, 1, 3_000)]  # cut short at 3 ms: its next may be 3 ms too
    got = ready_in_merged_order({CONTROL: control, EVENTS: events}, {CONTROL})
    assert [r.offset for r in got] == [0, 1] and all(r.topic == "x.events" for r in got)  # control at 4 ms waits


def test_a_partition_cut_short_with_nothing_read_releases_nothing():
    assert ready_in_merged_order({CONTROL: [rec(CONTROL, 0, 1)], EVENTS_1: []}, {CONTROL}) == []


def test_the_released_set_is_a_prefix_of_the_full_order_whatever_the_cuts():
    """Random partitions, cuts and horizons: what is released is always the first n records of the order a
    replay of everything gives (so folding it batch after batch never departs from a replay)."""
    rnd = random.Random(7)
    for _ in range(300):
        parts: dict[tuple[str, int], list[Record]] = {}
        for tp in (CONTROL, EVENTS, EVENTS_1):
            t, recs = 0, []
            for off in range(rnd.randint(0, 6)):
                t += rnd.choice((0, 0, 1_000, 2_000))  # ties are common at millisecond stamps
                recs.append(rec(tp, off, t))
            parts[tp] = recs
        full = sorted((r for recs in parts.values() for r in recs), key=order_key)
        reads, complete = {}, set()
        for tp, recs in parts.items():
            n = rnd.randint(0, len(recs))
            reads[tp] = recs[:n]
            if n == len(recs):
                complete.add(tp)
        horizon = rnd.choice((None, rnd.randint(0, 12_000)))
        got = ready_in_merged_order(reads, complete, horizon)
        assert got == full[:len(got)]
        assert late_records(full[len(got):], order_key(got[-1]) if got else None) == []


def test_late_records_are_those_sorting_before_what_was_folded():
    folded = order_key(rec(EVENTS, 4, 7_000))
    early, same_ms, later = rec(CONTROL, 9, 6_000), rec(CONTROL, 10, 7_000), rec(EVENTS, 5, 7_000)
    assert late_records([early, same_ms, later], folded) == [early, same_ms]  # control sorts first in a tie
    assert late_records([early], None) == []
