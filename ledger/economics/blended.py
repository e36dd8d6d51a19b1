"""Blended cost estimates: one token count, with no input/output split, priced at a blend of a model's input and
output rates.

Workflow telemetry (``ledger.sources.attribution``) and routing plans (``ledger.economics.routing``) know how many
tokens a stage or a role used, not how many of them were read and how many written. Their cost is therefore an
**estimate**: ``tokens x (share x input_rate + (1 - share) x output_rate)``, share = the input share of a blended
token (default 85 %, 17/20).

Rates (micro-USD per million tokens, ``(input, output)``) come from a ``RateLookup``: the price book on the log for
the ledger's own numbers (a model it does not price is *unpriced*: None, never guessed), or ``reference_rates``: the
reference meter's (agent-cost-attribution) tier table, matched by lower-case substring in the order of ``TIER_PRICES``
(``"claude-sonnet-opus-mix"`` is opus: the first match wins); a name that matches no tier is priced as opus there,
and callers name such models as *assumed*.

Money: the exact product is a Fraction; ``estimate_cost_micros`` rounds it half-to-even to whole micro-USD once.
Never: I/O, floats as money.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

from ledger.economics.money import check_tokens, exact_number, round_fraction
from ledger.units import TOKENS_PER_MTOK

Number = int | float | Decimal | Fraction  # read exactly by ledger.economics.money.exact_number (a float as it prints)

DEFAULT_INPUT_SHARE = Fraction(17, 20)  # 85 % of a blended token is priced as input

# The reference meter's tier list in micro-USD per million tokens: (input, output), matched by lower-case substring in
# this order (first match wins). Only ``reference_rates`` reads it.
TIER_PRICES: dict[str, tuple[int, int]] = {
    "fable": (10_000_000, 50_000_000),
    "opus": (5_000_000, 25_000_000),
    "sonnet": (3_000_000, 15_000_000),
    "haiku": (1_000_000, 5_000_000),
}
UNKNOWN_TIER_PRICED_AS = "opus"  # the reference's choice for names that match no tier; callers flag such models

# model -> (input, output) micro-USD per million tokens, or None when the model has no price
RateLookup = Callable[[str], tuple[int, int] | None]


def tier(model: str) -> str | None:
    """The price tier a model name falls in (lower-case substring, first of TIER_PRICES), or None."""
    name = model.lower()
    for candidate in TIER_PRICES:
        if candidate in name:
            return candidate
    return None


def reference_rates(model: str) -> tuple[int, int]:
    """The reference meter's rates for ``model``: its tier's (a name in no tier at the opus price)."""
    return TIER_PRICES[tier(model) or UNKNOWN_TIER_PRICED_AS]


def check_share(value: Number) -> Fraction:
    """An input share in [0, 1], exact (a float means the decimal it prints as)."""
    return exact_number("input_share", value, minimum=0, maximum=1)


def blended_rate(model: str, input_share: Number = DEFAULT_INPUT_SHARE, *,
                 rates: RateLookup = reference_rates) -> Fraction | None:
    """Blended micro-USD per million tokens for ``model`` (exact), from ``rates``; None when it has no price."""
    exact_share = check_share(input_share)
    got = rates(model)
    if got is None:
        return None
    rate_in, rate_out = got
    return exact_share * rate_in + (1 - exact_share) * rate_out


def exact_cost(tokens: int, model: str, input_share: Number = DEFAULT_INPUT_SHARE, *,
               rates: RateLookup = reference_rates) -> Fraction | None:
    """Micro-USD for ``tokens`` on ``model``, exact (unrounded); None when the model has no price."""
    check_tokens("tokens", tokens)
    rate = blended_rate(model, input_share, rates=rates)
    return None if rate is None else tokens * rate / TOKENS_PER_MTOK


def estimate_cost_micros(tokens: int, model: str, input_share: Number = DEFAULT_INPUT_SHARE, *,
                         rates: RateLookup = reference_rates) -> int | None:
    """Estimated micro-USD for ``tokens`` on ``model``, rounded half-to-even once; None when it has no price."""
    exact = exact_cost(tokens, model, input_share, rates=rates)
    return None if exact is None else round_fraction(exact)


__all__ = [
    "DEFAULT_INPUT_SHARE", "TIER_PRICES", "UNKNOWN_TIER_PRICED_AS", "Number", "RateLookup", "blended_rate",
    "check_share", "estimate_cost_micros", "exact_cost", "reference_rates", "tier",
]
