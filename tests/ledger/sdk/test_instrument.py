"""instrument(): the real openai and anthropic client libraries, over HTTP on loopback, metered into a real home.

Method: every response the fake provider sends is built here from the APIs' documented field names with values
chosen per test (``ledger.testing.provider_server``); each test reads the events back from the home's SQLite log
and asserts every token kind exactly. Guards are stubs set through the guard's context variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from ledger.errors import BudgetRefused, ValidationError
from ledger.sdk import guard as guard_module
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.sdk.instrument import (
    LABEL_API,
    LABEL_LATENCY_US,
    LABEL_REQUEST_ID,
    STANDARD_TIERS,
    estimate_input_tokens,
    idempotency_key,
    instrument,
    requested_max_output_tokens,
    with_usage_in_stream,
)
from ledger.sources import records
from ledger.sources.importers import import_files, imported_events
from ledger.testing import provider_server as ps
from ledger.testing.homes import T0, make_home
from ledger.wire.events import Action, Context, LlmUsage

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"
LOGGER = "ledger.sdk.instrument"
HI = [{"role": "user", "content": "Say hello in one word."}]

# ------------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path / "home", agents=("alice",))


@pytest.fixture
def server() -> Iterator[ps.ProviderServer]:
    with ps.ProviderServer() as s:
        yield s


@pytest.fixture
def em(home: Home) -> Iterator[Emitter]:
    with Emitter.open("alice", home=home.path, background_flush=False) as e:
        yield e


def oai(server: ps.ProviderServer, em: Emitter, **kw: Any) -> openai.OpenAI:
    return instrument(openai.OpenAI(base_url=server.openai_url, api_key="test-key", max_retries=0), em, **kw)


def aoai(server: ps.ProviderServer, em: Emitter) -> openai.AsyncOpenAI:
    return instrument(openai.AsyncOpenAI(base_url=server.openai_url, api_key="test-key", max_retries=0), em)


def ant(server: ps.ProviderServer, em: Emitter) -> anthropic.Anthropic:
    return instrument(anthropic.Anthropic(base_url=server.anthropic_url, api_key="test-key", max_retries=0), em)


def aant(server: ps.ProviderServer, em: Emitter) -> anthropic.AsyncAnthropic:
    return instrument(anthropic.AsyncAnthropic(base_url=server.anthropic_url, api_key="test-key", max_retries=0), em)


def actions(em: Emitter, home: Home) -> list[Any]:
    """Every action ``alice`` has on the log, after flushing."""
    em.flush()
    log = home.open_log()
    try:
        return [e for e in imported_events(log, home.topic, "alice") if isinstance(e.body, Action)]
    finally:
        log.close()


def log_end(home: Home) -> int:
    log = home.open_log()
    try:
        return sum(log.end_offset(home.topic, p) for p in range(log.partitions(home.topic)))
    finally:
        log.close()


def usage(provider: str, model: str, inp: int, out: int, *, read: int = 0, write: int = 0, write_1h: int = 0,
          reasoning: int = 0, tier: str = "", cost: int | None = None) -> LlmUsage:
    return LlmUsage(provider=provider, model=model, input_tokens=inp, output_tokens=out, cache_read_tokens=read,
                    cache_write_tokens=write, cache_write_1h_tokens=write_1h, reasoning_tokens=reasoning,
                    service_tier=tier, provider_cost_micros=cost)


def only(events: list[Any]) -> Any:
    assert len(events) == 1, events
    return events[0]


def assert_labels(event: Any, api: str, request_id: str | None) -> None:
    labels = dict(event.context.labels)
    assert labels[LABEL_API] == api
    assert labels[LABEL_LATENCY_US].isdigit()  # a duration in microseconds; its value is not asserted (no timing)
    assert labels.get(LABEL_REQUEST_ID) == request_id


class StubGuard:
    """The guard contract (ledger/sdk/guard.py), recording what it was told; refuses when asked to."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.before: list[dict[str, Any]] = []
        self.after: list[LlmUsage] = []

    def before_call(self, *, provider: str, model: str, input_tokens_estimate: int,
                    max_output_tokens: int | None) -> None:
        self.before.append({"provider": provider, "model": model, "input_tokens_estimate": input_tokens_estimate,
                            "max_output_tokens": max_output_tokens})
        if self.refuse:
            raise BudgetRefused("llm_tokens budget exhausted", kind="llm_tokens")

    def after_call(self, usage: LlmUsage) -> None:
        self.after.append(usage)


