"""JSON events (``ledger.sdk.json_events``): the converter, its error paths, and its published JSON Schemas.

Method: the schemas are checked by a small evaluator written here for the keywords they use (``jsonschema`` is not
installed, and no runtime dependency is added for it; a test fails if a schema uses a keyword the evaluator does not
know). Every schema must accept its own examples, and the converter and the schema must judge a table of good and
bad events alike, except the rows marked ``stricter`` (rules a JSON Schema cannot state: sums across fields, the
signer, calendar dates, lone surrogates, integers written with a fraction): there the schema accepts and the converter
refuses. Token counts are asserted per kind, exactly, for usage shaped as OpenAI and Anthropic report it. Converted
events go through a real Emitter and are decoded back from its log.
"""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from typing import Any

import pytest

from ledger import limits
from ledger.errors import ValidationError
from ledger.log import read_all
from ledger.log.memory import MemoryLog
from ledger.sdk.emitter import Emitter
from ledger.sdk.json_events import (
    CLIENT_LABELS,
    KIND_SPECS,
    KINDS,
    NAME_PATTERN,
    UNLABELLED_EVENT_BYTES,
    JsonEvent,
    event_from_json,
    events_from_json,
    parse_rfc3339,
    schema,
    schemas,
)
from ledger.testing.homes import T0, seed_key
from ledger.wire import codec
from ledger.wire.events import (
    GENESIS_HASH,
    Action,
    Compute,
    Context,
    Data,
    Interaction,
    LlmUsage,
    Outcome,
    Trust,
    check_str,
)

SIGNER = "alice"
SERVICE = {"tokenledger.token_id": "0123456789ab"}


def one(obj: Any, **kw: Any) -> JsonEvent:
    return event_from_json(obj, signer=SIGNER, path="events[3]", **kw)


def refused(obj: Any, field: str, **kw: Any) -> ValidationError:
    with pytest.raises(ValidationError) as e:
        one(obj, **kw)
    assert e.value.field == field, e.value
    return e.value


# ------------------------------------------------------------------ a JSON Schema evaluator (the keywords we use)

ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "examples", "default", "format"}
ASSERTIONS = {"type", "properties", "required", "additionalProperties", "dependentRequired", "not", "const", "enum",
              "minimum", "maximum", "multipleOf", "minLength", "maxLength", "pattern", "maxProperties",
              "propertyNames"}


def _is_type(v: Any, t: str) -> bool:
    number = isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)
    return {"object": isinstance(v, dict), "array": isinstance(v, list), "string": isinstance(v, str),
            "boolean": isinstance(v, bool), "null": v is None, "number": number,
            # draft 2020-12: any number with a zero fractional part is an integer (1.0 is one)
            "integer": number and Decimal(str(v)) == Decimal(str(v)).to_integral_value()}[t]


def _pattern(p: str) -> re.Pattern[str]:
    # ECMA-262's $ (no multiline flag) matches only at the very end; Python's also before a final newline
    return re.compile(p[:-1] + r"\Z" if p.endswith("$") else p)


def valid(s: dict[str, Any], v: Any) -> bool:
    unknown = set(s) - ANNOTATIONS - ASSERTIONS
    assert not unknown, f"the evaluator does not know {unknown}"
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_is_type(v, t) for t in types):
            return False
    if "const" in s and not (v == s["const"] and type(v) is type(s["const"])):
        return False
    if "enum" in s and v not in s["enum"]:
        return False
    if "not" in s and valid(s["not"], v):
        return False
    if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
        if "minimum" in s and Decimal(str(v)) < Decimal(str(s["minimum"])):
            return False
        if "maximum" in s and Decimal(str(v)) > Decimal(str(s["maximum"])):
            return False
        if "multipleOf" in s and Decimal(str(v)) % Decimal(str(s["multipleOf"])) != 0:
            return False
    if isinstance(v, str):
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", len(v)):
            return False
        if "pattern" in s and not _pattern(s["pattern"]).search(v):
            return False
    if isinstance(v, dict):
        if any(k not in v for k in s.get("required", ())):
            return False
        if len(v) > s.get("maxProperties", len(v)):
            return False
        for k, needed in s.get("dependentRequired", {}).items():
            if k in v and any(n not in v for n in needed):
                return False
        props = s.get("properties", {})
        for k, x in v.items():
            if "propertyNames" in s and not valid(s["propertyNames"], k):
                return False
            if k in props:
                if not valid(props[k], x):
                    return False
            elif not _additional_ok(s.get("additionalProperties", True), x):
                return False
    return True


