"""Automatic metering of LLM client calls: one line turns it on, no call site changes.

    from ledger import Emitter
    from ledger.sdk.instrument import instrument
    em = Emitter.open("researcher", home="~/.tokenledger")
    client = instrument(openai.OpenAI(), em)         # or AsyncOpenAI, anthropic.Anthropic, AsyncAnthropic
    client.chat.completions.create(model="gpt-4.1", messages=[...])   # -> one signed `llm.call` action

``instrument`` patches the given client INSTANCE (never the class: other clients stay untouched) and returns it. It
imports nothing from ``openai`` or ``anthropic``: a client is recognised by its class (the first class of its MRO
defined in the ``openai`` or ``anthropic`` package must be ``OpenAI`` / ``AsyncOpenAI`` / ``Anthropic`` /
``AsyncAnthropic``; Azure, Bedrock and Vertex clients are other providers with other prices and are refused), and its
responses are read by field name (duck typing). ``client.copy()`` / ``client.with_options()`` return instrumented
copies. Metered methods:

- OpenAI ``chat.completions.create`` and ``responses.create`` (when the library has Responses), sync and async,
  with and without ``stream=True``;
- Anthropic ``messages.create`` (with and without ``stream=True``) and the ``messages.stream(...)`` context manager.

Not metered: ``with_raw_response`` / ``with_streaming_response`` calls (passed through unchanged; a warning once per
client), the libraries' other helpers (``chat.completions.stream`` / ``parse``, ``responses.stream`` / ``parse``,
``beta.*``), other endpoints (embeddings, ...).

**One call, one event**: ``Action(operation, usage=LlmUsage(...))`` emitted through ``emitter`` with
- the usage rules below, ``provider`` ``openai`` or ``anthropic``, ``model`` as the RESPONSE reports it;
- the context: ``context`` if given, else the emitter's own, plus the labels ``api`` (``chat.completions``,
  ``responses`` or ``messages``), ``latency_us`` (monotonic clock, from just before the request is sent to the
  response returned, or for a stream to its end: exhausted, closed or failed; telemetry, not ledger time) and
  ``request_id`` (the ``x-request-id`` / ``request-id`` response header, when there is one); ours win over the
  context's labels of the same names;
- the event time: the emitter's clock (``Emitter.emit``'s default);
- the idempotency key ``openai:{id}`` / ``anthropic:{id}`` where ``id`` is the RESPONSE's id (``chatcmpl-...``,
  ``resp_...``, ``msg_...``; keys too long for an id hashed as the importers do). That is the key
  ``tokenledger import openai|anthropic`` gives the same response, so an import of responses already metered here
  BY THE SAME SIGNER appends nothing (it reports them as imported before with other content: the context and time
  differ, and the first record stands). Keys are per signer: imported under the ``importer`` signer, the same
  responses would count again, so meter a source or import it, not both. The request-id header is not the key:
  the importers never see it. A response without an
  id is keyed by its request id, and without either it is emitted without a key (the spend is still recorded).
  The same response id metered twice (a replaying proxy, a server that reuses ids) appends nothing the second
  time: the emitter refuses the key with other content (``IdempotencyConflictError``), which is logged as a
  warning naming the key, since silently dropping a second call would under-meter a server that reuses ids.

**Usage rules** (``LlmUsage``: cache read + cache write are PARTS of ``input_tokens``; reasoning part of
``output_tokens``; 1-hour writes part of cache write):

- OpenAI Chat Completions: ``usage.prompt_tokens`` -> input (the cache INCLUDED), its
  ``prompt_tokens_details.cached_tokens`` -> cache read; ``usage.completion_tokens`` -> output, its
  ``completion_tokens_details.reasoning_tokens`` -> reasoning; ``total_tokens`` when reported must be their sum.
- OpenAI Responses: ``usage.input_tokens`` -> input (cache included), ``input_tokens_details.cached_tokens`` ->
  cache read; ``usage.output_tokens`` -> output, ``output_tokens_details.reasoning_tokens`` -> reasoning;
  ``total_tokens`` likewise.
- Both OpenAI APIs: top-level ``service_tier`` -> service tier; ``usage.cost`` (USD, as gateways such as OpenRouter
  report it) -> ``provider_cost_micros`` (rounded half to even). OpenAI bills no cache writes.
- Anthropic Messages: ``usage.input_tokens`` EXCLUDES the cache, so ledger input = ``input_tokens +
  cache_creation_input_tokens + cache_read_input_tokens``; cache write = ``cache_creation_input_tokens``, of which
  1-hour = ``cache_creation.ephemeral_1h_input_tokens`` (with ``ephemeral_5m_input_tokens`` it must add up to the
  creation count); cache read = ``cache_read_input_tokens``; output = ``output_tokens``, reasoning =
  ``output_tokens_details.thinking_tokens`` (part of the output); service tier = ``usage.service_tier``.
- Service tiers the providers use for standard rates (``default``, ``standard``, ``auto``, ``on_demand``) are
  recorded as '' (the ledger's standard), others lower-cased, as the importers do.

A count that is missing, not an integer, negative, or a part larger than its whole is never turned into 0 or
guessed: the call is not metered and a warning names the JSON path (``usage.prompt_tokens``; in streams
``chunks[N].usage...``, ``events[N]...``) and the value. (Only what the library hands back can be judged: the
client libraries themselves parse some malformed counts, e.g. ``"400"``, ``3.0`` or ``true``, into integers.)

**Streams** are metered when they end: exhausted, closed (``close()``, ``with``), or failed; the returned object
wraps the library's stream (iteration, ``close``, ``with``/``async with``, and any other attribute pass through; it
is not an instance of the library's ``Stream`` class). Where the final usage is:
- Chat Completions: the final chunk with empty ``choices`` that ``stream_options={"include_usage": True}`` asks
  for. When the caller did not set ``include_usage`` it is added (other stream options are kept, the caller's dict
  is not modified), so the caller sees that one extra final chunk with empty ``choices``, as OpenAI documents.
  A caller who sets ``include_usage: False`` has asked for a stream without usage: the request is sent as asked,
  nothing is recorded, and a warning is logged once per client (refusing would break a call the caller made on
  purpose; overriding would change the chunks it gets).
- Responses: the ``response`` of the ``response.completed`` event (or ``response.incomplete`` /
  ``response.failed`` when they carry usage: a response cut at ``max_output_tokens`` is billed).
- Anthropic: ``message_start`` carries the id, model and input usage; each ``message_delta`` carries CUMULATIVE
  usage (its counts replace the earlier ones; absent counts keep them; each must report ``output_tokens``).
  Metered once a ``message_delta`` was seen.
  ``messages.stream(...)``: metered when its ``with`` block exits, from the library's accumulated message snapshot.
A stream that ends before its final usage (closed early, the connection lost) records NOTHING and logs a warning
naming the request id: the tokens generated until then may still be billed, but their count is unknown and is not
guessed (import the provider's usage export to account for them). A stream never exhausted nor closed is never
metered: nothing is emitted from a garbage-collector finaliser (it may run at any point, even at interpreter exit).

**Failed calls** (an HTTP error status, a timeout, a connection error) record nothing: a provider bills no tokens
for a 4xx/5xx answer, a call that produced no response reported no usage, and a zero-usage event would claim a
call the ledger cannot price or identify. The caller's exception propagates unchanged.

**Metering never breaks the call**: if reading the usage or emitting fails, the call's result is still returned
(or the stream still iterates) and a ``logging`` warning on logger ``ledger.sdk.instrument`` names the request id.
The one exception is the guard, which is consulted before the request is sent:

**Guard hooks** (``ledger.sdk.guard``): when ``active_guard()`` returns a guard, ``before_call(provider=...,
model=<the requested model>, input_tokens_estimate=..., max_output_tokens=...)`` is called right before sending;
whatever it raises (``BudgetRefused``) propagates and the request is never sent. ``input_tokens_estimate`` is a
rough figure, not a count: the characters of every string in the request's prompt fields (Chat: ``messages``,
``tools``; Responses: ``input``, ``instructions``, ``tools``; Messages: ``system``, ``messages``, ``tools``;
inside dicts, lists and tuples; other iterables are not walked, as that would consume them) divided by
``CHARS_PER_TOKEN_ESTIMATE`` (4), rounded down; base64 images count as their characters (an overestimate).
``max_output_tokens`` is the request's ``max_completion_tokens`` (else ``max_tokens``) for Chat,
``max_output_tokens`` for Responses, ``max_tokens`` for Messages, or None. With a guard in force, a requested model
that is not a non-empty string, or a maximum that is not an integer, raises ``ValidationError`` before sending
(the guard cannot hold budget for it). After a response whose usage was read, the same guard (the one in force when
the call started, wherever the stream is consumed) gets ``after_call(usage)``; its errors are logged, not raised.
Calls that record nothing (failed, no usage) call no ``after_call``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from types import TracebackType
from typing import Any, TypeVar

from ledger import limits
from ledger.errors import IdempotencyConflictError, ValidationError
from ledger.sdk.emitter import Emitter
from ledger.sdk.guard import CallGuard, active_guard
from ledger.wire.events import Action, Context, LlmUsage, check_int, check_str

log = logging.getLogger(__name__)

DEFAULT_OPERATION = "llm.call"  # the importers' operation for provider payloads: the same calls, the same name
PROVIDER_OPENAI = "openai"
PROVIDER_ANTHROPIC = "anthropic"
API_CHAT = "chat.completions"
API_RESPONSES = "responses"
API_MESSAGES = "messages"
LABEL_API = "api"
LABEL_LATENCY_US = "latency_us"  # microseconds, decimal
LABEL_REQUEST_ID = "request_id"
CHARS_PER_TOKEN_ESTIMATE = 4  # characters per token of the guard's rough input estimate (English text: about 4)
NS_PER_US = 1_000
MICROS_PER_USD = 1_000_000
# Service tiers a provider reports for its standard rates: recorded as '' (the ledger's standard). The same set as
# ledger.sources.records.STANDARD_TIERS (sources sits above sdk in the layers, so it cannot be imported; a test
# pins the two equal).
STANDARD_TIERS = frozenset({"default", "standard", "auto", "on_demand"})
RAW_RESPONSE_HEADER = "x-stainless-raw-response"  # what both libraries' with_raw_response adds (compared lower-case)
_SENTINELS = frozenset({"NotGiven", "Omit"})  # the libraries' "argument not given" markers, by class name
_CLIENTS = {("openai", "OpenAI"): (PROVIDER_OPENAI, False), ("openai", "AsyncOpenAI"): (PROVIDER_OPENAI, True),
            ("anthropic", "Anthropic"): (PROVIDER_ANTHROPIC, False),
            ("anthropic", "AsyncAnthropic"): (PROVIDER_ANTHROPIC, True)}
_REQUEST_ID_HEADER = {PROVIDER_OPENAI: "x-request-id", PROVIDER_ANTHROPIC: "request-id"}
_PROMPT_FIELDS = {API_CHAT: ("messages", "tools"), API_RESPONSES: ("input", "instructions", "tools"),
                  API_MESSAGES: ("system", "messages", "tools")}
_OUTPUT_CAP_FIELDS = {API_CHAT: ("max_completion_tokens", "max_tokens"), API_RESPONSES: ("max_output_tokens",),
                      API_MESSAGES: ("max_tokens",)}
_RESPONSES_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_MARK = "_tokenledger_meter"  # set on an instrumented client: instrumenting it twice would meter every call twice

C = TypeVar("C")

# -------------------------------------------------------------------------------- pure core: responses -> usage


@dataclass(frozen=True, slots=True)
class Metered:
    """What one call reported: the response's id and its usage in ledger terms."""

    response_id: str | None  # None: the response carried no id
    usage: LlmUsage


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _get(obj: Any, name: str) -> Any:
    """A field of a JSON object or of a client library's response model (None when absent)."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


class _Fields:
    """Named fields read from one object, or merged from several (a stream's events), each with its JSON path."""

    def __init__(self, obj: Any, path: str, names: Sequence[str]) -> None:
        self.names = names
        self.values: dict[str, Any] = {}
        self.paths: dict[str, str] = {}
        self.update(obj, path)

    def update(self, obj: Any, path: str) -> None:
        """Take every field ``obj`` reports (not None), replacing earlier values."""
        if obj is None:
            return
        if isinstance(obj, (str, bytes, int, float, list, tuple)):  # bool is an int
            raise ValidationError(path, obj, f"must be an object, got {type(obj).__name__}")
        for name in self.names:
            value = _get(obj, name)
            if value is not None:
                self.values[name] = value
                self.paths[name] = _join(path, name)

    def path(self, name: str, base: str) -> str:
        return self.paths.get(name, _join(base, name))

    def count(self, name: str, base: str, *, required: bool) -> int:
        """A token count: an integer in [0, MAX_TOKENS]; absent: 0 if optional (none of that kind), else an error."""
        value = self.values.get(name)
        if value is None:
            if required:
                raise ValidationError(self.path(name, base), None, "is required: the response did not report it")
            return 0
        return check_int(self.path(name, base), value, 0, limits.MAX_TOKENS)

    def part(self, name: str, base: str, names: Sequence[str]) -> _Fields:
        """The nested object ``name`` (its fields ``names``)."""
        return _Fields(self.values.get(name), self.path(name, base), names)


def _usage_fields(response: Any, path: str, names: Sequence[str]) -> _Fields:
    usage = _get(response, "usage")
    if usage is None:
        raise ValidationError(_join(path, "usage"), None, "is required: the response reported no usage")
    return _Fields(usage, _join(path, "usage"), names)


def _string(obj: Any, name: str, path: str, max_chars: int) -> str:
    value = _get(obj, name)
    if value is None:
        raise ValidationError(_join(path, name), None, "is required: the response did not report it")
    return check_str(_join(path, name), value, max_chars)


def _optional_id(obj: Any, path: str) -> str | None:
    """The response's ``id`` (the idempotency key's source); None when it has none."""
    value = _get(obj, "id")
    return None if value is None else check_str(_join(path, "id"), value, limits.MAX_LABEL_CHARS)


def _part_of(part: int, part_path: str, whole: int, whole_path: str) -> None:
    if part > whole:
        raise ValidationError(part_path, part, f"is part of {whole_path} ({whole:,}) and cannot exceed it")


def _total(fields: _Fields, base: str, first: str, second: str, a: int, b: int) -> None:
    """``total_tokens``, when reported, must be the sum of the two counts it totals."""
    if fields.values.get("total_tokens") is not None:
        total = fields.count("total_tokens", base, required=True)
        if total != a + b:
            raise ValidationError(fields.path("total_tokens", base), total,
                                  f"must equal {first} + {second} ({a + b:,})")


# service_tier and reported_cost: the rules of ledger.sources.records' functions of the same names, which read them
# from a JSON mapping by its parent path (not importable from here: sources sits above sdk in the layers).
def service_tier(value: Any, path: str) -> str:
    """A reported service tier, lower-cased; '' for the standard tiers (``STANDARD_TIERS``) or none."""
    if value is None:
        return ""
    tier = check_str(path, value, limits.MAX_SERVICE_TIER_CHARS).lower()
    return "" if tier in STANDARD_TIERS else tier


def reported_cost(value: Any, path: str) -> int | None:
    """A gateway's reported cost (``usage.cost``, USD) in micro-USD rounded half to even; None when not reported."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValidationError(path, value, "must be a number of USD")
    try:
        usd = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(path, value, "must be a number of USD") from None
    if not usd.is_finite() or usd < 0 or usd * MICROS_PER_USD > limits.MAX_MICROS:
        raise ValidationError(path, value, "must be a finite, non-negative number of USD")
    return int((usd * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


# The importer (ledger.sources.openai) reads the same fields by the same rule; sources sits above sdk in the
# layers, so neither table can be the other's (as STANDARD_TIERS, service_tier and reported_cost above).
@dataclass(frozen=True, slots=True)
class _OpenAIUsage:
    """How one OpenAI API names its usage fields: Chat Completions and Responses apply the same rule (module doc)."""

    input: str  # the input total, cache included
    output: str  # the output total, reasoning included
    input_details: str  # object holding cached_tokens (a part of the input)
    output_details: str  # object holding reasoning_tokens (a part of the output)

    @property
    def fields(self) -> tuple[str, ...]:
        """The usage fields read."""
        return (self.input, self.output, "total_tokens", self.input_details, self.output_details, "cost")


_CHAT_USAGE = _OpenAIUsage("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details")
_RESPONSES_USAGE = _OpenAIUsage("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")


def _openai_metered(response: Any, path: str, names: _OpenAIUsage) -> Metered:
    """An OpenAI response whose usage fields are named ``names``, in ledger terms (module doc)."""
    usage_path = _join(path, "usage")
    u = _usage_fields(response, path, names.fields)
    inp = u.count(names.input, usage_path, required=True)
    out = u.count(names.output, usage_path, required=True)
    _total(u, usage_path, names.input, names.output, inp, out)
    cached = u.part(names.input_details, usage_path, ("cached_tokens",))
    read = cached.count("cached_tokens", u.path(names.input_details, usage_path), required=False)
    _part_of(read, cached.path("cached_tokens", ""), inp, u.path(names.input, usage_path))
    details = u.part(names.output_details, usage_path, ("reasoning_tokens",))
    reasoning = details.count("reasoning_tokens", u.path(names.output_details, usage_path), required=False)
    _part_of(reasoning, details.path("reasoning_tokens", ""), out, u.path(names.output, usage_path))
    return Metered(_optional_id(response, path), LlmUsage(
        provider=PROVIDER_OPENAI, model=_string(response, "model", path, limits.MAX_ID_CHARS), input_tokens=inp,
        output_tokens=out, cache_read_tokens=read, reasoning_tokens=reasoning,
        service_tier=service_tier(_get(response, "service_tier"), _join(path, "service_tier")),
        provider_cost_micros=reported_cost(u.values.get("cost"), u.path("cost", usage_path))))


def chat_completion_metered(response: Any, path: str = "") -> Metered:
    """A Chat Completions response (or the final stream chunk that carries ``usage``) in ledger terms (module doc)."""
    return _openai_metered(response, path, _CHAT_USAGE)


def response_metered(response: Any, path: str = "") -> Metered:
    """A Responses ``response`` object in ledger terms (module doc)."""
    return _openai_metered(response, path, _RESPONSES_USAGE)


_ANTHROPIC_USAGE = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                    "cache_creation", "output_tokens_details", "service_tier")


def message_metered(message: Any, path: str = "", deltas: Sequence[tuple[Any, str]] = ()) -> Metered:
    """An Anthropic ``message`` in ledger terms (module doc). ``deltas``: a stream's ``message_delta`` usages (each
    with its path), in order: cumulative, so each count they report replaces the message's."""
    usage_path = _join(path, "usage")
    u = _usage_fields(message, path, _ANTHROPIC_USAGE)
    for delta, delta_path in deltas:
        # every message_delta reports the cumulative output: one without it would leave message_start's count
        # (usually 1) standing for the whole answer
        if _get(delta, "output_tokens") is None:
            raise ValidationError(_join(delta_path, "output_tokens"), None,
                                  "is required: a message_delta reports the cumulative output")
        u.update(delta, delta_path)
    uncached = u.count("input_tokens", usage_path, required=True)
    output = u.count("output_tokens", usage_path, required=True)
    written = u.count("cache_creation_input_tokens", usage_path, required=False)
    read = u.count("cache_read_input_tokens", usage_path, required=False)
    one_hour = 0
    if u.values.get("cache_creation") is not None:
        split_path = u.path("cache_creation", usage_path)
        split = u.part("cache_creation", usage_path, ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"))
        five_minutes = split.count("ephemeral_5m_input_tokens", split_path, required=False)
        one_hour = split.count("ephemeral_1h_input_tokens", split_path, required=False)
        if five_minutes + one_hour != written:
            raise ValidationError(split_path, {"ephemeral_5m_input_tokens": five_minutes,
                                               "ephemeral_1h_input_tokens": one_hour},
                                  f"the 5-minute and 1-hour cache writes must add up to cache_creation_input_tokens "
                                  f"({written:,})")
    details = u.part("output_tokens_details", usage_path, ("thinking_tokens",))
    thinking = details.count("thinking_tokens", u.path("output_tokens_details", usage_path), required=False)
    _part_of(thinking, details.path("thinking_tokens", ""), output, u.path("output_tokens", usage_path))
    # Anthropic reports input_tokens WITHOUT the cached parts; the ledger's input total includes them
    return Metered(_optional_id(message, path), LlmUsage(
        provider=PROVIDER_ANTHROPIC, model=_string(message, "model", path, limits.MAX_ID_CHARS),
        input_tokens=uncached + written + read, output_tokens=output, cache_read_tokens=read,
        cache_write_tokens=written, cache_write_1h_tokens=one_hour, reasoning_tokens=thinking,
        service_tier=service_tier(u.values.get("service_tier"), u.path("service_tier", usage_path))))


def idempotency_key(provider: str, response_id: str) -> str:
    """``provider:id``, hashed to ``provider:sha256:<hex>`` when longer than an id may be (as the importers do)."""
    key = f"{provider}:{response_id}"
    if len(key) <= limits.MAX_ID_CHARS:
        return key
    return f"{provider}:sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


# -------------------------------------------------------------------------------- pure core: streams


class _ChatStream:
    """Chat Completions chunks: the last chunk carrying ``usage`` is self-contained (id, model, tier, usage)."""

    def __init__(self) -> None:
        self.seen = 0
        self.final: tuple[Any, int] | None = None

    def feed(self, chunk: Any) -> None:
        if _get(chunk, "usage") is not None:
            self.final = (chunk, self.seen)
        self.seen += 1

    def metered(self) -> Metered | None:
        if self.final is None:
            return None
        chunk, index = self.final
        return chat_completion_metered(chunk, f"chunks[{index}]")


class _ResponsesStream:
    """Responses events: the ``response`` of the terminal event (completed, incomplete, failed) with its usage."""

    def __init__(self) -> None:
        self.seen = 0
        self.final: tuple[Any, int] | None = None

    def feed(self, event: Any) -> None:
        if _get(event, "type") in _RESPONSES_FINAL and _get(_get(event, "response"), "usage") is not None:
            self.final = (_get(event, "response"), self.seen)
        self.seen += 1

    def metered(self) -> Metered | None:
        if self.final is None:
            return None
        response, index = self.final
        return response_metered(response, f"events[{index}].response")


class _MessagesStream:
    """Anthropic events: ``message_start``'s message, then each ``message_delta``'s cumulative usage."""

    def __init__(self) -> None:
        self.seen = 0
        self.start: tuple[Any, int] | None = None
        self.deltas: list[tuple[Any, str]] = []

    def feed(self, event: Any) -> None:
        kind = _get(event, "type")
        if kind == "message_start" and self.start is None:
            self.start = (_get(event, "message"), self.seen)
        elif kind == "message_delta":
            self.deltas.append((_get(event, "usage"), f"events[{self.seen}].usage"))
        self.seen += 1

    def metered(self) -> Metered | None:
        if self.start is None or not self.deltas:
            return None
        message, index = self.start
        return message_metered(message, f"events[{index}].message", self.deltas)


_STREAMS: dict[str, Callable[[], _ChatStream | _ResponsesStream | _MessagesStream]] = {
    API_CHAT: _ChatStream, API_RESPONSES: _ResponsesStream, API_MESSAGES: _MessagesStream}
_READ: dict[str, Callable[[Any], Metered]] = {
    API_CHAT: chat_completion_metered, API_RESPONSES: response_metered, API_MESSAGES: message_metered}


# -------------------------------------------------------------------------------- pure core: requests


def _given(value: Any) -> bool:
    return value is not None and type(value).__name__ not in _SENTINELS


def estimate_input_tokens(api: str, request: Mapping[str, Any]) -> int:
    """The guard's rough input estimate: characters of every string in the prompt fields // 4 (module doc)."""
    chars = 0
    stack = [request.get(name) for name in _PROMPT_FIELDS[api]]
    seen: set[int] = set()  # containers walked: a list holding itself must not loop forever
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, (Mapping, list, tuple)) and id(value) not in seen:
            seen.add(id(value))
            stack.extend(value.values() if isinstance(value, Mapping) else value)
    return chars // CHARS_PER_TOKEN_ESTIMATE