@contextlib.contextmanager
def guarded(g: StubGuard) -> Iterator[StubGuard]:
    token = guard_module._ACTIVE.set(g)
    try:
        yield g
    finally:
        guard_module._ACTIVE.reset(token)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------- OpenAI Chat Completions


def test_chat_completion_cache_inside_prompt_tokens(server, em, home):
    server.reply_json(CHAT, ps.chat_completion("chatcmpl-a1", "gpt-4.1-2025-04-14", 1_000, 200, cached_tokens=300,
                                               reasoning_tokens=50, service_tier="flex"),
                      headers={"x-request-id": "req_a1"})
    client = oai(server, em)
    result = client.chat.completions.create(model="gpt-4.1", messages=HI)
    assert result.id == "chatcmpl-a1"  # the caller's result, unchanged
    ev = only(actions(em, home))
    # prompt_tokens already holds the cached part: input 1000 of which 300 cache read; reasoning part of output
    assert ev.body.usage == usage("openai", "gpt-4.1-2025-04-14", 1_000, 200, read=300, reasoning=50, tier="flex")
    assert ev.body.operation == "llm.call"
    assert ev.idempotency_key == "openai:chatcmpl-a1"
    assert_labels(ev, "chat.completions", "req_a1")
    sent = only(server.requests).json
    assert sent["model"] == "gpt-4.1" and "stream_options" not in sent  # a non-streaming request is not changed


def test_chat_default_tier_is_standard_and_gateway_cost_is_kept(server, em, home):
    body = ps.chat_completion("chatcmpl-a2", "gpt-4.1", 10, 4, service_tier="default")
    body["usage"]["cost"] = 0.0012345  # a gateway's cost in USD, micro-USD half to even: 1234.5 -> 1234
    server.reply_json(CHAT, body)
    oai(server, em).chat.completions.create(model="gpt-4.1", messages=HI)
    ev = only(actions(em, home))
    assert ev.body.usage == usage("openai", "gpt-4.1", 10, 4, cost=1234)
    assert_labels(ev, "chat.completions", None)  # no x-request-id header: no label


def test_chat_stream_adds_include_usage_and_meters_the_final_chunk(server, em, home):
    server.reply_sse(CHAT, ps.chat_completion_events("chatcmpl-s1", "gpt-4.1-mini", ["Hel", "lo"],
                                                     ps.chat_usage(640, 12, cached_tokens=512, reasoning_tokens=0)),
                     headers={"x-request-id": "req_s1"})
    caller_options = {"include_obfuscation": False}
    stream = oai(server, em).chat.completions.create(model="gpt-4.1-mini", messages=HI, stream=True,
                                                     stream_options=caller_options)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 640  # the documented extra final chunk
    sent = only(server.requests).json
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert caller_options == {"include_obfuscation": False}  # the caller's dict is not modified
    ev = only(actions(em, home))
    assert ev.body.usage == usage("openai", "gpt-4.1-mini", 640, 12, read=512)
    assert ev.idempotency_key == "openai:chatcmpl-s1"
    assert_labels(ev, "chat.completions", "req_s1")


