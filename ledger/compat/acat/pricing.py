"""``agent_cost_attribution.pricing`` on the ledger: the blended cost *estimate* of ``ledger.economics.blended``
(the reference's tier table, a model in no tier priced as opus), in float USD at the boundary.

Money is integer micro-USD inside, each agent's amount rounded half-to-even once, and ``micros / 1e6`` out
(deviation 3 of ``ledger.compat.acat``).
"""

from __future__ import annotations

from typing import Any

from ledger.compat.acat.ledger import as_run
from ledger.economics import blended
from ledger.errors import ValidationError
from ledger.sources import attribution
from ledger.units import MICROS_PER_USD, TOKENS_PER_MTOK

# USD per million tokens (input, output) by tier: the ledger's micro-USD table converted at the boundary
PRICES: dict[str, tuple[float, float]] = {name: (i / MICROS_PER_USD, o / MICROS_PER_USD)
                                          for name, (i, o) in blended.TIER_PRICES.items()}
DEFAULT_INPUT_SHARE = 0.85  # read exactly as 17/20 (ledger.economics.blended.DEFAULT_INPUT_SHARE)


def _model(model: Any) -> str:
    if model is None:
        return ""  # no model: no tier, priced as opus (the reference's rule)
    if not isinstance(model, str):
        raise ValidationError("model", model, f"must be a string, got {type(model).__name__}")
    return model


def tier(model: Any) -> str | None:
    """The tier a model name falls in (lower-case substring: fable, opus, sonnet, haiku), None if none."""
    return blended.tier(_model(model))


_tier = tier  # the private alias the reference keeps for old callers


def blended_rate(model: Any, *, input_share: Any = DEFAULT_INPUT_SHARE) -> float:
    """USD per token: ``share x input + (1 - share) x output`` of the model's tier (a rate, not money)."""
    rate = blended.blended_rate(_model(model), input_share)
    assert rate is not None  # the reference table prices every name
    return float(rate / (TOKENS_PER_MTOK * MICROS_PER_USD))


def estimate_cost(tokens: Any, model: Any, *, input_share: Any = DEFAULT_INPUT_SHARE) -> float:
    """Estimated USD for ``tokens`` on ``model``: whole micro-USD (half-to-even) / 1e6."""
    micros = blended.estimate_cost_micros(tokens, _model(model), input_share)
    assert micros is not None  # the reference table prices every name
    return micros / MICROS_PER_USD


def cost_by_stage(run: Any, *, input_share: Any = DEFAULT_INPUT_SHARE) -> dict[str, float]:
    """{stage: estimated USD}, each agent priced on its own model, in first-seen stage order."""
    est = attribution.estimate_run_cost(as_run(run), input_share)
    return {stage: micros / MICROS_PER_USD for stage, micros in est.by_stage}


def total_cost(run: Any, *, input_share: Any = DEFAULT_INPUT_SHARE) -> float:
    """Estimated USD of the whole run: the sum of its agents' micro-USD, / 1e6."""
    return attribution.estimate_run_cost(as_run(run), input_share).total_micros / MICROS_PER_USD


__all__ = ["DEFAULT_INPUT_SHARE", "PRICES", "blended_rate", "cost_by_stage", "estimate_cost", "tier", "total_cost"]
