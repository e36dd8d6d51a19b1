"""The typed, frozen event model: one dataclass per event kind, the context, and the envelope.

Every constructor validates its fields and raises ``ValidationError(field, value, reason)`` on the
first bad one, so an invalid event cannot exist in memory, whether it came from the SDK, the CLI or
the log. Field names equal the Avro field names in ``schemas/`` (the wire format is defined there;
``ledger/wire/codec.py`` maps between the two).

Units are in the names: ``*_us`` microseconds, ``*_milli`` thousandths, ``*_micros`` micro-USD,
``*_micros_per_mtok`` micro-USD per million tokens. There are no floats in events: the same event
always has the same bytes.

Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

from ledger import limits
from ledger.errors import ValidationError
from ledger.wire import vocab

# the closed vocabularies, as the plain strings fields are checked against (defined in ledger.wire.vocab)
TRUST_DIMENSIONS = vocab.TRUST_DIMENSION_VALUES
ROLES = vocab.ROLE_VALUES
BUDGET_SCOPES = vocab.SCOPE_LEVEL_VALUES
BUDGET_KINDS = vocab.BUDGET_KIND_VALUES
HARD_LIMIT_ACTIONS = vocab.HARD_LIMIT_ACTION_VALUES
SETTLEMENT_TIERS = vocab.SETTLEMENT_TIER_VALUES
ALLOCATION_METHODS = vocab.ALLOCATION_METHOD_VALUES
RESERVATION_ACTIONS = vocab.RESERVATION_ACTION_VALUES
TRANSFER_DIRECTIONS = vocab.TRANSFER_DIRECTION_VALUES
SETTLEMENT_STATUSES = vocab.SETTLEMENT_STATUS_VALUES
CAPABILITIES = vocab.CAPABILITY_VALUES
WEBHOOK_EVENTS = vocab.WEBHOOK_EVENT_VALUES
DEPOSIT_ACTIONS = vocab.DEPOSIT_ACTION_VALUES
DEPOSIT_TIERS = vocab.DEPOSIT_TIER_VALUES
DELIVERY_OUTCOMES = vocab.DELIVERY_OUTCOME_VALUES
WEBHOOK_SCHEMES = ("http", "https")  # a sink's URL scheme
HTTP_STATUS_MAX = 599  # the largest HTTP status code (RFC 9110 defines 100-599); 0 = no answer


# ---------------------------------------------------------------- field checks (shared, cheap)


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """An int in [lo, hi]. bool, float (even 3.0), NaN and strings are refused: counts are exact."""
    if type(value) is not int:
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            raise ValidationError(name, value, "must be a finite integer, not NaN or infinity")
        raise ValidationError(name, value, f"must be an integer, got {type(value).__name__}")
    if value < lo or value > hi:
        raise ValidationError(name, value, f"must be between {lo:,} and {hi:,}")
    return value


# Characters a name or id may not hold: C0 controls (newline, ESC...), DEL, C1 controls, and the invisible
# formatting characters that reorder or hide text on a terminal (bidi embeddings, overrides and isolates,
# marks, zero-width characters, line/paragraph separators, BOM). Without this, `alice\n` is a second
# "alice", and an id can rewrite the line it is printed on.
_NAME_FORBIDDEN = ("\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff")
_NAME_RE = re.compile(f"[^{_NAME_FORBIDDEN}]*")
_NAME_BAD_CHAR = re.compile(f"[{_NAME_FORBIDDEN}]")


def check_str(name: str, value: Any, max_chars: int = limits.MAX_ID_CHARS, *, allow_empty: bool = False,
              text: bool = False) -> str:
    """A string field. Names and ids (the default) must match a full-match rule: no control or invisible
    formatting characters anywhere (``re.fullmatch``: a trailing newline is refused too). ``text=True``
    marks free text (reasons, JSON documents, label values): only NUL is refused; displays escape the rest."""
    # almost every value is a short printable-ASCII name: it holds no NUL, control or invisible character
    if type(value) is str and 0 < len(value) <= max_chars and value.isascii() and value.isprintable():
        return value
    if not isinstance(value, str):
        raise ValidationError(name, value, f"must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ValidationError(name, value, "must not be empty")
    if len(value) > max_chars:
        raise ValidationError(name, value, f"must be at most {max_chars} characters, got {len(value)}")
    if "\x00" in value:
        raise ValidationError(name, value, "must not contain NUL characters")
    if not text and _NAME_RE.fullmatch(value) is None:
        bad = _NAME_BAD_CHAR.search(value)
        assert bad is not None  # the full match failed, so some character is one of the forbidden ones
        raise ValidationError(name, value, f"must not contain control or invisible formatting characters "
                              f"(U+{ord(bad.group()):04X} at index {bad.start()})")
    return value


def check_opt_str(name: str, value: Any, max_chars: int = limits.MAX_ID_CHARS) -> str | None:
    return None if value is None else check_str(name, value, max_chars)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    # only strings are among the choices, so the isinstance test refuses nothing the membership test took
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(name, value, f"must be one of {', '.join(choices)}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise ValidationError(name, value, "must be true or false")
    return value


def check_bytes(name: str, value: Any, length: int | None = None) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise ValidationError(name, value, f"must be bytes, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise ValidationError(name, value, f"must be exactly {length} bytes, got {len(value)}")
    return bytes(value)


def check_map(name: str, value: Any) -> tuple[tuple[str, str], ...]:
    """A str→str mapping, stored as key-sorted pairs so equal maps are equal values and encode alike."""
    if isinstance(value, tuple):
        value = dict(value)
    if not isinstance(value, Mapping):
        raise ValidationError(name, value, "must be a mapping of strings to strings")
    if len(value) > limits.MAX_LABELS:
        raise ValidationError(name, len(value), f"must have at most {limits.MAX_LABELS} entries")
    for k, v in value.items():
        check_str(f"{name}.key", k, limits.MAX_ID_CHARS)
        check_str(f"{name}[{k}]", v, limits.MAX_LABEL_CHARS, allow_empty=True, text=True)
    return tuple(sorted(value.items()))


def check_webhook_url(name: str, value: Any) -> str:
    """An absolute http(s) URL with a host, no credentials (they would be on the log for every reader) and no
    fragment (never sent); no whitespace or control characters."""
    check_str(name, value, limits.MAX_WEBHOOK_URL_CHARS)
    if any(ch.isspace() for ch in value):
        raise ValidationError(name, value, "must not contain whitespace")
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port  # a port that is not a number in 0..65535 raises here
    except ValueError as e:
        raise ValidationError(name, value, f"is not a valid URL: {e}") from None
    if parts.scheme not in WEBHOOK_SCHEMES:
        raise ValidationError(name, value, f"must be an http or https URL, not {parts.scheme or 'a relative one'}")
    if not parts.hostname:
        raise ValidationError(name, value, "must name a host (http://host[:port]/path)")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(name, value, "must not carry credentials (user:password@): every reader of the log "
                              "would see them; authenticate with the signing secret")
    if parts.fragment or value.endswith("#"):
        raise ValidationError(name, value, "must not have a #fragment (it is never sent)")
    if port == 0:
        raise ValidationError(name, value, "must not name port 0")
    return str(value)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# ---------------------------------------------------------------- shared records


@dataclass(frozen=True, slots=True)
class Context:
    """Where an event happened: hierarchy labels (org > project > task > stage; run) and free labels; and ``agent``,
    the agent that made the call when the signer records it on that agent's behalf (an importer: only a signer with
    a backfill grant may name another agent, ``ledger.integrity.keyring``); None = the signer itself."""

    org: str | None = None
    project: str | None = None
    task: str | None = None
    stage: str | None = None
    run: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    agent: str | None = None

    def __post_init__(self) -> None:
        for n in ("org", "project", "task", "stage", "run", "agent"):
            check_opt_str(f"context.{n}", getattr(self, n))
        _set(self, "labels", check_map("context.labels", self.labels))


EMPTY_CONTEXT = Context()


@dataclass(frozen=True, slots=True)
class LlmUsage:
    """One LLM call. cache_read + cache_write are parts of input_tokens; reasoning is part of output; the 1-hour
    cache writes are part of cache_write. ``service_tier`` is what the provider reported ('' = standard), and
    ``provider_cost_micros`` the cost it (or a gateway) reported, kept beside ours, never instead of it."""

    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    service_tier: str = ""
    provider_cost_micros: int | None = None

    def __post_init__(self) -> None:
        check_str("usage.provider", self.provider)
        check_str("usage.model", self.model)
        for n in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
                  "cache_write_1h_tokens"):
            check_int(f"usage.{n}", getattr(self, n), 0, limits.MAX_TOKENS)
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValidationError(
                "usage.cache_read_tokens", self.cache_read_tokens,
                f"cache read ({self.cache_read_tokens}) + cache write ({self.cache_write_tokens}) tokens are parts of "
                f"input_tokens ({self.input_tokens}) and cannot exceed it")
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValidationError(
                "usage.cache_write_1h_tokens", self.cache_write_1h_tokens,
                f"1-hour cache writes are part of cache_write_tokens ({self.cache_write_tokens}) and cannot exceed it")
        if self.reasoning_tokens > self.output_tokens:
            raise ValidationError(
                "usage.reasoning_tokens", self.reasoning_tokens,
                f"reasoning tokens are part of output_tokens ({self.output_tokens}) and cannot exceed it")
        if self.service_tier:
            check_str("usage.service_tier", self.service_tier, limits.MAX_SERVICE_TIER_CHARS)
        if self.provider_cost_micros is not None:
            check_int("usage.provider_cost_micros", self.provider_cost_micros, 0, limits.MAX_MICROS)


@dataclass(frozen=True, slots=True)
class Flow:
    """Tokens of one cost flow; cached_tokens is the part of tokens read from a cache."""

    tokens: int
    cached_tokens: int = 0

    def __post_init__(self) -> None:
        check_int("flow.tokens", self.tokens, 0, limits.MAX_TOKENS)
        check_int("flow.cached_tokens", self.cached_tokens, 0, limits.MAX_TOKENS)
        if self.cached_tokens > self.tokens:
            raise ValidationError("flow.cached_tokens", self.cached_tokens,
                                  f"cached tokens are part of the flow's {self.tokens} tokens and cannot exceed them")


@dataclass(frozen=True, slots=True)
class Cosignature:
    key_id: str
    signature: bytes

    def __post_init__(self) -> None:
        check_str("cosignature.key_id", self.key_id)
        _set(self, "signature", check_bytes("cosignature.signature", self.signature, limits.SIGNATURE_BYTES))


# ---------------------------------------------------------------- event bodies


class Body:
    """Base of event bodies. ``KIND`` is the CLI/SQL name, ``AVRO`` the Avro record name."""

    KIND: ClassVar[str]
    AVRO: ClassVar[str]
    CONTROL: ClassVar[bool] = False  # control events must be signed by an operator key
    DERIVED: ClassVar[bool] = False  # derived events must be signed by a processor key
    NESTED: ClassVar[dict[str, type]] = {}
    MAPS: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True, slots=True)
class Action(Body):
    """An action token (ACT): one operation; cost weight in thousandths (1000 = 1.0)."""

    KIND: ClassVar[str] = "action"
    AVRO: ClassVar[str] = "tokenledger.Action"
    NESTED: ClassVar[dict[str, type]] = {"usage": LlmUsage}

    operation: str
    cost_weight_milli: int = 1000
    result_hash: str | None = None
    usage: LlmUsage | None = None

    def __post_init__(self) -> None:
        check_str("operation", self.operation, limits.MAX_LABEL_CHARS)
        check_int("cost_weight_milli", self.cost_weight_milli, 0, limits.MAX_COUNT)
        check_opt_str("result_hash", self.result_hash, limits.MAX_LABEL_CHARS)
        if self.usage is not None and not isinstance(self.usage, LlmUsage):
            raise ValidationError("usage", self.usage, "must be an LlmUsage")


@dataclass(frozen=True, slots=True)
class Data(Body):
    """A data token (DAT): bytes read and written, source/destination hashes, duration."""

    KIND: ClassVar[str] = "data"
    AVRO: ClassVar[str] = "tokenledger.Data"

    bytes_read: int
    bytes_written: int
    source_hash: str | None = None
    destination_hash: str | None = None
    duration_us: int = 0

    def __post_init__(self) -> None:
        check_int("bytes_read", self.bytes_read, 0, limits.MAX_DATA_BYTES)
        check_int("bytes_written", self.bytes_written, 0, limits.MAX_DATA_BYTES)
        check_opt_str("source_hash", self.source_hash, limits.MAX_LABEL_CHARS)
        check_opt_str("destination_hash", self.destination_hash, limits.MAX_LABEL_CHARS)
        check_int("duration_us", self.duration_us, 0, limits.MAX_DURATION_US)


@dataclass(frozen=True, slots=True)
class Compute(Body):
    """A compute token (CPT): CPU/GPU time slices, peak memory, parallel jobs on a node."""

    KIND: ClassVar[str] = "compute"
    AVRO: ClassVar[str] = "tokenledger.Compute"

    node_id: str
    cpu_time_slices: int
    gpu_time_slices: int = 0
    peak_memory_mb: int = 0
    parallel_jobs: int = 1

    def __post_init__(self) -> None:
        check_str("node_id", self.node_id)
        check_int("cpu_time_slices", self.cpu_time_slices, 0, limits.MAX_COUNT)
        check_int("gpu_time_slices", self.gpu_time_slices, 0, limits.MAX_COUNT)
        check_int("peak_memory_mb", self.peak_memory_mb, 0, limits.MAX_COUNT)
        check_int("parallel_jobs", self.parallel_jobs, 1, limits.INT32_MAX)


@dataclass(frozen=True, slots=True)
class Trust(Body):
    """A trust token (TRT): the signer says something about ``subject_id`` on one dimension."""

    KIND: ClassVar[str] = "trust"
    AVRO: ClassVar[str] = "tokenledger.Trust"

    subject_id: str
    dimension: str
    value_milli: int
    half_life_us: int | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        check_str("subject_id", self.subject_id)
        check_choice("dimension", self.dimension, TRUST_DIMENSIONS)
        check_int("value_milli", self.value_milli, -limits.MAX_COUNT, limits.MAX_COUNT)
        if self.half_life_us is not None:
            check_int("half_life_us", self.half_life_us, 0, limits.MAX_DURATION_US)
        check_opt_str("source", self.source, limits.MAX_LABEL_CHARS)


@dataclass(frozen=True, slots=True)
class Interaction(Body):
    """One agent-to-agent call with the four cost flows (see schemas/interaction.v1.avsc)."""

    KIND: ClassVar[str] = "interaction"
    AVRO: ClassVar[str] = "tokenledger.Interaction"
    NESTED: ClassVar[dict[str, type]] = {
        "request_output": Flow, "request_input": Flow, "response_output": Flow, "response_input": Flow,
        "cosignature": Cosignature,
    }

    interaction_id: str
    requestor_id: str
    responder_id: str
    requestor_provider: str
    requestor_model: str
    responder_provider: str
    responder_model: str
    request_output: Flow
    request_input: Flow
    response_output: Flow
    response_input: Flow
    cosignature: Cosignature | None = None

    def __post_init__(self) -> None:
        for n in ("interaction_id", "requestor_id", "responder_id", "requestor_provider", "requestor_model",
                  "responder_provider", "responder_model"):
            check_str(n, getattr(self, n))
        if self.requestor_id == self.responder_id:
            raise ValidationError("responder_id", self.responder_id, "an agent cannot interact with itself")
        for n in ("request_output", "request_input", "response_output", "response_input"):
            if not isinstance(getattr(self, n), Flow):
                raise ValidationError(n, getattr(self, n), "must be a Flow")
        for n in ("request_output", "response_output"):
            if getattr(self, n).cached_tokens:
                raise ValidationError(f"{n}.cached_tokens", getattr(self, n).cached_tokens,
                                      "generated (output) tokens cannot come from a cache")
        if self.cosignature is not None and not isinstance(self.cosignature, Cosignature):
            raise ValidationError("cosignature", self.cosignature, "must be a Cosignature")


@dataclass(frozen=True, slots=True)
class AgentRegistered(Body):
    """Control: an operator registers a signer and its Ed25519 public key."""

    KIND: ClassVar[str] = "agent_registered"
    AVRO: ClassVar[str] = "tokenledger.AgentRegistered"
    CONTROL: ClassVar[bool] = True
    MAPS: ClassVar[tuple[str, ...]] = ("attributes",)

    agent_id: str
    key_id: str
    public_key: bytes
    role: str = "agent"
    priority: int = 1
    org: str | None = None
    project: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_str("agent_id", self.agent_id)
        check_str("key_id", self.key_id)
        _set(self, "public_key", check_bytes("public_key", self.public_key, limits.PUBLIC_KEY_BYTES))
        check_choice("role", self.role, ROLES)
        check_int("priority", self.priority, 0, 1_000_000)
        check_opt_str("org", self.org)
        check_opt_str("project", self.project)
        _set(self, "attributes", check_map("attributes", self.attributes))


@dataclass(frozen=True, slots=True)
class KeyRotated(Body):
    """Control: a signer's key is replaced by a new one."""

    KIND: ClassVar[str] = "key_rotated"
    AVRO: ClassVar[str] = "tokenledger.KeyRotated"
    CONTROL: ClassVar[bool] = True

    agent_id: str
    old_key_id: str
    new_key_id: str
    new_public_key: bytes

    def __post_init__(self) -> None:
        check_str("agent_id", self.agent_id)
        check_str("old_key_id", self.old_key_id)
        check_str("new_key_id", self.new_key_id)
        if self.old_key_id == self.new_key_id:
            raise ValidationError("new_key_id", self.new_key_id, "must differ from old_key_id")
        _set(self, "new_public_key", check_bytes("new_public_key", self.new_public_key, limits.PUBLIC_KEY_BYTES))


