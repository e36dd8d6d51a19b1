"""API tokens for ``tokenledger serve``: who may call it, as whom, for what, until when.

A token is ``tlk_<id>_<secret>``: ``id`` (12 hex characters) names its row, ``secret`` is 32 random bytes
(URL-safe base64). The home keeps only the token's SHA-256 (``<home>/state/tokens.sqlite``, mode 0600), so a
copy of the file lets nobody call the service; the token itself is shown once, by ``tokenledger token create``.
A SHA-256 without a salt is enough here: the secret has 256 bits of entropy, nothing to guess or look up.

Two kinds:
- an **agent token** acts only for its agent (``agent``), with the scopes it was given: ``ingest`` (post events,
  batches, traces), ``reserve`` (reservations), ``read`` (budgets, usage, report);
- an **operator token** (``operator=True``) acts for every agent and has every scope, and reads the operations
  endpoints. Give one to the on-call dashboard, never to an agent.

Each token has a rate limit (requests per second, with a burst of ``RATE_BURST_S`` seconds' worth), an expiry
(``DEFAULT_TTL_US`` unless given; ``None`` only when asked for explicitly) and can be revoked; a revoked or expired
token is refused at its next request. Several service instances on one home share the file (SQLite WAL).

The wall clock is read here only to stamp creation and revocation; ``authenticate`` takes ``now_us``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ledger import limits
from ledger.errors import ValidationError
from ledger.sdk.home import check_signer_id
from ledger.units import US_PER_DAY, US_PER_HOUR, US_PER_S

SCOPES = ("ingest", "reserve", "read")
TOKEN_PREFIX = "tlk_"  # noqa: S105 (a prefix that makes leaked tokens easy to find by scanners, not a secret)
TOKEN_ID_HEX_CHARS = 12
SECRET_BYTES = 32
DEFAULT_TTL_US = 90 * US_PER_DAY  # a token expires after 90 days unless its creator says otherwise
DEFAULT_RATE_PER_S = 100.0  # requests per second per token
RATE_BURST_S = 2.0  # a token may send this many seconds' worth of requests at once
_TOKEN_RE = re.compile(r"tlk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_DURATION_RE = re.compile(r"([1-9][0-9]{0,5})([smhd])")
_DURATION_UNITS = {"s": US_PER_S, "m": 60 * US_PER_S, "h": US_PER_HOUR, "d": US_PER_DAY}


@dataclass(frozen=True)
class TokenInfo:
    """One token's row (never the token itself)."""

    token_id: str
    agent: str | None
    operator: bool
    scopes: tuple[str, ...]
    created_us: int
    expires_us: int | None
    revoked_us: int | None
    rate_per_s: float
    note: str

    def state(self, now_us: int) -> str:
        if self.revoked_us is not None:
            return "revoked"
        if self.expires_us is not None and now_us >= self.expires_us:
            return "expired"
        return "active"

    def to_dict(self, now_us: int) -> dict[str, object]:
        return {"token_id": self.token_id, "agent": self.agent, "operator": self.operator, "scopes": list(self.scopes),
                "created_us": self.created_us, "expires_us": self.expires_us, "revoked_us": self.revoked_us,
                "rate_per_s": self.rate_per_s, "note": self.note, "state": self.state(now_us)}


@dataclass(frozen=True)
class Issued:
    """A new token: ``token`` is the only copy of the secret there will ever be."""

    token: str
    info: TokenInfo


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    for s in chosen:
        if s not in SCOPES:
            raise ValidationError("scopes", s, f"must be among {', '.join(SCOPES)}")
    if not chosen:
        raise ValidationError("scopes", "", f"give at least one of {', '.join(SCOPES)}")
    return chosen


def parse_ttl(value: str) -> int | None:
    """``90d``, ``12h``, ``30m``, ``45s`` -> microseconds; ``never`` -> None."""
    if value == "never":
        return None
    m = _DURATION_RE.fullmatch(value.strip())
    if m is None:
        raise ValidationError("expires", value, "must be a duration such as 90d, 12h, 30m or 45s, or 'never'")
    ttl = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if ttl > limits.MAX_TOKEN_TTL_US:
        raise ValidationError("expires", value,
                              f"must be at most {limits.MAX_TOKEN_TTL_US // US_PER_DAY}d (or 'never')")
    return ttl


