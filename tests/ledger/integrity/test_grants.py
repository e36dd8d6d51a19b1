"""Grants and the skew window are control events folded into the key ring, like keys."""

from __future__ import annotations

import pytest

from ledger import limits
from ledger.errors import RejectCode, RejectError, ValidationError
from ledger.integrity.keyring import KeyInfo, KeyRing, SkewWindow
from ledger.integrity.keys import SigningKey
from ledger.wire.events import AgentRegistered, ClockPolicy, Grant

OP = SigningKey.generate("operator")
ALICE = SigningKey.generate("alice")


def _ring() -> tuple[KeyRing, KeyInfo]:
    ring = KeyRing({"operator": OP.public.raw})
    ring.apply(AgentRegistered("alice", ALICE.key_id, ALICE.public.raw))
    op = ring.get(OP.key_id)
    assert op is not None
    return ring, op


def test_grant_and_withdrawal_fold_in_order():
    ring, op = _ring()
    g = Grant("alice", "backfill", "", 3_600_000_000)
    ring.validate_control(op, g)
    ring.apply(g)
    assert ring.granted("alice", "backfill") == g
    ring.apply(Grant("alice", "reserve", "project:p1"))
    ring.apply(Grant("alice", "reserve", "org:acme"))
    assert ring.granted_scopes("alice", "reserve") == ["org:acme", "project:p1"]
    ring.apply(Grant("alice", "backfill", "", 0, False))
    assert ring.granted("alice", "backfill") is None
    assert ring.granted("alice", "reserve", "project:p1") is not None


def test_a_copy_does_not_share_grants_until_adopted():
    ring, _ = _ring()
    trial = ring.copy()
    trial.apply(Grant("alice", "grader"))
    trial.apply(ClockPolicy(1_000_000, 2_000_000))
    assert ring.granted("alice", "grader") is None and ring.skew == SkewWindow()
    ring.adopt(trial)
    assert ring.granted("alice", "grader") is not None and ring.skew == SkewWindow(1_000_000, 2_000_000)


def test_default_skew_window_is_minus_five_minutes_plus_one_minute():
    ring, _ = _ring()
    assert ring.skew.max_behind_us == 300_000_000 == limits.DEFAULT_MAX_CLOCK_BEHIND_US
    assert ring.skew.max_ahead_us == 60_000_000 == limits.DEFAULT_MAX_CLOCK_AHEAD_US


def test_grant_for_an_unregistered_signer_is_refused():
    ring, op = _ring()
    with pytest.raises(RejectError) as e:
        ring.validate_control(op, Grant("mallory", "notary"))
    assert e.value.code == RejectCode.INVALID_FIELD and e.value.evidence["value"] == "mallory"


def test_only_an_operator_may_grant():
    ring, _ = _ring()
    alice = ring.get(ALICE.key_id)
    assert alice is not None
    with pytest.raises(RejectError) as e:
        ring.validate_control(alice, Grant("alice", "grader"))
    assert e.value.code == RejectCode.NOT_OPERATOR


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"capability": "root"}, "capability"),
    ({"capability": "reserve", "scope": ""}, "scope"),
    ({"capability": "reserve", "scope": "galaxy:x"}, "scope"),
    ({"capability": "reserve", "scope": "project:"}, "scope"),
    ({"capability": "notary", "scope": "project:p1"}, "scope"),
    ({"capability": "backfill", "max_age_us": 0}, "max_age_us"),
    ({"capability": "backfill", "max_age_us": limits.MAX_BACKFILL_AGE_US + 1}, "max_age_us"),
    ({"capability": "grader", "max_age_us": 5}, "max_age_us"),
    ({"capability": "grader", "active": "yes"}, "active"),
])
def test_bad_grants_name_the_field(kwargs, field):
    with pytest.raises(ValidationError) as e:
        Grant(**{"agent_id": "alice", **kwargs})
    assert e.value.field == field


@pytest.mark.parametrize(("behind", "ahead", "field"), [
    (-1, 0, "max_behind_us"), (0, -1, "max_ahead_us"),
    (limits.MAX_CLOCK_SKEW_US + 1, 0, "max_behind_us"), (0, limits.MAX_CLOCK_SKEW_US + 1, "max_ahead_us"),
])
def test_bad_clock_policies_name_the_field(behind, ahead, field):
    with pytest.raises(ValidationError) as e:
        ClockPolicy(behind, ahead)
    assert e.value.field == field
