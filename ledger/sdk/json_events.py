"""Agent events as JSON objects (``POST /v1/events`` of ``tokenledger serve``) -> what ``Emitter.emit`` takes.

One JSON object is one event: ``{"kind": "action", "operation": "llm.call", "provider": "openai", ...}``. Its kinds
are the agent kinds an emitter signs for itself: ``action`` (an LLM call is an action with ``provider`` and
``model``), ``data``, ``compute``, ``trust``, ``interaction`` and ``outcome``. ``event_from_json`` turns one object
into a ``JsonEvent`` ``(body, context, event_time_us, idempotency_key)``, the arguments of ``Emitter.emit``;
``events_from_json`` does a list of them, all or nothing. ``schemas()`` gives each kind's JSON Schema (draft
2020-12), generated from the same field table the converter reads (``KIND_SPECS``), so the two cannot drift.

Field names are the columns of the journal's ``events`` view (``processors/VIEWS.md``) and the arguments of the
SDK helpers (``Emitter.action``, ``.data``, ``.compute``, ``.trust``): what is posted is what is queried. Where a
stored field is in thousandths the JSON carries the number people write, as the SDK and the CLI take it:
``cost_weight`` 1.5 is stored as ``cost_weight_milli`` 1500, trust ``value`` as ``value_milli``, outcome
``confidence`` and ``score`` (0..1) as ``confidence_milli`` and ``score_milli``; at most 3 decimal places, exactly
(a fourth decimal is refused, never rounded). An interaction's four cost flows are written as the view names them.

**Token counts of an LLM call** (an ``action`` with ``provider`` and ``model``; ``input_tokens`` and
``output_tokens`` are then required, the others default to 0):

- ``input_tokens``: every prompt token of the call, *cache reads and cache writes included*. OpenAI reports it so
  (Chat ``usage.prompt_tokens``, Responses ``usage.input_tokens``); for Anthropic add ``cache_read_input_tokens``
  and ``cache_creation_input_tokens`` to its ``usage.input_tokens``, which counts neither.
- ``cache_read_tokens``: the part of ``input_tokens`` read from the prompt cache (OpenAI
  ``prompt_tokens_details.cached_tokens`` / ``input_tokens_details.cached_tokens``; Anthropic
  ``cache_read_input_tokens``).
- ``cache_write_tokens``: the part of ``input_tokens`` written to the cache (Anthropic
  ``cache_creation_input_tokens``); ``cache_write_1h_tokens`` the part of those written with the one-hour lifetime
  (Anthropic ``cache_creation.ephemeral_1h_input_tokens``).
- ``output_tokens``: every generated token, *reasoning included* (OpenAI ``completion_tokens`` /
  ``output_tokens``; Anthropic ``output_tokens``); ``reasoning_tokens`` the part of it spent reasoning (OpenAI
  ``completion_tokens_details.reasoning_tokens`` / ``output_tokens_details.reasoning_tokens``).
- So: cache_read + cache_write <= input, cache_write_1h <= cache_write, reasoning <= output (``LlmUsage``).

**Rules** (each refusal is a ``ValidationError`` whose ``field`` is the JSON path, e.g. ``events[3].input_tokens``,
and whose ``value`` is the offending value; nothing is guessed and no malformed count becomes 0):

- an event is a JSON object with a known ``kind``; an unknown field is refused (a typo never silently drops data);
- a field is absent or has a value of its type: ``null`` is refused (leave the field out instead);
- integers are JSON integers: ``true``/``false``, ``1.0``, ``1e3`` and strings are refused, and each count is
  within its bound (``ledger.limits``: ``MAX_TOKENS``, ``MAX_COUNT``, ``MAX_DATA_BYTES``, ``MAX_MICROS``, ...);
- names and ids: 1..256 characters, no control or invisible formatting characters; free text: no NUL; no string
  may hold a lone UTF-16 surrogate (``"\\ud800"``: not a character, it cannot be written to the log);
- ``event_time`` is RFC 3339 with an offset (``2026-05-01T12:00:00.250Z``, ``...+02:00``; at most microsecond
  precision: nonzero digits beyond the sixth are refused, not rounded), or ``event_time_us`` integer microseconds
  since the epoch; not both; neither: the emitter stamps the event when it is emitted;
- ``labels`` is an object of string values, at most ``CLIENT_LABELS`` entries; keys starting with
  ``SERVICE_LABEL_PREFIX`` (``tokenledger.``) are the service's own (e.g. ``tokenledger.token_id``, the API
  token that ingested the event) and refused from a client;
- dependent fields (the schema's ``dependentRequired``): ``provider`` and ``model`` together, and with them
  ``input_tokens`` and ``output_tokens``; any other LLM field only with them; an outcome's ``score`` and
  ``subject_id`` together;
- cross-field rules the schema states in its ``$comment`` and descriptions but cannot check: the token sums above;
  an interaction's cached part of a flow within the flow, its responder not the signer (the requestor is the
  signer); an outcome's subject not the signer (a score the signer gives itself is never counted); in one list, one
  ``idempotency_key`` twice with different content.

The converter is the rule: the schema is its published shape. Where they differ (the cross-field rules, calendar
validity of a date, lone surrogates, ``1.0`` for an integer, which JSON Schema calls an integer) the converter is
stricter; tests/ledger/sdk/test_json_events.py lists each case.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from ledger import limits
from ledger.errors import ValidationError
from ledger.sdk.emitter import milli
from ledger.units import MILLI
from ledger.wire import codec
from ledger.wire.events import (
    GENESIS_HASH,
    TRUST_DIMENSIONS,
    Action,
    Body,
    Compute,
    Context,
    Data,
    Flow,
    Interaction,
    LlmUsage,
    Outcome,
    Trust,
    check_choice,
    check_int,
    check_str,
)
from ledger.wire.timefmt import RFC3339_PATTERN, parse_rfc3339

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_BASE = "https://tokenledger.dev/schemas/events/"
SERVICE_LABEL_PREFIX = "tokenledger."  # label keys the service adds (who ingested); a client may not use them
SERVICE_LABEL_SLOTS = 1  # labels the service may add to a client's event: tokenledger.token_id
CLIENT_LABELS = limits.MAX_LABELS - SERVICE_LABEL_SLOTS  # entries a client's labels object may have
# Bytes every field of an event but its labels encodes within, envelope included (the largest strings, 4 bytes a
# character, and every integer at its widest: tests/ledger/sdk/test_json_events.py builds them). Only an event
# whose labels could pass limits.MAX_EVENT_BYTES on top of this is encoded here to measure it exactly.
UNLABELLED_EVENT_BYTES = 64 * 1024

# names and ids: no C0/C1 controls, DEL, or invisible formatting characters (the rule of ledger.wire.events.check_str,
# written as an ECMA-262 / Python regex for the schema; the test checks the two agree on every BMP character)
NAME_PATTERN = ("^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2069\\ufeff]*$")
TEXT_PATTERN = "^[^\\u0000]*$"  # free text: only NUL is refused
_ABSENT: Any = object()


class JsonEvent(NamedTuple):
    """One converted event: ``emitter.emit(e.body, context=e.context, event_time_us=e.event_time_us,
    idempotency_key=e.idempotency_key)``. ``event_time_us`` None: stamped by the emitter."""

    body: Body
    context: Context
    event_time_us: int | None
    idempotency_key: str | None


# ---------------------------------------------------------------- the field table (the data both sides read)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One JSON field. ``type``: ``id`` (a name), ``tier`` (a name or ''), ``int`` in [lo, hi], ``milli``
    (a decimal number stored in thousandths, [lo, hi] in thousandths), ``bool``, ``choice``, ``time`` (RFC 3339),
    ``labels``. ``default`` is in JSON terms (what leaving the field out means); None: no value."""

    name: str
    type: str
    description: str
    example: Any
    required: bool = False
    lo: int = 0
    hi: int = 0
    chars: int = limits.MAX_ID_CHARS
    choices: tuple[str, ...] = ()
    default: Any = None