def token_id_of(token: str) -> str | None:
    """The id part of a well-formed token, else None (never raises: the caller answers 401)."""
    m = _TOKEN_RE.fullmatch(token) if len(token) <= limits.MAX_TOKEN_CHARS else None
    return None if m is None else m.group(1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class TokenStore:
    """The home's token table. Thread-safe (one connection, serialised by SQLite's own locking per call)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # 0600 before the first byte is written
        os.chmod(path, 0o600)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS tokens (token_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, agent TEXT,"
            " operator INTEGER NOT NULL, scopes TEXT NOT NULL, created_us INTEGER NOT NULL, expires_us INTEGER,"
            " revoked_us INTEGER, rate_per_s REAL NOT NULL, note TEXT NOT NULL)")
        for suffix in ("-wal", "-shm"):  # SQLite makes these with the umask's mode: they hold the same hashes
            side = Path(str(path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    def create(self, *, agent: str | None, operator: bool = False, scopes: Iterable[str] = SCOPES,
               ttl_us: int | None = DEFAULT_TTL_US, rate_per_s: float = DEFAULT_RATE_PER_S, note: str = "",
               now_us: int | None = None) -> Issued:
        chosen: tuple[str, ...]
        if operator:
            if agent is not None:
                raise ValidationError("agent", agent, "an operator token acts for every agent: give --agent or "
                                                      "--operator, not both")
            chosen = SCOPES
        else:
            if agent is None:
                raise ValidationError("agent", None, "an agent token needs --agent NAME (or make an --operator token)")
            check_signer_id(agent, "agent")
            chosen = check_scopes(scopes)
        if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, (int, float)) or not (
                0 < rate_per_s <= limits.MAX_TOKEN_RATE_PER_S):
            raise ValidationError("rate", rate_per_s, f"must be a number of requests per second in (0, "
                                                      f"{limits.MAX_TOKEN_RATE_PER_S:.0f}]")
        if len(note) > limits.MAX_TOKEN_NOTE_CHARS:
            raise ValidationError("note", note[:40] + "...",
                                  f"must be at most {limits.MAX_TOKEN_NOTE_CHARS} characters")
        now = time.time_ns() // 1000 if now_us is None else now_us
        token_id = secrets.token_hex(TOKEN_ID_HEX_CHARS // 2)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")
        token = f"{TOKEN_PREFIX}{token_id}_{secret}"
        info = TokenInfo(token_id, agent, operator, chosen, now, None if ttl_us is None else now + ttl_us, None,
                         float(rate_per_s), note)
        self.db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (token_id, _digest(token), agent, int(operator), ",".join(chosen), now, info.expires_us, None,
                         info.rate_per_s, note))
        return Issued(token, info)

    def authenticate(self, token: str, now_us: int) -> TokenInfo | None:
        """The token's row if it is well formed, known, unrevoked and unexpired; None otherwise (one answer for
        every failure: a caller learns nothing about which tokens exist)."""
        token_id = token_id_of(token)
        if token_id is None:
            return None
        row = self.db.execute("SELECT * FROM tokens WHERE token_id=?", (token_id,)).fetchone()
        if row is None or not hmac.compare_digest(str(row[1]), _digest(token)):
            return None
        info = _info(row)
        return info if info.state(now_us) == "active" else None

    def revoke(self, token_id: str, now_us: int | None = None) -> TokenInfo:
        now = time.time_ns() // 1000 if now_us is None else now_us
        info = self.get(token_id)
        if info.revoked_us is None:
            self.db.execute("UPDATE tokens SET revoked_us=? WHERE token_id=?", (now, token_id))
        return self.get(token_id)

    def get(self, token_id: str) -> TokenInfo:
        row = self.db.execute("SELECT * FROM tokens WHERE token_id=?", (token_id,)).fetchone()
        if row is None:
            raise ValidationError("token_id", token_id, "no such token (see `tokenledger token list`)")
        return _info(row)

    def list(self) -> list[TokenInfo]:
        return [_info(r) for r in self.db.execute("SELECT * FROM tokens ORDER BY created_us, token_id")]

    def close(self) -> None:
        self.db.close()


def _info(row: tuple[object, ...]) -> TokenInfo:
    return TokenInfo(str(row[0]), None if row[2] is None else str(row[2]), bool(row[3]),
                     tuple(str(row[4]).split(",")), int(row[5]),  # type: ignore[call-overload]
                     None if row[6] is None else int(row[6]),  # type: ignore[call-overload]
                     None if row[7] is None else int(row[7]),  # type: ignore[call-overload]
                     float(row[8]), str(row[9]))  # type: ignore[arg-type]