@dataclass(frozen=True, slots=True)
class KeyRevoked(Body):
    """Control: a key is revoked; it signs nothing after this event."""

    KIND: ClassVar[str] = "key_revoked"
    AVRO: ClassVar[str] = "tokenledger.KeyRevoked"
    CONTROL: ClassVar[bool] = True

    agent_id: str
    key_id: str
    reason: str = ""

    def __post_init__(self) -> None:
        check_str("agent_id", self.agent_id)
        check_str("key_id", self.key_id)
        check_str("reason", self.reason, limits.MAX_LABEL_CHARS, allow_empty=True, text=True)


@dataclass(frozen=True, slots=True)
class BudgetPolicy(Body):
    """Control: a budget for one scope and kind, with its overage policy (defaults from the seeds)."""

    KIND: ClassVar[str] = "budget_policy"
    AVRO: ClassVar[str] = "tokenledger.BudgetPolicy"
    CONTROL: ClassVar[bool] = True

    scope: str
    scope_id: str
    budget_kind: str
    allocation: int
    reset_interval_us: int
    soft_limit_pct: int = 80
    hard_limit_pct: int = 100
    throttle_at_soft: bool = True
    suspend_at_hard: bool = True
    emergency_reserve_pct: int = 10
    hard_limit_action: str = "deny"
    min_reserve: int = 0
    priority: int = 1
    confidence_threshold_milli: int | None = None
    effective_from_us: int = 0

    def __post_init__(self) -> None:
        check_choice("scope", self.scope, BUDGET_SCOPES)
        check_str("scope_id", self.scope_id)
        check_choice("budget_kind", self.budget_kind, BUDGET_KINDS)
        check_int("allocation", self.allocation, 0, limits.MAX_MICROS)
        check_int("reset_interval_us", self.reset_interval_us, 0, limits.MAX_DURATION_US)
        check_int("soft_limit_pct", self.soft_limit_pct, 0, 1000)
        check_int("hard_limit_pct", self.hard_limit_pct, 0, 1000)
        if self.soft_limit_pct > self.hard_limit_pct:
            raise ValidationError("soft_limit_pct", self.soft_limit_pct,
                                  f"must not exceed hard_limit_pct ({self.hard_limit_pct})")
        check_bool("throttle_at_soft", self.throttle_at_soft)
        check_bool("suspend_at_hard", self.suspend_at_hard)
        check_int("emergency_reserve_pct", self.emergency_reserve_pct, 0, 100)
        check_choice("hard_limit_action", self.hard_limit_action, HARD_LIMIT_ACTIONS)
        check_int("min_reserve", self.min_reserve, 0, limits.MAX_MICROS)
        check_int("priority", self.priority, 0, 1_000_000)
        if self.confidence_threshold_milli is not None:
            check_int("confidence_threshold_milli", self.confidence_threshold_milli, 0, 1000)
        check_int("effective_from_us", self.effective_from_us, 0, limits.MAX_EVENT_TIME_US)