def test_chat_stream_with_include_usage_false_is_sent_as_asked_and_not_metered(server, em, home, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    client = oai(server, em)
    for i in range(2):
        server.reply_sse(CHAT, ps.chat_completion_events(f"chatcmpl-n{i}", "gpt-4.1", ["ok"], None))
        chunks = list(client.chat.completions.create(model="gpt-4.1", messages=HI, stream=True,
                                                     stream_options={"include_usage": False}))
        assert all(c.usage is None for c in chunks)
    assert [r.json["stream_options"] for r in server.requests] == [{"include_usage": False}] * 2
    assert actions(em, home) == []
    include = [m for m in warnings_of(caplog) if "include_usage" in m]
    assert len(include) == 1  # once per client
    # and the end of each such stream is reported as unmetered too
    assert sum("not metered" in m and "final usage" in m for m in warnings_of(caplog)) == 2


def test_chat_stream_closed_before_its_usage_records_nothing_and_names_the_request(server, em, home, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    server.reply_sse(CHAT, ps.chat_completion_events("chatcmpl-c1", "gpt-4.1", ["a", "b", "c"], ps.chat_usage(9, 3)),
                     headers={"x-request-id": "req_closed"})
    stream = oai(server, em).chat.completions.create(model="gpt-4.1", messages=HI, stream=True)
    next(stream)
    next(stream)
    stream.close()
    assert actions(em, home) == []
    assert any("req_closed" in m and "final usage" in m for m in warnings_of(caplog))


def test_chat_stream_as_context_manager_is_metered_on_exit(server, em, home):
    server.reply_sse(CHAT, ps.chat_completion_events("chatcmpl-w1", "gpt-4.1", ["x"], ps.chat_usage(21, 2)))
    with oai(server, em).chat.completions.create(model="gpt-4.1", messages=HI, stream=True) as stream:
        for _ in stream:
            pass
        assert stream.response.status_code == 200  # other attributes pass through to the library's stream
    assert only(actions(em, home)).body.usage == usage("openai", "gpt-4.1", 21, 2)


def test_async_chat_plain_and_streamed(server, em, home):
    server.reply_json(CHAT, ps.chat_completion("chatcmpl-as1", "gpt-4o", 300, 20, cached_tokens=128))
    server.reply_sse(CHAT, ps.chat_completion_events("chatcmpl-as2", "gpt-4o", ["y", "z"],
                                                     ps.chat_usage(77, 33, reasoning_tokens=30)),
                     headers={"x-request-id": "req_as2"})

    async def run() -> None:
        client = aoai(server, em)
        result = await client.chat.completions.create(model="gpt-4o", messages=HI)
        assert result.id == "chatcmpl-as1"
        stream = await client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
        assert [c.id async for c in stream] == ["chatcmpl-as2"] * 5  # role, 2 pieces, finish, usage

    asyncio.run(run())
    first, second = actions(em, home)
    assert first.body.usage == usage("openai", "gpt-4o", 300, 20, read=128)
    assert second.body.usage == usage("openai", "gpt-4o", 77, 33, reasoning=30)
    assert second.idempotency_key == "openai:chatcmpl-as2"
    assert_labels(second, "chat.completions", "req_as2")
    assert server.requests[1].json["stream_options"] == {"include_usage": True}


# ------------------------------------------------------------------------------- OpenAI Responses


def test_responses_plain_and_streamed(server, em, home):
    server.reply_json(RESPONSES, ps.response_object("resp_p1", "gpt-5-2025-08-07", ps.responses_usage(
        2_048, 700, cached_tokens=1_024, reasoning_tokens=512), service_tier="priority"),
        headers={"x-request-id": "req_r1"})
    server.reply_sse(RESPONSES, ps.response_events("resp_s1", "gpt-5-mini", ["One", " two"], ps.responses_usage(
        90, 15, cached_tokens=64, reasoning_tokens=5)), headers={"x-request-id": "req_r2"})
    client = oai(server, em)
    assert client.responses.create(model="gpt-5", input="Count to two.").id == "resp_p1"
    events = list(client.responses.create(model="gpt-5-mini", input="Count to two.", stream=True))
    assert [e.type for e in events] == ["response.created", "response.output_text.delta",
                                        "response.output_text.delta", "response.completed"]
    plain, streamed = actions(em, home)
    assert plain.body.usage == usage("openai", "gpt-5-2025-08-07", 2_048, 700, read=1_024, reasoning=512,
                                     tier="priority")
    assert plain.idempotency_key == "openai:resp_p1"
    assert_labels(plain, "responses", "req_r1")
    assert streamed.body.usage == usage("openai", "gpt-5-mini", 90, 15, read=64, reasoning=5)
    assert streamed.idempotency_key == "openai:resp_s1"
    assert_labels(streamed, "responses", "req_r2")
    assert "stream_options" not in server.requests[1].json  # only Chat Completions needs it


def test_responses_stream_cut_at_max_output_tokens_is_billed_and_metered(server, em, home):
    server.reply_sse(RESPONSES, ps.response_events("resp_i1", "gpt-5", ["partial"], ps.responses_usage(50, 16),
                                                   final="response.incomplete"))
    list(oai(server, em).responses.create(model="gpt-5", input="Write an essay.", max_output_tokens=16, stream=True))
    assert only(actions(em, home)).body.usage == usage("openai", "gpt-5", 50, 16)


def test_responses_stream_without_its_terminal_event_records_nothing(server, em, home, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    server.reply_sse(RESPONSES, ps.response_events("resp_x1", "gpt-5", ["cut"], None, final=""),
                     headers={"x-request-id": "req_x1"})
    list(oai(server, em).responses.create(model="gpt-5", input="hi", stream=True))
    assert actions(em, home) == []
    assert any("req_x1" in m and "final usage" in m for m in warnings_of(caplog))


def test_async_responses_stream(server, em, home):
    server.reply_sse(RESPONSES, ps.response_events("resp_as1", "gpt-5", ["a"], ps.responses_usage(40, 8)))

    async def run() -> list[str]:
        stream = await aoai(server, em).responses.create(model="gpt-5", input="hi", stream=True)
        return [e.type async for e in stream]

    assert asyncio.run(run())[-1] == "response.completed"
    assert only(actions(em, home)).body.usage == usage("openai", "gpt-5", 40, 8)


# ------------------------------------------------------------------------------- Anthropic Messages


def test_anthropic_message_cache_outside_input_tokens(server, em, home):
    body = ps.anthropic_message("msg_a1", "claude-sonnet-4-6", ps.anthropic_usage(
        100, 250, cache_write_5m=1_000, cache_write_1h=4_000, cache_read=20_000, service_tier="priority"))
    body["usage"]["output_tokens_details"] = {"thinking_tokens": 180}
    server.reply_json(MESSAGES, body, headers={"request-id": "req_m1"})
    result = ant(server, em).messages.create(model="claude-sonnet-4-6", max_tokens=512, messages=HI)
    assert result.id == "msg_a1"
    ev = only(actions(em, home))
    # input_tokens (100) excludes the cache: ledger input = 100 + 5000 written + 20000 read
    assert ev.body.usage == usage("anthropic", "claude-sonnet-4-6", 25_100, 250, read=20_000, write=5_000,
                                  write_1h=4_000, reasoning=180, tier="priority")
    assert ev.idempotency_key == "anthropic:msg_a1"
    assert_labels(ev, "messages", "req_m1")


def test_anthropic_standard_tier_is_recorded_as_standard(server, em, home):
    server.reply_json(MESSAGES, ps.anthropic_message("msg_a2", "claude-haiku-4-5", ps.anthropic_usage(
        7, 3, service_tier="standard")))
    ant(server, em).messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HI)
    assert only(actions(em, home)).body.usage == usage("anthropic", "claude-haiku-4-5", 7, 3)


def test_anthropic_stream_input_from_message_start_output_from_cumulative_deltas(server, em, home):
    events = ps.anthropic_events("msg_s1", "claude-opus-4-1", ["Hi", "!"],
                                 ps.anthropic_usage(12, 1, cache_write_1h=300, cache_read=2_000),
                                 {"output_tokens": 40, "cache_read_input_tokens": 2_500})
    # a second message_delta: counts are cumulative, so 95 replaces 40 (and is not added to it); the cache read the
    # first delta reported (2500, replacing message_start's 2000) stands, as the second one does not repeat it
    events.insert(-1, ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                            "stop_sequence": None},
                                         "usage": {"output_tokens": 95}}))
    server.reply_sse(MESSAGES, events, headers={"request-id": "req_ms1"})
    stream = ant(server, em).messages.create(model="claude-opus-4-1", max_tokens=100, messages=HI, stream=True)
    assert [e.type for e in stream][-1] == "message_stop"
    ev = only(actions(em, home))
    assert ev.body.usage == usage("anthropic", "claude-opus-4-1", 2_812, 95, read=2_500, write=300, write_1h=300)
    assert ev.idempotency_key == "anthropic:msg_s1"
    assert_labels(ev, "messages", "req_ms1")