@dataclass(frozen=True)
class KindSpec:
    """One event kind: its own fields (the common ones are added), which fields need which others
    (``dependentRequired``), examples, and how its body is built from checked values."""

    kind: str
    description: str
    fields: tuple[FieldSpec, ...]
    build: Callable[[dict[str, Any], str, str], Body]  # (checked values with defaults, signer, JSON path) -> body
    needs: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    examples: tuple[dict[str, Any], ...] = ()


def _f(name: str, type_: str, description: str, example: Any, **kw: Any) -> FieldSpec:
    return FieldSpec(name, type_, description, example, **kw)


def _tokens(name: str, description: str, example: int, **kw: Any) -> FieldSpec:
    return _f(name, "int", description, example, hi=limits.MAX_TOKENS, **kw)


COMMON_FIELDS: tuple[FieldSpec, ...] = (
    _f("event_time", "time", "When it happened: RFC 3339 with an offset, at most microsecond precision. Leave out "
       "(and event_time_us) to have the service stamp it when it signs it; not together with event_time_us.",
       "2026-05-01T12:00:00.250Z"),
    _f("event_time_us", "int", "When it happened, in microseconds since the Unix epoch (UTC); not together with "
       "event_time.", 1_777_636_800_250_000, lo=limits.MIN_EVENT_TIME_US, hi=limits.MAX_EVENT_TIME_US),
    _f("idempotency_key", "id", "Makes retries safe: an event posted again with the same key (and the same content) "
       "returns the first one's id and appends nothing; the same key with other content is refused. Keys are per "
       "signing agent. Without a key the id derives from the content and its time.", "resp_01HX8Y"),
    _f("org", "id", "Context: organisation (budgets and reports roll up org > project > task).", "acme"),
    _f("project", "id", "Context: project.", "search"),
    _f("task", "id", "Context: task.", "task-42"),
    _f("stage", "id", "Context: stage of the task (the report's waterfall).", "retrieve"),
    _f("run", "id", "Context: run (one execution of a workflow).", "run-7"),
    _f("labels", "labels", f"Context: free labels, string to string, at most {CLIENT_LABELS} entries (keys 1-256 "
       f"characters, values up to {limits.MAX_LABEL_CHARS}); keys starting with '{SERVICE_LABEL_PREFIX}' are the "
       "service's own.", {"team": "growth"}),
)