@dataclass(frozen=True, slots=True)
class PriceSet(Body):
    """Control: a price-book line (micro-USD per million tokens) for one provider, model, service tier and
    prompt-size tier, in force from an event time."""

    KIND: ClassVar[str] = "price_set"
    AVRO: ClassVar[str] = "tokenledger.PriceSet"
    CONTROL: ClassVar[bool] = True

    provider: str
    model: str
    input_micros_per_mtok: int
    output_micros_per_mtok: int
    cache_read_micros_per_mtok: int
    cache_write_micros_per_mtok: int
    reasoning_micros_per_mtok: int | None = None
    effective_from_us: int = 0
    service_tier: str = ""
    above_input_tokens: int = 0
    cache_write_1h_micros_per_mtok: int | None = None
    request_micros_per_k: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        check_str("provider", self.provider)
        check_str("model", self.model)
        for n in ("input_micros_per_mtok", "output_micros_per_mtok", "cache_read_micros_per_mtok",
                  "cache_write_micros_per_mtok"):
            check_int(n, getattr(self, n), 0, limits.MAX_RATE_MICROS_PER_MTOK)
        for n in ("reasoning_micros_per_mtok", "cache_write_1h_micros_per_mtok"):
            if getattr(self, n) is not None:
                check_int(n, getattr(self, n), 0, limits.MAX_RATE_MICROS_PER_MTOK)
        check_int("effective_from_us", self.effective_from_us, 0, limits.MAX_EVENT_TIME_US)
        if self.service_tier:
            check_str("service_tier", self.service_tier, limits.MAX_SERVICE_TIER_CHARS)
        check_int("above_input_tokens", self.above_input_tokens, 0, limits.MAX_TOKENS)
        check_int("request_micros_per_k", self.request_micros_per_k, 0, limits.MAX_RATE_MICROS_PER_MTOK)
        if self.source:
            check_str("source", self.source, text=True)


