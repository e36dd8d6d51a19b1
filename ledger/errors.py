"""One error hierarchy for the whole ledger, with a closed set of reject codes.

Every error carries its evidence as keyword fields (event id, topic, partition, offset, field,
value, expected vs actual) so that a caller, a log line or a quarantine row can say exactly what
went wrong and where, without parsing a message string.

Tree::

    LedgerError
    ├── ValidationError        bad input from outside (SDK argument, CLI flag, file); nothing changed
    │   ├── RecordTooLargeError    a record is larger than the log accepts
    │   ├── IdempotencyConflictError   an idempotency key re-used for different content
    │   └── IdempotencyWindowError     an event older than the emitter's idempotency window
    ├── KeyFileError           a key file is missing, malformed or readable by group/world
    ├── HomeError              the ledger home directory is missing or not a ledger home
    │   └── HomeBusyError          another ``tokenledger run`` (a live pid) already runs this home's processors
    ├── RejectError            a record on the log fails a check; carries a RejectCode
    ├── ChainForkError         an emitter would fork its own chain (a second writer for one signer)
    ├── LogError               the log backend failed (I/O, broker unreachable, timeout)
    │   └── LogRewoundError        the log ends below a processor's saved position (restarted empty, recreated)
    ├── EconomicsError         economics math got inputs it cannot price or split
    ├── BudgetRefused          a spend was refused by the budget fold (``Decision.require``), or a spend guard's
    │                          reservation was refused (``ledger.sdk.guard``): the call was never sent
    ├── AdmissionError         the published budget views could not be read, or showed a spend guard no
    │                          decision within its timeout (the hold was released)
    ├── ViewIntegrityError     published views do not match their processor's signed manifest
    ├── StoreError             a processor's DuckDB state file could not be opened or written
    ├── RunnerFailedError      a processor runner was used again after a step failed mid-batch
    └── RunnerInvariantError   a batch would not continue a processor's committed state

``ValidationError`` is also a ``ValueError``: code written against the standard library
(``except ValueError``) catches bad input from this package too.

Every class maps to one process exit code in ``EXIT_CODES`` (looked up along the class's MRO by
``exit_code_for``); the CLI and the processor worker both exit through that table, so a given
error means the same exit code everywhere.

Nothing here does I/O.
"""

from __future__ import annotations

import enum
from typing import Any, Self


class RejectCode(str, enum.Enum):  # noqa: UP042 - str() and format() of members must stay
    """Why a record or event was refused. Closed set: a new reason is a new member, never free text."""

    BAD_SCHEMA = "bad_schema"  # bytes do not decode with any known writer schema
    UNKNOWN_SCHEMA = "unknown_schema"  # single-object fingerprint names no schema we know
    TRUNCATED = "truncated"  # bytes end before the record does
    OVERSIZED = "oversized"  # record or batch larger than the limits allow
    BAD_SIGNATURE = "bad_signature"  # Ed25519 signature does not verify
    UNKNOWN_KEY = "unknown_key"  # signer key id was never registered
    REVOKED_KEY = "revoked_key"  # key was revoked before this batch
    NOT_OPERATOR = "not_operator"  # control event not signed by an operator key
    NOT_PROCESSOR = "not_processor"  # derived event not signed by a processor key
    NOT_GRANTED = "not_granted"  # the signer lacks the operator's grant for what it signed (e.g. a notary checkpoint)
    SIGNER_MISMATCH = "signer_mismatch"  # event's signer differs from the batch signer / key owner
    SEQUENCE_GAP = "sequence_gap"  # sequence number skips ahead
    FORK = "fork"  # same sequence number, different event (or previous hash does not match)
    DUPLICATE = "duplicate"  # the very same event (same id) seen again
    REPLAY = "replay"  # an old, already-superseded sequence number re-appears
    INVALID_FIELD = "invalid_field"  # a field value breaks a domain rule
    UNKNOWN_KIND = "unknown_kind"  # event kind not known to this reader
    BAD_ID = "bad_id"  # event id does not match its deterministic derivation
    UNKNOWN_MODEL = "unknown_model"  # pricing: no price-book entry in force
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"  # a signed checkpoint disagrees with the log
    CLOCK_SKEW = "clock_skew"  # claimed event time outside the skew window around the record's append time