def _additional_ok(rule: Any, v: Any) -> bool:
    return rule is True or (isinstance(rule, dict) and valid(rule, v))


def converts(obj: Any) -> bool:
    try:
        one(obj)
    except ValidationError:
        return False
    return True


def test_the_evaluator_checks_what_it_claims():
    s = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}, "s": {"type": "string",
         "pattern": "^[a-z]*$"}}, "required": ["n"], "additionalProperties": False,
         "dependentRequired": {"s": ["n"]}, "not": {"required": ["x"]}}
    assert valid(s, {"n": 1}) and valid(s, {"n": 1.0}) and valid(s, {"n": 0, "s": "ab"})
    assert not valid(s, {"n": -1}) and not valid(s, {"n": True}) and not valid(s, {"n": 1.5})
    assert not valid(s, {"n": 1, "s": "ab\n"}) and not valid(s, {"s": "a"}) and not valid(s, {"n": 1, "y": 2})
    assert not valid({"multipleOf": 0.001}, Decimal("1.0005")) and valid({"multipleOf": 0.001}, 1.005)
    with pytest.raises(AssertionError):
        valid({"if": {}}, 1)


# ------------------------------------------------------------------ the schemas


def test_every_kind_has_a_2020_12_schema_with_descriptions_and_examples():
    all_ = schemas()
    assert tuple(all_) == KINDS == ("action", "data", "compute", "trust", "interaction", "outcome")
    for kind, s in all_.items():
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert s["$id"].endswith(f"/{kind}.json") and s["additionalProperties"] is False
        assert s["properties"]["kind"] == {"const": kind, "description": "The event kind."}
        for name, p in s["properties"].items():
            assert p["description"], (kind, name)
            if name != "kind":
                assert valid(p, p["examples"][0]), (kind, name, p["examples"])
        assert s["examples"]
    assert schema("nope") is None and schema("action") == all_["action"]
    all_["action"]["title"] = "changed"  # a copy: the module's own stays as it is
    assert schemas()["action"]["title"] == "action event"


@pytest.mark.parametrize("kind", KINDS)
def test_schema_and_converter_accept_every_example(kind):
    s = schema(kind)
    assert s is not None
    for example in s["examples"]:
        assert valid(s, example), example
        assert converts(example), example


@pytest.mark.parametrize("kind", KINDS)
def test_schema_and_converter_accept_each_fields_example(kind):
    """The kind's required fields, plus one optional field at a time (with what it needs), at its example value."""
    s = schema(kind)
    assert s is not None
    spec = KIND_SPECS[kind]
    base = {"kind": kind, **{f.name: f.example for f in spec.fields if f.required}}
    for f in spec.fields:
        if f.required:
            continue
        ev = dict(base, **{f.name: f.example})
        for n in s["dependentRequired"].get(f.name, ()):
            ev.setdefault(n, next(x.example for x in spec.fields if x.name == n))
            for m in s["dependentRequired"].get(n, ()):
                ev.setdefault(m, next(x.example for x in spec.fields if x.name == m))
        if kind == "action" and f.name in ("cache_write_tokens", "cache_write_1h_tokens"):
            ev.update(cache_write_tokens=5, input_tokens=20)  # within the input: an example of each alone is 0
        assert valid(s, ev), ev
        assert converts(ev), ev


def test_names_pattern_agrees_with_the_event_models_name_rule_on_every_bmp_character():
    pattern = _pattern(NAME_PATTERN)
    disagree = []
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue  # lone surrogates: refused by the converter alone (see the stricter rows)
        c = chr(cp)
        try:
            check_str("x", "a" + c)
            model = True
        except ValidationError:
            model = False
        if model != bool(pattern.search("a" + c)):
            disagree.append(hex(cp))
    assert disagree == []