@dataclass(frozen=True, slots=True)
class PriceMatch(Body):
    """Control: a model-matching rule: calls from ``provider`` ('*' = any) whose model id the clause ``rule``
    matches are priced as ``target_provider``/``target_model`` ('' = the id as reported). Checked and
    evaluated by ``ledger.economics.matching``."""

    KIND: ClassVar[str] = "price_match"
    AVRO: ClassVar[str] = "tokenledger.PriceMatch"
    CONTROL: ClassVar[bool] = True

    provider: str
    rule: str
    target_provider: str
    target_model: str
    rank: int = 0
    effective_from_us: int = 0
    active: bool = True
    source: str = ""

    def __post_init__(self) -> None:
        check_str("provider", self.provider)
        check_str("rule", self.rule, limits.MAX_MATCH_RULE_CHARS, text=True)
        check_str("target_provider", self.target_provider)
        if self.target_model:
            check_str("target_model", self.target_model)
        check_int("rank", self.rank, -limits.MAX_MATCH_RANK, limits.MAX_MATCH_RANK)
        check_int("effective_from_us", self.effective_from_us, 0, limits.MAX_EVENT_TIME_US)
        if type(self.active) is not bool:
            raise ValidationError("active", self.active, "must be true or false")
        if self.source:
            check_str("source", self.source, text=True)


@dataclass(frozen=True, slots=True)
class AllocationRule(Body):
    """Control: an allocation method (and its parameters) to apply to interactions."""

    KIND: ClassVar[str] = "allocation_rule"
    AVRO: ClassVar[str] = "tokenledger.AllocationRule"
    CONTROL: ClassVar[bool] = True
    MAPS: ClassVar[tuple[str, ...]] = ("params",)

    rule_id: str
    method: str
    params: tuple[tuple[str, str], ...] = ()
    org: str | None = None
    project: str | None = None
    enabled: bool = True
    effective_from_us: int = 0

    def __post_init__(self) -> None:
        check_str("rule_id", self.rule_id)
        check_choice("method", self.method, ALLOCATION_METHODS)
        _set(self, "params", check_map("params", self.params))
        check_opt_str("org", self.org)
        check_opt_str("project", self.project)
        check_bool("enabled", self.enabled)
        check_int("effective_from_us", self.effective_from_us, 0, limits.MAX_EVENT_TIME_US)


