"""A prompt-cache hit/miss tracker: how often a context was served from the cache, and what that saved.

A hit of ``cached_tokens`` saves what reading them uncached would have cost minus what the cache read cost, both at
the model's real rates (``econ.cache_read_savings``; int micro-USD per MTok). A miss counts its tokens as uncached.
``hit_rate`` is hits / (hits + misses), an exact fraction (0 before any lookup). The tracker is an accumulator the
caller owns; it does no I/O and keeps no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ledger.economics.econ import cache_read_savings
from ledger.economics.money import check_rate, check_result_micros, check_tokens


@dataclass(kw_only=True)
class CacheTracker:
    hits: int = 0
    misses: int = 0
    total_cached_tokens: int = 0  # tokens served from the cache (the hits)
    total_uncached_tokens: int = 0  # tokens read without the cache (the misses)
    savings_micros: int = 0  # sum over hits of (input rate - cache-read rate) x cached tokens, each rounded once

    def record_hit(self, cached_tokens: int, *, input_rate: int, cache_read_rate: int) -> int:
        """Count one hit; return what it saved in micro-USD (negative if the cache read costs more)."""
        check_tokens("cached_tokens", cached_tokens)
        check_rate("input_rate", input_rate)
        check_rate("cache_read_rate", cache_read_rate)
        saved = cache_read_savings(cached_tokens=cached_tokens, input_rate=input_rate,
                                   cache_read_rate=cache_read_rate)
        self.hits += 1
        self.total_cached_tokens += cached_tokens
        self.savings_micros = check_result_micros("savings_micros", self.savings_micros + saved)
        return saved

    def record_miss(self, tokens: int) -> None:
        check_tokens("tokens", tokens)
        self.misses += 1
        self.total_uncached_tokens += tokens

    @property
    def hit_rate(self) -> Fraction:
        lookups = self.hits + self.misses
        return Fraction(self.hits, lookups) if lookups else Fraction(0)