LLM = {"kind": "action", "operation": "llm.call", "provider": "openai", "model": "gpt-4.1", "input_tokens": 2_400,
       "output_tokens": 350}
WEB = {"kind": "action", "operation": "web.search"}
INTERACTION = schemas()["interaction"]["examples"][0]
OUTCOME = {"kind": "outcome", "task_id": "task-42"}
DEL = object()

# (base event, field, value or DEL, expectation): ok = both accept; bad = both refuse (the converter naming the field);
# stricter = the schema accepts, the converter refuses (its rules a schema cannot state)
# (a fifth element: the field the converter names, when not the one changed)
TABLE: list[tuple[Any, ...]] = [
    (LLM, "input_tokens", limits.MAX_TOKENS, "ok"),
    (LLM, "input_tokens", limits.MAX_TOKENS + 1, "bad"),
    (LLM, "input_tokens", -1, "bad"),
    (LLM, "input_tokens", True, "bad"),
    (LLM, "input_tokens", "2400", "bad"),
    (LLM, "input_tokens", 2_400.5, "bad"),
    (LLM, "input_tokens", None, "bad"),
    (LLM, "input_tokens", 2_400.0, "stricter"),
    (LLM, "input_tokens", Decimal("2.4E+3"), "stricter"),
    (LLM, "input_tokens", DEL, "bad"),
    (LLM, "model", DEL, "bad"),
    (LLM, "cache_read_tokens", 2_400, "ok"),
    (LLM, "cache_read_tokens", 2_401, "stricter"),
    (LLM, "reasoning_tokens", 351, "stricter"),
    (LLM, "cache_write_1h_tokens", 1, "stricter"),
    (LLM, "service_tier", "", "ok"),
    (LLM, "service_tier", "x" * (limits.MAX_SERVICE_TIER_CHARS + 1), "bad"),
    (LLM, "provider_cost_micros", limits.MAX_MICROS + 1, "bad"),
    (LLM, "prompt_tokens", 5, "bad"),
    (LLM, "kind", "Action", "bad"),
    (WEB, "input_tokens", 0, "bad", "provider"),
    (WEB, "service_tier", "flex", "bad", "provider"),
    (WEB, "cost_weight", 1.5, "ok"),
    (WEB, "cost_weight", Decimal("0.001"), "ok"),
    (WEB, "cost_weight", 10**9, "ok"),
    (WEB, "cost_weight", 10**9 + 1, "bad"),
    (WEB, "cost_weight", Decimal("1.0005"), "bad"),
    (WEB, "cost_weight", Decimal("1E+999999999"), "bad"),
    (WEB, "cost_weight", -1, "bad"),
    (WEB, "cost_weight", "1.5", "bad"),
    (WEB, "cost_weight", False, "bad"),
    (WEB, "operation", "", "bad"),
    (WEB, "operation", "a\nb", "bad"),
    (WEB, "operation", "web.search\n", "bad"),
    (WEB, "operation", "a\u202eb", "bad"),
    (WEB, "operation", "x" * (limits.MAX_LABEL_CHARS + 1), "bad"),
    (WEB, "operation", "caf\u00e9 \U0001d11e", "ok"),
    (WEB, "operation", "a\ud800b", "stricter"),
    (WEB, "result_hash", None, "bad"),
    (WEB, "event_time", "2026-05-01T12:00:00Z", "ok"),
    (WEB, "event_time", "2026-05-01t14:00:00.25+02:00", "ok"),
    (WEB, "event_time", "2026-05-01 12:00:00Z", "ok"),
    (WEB, "event_time", "2026-05-01T12:00:00.123456000Z", "ok"),
    (WEB, "event_time", "2026-05-01T12:00:00.1234567Z", "bad"),
    (WEB, "event_time", "2026-05-01T12:00:00", "bad"),
    (WEB, "event_time", "2026-05-01", "bad"),
    (WEB, "event_time", "1777636800", "bad"),
    (WEB, "event_time", 1_777_636_800_000_000, "bad"),
    (WEB, "event_time", "2026-02-30T00:00:00Z", "stricter"),
    (WEB, "event_time", "2026-05-01T23:59:60Z", "stricter"),
    (WEB, "event_time", "2026-05-01T12:00:00+24:00", "stricter"),
    (WEB, "event_time", "1999-12-31T23:59:59Z", "stricter"),
    (WEB, "event_time_us", 1_777_636_800_000_000, "ok"),
    (WEB, "event_time_us", 1_777_636_800, "bad"),
    (WEB, "event_time_us", 1_777_636_800_000_000_000, "bad"),
    (WEB, "idempotency_key", "resp_01", "ok"),
    (WEB, "idempotency_key", "", "bad"),
    (WEB, "idempotency_key", "k" * 257, "bad"),
    (WEB, "labels", {"team": "growth", "cost center": "a b", "note": ""}, "ok"),
    (WEB, "labels", {f"k{i}": "v" for i in range(CLIENT_LABELS)}, "ok"),
    (WEB, "labels", {f"k{i}": "v" for i in range(CLIENT_LABELS + 1)}, "bad"),
    (WEB, "labels", {"tokenledger.token_id": "forged"}, "bad"),
    (WEB, "labels", {"team": 5}, "bad", "labels.team"),
    (WEB, "labels", {"team": None}, "bad", "labels.team"),
    (WEB, "labels", {"": "x"}, "bad"),
    (WEB, "labels", {"a\tb": "x"}, "bad"),
    (WEB, "labels", {"team": "a\x00b"}, "bad", "labels.team"),
    (WEB, "labels", {"team": "x" * (limits.MAX_LABEL_CHARS + 1)}, "bad", "labels.team"),
    (WEB, "labels", ["team"], "bad"),
    (WEB, "task", "task\x1b[31m", "bad"),
    (WEB, "agent", "bob", "bad"),
    ({"kind": "data"}, "bytes_read", 0, "ok"),
    ({"kind": "data"}, "bytes_read", limits.MAX_DATA_BYTES + 1, "bad"),
    ({"kind": "data"}, "duration_us", limits.MAX_DURATION_US + 1, "bad"),
    ({"kind": "compute", "node_id": "n1", "cpu_time_slices": 3}, "parallel_jobs", 0, "bad"),
    ({"kind": "compute", "node_id": "n1", "cpu_time_slices": 3}, "cpu_time_slices", DEL, "bad"),
    ({"kind": "trust", "subject_id": "bob", "dimension": "accuracy", "value": 0.8}, "value", Decimal("-0.5"), "ok"),
    ({"kind": "trust", "subject_id": "bob", "dimension": "accuracy", "value": 0.8}, "value", Decimal("0.0001"), "bad"),
    ({"kind": "trust", "subject_id": "bob", "dimension": "accuracy", "value": 0.8}, "dimension", "honesty", "bad"),
    (INTERACTION, "request_input_cached_tokens", 1_501, "stricter"),
    (INTERACTION, "responder_id", SIGNER, "stricter"),
    (INTERACTION, "responder_model", DEL, "bad"),
    (INTERACTION, "requestor_id", SIGNER, "bad"),
    (INTERACTION, "cosignature", "00", "bad"),
    (OUTCOME, "confidence", Decimal("0.9"), "ok"),
    (OUTCOME, "confidence", Decimal("1.2"), "bad"),
    (OUTCOME, "score", Decimal("0.8"), "bad", "subject_id"),  # a score needs its subject
    (OUTCOME, "subject_id", "bob", "bad", "score"),  # and a subject its score
    (OUTCOME, "success", "yes", "bad"),
    (dict(OUTCOME, score=0.8), "subject_id", SIGNER, "stricter"),
]