@dataclass(frozen=True, slots=True)
class SettlementRule(Body):
    """Control: how allocations are netted and settled (tier, method, window, threshold)."""

    KIND: ClassVar[str] = "settlement_rule"
    AVRO: ClassVar[str] = "tokenledger.SettlementRule"
    CONTROL: ClassVar[bool] = True

    rule_id: str
    tier: str
    method: str
    window_us: int
    threshold_micros: int
    enabled: bool = True
    effective_from_us: int = 0

    def __post_init__(self) -> None:
        check_str("rule_id", self.rule_id)
        check_choice("tier", self.tier, SETTLEMENT_TIERS)
        check_choice("method", self.method, ALLOCATION_METHODS)
        check_int("window_us", self.window_us, 1, limits.MAX_DURATION_US)
        check_int("threshold_micros", self.threshold_micros, 0, limits.MAX_MICROS)
        check_bool("enabled", self.enabled)
        check_int("effective_from_us", self.effective_from_us, 0, limits.MAX_EVENT_TIME_US)


@dataclass(frozen=True, slots=True)
class Rejected(Body):
    """Derived: a record that failed verification (dead letter), with its reason and original bytes."""

    KIND: ClassVar[str] = "rejected"
    AVRO: ClassVar[str] = "tokenledger.Rejected"
    DERIVED: ClassVar[bool] = True

    topic: str
    partition: int
    offset: int
    code: str
    reason: str
    evidence_json: str
    original: bytes
    original_size: int
    original_sha256: bytes

    def __post_init__(self) -> None:
        check_str("topic", self.topic)
        check_int("partition", self.partition, 0, limits.INT32_MAX)
        check_int("offset", self.offset, 0, limits.INT64_MAX)
        check_str("code", self.code)
        check_str("reason", self.reason, limits.MAX_REJECT_REASON_CHARS, allow_empty=True, text=True)
        check_str("evidence_json", self.evidence_json, limits.MAX_JSON_TEXT_CHARS, allow_empty=True, text=True)
        _set(self, "original", check_bytes("original", self.original))
        if len(self.original) > limits.MAX_REJECTED_ORIGINAL_BYTES:
            raise ValidationError("original", f"<{len(self.original)} bytes>",
                                  f"must be at most {limits.MAX_REJECTED_ORIGINAL_BYTES} bytes")
        check_int("original_size", self.original_size, 0, limits.INT64_MAX)
        _set(self, "original_sha256", check_bytes("original_sha256", self.original_sha256, limits.HASH_BYTES))


@dataclass(frozen=True, slots=True)
class Checkpoint(Body):
    """Derived (notary): a signed tree head over one partition's accepted events."""

    KIND: ClassVar[str] = "checkpoint"
    AVRO: ClassVar[str] = "tokenledger.Checkpoint"
    DERIVED: ClassVar[bool] = True

    topic: str
    partition: int
    tree_size: int
    root_hash: bytes
    next_offset: int
    last_event_time_us: int = 0

    def __post_init__(self) -> None:
        check_str("topic", self.topic)
        check_int("partition", self.partition, 0, limits.INT32_MAX)
        check_int("tree_size", self.tree_size, 0, limits.INT64_MAX)
        _set(self, "root_hash", check_bytes("root_hash", self.root_hash, limits.HASH_BYTES))
        check_int("next_offset", self.next_offset, 0, limits.INT64_MAX)
        check_int("last_event_time_us", self.last_event_time_us, 0, limits.MAX_EVENT_TIME_US)


@dataclass(frozen=True, slots=True)
class StateCheckpoint(Body):
    """Derived (any processor): input positions and the state digest there."""

    KIND: ClassVar[str] = "state_checkpoint"
    AVRO: ClassVar[str] = "tokenledger.StateCheckpoint"
    DERIVED: ClassVar[bool] = True
    MAPS: ClassVar[tuple[str, ...]] = ("positions",)

    processor: str
    positions: tuple[tuple[str, int], ...]
    digest: str
    tables_json: str = ""

    def __post_init__(self) -> None:
        check_str("processor", self.processor)
        pos = dict(self.positions) if isinstance(self.positions, tuple) else self.positions
        if not isinstance(pos, Mapping):
            raise ValidationError("positions", self.positions, "must map topic/partition to an offset")
        for k, v in pos.items():
            check_str("positions.key", k)
            check_int(f"positions[{k}]", v, 0, limits.INT64_MAX)
        _set(self, "positions", tuple(sorted(pos.items())))
        check_str("digest", self.digest, 128)
        check_str("tables_json", self.tables_json, limits.MAX_JSON_TEXT_CHARS, allow_empty=True, text=True)


@dataclass(frozen=True, slots=True)
class Allocation(Body):
    """Derived (allocations): one interaction's cost split by one method, with its inputs."""

    KIND: ClassVar[str] = "allocation"
    AVRO: ClassVar[str] = "tokenledger.Allocation"
    DERIVED: ClassVar[bool] = True
    MAPS: ClassVar[tuple[str, ...]] = ("params",)

    interaction_event_id: str
    interaction_id: str
    requestor_id: str
    responder_id: str
    method: str
    total_micros: int
    requestor_pays_micros: int
    responder_pays_micros: int
    net_transfer_micros: int
    direction: str
    request_output_micros: int
    request_input_micros: int
    response_output_micros: int
    response_input_micros: int
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for n in ("interaction_event_id", "interaction_id", "requestor_id", "responder_id", "method"):
            check_str(n, getattr(self, n))
        for n in ("total_micros", "requestor_pays_micros", "responder_pays_micros", "net_transfer_micros",
                  "request_output_micros", "request_input_micros", "response_output_micros",
                  "response_input_micros"):
            check_int(n, getattr(self, n), 0, limits.MAX_MICROS * 1000)
        if self.requestor_pays_micros + self.responder_pays_micros != self.total_micros:
            raise ValidationError("responder_pays_micros", self.responder_pays_micros,
                                  f"shares must add up to the total {self.total_micros}")
        check_choice("direction", self.direction, TRANSFER_DIRECTIONS)
        _set(self, "params", check_map("params", self.params))


