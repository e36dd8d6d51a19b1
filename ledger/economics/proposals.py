"""Settlement proposals: whether to propose at all, and whether two parties' proposals agree.

* **Tier**: ``tier_1_metering`` meters and never proposes (``ledger.economics.netting.tier_settles``).
* **Threshold on the interaction**: an interaction whose total cost is below the settlement threshold is not worth
  a proposal (the reference's ``SettlementEngine.propose``); this is checked on the interaction's total, before any
  allocation, in addition to the threshold on pair nets (``netting.net_with_threshold``).
* **Verification**: each party allocates the interaction from its own record; the two proposals agree when the
  requestor's shares differ by at most ``tolerance`` x the interaction's total cost (inclusive). Money is int
  micro-USD, the tolerance an exact fraction in [0, 1] (a float is read as the decimal it prints as), so the
  comparison never depends on float rounding.

Never: I/O, clock, floats as money.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ledger.economics.money import check_micros, exact_number
from ledger.economics.netting import tier_settles

DEFAULT_PROPOSAL_TOLERANCE = Fraction(1, 20)  # 5% of the interaction's total, the reference's default


def should_propose(*, tier: str, total_micros: int, threshold_micros: int) -> bool:
    """Whether an interaction of ``total_micros`` gets a settlement proposal under ``tier``.

    False under the metering-only tier, and when the total is below ``threshold_micros`` (a total equal to the
    threshold is proposed). An unknown tier is a ValidationError (never "settles").
    """
    check_micros("total_micros", total_micros)
    check_micros("threshold_micros", threshold_micros)
    return tier_settles(tier) and total_micros >= threshold_micros


@dataclass(frozen=True, kw_only=True)
class ProposalCheck:
    """The outcome of comparing two proposals of one interaction (money in micro-USD)."""

    agreed: bool
    discrepancy_micros: int  # |requestor share in a - requestor share in b|
    allowed_micros: Fraction  # tolerance x total: the largest discrepancy that still agrees


def verify_proposals(requestor_pays_a: int, requestor_pays_b: int, *, total_micros: int,
                     tolerance: float | Fraction = DEFAULT_PROPOSAL_TOLERANCE) -> ProposalCheck:
    """Compare the requestor's share in two parties' proposals of the same interaction."""
    a = check_micros("requestor_pays_a", requestor_pays_a)
    b = check_micros("requestor_pays_b", requestor_pays_b)
    total = check_micros("total_micros", total_micros)
    allowed = exact_number("tolerance", tolerance, minimum=0, maximum=1) * total
    discrepancy = abs(a - b)
    return ProposalCheck(agreed=discrepancy <= allowed, discrepancy_micros=discrepancy, allowed_micros=allowed)