_LLM_NEEDS = ("provider", "model")


def _build_action(v: dict[str, Any], signer: str, path: str) -> Body:
    usage = None
    if "provider" in v:
        try:
            usage = LlmUsage(provider=v["provider"], model=v["model"], input_tokens=v["input_tokens"],
                             output_tokens=v["output_tokens"], cache_read_tokens=v["cache_read_tokens"],
                             cache_write_tokens=v["cache_write_tokens"], reasoning_tokens=v["reasoning_tokens"],
                             cache_write_1h_tokens=v["cache_write_1h_tokens"], service_tier=v["service_tier"],
                             provider_cost_micros=v.get("provider_cost_micros"))
        except ValidationError as e:  # a cross-field rule (the sums): named as the JSON field
            raise _at(path, e) from None
    return Action(operation=v["operation"], cost_weight_milli=v["cost_weight"], result_hash=v.get("result_hash"),
                  usage=usage)


def _build_data(v: dict[str, Any], signer: str, path: str) -> Body:
    return Data(bytes_read=v["bytes_read"], bytes_written=v["bytes_written"], source_hash=v.get("source_hash"),
                destination_hash=v.get("destination_hash"), duration_us=v["duration_us"])


def _build_compute(v: dict[str, Any], signer: str, path: str) -> Body:
    return Compute(node_id=v["node_id"], cpu_time_slices=v["cpu_time_slices"], gpu_time_slices=v["gpu_time_slices"],
                   peak_memory_mb=v["peak_memory_mb"], parallel_jobs=v["parallel_jobs"])


def _build_trust(v: dict[str, Any], signer: str, path: str) -> Body:
    return Trust(subject_id=v["subject_id"], dimension=v["dimension"], value_milli=v["value"],
                 half_life_us=v.get("half_life_us"), source=v.get("source"))


def _flow(v: dict[str, Any], path: str, tokens: str, cached: str | None = None) -> Flow:
    if cached is not None and v[cached] > v[tokens]:
        raise ValidationError(f"{path}.{cached}", v[cached], f"is the part of {tokens} ({v[tokens]}) read from a "
                              "cache and cannot exceed it")
    return Flow(v[tokens], v[cached] if cached is not None else 0)


def _build_interaction(v: dict[str, Any], signer: str, path: str) -> Body:
    if v["responder_id"] == signer:
        raise ValidationError(f"{path}.responder_id", v["responder_id"], "is the signer: the requestor is the agent "
                              "that signs the event, and an agent cannot interact with itself")
    return Interaction(interaction_id=v["interaction_id"], requestor_id=signer, responder_id=v["responder_id"],
                       requestor_provider=v["requestor_provider"], requestor_model=v["requestor_model"],
                       responder_provider=v["responder_provider"], responder_model=v["responder_model"],
                       request_output=_flow(v, path, "request_output_tokens"),
                       request_input=_flow(v, path, "request_input_tokens", "request_input_cached_tokens"),
                       response_output=_flow(v, path, "response_output_tokens"),
                       response_input=_flow(v, path, "response_input_tokens", "response_input_cached_tokens"))


def _build_outcome(v: dict[str, Any], signer: str, path: str) -> Body:
    if v.get("subject_id") == signer:
        raise ValidationError(f"{path}.subject_id", signer, "is the signer: a score counts only as a grade of "
                              "another agent (one the signer gives itself is never counted)")
    return Outcome(task_id=v["task_id"], confidence_milli=v.get("confidence"), score_milli=v.get("score"),
                   success=v["success"], subject_id=v.get("subject_id"))


_LABEL = limits.MAX_LABEL_CHARS