@dataclass(frozen=True, slots=True)
class Settlement(Body):
    """Derived (settlements): a netted transfer between two agents for one event-time window."""

    KIND: ClassVar[str] = "settlement"
    AVRO: ClassVar[str] = "tokenledger.Settlement"
    DERIVED: ClassVar[bool] = True
    MAPS: ClassVar[tuple[str, ...]] = ("params",)

    settlement_id: str
    window_start_us: int
    window_end_us: int
    payer: str
    payee: str
    amount_micros: int
    method: str
    tier: str
    status: str
    rail: str
    tx_ref: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for n in ("settlement_id", "payer", "payee", "method", "tier", "rail"):
            check_str(n, getattr(self, n))
        check_int("window_start_us", self.window_start_us, 0, limits.MAX_EVENT_TIME_US)
        check_int("window_end_us", self.window_end_us, self.window_start_us, limits.MAX_EVENT_TIME_US)
        check_int("amount_micros", self.amount_micros, 0, limits.MAX_MICROS * 1000)
        check_choice("status", self.status, SETTLEMENT_STATUSES)
        check_opt_str("tx_ref", self.tx_ref, limits.MAX_LABEL_CHARS)
        _set(self, "params", check_map("params", self.params))


@dataclass(frozen=True, slots=True)
class BudgetAlert(Body):
    """Derived (budgets): a limit crossed, the emergency reserve used, a suspension or resumption."""

    KIND: ClassVar[str] = "budget_alert"
    AVRO: ClassVar[str] = "tokenledger.BudgetAlert"
    DERIVED: ClassVar[bool] = True

    scope: str
    scope_id: str
    budget_kind: str
    alert: str
    window_start_us: int
    allocation: int
    consumed: int
    amount: int
    reason: str = ""

    def __post_init__(self) -> None:
        check_choice("scope", self.scope, BUDGET_SCOPES)
        check_str("scope_id", self.scope_id)
        check_choice("budget_kind", self.budget_kind, BUDGET_KINDS)
        check_str("alert", self.alert)
        check_int("window_start_us", self.window_start_us, 0, limits.MAX_EVENT_TIME_US)
        for n in ("allocation", "consumed", "amount"):
            check_int(n, getattr(self, n), 0, limits.INT64_MAX)
        check_str("reason", self.reason, limits.MAX_LABEL_CHARS, allow_empty=True, text=True)


@dataclass(frozen=True, slots=True)
class BudgetTransfer(Body):
    """Derived (budgets): unused budget moved from a donor to an agent in need."""

    KIND: ClassVar[str] = "budget_transfer"
    AVRO: ClassVar[str] = "tokenledger.BudgetTransfer"
    DERIVED: ClassVar[bool] = True

    budget_kind: str
    donor_id: str
    recipient_id: str
    amount: int
    window_start_us: int
    reason: str = ""

    def __post_init__(self) -> None:
        check_choice("budget_kind", self.budget_kind, BUDGET_KINDS)
        check_str("donor_id", self.donor_id)
        check_str("recipient_id", self.recipient_id)
        if self.donor_id == self.recipient_id:
            raise ValidationError("recipient_id", self.recipient_id, "must differ from the donor")
        check_int("amount", self.amount, 1, limits.INT64_MAX)
        check_int("window_start_us", self.window_start_us, 0, limits.MAX_EVENT_TIME_US)
        check_str("reason", self.reason, limits.MAX_LABEL_CHARS, allow_empty=True, text=True)




@dataclass(frozen=True, slots=True)
class Reservation(Body):
    """Agent: reserve budget before a spend, then commit what was used or release it."""

    KIND: ClassVar[str] = "reservation"
    AVRO: ClassVar[str] = "tokenledger.Reservation"

    reservation_id: str
    action: str
    scope: str
    scope_id: str
    budget_kind: str
    amount: int
    expires_at_us: int = 0

    def __post_init__(self) -> None:
        check_str("reservation_id", self.reservation_id)
        check_choice("action", self.action, RESERVATION_ACTIONS)
        check_choice("scope", self.scope, BUDGET_SCOPES)
        check_str("scope_id", self.scope_id)
        check_choice("budget_kind", self.budget_kind, BUDGET_KINDS)
        check_int("amount", self.amount, 0, limits.MAX_MICROS)
        check_int("expires_at_us", self.expires_at_us, 0, limits.MAX_EVENT_TIME_US)
        if self.action == "reserve" and self.expires_at_us == 0:
            raise ValidationError("expires_at_us", 0, "a reservation needs an expiry (event time)")


@dataclass(frozen=True, slots=True)
class Outcome(Body):
    """Agent: a task's result — confidence (for gating) and, when graded, a score (for incentives)."""

    KIND: ClassVar[str] = "outcome"
    AVRO: ClassVar[str] = "tokenledger.Outcome"

    task_id: str
    confidence_milli: int | None = None
    score_milli: int | None = None
    success: bool = True
    subject_id: str | None = None  # the graded agent; None = the signer (self-reported, never counted as a grade)

    def __post_init__(self) -> None:
        check_str("task_id", self.task_id)
        check_opt_str("subject_id", self.subject_id)
        if self.confidence_milli is not None:
            check_int("confidence_milli", self.confidence_milli, 0, 1000)
        if self.score_milli is not None:
            check_int("score_milli", self.score_milli, 0, 1000)
        check_bool("success", self.success)


@dataclass(frozen=True, slots=True)
class Grant(Body):
    """Control: the operator grants (``active``) or withdraws a capability beyond a signer's role
    (``ledger.wire.vocab.Capability``): ``backfill`` with its ``max_age_us``, ``notary``, ``grader``, or
    ``reserve`` against one ``scope`` ('<level>:<id>')."""

    KIND: ClassVar[str] = "grant"
    AVRO: ClassVar[str] = "tokenledger.Grant"
    CONTROL: ClassVar[bool] = True

    agent_id: str
    capability: str
    scope: str = ""
    max_age_us: int = 0
    active: bool = True

    def __post_init__(self) -> None:
        check_str("agent_id", self.agent_id)
        check_choice("capability", self.capability, CAPABILITIES)
        check_str("scope", self.scope, allow_empty=True)
        check_int("max_age_us", self.max_age_us, 0, limits.MAX_BACKFILL_AGE_US)
        check_bool("active", self.active)
        if self.capability == vocab.Capability.RESERVE.value:
            level, sep, scope_id = self.scope.partition(":")
            if not sep or level not in BUDGET_SCOPES or not scope_id:
                raise ValidationError("scope", self.scope,
                                      f"a reserve grant names one scope as '<level>:<id>', level one of "
                                      f"{', '.join(BUDGET_SCOPES)}")
        elif self.scope:
            raise ValidationError("scope", self.scope, f"only a reserve grant has a scope, not {self.capability}")
        if self.capability == vocab.Capability.BACKFILL.value:
            if self.active and self.max_age_us <= 0:
                raise ValidationError("max_age_us", self.max_age_us, "a backfill grant needs a maximum age > 0")
        elif self.max_age_us:
            raise ValidationError("max_age_us", self.max_age_us,
                                  f"only a backfill grant has a maximum age, not {self.capability}")


