"""A fake LLM provider on loopback: the OpenAI and Anthropic HTTP APIs answered with replies a test scripts.

For tests and benchmarks that drive the real ``openai`` and ``anthropic`` client libraries without the network::

    with ProviderServer() as server:
        server.reply_json("/v1/chat/completions", chat_completion("chatcmpl-1", "gpt-4.1", 120, 30),
                          headers={"x-request-id": "req_1"})
        client = openai.OpenAI(base_url=server.openai_url, api_key="test-key", max_retries=0)
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
        assert [r.path for r in server.requests] == ["/v1/chat/completions"]

What it guarantees:
- it listens on 127.0.0.1 only, on a free port, in a daemon thread of this process (``start`` returns once it
  accepts connections; ``stop`` or leaving the ``with`` block shuts it down);
- every request is recorded (``requests``: method, path, lower-cased headers, body, the body as JSON) BEFORE it is
  answered, so a test can assert what was sent, or that nothing was;
- replies queued for a path are served in the order they were queued, each once (``repeat=True``: served for every
  later request to that path instead). A request for which nothing is queued is answered ``599`` with a JSON error
  naming the path: a status no provider sends and no client retries, so a test that forgot a reply fails loudly;
- a reply is written in full with its ``Content-Length`` (server-sent events too: the stream is scripted, so its
  length is known), over HTTP/1.1 keep-alive.

The builders below return the documented JSON shapes of each API (field names as the providers document them,
values the caller's); ``*_events`` return server-sent event lists for ``reply_sse``: OpenAI Chat Completions
chunks are unnamed ``data:`` lines ending with ``data: [DONE]``; Responses and Anthropic Messages events are named
(``event: <type>``) as those APIs send them.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"  # loopback only
NO_REPLY_STATUS = 599  # answered when no reply is queued: no provider sends it, no client library retries it
SHUTDOWN_POLL_S = 0.05  # how often the serving loop checks for ``stop`` (the time ``stop`` may wait)
DONE = "[DONE]"  # the data of the last Chat Completions stream event


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer."""

    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)
    repeat: bool = False


SseEvent = tuple[str | None, Any]  # (event name or None for an unnamed event, data: a JSON value or a raw string)


