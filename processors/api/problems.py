"""Errors as RFC 9457 problem details (``application/problem+json``), naming the field and value at fault.

Every error the service answers goes through ``problem_response``: a ``Problem`` raised by an endpoint, or a ledger
error (``ledger.errors``) an endpoint let propagate, mapped by ``from_ledger_error``. Values are cut to
``limits.MAX_PROBLEM_VALUE_CHARS``: a problem never echoes a whole request back.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from ledger import limits
from ledger.errors import (
    ChainForkError,
    HomeBusyError,
    IdempotencyConflictError,
    IdempotencyWindowError,
    LedgerError,
    LogError,
    RecordTooLargeError,
    RejectError,
    ValidationError,
)

PROBLEM_TYPE_BASE = "https://tokenledger.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An HTTP error with its evidence. ``code`` is a stable machine-readable name (also the type URI's tail)."""

    def __init__(self, status: int, title: str, *, detail: str = "", code: str | None = None, field: str | None = None,
                 value: Any = None, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code or title.lower().replace(" ", "_")
        self.field = field
        self.value = value
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + self.code, "title": self.title, "status": self.status,
                               "code": self.code}
        if self.detail:
            out["detail"] = self.detail
        if self.field is not None:
            out["field"] = self.field
            out["value"] = _short(self.value)
        out.update({k: _short(v) for k, v in self.extra.items() if v is not None})
        return out


def _short(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v[:limits.MAX_PROBLEM_VALUE_CHARS // 2]).hex()
    if isinstance(v, str) and len(v) > limits.MAX_PROBLEM_VALUE_CHARS:
        return v[:limits.MAX_PROBLEM_VALUE_CHARS] + "..."
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_short(x) for x in v[:20]]
    if isinstance(v, dict):
        return {str(k): _short(x) for k, x in list(v.items())[:40]}
    return _short(str(v))


_MEMBERS = frozenset({"type", "title", "status", "detail", "code", "field", "value", "headers", "reason"})


def from_ledger_error(e: LedgerError) -> Problem:
    """The HTTP answer to a ledger error an endpoint let propagate."""
    # evidence keys that are the problem's own members (a RejectError's evidence may repeat its code) are not repeated
    evidence = {k: v for k, v in e.evidence.items() if k not in _MEMBERS}
    if e.hint:
        evidence["hint"] = e.hint
    if isinstance(e, RecordTooLargeError):
        return Problem(413, "Too large", detail=e.message, code="oversized", **evidence)
    if isinstance(e, (IdempotencyConflictError, IdempotencyWindowError)):
        return Problem(409, "Idempotency conflict", detail=e.message, code="idempotency_conflict", field=e.field,
                       value=e.value, **evidence)
    if isinstance(e, ValidationError):
        return Problem(400, "Invalid field", detail=e.message, code="invalid_field", field=e.field, value=e.value,
                       reason=e.reason, **evidence)
    if isinstance(e, RejectError):
        return Problem(422, "Rejected", detail=e.reason, code=e.code.value, **evidence)
    if isinstance(e, (ChainForkError, HomeBusyError)):
        return Problem(409, "Conflict", detail=e.message, code="chain_conflict", **evidence)
    if isinstance(e, LogError):
        return Problem(503, "Log unavailable", detail=e.message, code="log_unavailable",
                       headers={"Retry-After": "1"}, **evidence)
    return Problem(400, "Refused", detail=e.message, code="refused", error=type(e).__name__, **evidence)


def problem_response(p: Problem) -> Response:
    return Response(json.dumps(p.body(), separators=(",", ":")), status_code=p.status, media_type=MEDIA_TYPE,
                    headers=p.headers)
