"""``POST /v1/events`` and ``GET /v1/schemas`` over real HTTP on loopback, against a real ``tokenledger serve``
process on a real home: JSON events are signed by the service as the agent (custodial) and land on the log, where
the readers' audit accepts them and the journal processor's ``events`` view shows them with the token that ingested
them; retries with the same idempotency keys append nothing; every refusal (401, 403, 400 naming ``events[i].field``,
409, 413, 415, 422) leaves the log as it was."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.econ import rows, run
from support.serving import audit_clean, ends, problem

from ledger import limits
from ledger.log import read_all
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.sdk.json_events import schema
from ledger.sdk.tokens import token_id_of
from ledger.testing.homes import T0, make_home
from ledger.wire import codec
from ledger.wire.events import Action, Data, Event, Interaction, LlmUsage
from processors.api.events import BODY_LIMIT_BYTES, EVENTS_PER_REQUEST
from processors.testing.serve import Served, running_service

PROBLEM = "application/problem+json"
AGENTS = ("alice", "bob", "carol", "dave", "erin", "grader")
LABEL = "tokenledger.token_id"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return make_home(tmp_path_factory.mktemp("events") / "home", agents=AGENTS)


@pytest.fixture(scope="module")
def served(home: Home) -> Iterator[Served]:
    with running_service(home.path) as s:
        yield s


def post(served: Served, body: Any, token: str | None = None, *, raw: bytes | None = None,
         media: str = "application/json") -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(served.url + "/v1/events", content=content, timeout=60,
                      headers={"Content-Type": media, **({} if token == "" else served.auth(token))})




def events_of(home: Home, signer: str) -> list[Event]:
    """Every event ``signer`` has on the log, decoded from its signed batches, in log order."""
    log = home.open_log()
    try:
        return [codec.decode_event(raw).event for r in read_all(log, home.topic) if r.key == signer.encode()
                for raw in codec.decode_batch(r.value).events]
    finally:
        log.close()



def ingested(served: Served) -> dict[str, float]:
    text = httpx.get(served.url + "/metrics", headers=served.auth(), timeout=60).text
    return {s.labels["outcome"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "tokenledger_ingest_events_total" and s.labels["route"] == "events"}


LLM = {"kind": "action", "operation": "llm.call", "provider": "anthropic", "model": "claude-sonnet-4-6",
       "input_tokens": 9_250, "cache_read_tokens": 8_000, "cache_write_tokens": 1_200, "output_tokens": 700,
       "reasoning_tokens": 100, "cost_weight": 1.5, "event_time_us": T0 + 1_000, "task": "t1",
       "labels": {"team": "growth"}, "idempotency_key": "msg_01"}


def test_json_events_land_on_the_log_signed_as_the_agent_and_the_journal_shows_who_ingested(home, served):
    token = served.token("alice", scopes=("ingest",))
    tid = token_id_of(token)
    counted = ingested(served)
    body = {"events": [LLM,
                       {"kind": "data", "bytes_read": 52_000, "event_time_us": T0 + 1_001},
                       {"kind": "interaction", "interaction_id": "c1", "responder_id": "bob",
                        "requestor_provider": "openai", "requestor_model": "gpt-4.1", "responder_provider": "openai",
                        "responder_model": "gpt-4.1-mini", "request_output_tokens": 1_500,
                        "request_input_tokens": 1_500, "request_input_cached_tokens": 300,
                        "response_output_tokens": 4_000, "response_input_tokens": 4_000,
                        "event_time_us": T0 + 1_002}]}
    r = post(served, body, token)
    assert r.status_code == 201, r.text
    got = r.json()
    assert got == {"agent": "alice", "signer": "alice", "token_id": tid, "accepted": 3, "appended": 3,
                   "duplicates": 0, "event_ids": got["event_ids"]}
    events = events_of(home, "alice")
    assert [e.event_id for e in events] == got["event_ids"] and [e.seq for e in events] == [1, 2, 3]
    llm, data, call = events
    assert llm.body == Action(operation="llm.call", cost_weight_milli=1_500, usage=LlmUsage(
        provider="anthropic", model="claude-sonnet-4-6", input_tokens=9_250, output_tokens=700,
        cache_read_tokens=8_000, cache_write_tokens=1_200, reasoning_tokens=100))
    assert llm.idempotency_key == "msg_01" and llm.event_time_us == T0 + 1_000 and llm.context.task == "t1"
    assert dict(llm.context.labels) == {"team": "growth", LABEL: tid}
    assert data.body == Data(bytes_read=52_000, bytes_written=0) and dict(data.context.labels) == {LABEL: tid}
    assert isinstance(call.body, Interaction) and call.body.requestor_id == "alice"
    assert (call.body.request_input.tokens, call.body.request_input.cached_tokens) == (1_500, 300)
    audit_clean(home)
    now = ingested(served)
    assert now["accepted"] - counted.get("accepted", 0) == 3
    run(home, "journal")
    assert rows(home, "journal", "SELECT event_id, signer_id, kind, input_tokens, cache_read_tokens, "
                "cache_write_tokens, output_tokens, reasoning_tokens, cost_weight_milli, "
                f"json_extract_string(labels_json, '$.\"{LABEL}\"') FROM events WHERE signer_id = 'alice' "
                "AND kind = 'action'") == [(got["event_ids"][0], "alice", "action", 9_250, 8_000, 1_200, 700, 100,
                                            1_500, tid)]
    assert rows(home, "journal", "SELECT count(*) FROM quarantine") == [(0,)]


def test_a_repost_with_the_same_keys_returns_the_same_ids_and_appends_nothing(home, served):
    token = served.token("bob", scopes=("ingest",))
    batch = {"events": [dict(LLM, idempotency_key=f"bob-{i}", input_tokens=9_250 + i) for i in range(5)]}
    first = post(served, batch, token).json()
    assert (first["appended"], first["duplicates"]) == (5, 0)
    before = ends(home)
    counted = ingested(served)
    again = post(served, batch, token)
    assert again.status_code == 201
    assert again.json() == {**first, "appended": 0, "duplicates": 5}
    assert ends(home) == before
    assert ingested(served)["duplicate"] - counted.get("duplicate", 0) == 5
    # the same key twice in one request is one event; a new key is a new one
    mixed = post(served, {"events": [batch["events"][0], batch["events"][0],
                                     dict(LLM, idempotency_key="bob-5")]}, token).json()
    assert mixed["event_ids"][:2] == [first["event_ids"][0]] * 2 and (mixed["appended"], mixed["duplicates"]) == (1, 2)
    assert len(events_of(home, "bob")) == 6
    audit_clean(home)


def test_no_token_or_a_bad_one_is_401_and_appends_nothing(home, served):
    before = ends(home)
    r = post(served, {"events": [LLM]}, "")
    assert problem(r, 401, "unauthorized") and r.headers["www-authenticate"] == "Bearer"
    problem(post(served, {"events": [LLM]}, "tlk_000000000000_" + "A" * 43), 401, "unauthorized")
    assert ends(home) == before


def test_over_the_tokens_rate_is_429_with_retry_after_and_appends_nothing(home, served):
    slow = served.token("alice", scopes=("ingest",), rate_per_s=0.5)  # a burst of one request, then one per 2 s
    first = post(served, {"events": [{**LLM, "idempotency_key": "rate-1"}]}, slow)
    assert first.status_code == 201, first.text
    before = ends(home)
    r = post(served, {"events": [{**LLM, "idempotency_key": "rate-2"}]}, slow)
    assert problem(r, 429, "rate_limited") and int(r.headers["retry-after"]) >= 1
    assert ends(home) == before


def test_another_agents_events_are_403_and_an_operator_names_the_agent(home, served):
    before = ends(home)
    alice = served.token("alice", scopes=("ingest",))
    body = problem(post(served, {"agent": "bob", "events": [LLM]}, alice), 403, "forbidden_agent")
    assert (body["field"], body["value"]) == ("agent", "bob")
    problem(post(served, {"events": [LLM]}, served.token("alice", scopes=("read",))), 403, "missing_scope")
    body = problem(post(served, {"events": [LLM]}), 400, "invalid_field")  # an operator token names the agent
    assert body["field"] == "agent"
    problem(post(served, {"agent": "operator", "events": [LLM]}), 403, "not_an_agent")
    assert ends(home) == before
    r = post(served, {"agent": "dave", "events": [dict(LLM, idempotency_key="op-1")]})
    assert r.status_code == 201 and r.json()["signer"] == "dave"
    (ev,) = events_of(home, "dave")
    assert ev.signer_id == "dave" and dict(ev.context.labels)[LABEL] == token_id_of(served.operator_token)


BAD = [
    # (body, the field the problem names, its value)
    ({"events": [LLM, dict(LLM, input_tokens=12.0), LLM]}, "events[1].input_tokens", "12.0"),
    ({"events": [LLM, LLM, dict(LLM, output_tokens=True)]}, "events[2].output_tokens", True),
    ({"events": [dict(LLM, input_tokens=-5)]}, "events[0].input_tokens", -5),
    ({"events": [dict(LLM, input_tokens=limits.MAX_TOKENS + 1)]}, "events[0].input_tokens", limits.MAX_TOKENS + 1),
    ({"events": [dict(LLM, cache_read_tokens=9_000)]}, "events[0].cache_read_tokens", 9_000),
    ({"events": [dict(LLM, prompt_tokens=3)]}, "events[0].prompt_tokens", 3),
    ({"events": [dict(LLM, event_time="2026-05-01T12:00:00")]}, "events[0].event_time", "2026-05-01T12:00:00"),
    ({"events": [{"kind": "reservation"}]}, "events[0].kind", "reservation"),
    ({"events": [LLM], "extra": 1}, "extra", 1),
    ({"events": []}, "events", "<array of 0>"),
    ({"events": [LLM] * (EVENTS_PER_REQUEST + 1)}, "events", f"<array of {EVENTS_PER_REQUEST + 1}>"),
    ({"events": {"kind": "data"}}, "events", {"kind": "data"}),
    ([LLM], "body", "<array of 1>"),
]


@pytest.mark.parametrize(("body", "field", "value"), BAD, ids=[b[1] for b in BAD])
def test_a_bad_event_is_400_naming_its_field_and_nothing_is_emitted(home, served, body, field, value):
    token = served.token("carol", scopes=("ingest",))
    before = ends(home)
    got = problem(post(served, body, token), 400, "invalid_field")
    assert (got["field"], got["value"]) == (field, value)
    assert ends(home) == before and events_of(home, "carol") == []


@pytest.mark.parametrize(("raw", "why"), [
    (b'{"events": [', "is not valid JSON"),
    (b'{"events": [{"kind": "data", "bytes_read": NaN}]}', "NaN is not a JSON number"),
    (b'{"events": [{"kind": "data", "bytes_read": 1, "bytes_read": 1000}]}', "appears twice"),
    (b'\xff\xfe{}', "is not valid JSON"),
    (b'[' * 100_000 + b']' * 100_000, "nested too deeply"),
])
def test_a_body_that_is_not_json_is_400(home, served, raw, why):
    before = ends(home)
    got = problem(post(served, None, served.token("carol", scopes=("ingest",)), raw=raw), 400, "invalid_field")
    assert got["field"] == "body" and why in got["reason"]
    assert ends(home) == before


def test_a_body_too_large_is_413_and_another_content_type_415(home, served):
    token = served.token("carol", scopes=("ingest",))
    before = ends(home)
    got = problem(post(served, None, token, raw=b" " * (BODY_LIMIT_BYTES + 1)), 413, "oversized")
    assert got["value"] == BODY_LIMIT_BYTES + 1
    problem(post(served, {"events": [LLM]}, token, media="text/plain"), 415, "unsupported_media_type")
    assert ends(home) == before


def test_what_readers_would_reject_is_422_before_anything_is_emitted(home, served):
    token = served.token("erin", scopes=("ingest",))
    before = ends(home)
    far = T0 - 3 * limits.MAX_CLOCK_SKEW_US  # further back than the skew window, and erin holds no backfill grant
    got = problem(post(served, {"events": [LLM, dict(LLM, idempotency_key="old", event_time_us=far)]}, token), 422,
                  "clock_skew")
    assert (got["field"], got["value"], got["claimed_us"], got["appended"]) == ("events[1].event_time_us", far, far,
                                                                             False)
    got = problem(post(served, {"events": [{"kind": "outcome", "task_id": "t1", "score": 0.8, "subject_id": "bob"}]},
                       token), 422, "not_granted")
    assert (got["field"], got["value"], got["capability"]) == ("events[0].score", "0.8", "grader")
    assert ends(home) == before and events_of(home, "erin") == []


def test_a_key_reused_for_other_content_is_409_after_the_events_before_it(home, served):
    token = served.token("erin", scopes=("ingest",))
    first = post(served, {"events": [dict(LLM, idempotency_key="e-1")]}, token).json()
    got = problem(post(served, {"events": [dict(LLM, idempotency_key="e-2"), dict(LLM, idempotency_key="e-1",
                                                                                 input_tokens=9_999)]}, token),
                  409, "idempotency_conflict")
    assert got["field"] == "events[1].idempotency_key" and got["event_index"] == 1
    (accepted,) = got["accepted_event_ids"]
    assert [e.event_id for e in events_of(home, "erin")] == [first["event_ids"][0], accepted]
    audit_clean(home)


def test_an_agent_locked_by_another_process_is_409_at_once_then_served(home, served):
    mine = Emitter.open("grader", home=home.path, background_flush=False)  # this test process holds grader's lock
    try:
        got = problem(post(served, {"agent": "grader", "events": [{"kind": "data"}]}), 409, "agent_locked")
        assert got["holder_pid"] == str(os.getpid())
    finally:
        mine.close()
    assert post(served, {"agent": "grader", "events": [{"kind": "data"}]}).status_code == 201


def test_schemas_are_public(served):
    r = httpx.get(served.url + "/v1/schemas", timeout=60)
    assert r.status_code == 200
    got = r.json()
    assert got["kinds"] == ["action", "data", "compute", "trust", "interaction", "outcome"]
    assert got["schemas"]["trust"] == schema("trust")
    assert got["request"]["properties"]["events"]["maxItems"] == EVENTS_PER_REQUEST
    one = httpx.get(served.url + "/v1/schemas/interaction", timeout=60)
    assert one.status_code == 200 and one.json() == schema("interaction")
    got = problem(httpx.get(served.url + "/v1/schemas/grant", timeout=60), 404, "unknown_kind")
    assert got["value"] == "grant"
    assert "/v1/events" in httpx.get(served.url + "/openapi.json", timeout=60).json()["paths"]
