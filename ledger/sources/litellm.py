"""LiteLLM proxy spend logs: one ``llm.call`` event per row of ``LiteLLM_SpendLogs``, as the proxy stores them.

Inputs (detected from the content)
    * JSON: an array of rows, one row, or JSON lines of rows. JSON-valued columns (``metadata``, ``request_tags``)
      may be JSON values or (as a database export writes a ``Json`` column as text) strings holding JSON. Numbers
      must be JSON numbers: a count is an integer, ``spend`` an integer or a float.
    * CSV: a header row naming the columns, then one row per line (quoted fields may span lines; a problem names the
      line the row starts on). A file whose first character is not ``{`` or ``[`` is read as CSV. Every cell is a
      string: counts must be decimal digits, ``spend`` a plain or exponent decimal; JSON-valued columns hold JSON
      text; an empty cell is an absent (NULL) value.
    Required: ``request_id``, ``startTime``, ``prompt_tokens``, ``completion_tokens`` (and ``model`` for a call).

Token kinds (``LlmUsage``)
    input          ``prompt_tokens``: LiteLLM normalises every provider to OpenAI's semantics, where the prompt
                   count INCLUDES the cached tokens (for Anthropic it adds ``cache_read_input_tokens`` and
                   ``cache_creation_input_tokens`` to Anthropic's ``input_tokens``)
    output         ``completion_tokens``
    cache read     ``prompt_tokens_details.cached_tokens`` and/or ``cache_read_input_tokens``
    cache write    ``cache_creation_input_tokens`` and/or ``prompt_tokens_details.cache_creation_tokens``
    reasoning      ``completion_tokens_details.reasoning_tokens``
    The parts are read from the usage details in ``metadata``: ``additional_usage_values`` (the response's usage
    less its three totals) and ``usage_object`` (the whole usage); every place that reports a part must agree, else
    it is a problem. Cache read + cache write above ``prompt_tokens`` cannot be OpenAI's semantics (a row written
    before LiteLLM counted the cache in the prompt, or a malformed one) and is a problem, never re-read silently;
    so are reasoning above output and a ``total_tokens`` other than prompt + completion.

Everything else
    * ``spend`` (USD) -> ``LlmUsage.provider_cost_micros``, as an exact decimal rounded half to even to micro-USD
      (as ``records.reported_cost``): kept beside the ledger's own cost, never instead of it.
    * Provider: ``custom_llm_provider``, else inferred from ``model`` (``records.infer_provider``).
    * Attribution (``ImportRecord.agent``): ``end_user`` when set, else ``user``. ``end_user`` is the ``user`` a
      caller passes with each request (the agent or customer the call is made for); ``user`` is the internal user
      owning the virtual key, the coarser owner, used only when the request named no one.
    * Labels: ``user``, ``team_id`` (each from its column, else from ``metadata.user_api_key_user_id`` /
      ``user_api_key_team_id``, which LiteLLM fills the columns from; a column and its metadata twin that disagree
      are a problem), ``end_user``, ``request_tags`` (the JSON array, compact), ``call_type``, ``model_group``,
      ``status`` for failures. The hashed ``api_key`` is not copied: it identifies a credential, not a cost owner.
    * Key ``litellm:{request_id}``; event time ``startTime``, ISO 8601 (``2025-01-15T10:20:30.123Z``, or
      ``2025-01-15 10:20:30.123+00`` as PostgreSQL writes it); a time without an offset is UTC, because LiteLLM's
      schema stores times as UTC in a column without a zone. Anything else is a problem.
    * Skips: a ``cache_hit`` row ("served from LiteLLM's cache: no provider call"; whatever tokens it shows are the
      cached response's, and pricing them again would count a call twice; a cache hit with a non-zero ``spend``
      contradicts itself and is a problem); a ``status`` ``failure`` row with no tokens; a row with no tokens and no
      spend (a file or batch retrieval, an MCP tool call). A row with spend but no tokens (an image, a
      per-request price) is imported with its spend.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from ledger import limits
from ledger.errors import ValidationError
from ledger.sources import records as rec
from ledger.sources.attribution import LABEL_SOURCE
from ledger.sources.records import IMPORT_OPERATION, ImportProblem, ImportRecord, idempotency_key, infer_provider
from ledger.units import MICROS_PER_USD
from ledger.wire.events import Action, Context, LlmUsage, check_str

SOURCE_LITELLM = "litellm"
CSV_PATTERNS = ("*.csv",)
REQUIRED_COLUMNS = ("request_id", "startTime", "prompt_tokens", "completion_tokens")
STATUS_SUCCESS, STATUS_FAILURE = "success", "failure"

LABEL_USER, LABEL_TEAM, LABEL_END_USER = "user", "team_id", "end_user"
LABEL_TAGS, LABEL_CALL_TYPE, LABEL_MODEL_GROUP, LABEL_STATUS = "request_tags", "call_type", "model_group", "status"

# (column, its twin in metadata or None): LiteLLM fills the user and team columns from the metadata values
_OWNER_COLUMNS: tuple[tuple[str, str | None], ...] = (
    (LABEL_USER, "user_api_key_user_id"), (LABEL_TEAM, "user_api_key_team_id"), (LABEL_END_USER, None))
_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
                       r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One CSV row: column -> cell text (an empty cell is absent)."""

    cells: Mapping[str, str]