def test_anthropic_stream_delta_input_counts_replace_the_start_ones(server, em, home):
    # newer streams repeat the (cumulative) input counts on message_delta: they replace message_start's
    server.reply_sse(MESSAGES, ps.anthropic_events("msg_s2", "claude-sonnet-4-6", ["a"], ps.anthropic_usage(10, 1),
                                                   {"output_tokens": 30, "input_tokens": 15,
                                                    "cache_read_input_tokens": 500}))
    list(ant(server, em).messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=HI, stream=True))
    assert only(actions(em, home)).body.usage == usage("anthropic", "claude-sonnet-4-6", 515, 30, read=500)


def test_anthropic_stream_without_message_delta_records_nothing(server, em, home, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    server.reply_sse(MESSAGES, ps.anthropic_events("msg_s3", "claude-sonnet-4-6", ["a"], ps.anthropic_usage(10, 1),
                                                   None), headers={"request-id": "req_ms3"})
    list(ant(server, em).messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=HI, stream=True))
    assert actions(em, home) == []
    assert any("req_ms3" in m and "final usage" in m for m in warnings_of(caplog))


def test_anthropic_stream_delta_without_output_count_is_not_metered(server, em, home, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    server.reply_sse(MESSAGES, ps.anthropic_events("msg_s4", "claude-sonnet-4-6", ["a"], ps.anthropic_usage(10, 1),
                                                   {"input_tokens": 10}), headers={"request-id": "req_ms4"})
    events = list(ant(server, em).messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=HI, stream=True))
    assert events[-1].type == "message_stop"  # the caller's stream is whole
    assert actions(em, home) == []  # message_start's output count (1) does not stand for the answer
    assert any("req_ms4" in m and "events[4].usage.output_tokens" in m for m in warnings_of(caplog))


