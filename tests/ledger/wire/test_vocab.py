"""The closed vocabularies are defined once (ledger.wire.vocab) and agree with the Avro schemas, the event
model's validation and the economics that compute with them."""

from __future__ import annotations

import ast
import enum
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.economics import allocation, budget, netting, reputation
from ledger.errors import ValidationError
from ledger.wire import events, vocab

ROOT = Path(__file__).resolve().parents[3]

# Avro enum name -> the vocabulary its symbols must equal
SCHEMA_ENUMS: dict[str, type[enum.Enum]] = {
    "Role": vocab.Role,
    "BudgetScope": vocab.ScopeLevel,
    "ReservationScope": vocab.ScopeLevel,
    "BudgetKind": vocab.BudgetKind,
    "HardLimitAction": vocab.HardLimitAction,
    "ReservationAction": vocab.ReservationAction,
    "TrustDimension": vocab.TrustDimension,
    "Capability": vocab.Capability,
}


def _schema_enums(folder: Path = ROOT / "schemas") -> list[tuple[str, str, list[str]]]:
    found: list[tuple[str, str, list[str]]] = []

    def walk(node: Any, file: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "enum":
                found.append((file, node["name"], node["symbols"]))
            for value in node.values():
                walk(value, file)
        elif isinstance(node, list):
            for value in node:
                walk(value, file)

    for path in sorted(folder.glob("*.avsc")):
        walk(json.loads(path.read_text(encoding="utf-8")), path.name)
    return found


def test_every_schema_enum_equals_its_vocabulary():
    seen = _schema_enums()
    assert {name for _, name, _ in seen} == set(SCHEMA_ENUMS)  # a new schema enum needs a vocabulary here
    for file, name, symbols in seen:
        assert symbols == list(vocab.values(SCHEMA_ENUMS[name])), (file, name)


def test_packaged_schemas_have_the_same_enums():
    assert _schema_enums(ROOT / "ledger" / "avsc") == _schema_enums()


def test_values_tuples_are_plain_strings_in_order():
    for v in vocab.VOCABULARIES:
        values = vocab.values(v)
        assert values == tuple(m.value for m in v)
        assert all(type(x) is str for x in values)
        assert len(set(values)) == len(values)


def test_events_validate_with_the_vocabularies():
    assert events.TRUST_DIMENSIONS == vocab.TRUST_DIMENSION_VALUES
    assert events.ROLES == vocab.ROLE_VALUES
    assert events.BUDGET_SCOPES == vocab.SCOPE_LEVEL_VALUES
    assert events.BUDGET_KINDS == vocab.BUDGET_KIND_VALUES
    assert events.HARD_LIMIT_ACTIONS == vocab.HARD_LIMIT_ACTION_VALUES
    assert events.SETTLEMENT_TIERS == vocab.SETTLEMENT_TIER_VALUES
    assert events.ALLOCATION_METHODS == vocab.ALLOCATION_METHOD_VALUES
    assert events.RESERVATION_ACTIONS == vocab.RESERVATION_ACTION_VALUES
    assert events.TRANSFER_DIRECTIONS == vocab.TRANSFER_DIRECTION_VALUES
    assert events.SETTLEMENT_STATUSES == vocab.SETTLEMENT_STATUS_VALUES


def test_events_write_no_vocabulary_inline():
    """Every check_choice in the event model names a vocabulary tuple; none spells its words inline."""
    tree = ast.parse((ROOT / "ledger" / "wire" / "events.py").read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "check_choice"]
    assert len(calls) >= 10
    words = [vocab.values(v) for v in vocab.VOCABULARIES]
    vocab_tuples = {name for name in dir(events) if name.isupper() and any(getattr(events, name) == w for w in words)}
    for call in calls:
        choices = call.args[2]
        assert isinstance(choices, ast.Name) and choices.id in vocab_tuples, ast.unparse(call)


@pytest.mark.parametrize(("choices", "field"), [
    (vocab.ROLE_VALUES, "role"), (vocab.TRUST_DIMENSION_VALUES, "dimension"),
])
def test_check_choice_refuses_words_outside_the_vocabulary(choices, field):
    for word in choices:
        assert events.check_choice(field, word, choices) == word
    with pytest.raises(ValidationError) as e:
        events.check_choice(field, "nope", choices)
    assert e.value.field == field and e.value.value == "nope"


def test_economics_use_the_same_enums():
    assert budget.BudgetKind is vocab.BudgetKind
    assert budget.ScopeLevel is vocab.ScopeLevel
    assert budget.HardLimitAction is vocab.HardLimitAction
    assert reputation.TrustDimension is vocab.TrustDimension
    assert netting.SettlementTier is vocab.SettlementTier
    assert allocation.ALLOCATION_METHODS == vocab.ALLOCATION_METHOD_VALUES
    assert allocation.DIRECTIONS == vocab.TRANSFER_DIRECTION_VALUES
    assert (allocation.REQUESTOR_PAYS, allocation.SHAPLEY, allocation.NASH_BARGAINING) == (
        "requestor_pays", "shapley", "nash_bargaining")
    assert type(allocation.SHAPLEY) is str and type(allocation.NO_TRANSFER) is str  # written to the log as is


def test_members_behave_as_before():
    """(str, Enum): members equal and hash as their values; .value is what is written out."""
    assert vocab.BudgetKind.USD == "usd" and hash(vocab.BudgetKind.USD) == hash("usd")
    assert vocab.BudgetKind("llm_tokens") is vocab.BudgetKind.LLM_TOKENS
    assert vocab.BudgetKind.USD.unit == "micro-USD"
    assert [s.depth for s in vocab.ScopeLevel] == [0, 1, 2, 3]
    assert json.dumps([vocab.SettlementTier.TIER_2_RULE_BASED]) == '["tier_2_rule_based"]'
    assert netting.settlement_tier("tier_3_dynamic") is vocab.SettlementTier.TIER_3_DYNAMIC
    assert netting.tier_settles(vocab.SettlementTier.TIER_1_METERING) is False