KIND_SPECS: dict[str, KindSpec] = {s.kind: s for s in (
    KindSpec(
        "action",
        "An action token: one operation the agent performed, weighted; an LLM call when it names provider and model "
        "(then input_tokens and output_tokens are required). Token kinds: cache reads and writes are parts of "
        "input_tokens, 1-hour cache writes part of cache_write_tokens, reasoning part of output_tokens.",
        (
            _f("operation", "id", "What was done (e.g. llm.call, web.search).", "llm.call", required=True,
               chars=_LABEL),
            _f("cost_weight", "milli", "Relative cost of the operation (1 = a simple call), up to 3 decimal places; "
               "stored in thousandths (cost_weight_milli).", 1.5, hi=limits.MAX_COUNT, default=1),
            _f("result_hash", "id", "A hash committing to the result (the result itself stays off the ledger).",
               "sha256:9f2c", chars=_LABEL),
            _f("provider", "id", "LLM provider (openai, anthropic, ...): makes the action an LLM call.", "openai"),
            _f("model", "id", "The model as the provider's response reports it.", "gpt-4.1-2025-04-14"),
            _tokens("input_tokens", "Every prompt token, cache reads and cache writes included: OpenAI prompt_tokens"
                    " / input_tokens as reported; Anthropic input_tokens + cache_read_input_tokens + "
                    "cache_creation_input_tokens.", 12_000),
            _tokens("output_tokens", "Every generated token, reasoning included (OpenAI completion_tokens / "
                    "output_tokens; Anthropic output_tokens).", 900),
            _tokens("cache_read_tokens", "The part of input_tokens read from the prompt cache (OpenAI "
                    "cached_tokens; Anthropic cache_read_input_tokens).", 8_000, default=0),
            _tokens("cache_write_tokens", "The part of input_tokens written to the prompt cache (Anthropic "
                    "cache_creation_input_tokens); cache_read_tokens + cache_write_tokens <= input_tokens.", 0,
                    default=0),
            _tokens("reasoning_tokens", "The part of output_tokens spent reasoning (OpenAI reasoning_tokens); "
                    "<= output_tokens.", 300, default=0),
            _tokens("cache_write_1h_tokens", "The part of cache_write_tokens written with the one-hour lifetime "
                    "(Anthropic cache_creation.ephemeral_1h_input_tokens); <= cache_write_tokens.", 0, default=0),
            _f("service_tier", "tier", "The service tier the provider reported (batch, flex, priority, ...); '' or "
               "left out: standard.", "flex", chars=limits.MAX_SERVICE_TIER_CHARS, default=""),
            _f("provider_cost_micros", "int", "The cost the provider or a gateway reported, in micro-USD: kept beside "
               "the ledger's own price, never instead of it.", 41_000, hi=limits.MAX_MICROS),
        ),
        _build_action,
        needs={"provider": ("model", "input_tokens", "output_tokens"), "model": ("provider",),
               **{n: _LLM_NEEDS for n in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                                          "reasoning_tokens", "cache_write_1h_tokens", "service_tier",
                                          "provider_cost_micros")}},
        examples=(
            {"kind": "action", "operation": "web.search", "cost_weight": 1.5, "task": "task-42"},
            {"kind": "action", "operation": "llm.call", "provider": "anthropic", "model": "claude-sonnet-4-6",
             "input_tokens": 21_000, "output_tokens": 900, "cache_read_tokens": 8_000, "cache_write_tokens": 12_000,
             "idempotency_key": "msg_01ABC", "event_time": "2026-05-01T12:00:00.250Z",
             "labels": {"team": "growth"}},
        ),
    ),
    KindSpec(
        "data",
        "A data token: bytes the agent read and wrote (a file, a fetch, a tool's result).",
        (
            _f("bytes_read", "int", "Bytes read.", 52_000, hi=limits.MAX_DATA_BYTES, default=0),
            _f("bytes_written", "int", "Bytes written.", 0, hi=limits.MAX_DATA_BYTES, default=0),
            _f("source_hash", "id", "A hash naming what was read.", "sha256:ab12", chars=_LABEL),
            _f("destination_hash", "id", "A hash naming what was written.", "sha256:cd34", chars=_LABEL),
            _f("duration_us", "int", "How long it took, microseconds.", 120_000, hi=limits.MAX_DURATION_US,
               default=0),
        ),
        _build_data,
        examples=({"kind": "data", "bytes_read": 52_000, "source_hash": "sha256:ab12", "duration_us": 120_000},),
    ),
    KindSpec(
        "compute",
        "A compute token: CPU and GPU time slices on a node, peak memory, parallel jobs.",
        (
            _f("node_id", "id", "The node that computed.", "gpu-1", required=True),
            _f("cpu_time_slices", "int", "CPU time slices used.", 40, required=True, hi=limits.MAX_COUNT),
            _f("gpu_time_slices", "int", "GPU time slices used.", 8, hi=limits.MAX_COUNT, default=0),
            _f("peak_memory_mb", "int", "Peak memory, megabytes.", 2_048, hi=limits.MAX_COUNT, default=0),
            _f("parallel_jobs", "int", "Jobs run in parallel.", 4, lo=1, hi=limits.INT32_MAX, default=1),
        ),
        _build_compute,
        examples=({"kind": "compute", "node_id": "gpu-1", "cpu_time_slices": 40, "gpu_time_slices": 8},),
    ),
    KindSpec(
        "trust",
        "A trust token: what the signing agent says about another agent on one dimension (the reputation "
        "processor ignores what an agent says about itself).",
        (
            _f("subject_id", "id", "The agent it is about.", "writer", required=True),
            _f("dimension", "choice", "What it is about.", "accuracy", required=True, choices=TRUST_DIMENSIONS),
            _f("value", "milli", "The signed value (e.g. 0.8, -0.5), up to 3 decimal places; stored in thousandths "
               "(value_milli).", 0.8, required=True, lo=-limits.MAX_COUNT, hi=limits.MAX_COUNT),
            _f("half_life_us", "int", "How fast it decays, microseconds (left out: the dimension's default).",
               604_800_000_000, hi=limits.MAX_DURATION_US),
            _f("source", "id", "Where the judgement comes from.", "review", chars=_LABEL),
        ),
        _build_trust,
        examples=({"kind": "trust", "subject_id": "writer", "dimension": "accuracy", "value": 0.8},),
    ),
    KindSpec(
        "interaction",
        "An agent-to-agent call, signed by the requestor (the signing agent), with its four cost flows: the request "
        "the requestor generated (request_output_tokens) and the responder read (request_input_tokens, of which "
        "request_input_cached_tokens from a cache), the response the responder generated (response_output_tokens) "
        "and the requestor read (response_input_tokens, of which response_input_cached_tokens from a cache).",
        (
            _f("interaction_id", "id", "The call's id (the same on both sides).", "task7-call1", required=True),
            _f("responder_id", "id", "The agent that answered (not the signer).", "researcher", required=True),
            _f("requestor_provider", "id", "The requestor's LLM provider.", "anthropic", required=True),
            _f("requestor_model", "id", "The requestor's model.", "claude-sonnet-4-6", required=True),
            _f("responder_provider", "id", "The responder's LLM provider.", "openai", required=True),
            _f("responder_model", "id", "The responder's model.", "gpt-4.1", required=True),
            _tokens("request_output_tokens", "Flow 1: request tokens the requestor generated.", 1_500,
                    required=True),
            _tokens("request_input_tokens", "Flow 2: request tokens the responder read.", 1_500, required=True),
            _tokens("request_input_cached_tokens", "Flow 2: the part of request_input_tokens read from a cache.", 300,
                    default=0),
            _tokens("response_output_tokens", "Flow 3: response tokens the responder generated.", 4_000,
                    required=True),
            _tokens("response_input_tokens", "Flow 4: response tokens the requestor read.", 4_000, required=True),
            _tokens("response_input_cached_tokens", "Flow 4: the part of response_input_tokens read from a cache.", 0,
                    default=0),
        ),
        _build_interaction,
        examples=({"kind": "interaction", "interaction_id": "task7-call1", "responder_id": "researcher",
                   "requestor_provider": "anthropic", "requestor_model": "claude-sonnet-4-6",
                   "responder_provider": "openai", "responder_model": "gpt-4.1", "request_output_tokens": 1_500,
                   "request_input_tokens": 1_500, "request_input_cached_tokens": 300,
                   "response_output_tokens": 4_000, "response_input_tokens": 4_000},),
    ),
    KindSpec(
        "outcome",
        "A task's result: the signer's confidence and success, or a grade (score) of another agent's work. A score "
        "counts only from a signer the operator granted 'grader'; the service refuses one from any other signer.",
        (
            _f("task_id", "id", "The task this is the outcome of.", "task-42", required=True),
            _f("confidence", "milli", "The signer's confidence in its result, 0..1, up to 3 decimal places (stored "
               "as confidence_milli).", 0.9, hi=MILLI),
            _f("score", "milli", "A grade of subject_id's work, 0..1, up to 3 decimal places (stored as "
               "score_milli); needs subject_id.", 0.8, hi=MILLI),
            _f("success", "bool", "Whether the task succeeded.", True, default=True),
            _f("subject_id", "id", "The agent score grades (never the signer); needs score.", "writer"),
        ),
        _build_outcome,
        needs={"score": ("subject_id",), "subject_id": ("score",)},
        examples=({"kind": "outcome", "task_id": "task-42", "confidence": 0.9},
                  {"kind": "outcome", "task_id": "task-42", "score": 0.8, "subject_id": "writer"}),
    ),
)}
KINDS = tuple(KIND_SPECS)


