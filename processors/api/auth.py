"""Who is calling: bearer tokens (``ledger.sdk.tokens``), scopes, acting for an agent, and per-token rate limits.

``require(scope)`` is the FastAPI dependency every protected endpoint declares. Answers:
- no ``Authorization: Bearer`` header, or a token that is malformed, unknown, expired or revoked → 401 with
  ``WWW-Authenticate: Bearer`` (one answer for all of them: a caller learns nothing about which tokens exist);
- a token without the scope, or an agent token used for another agent (``Principal.acts_for``) → 403;
- more requests than the token's rate (a token bucket of ``rate_per_s`` with ``RATE_BURST_S`` seconds of burst, per
  service process) → 429 with ``Retry-After`` in whole seconds.

A token's row is read on every request (a SQLite point read), so a revocation takes effect at the next request.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends
from starlette.requests import Request

from ledger import limits
from ledger.sdk.tokens import RATE_BURST_S, SCOPES, TokenInfo
from processors.api.problems import Problem
from processors.api.state import Service, service

OPERATOR = "operator"  # the pseudo-scope of operator-only endpoints


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    token_id: str
    agent: str | None  # None: an operator token
    operator: bool
    scopes: frozenset[str]

    def acts_for(self, agent: str) -> None:
        """Refuse (403) unless this caller may act for ``agent``: an operator, or that agent's own token."""
        if not self.operator and agent != self.agent:
            raise Problem(403, "Forbidden", code="forbidden_agent", field="agent", value=agent,
                          detail=f"this token acts only for agent {self.agent!r}")


class RateLimiter:
    """Token buckets per API token, in this process (several instances each allow the rate: size it per instance)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # token id -> (tokens, at)

    def take(self, token_id: str, rate_per_s: float) -> float:
        """0.0 if a request may go now (and count it), else the seconds until one may."""
        burst = max(1.0, rate_per_s * RATE_BURST_S)
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(token_id, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate_per_s)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate_per_s
            self._buckets[token_id] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > limits.MAX_RATE_LIMIT_BUCKETS:
                self._buckets.popitem(last=False)
        return wait


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(request: Request, svc: Service) -> TokenInfo:
    token = _bearer(request)
    info = None if token is None else svc.tokens.authenticate(token, svc.now_us())
    if info is None:
        raise Problem(401, "Unauthorized", code="unauthorized", headers={"WWW-Authenticate": "Bearer"},
                      detail="send Authorization: Bearer <token> with a valid token (tokenledger token create)")
    limiter: RateLimiter = svc.extra("rate_limiter", RateLimiter)  # noqa: S610 (our method, not Django)
    wait = limiter.take(info.token_id, info.rate_per_s)
    if wait > 0:
        raise Problem(429, "Too many requests", code="rate_limited", headers={"Retry-After": str(math.ceil(wait))},
                      detail=f"this token may send {info.rate_per_s:g} requests per second", token_id=info.token_id)
    return info


def require(scope: str, *alternatives: str) -> Callable[..., Principal]:
    """The dependency for an endpoint needing ``scope`` (one of ``SCOPES``, or ``"operator"``), or any of
    ``alternatives`` (``require("reserve", "read")``: a token with either scope may call it)."""
    accepted = (scope, *alternatives)
    for s in accepted:
        if s not in SCOPES and s != OPERATOR:
            raise ValueError(f"unknown scope {s!r}")

    def dependency(request: Request, svc: Service = Depends(service)) -> Principal:  # noqa: B008 (FastAPI idiom)
        info = authenticate(request, svc)
        if scope == OPERATOR and not info.operator:
            raise Problem(403, "Forbidden", code="operator_only", detail="this endpoint needs an operator token")
        if not info.operator and not any(s in info.scopes for s in accepted):
            raise Problem(403, "Forbidden", code="missing_scope", field="scope", value=" or ".join(accepted),
                          detail=f"this token's scopes are {', '.join(info.scopes)}")
        principal = Principal(info.token_id, info.agent, info.operator, frozenset(SCOPES if info.operator
                                                                                  else info.scopes))
        request.state.principal = principal
        return principal

    return dependency