class LedgerError(Exception):
    """Base of every error this package raises on purpose.

    ``message`` is for humans; ``evidence`` holds machine-readable facts (all JSON-friendly).
    ``hint`` says what to do next, when there is something useful to say.
    """

    def __init__(self, message: str, *, hint: str | None = None, **evidence: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.evidence: dict[str, Any] = {k: v for k, v in evidence.items() if v is not None}

    def __str__(self) -> str:
        parts = [self.message]
        if self.evidence:
            parts.append("(" + ", ".join(f"{k}={_short(v)}" for k, v in self.evidence.items()) + ")")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        out.update({k: _jsonable(v) for k, v in self.evidence.items()})
        return out


class ValidationError(LedgerError, ValueError):
    """An input broke a rule. ``field`` and ``value`` name the offender."""

    def __init__(self, field: str, value: Any, reason: str, **evidence: Any) -> None:
        super().__init__(f"invalid {field}={_short(value)}: {reason}", field=field, value=value, **evidence)
        self.field = field
        self.value = value
        self.reason = reason
        self.code = RejectCode.INVALID_FIELD


class RecordTooLargeError(ValidationError):
    """A record's key + value exceed the log's record limit (``limits.MAX_RECORD_BYTES``, passed in as
    ``limit``: this module imports no other); ``value`` is the record's size in bytes."""

    def __init__(self, size: int, limit: int, **evidence: Any) -> None:
        super().__init__("record_bytes", size, f"key + value larger than the {limit}-byte limit "
                         "(limits.MAX_RECORD_BYTES)", limit=limit, **evidence)
        self.code = RejectCode.OVERSIZED


class IdempotencyConflictError(ValidationError):
    """An idempotency key the signer already used (within the idempotency window) came back with different
    content: a retry must repeat its call, so this is a bug in the caller, never a duplicate to drop silently.
    Evidence names the key, the event id and both content hashes (SHA-256 of context and body, hex)."""

    def __init__(self, key: str, event_id: str, first_sha256: str, new_sha256: str, **evidence: Any) -> None:
        super().__init__("idempotency_key", key, "was already used by this signer for different content "
                         f"(first content sha256 {first_sha256}, this one {new_sha256})", event_id=event_id,
                         first_content_sha256=first_sha256, new_content_sha256=new_sha256, **evidence)
        self.key = key
        self.first_sha256 = first_sha256
        self.new_sha256 = new_sha256


class IdempotencyWindowError(ValidationError):
    """An event (keyed or not) is stamped at or before the horizon of ids the emitter has forgotten
    (``limits.IDEMPOTENCY_WINDOW_*``): it cannot be told from a retry of a forgotten event, and appending it
    could put one event id on the ledger twice. ``value`` is its event time; ``horizon_us`` the horizon."""

    def __init__(self, event_time_us: int, horizon_us: int, **evidence: Any) -> None:
        super().__init__("event_time_us", event_time_us, f"is at or before {horizon_us}, the horizon of this "
                         "signer's idempotency window: a retry this old cannot be recognised",
                         horizon_us=horizon_us, **evidence)


class KeyFileError(LedgerError):
    """A key file cannot be used (missing, malformed, or too permissive)."""


class HomeError(LedgerError):
    """The ledger home is missing, incomplete or not a ledger home."""


class RejectError(LedgerError):
    """A record or event on the log failed a check.

    Evidence usually includes event_id, signer_id, expected and actual. The record's position is
    typed: ``topic``, ``partition`` and ``offset`` are attributes (None until known) and are also in
    the evidence once set. Checks that see only bytes raise without a position; the reader that
    took the record from the log adds it with ``at()``.
    """

    def __init__(self, code: RejectCode, message: str, *, topic: str | None = None, partition: int | None = None,
                 offset: int | None = None, **evidence: Any) -> None:
        # the position goes last, where at() has always put it
        super().__init__(f"{code.value}: {message}", code=code.value, **evidence, topic=topic, partition=partition,
                         offset=offset)
        self.code = code
        self.reason = message
        self.topic = topic
        self.partition = partition
        self.offset = offset

    @property
    def positioned(self) -> bool:
        """Whether this rejection names the record it is about (topic, partition and offset)."""
        return self.topic is not None and self.partition is not None and self.offset is not None

    def at(self, *, topic: str | None = None, partition: int | None = None, offset: int | None = None) -> Self:
        """A new rejection equal to this one plus its position; this one is left unchanged.

        A position already known is kept (the first reader to place a record is the one that read
        it). The new error's ``__cause__`` and traceback are those of this one, so re-raising it
        loses nothing.
        """
        evidence = {k: v for k, v in self.evidence.items() if k not in ("code", "topic", "partition", "offset")}
        new = type(self).__new__(type(self))
        RejectError.__init__(new, self.code, self.reason,
                             topic=self.topic if self.topic is not None else topic,
                             partition=self.partition if self.partition is not None else partition,
                             offset=self.offset if self.offset is not None else offset, **evidence)
        new.hint = self.hint
        new.__cause__, new.__suppress_context__ = self.__cause__, self.__suppress_context__
        return new.with_traceback(self.__traceback__)


class HomeBusyError(HomeError):
    """Another ``tokenledger run`` supervises this home's processors. ``pid`` names it, ``lock`` the lock file:
    two supervisors would fight over every processor's state file (DuckDB allows one writer)."""


class ChainForkError(LedgerError):
    """An emitter refused to write because it would fork its signer's chain."""


class LogError(LedgerError):
    """The log backend failed; nothing is known to have been appended unless the evidence says so."""


class LogRewoundError(LogError):
    """The log ends below a position a processor already committed (``topic``, ``partition``, ``position``,
    ``end_offset``): the broker restarted empty, or the topic was deleted and recreated. Reading on would
    silently skip records that will be appended at offsets the processor thinks it has read, so it stops."""


class EconomicsError(LedgerError):
    """Economics math cannot proceed with these inputs (e.g. an unknown model, an empty split)."""


class BudgetRefused(LedgerError):
    """A spend was refused before it happened. ``Decision.require`` (the fold itself returns decisions) gives
    ``scope``, ``kind``, ``requested``, ``available``, ``reason`` and ``delay_us``; a spend guard
    (``ledger.sdk.guard``) gives ``reservation_id``, ``kind``, ``amount``, ``reason`` (the budgets processor's
    decision reason, or ``exceeds_hold``), ``scope`` (``level:id`` of the level that decided) and a hint."""


class AdmissionError(LedgerError):
    """The published budget views could not be read, or did not show a spend guard's reservation decided within its
    ``timeout_s`` (``ledger.sdk.guard``: evidence ``reservation_id``, ``kind``, ``amount``, ``released``)."""


class ViewIntegrityError(LedgerError):
    """Published views cannot be trusted: their manifest is missing, malformed, not signed by a key the log
    registers for their processor, or a file's SHA-256 differs from the one it signed. Nothing was read."""


class StoreError(LedgerError):
    """The processor's DuckDB file could not be opened or written."""


class RunnerFailedError(LedgerError):
    """``step`` or ``emit`` on a runner whose earlier step failed mid-batch. ``cause`` names that failure."""


class RunnerInvariantError(LedgerError):
    """A batch would not continue the committed state. ``invariant`` names the rule
    (positions_monotonic, batch_monotonic, outbox_head_continuity); ``before``/``after`` are the
    committed value and the one the batch would write. Nothing of the batch is committed."""


class SchemaRegistryError(LogError):
    """A Schema Registry could not be reached, or refused or did not understand a request (the flat topic's
    schemas are registered there: like the log, a service the ledger depends on)."""


class FlatPublisherFailed(LogError):
    """An append of the flat event topic, or its confirmation, failed: that publisher stops; a restarted processor
    resumes from its store."""


class ShardingRefused(ValidationError):
    """``--instances`` / ``--shard`` on a processor whose state crosses partitions (``Processor.shard_refusal``)."""


class ExitCode(enum.IntEnum):
    """Process exit codes of ``tokenledger`` and of each processor process. A script may rely on them."""

    OK = 0
    REJECTED = 1  # verification found bad records, a replay differs, an import rejected records
    BAD_INPUT = 2  # a flag, file or argument broke a rule; or work the user asked for failed (nothing corrupt)
    HOME = 3  # the home, a key file, or a signer's chain (a second writer) is in the way
    LOG = 4  # the log backend is unavailable or failed


EXIT_CODES: dict[type[LedgerError], ExitCode] = {
    # Every class in this module has its own row (tests walk the tree and check it), so adding an
    # error means deciding its exit code here, not inheriting one by accident.
    LedgerError: ExitCode.BAD_INPUT,
    ValidationError: ExitCode.BAD_INPUT,
    RecordTooLargeError: ExitCode.BAD_INPUT,
    IdempotencyConflictError: ExitCode.BAD_INPUT,
    IdempotencyWindowError: ExitCode.BAD_INPUT,
    KeyFileError: ExitCode.HOME,
    HomeError: ExitCode.HOME,
    HomeBusyError: ExitCode.HOME,
    RejectError: ExitCode.REJECTED,
    ChainForkError: ExitCode.HOME,
    LogError: ExitCode.LOG,
    LogRewoundError: ExitCode.LOG,
    SchemaRegistryError: ExitCode.LOG,
    FlatPublisherFailed: ExitCode.LOG,
    ShardingRefused: ExitCode.BAD_INPUT,
    EconomicsError: ExitCode.BAD_INPUT,
    BudgetRefused: ExitCode.BAD_INPUT,
    AdmissionError: ExitCode.BAD_INPUT,
    ViewIntegrityError: ExitCode.REJECTED,  # like a record that fails verification: the data was tampered with
    StoreError: ExitCode.BAD_INPUT,
    RunnerFailedError: ExitCode.BAD_INPUT,
    RunnerInvariantError: ExitCode.BAD_INPUT,
}


def exit_code_for(error: LedgerError) -> ExitCode:
    """The exit code of ``error``: the row of its nearest class in ``EXIT_CODES``."""
    for cls in type(error).__mro__:
        code = EXIT_CODES.get(cls)
        if code is not None:
            return code
    return ExitCode.BAD_INPUT  # unreachable: LedgerError itself has a row


def _short(v: Any, limit: int = 80) -> str:
    if isinstance(v, (bytes, bytearray)):
        s = bytes(v).hex()
        return s if len(s) <= limit else s[:limit] + f"...({len(v)} bytes)"
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)