# ---------------------------------------------------------------- field checks (JSON value -> checked value)


def _unicode(path: str, s: str) -> str:
    """A string that encodes as UTF-8: JSON's "\\ud800" decodes to a lone surrogate, which no log can store."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationError(path, s, f"holds a lone UTF-16 surrogate (U+{ord(s[e.start]):04X} at index {e.start}):"
                                       " not a character") from None
    return s


# Each check takes the field, the JSON path of the event and the value; the field's path is built only for an error
# (almost every value is good: a per-field f-string was a tenth of the conversion's time).


def _check_id(f: FieldSpec, at: str, v: Any) -> str:
    if type(v) is str and 0 < len(v) <= f.chars and v.isascii() and v.isprintable():
        return v
    path = f"{at}.{f.name}"
    return _unicode(path, check_str(path, v, f.chars))


def _check_tier(f: FieldSpec, at: str, v: Any) -> str:
    return "" if v == "" and type(v) is str else _check_id(f, at, v)


def _check_integer(path: str, v: Any, lo: int, hi: int) -> int:
    if type(v) is int:
        if lo <= v <= hi:
            return v
        raise ValidationError(path, v, f"must be between {lo:,} and {hi:,}")
    if isinstance(v, (float, Decimal)) and math.isfinite(v):
        raise ValidationError(path, v, "must be a JSON integer (no fraction, no exponent): counts are exact")
    return check_int(path, v, lo, hi)  # bool, NaN, infinity, strings: its message


def _check_int(f: FieldSpec, at: str, v: Any) -> int:
    if type(v) is int and f.lo <= v <= f.hi:
        return v
    return _check_integer(f"{at}.{f.name}", v, f.lo, f.hi)


def _check_milli(f: FieldSpec, at: str, v: Any) -> int:
    """A decimal number as exact thousandths, within [lo, hi] thousandths."""
    path = f"{at}.{f.name}"
    if type(v) is bool or not isinstance(v, (int, float, Decimal)):
        raise ValidationError(path, v, f"must be a number, got {_json_type(v)}")
    if isinstance(v, Decimal) and v.is_finite() and v.copy_abs() > Decimal(max(-f.lo, f.hi)) / MILLI:
        # out of range, and 1e999999999 read as a Decimal is refused before int() builds a billion-digit number
        raise ValidationError(path, v, f"must be between {_number(f.lo)} and {_number(f.hi)}")
    m = milli(path, v)
    if not f.lo <= m <= f.hi:
        raise ValidationError(path, v, f"must be between {_number(f.lo)} and {_number(f.hi)}")
    return m


def _check_bool(f: FieldSpec, at: str, v: Any) -> bool:
    if type(v) is not bool:
        raise ValidationError(f"{at}.{f.name}", v, f"must be true or false, got {_json_type(v)}")
    return v


def _check_choice(f: FieldSpec, at: str, v: Any) -> str:
    if type(v) is str and v in f.choices:
        return v
    return check_choice(f"{at}.{f.name}", v, f.choices)


def _check_time(f: FieldSpec, at: str, v: Any) -> int:
    return parse_rfc3339(v, f"{at}.{f.name}")


def _check_labels(f: FieldSpec, at: str, v: Any) -> dict[str, str]:
    path = f"{at}.{f.name}"
    if type(v) is not dict:
        raise ValidationError(path, v, f"must be an object of string values, got {_json_type(v)}")
    if len(v) > CLIENT_LABELS:
        raise ValidationError(path, len(v), f"must have at most {CLIENT_LABELS} entries ({limits.MAX_LABELS} less "
                              f"the {SERVICE_LABEL_SLOTS} the service adds)")
    for k, x in v.items():
        key = _unicode(path, check_str(path, k, limits.MAX_ID_CHARS))  # a key: the object's path, the key as value
        if key.startswith(SERVICE_LABEL_PREFIX):
            raise ValidationError(path, key, f"label keys starting with '{SERVICE_LABEL_PREFIX}' are the service's "
                                  "own (who ingested the event)")
        if type(x) is str and x.isascii() and len(x) <= limits.MAX_LABEL_CHARS and "\x00" not in x:
            continue
        where = f"{path}.{k}" if k.isidentifier() else f"{path}[{json.dumps(k)}]"
        if type(x) is not str:
            raise ValidationError(where, x, f"must be a string, got {_json_type(x)}")
        _unicode(where, check_str(where, x, limits.MAX_LABEL_CHARS, allow_empty=True, text=True))
    return v


_CHECKS: dict[str, Callable[[FieldSpec, str, Any], Any]] = {
    "id": _check_id, "tier": _check_tier, "int": _check_int, "milli": _check_milli,
    "bool": _check_bool, "choice": _check_choice, "time": _check_time, "labels": _check_labels,
}


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if type(v) is bool:
        return "a boolean"
    if isinstance(v, (int, float, Decimal)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _number(thousandths: int) -> str:
    """Thousandths as the number a client writes (1500 -> 1.5)."""
    return str(Decimal(thousandths) / MILLI).rstrip("0").rstrip(".") if thousandths % MILLI else str(
        thousandths // MILLI)


def _at(path: str, e: ValidationError) -> ValidationError:
    """A body constructor's error (``usage.cache_read_tokens``) named as the JSON field (``events[3]....``)."""
    name = e.field.removeprefix("usage.")
    return ValidationError(f"{path}.{name}", e.value, e.reason)