def test_anthropic_stream_helper_metered_when_its_block_exits(server, em, home):
    server.reply_sse(MESSAGES, ps.anthropic_events("msg_h1", "claude-sonnet-4-6", ["Hel", "lo"],
                                                   ps.anthropic_usage(30, 1, cache_write_5m=64), {"output_tokens": 7}),
                     headers={"request-id": "req_h1"})
    client = ant(server, em)
    manager = client.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=HI)
    assert server.requests == []  # the helper sends on entering its block, not before
    with manager as stream:
        assert stream.get_final_text() == "Hello"
    ev = only(actions(em, home))
    assert ev.body.usage == usage("anthropic", "claude-sonnet-4-6", 94, 7, write=64)
    assert ev.idempotency_key == "anthropic:msg_h1"
    assert_labels(ev, "messages", "req_h1")


def test_async_anthropic_plain_streamed_and_helper(server, em, home):
    server.reply_json(MESSAGES, ps.anthropic_message("msg_as1", "claude-sonnet-4-6", ps.anthropic_usage(
        5, 6, cache_read=100)))
    server.reply_sse(MESSAGES, ps.anthropic_events("msg_as2", "claude-sonnet-4-6", ["a"],
                                                   ps.anthropic_usage(8, 1, cache_write_5m=16), {"output_tokens": 11}))
    server.reply_sse(MESSAGES, ps.anthropic_events("msg_as3", "claude-sonnet-4-6", ["b"], ps.anthropic_usage(9, 1),
                                                   {"output_tokens": 13}))

    async def run() -> None:
        client = aant(server, em)
        await client.messages.create(model="claude-sonnet-4-6", max_tokens=32, messages=HI)
        stream = await client.messages.create(model="claude-sonnet-4-6", max_tokens=32, messages=HI, stream=True)
        async for _ in stream:
            pass
        async with client.messages.stream(model="claude-sonnet-4-6", max_tokens=32, messages=HI) as s:
            assert await s.get_final_text() == "b"

    asyncio.run(run())
    assert [e.body.usage for e in actions(em, home)] == [
        usage("anthropic", "claude-sonnet-4-6", 105, 6, read=100),
        usage("anthropic", "claude-sonnet-4-6", 24, 11, write=16),
        usage("anthropic", "claude-sonnet-4-6", 9, 13)]


# ------------------------------------------------------------------------------- identity and idempotency