class ProviderServer:
    """An HTTP server on ``127.0.0.1`` that records every request and answers with the replies queued per path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: dict[str, deque[Reply]] = {}
        self._requests: list[SeenRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ life cycle

    def start(self) -> ProviderServer:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        server.daemon_threads = True  # a keep-alive connection left open by a client never holds up stop()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S},
                                        name="provider-server", daemon=True)
        self._thread.start()  # the socket is bound and listening already: connections queue until served
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the Anthropic client's ``base_url``."""
        if self._server is None:
            raise RuntimeError("the provider server is not started")
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def openai_url(self) -> str:
        """The OpenAI client's ``base_url`` (its paths are relative to ``/v1``)."""
        return f"{self.url}/v1"

    anthropic_url = url  # the Anthropic client's paths start with /v1 themselves

    # ------------------------------------------------------------ scripting

    def reply(self, path: str, reply: Reply) -> None:
        with self._lock:
            self._replies.setdefault(path, deque()).append(reply)

    def reply_json(self, path: str, body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None,
                   repeat: bool = False) -> None:
        """Queue a JSON answer for ``path``."""
        self.reply(path, Reply(status, json.dumps(body).encode(), "application/json", dict(headers or {}), repeat))

    def reply_sse(self, path: str, events: Iterable[SseEvent], *, headers: Mapping[str, str] | None = None,
                  repeat: bool = False) -> None:
        """Queue a ``text/event-stream`` answer for ``path``: each event as ``event: NAME`` (when named) and one
        ``data:`` line (a string as is, anything else as JSON), then a blank line."""
        self.reply(path, Reply(200, sse_bytes(events), "text/event-stream", dict(headers or {}), repeat))

    @property
    def requests(self) -> list[SeenRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the requests seen and the replies still queued."""
        with self._lock:
            self._requests.clear()
            self._replies.clear()

    def _answer(self, seen: SeenRequest) -> Reply:
        with self._lock:
            self._requests.append(seen)
            queue = self._replies.get(seen.path)
            if not queue:
                body = {"error": {"type": "no_reply_queued", "message": f"no reply queued for {seen.path}"}}
                return Reply(NO_REPLY_STATUS, json.dumps(body).encode(), "application/json")
            return queue[0] if queue[0].repeat else queue.popleft()


def _handler_for(server: ProviderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client libraries' connection pools expect
        # headers and body go out in two writes: with Nagle's algorithm the body waits for the client's delayed ACK
        # of the headers (tens of milliseconds on loopback), which would swamp any timing made against this server
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = SeenRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            reply = server._answer(seen)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests read ``requests``; nothing on stderr

    return Handler


def sse_bytes(events: Iterable[SseEvent]) -> bytes:
    """Server-sent events as bytes (see ``ProviderServer.reply_sse``)."""
    out: list[str] = []
    for name, data in events:
        if name is not None:
            out.append(f"event: {name}\n")
        out.append(f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n")
    return "".join(out).encode()


# ---------------------------------------------------------------- OpenAI Chat Completions (/v1/chat/completions)


def chat_usage(prompt_tokens: int, completion_tokens: int, *, cached_tokens: int | None = None,
               reasoning_tokens: int | None = None) -> dict[str, Any]:
    """A Chat Completions ``usage``: ``prompt_tokens`` INCLUDES ``prompt_tokens_details.cached_tokens``,
    ``completion_tokens`` includes ``completion_tokens_details.reasoning_tokens``."""
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "audio_tokens": 0}
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens, "audio_tokens": 0}
    return usage


def chat_completion(response_id: str, model: str, prompt_tokens: int, completion_tokens: int, *,
                    cached_tokens: int | None = None, reasoning_tokens: int | None = None,
                    service_tier: str | None = None, text: str = "A short answer.",
                    created: int = 1_750_000_000) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice."""
    out: dict[str, Any] = {
        "id": response_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": chat_usage(prompt_tokens, completion_tokens, cached_tokens=cached_tokens,
                            reasoning_tokens=reasoning_tokens)}
    if service_tier is not None:
        out["service_tier"] = service_tier
    return out


def chat_completion_events(response_id: str, model: str, texts: Sequence[str], usage: Mapping[str, Any] | None, *,
                           service_tier: str | None = None, created: int = 1_750_000_000) -> list[SseEvent]:
    """A streamed chat completion: a ``chat.completion.chunk`` per text piece, a last content chunk with its
    ``finish_reason``, then (``usage`` given: what ``stream_options.include_usage`` asks for) one chunk with empty
    ``choices`` and the usage, then ``[DONE]``."""

    def chunk(choices: list[dict[str, Any]], usage_value: Mapping[str, Any] | None) -> dict[str, Any]:
        c: dict[str, Any] = {"id": response_id, "object": "chat.completion.chunk", "created": created,
                             "model": model, "choices": choices, "usage": usage_value}
        if service_tier is not None:
            c["service_tier"] = service_tier
        return c

    events: list[SseEvent] = [(None, chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}], None))]
    events += [(None, chunk([{"index": 0, "delta": {"content": t}, "finish_reason": None}], None)) for t in texts]
    events.append((None, chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], None)))
    if usage is not None:
        events.append((None, chunk([], dict(usage))))
    events.append((None, DONE))
    return events


# ---------------------------------------------------------------- OpenAI Responses (/v1/responses)


def responses_usage(input_tokens: int, output_tokens: int, *, cached_tokens: int = 0,
                    reasoning_tokens: int = 0) -> dict[str, Any]:
    """A Responses ``usage``: ``input_tokens`` INCLUDES ``input_tokens_details.cached_tokens``, ``output_tokens``
    includes ``output_tokens_details.reasoning_tokens``."""
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": cached_tokens},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens}