# ---------------------------------------------------------------- the converter


@dataclass(frozen=True)
class _Compiled:
    spec: KindSpec
    fields: tuple[FieldSpec, ...]  # the kind's, then the common ones
    by_name: dict[str, tuple[FieldSpec, Callable[[FieldSpec, str, Any], Any]]]  # each field and its check
    required: tuple[str, ...]
    required_set: frozenset[str]
    defaults: dict[str, Any]  # checked values of the fields with a default
    needs: dict[str, tuple[str, ...]]
    needs_keys: frozenset[str]


def _compile(spec: KindSpec) -> _Compiled:
    fields_ = spec.fields + COMMON_FIELDS
    defaults = {f.name: _CHECKS[f.type](f, f.name, f.default) for f in fields_ if f.default is not None}
    required = tuple(f.name for f in fields_ if f.required)
    return _Compiled(spec, fields_, {f.name: (f, _CHECKS[f.type]) for f in fields_}, required, frozenset(required),
                     defaults, dict(spec.needs), frozenset(spec.needs))


_COMPILED = {k: _compile(s) for k, s in KIND_SPECS.items()}
# the most one label can add to an encoded event: key and value at their longest, 4 bytes a character, and their
# two length prefixes (at most 4 bytes each here)
_LABEL_BYTES = 4 * (limits.MAX_ID_CHARS + limits.MAX_LABEL_CHARS) + 8
_ContextKey = tuple[str | None, str | None, str | None, str | None, str | None, tuple[tuple[str, str], ...]]


