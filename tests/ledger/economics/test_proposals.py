"""ledger.economics.proposals: no proposal under the metering-only tier or below the threshold on the interaction's
total; two parties' proposals agree within tolerance x total, inclusive, in exact micro-USD."""

from __future__ import annotations

from fractions import Fraction

import pytest

from ledger.economics.proposals import DEFAULT_PROPOSAL_TOLERANCE, should_propose, verify_proposals
from ledger.errors import ValidationError


def test_tier_one_never_proposes_and_the_threshold_is_on_the_total():
    assert not should_propose(tier="tier_1_metering", total_micros=10**9, threshold_micros=0)
    assert should_propose(tier="tier_2_rule_based", total_micros=10_000, threshold_micros=10_000)
    assert not should_propose(tier="tier_3_dynamic", total_micros=9_999, threshold_micros=10_000)
    with pytest.raises(ValidationError) as e:
        should_propose(tier="tier2", total_micros=1, threshold_micros=0)
    assert e.value.field == "tier"
    with pytest.raises(ValidationError) as e:
        should_propose(tier="tier_2_rule_based", total_micros=-1, threshold_micros=0)
    assert e.value.field == "total_micros"


def test_agreement_within_tolerance_inclusive():
    check = verify_proposals(192_000, 180_300, total_micros=234_000)  # 5% of 234000 = 11700
    assert (check.agreed, check.discrepancy_micros, check.allowed_micros) == (True, 11_700, Fraction(11_700))
    assert not verify_proposals(192_000, 180_299, total_micros=234_000).agreed
    assert verify_proposals(5, 5, total_micros=0, tolerance=0).agreed
    assert not verify_proposals(5, 6, total_micros=1_000, tolerance=Fraction(0)).agreed
    assert Fraction(1, 20) == DEFAULT_PROPOSAL_TOLERANCE


@pytest.mark.parametrize(("kw", "field"), [({"tolerance": 1.5}, "tolerance"), ({"tolerance": -0.1}, "tolerance"),
                                          ({"requestor_pays_a": -1}, "requestor_pays_a"),
                                          ({"requestor_pays_b": 1.5}, "requestor_pays_b")])
def test_bad_inputs_are_named(kw, field):
    args = {"requestor_pays_a": 1, "requestor_pays_b": 1, "total_micros": 10} | kw
    with pytest.raises(ValidationError) as e:
        verify_proposals(args.pop("requestor_pays_a"), args.pop("requestor_pays_b"), **args)
    assert e.value.field == field