def response_object(response_id: str, model: str, usage: Mapping[str, Any] | None, *, status: str = "completed",
                    text: str = "A short answer.", service_tier: str | None = None,
                    created_at: int = 1_750_000_000) -> dict[str, Any]:
    """A ``response`` object with one output message (``usage`` None: as in ``response.created``)."""
    output = [] if status == "in_progress" else [
        {"type": "message", "id": f"msg_{response_id}", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    out: dict[str, Any] = {
        "id": response_id, "object": "response", "created_at": created_at, "status": status, "model": model,
        "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None,
        "incomplete_details": None, "instructions": None, "metadata": {}, "temperature": 1.0, "top_p": 1.0,
        "usage": None if usage is None else dict(usage)}
    if service_tier is not None:
        out["service_tier"] = service_tier
    return out


def response_events(response_id: str, model: str, texts: Sequence[str], usage: Mapping[str, Any] | None, *,
                    final: str = "response.completed", service_tier: str | None = None) -> list[SseEvent]:
    """A streamed response: ``response.created``, an ``response.output_text.delta`` per text piece, then ``final``
    (``response.completed``, ``response.incomplete`` or ``response.failed``) carrying the response with its usage
    (``final=""``: the stream ends without it)."""
    events: list[SseEvent] = []
    seq = 0

    def add(kind: str, **fields: Any) -> None:
        nonlocal seq
        events.append((kind, {"type": kind, "sequence_number": seq, **fields}))
        seq += 1

    add("response.created", response=response_object(response_id, model, None, status="in_progress",
                                                     service_tier=service_tier))
    for t in texts:
        add("response.output_text.delta", item_id=f"msg_{response_id}", output_index=0, content_index=0, delta=t,
            logprobs=[])
    if final:
        status = final.removeprefix("response.")
        add(final, response=response_object(response_id, model, usage, status=status, text="".join(texts),
                                            service_tier=service_tier))
    return events


# ---------------------------------------------------------------- Anthropic Messages (/v1/messages)


def anthropic_usage(input_tokens: int, output_tokens: int, *, cache_write_5m: int = 0, cache_write_1h: int = 0,
                    cache_read: int = 0, service_tier: str | None = None) -> dict[str, Any]:
    """A Messages ``usage``: ``input_tokens`` EXCLUDES the cache (``cache_creation_input_tokens`` and
    ``cache_read_input_tokens`` are beside it); ``cache_creation`` splits the writes by time to live."""
    usage: dict[str, Any] = {
        "input_tokens": input_tokens, "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_write_5m + cache_write_1h, "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_write_5m, "ephemeral_1h_input_tokens": cache_write_1h}}
    if service_tier is not None:
        usage["service_tier"] = service_tier
    return usage


def anthropic_message(message_id: str, model: str, usage: Mapping[str, Any], *,
                      text: str = "A short answer.") -> dict[str, Any]:
    """A ``message`` object with one text block."""
    return {"id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": dict(usage)}


def anthropic_events(message_id: str, model: str, texts: Sequence[str], start_usage: Mapping[str, Any],
                     delta_usage: Mapping[str, Any] | None) -> list[SseEvent]:
    """A streamed message: ``message_start`` (its usage: the input counts, output so far), one text block's
    ``content_block_start`` / ``_delta`` per piece / ``_stop``, then (``delta_usage`` given) ``message_delta`` with
    the cumulative usage and ``message_stop``."""
    start: dict[str, Any] = {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": dict(start_usage)}
    events: list[SseEvent] = [("message_start", {"type": "message_start", "message": start}),
                              ("content_block_start", {"type": "content_block_start", "index": 0,
                                                       "content_block": {"type": "text", "text": ""}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": t}}) for t in texts]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if delta_usage is not None:
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                         "usage": dict(delta_usage)}))
        events.append(("message_stop", {"type": "message_stop"}))
    return events


# ---------------------------------------------------------------- errors


def openai_error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def anthropic_error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """Anthropic's error body."""
    return {"type": "error", "error": {"type": kind, "message": message}}
