"""ledger.economics.cache_tracker: hits and misses counted, savings at each model's real cache-read rate."""

from __future__ import annotations

from fractions import Fraction

import pytest

from ledger.economics.cache_tracker import CacheTracker
from ledger.errors import ValidationError


def test_counts_rate_and_savings():
    t = CacheTracker()
    assert t.hit_rate == 0
    # 4000 tokens at 3_000_000 vs 300_000 micro-USD/MTok: 12000 - 1200 = 10800 saved
    assert t.record_hit(4_000, input_rate=3_000_000, cache_read_rate=300_000) == 10_800
    # a cache read dearer than input (a misconfigured price) shows a negative saving, not a clamp
    assert t.record_hit(1_000, input_rate=1_000_000, cache_read_rate=2_000_000) == -1_000
    t.record_miss(5_000)
    assert (t.hits, t.misses, t.total_cached_tokens, t.total_uncached_tokens, t.savings_micros) == (
        2, 1, 5_000, 5_000, 9_800)
    assert t.hit_rate == Fraction(2, 3)


@pytest.mark.parametrize(("call", "field"), [
    (lambda t: t.record_hit(-1, input_rate=1, cache_read_rate=1), "cached_tokens"),
    (lambda t: t.record_hit(1.5, input_rate=1, cache_read_rate=1), "cached_tokens"),
    (lambda t: t.record_hit(1, input_rate=-1, cache_read_rate=1), "input_rate"),
    (lambda t: t.record_miss(True), "tokens"),
])
def test_bad_counts_and_rates_are_refused_and_change_nothing(call, field):
    t = CacheTracker()
    with pytest.raises(ValidationError) as e:
        call(t)
    assert e.value.field == field
    assert (t.hits, t.misses) == (0, 0)