@pytest.mark.parametrize("row", TABLE, ids=[f"{r[0]['kind']}.{r[1]}={r[2]!r:.30}" for r in TABLE])
def test_schema_and_converter_agree(row):
    base, name, value, expect, *named = row
    ev = copy.deepcopy(base)
    if value is DEL:
        del ev[name]
    else:
        ev[name] = value
    s = schema(base["kind"])
    assert s is not None
    assert valid(s, ev) is (expect != "bad"), "the schema's judgement"
    if expect == "ok":
        assert converts(ev), "the converter's judgement"
        return
    refused(ev, "events[3]." + (named[0] if named else name))


# ------------------------------------------------------------------ exact conversion


def test_openai_usage_converts_with_cache_inside_the_input_and_reasoning_inside_the_output():
    # a Chat Completions usage: prompt_tokens 2,400 of which 1,024 cached; completion_tokens 350 of which 128 reasoning
    ev = one({"kind": "action", "operation": "llm.call", "provider": "openai", "model": "gpt-4.1-2025-04-14",
              "input_tokens": 2_400, "cache_read_tokens": 1_024, "output_tokens": 350, "reasoning_tokens": 128,
              "service_tier": "flex", "provider_cost_micros": 4_130, "cost_weight": 2.25,
              "idempotency_key": "chatcmpl-7", "event_time": "2026-05-01T14:00:00.000250+02:00", "org": "acme",
              "project": "search", "task": "t1", "stage": "retrieve", "run": "r9", "labels": {"team": "growth"}},
             service_labels=SERVICE)
    assert ev.body == Action(operation="llm.call", cost_weight_milli=2_250, result_hash=None, usage=LlmUsage(
        provider="openai", model="gpt-4.1-2025-04-14", input_tokens=2_400, output_tokens=350, cache_read_tokens=1_024,
        cache_write_tokens=0, reasoning_tokens=128, cache_write_1h_tokens=0, service_tier="flex",
        provider_cost_micros=4_130))
    assert ev.event_time_us == 1_777_636_800_000_250 and ev.idempotency_key == "chatcmpl-7"
    assert ev.context == Context(org="acme", project="search", task="t1", stage="retrieve", run="r9",
                                 labels=(("team", "growth"), ("tokenledger.token_id", "0123456789ab")))


