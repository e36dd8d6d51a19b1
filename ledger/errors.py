"""One error hierarchy for the whole ledger, with a closed set of reject codes.

Every error carries its evidence as keyword fields (event id, topic, partition, offset, field,
value, expected vs actual) so that a caller, a log line or a quarantine row can say exactly what
went wrong and where, without parsing a message string.

Tree::

    LedgerError
    ├── ValidationError        bad input from outside (SDK argument, CLI flag, file); nothing changed
    ├── KeyFileError           a key file is missing, malformed or readable by group/world
    ├── HomeError              the ledger home directory is missing or not a ledger home
    ├── RejectError            a record on the log fails a check; carries a RejectCode
    ├── ChainForkError         an emitter would fork its own chain (a second writer for one signer)
    ├── LogError               the log backend failed (I/O, broker unreachable, timeout)
    └── EconomicsError         economics math got inputs it cannot price or split

Nothing here does I/O.
"""

from __future__ import annotations

import enum
from typing import Any


class RejectCode(str, enum.Enum):
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


class ValidationError(LedgerError):
    """An input broke a rule. ``field`` and ``value`` name the offender."""

    def __init__(self, field: str, value: Any, reason: str, **evidence: Any) -> None:
        super().__init__(f"invalid {field}={_short(value)}: {reason}", field=field, value=value, **evidence)
        self.field = field
        self.value = value
        self.reason = reason
        self.code = RejectCode.INVALID_FIELD


class KeyFileError(LedgerError):
    """A key file cannot be used (missing, malformed, or too permissive)."""


class HomeError(LedgerError):
    """The ledger home is missing, incomplete or not a ledger home."""


class RejectError(LedgerError):
    """A record or event on the log failed a check.

    Evidence usually includes topic, partition, offset, event_id, signer_id, expected and actual.
    """

    def __init__(self, code: RejectCode, message: str, **evidence: Any) -> None:
        super().__init__(f"{code.value}: {message}", code=code.value, **evidence)
        self.code = code
        self.reason = message

    def at(self, **where: Any) -> RejectError:
        """The same rejection, with its position (topic/partition/offset) added to the evidence."""
        self.evidence.update({k: v for k, v in where.items() if v is not None})
        return self


class ChainForkError(LedgerError):
    """An emitter refused to write because it would fork its signer's chain."""


class LogError(LedgerError):
    """The log backend failed; nothing is known to have been appended unless the evidence says so."""


class EconomicsError(LedgerError):
    """Economics math cannot proceed with these inputs (e.g. an unknown model, an empty split)."""


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
