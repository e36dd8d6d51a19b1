"""Cost allocation: who should pay how much of one metered interaction, by a named method.

Each method is a pure function of a ``MeteredInteraction`` (and its documented parameters) that
decides the requestor's exact share ``x`` of the interaction's total cost ``T``. The shares are then
made whole micro-USD by the one split rule (``ledger.economics.money.split_largest_remainder`` over
``[x, T - x]``: nearest micro, an exact half-micro tie goes to the requestor), so

* ``requestor_pays + responder_pays == T`` exactly, for every method and input (conservation);
* ``net_transfer`` is the cash one side hands the other so that each ends up having paid its
  share: ``requestor_pays - requestor_incurred``; positive means requestor -> responder,
  negative responder -> requestor (reported as an amount and a ``direction``), zero is "none".

Methods (names are the reference's):

``requestor_pays``   the requestor pays T.
``responder_pays``   the responder pays T.
``equal_split``      x = T / 2.
``proportional``     x = T * (request_output.tokens + response_input.tokens) / (all four flows' tokens),
                     using the four real token counts; no tokens at all means T = 0 and x = 0.
``shapley``          two-player Shapley value of the cost game with standalone costs
                     c(A) = ``standalone_cost_a`` (default: the request-output cost, what the
                     requestor spends alone), c(B) = ``standalone_cost_b`` (default 0) and
                     c(A, B) = T: x = (T + c(A) - c(B)) / 2.
``nash_bargaining``  Nash bargaining over the interaction's surplus with the requestor's
                     bargaining power ``alpha``: S = value_a + value_b - T - disagreement_a -
                     disagreement_b and x = value_a - disagreement_a - alpha * S.

Deliberate deviations from the reference (context-window-economics 0.1.1), each tested:

1. Conservation is exact, to the micro, for every method (integer micro-USD; the reference uses
   floats and its clamped Shapley can create money).
2. Shapley clamping re-balances: if x < 0 the requestor pays 0 and the responder pays all of T;
   if x > T the responder pays 0 and the requestor pays all of T. The reference clamps the
   negative side to 0 but leaves the other side's unclamped value, so the parts no longer sum to T.
   The clamp, if any, is recorded in ``parameters["clamped"]``.
3. Nash: ``value_a`` and ``value_b`` are required (the reference defaults them to 0 and so silently
   returns a proportional split); ``alpha`` must be in [0, 1]; values and disagreement points are
   non-negative micro-USD, and a disagreement point above its party's value is inconsistent (that
   party would refuse any deal) and refused. With no surplus (S <= 0) there is no bargaining set:
   by default that is an ``EconomicsError`` carrying S; only when the caller names a
   ``no_surplus_fallback`` method is that method used, and the result then says so
   (``method`` = the fallback's name, ``parameters["requested_method"] = "nash_bargaining"``,
   ``parameters["outcome"] = "no_surplus"``). Never a silent switch.
   The solution x is clamped into [0, T] as in the reference (recorded in ``parameters["clamped"]``).
4. ``proportional`` uses the four real token counts of the flows. (The reference's usual CMR copies
   one count into both request flows and one into both response flows, which makes it an equal split.)
5. ``beneficiary_pays`` is not offered: the reference computes it as proportional and reports it as
   "proportional", so the name promises a rule that does not exist. Asking for it is a
   ``ValidationError`` that says which method to use instead.
6. A zero net transfer has direction ``"none"`` (the reference says requestor_to_responder, or "").
7. The dispatcher refuses unknown parameters (the reference ignores them, so a typo such as
   ``alhpa=0.9`` silently changes nothing).

Never: floats as money, I/O, a method switch that the result does not name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ledger.economics.metering import MeteredInteraction
from ledger.economics.money import check_micros, decimal_text, exact_number, split_largest_remainder
from ledger.errors import EconomicsError, ValidationError
from ledger.wire.vocab import ALLOCATION_METHOD_VALUES, TRANSFER_DIRECTION_VALUES, AllocationMethod, TransferDirection

# the vocabularies of ledger.wire.vocab, as plain strings (they are stored in Allocation fields and parameters)
REQUESTOR_TO_RESPONDER = TransferDirection.REQUESTOR_TO_RESPONDER.value
RESPONDER_TO_REQUESTOR = TransferDirection.RESPONDER_TO_REQUESTOR.value
NO_TRANSFER = TransferDirection.NONE.value
DIRECTIONS = TRANSFER_DIRECTION_VALUES

REQUESTOR_PAYS = AllocationMethod.REQUESTOR_PAYS.value
RESPONDER_PAYS = AllocationMethod.RESPONDER_PAYS.value
EQUAL_SPLIT = AllocationMethod.EQUAL_SPLIT.value
PROPORTIONAL = AllocationMethod.PROPORTIONAL.value
SHAPLEY = AllocationMethod.SHAPLEY.value
NASH_BARGAINING = AllocationMethod.NASH_BARGAINING.value
DEFAULT_NASH_ALPHA = Fraction(1, 2)  # equal bargaining power, as in the reference


@dataclass(frozen=True, kw_only=True)
class Allocation:
    """One interaction's cost split. Money is int micro-USD; ``parameters`` are the method's inputs.

    ``parameters`` holds what anyone needs to recompute the split (ints, strings and None only).
    It is a private copy of what was given; treat it as read-only (a plain dict, so that
    ``dataclasses.asdict``, ``copy`` and ``pickle`` work). An Allocation built from outside data
    (e.g. a decoded event) is checked like any input.
    """

    method: str
    requestor_pays: int
    responder_pays: int
    net_transfer: int
    direction: str
    parameters: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ValidationError("method", self.method, "must be a method name")
        check_micros("requestor_pays", self.requestor_pays)
        check_micros("responder_pays", self.responder_pays)
        check_micros("net_transfer", self.net_transfer)
        if self.direction not in DIRECTIONS:
            raise ValidationError("direction", self.direction, f"must be one of {', '.join(DIRECTIONS)}")
        if (self.net_transfer == 0) != (self.direction == NO_TRANSFER):
            raise ValidationError("direction", self.direction, "must be 'none' exactly when net_transfer is 0",
                                  net_transfer=self.net_transfer)
        if not isinstance(self.parameters, Mapping):
            raise ValidationError("parameters", self.parameters, "must be a mapping")
        object.__setattr__(self, "parameters", dict(self.parameters))

    @property
    def total(self) -> int:
        return self.requestor_pays + self.responder_pays


def _allocation(metered: MeteredInteraction, method: str, requestor_share: Fraction | int,
                parameters: Mapping[str, Any] | None = None) -> Allocation:
    """The one place shares become micros: split T over [x, T - x], then derive the net transfer."""
    total = metered.total
    assert 0 <= requestor_share <= total, "each method clamps its share into [0, T] first"
    requestor_pays, responder_pays = split_largest_remainder(total, [Fraction(requestor_share),
                                                                     total - Fraction(requestor_share)])
    net = requestor_pays - metered.requestor_incurred  # == responder_incurred - responder_pays
    direction = REQUESTOR_TO_RESPONDER if net > 0 else RESPONDER_TO_REQUESTOR if net < 0 else NO_TRANSFER
    return Allocation(method=method, requestor_pays=requestor_pays, responder_pays=responder_pays,
                      net_transfer=abs(net), direction=direction, parameters=dict(parameters or {}))


def _clamp(share: Fraction, total: int) -> tuple[Fraction, str | None]:
    """Clamp a share into [0, T]; say which side was held at zero, if either."""
    if share < 0:
        return Fraction(0), "requestor"
    if share > total:
        return Fraction(total), "responder"
    return share, None


def _check_metered(metered: Any) -> MeteredInteraction:
    if not isinstance(metered, MeteredInteraction):
        raise ValidationError("metered", metered, "must be a MeteredInteraction (see ledger.economics.metering)")
    return metered


# ------------------------------------------------------------------ rule-based


def allocate_requestor_pays(metered: MeteredInteraction) -> Allocation:
    """The requestor pays the whole cost."""
    return _allocation(_check_metered(metered), REQUESTOR_PAYS, metered.total)


def allocate_responder_pays(metered: MeteredInteraction) -> Allocation:
    """The responder pays the whole cost."""
    return _allocation(_check_metered(metered), RESPONDER_PAYS, 0)


def allocate_equal_split(metered: MeteredInteraction) -> Allocation:
    """Each side pays half; an odd micro goes to the requestor (the split rule's tie-break)."""
    return _allocation(_check_metered(metered), EQUAL_SPLIT, Fraction(metered.total, 2))


def allocate_proportional(metered: MeteredInteraction) -> Allocation:
    """Each side pays in proportion to the tokens it wrote and read, from the four real counts.

    Requestor tokens = request output + response input; responder tokens = request input +
    response output.
    """
    flows = _check_metered(metered).flows
    requestor_tokens = flows.request_output.tokens + flows.response_input.tokens
    all_tokens = flows.total_tokens
    share = Fraction(metered.total * requestor_tokens, all_tokens) if all_tokens else Fraction(0)
    return _allocation(metered, PROPORTIONAL, share,
                       {"requestor_tokens": requestor_tokens, "responder_tokens": all_tokens - requestor_tokens})


# ------------------------------------------------------------------ game-theoretic


def allocate_shapley(metered: MeteredInteraction, *, standalone_cost_a: int | None = None,
                     standalone_cost_b: int = 0) -> Allocation:
    """Two-player Shapley value of the cost game; standalone costs in micro-USD.

    x = (T + c(A) - c(B)) / 2 (each side pays its standalone cost plus half of the joint cost
    beyond both standalone costs). ``standalone_cost_a`` defaults to the request-output cost.
    Clamped into [0, T] with the other side taking the rest, so money is conserved (deviation 2).
    """
    total = _check_metered(metered).total
    cost_a = metered.request_output.cost if standalone_cost_a is None else check_micros(
        "standalone_cost_a", standalone_cost_a)
    cost_b = check_micros("standalone_cost_b", standalone_cost_b)
    share, clamped = _clamp(Fraction(total + cost_a - cost_b, 2), total)
    return _allocation(metered, SHAPLEY, share, {"standalone_cost_a": cost_a, "standalone_cost_b": cost_b,
                                                 "clamped": clamped})


def allocate_nash_bargaining(metered: MeteredInteraction, *, value_a: int, value_b: int,
                             alpha: float | Fraction | int = DEFAULT_NASH_ALPHA, disagreement_a: int = 0,
                             disagreement_b: int = 0, no_surplus_fallback: str | None = None) -> Allocation:
    """Nash bargaining: the requestor keeps ``alpha`` of the surplus, the responder the rest.

    Values and disagreement points are micro-USD (what each side gains from the interaction, and
    what it would have without it). x = value_a - disagreement_a - alpha * S, clamped into [0, T].
    S <= 0 is an ``EconomicsError`` unless ``no_surplus_fallback`` names a rule-based method
    (requestor_pays, responder_pays, equal_split, proportional) to use instead, recorded in the result.
    """
    total = _check_metered(metered).total
    value_a = check_micros("value_a", value_a)
    value_b = check_micros("value_b", value_b)
    disagreement_a = check_micros("disagreement_a", disagreement_a)
    disagreement_b = check_micros("disagreement_b", disagreement_b)
    exact_alpha = exact_number("alpha", alpha, minimum=0, maximum=1)
    for side, value, disagreement in (("a", value_a, disagreement_a), ("b", value_b, disagreement_b)):
        if disagreement > value:
            raise ValidationError(f"disagreement_{side}", disagreement,
                                  f"exceeds value_{side} ({value}): that party would refuse any agreement")
    if no_surplus_fallback is not None and no_surplus_fallback not in _RULE_BASED:
        raise ValidationError("no_surplus_fallback", no_surplus_fallback,
                              f"must be one of {', '.join(sorted(_RULE_BASED))}")
    surplus = value_a + value_b - total - disagreement_a - disagreement_b
    parameters: dict[str, Any] = {"alpha": decimal_text(exact_alpha), "value_a": value_a, "value_b": value_b,
                                  "disagreement_a": disagreement_a, "disagreement_b": disagreement_b,
                                  "surplus": surplus}
    if surplus <= 0:
        if no_surplus_fallback is None:
            raise EconomicsError("Nash bargaining has no surplus to share: the values do not cover the cost "
                                 "plus the disagreement points", surplus=surplus, total=total, **{
                                     k: v for k, v in parameters.items() if k != "surplus"},
                                 hint="pass no_surplus_fallback='proportional' (or another rule) to allocate anyway")
        fallback = _RULE_BASED[no_surplus_fallback](metered)
        return Allocation(method=fallback.method, requestor_pays=fallback.requestor_pays,
                          responder_pays=fallback.responder_pays, net_transfer=fallback.net_transfer,
                          direction=fallback.direction,
                          parameters={**fallback.parameters, **parameters, "requested_method": NASH_BARGAINING,
                                      "outcome": "no_surplus"})
    share, clamped = _clamp(value_a - disagreement_a - exact_alpha * surplus, total)
    return _allocation(metered, NASH_BARGAINING, share, {**parameters, "clamped": clamped})


# ------------------------------------------------------------------ dispatcher

_RULE_BASED: dict[str, Callable[[MeteredInteraction], Allocation]] = {
    REQUESTOR_PAYS: allocate_requestor_pays,
    RESPONDER_PAYS: allocate_responder_pays,
    EQUAL_SPLIT: allocate_equal_split,
    PROPORTIONAL: allocate_proportional,
}


@dataclass(frozen=True)
class _Method:
    function: Callable[..., Allocation]
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()


_METHODS: dict[str, _Method] = {
    **{name: _Method(function) for name, function in _RULE_BASED.items()},
    SHAPLEY: _Method(allocate_shapley, optional=frozenset({"standalone_cost_a", "standalone_cost_b"})),
    NASH_BARGAINING: _Method(allocate_nash_bargaining, required=frozenset({"value_a", "value_b"}),
                             optional=frozenset({"alpha", "disagreement_a", "disagreement_b",
                                                 "no_surplus_fallback"})),
}
ALLOCATION_METHODS: tuple[str, ...] = ALLOCATION_METHOD_VALUES
assert tuple(_METHODS) == ALLOCATION_METHODS  # every method of the vocabulary is offered, none other


def allocate(metered: MeteredInteraction, method: str, **params: Any) -> Allocation:
    """Allocate by method name; unknown methods, unknown parameters and missing ones are refused."""
    if method == "beneficiary_pays":
        raise ValidationError("method", method, "not offered: the reference computes it as proportional under "
                                                "another name; ask for 'proportional', or 'requestor_pays' when "
                                                "the requestor is the beneficiary")
    spec = _METHODS.get(method) if isinstance(method, str) else None
    if spec is None:
        raise ValidationError("method", method, f"unknown allocation method; one of {', '.join(ALLOCATION_METHODS)}")
    unknown = sorted(set(params) - spec.required - spec.optional)
    if unknown:
        allowed = sorted(spec.required | spec.optional)
        raise ValidationError(unknown[0], params[unknown[0]],
                              f"not a parameter of {method}; allowed: {', '.join(allowed) or 'none'}")
    missing = sorted(spec.required - set(params))
    if missing:
        raise ValidationError(missing[0], None, f"required by {method}")
    return spec.function(metered, **params)