def test_anthropic_usage_is_given_with_its_cache_added_to_the_input():
    # a Messages usage: input_tokens 50 (uncached), cache_read_input_tokens 8,000, cache_creation_input_tokens 1,200
    # of which ephemeral_1h 200, output_tokens 700 -> input 9,250 on the ledger
    ev = one({"kind": "action", "operation": "llm.call", "provider": "anthropic", "model": "claude-sonnet-4-6",
              "input_tokens": 50 + 8_000 + 1_200, "cache_read_tokens": 8_000, "cache_write_tokens": 1_200,
              "cache_write_1h_tokens": 200, "output_tokens": 700})
    u = ev.body.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens, u.output_tokens,
            u.reasoning_tokens) == (9_250, 8_000, 1_200, 200, 700, 0)
    assert ev.event_time_us is None and ev.context == Context() and ev.body.cost_weight_milli == 1_000


def test_every_other_kind_converts_to_its_body_exactly():
    data = one({"kind": "data", "bytes_read": 52_000, "bytes_written": 7, "source_hash": "sha256:ab",
                "duration_us": 120_000})
    assert data.body == Data(bytes_read=52_000, bytes_written=7, source_hash="sha256:ab", destination_hash=None,
                             duration_us=120_000)
    assert one({"kind": "compute", "node_id": "gpu-1", "cpu_time_slices": 40}).body == Compute(
        node_id="gpu-1", cpu_time_slices=40, gpu_time_slices=0, peak_memory_mb=0, parallel_jobs=1)
    assert one({"kind": "trust", "subject_id": "bob", "dimension": "reliability", "value": Decimal("-0.125"),
                "half_life_us": 3_600_000_000}).body == Trust(subject_id="bob", dimension="reliability",
                                                               value_milli=-125, half_life_us=3_600_000_000)
    body = one(INTERACTION).body
    assert isinstance(body, Interaction) and body.requestor_id == SIGNER and body.responder_id == "researcher"
    assert (body.request_output.tokens, body.request_input.tokens, body.request_input.cached_tokens,
            body.response_output.tokens, body.response_input.tokens, body.response_input.cached_tokens) == (
        1_500, 1_500, 300, 4_000, 4_000, 0)
    assert one({"kind": "outcome", "task_id": "t1", "score": 0.8, "subject_id": "bob", "success": False}).body == \
        Outcome(task_id="t1", confidence_milli=None, score_milli=800, success=False, subject_id="bob")