def requested_max_output_tokens(api: str, request: Mapping[str, Any]) -> int | None:
    """The request's output cap (module doc), or None when it sets none."""
    for name in _OUTPUT_CAP_FIELDS[api]:
        value = request.get(name)
        if _given(value):
            return check_int(name, value, 0, limits.MAX_TOKENS)
    return None


def requested_model(request: Mapping[str, Any]) -> str:
    return check_str("model", request.get("model"), limits.MAX_ID_CHARS)


def with_usage_in_stream(request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A Chat Completions streaming request with ``stream_options.include_usage`` set to true unless the caller set
    it (a new dict; the caller's options are kept), and whether the stream will carry usage."""
    options = request.get("stream_options")
    if not _given(options):
        return {**request, "stream_options": {"include_usage": True}}, True
    if isinstance(options, Mapping) and "include_usage" not in options:
        return {**request, "stream_options": {**options, "include_usage": True}}, True
    return request, bool(_get(options, "include_usage"))


# -------------------------------------------------------------------------------- effects: the meter


class _Meter:
    """One instrumented client's settings, and its once-only warnings."""

    def __init__(self, emitter: Emitter, provider: str, operation: str, context: Context | None) -> None:
        self.emitter = emitter
        self.provider = provider
        self.operation = operation
        self.context = context
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def warn_once(self, topic: str, message: str, *args: Any) -> None:
        with self._lock:
            if topic in self._warned:
                return
            self._warned.add(topic)
        log.warning(message, *args)

    def admit(self, api: str, request: Mapping[str, Any]) -> CallGuard | None:
        """Ask the guard in force, if any, before the request is sent; whatever it raises propagates."""
        guard = active_guard()
        if guard is not None:
            guard.before_call(provider=self.provider, model=requested_model(request),
                              input_tokens_estimate=estimate_input_tokens(api, request),
                              max_output_tokens=requested_max_output_tokens(api, request))
        return guard

    def record(self, api: str, read: Callable[[], Metered | None], request_id: str | None, started_ns: int,
               guard: CallGuard | None, unfinished: str = "") -> None:
        """Emit the call's event and tell the guard; never raises (failures are logged naming the request id)."""
        latency_us = (time.monotonic_ns() - started_ns) // NS_PER_US
        try:
            metered = read()
        except Exception as e:  # noqa: BLE001 (a malformed response must not break the caller's call)
            log.warning("tokenledger: %s %s call not metered (request id %s): %s", self.provider, api, request_id, e)
            return
        if metered is None:
            log.warning("tokenledger: %s %s call not metered (request id %s): %s", self.provider, api, request_id,
                        unfinished)
            return
        key_id = metered.response_id or request_id
        key = None if key_id is None else idempotency_key(self.provider, key_id)
        try:
            ctx = self.context if self.context is not None else self.emitter.context
            labels = {**dict(ctx.labels), LABEL_API: api, LABEL_LATENCY_US: str(latency_us)}
            if request_id is not None:
                labels[LABEL_REQUEST_ID] = request_id
            self.emitter.emit(Action(operation=self.operation, usage=metered.usage),
                              context=replace(ctx, labels=tuple(labels.items())), idempotency_key=key)
        except IdempotencyConflictError:
            log.warning("tokenledger: %s %s call (request id %s) not recorded again: %s is already on the ledger "
                        "with other content; the first record stands", self.provider, api, request_id, key)
        except Exception:  # the call succeeded: a ledger failure must not lose the caller's result
            log.warning("tokenledger: %s %s call (request id %s, key %s) could not be recorded", self.provider, api,
                        request_id, key, exc_info=True)
        if guard is not None:
            try:
                guard.after_call(metered.usage)
            except Exception:  # the response is the caller's: the guard's bookkeeping cannot take it
                log.warning("tokenledger: the guard's after_call failed for %s %s call (request id %s)",
                            self.provider, api, request_id, exc_info=True)


def _request_id_of(meter: _Meter, response: Any) -> str | None:
    """The request id the library read from the response header (``_request_id``), else the header itself (a
    stream's ``response.headers``); None when there is none or it cannot be read."""
    try:
        value = getattr(response, "_request_id", None)
        if value is None:
            headers = getattr(getattr(response, "response", None), "headers", None)
            value = None if headers is None else headers.get(_REQUEST_ID_HEADER[meter.provider])
    except Exception:  # noqa: BLE001 (only a label and a log line need it: never worth the caller's call)
        return None
    return value if isinstance(value, str) else None


def _is_raw(request: Mapping[str, Any]) -> bool:
    headers = request.get("extra_headers")
    return isinstance(headers, Mapping) and any(str(k).lower() == RAW_RESPONSE_HEADER for k in headers)


_UNFINISHED = ("the stream ended before its final usage (closed early, or the connection was lost); the tokens "
               "generated until then may be billed but their count is unknown")


class _StreamBase:
    def __init__(self, inner: Any, meter: _Meter, api: str, guard: CallGuard | None, started_ns: int) -> None:
        self._inner = inner
        self._meter = meter
        self._api = api
        self._guard = guard
        self._started_ns = started_ns
        self._observer = _STREAMS[api]()
        self._broken: Exception | None = None  # an event the observer could not read
        self._done = False

    def _feed(self, item: Any) -> None:
        if self._broken is None:
            try:
                self._observer.feed(item)
            except Exception as e:  # noqa: BLE001 (the caller still gets the event; metering reports it at the end)
                self._broken = e

    def _read(self) -> Metered | None:
        if self._broken is not None:
            raise self._broken
        return self._observer.metered()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._meter.record(self._api, self._read, _request_id_of(self._meter, self._inner), self._started_ns,
                           self._guard, _UNFINISHED)

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("_inner")  # absent while unpickling or copying: no recursion through here
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


class _MeteredStream(_StreamBase):
    """A library ``Stream`` that meters the call when it is exhausted, closed or fails."""

    def __iter__(self) -> _MeteredStream:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._inner)
        except BaseException:  # StopIteration included: the stream ended, however it ended
            self._finish()
            raise
        self._feed(item)
        return item

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._finish()

    def __enter__(self) -> _MeteredStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _MeteredAsyncStream(_StreamBase):
    """A library ``AsyncStream`` that meters the call when it is exhausted, closed or fails."""

    def __aiter__(self) -> _MeteredAsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._inner.__anext__()
        except BaseException:  # StopAsyncIteration included
            self._finish()
            raise
        self._feed(item)
        return item

    async def close(self) -> None:
        try:
            await self._inner.close()
        finally:
            self._finish()

    aclose = close

    async def __aenter__(self) -> _MeteredAsyncStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def _snapshot_metered(stream: Any) -> Metered | None:
    """``messages.stream()``: the library's accumulated message, once a ``message_delta`` set its stop reason."""
    try:
        snapshot = stream.current_message_snapshot
    except AssertionError:  # the library asserts a snapshot exists: no message_start was read
        return None
    if _get(snapshot, "stop_reason") is None:  # set by message_delta: without it the output count is not final
        return None
    return message_metered(snapshot, "current_message_snapshot")


class _MeteredStreamManager:
    """``messages.stream(...)``: the guard before the request (sent on entering), the event on leaving."""

    def __init__(self, inner: Any, meter: _Meter, request: Mapping[str, Any]) -> None:
        self._inner = inner
        self._meter = meter
        self._request = request
        self._stream: Any = None
        self._guard: CallGuard | None = None
        self._started_ns = 0

    def _enter(self) -> None:
        self._guard = self._meter.admit(API_MESSAGES, self._request)
        self._started_ns = time.monotonic_ns()

    def _exit(self) -> None:
        if self._stream is not None:
            stream = self._stream
            self._meter.record(API_MESSAGES, lambda: _snapshot_metered(stream), _request_id_of(self._meter, stream),
                               self._started_ns, self._guard, _UNFINISHED)

    def __enter__(self) -> Any:
        self._enter()
        self._stream = self._inner.__enter__()
        return self._stream

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Any:
        try:
            return self._inner.__exit__(exc_type, exc, tb)
        finally:
            self._exit()

    async def __aenter__(self) -> Any:
        self._enter()
        self._stream = await self._inner.__aenter__()
        return self._stream

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> Any:
        try:
            return await self._inner.__aexit__(exc_type, exc, tb)
        finally:
            self._exit()


# -------------------------------------------------------------------------------- effects: patching


def _prepare(meter: _Meter, api: str, request: dict[str, Any]) -> dict[str, Any]:
    """The request to send (Chat streams ask for usage) and whether to warn that it cannot be metered."""
    if api == API_CHAT and request.get("stream") is True:
        request, metered = with_usage_in_stream(request)
        if not metered:
            meter.warn_once("include_usage", "tokenledger: %s chat.completions streams with "
                            "stream_options.include_usage false carry no usage: they are not metered",
                            meter.provider)
    return request


def _raw(meter: _Meter, api: str) -> None:
    meter.warn_once("raw", "tokenledger: %s %s calls through with_raw_response / with_streaming_response are not "
                    "metered", meter.provider, api)


def _sync_create(original: Callable[..., Any], meter: _Meter, api: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(*args: Any, **request: Any) -> Any:
        if _is_raw(request):
            _raw(meter, api)
            return original(*args, **request)
        request = _prepare(meter, api, request)
        guard = meter.admit(api, request)  # raises before anything is sent
        started = time.monotonic_ns()
        response = original(*args, **request)
        if request.get("stream") is True:
            return _MeteredStream(response, meter, api, guard, started)
        meter.record(api, lambda: _READ[api](response), _request_id_of(meter, response), started, guard)
        return response

    return create


def _async_create(original: Callable[..., Any], meter: _Meter, api: str) -> Callable[..., Any]:
    @functools.wraps(original)
    async def create(*args: Any, **request: Any) -> Any:
        if _is_raw(request):
            _raw(meter, api)
            return await original(*args, **request)
        request = _prepare(meter, api, request)
        guard = meter.admit(api, request)  # raises before anything is sent
        started = time.monotonic_ns()
        response = await original(*args, **request)
        if request.get("stream") is True:
            return _MeteredAsyncStream(response, meter, api, guard, started)
        meter.record(api, lambda: _READ[api](response), _request_id_of(meter, response), started, guard)
        return response

    return create


def _stream_manager(original: Callable[..., Any], meter: _Meter) -> Callable[..., Any]:
    @functools.wraps(original)
    def stream(*args: Any, **request: Any) -> Any:
        return _MeteredStreamManager(original(*args, **request), meter, request)  # sends nothing until entered

    return stream


def _copy(original: Callable[..., Any], meter: _Meter) -> Callable[..., Any]:
    @functools.wraps(original)
    def copy(*args: Any, **options: Any) -> Any:
        return instrument(original(*args, **options), meter.emitter, operation=meter.operation,
                          context=meter.context)

    return copy


def recognise(client: Any) -> tuple[str, bool]:
    """(provider, is async) of a supported client, by its class (module doc); ``ValidationError`` otherwise."""
    for cls in type(client).__mro__:
        package = cls.__module__.split(".", 1)[0]
        if package in ("openai", "anthropic"):
            found = _CLIENTS.get((package, cls.__name__))
            if found is None:
                raise ValidationError("client", f"{cls.__module__}.{cls.__qualname__}",
                                      "is not supported: instrument takes openai.OpenAI, openai.AsyncOpenAI, "
                                      "anthropic.Anthropic or anthropic.AsyncAnthropic (Azure, Bedrock and Vertex "
                                      "clients bill as other providers)")
            return found
    raise ValidationError("client", type(client).__qualname__, "must be an openai or anthropic client")


def instrument(client: C, emitter: Emitter, *, operation: str = DEFAULT_OPERATION,
               context: Context | None = None) -> C:
    """Meter every call of ``client`` into ``emitter`` (see the module doc); returns the same client, patched.

    ``operation``: the action's operation name; ``context``: the events' context (default: the emitter's), to
    which the ``api``, ``latency_us`` and ``request_id`` labels are added. Raises ``ValidationError`` for an
    unsupported client, a client already instrumented, or a bad operation or context."""
    provider, is_async = recognise(client)
    if not isinstance(emitter, Emitter):
        raise ValidationError("emitter", emitter, "must be an Emitter")
    check_str("operation", operation, limits.MAX_LABEL_CHARS)
    if context is not None and not isinstance(context, Context):
        raise ValidationError("context", context, "must be a Context")
    if getattr(client, _MARK, None) is not None:
        raise ValidationError("client", type(client).__qualname__, "is already instrumented (every call would be "
                              "metered twice)")
    meter = _Meter(emitter, provider, operation, context)
    create = _async_create if is_async else _sync_create
    if provider == PROVIDER_OPENAI:
        targets = [(client.chat.completions, API_CHAT)]  # type: ignore[attr-defined]
        responses = getattr(client, "responses", None)  # openai >= 1.66
        if responses is not None:
            targets.append((responses, API_RESPONSES))
        for resource, api in targets:
            resource.create = create(resource.create, meter, api)
    else:
        messages = client.messages  # type: ignore[attr-defined]
        messages.create = create(messages.create, meter, API_MESSAGES)
        messages.stream = _stream_manager(messages.stream, meter)
    for name in ("copy", "with_options"):
        setattr(client, name, _copy(getattr(client, name), meter))
    setattr(client, _MARK, meter)
    return client


__all__ = [
    "CHARS_PER_TOKEN_ESTIMATE",
    "DEFAULT_OPERATION",
    "LABEL_API",
    "LABEL_LATENCY_US",
    "LABEL_REQUEST_ID",
    "STANDARD_TIERS",
    "Metered",
    "chat_completion_metered",
    "estimate_input_tokens",
    "idempotency_key",
    "instrument",
    "message_metered",
    "recognise",
    "reported_cost",
    "requested_max_output_tokens",
    "requested_model",
    "response_metered",
    "service_tier",
    "with_usage_in_stream",
]