def event_from_json(obj: Any, *, signer: str, path: str = "event",
                    service_labels: Mapping[str, str] | None = None,
                    _contexts: dict[_ContextKey, Context] | None = None) -> JsonEvent:
    """One JSON object (already parsed) as a ``JsonEvent`` signed by ``signer``. ``service_labels`` (keys under
    ``SERVICE_LABEL_PREFIX``, at most ``SERVICE_LABEL_SLOTS``) are added to its context labels. Raises
    ``ValidationError`` naming ``<path>.<field>`` (see the module doc for every rule)."""
    if type(obj) is not dict:
        raise ValidationError(path, obj, f"must be a JSON object (one event), got {_json_type(obj)}")
    kind = obj.get("kind", _ABSENT)
    c = _COMPILED.get(kind) if type(kind) is str else None
    if c is None:
        raise ValidationError(f"{path}.kind", None if kind is _ABSENT else kind,
                              "is required" if kind is _ABSENT else f"must be one of {', '.join(KINDS)}")
    values = _values(c, obj, path, kind)
    t = values.get("event_time")
    if "event_time_us" in values:
        if t is not None:
            raise ValidationError(f"{path}.event_time_us", values["event_time_us"],
                                  "give event_time or event_time_us, not both")
        t = values["event_time_us"]
    body = c.spec.build(values, signer, path)
    ctx = _context(values, service_labels, _contexts)
    key = values.get("idempotency_key")
    if "labels" in values:
        _check_size(path, signer, body, ctx, t, key)
    return JsonEvent(body, ctx, t, key)


def _values(c: _Compiled, obj: dict[str, Any], path: str, kind: str) -> dict[str, Any]:
    """Every field of ``obj`` checked (defaults for those left out); unknown, null, missing and dependent fields
    refused."""
    values = dict(c.defaults)
    by_name = c.by_name
    for name, v in obj.items():
        got = by_name.get(name)
        if got is None:
            if name == "kind":
                continue
            raise ValidationError(f"{path}.{name}", v, f"is not a field of kind {kind}; its fields: kind, "
                                  + ", ".join(f.name for f in c.fields))
        if v is None:
            raise ValidationError(f"{path}.{name}", None, "must not be null (leave the field out instead)")
        values[name] = got[1](got[0], path, v)
    if not c.required_set <= obj.keys():
        missing = next(n for n in c.required if n not in obj)
        raise ValidationError(f"{path}.{missing}", None, f"is required for kind {kind}")
    if not c.needs_keys.isdisjoint(obj.keys()):
        for name, needed in c.needs.items():  # in the table's order: the same error every time
            if name in obj:
                for n in needed:
                    if n not in obj:
                        raise ValidationError(f"{path}.{n}", None, f"is required when {name} is given")
    return values


def _context(values: dict[str, Any], service_labels: Mapping[str, str] | None,
             cache: dict[_ContextKey, Context] | None) -> Context:
    labels = values.get("labels")
    if service_labels:
        labels = {**labels, **service_labels} if labels else service_labels
    key: _ContextKey = (values.get("org"), values.get("project"), values.get("task"), values.get("stage"),
                        values.get("run"), tuple(sorted(labels.items())) if labels else ())
    got = None if cache is None else cache.get(key)
    if got is None:
        got = Context(org=key[0], project=key[1], task=key[2], stage=key[3], run=key[4], labels=key[5])
        if cache is not None:
            cache[key] = got
    return got


def _check_size(path: str, signer: str, body: Body, ctx: Context, t: int | None, key: str | None) -> None:
    """Refuse an event whose labels make it larger than ``limits.MAX_EVENT_BYTES`` encoded (the emitter would refuse
    it at emit, after the events before it in the list). Measured only when the labels could: it costs an encode."""
    if UNLABELLED_EVENT_BYTES + len(ctx.labels) * _LABEL_BYTES <= limits.MAX_EVENT_BYTES:
        return  # even at their longest these labels fit (up to 38 of them): no need to count
    chars = sum(len(k) + len(v) for k, v in ctx.labels)
    if UNLABELLED_EVENT_BYTES + 4 * chars + 8 * len(ctx.labels) <= limits.MAX_EVENT_BYTES:
        return
    content = codec.encode_content(limits.MAX_EVENT_TIME_US if t is None else t, ctx, body)
    size = len(codec.assemble_event(event_id="0" * limits.EVENT_ID_HEX_CHARS, signer_id=signer, seq=limits.INT64_MAX,
                                    prev_hash=GENESIS_HASH, idempotency_key=key, content=content))
    if size > limits.MAX_EVENT_BYTES:
        raise ValidationError(f"{path}.labels", f"<{chars:,} characters>", f"make the event {size:,} bytes encoded, "
                              f"more than limits.MAX_EVENT_BYTES ({limits.MAX_EVENT_BYTES:,}): labels are tags, "
                              "not a payload")