@dataclass(frozen=True, slots=True)
class ClockPolicy(Body):
    """Control: the skew window — an event may claim a time at most ``max_behind_us`` before and
    ``max_ahead_us`` after its record's append time (defaults in ``ledger.limits``)."""

    KIND: ClassVar[str] = "clock_policy"
    AVRO: ClassVar[str] = "tokenledger.ClockPolicy"
    CONTROL: ClassVar[bool] = True

    max_behind_us: int
    max_ahead_us: int

    def __post_init__(self) -> None:
        check_int("max_behind_us", self.max_behind_us, 0, limits.MAX_CLOCK_SKEW_US)
        check_int("max_ahead_us", self.max_ahead_us, 0, limits.MAX_CLOCK_SKEW_US)


@dataclass(frozen=True, slots=True)
class WebhookSink(Body):
    """Control: a webhook sink receives the alerts whose kind is in ``events`` (``WEBHOOK_EVENTS``) as signed HTTP
    POSTs to ``url`` (``processors.deliveries``). ``secret_sha256`` is the SHA-256 of the signing secret: the secret
    itself is never on the log (every reader would see it), it lives in the home
    (``HomeLayout.webhook_secret_path``) and the delivery worker refuses one whose hash differs. A later sink with
    the same ``sink_id`` replaces it; ``active`` false removes it. ``events`` is kept sorted (same set, same bytes)."""

    KIND: ClassVar[str] = "webhook_sink"
    AVRO: ClassVar[str] = "tokenledger.WebhookSink"
    CONTROL: ClassVar[bool] = True

    sink_id: str
    url: str
    events: tuple[str, ...]
    secret_sha256: bytes
    active: bool = True

    def __post_init__(self) -> None:
        check_str("sink_id", self.sink_id)
        check_webhook_url("url", self.url)
        if not isinstance(self.events, (tuple, list)):
            raise ValidationError("events", self.events, "must be a list of alert kinds")
        if not self.events:
            raise ValidationError("events", [], f"must name at least one of {', '.join(WEBHOOK_EVENTS)}")
        if len(self.events) > limits.MAX_ARRAY_ITEMS:
            raise ValidationError("events", len(self.events), f"must have at most {limits.MAX_ARRAY_ITEMS} entries")
        for i, e in enumerate(self.events):
            check_choice(f"events[{i}]", e, WEBHOOK_EVENTS)
        if len(set(self.events)) != len(self.events):
            dup = next(e for i, e in enumerate(self.events) if e in self.events[:i])
            raise ValidationError("events", dup, "names an alert kind twice")
        _set(self, "events", tuple(sorted(self.events)))
        _set(self, "secret_sha256", check_bytes("secret_sha256", self.secret_sha256, limits.HASH_BYTES))
        check_bool("active", self.active)


@dataclass(frozen=True, slots=True)
class DeliveryAttempt(Body):
    """Derived (deliveries): one attempt to POST delivery ``delivery_id`` to sink ``sink_id``, as the delivery
    worker saw it: ``attempt`` (1 = the first), ``outcome`` (``DELIVERY_OUTCOMES``), the receiver's
    ``http_status`` (0 = no answer: refused, timed out, or not sent because the secret could not be used), the
    ``error`` ('' when delivered) and, when retrying, ``next_attempt_at_us`` (wall clock, us; 0 otherwise). Its
    event time is when the attempt ended."""

    KIND: ClassVar[str] = "delivery_attempt"
    AVRO: ClassVar[str] = "tokenledger.DeliveryAttempt"
    DERIVED: ClassVar[bool] = True

    delivery_id: str
    sink_id: str
    attempt: int
    outcome: str
    http_status: int = 0
    error: str = ""
    next_attempt_at_us: int = 0

    def __post_init__(self) -> None:
        check_str("delivery_id", self.delivery_id)
        check_str("sink_id", self.sink_id)
        check_int("attempt", self.attempt, 1, limits.MAX_DELIVERY_ATTEMPTS)
        check_choice("outcome", self.outcome, DELIVERY_OUTCOMES)
        check_int("http_status", self.http_status, 0, HTTP_STATUS_MAX)
        check_str("error", self.error, limits.MAX_DELIVERY_ERROR_CHARS, allow_empty=True, text=True)
        check_int("next_attempt_at_us", self.next_attempt_at_us, 0, limits.MAX_EVENT_TIME_US)
        if self.outcome == "delivered" and not 200 <= self.http_status < 300:
            raise ValidationError("http_status", self.http_status, "a delivered attempt had a 2xx answer")
        if (self.outcome == "retrying") != (self.next_attempt_at_us > 0):
            raise ValidationError("next_attempt_at_us", self.next_attempt_at_us,
                                  "is set exactly when the outcome is retrying")