def test_the_same_response_id_twice_appends_once(server, em, home, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    body = ps.chat_completion("chatcmpl-dup", "gpt-4.1", 50, 5)
    server.reply_json(CHAT, body, headers={"x-request-id": "req_d1"})
    server.reply_json(CHAT, body, headers={"x-request-id": "req_d2"})
    client = oai(server, em)
    client.chat.completions.create(model="gpt-4.1", messages=HI)
    em.flush()
    end = log_end(home)
    assert client.chat.completions.create(model="gpt-4.1", messages=HI).id == "chatcmpl-dup"
    em.flush()
    assert log_end(home) == end
    assert only(actions(em, home)).idempotency_key == "openai:chatcmpl-dup"
    assert any("openai:chatcmpl-dup" in m and "req_d2" in m and "first record stands" in m
               for m in warnings_of(caplog))


def test_a_response_without_an_id_is_keyed_by_its_request_id(server, em, home):
    body = ps.chat_completion("unused", "gpt-4.1", 12, 3)
    del body["id"]
    server.reply_json(CHAT, body, headers={"x-request-id": "req_noid"})
    oai(server, em).chat.completions.create(model="gpt-4.1", messages=HI)
    ev = only(actions(em, home))
    assert ev.idempotency_key == "openai:req_noid" and ev.body.usage == usage("openai", "gpt-4.1", 12, 3)


def test_importing_responses_already_metered_appends_nothing(server, em, home, tmp_path):
    created = T0 // 1_000_000
    metered = ps.chat_completion("chatcmpl-imp1", "gpt-4.1", 400, 40, cached_tokens=100, created=created)
    server.reply_json(CHAT, metered)
    oai(server, em).chat.completions.create(model="gpt-4.1", messages=HI)
    em.flush()
    end = log_end(home)
    export = tmp_path / "export.jsonl"
    export.write_text(json.dumps(metered) + "\n")
    summary = import_files("openai", [export], em)
    assert summary.imported == 0 and log_end(home) == end
    assert "already imported" in only(summary.rejected).reason
    # the control: a response never metered, same time and shape, is imported (the key, not the time, stopped it)
    export.write_text(json.dumps(ps.chat_completion("chatcmpl-imp2", "gpt-4.1", 400, 40, created=created)) + "\n")
    assert import_files("openai", [export], em).imported == 1


def test_idempotency_key_and_standard_tiers_match_the_importers():
    long_id = "chatcmpl-" + "x" * 400
    assert idempotency_key("openai", long_id) == records.idempotency_key("openai", long_id)
    assert idempotency_key("openai", long_id).startswith("openai:sha256:")
    assert idempotency_key("anthropic", "msg_1") == records.idempotency_key("anthropic", "msg_1") == "anthropic:msg_1"
    assert STANDARD_TIERS == records.STANDARD_TIERS


def test_operation_and_context_are_the_callers(server, em, home):
    server.reply_json(CHAT, ps.chat_completion("chatcmpl-ctx", "gpt-4.1", 3, 2), headers={"x-request-id": "req_c"})
    ctx = Context(project="atlas", task="t-9", labels={"team": "search", "latency_us": "caller's"})
    oai(server, em, operation="summarize", context=ctx).chat.completions.create(model="gpt-4.1", messages=HI)
    ev = only(actions(em, home))
    assert ev.body.operation == "summarize"
    assert (ev.context.project, ev.context.task) == ("atlas", "t-9")
    labels = dict(ev.context.labels)
    assert labels["team"] == "search" and labels["latency_us"] != "caller's"  # ours win over same-named labels
    assert_labels(ev, "chat.completions", "req_c")


# ------------------------------------------------------------------------------- failures


def test_openai_server_error_propagates_and_records_nothing(server, em, home):
    server.reply_json(CHAT, ps.openai_error("the server had an error", "server_error"), status=500,
                      headers={"x-request-id": "req_500"})
    g = StubGuard()
    with guarded(g), pytest.raises(openai.InternalServerError):
        oai(server, em).chat.completions.create(model="gpt-4.1", messages=HI)
    assert actions(em, home) == []
    assert len(g.before) == 1 and g.after == []  # asked before sending; no usage after a failure


def test_anthropic_bad_request_propagates_and_records_nothing(server, em, home):
    for _ in range(2):
        server.reply_json(MESSAGES, ps.anthropic_error("max_tokens: must be at least 1"), status=400)
    client = ant(server, em)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=0, messages=HI)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=0, messages=HI, stream=True)
    assert len(server.requests) == 2
    assert actions(em, home) == []


@pytest.mark.parametrize(("field", "value", "path"), [
    # (the library itself parses "400", 3.0 and true into ints before anything here sees them)
    ("prompt_tokens", "12.7", "usage.prompt_tokens"),
    ("prompt_tokens", 12.7, "usage.prompt_tokens"),
    ("prompt_tokens", -1, "usage.prompt_tokens"),
    ("prompt_tokens", None, "usage.prompt_tokens"),
    ("total_tokens", 999, "usage.total_tokens"),
    ("prompt_tokens_details", {"cached_tokens": 401}, "usage.prompt_tokens_details.cached_tokens"),
])
def test_malformed_openai_usage_returns_the_result_records_nothing_and_names_the_field(
        server, em, home, caplog, field, value, path):
    caplog.set_level(logging.WARNING, LOGGER)
    body = ps.chat_completion("chatcmpl-bad", "gpt-4.1", 400, 40)
    body["usage"][field] = value
    server.reply_json(CHAT, body, headers={"x-request-id": "req_bad"})
    result = oai(server, em).chat.completions.create(model="gpt-4.1", messages=HI)
    assert result.id == "chatcmpl-bad"
    assert actions(em, home) == []
    assert any("req_bad" in m and path in m for m in warnings_of(caplog))


def test_anthropic_cache_split_that_does_not_add_up_is_not_metered(server, em, home, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    body = ps.anthropic_message("msg_bad", "claude-sonnet-4-6", ps.anthropic_usage(10, 5, cache_write_5m=30))
    body["usage"]["cache_creation_input_tokens"] = 31
    server.reply_json(MESSAGES, body, headers={"request-id": "req_split"})
    ant(server, em).messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=HI)
    assert actions(em, home) == []
    assert any("req_split" in m and "usage.cache_creation" in m for m in warnings_of(caplog))


