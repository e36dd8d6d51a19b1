"""CWEP caching economics over ``ledger.economics.econ`` and ``ledger.economics.cache_tracker`` (money exact in
micro-USD, shown as float USD; "never" is -1)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ledger.economics import cache_tracker as core
from ledger.economics import econ
from ledger.economics.money import round_fraction

from . import _units

ASSUMED_CACHE_PRICE = Fraction(1, 10)  # the reference's tracker prices every cache read at 10% of input


def cache_amortized_cost(context_tokens: int, input_rate_per_mtok: float, cache_write_multiplier: float = 1.25,
                         cache_hit_rate: float = 0.10, num_interactions: int = 10) -> dict[str, Any]:
    """Per-use cost of a cached context over ``num_interactions`` (>= 1) uses."""
    c = econ.cache_amortized_cost(context_tokens=context_tokens,
                                  input_rate=_units.rate_micros("input_rate_per_mtok", input_rate_per_mtok),
                                  cache_write_multiplier=cache_write_multiplier, cache_hit_rate=cache_hit_rate,
                                  num_interactions=num_interactions)
    return {"first_cost": _units.usd(c.first_cost), "subsequent_cost": _units.usd(c.subsequent_cost),
            "amortized_cost": _units.usd(c.amortized_cost), "uncached_cost": _units.usd(c.uncached_cost),
            "total_cached": _units.usd(c.total_cached), "total_uncached": _units.usd(c.total_uncached),
            "savings_pct": c.savings_pct}


def compression_roi(uncompressed_tokens: int, compressed_tokens: int, input_rate_per_mtok: float,
                    compressor_output_rate_per_mtok: float = 0.0, compressor_tokens: int = 0) -> dict[str, Any]:
    r = econ.compression_roi(uncompressed_tokens=uncompressed_tokens, compressed_tokens=compressed_tokens,
                             input_rate=_units.rate_micros("input_rate_per_mtok", input_rate_per_mtok),
                             compressor_output_rate=_units.rate_micros("compressor_output_rate_per_mtok",
                                                                       compressor_output_rate_per_mtok),
                             compressor_tokens=compressor_tokens)
    return {"savings": _units.usd(r.savings), "cost": _units.usd(r.cost), "net_savings": _units.usd(r.net_savings),
            "roi": r.roi, "compression_ratio": r.compression_ratio}


def memory_vs_context_crossover(context_tokens: int, input_rate_per_mtok: float, memory_write_cost: float = 0.01,
                                memory_read_cost_per_interaction: float = 0.005,
                                max_interactions: int = 50) -> dict[str, Any]:
    m = econ.memory_vs_context_crossover(
        context_tokens=context_tokens, input_rate=_units.rate_micros("input_rate_per_mtok", input_rate_per_mtok),
        memory_write_cost=_units.usd_micros("memory_write_cost", memory_write_cost),
        memory_read_cost=_units.usd_micros("memory_read_cost_per_interaction", memory_read_cost_per_interaction),
        max_interactions=max_interactions)
    return {"crossover_point": _units.limit(m.crossover_point),
            "memory_costs": [_units.usd(c) for c in m.memory_costs],
            "context_costs": [_units.usd(c) for c in m.context_costs], "recommendation": m.recommendation}


class CacheTracker:
    """Hits, misses and savings. ``record_hit`` takes the real cache-read rate when the caller knows it; without
    it the reference's assumption (cache reads cost 10% of input) is used."""

    def __init__(self) -> None:
        self._core = core.CacheTracker()

    def record_hit(self, cached_tokens: int, rate_per_mtok: float, cache_rate_per_mtok: float | None = None) -> None:
        rate = _units.rate_micros("rate_per_mtok", rate_per_mtok)
        cache_rate = (_units.rate_micros("cache_rate_per_mtok", cache_rate_per_mtok) if cache_rate_per_mtok is not None
                      else round_fraction(rate * ASSUMED_CACHE_PRICE))
        self._core.record_hit(_units.tokens("cached_tokens", cached_tokens), input_rate=rate,
                              cache_read_rate=cache_rate)

    def record_miss(self, tokens: int) -> None:
        self._core.record_miss(_units.tokens("tokens", tokens))

    hits = property(lambda self: self._core.hits)
    misses = property(lambda self: self._core.misses)
    total_cached_tokens = property(lambda self: self._core.total_cached_tokens)
    total_uncached_tokens = property(lambda self: self._core.total_uncached_tokens)
    estimated_savings_usd = property(lambda self: _units.usd(self._core.savings_micros))
    hit_rate = property(lambda self: float(self._core.hit_rate))

    def summary(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "hit_rate": self.hit_rate,
                "total_cached_tokens": self.total_cached_tokens, "total_uncached_tokens": self.total_uncached_tokens,
                "estimated_savings_usd": self.estimated_savings_usd}
