"""Schema evolution rules (schemas/README.md): the current schemas are released, every released
schema and the current one read each other's data, and the checker itself catches bad changes."""

from __future__ import annotations

import copy
import json

import pytest

from ledger.wire import schemas


def test_current_schemas_are_released():
    released = schemas.released()
    for name, s in schemas.current().items():
        assert s.fingerprint in released, f"{name} changed: run python scripts/release_schemas.py"


@pytest.mark.parametrize("name", ["Event", "SignedBatch"])
def test_released_and_current_read_each_other(name):
    cur = schemas.current()[name]
    olds = [s for s in schemas.released().values() if s.name == name]
    assert olds
    for old in olds:
        assert schemas.can_read(old, cur) == [], f"current cannot read {old.fingerprint_hex}"
        assert schemas.can_read(cur, old) == [], f"{old.fingerprint_hex} cannot read current"
        assert schemas.evolution_problems(old.source, cur.source) == []


def test_samples_visit_every_event_kind():
    ev = schemas.current()["Event"]
    body_union = next(f for f in ev.source["fields"] if f["name"] == "body")["type"]
    seen = {d["body"][0] for d in schemas.sample_data(ev.source, 48)}
    assert seen == {t["name"] if isinstance(t, dict) else t for t in body_union}


def test_old_event_schema_reads_every_kind_it_knows_and_only_those():
    old = next(s for s in schemas.released().values() if s.name == "Event" and s != schemas.current()["Event"])
    cur = schemas.current()["Event"]
    old_kinds = set(schemas._records(old.source))
    samples = schemas.sample_data(cur.source, 48)
    unknown = [d for d in samples if d["body"][0] not in old_kinds]
    assert unknown, "the current schema has kinds the first release did not"
    assert schemas.can_read(cur, old) == []  # every sample of a known kind reads fine


def _with_action_change(change):
    cur = schemas.current()["Event"]
    new = copy.deepcopy(cur.source)
    body = next(f for f in new["fields"] if f["name"] == "body")["type"]
    action = next(t for t in body if isinstance(t, dict) and t["name"] == "tokenledger.Action")
    change(action)
    return cur, schemas._make("Event", new)


def test_added_field_with_default_is_compatible_both_ways():
    cur, new = _with_action_change(lambda a: a["fields"].append({"name": "tenant", "type": "string", "default": ""}))
    assert schemas.evolution_problems(cur.source, new.source) == []
    assert schemas.can_read(cur, new) == []
    assert schemas.can_read(new, cur) == []
    assert new.fingerprint != cur.fingerprint


def test_checker_rejects_a_field_added_without_default():
    cur, new = _with_action_change(lambda a: a["fields"].append({"name": "tenant", "type": "string"}))
    assert any("without a default" in p for p in schemas.evolution_problems(cur.source, new.source))
    assert schemas.can_read(cur, new) != []  # new readers cannot read old data


def test_checker_rejects_a_removed_field():
    cur, new = _with_action_change(lambda a: a["fields"].pop(0))
    assert any("operation was removed" in p for p in schemas.evolution_problems(cur.source, new.source))
    assert schemas.can_read(new, cur) != []  # old readers cannot read new data


def test_checker_rejects_a_retyped_field():
    def retype(a):
        a["fields"][1]["type"] = "string"

    cur, new = _with_action_change(retype)
    assert any("changed type" in p for p in schemas.evolution_problems(cur.source, new.source))
    assert schemas.can_read(cur, new) != []


def test_fingerprint_matches_fastavro_and_spec():
    import fastavro.schema

    for s in schemas.current().values():
        assert fastavro.schema.fingerprint(s.canonical, "CRC-64-AVRO") == s.fingerprint.hex()
    # Avro spec test value: fingerprint of the canonical form "null"
    assert schemas.crc64_avro(b'"null"') == 0x63DD24E7CC258F8A


def test_released_files_are_valid_json_schemas():
    import importlib.resources

    folder = importlib.resources.files("ledger").joinpath("avsc", "released")
    files = [p for p in folder.iterdir() if p.name.endswith(".json")]
    assert files
    for p in files:
        doc = json.loads(p.read_text())
        s = schemas._make(p.name.split("-")[0], doc)
        assert p.name == schemas.released_file_name(s)