@dataclass(frozen=True, slots=True)
class Deposit(Body):
    """Agent: one step of a spam deposit's life cycle (``processors.reputation`` folds them into ``deposits``).

    ``create`` is signed by the requestor: it commits ``amount_micros`` (micro-USD, >= 0) to the responder before a
    request, priced at ``reputation_tier`` with the effective multiplier ``multiplier_milli`` (base x reputation, in
    thousandths; ``ledger.economics.econ.calculate_deposit``). ``refund`` (a legitimate request) and ``forfeit``
    (spam) are signed by the responder and name the deposit by ``deposit_id``; they repeat its two parties and carry
    no amount, tier or multiplier (0 and ''). ``interaction_id`` ties the deposit to the interaction it guards."""

    KIND: ClassVar[str] = "deposit"
    AVRO: ClassVar[str] = "tokenledger.Deposit"

    deposit_id: str
    action: str
    requestor_id: str
    responder_id: str
    amount_micros: int = 0
    reputation_tier: str = ""
    multiplier_milli: int = 0
    interaction_id: str | None = None

    def __post_init__(self) -> None:
        check_str("deposit_id", self.deposit_id)
        check_choice("action", self.action, DEPOSIT_ACTIONS)
        check_str("requestor_id", self.requestor_id)
        check_str("responder_id", self.responder_id)
        if self.requestor_id == self.responder_id:
            raise ValidationError("responder_id", self.responder_id, "a deposit is held by the other party")
        check_int("amount_micros", self.amount_micros, 0, limits.MAX_MICROS)
        check_int("multiplier_milli", self.multiplier_milli, 0, limits.MAX_DEPOSIT_MULTIPLIER_MILLI)
        check_opt_str("interaction_id", self.interaction_id)
        if self.action == "create":
            check_choice("reputation_tier", self.reputation_tier, DEPOSIT_TIERS)
        else:
            for name, empty in (("amount_micros", 0), ("reputation_tier", ""), ("multiplier_milli", 0)):
                if getattr(self, name) != empty:
                    raise ValidationError(name, getattr(self, name),
                                          f"a {self.action} carries none: the create fixed it")


BODY_TYPES: tuple[type[Body], ...] = (
    Action, Data, Compute, Trust, Interaction,
    AgentRegistered, KeyRotated, KeyRevoked, BudgetPolicy, PriceSet, AllocationRule, SettlementRule,
    Rejected, Checkpoint, StateCheckpoint, Allocation, Settlement, BudgetAlert, BudgetTransfer, Reservation, Outcome,
    Grant, ClockPolicy, PriceMatch, WebhookSink, DeliveryAttempt, Deposit,
)
BY_KIND: dict[str, type[Body]] = {t.KIND: t for t in BODY_TYPES}
BY_AVRO: dict[str, type[Body]] = {t.AVRO: t for t in BODY_TYPES}
AGENT_KINDS = tuple(t.KIND for t in BODY_TYPES if not t.CONTROL and not t.DERIVED)
DERIVED_KINDS = tuple(t.KIND for t in BODY_TYPES if t.DERIVED)
CONTROL_KINDS = tuple(t.KIND for t in BODY_TYPES if t.CONTROL)


def body_type(kind: str) -> type[Body]:
    try:
        return BY_KIND[kind]
    except KeyError:
        raise ValidationError("kind", kind, f"unknown event kind; known kinds: {', '.join(BY_KIND)}") from None


# ---------------------------------------------------------------- the envelope


GENESIS_HASH = bytes(limits.HASH_BYTES)


@dataclass(frozen=True, slots=True)
class Event:
    """One ledger event: envelope header (id, signer, chain link) + content (time, context, body)."""

    event_id: str
    signer_id: str
    seq: int
    prev_hash: bytes
    idempotency_key: str | None
    event_time_us: int
    context: Context
    body: Body

    @property
    def agent(self) -> str:
        """The agent the event is about: the one it was recorded for (``context.agent``, set only by a signer with a
        backfill grant, e.g. an importer) or else its signer. Budgets, costs and reports count it under this agent."""
        return self.context.agent or self.signer_id

    def __post_init__(self) -> None:
        check_str("event_id", self.event_id, limits.EVENT_ID_HEX_CHARS)
        check_str("signer_id", self.signer_id)
        check_int("seq", self.seq, 1, limits.INT64_MAX)
        _set(self, "prev_hash", check_bytes("prev_hash", self.prev_hash, limits.HASH_BYTES))
        check_opt_str("idempotency_key", self.idempotency_key)
        check_int("event_time_us", self.event_time_us, limits.MIN_EVENT_TIME_US, limits.MAX_EVENT_TIME_US)
        if not isinstance(self.context, Context):
            raise ValidationError("context", self.context, "must be a Context")
        if not isinstance(self.body, Body):
            raise ValidationError("body", self.body, "must be an event body (Action, Data, ...)")

    @property
    def kind(self) -> str:
        return self.body.KIND


def body_fields(body: Body) -> list[str]:
    return [f.name for f in fields(body)]  # type: ignore[arg-type]


__all__ = [
    "AGENT_KINDS",
    "BODY_TYPES",
    "BY_KIND",
    "CONTROL_KINDS",
    "DERIVED_KINDS",
    "EMPTY_CONTEXT",
    "GENESIS_HASH",
    "Action",
    "AgentRegistered",
    "Allocation",
    "AllocationRule",
    "Body",
    "BudgetAlert",
    "BudgetPolicy",
    "BudgetTransfer",
    "Checkpoint",
    "ClockPolicy",
    "Compute",
    "Context",
    "Cosignature",
    "Data",
    "DeliveryAttempt",
    "Deposit",
    "Event",
    "Flow",
    "Grant",
    "Interaction",
    "KeyRevoked",
    "KeyRotated",
    "LlmUsage",
    "Outcome",
    "PriceMatch",
    "PriceSet",
    "Rejected",
    "Reservation",
    "Settlement",
    "SettlementRule",
    "StateCheckpoint",
    "Trust",
    "WebhookSink",
    "body_from_dict",
    "body_type",
]


def body_from_dict(kind: Any, values: Mapping[str, Any]) -> Body:
    """Build a body from plain data (JSON input): unknown kind, missing or extra fields are
    ValidationErrors naming the field; nested records (usage, flows) may be given as mappings."""
    cls = body_type(kind)
    if not isinstance(values, Mapping):
        raise ValidationError("body", values, "must be an object of field: value")
    names = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    extra = sorted(set(values) - set(names))
    if extra:
        raise ValidationError(extra[0], values[extra[0]], f"is not a field of {kind}; fields: {', '.join(names)}")
    kw: dict[str, Any] = {}
    for name, f in names.items():
        if name not in values:
            if f.default is MISSING:
                raise ValidationError(name, None, f"is required for {kind}")
            continue
        v = values[name]
        nested = cls.NESTED.get(name)
        if nested is not None and isinstance(v, Mapping):
            inner = {x.name for x in fields(nested)}
            bad = sorted(set(v) - inner)
            if bad:
                raise ValidationError(f"{name}.{bad[0]}", v[bad[0]], f"is not a field of {name}")
            try:
                v = nested(**v)
            except TypeError as e:
                raise ValidationError(name, v, f"is incomplete: {e}") from None
        kw[name] = v
    return cls(**kw)