def test_errors_name_the_json_path_and_show_the_value():
    e = refused({"kind": "action", "operation": "x", "provider": "o", "model": "m", "input_tokens": 10,
                 "output_tokens": 1, "cache_read_tokens": 8, "cache_write_tokens": 3}, "events[3].cache_read_tokens")
    assert e.value == 8 and "input_tokens (10)" in e.reason
    e = refused({"kind": "data", "bytes_read": True}, "events[3].bytes_read")
    assert e.value is True
    assert refused({"kind": "data", "bytes_read": float("nan")}, "events[3].bytes_read").reason.startswith(
        "must be a finite integer")
    assert refused({"kind": "data", "bytes_read": 1e3}, "events[3].bytes_read").value == 1000.0
    assert refused({"kind": "action"}, "events[3].operation").reason == "is required for kind action"
    assert refused({"operation": "x"}, "events[3].kind").reason == "is required"
    assert refused({"kind": "rejected"}, "events[3].kind").value == "rejected"
    assert refused({"kind": "grant"}, "events[3].kind").value == "grant"  # control kinds are not taken
    e = refused({"kind": "action", "operation": "x", "labels": {"cost center": 7}},
                'events[3].labels["cost center"]')
    assert e.value == 7
    assert refused({"kind": "action", "operation": "x", "labels": {"team": "\udc00"}}, "events[3].labels.team")
    assert refused({"kind": "action", "operation": "x", "event_time": "2026-01-01T00:00:00Z",
                    "event_time_us": T0}, "events[3].event_time_us")
    assert refused([], "events[3]").value == []
    with pytest.raises(ValidationError) as err:
        events_from_json({"kind": "data"}, signer=SIGNER)
    assert err.value.field == "events"


def test_rfc3339_is_exact_to_the_microsecond():
    assert parse_rfc3339("2026-05-01T12:00:00Z") == 1_777_636_800_000_000
    assert parse_rfc3339("2026-05-01T14:00:00.000001+02:00") == 1_777_636_800_000_001
    assert parse_rfc3339("2026-05-01T09:30:00.999999-02:30") == 1_777_636_800_999_999
    assert parse_rfc3339("2026-05-01T12:00:00.500000000z") == 1_777_636_800_500_000
    assert parse_rfc3339("2199-12-31T23:59:59.999999Z") == limits.MAX_EVENT_TIME_US - 1
    for bad in ("2026-05-01T12:00:00.0000001Z", "2026-05-01T12:00Z", "2026-05-01T12:00:00+0200",
                "\uff12\uff10\uff12\uff16-05-01T12:00:00Z", "2026-05-01T12:00:00Z\n", "2200-01-01T00:00:00.000001Z"):
        with pytest.raises(ValidationError) as e:
            parse_rfc3339(bad, "events[0].event_time")
        assert e.value.field == "events[0].event_time" and e.value.value == bad


def test_one_key_twice_in_a_list_must_mean_one_event():
    ev = {"kind": "action", "operation": "x", "idempotency_key": "k1", "event_time_us": T0}
    out = events_from_json([ev, dict(ev)], signer=SIGNER)
    assert out[0] == out[1]  # the emitter returns the first one's id for the second: a duplicate
    # another event time is the same event (a retry may be stamped later), other content is not
    events_from_json([ev, dict(ev, event_time_us=T0 + 1)], signer=SIGNER)
    with pytest.raises(ValidationError) as e:
        events_from_json([ev, {"kind": "data"}, dict(ev, cost_weight=2)], signer=SIGNER)
    assert e.value.field == "events[2].idempotency_key" and "events[0]" in e.value.reason


def test_service_labels_are_added_to_every_context_and_must_be_its_own():
    out = events_from_json([{"kind": "data"}, {"kind": "data", "task": "t", "labels": {"a": "b"}}], signer=SIGNER,
                           service_labels=SERVICE)
    assert [e.context.labels for e in out] == [(("tokenledger.token_id", "0123456789ab"),),
                                               (("a", "b"), ("tokenledger.token_id", "0123456789ab"))]
    assert out[1].context.task == "t"
    with pytest.raises(ValueError, match="service labels"):
        events_from_json([{"kind": "data"}], signer=SIGNER, service_labels={"team": "x"})