def events_from_json(items: Any, *, signer: str, path: str = "events",
                     service_labels: Mapping[str, str] | None = None) -> list[JsonEvent]:
    """A JSON array of events, all converted or none (the first bad one raises, named ``<path>[i].<field>``).
    One ``idempotency_key`` given twice must come with the same content (the emitter returns the first one's id
    for the second: a duplicate); with other content it is refused here, before anything is emitted."""
    if type(items) is not list:
        raise ValidationError(path, items, f"must be an array of events, got {_json_type(items)}")
    if service_labels:
        bad = [k for k in service_labels if not k.startswith(SERVICE_LABEL_PREFIX)]
        if bad or len(service_labels) > SERVICE_LABEL_SLOTS:
            raise ValueError(f"service labels are at most {SERVICE_LABEL_SLOTS} keys under {SERVICE_LABEL_PREFIX}: "
                             f"{sorted(service_labels)}")
    contexts: dict[_ContextKey, Context] = {}
    keyed: dict[str, int] = {}
    out: list[JsonEvent] = []
    for i, obj in enumerate(items):
        ev = event_from_json(obj, signer=signer, path=f"{path}[{i}]", service_labels=service_labels,
                             _contexts=contexts)
        if ev.idempotency_key is not None:
            first = keyed.setdefault(ev.idempotency_key, i)
            if first != i and (out[first].body, out[first].context) != (ev.body, ev.context):
                raise ValidationError(f"{path}[{i}].idempotency_key", ev.idempotency_key,
                                      f"repeats the key of {path}[{first}] with other content: one key names one "
                                      "event")
        out.append(ev)
    return out


# ---------------------------------------------------------------- the JSON Schemas


def _field_schema(f: FieldSpec) -> dict[str, Any]:
    s: dict[str, Any]
    if f.type in ("id", "tier"):
        s = {"type": "string", "minLength": 0 if f.type == "tier" else 1, "maxLength": f.chars,
             "pattern": NAME_PATTERN}
    elif f.type == "int":
        s = {"type": "integer", "minimum": f.lo, "maximum": f.hi}
    elif f.type == "milli":
        s = {"type": "number", "minimum": _json_number(f.lo), "maximum": _json_number(f.hi), "multipleOf": 0.001}
    elif f.type == "bool":
        s = {"type": "boolean"}
    elif f.type == "choice":
        s = {"type": "string", "enum": list(f.choices)}
    elif f.type == "time":
        s = {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN}
    elif f.type == "labels":
        s = {"type": "object", "maxProperties": CLIENT_LABELS,
             "propertyNames": {"minLength": 1, "maxLength": limits.MAX_ID_CHARS, "pattern": NAME_PATTERN,
                               "not": {"pattern": "^" + re.escape(SERVICE_LABEL_PREFIX)}},
             "additionalProperties": {"type": "string", "maxLength": limits.MAX_LABEL_CHARS,
                                      "pattern": TEXT_PATTERN}}
    else:  # pragma: no cover - the table names only the types above
        raise AssertionError(f.type)
    s["description"] = f.description
    if f.default is not None:
        s["default"] = f.default
    s["examples"] = [f.example]
    return s


def _json_number(thousandths: int) -> int | float:
    return thousandths // MILLI if thousandths % MILLI == 0 else thousandths / MILLI


_STRICTER = ("The service also refuses what a schema cannot state: token counts whose parts exceed their whole "
             "(cache_read_tokens + cache_write_tokens > input_tokens, cache_write_1h_tokens > cache_write_tokens, "
             "reasoning_tokens > output_tokens, a cached part of a flow above the flow), the signing agent as an "
             "interaction's responder_id or an outcome's subject_id, an integer written with a fraction or exponent "
             "(1.0, 1e3: JSON Schema's integer takes them, counts here are exact), a date-time that is no date (Feb "
             "30, a leap second) or outside 2000..2200, a string holding a lone UTF-16 surrogate, labels that make "
             "the event larger than 256 KiB encoded, and one idempotency_key twice in a request with other content.")


def _kind_schema(spec: KindSpec) -> dict[str, Any]:
    fields_ = spec.fields + COMMON_FIELDS
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_ID_BASE}{spec.kind}.json",
        "$comment": _STRICTER,
        "title": f"{spec.kind} event",
        "description": spec.description,
        "type": "object",
        "properties": {"kind": {"const": spec.kind, "description": "The event kind."},
                       **{f.name: _field_schema(f) for f in fields_}},
        "required": ["kind", *(f.name for f in fields_ if f.required)],
        "additionalProperties": False,
        "dependentRequired": {k: list(v) for k, v in spec.needs.items()},
        "not": {"required": ["event_time", "event_time_us"],
                "description": "event_time and event_time_us are two ways to give one time: not both."},
        "examples": [dict(e) for e in spec.examples],
    }


_SCHEMAS = {k: _kind_schema(s) for k, s in KIND_SPECS.items()}


def schemas() -> dict[str, dict[str, Any]]:
    """Each kind's JSON Schema (draft 2020-12), a fresh copy: what ``event_from_json`` accepts, except the
    cross-field rules it states in its descriptions (see the module doc)."""
    return copy.deepcopy(_SCHEMAS)


def schema(kind: str) -> dict[str, Any] | None:
    """One kind's JSON Schema (a fresh copy), or None for a kind this API does not take."""
    s = _SCHEMAS.get(kind)
    return None if s is None else copy.deepcopy(s)


__all__ = [
    "CLIENT_LABELS",
    "COMMON_FIELDS",
    "KINDS",
    "KIND_SPECS",
    "SERVICE_LABEL_PREFIX",
    "SERVICE_LABEL_SLOTS",
    "FieldSpec",
    "JsonEvent",
    "KindSpec",
    "event_from_json",
    "events_from_json",
    "parse_rfc3339",
    "schema",
    "schemas",
]