def test_a_failing_emitter_never_breaks_the_call(server, home, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    em = Emitter.open("alice", home=home.path, background_flush=False)
    client = oai(server, em)
    em.close()  # every emit now raises
    server.reply_json(CHAT, ps.chat_completion("chatcmpl-cl", "gpt-4.1", 8, 2), headers={"x-request-id": "req_cl"})
    g = StubGuard()
    with guarded(g):
        assert client.chat.completions.create(model="gpt-4.1", messages=HI).id == "chatcmpl-cl"
    assert any("req_cl" in m and "could not be recorded" in m for m in warnings_of(caplog))
    assert g.after == [usage("openai", "gpt-4.1", 8, 2)]  # the usage was reported: the guard still hears of it


# ------------------------------------------------------------------------------- the guard


def test_guard_refusal_sends_nothing(server, em, home):
    g = StubGuard(refuse=True)
    client, aclient = oai(server, em), ant(server, em)
    with guarded(g):
        with pytest.raises(BudgetRefused):
            client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x" * 400}],
                                           max_completion_tokens=64)
        with pytest.raises(BudgetRefused):
            client.chat.completions.create(model="gpt-4.1", messages=HI, stream=True, max_tokens=9)
        with pytest.raises(BudgetRefused):
            client.responses.create(model="gpt-5", input="y" * 81, instructions="be brief", max_output_tokens=100)
        with pytest.raises(BudgetRefused):
            aclient.messages.create(model="claude-sonnet-4-6", max_tokens=256, system="s" * 40,
                                    messages=[{"role": "user", "content": [{"type": "text", "text": "t" * 200}]}])
        with pytest.raises(BudgetRefused), aclient.messages.stream(model="claude-sonnet-4-6", max_tokens=8,
                                                                   messages=HI):
            pass
    assert server.requests == []
    assert actions(em, home) == []
    hi_estimate = (len("user") + len(HI[0]["content"])) // 4
    assert g.before == [
        {"provider": "openai", "model": "gpt-4.1", "input_tokens_estimate": (4 + 400) // 4, "max_output_tokens": 64},
        {"provider": "openai", "model": "gpt-4.1", "input_tokens_estimate": hi_estimate, "max_output_tokens": 9},
        {"provider": "openai", "model": "gpt-5", "input_tokens_estimate": (81 + 8) // 4, "max_output_tokens": 100},
        {"provider": "anthropic", "model": "claude-sonnet-4-6", "input_tokens_estimate": (40 + 4 + 4 + 200) // 4,
         "max_output_tokens": 256},
        {"provider": "anthropic", "model": "claude-sonnet-4-6", "input_tokens_estimate": hi_estimate,
         "max_output_tokens": 8}]


def test_async_guard_refusal_sends_nothing(server, em, home):
    g = StubGuard(refuse=True)

    async def run() -> None:
        with pytest.raises(BudgetRefused):
            await aoai(server, em).chat.completions.create(model="gpt-4.1", messages=HI)
        with pytest.raises(BudgetRefused):
            await aant(server, em).messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=HI, stream=True)

    with guarded(g):
        asyncio.run(run())
    assert server.requests == [] and len(g.before) == 2
    assert actions(em, home) == []


def test_guard_hears_the_usage_of_each_call_including_streams_ended_elsewhere(server, em, home):
    server.reply_json(MESSAGES, ps.anthropic_message("msg_g1", "claude-sonnet-4-6", ps.anthropic_usage(
        10, 4, cache_read=90)))
    server.reply_sse(CHAT, ps.chat_completion_events("chatcmpl-g2", "gpt-4.1", ["k"], ps.chat_usage(6, 1)))
    g = StubGuard()
    client = oai(server, em)
    with guarded(g):
        ant(server, em).messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=HI)
        stream = client.chat.completions.create(model="gpt-4.1", messages=HI, stream=True)
    list(stream)  # consumed after the guard's scope: the guard of the call's start still gets its usage
    assert g.after == [usage("anthropic", "claude-sonnet-4-6", 100, 4, read=90), usage("openai", "gpt-4.1", 6, 1)]
    assert [e.body.usage for e in actions(em, home)] == g.after


def test_with_a_guard_a_non_string_model_is_refused_before_sending(server, em):
    with guarded(StubGuard()), pytest.raises(ValidationError) as e:
        oai(server, em).chat.completions.create(model=None, messages=HI)  # type: ignore[arg-type]
    assert e.value.field == "model"
    assert server.requests == []


# ------------------------------------------------------------------------------- clients


