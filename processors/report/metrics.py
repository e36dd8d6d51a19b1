"""Efficiency metrics and budget burn-rate forecasts over rows of the published views.

Input is plain rows (dicts) as a DuckDB query over the views returns them; output is plain rows
(dicts) ready for a table, JSON or a chart. Nothing here reads files, the log or the clock.

Formulas (per group: an agent, a task, a project or a model; only LLM calls count):

* ``tokens_per_call``   = (input_tokens + output_tokens) / calls
* ``cache_hit_rate``    = cache_read_tokens / input_tokens  (cache reads are *part of* input)
* ``output_input_ratio`` = output_tokens / input_tokens
* ``cost_micros``       = sum of the priced calls' cost, micro-USD; calls without a price are counted
  in ``unpriced_calls`` and add nothing (never priced as $0 silently: the count says so)
* ``cost_per_iteration_micros`` = cost_micros / iterations, half-to-even, where an iteration is one
  task the group worked on (distinct ``task``; calls without a task form one iteration together)
* model breakdown: per model, its calls, tokens, cost, and share of all tokens and of all cost

Ratios are floats rounded for display (``RATIO_DIGITS``); they are never money. A ratio whose
denominator is 0 is None, not 0: "no input" is not "no cache hits".

Burn-rate forecast, per ``budgets`` row (the current window of one budget):

* ``as_of_us`` = the latest event time in the data, clamped into the window (deterministic: the
  same views always give the same forecast, whenever it is computed)
* ``elapsed_us`` = as_of_us - window_start_us; ``rate`` = consumed / elapsed_us
* ``exhausts_at_us`` = as_of_us + remaining / rate = as_of_us + remaining * elapsed_us / consumed
  (half-to-even on the microsecond); None when nothing was consumed (no burn, no forecast);
  as_of_us itself when nothing remains
* ``exhausts_in_window`` = exhausts_at_us < window_end_us: the budget runs out before it resets

Never: read the wall clock, turn a missing denominator into 0, or hold money in a float.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ledger.economics.money import round_half_even
from ledger.units import US_PER_HOUR

RATIO_DIGITS = 4  # display precision of ratios (cache hit rate, output/input)
NO_TASK = "(no task)"  # the iteration of calls that name no task
GROUP_KEYS = ("agent", "task", "project", "model")


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator rounded to RATIO_DIGITS; None when the denominator is 0."""
    return round(numerator / denominator, RATIO_DIGITS) if denominator else None


def efficiency(calls: Iterable[Mapping[str, Any]], key: str) -> list[dict[str, Any]]:
    """Efficiency per value of ``key`` (one of GROUP_KEYS) over LLM-call rows.

    A call row has: agent, task, project, model, input_tokens, output_tokens, cache_read_tokens and
    cost_micros (None when the call could not be priced). Rows come back sorted by cost, then
    tokens, descending, then by name, so the expensive groups lead.
    """
    if key not in GROUP_KEYS:
        raise ValueError(f"key must be one of {GROUP_KEYS}, not {key!r}")
    groups: dict[str, dict[str, Any]] = {}
    for c in calls:
        name = c.get(key) or f"(no {key})"
        g = groups.setdefault(name, {key: name, "calls": 0, "input_tokens": 0, "output_tokens": 0,
                                     "cache_read_tokens": 0, "cost_micros": 0, "unpriced_calls": 0, "_tasks": set()})
        g["calls"] += 1
        g["input_tokens"] += int(c.get("input_tokens") or 0)
        g["output_tokens"] += int(c.get("output_tokens") or 0)
        g["cache_read_tokens"] += int(c.get("cache_read_tokens") or 0)
        if c.get("cost_micros") is None:
            g["unpriced_calls"] += 1
        else:
            g["cost_micros"] += int(c["cost_micros"])
        g["_tasks"].add(c.get("task") or NO_TASK)
    rows = []
    for g in groups.values():
        iterations = len(g.pop("_tasks"))
        tokens = g["input_tokens"] + g["output_tokens"]
        g["tokens"] = tokens
        g["tokens_per_call"] = round(tokens / g["calls"], 1)
        g["cache_hit_rate"] = ratio(g["cache_read_tokens"], g["input_tokens"])
        g["output_input_ratio"] = ratio(g["output_tokens"], g["input_tokens"])
        g["iterations"] = iterations
        g["cost_per_iteration_micros"] = round_half_even(g["cost_micros"], iterations)
        rows.append(g)
    rows.sort(key=lambda r: (-r["cost_micros"], -r["tokens"], r[key]))
    return rows


def model_breakdown(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per model: efficiency plus its share (%) of all tokens and of all priced cost."""
    rows = efficiency(calls, "model")
    all_tokens = sum(r["tokens"] for r in rows)
    all_cost = sum(r["cost_micros"] for r in rows)
    for r in rows:
        share = ratio(100 * r["tokens"], all_tokens)
        r["token_share_pct"] = None if share is None else round(share, 1)
        share = ratio(100 * r["cost_micros"], all_cost)
        r["cost_share_pct"] = None if share is None else round(share, 1)
    return rows


def burn_forecast(budgets: Iterable[Mapping[str, Any]], as_of_us: int) -> list[dict[str, Any]]:
    """The burn rate and the forecast exhaustion time of each budget row's current window.

    ``as_of_us`` is the latest event time in the data (never the wall clock); it is clamped into
    each window. Rows come back in the input order, each with the budget's identity, its amounts
    and: as_of_us, elapsed_us, rate_per_hour (units per hour, rounded half-to-even), exhausts_at_us,
    exhausts_in_us and exhausts_in_window.
    """
    out = []
    for b in budgets:
        start, end = int(b["window_start_us"]), int(b["window_end_us"])
        consumed, remaining = int(b["consumed"]), int(b["remaining"])
        at = min(max(as_of_us, start), end)
        elapsed = at - start
        if remaining <= 0:
            exhausts_at: int | None = at
        elif consumed <= 0 or elapsed <= 0:
            exhausts_at = None  # no burn observed: nothing to extrapolate
        else:
            exhausts_at = at + round_half_even(remaining * elapsed, consumed)
        out.append({
            "scope": b["scope"], "scope_id": b["scope_id"], "budget_kind": b["budget_kind"], "unit": b.get("unit"),
            "allocation": int(b["allocation"]), "consumed": consumed, "remaining": remaining,
            "window_start_us": start, "window_end_us": end, "as_of_us": at, "elapsed_us": elapsed,
            "rate_per_hour": round_half_even(consumed * US_PER_HOUR, elapsed) if elapsed > 0 else None,
            "exhausts_at_us": exhausts_at,
            "exhausts_in_us": None if exhausts_at is None else exhausts_at - at,
            "exhausts_in_window": exhausts_at is not None and exhausts_at < end,
        })
    return out


__all__ = ["GROUP_KEYS", "NO_TASK", "RATIO_DIGITS", "burn_forecast", "efficiency", "model_breakdown", "ratio"]