# ------------------------------------------------------------------------------------ bytes -> rows


def spend_log_values(data: bytes, source: str) -> tuple[list[rec.Value], list[ImportProblem]]:
    """``Family.values``: the rows of a JSON (document, array, lines) or CSV export."""
    body = data.removeprefix(rec.UTF8_BOM)
    if not body.strip():
        return [], []
    if body.lstrip()[:1] in (b"{", b"["):
        return rec.json_values(body, source)
    return csv_values(body, source)


def csv_values(body: bytes, source: str) -> tuple[list[rec.Value], list[ImportProblem]]:
    """(line the row starts on, "", ``CsvRow``) of each row of a CSV export, and a problem per unreadable row."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        return [], [ImportProblem(source, None, "file", rec.short(body[:40]),
                                  f"is neither JSON nor CSV text (not UTF-8 at byte {e.start})")]
    # a Json column of a whole row (metadata with stored prompts) can pass csv's default 128 KiB field limit;
    # no cell can be longer than a file we accept, and the limit only ever grows
    csv.field_size_limit(max(csv.field_size_limit(), limits.MAX_IMPORT_FILE_BYTES))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    values: list[rec.Value] = []
    problems: list[ImportProblem] = []
    header: list[str] | None = None
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # an unterminated quote, a stray quote, a NUL: the reader cannot resynchronise
            problems.append(ImportProblem(source, start, "line", "", f"is not valid CSV ({e}); the rest of the "
                                          "file is not read"))
            break
        line, start = start, reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line
        if header is None:
            header = row
            problem = _header_problem(header, source, line)
            if problem is not None:
                return [], [problem]
            continue
        if len(row) != len(header):
            problems.append(ImportProblem(source, line, "row", rec.short(row[:3]),
                                          f"has {len(row)} fields; the header has {len(header)}"))
            continue
        values.append((line, "", CsvRow({name: cell for name, cell in zip(header, row, strict=True) if cell != ""})))
    return values, problems


def _header_problem(header: Sequence[str], source: str, line: int) -> ImportProblem | None:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:  # not this export at all: one problem for the file, as for a file that is not JSON
        return ImportProblem(source, None, "file", rec.short(list(header[:4])),
                             "is neither JSON nor a CSV export of LiteLLM_SpendLogs: its first line names no "
                             f"{', '.join(missing)} column")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        return ImportProblem(source, line, "header", rec.short(repeated), "names these columns more than once")
    return None


# ------------------------------------------------------------------------------------ cells


@dataclass(frozen=True, slots=True)
class _Row:
    """A row as a mapping, and whether its values are CSV text (every cell a string) or JSON values."""

    values: Mapping[str, Any]
    path: str
    csv: bool

    def field(self, name: str) -> str:
        return rec.join(self.path, name)

    def get(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value == "" and self.csv else value

    def count(self, name: str) -> int | None:
        raw = self.get(name)
        if raw is None:
            return None
        if self.csv:
            if len(raw) > limits.MAX_COUNT_DIGITS or not _DIGITS.fullmatch(raw):
                raise ValidationError(self.field(name), raw, "must be a whole number of tokens (decimal digits)")
            raw = int(raw)
        return rec.count(raw, self.field(name))

    def required_count(self, name: str) -> int:
        value = self.count(name)
        if value is None:
            raise ValidationError(self.field(name), None, "is required")
        return value

    def text(self, name: str, max_chars: int = limits.MAX_LABEL_CHARS) -> str | None:
        raw = self.get(name)
        return None if raw is None or raw == "" else check_str(self.field(name), raw, max_chars)

    def json(self, name: str) -> Any:
        """A JSON-valued column: the value, or (CSV, or a database export's text) the JSON a string holds."""
        raw = self.get(name)
        if isinstance(raw, str):
            try:
                return json.loads(raw)
            except (ValueError, RecursionError) as e:
                raise ValidationError(self.field(name), raw, f"must hold JSON: {e}") from None
        return raw


def _usd_micros(row: _Row, name: str) -> int | None:
    """A USD amount as micro-USD, rounded half to even (None when absent)."""
    raw = row.get(name)
    if raw is None:
        return None
    if row.csv:
        if len(raw) > limits.MAX_USD_TEXT_CHARS or not _DECIMAL.fullmatch(raw):
            raise ValidationError(row.field(name), raw, "must be a non-negative decimal number of USD")
        usd = Decimal(raw)
    else:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValidationError(row.field(name), raw, f"must be a JSON number of USD, got {rec.json_type(raw)}")
        try:
            usd = Decimal(repr(raw))  # the float as it prints, exactly
        except InvalidOperation:
            raise ValidationError(row.field(name), raw, "must be a number of USD") from None
    if not usd.is_finite() or usd < 0 or usd * MICROS_PER_USD > limits.MAX_MICROS:
        raise ValidationError(row.field(name), raw, "must be a finite, non-negative number of USD within MAX_MICROS")
    return int((usd * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def _cache_hit(row: _Row) -> bool:
    """``cache_hit``: LiteLLM writes ``str(bool)`` ("True" / "False"); a JSON export may hold a boolean."""
    raw = row.get("cache_hit")
    if raw is None or isinstance(raw, bool):
        return raw is True
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ValidationError(row.field("cache_hit"), raw, "must be True or False")


def start_time(row: _Row) -> int:
    """``startTime`` in microseconds since the epoch (ISO 8601; no offset: UTC, see the module docstring)."""
    field = row.field("startTime")
    raw = row.get("startTime")
    if raw is None:
        raise ValidationError(field, raw, "is required (the call's start time)")
    if not isinstance(raw, str) or not _ISO_TIME.fullmatch(raw):
        raise ValidationError(field, raw, "must be an ISO 8601 time like 2025-01-15T10:20:30.123Z")
    try:
        t = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValidationError(field, raw, f"is not a valid time: {e}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return rec.event_time(field, (t - _EPOCH) // _ONE_US, raw)


# ------------------------------------------------------------------------------------ usage details


def _details(row: _Row) -> tuple[Mapping[str, Any] | None, list[tuple[Mapping[str, Any], str]]]:
    """(metadata, the usage-detail objects it holds with their paths)."""
    metadata_field = row.field("metadata")
    metadata = row.json("metadata")
    if metadata is None:
        return None, []
    metadata = rec.json_object(metadata, metadata_field)
    found = []
    for name in ("additional_usage_values", "usage_object"):
        value = rec.optional_object(metadata, name, metadata_field)
        if value is not None:
            found.append((value, rec.join(metadata_field, name)))
    return metadata, found


def _part(details: Sequence[tuple[Mapping[str, Any], str]], places: Sequence[tuple[str | None, str]],
          ) -> tuple[int, str]:
    """A token part as every place in the usage details reports it (absent everywhere: 0), and the first place's
    path; places disagreeing is a problem. A place is (sub-object or None, count name)."""
    value: int | None = None
    first = ""
    for obj, path in details:
        for sub, name in places:
            holder: Mapping[str, Any] | None = obj
            holder_path = path
            if sub is not None:
                holder_path = rec.join(path, sub)
                holder = rec.optional_object(obj, sub, path)
            if holder is None or holder.get(name) is None:
                continue
            field = rec.join(holder_path, name)
            n = rec.count(holder[name], field)
            if value is not None and n != value:
                raise ValidationError(field, holder[name], f"differs from {first} ({value:,}): both report the same "
                                      "part of this call's usage")
            if value is None:
                value, first = n, field
    return value or 0, first


def _owner(row: _Row, column: str, twin: str | None, metadata: Mapping[str, Any] | None) -> str | None:
    value = row.text(column)
    if twin is None or metadata is None or metadata.get(twin) in (None, ""):
        return value
    twin_field = rec.join(row.field("metadata"), twin)
    other = check_str(twin_field, metadata[twin], limits.MAX_LABEL_CHARS)
    if value is not None and value != other:
        raise ValidationError(row.field(column), value, f"differs from {twin_field} ({other!r})")
    return other


def _tags(row: _Row) -> str | None:
    tags = row.json("request_tags")
    if tags is None:
        return None
    field = row.field("request_tags")
    if not isinstance(tags, list):
        raise ValidationError(field, tags, f"must be a JSON array of strings, got {rec.json_type(tags)}")
    for i, tag in enumerate(tags):
        check_str(f"{field}[{i}]", tag, limits.MAX_LABEL_CHARS, text=True)
    if not tags:
        return None
    text = json.dumps(tags, separators=(",", ":"), ensure_ascii=False)
    return check_str(field, text, limits.MAX_LABEL_CHARS, text=True)


def _status(row: _Row, metadata: Mapping[str, Any] | None) -> str:
    raw = row.get("status")
    field = row.field("status")
    if raw is None and metadata is not None and metadata.get("status") not in (None, ""):
        raw, field = metadata["status"], rec.join(row.field("metadata"), "status")
    if raw is None:
        return STATUS_SUCCESS
    if raw not in (STATUS_SUCCESS, STATUS_FAILURE):
        raise ValidationError(field, raw, f"must be {STATUS_SUCCESS} or {STATUS_FAILURE}")
    return str(raw)


# ------------------------------------------------------------------------------------ one row


def _skip(row: _Row, tokens: int, spend: int | None, status: str) -> rec.Skip | None:
    """Why a row is not a metered call (None: it is one)."""
    if _cache_hit(row):
        if spend:
            raise ValidationError(row.field("spend"), row.get("spend"),
                                  "must be 0 on a cache hit: LiteLLM served it from its cache, no provider was paid")
        shown = f" (its {tokens:,} tokens are the cached response's)" if tokens else ""
        return rec.Skip(f"served from LiteLLM's cache: no provider call{shown}")
    if tokens == 0 and status == STATUS_FAILURE:
        return rec.Skip("a failed request with no tokens: nothing was metered")
    if tokens == 0 and not spend:
        return rec.Skip("no tokens and no spend: not a metered call")
    return None


def _labels(row: _Row, metadata: Mapping[str, Any] | None, status: str) -> tuple[dict[str, str], str | None]:
    """(the row's context labels, the agent the call is attributed to: end_user, else user)."""
    labels = {LABEL_SOURCE: SOURCE_LITELLM}
    owners = {column: _owner(row, column, twin, metadata) for column, twin in _OWNER_COLUMNS}
    labels.update({column: owner for column, owner in owners.items() if owner is not None})
    for name, label in (("call_type", LABEL_CALL_TYPE), ("model_group", LABEL_MODEL_GROUP)):
        text = row.text(name)
        if text is not None:
            labels[label] = text
    tags = _tags(row)
    if tags is not None:
        labels[LABEL_TAGS] = tags
    if status == STATUS_FAILURE:
        labels[LABEL_STATUS] = status
    column = LABEL_END_USER if owners[LABEL_END_USER] is not None else LABEL_USER
    agent = owners[column]
    return labels, None if agent is None else check_str(row.field(column), agent)


def spend_log_record(value: Any, path: str, line: int | None, fallback_us: int | None) -> ImportRecord | rec.Skip:
    """``Family.parse_one``: one ``LiteLLM_SpendLogs`` row (a JSON object or a ``CsvRow``), by the module's rules."""
    del fallback_us  # every row has its startTime, which is required
    row = (_Row(value.cells, path, True) if isinstance(value, CsvRow)
           else _Row(rec.json_object(value, path), path, False))
    request_id = row.text("request_id")
    if request_id is None:
        raise ValidationError(row.field("request_id"), row.get("request_id"), "is required")
    event_time_us = start_time(row)
    prompt = row.required_count("prompt_tokens")
    completion = row.required_count("completion_tokens")
    total = row.count("total_tokens")
    if total is not None and total != prompt + completion:
        raise ValidationError(row.field("total_tokens"), total,
                              f"must equal prompt_tokens + completion_tokens ({prompt + completion:,})")
    spend = _usd_micros(row, "spend")
    metadata, details = _details(row)
    status = _status(row, metadata)
    skip = _skip(row, prompt + completion, spend, status)
    if skip is not None:
        return skip
    model = row.text("model", limits.MAX_ID_CHARS)
    if model is None:
        raise ValidationError(row.field("model"), row.get("model"), "is required")
    read, _ = _part(details, (("prompt_tokens_details", "cached_tokens"), (None, "cache_read_input_tokens")))
    written, _ = _part(details, ((None, "cache_creation_input_tokens"),
                                 ("prompt_tokens_details", "cache_creation_tokens")))
    reasoning, reasoning_field = _part(details, (("completion_tokens_details", "reasoning_tokens"),))
    if read + written > prompt:
        raise ValidationError(row.field("prompt_tokens"), prompt,
                              f"must include the cache read ({read:,}) and cache write ({written:,}) tokens "
                              "(LiteLLM's OpenAI semantics), and is smaller than them")
    rec.part_of(reasoning, reasoning_field, completion, "completion_tokens")
    provider = row.text("custom_llm_provider", limits.MAX_ID_CHARS) or infer_provider(model)
    labels, agent = _labels(row, metadata, status)
    return ImportRecord(
        idempotency_key=idempotency_key(SOURCE_LITELLM, request_id),
        body=Action(operation=IMPORT_OPERATION, usage=LlmUsage(
            provider=provider, model=model, input_tokens=prompt, output_tokens=completion, cache_read_tokens=read,
            cache_write_tokens=written, reasoning_tokens=reasoning, provider_cost_micros=spend)),
        event_time_us=event_time_us, context=Context(labels=tuple(labels.items())), line=line, path=path,
        agent=agent)


FAMILY = rec.Family(SOURCE_LITELLM, rec.one_unit, spend_log_record, spend_log_values,
                    (*rec.JSON_PATTERNS, *CSV_PATTERNS))