def test_instrument_patches_the_instance_not_the_class(server, em, home):
    instrumented = oai(server, em)
    plain = openai.OpenAI(base_url=server.openai_url, api_key="test-key", max_retries=0)
    server.reply_json(CHAT, ps.chat_completion("chatcmpl-plain", "gpt-4.1", 5, 5))
    server.reply_json(CHAT, ps.chat_completion("chatcmpl-inst", "gpt-4.1", 6, 6))
    server.reply_json(CHAT, ps.chat_completion("chatcmpl-copy", "gpt-4.1", 7, 7))
    plain.chat.completions.create(model="gpt-4.1", messages=HI)
    instrumented.chat.completions.create(model="gpt-4.1", messages=HI)
    instrumented.with_options(timeout=30).chat.completions.create(model="gpt-4.1", messages=HI)
    assert [e.idempotency_key for e in actions(em, home)] == ["openai:chatcmpl-inst", "openai:chatcmpl-copy"]


def test_the_module_imports_neither_client_library():
    code = ("import sys, ledger.sdk.instrument; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'anthropic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unsupported_or_twice_instrumented_clients_are_refused(server, em):
    client = oai(server, em)
    with pytest.raises(ValidationError, match="already instrumented"):
        instrument(client, em)
    azure = openai.AzureOpenAI(api_key="test-key", api_version="2024-10-21", azure_endpoint=server.url)
    with pytest.raises(ValidationError, match="AzureOpenAI"):
        instrument(azure, em)
    with pytest.raises(ValidationError) as e:
        instrument(object(), em)
    assert e.value.field == "client"
    with pytest.raises(ValidationError) as e:
        instrument(openai.OpenAI(base_url=server.openai_url, api_key="k"), em, operation="")
    assert e.value.field == "operation"


def test_raw_response_calls_pass_through_unmetered_with_one_warning(server, em, home, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    client = oai(server, em)
    for i in range(2):
        server.reply_json(CHAT, ps.chat_completion(f"chatcmpl-raw{i}", "gpt-4.1", 5, 1))
        raw = client.chat.completions.with_raw_response.create(model="gpt-4.1", messages=HI)
        assert raw.parse().id == f"chatcmpl-raw{i}"
    assert actions(em, home) == []
    assert sum("with_raw_response" in m for m in warnings_of(caplog)) == 1


# ------------------------------------------------------------------------------- pure request readers


def test_input_estimate_counts_strings_of_the_prompt_fields_only():
    request = {"model": "gpt-4.1-with-a-long-name", "messages": [
        {"role": "system", "content": "abcd" * 10},
        {"role": "user", "content": [{"type": "text", "text": "efgh" * 5}]}], "user": "ignored-field"}
    assert estimate_input_tokens("chat.completions", request) == (6 + 40 + 4 + 4 + 20) // 4
    looped: list[Any] = ["abcd"]
    looped.append(looped)
    assert estimate_input_tokens("responses", {"input": looped}) == 1  # a list holding itself is walked once
    pending = (m for m in [{"role": "user", "content": "never read"}])
    assert estimate_input_tokens("messages", {"messages": pending}) == 0
    assert next(pending) == {"role": "user", "content": "never read"}  # the caller's generator is not consumed


def test_max_output_tokens_per_api():
    assert requested_max_output_tokens("chat.completions", {"max_tokens": 5, "max_completion_tokens": 7}) == 7
    assert requested_max_output_tokens("chat.completions", {"max_tokens": 5}) == 5
    assert requested_max_output_tokens("chat.completions", {"max_completion_tokens": None, "max_tokens": 3}) == 3
    assert requested_max_output_tokens("responses", {"max_output_tokens": 11}) == 11
    assert requested_max_output_tokens("responses", {}) is None
    assert requested_max_output_tokens("messages", {"max_tokens": openai.NOT_GIVEN}) is None
    with pytest.raises(ValidationError) as e:
        requested_max_output_tokens("messages", {"max_tokens": 12.5})
    assert e.value.field == "max_tokens"


def test_include_usage_is_added_only_when_the_caller_left_it_unset():
    assert with_usage_in_stream({"stream": True}) == ({"stream": True, "stream_options": {"include_usage": True}},
                                                      True)
    assert with_usage_in_stream({"stream_options": None})[0]["stream_options"] == {"include_usage": True}
    kept = {"stream_options": {"include_usage": True}}
    assert with_usage_in_stream(kept) == (kept, True)
    refused = {"stream_options": {"include_usage": False}}
    assert with_usage_in_stream(refused) == (refused, False)
