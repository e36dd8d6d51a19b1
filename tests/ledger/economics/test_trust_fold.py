"""TrustFold: trust in bounded memory per subject. Bit for bit the pure ``reputation`` while a subject has at most
``recent`` events; within float rounding of it past that; a restore from its kept rows continues with the same bits
as the fold that never stopped, wherever it stopped; its size stays bounded whatever the history's length."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.economics.reputation import TrustEvent, TrustFold, reputation
from ledger.errors import ValidationError
from ledger.units import US_PER_DAY
from ledger.wire.vocab import TrustDimension

DIMS = [d.value for d in TrustDimension]
T0 = 1_700_000_000_000_000


def history(rng: random.Random, n: int, subjects=("bob", "carol")) -> list[TrustEvent]:
    """n trust events, times mostly rising with some out of order (skew, backfill), a few custom half-lives."""
    out, t = [], T0
    for i in range(n):
        t += rng.randrange(0, 3 * 3_600_000_000)
        when = t - rng.randrange(0, 2 * US_PER_DAY) if rng.random() < 0.2 else t
        hl = rng.choice([None, None, None, US_PER_DAY, 3 * US_PER_DAY])
        out.append(TrustEvent(f"e{i:05d}", rng.choice(["alice", "dave", "erin"]), rng.choice(subjects),
                              rng.choice(DIMS), rng.randrange(-20_000, 20_001) / 1000, when, hl))
    return out


def scores(r) -> list[float]:
    return [s for _, s in r.scores] + [r.overall]


def test_bit_for_bit_the_pure_function_while_a_subject_has_few_events():
    rng = random.Random(1)
    events = history(rng, 120)  # about 60 per subject, under the 64 kept one by one
    fold = TrustFold()
    for e in events:
        fold.add(e)
    for subject in ("bob", "carol"):
        for at in (max(e.event_time_us for e in events), T0 + 5 * US_PER_DAY, T0):
            assert fold.score(subject, at) == reputation(events, subject, at)
        assert fold.counted(subject) == sum(e.subject == subject for e in events)
    assert fold.changed_rows() == []  # nothing settled


def test_self_issued_trust_never_counts():
    fold = TrustFold(recent=2)
    fold.add(TrustEvent("x", "bob", "bob", "accuracy", 50.0, T0))
    assert fold.counted("bob") == 0 and fold.score("bob", T0).overall == pytest.approx(0.7)


@pytest.mark.parametrize("recent", [1, 4, 64])
def test_long_histories_agree_with_the_pure_function_to_rounding(recent):
    rng = random.Random(recent)
    events = history(rng, 3_000)
    fold = TrustFold(recent)
    for e in events:
        fold.add(e)
    end = max(e.event_time_us for e in events)
    for subject in ("bob", "carol"):
        for at in (end, end + 10 * US_PER_DAY):
            got, want = fold.score(subject, at), reputation(events, subject, at)
            assert scores(got) == pytest.approx(scores(want), rel=1e-12, abs=1e-12)
        assert fold.counted(subject) == sum(e.subject == subject for e in events)
    # the state is the settled sums plus at most `recent` events per subject, whatever the history's length
    assert all(len(h) <= recent for h in fold._recent.values())
    assert sum(len(s) for s in fold._sums.values()) <= 2 * len(DIMS) * 3


def kept(fold: TrustFold, rows: dict, events: list[TrustEvent], recent: int) -> TrustFold:
    """A new fold restored as the processors do: the kept sum rows, each subject's latest ``recent`` events."""
    for r in fold.changed_rows():
        rows[(r["subject"], r["dimension"], r["half_life_us"])] = r
    latest: list[TrustEvent] = []
    for subject in {e.subject for e in events}:
        mine = sorted((e for e in events if e.subject == subject and e.counts),
                      key=lambda e: (e.event_time_us, e.event_id))
        latest += mine[-recent:]
    restored = TrustFold(recent)
    restored.restore([(r["subject"], r["dimension"], r["half_life_us"], r["ref_us"], r["total"], r["events"])
                      for r in rows.values()], reversed(latest))
    return restored


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), recent=st.integers(1, 8), cuts=st.lists(st.integers(1, 299), max_size=4))
def test_a_restore_anywhere_continues_with_the_same_bits(seed, recent, cuts):
    events = history(random.Random(seed), 300)
    whole = TrustFold(recent)
    for e in events:
        whole.add(e)
    fold, rows, seen = TrustFold(recent), {}, []
    for i, e in enumerate(events):
        if i in cuts:
            fold = kept(fold, rows, seen, recent)
        fold.add(e)
        seen.append(e)
    end = max(e.event_time_us for e in events)
    for subject in ("bob", "carol"):
        for at in (end, end - US_PER_DAY, end + US_PER_DAY):
            assert fold.score(subject, at) == whole.score(subject, at)
        assert fold.counted(subject) == whole.counted(subject)


def test_a_restore_with_too_many_recent_events_is_refused():
    fold = TrustFold(recent=1)
    two = [TrustEvent(f"e{i}", "alice", "bob", "accuracy", 1.0, T0 + i) for i in range(2)]
    with pytest.raises(ValidationError, match="recent"):
        fold.restore([], two)