def _largest(kind: str) -> dict[str, Any]:
    """An event of ``kind`` with every field at its longest / widest, labels aside (4-byte characters)."""
    wide = "\U0001d11e"
    ev: dict[str, Any] = {"kind": kind}
    for f in KIND_SPECS[kind].fields:
        ev[f.name] = {"id": wide * f.chars, "tier": wide * f.chars, "int": f.hi, "milli": f.hi // 1000,
                      "bool": False, "choice": f.choices[0] if f.choices else None}[f.type]
    ev.update({n: wide * limits.MAX_ID_CHARS for n in ("idempotency_key", "org", "project", "task", "stage", "run")})
    ev["event_time_us"] = limits.MAX_EVENT_TIME_US
    if kind == "action":
        ev.update(input_tokens=limits.MAX_TOKENS, cache_read_tokens=limits.MAX_TOKENS // 2,
                  cache_write_tokens=limits.MAX_TOKENS // 2, cache_write_1h_tokens=limits.MAX_TOKENS // 2,
                  output_tokens=limits.MAX_TOKENS, reasoning_tokens=limits.MAX_TOKENS)
    if kind == "interaction":
        ev.update(request_input_cached_tokens=limits.MAX_TOKENS, response_input_cached_tokens=limits.MAX_TOKENS)
    return ev


@pytest.mark.parametrize("kind", KINDS)
def test_every_event_without_labels_encodes_within_the_unlabelled_bound(kind):
    ev = one(_largest(kind))
    raw = codec.assemble_event(event_id="0" * 32, signer_id="\U0001d11e" * limits.MAX_ID_CHARS, seq=limits.INT64_MAX,
                               prev_hash=GENESIS_HASH, idempotency_key=ev.idempotency_key,
                               content=codec.encode_content(ev.event_time_us, ev.context, ev.body))
    assert len(raw) <= UNLABELLED_EVENT_BYTES


def _emitter() -> tuple[Emitter, MemoryLog]:
    log = MemoryLog()
    log.ensure_topic("ledger.events")
    return Emitter(log, seed_key(SIGNER), topic="ledger.events", background_flush=False), log


def test_labels_that_make_an_event_too_large_are_refused_before_the_emitter_would():
    wide = "\U0001d11e"
    labels = {f"k{i:02d}" + wide * 250: wide * limits.MAX_LABEL_CHARS for i in range(CLIENT_LABELS)}
    ev = {"kind": "data", "event_time_us": T0, "labels": labels}
    e = refused(ev, "events[3].labels")
    assert "limits.MAX_EVENT_BYTES" in e.reason
    em, _ = _emitter()
    ctx = Context(labels=tuple(labels.items()))
    with pytest.raises(ValidationError) as err:  # what the emitter says of the same event
        em.emit(Data(bytes_read=0, bytes_written=0), context=ctx, event_time_us=T0)
    assert err.value.field == "event"
    # fewer such labels fit, and the emitter takes the event the converter took
    small = dict(list(labels.items())[:40])
    ok = one(dict(ev, labels=small))
    em.emit(ok.body, context=ok.context, event_time_us=ok.event_time_us)
    em.close()


def test_converted_events_go_through_an_emitter_and_read_back_equal():
    items = [s["examples"][0] for s in schemas().values()] + [
        dict(LLM, idempotency_key="r1", event_time_us=T0 + 5, labels={"team": "a"})]
    events = events_from_json(json.loads(json.dumps(items), parse_float=Decimal), signer=SIGNER,
                              service_labels=SERVICE)
    em, log = _emitter()
    ids = [em.emit(e.body, context=e.context, event_time_us=e.event_time_us, idempotency_key=e.idempotency_key)
           for e in events]
    em.flush()
    decoded = [d.event for r in read_all(log, "ledger.events") for d in
               (codec.decode_event(raw) for raw in codec.decode_batch(r.value).events)]
    assert [d.event_id for d in decoded] == ids
    assert [(d.body, d.context) for d in decoded] == [(e.body, e.context) for e in events]
    assert decoded[-1].event_time_us == T0 + 5 and decoded[-1].idempotency_key == "r1"
    em.close()
