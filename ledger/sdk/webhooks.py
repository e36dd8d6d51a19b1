"""Webhook sinks for alerts: what the operator's CLI and the delivery worker (``processors.deliveries``) share.

A sink is a ``webhook_sink`` control event (``ledger.wire.events.WebhookSink``): its id, an http(s) URL, the alert
kinds it receives, and the SHA-256 of its signing secret. The secret itself never reaches the log (every reader of
the log would see it): it lives in the home at ``HomeLayout.webhook_secret_path(sink_id)``, mode 0600, and
``load_secret`` refuses a file whose SHA-256 differs from the sink's, so a secret replaced by hand (or a sink
re-declared with another secret before its file was written) never signs anything.

One delivery is one HTTP POST of a JSON body (``payload``: ``delivery_id``, ``kind``, ``alert_event_id`` and the
alert's fields, keys sorted, compact) with the headers

    X-Tokenledger-Delivery:   the delivery id: the same on every retry, so a receiver de-duplicates by it
    X-Tokenledger-Timestamp:  the attempt's time, whole seconds since the Unix epoch
    X-Tokenledger-Signature:  sha256=<hex HMAC-SHA256 under the secret of "<timestamp>.<body>">

(``signature``; a receiver checks it with ``verify_signature``, and should refuse old timestamps to stop replays).
Delivery is at least once: a worker that dies between the POST and recording it sends again.

The retry schedule (``RetryPolicy``) is exponential: the first retry ``first_delay_us`` after a failed attempt, each
later one ``factor`` times longer, at most ``max_delay_us``, and after ``max_attempts`` attempts the delivery is
failed. Defaults are in ``ledger.limits`` (``WEBHOOK_*``); ``TOKENLEDGER_WEBHOOK_RETRY`` (read by
``ledger.sdk.home``) replaces them, as ``first=10s,factor=2,max=1h,attempts=12`` (durations with a unit).

Pure apart from ``save_secret`` / ``load_secret`` (the secret file), ``post`` (one HTTP request) and ``read_sinks``
(the control topic).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import secrets as _secrets
import ssl
import stat
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.errors import KeyFileError, ValidationError
from ledger.files import read_bounded
from ledger.integrity.verify import Accepted
from ledger.log import Log
from ledger.sdk.home import HomeLayout, check_signer_id, webhook_retry_setting
from ledger.wire.events import WebhookSink, check_webhook_url
from ledger.wire.timefmt import parse_duration

DELIVERY_HEADER = "X-Tokenledger-Delivery"
TIMESTAMP_HEADER = "X-Tokenledger-Timestamp"
SIGNATURE_HEADER = "X-Tokenledger-Signature"
SIGNATURE_SCHEME = "sha256="
CONTENT_TYPE = "application/json"
USER_AGENT = "tokenledger-webhooks/1"
SINK_ID_PREFIX = "wh-"  # a sink id made from its URL: wh- and the first hex digits of the URL's SHA-256
SINK_ID_HASH_CHARS = 12  # 48 bits: two URLs of one operator never share an id by chance
SECRET_FILE_MODE = 0o600
SECRET_DIR_MODE = 0o700
GENERATED_SECRET_BYTES = 32  # ``new_secret``: 256 bits, shown once as hex
RETRY_KEYS = ("first", "factor", "max", "attempts")  # the fields of TOKENLEDGER_WEBHOOK_RETRY


# ---------------------------------------------------------------- sinks, secrets, signatures (pure)


def check_url(url: Any) -> str:
    """A sink URL as ``add-webhook`` takes it (field ``url``): absolute http(s), a host, no credentials."""
    return check_webhook_url("url", url)


def check_sink_id(value: Any) -> str:
    """Sink ids name the secret's file: letters, digits and ``._:@-``, 1..128 characters."""
    return check_signer_id(value, "sink_id")


def sink_id_for(url: str) -> str:
    """The default id of the sink at ``url``: the same URL gives the same id, so adding it again replaces it."""
    return SINK_ID_PREFIX + hashlib.sha256(url.encode("utf-8")).hexdigest()[:SINK_ID_HASH_CHARS]


def check_secret(secret: Any, field: str = "secret") -> bytes:
    """A signing secret: ``MIN_WEBHOOK_SECRET_BYTES``..``MAX_WEBHOOK_SECRET_BYTES`` bytes (text is taken as UTF-8).
    The error never carries the secret, only its length."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, (bytes, bytearray)):
        raise ValidationError(field, f"<{type(secret).__name__}>", "must be text or bytes")
    n = len(secret)
    if not limits.MIN_WEBHOOK_SECRET_BYTES <= n <= limits.MAX_WEBHOOK_SECRET_BYTES:
        raise ValidationError(field, f"<{n} bytes>", f"must be {limits.MIN_WEBHOOK_SECRET_BYTES} to "
                              f"{limits.MAX_WEBHOOK_SECRET_BYTES} bytes long")
    return bytes(secret)


def new_secret() -> str:
    """A fresh random secret (hex), for an operator who gives none."""
    return _secrets.token_hex(GENERATED_SECRET_BYTES)


def secret_sha256(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def signature(secret: bytes, timestamp_s: int, body: bytes) -> str:
    """The ``X-Tokenledger-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body``."""
    mac = hmac.new(secret, str(timestamp_s).encode("ascii") + b"." + body, hashlib.sha256)
    return SIGNATURE_SCHEME + mac.hexdigest()


def verify_signature(secret: bytes, timestamp_header: str, body: bytes, signature_header: str) -> bool:
    """What a receiver checks: the signature header is ``signature(secret, timestamp, body)`` (constant time)."""
    if not timestamp_header.isdigit():
        return False
    return hmac.compare_digest(signature(secret, int(timestamp_header), body), signature_header)


def headers(delivery_id: str, timestamp_s: int, sig: str) -> dict[str, str]:
    return {"Content-Type": CONTENT_TYPE, "User-Agent": USER_AGENT, DELIVERY_HEADER: delivery_id,
            TIMESTAMP_HEADER: str(timestamp_s), SIGNATURE_HEADER: sig}


def payload(delivery_id: str, kind: str, alert_event_id: str, fields: Mapping[str, Any]) -> bytes:
    """The POSTed body: the alert's fields plus ``delivery_id``, ``kind`` and ``alert_event_id`` (these three win
    over an alert field of the same name), as compact JSON with sorted keys (the same delivery, the same bytes)."""
    doc = {**fields, "delivery_id": delivery_id, "kind": kind, "alert_event_id": alert_event_id}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# ---------------------------------------------------------------- the retry schedule


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: after failed attempt n (1-based) the next is due ``delay_us(n)`` later, until
    ``max_attempts`` attempts have failed."""

    first_delay_us: int = limits.WEBHOOK_FIRST_DELAY_US
    factor: int = limits.WEBHOOK_BACKOFF_FACTOR
    max_delay_us: int = limits.WEBHOOK_MAX_DELAY_US
    max_attempts: int = limits.WEBHOOK_MAX_ATTEMPTS

    def __post_init__(self) -> None:
        from ledger.wire.events import check_int

        check_int("retry.first", self.first_delay_us, 1, limits.MAX_DELIVERY_DELAY_US)
        check_int("retry.factor", self.factor, 1, limits.MAX_WEBHOOK_BACKOFF_FACTOR)
        check_int("retry.max", self.max_delay_us, self.first_delay_us, limits.MAX_DELIVERY_DELAY_US)
        check_int("retry.attempts", self.max_attempts, 1, limits.MAX_DELIVERY_ATTEMPTS)

    def delay_us(self, attempt: int) -> int:
        """The wait after failed attempt ``attempt`` (1 = the first)."""
        delay = self.first_delay_us
        for _ in range(attempt - 1):
            delay *= self.factor
            if delay >= self.max_delay_us:
                return self.max_delay_us
        return min(delay, self.max_delay_us)

    def after_failure(self, attempt: int, now_us: int) -> int:
        """When the attempt after failed attempt ``attempt`` is due (us), or 0 when it was the last one."""
        return 0 if attempt >= self.max_attempts else now_us + self.delay_us(attempt)


def parse_retry(text: str, field: str = "TOKENLEDGER_WEBHOOK_RETRY") -> RetryPolicy:
    """``first=10s,factor=2,max=1h,attempts=12`` (any subset; the rest keep the defaults) as a RetryPolicy."""
    given: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or key not in RETRY_KEYS:
            raise ValidationError(field, text, f"must be comma-separated key=value pairs with keys "
                                  f"{', '.join(RETRY_KEYS)} (like first=10s,factor=2,max=1h,attempts=12)")
        if key in given:
            raise ValidationError(f"{field}.{key}", text, "is given twice")
        given[key] = value.strip()
    kw: dict[str, int] = {}
    for key, name in (("first", "first_delay_us"), ("max", "max_delay_us")):
        if key in given:
            kw[name] = parse_duration(given[key], f"{field}.{key}")
    for key, name in (("factor", "factor"), ("attempts", "max_attempts")):
        if key in given:
            if not given[key].isdigit():
                raise ValidationError(f"{field}.{key}", given[key], "must be a whole number")
            kw[name] = int(given[key])
    return RetryPolicy(**kw)


def retry_policy() -> RetryPolicy:
    """The schedule in force: ``TOKENLEDGER_WEBHOOK_RETRY`` if set, else the defaults of ``ledger.limits``."""
    text = webhook_retry_setting()
    return RetryPolicy() if text is None else parse_retry(text)


# ---------------------------------------------------------------- the secret file (edge)


def save_secret(layout: HomeLayout, sink_id: str, secret: bytes) -> Path:
    """Write the sink's secret to its file in the home, mode 0600 (directories 0700), atomically: a reader sees
    the old secret or the new one, never a part."""
    path = layout.webhook_secret_path(sink_id)
    for d in (layout.secrets_dir, layout.webhook_secrets_dir):
        d.mkdir(mode=SECRET_DIR_MODE, exist_ok=True, parents=True)
        os.chmod(d, SECRET_DIR_MODE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), SECRET_FILE_MODE)
    try:
        os.fchmod(fd, SECRET_FILE_MODE)  # umask cannot widen it, an old tmp file cannot keep wider bits
        os.write(fd, check_secret(secret))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def load_secret(layout: HomeLayout, sink_id: str, expected_sha256: bytes) -> bytes:
    """The sink's secret from its file; ``KeyFileError`` (naming the path, never the secret) when it is missing,
    readable or writable by group or others, not a secret, or not the one whose SHA-256 the sink declares."""
    path = layout.webhook_secret_path(sink_id)
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise KeyFileError("the webhook sink's secret file is missing", path=str(path), sink_id=sink_id,
                           hint="declare the sink again with its secret: tokenledger alerts add-webhook") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError("the webhook secret path is not a regular file", path=str(path), sink_id=sink_id)
    if st.st_mode & 0o077:
        raise KeyFileError("the webhook secret file is readable or writable by group/others", path=str(path),
                           mode=oct(st.st_mode & 0o777), hint=f"run: chmod 600 {path}")
    try:
        secret = check_secret(read_bounded(path, limits.MAX_WEBHOOK_SECRET_BYTES, field="secret_file",
                                           limit_name="MAX_WEBHOOK_SECRET_BYTES"), "secret_file")
    except ValidationError as e:
        raise KeyFileError(f"the webhook secret file cannot be used: {e.reason}", path=str(path),
                           sink_id=sink_id) from None
    if not hmac.compare_digest(secret_sha256(secret), expected_sha256):
        raise KeyFileError("the webhook secret file does not match the sink's secret_sha256: refusing to sign with "
                           "it", path=str(path), sink_id=sink_id,
                           hint="declare the sink again with the right secret: tokenledger alerts add-webhook")
    return secret


def read_secret_file(path: str | Path) -> bytes:
    """An operator's ``--secret-file``: its bytes, one trailing newline dropped (editors add one)."""
    data = read_bounded(path, limits.MAX_WEBHOOK_SECRET_BYTES + 2, field="secret_file",
                        limit_name="MAX_WEBHOOK_SECRET_BYTES")
    for end in (b"\r\n", b"\n"):
        if data.endswith(end):
            data = data[: -len(end)]
            break
    return check_secret(data, "secret_file")


# ---------------------------------------------------------------- one POST (edge)


@dataclass(frozen=True)
class Response:
    """What one POST came to: the receiver's HTTP status (0 = no answer) and, unless 2xx, why it failed (with
    the start of the answer)."""

    status: int
    error: str

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300


def post(url: str, body: bytes, hdrs: Mapping[str, str], timeout_s: float = limits.WEBHOOK_TIMEOUT_S) -> Response:
    """POST ``body`` to ``url`` once: no redirect is followed (a signed alert goes where the sink says, nowhere
    else), at most ``MAX_WEBHOOK_RESPONSE_BYTES`` of the answer are read. Never raises for the network: a refused
    connection, a timeout or a TLS failure is a Response with status 0 and the reason."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout_s, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout_s)
    try:
        conn.request("POST", target, body=body, headers=dict(hdrs))
        answer = conn.getresponse()
        head = answer.read(limits.MAX_WEBHOOK_RESPONSE_BYTES)
        status = answer.status
    except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out (TimeoutError), TLS, bad answer
        return Response(0, cut_error(f"no answer: {type(e).__name__}: {e}"))
    finally:
        conn.close()
    if 200 <= status < 300:
        return Response(status, "")
    text = head.decode("utf-8", "replace").strip()
    return Response(status, cut_error(f"HTTP {status}" + (f": {text}" if text else "")))


def cut_error(text: str) -> str:
    """An attempt's error as the log takes it: NUL written as an escape, at most ``MAX_DELIVERY_ERROR_CHARS``."""
    text = text.replace("\x00", "\\x00")
    return text if len(text) <= limits.MAX_DELIVERY_ERROR_CHARS else text[: limits.MAX_DELIVERY_ERROR_CHARS - 3] + "..."


# ---------------------------------------------------------------- the sinks on the log


@dataclass(frozen=True)
class SinkVersion:
    """One verified ``webhook_sink`` control event."""

    event_id: str
    event_time_us: int
    sink: WebhookSink


def read_sinks(log: Log, control_topic: str, anchors: Mapping[str, bytes]) -> list[SinkVersion]:
    """Every verified ``webhook_sink`` of the control topic, in log order (verified as readers verify it: a
    record they would quarantine, e.g. one not signed by an operator, is skipped)."""
    from ledger.sdk.emitter import ControlKeys

    out: list[SinkVersion] = []
    if control_topic not in log.topics():
        return out

    def take(accepted: Accepted) -> None:
        out.extend(SinkVersion(d.event.event_id, d.event.event_time_us, d.event.body)
                   for d in accepted.events if isinstance(d.event.body, WebhookSink))

    ControlKeys(log, control_topic, anchors, on_accepted=take).refresh()
    return out


def sinks_in_force(versions: list[SinkVersion]) -> dict[str, SinkVersion]:
    """The latest version of each sink (removed ones included, ``active`` false), by sink id."""
    out: dict[str, SinkVersion] = {}
    for v in versions:
        out[v.sink.sink_id] = v
    return dict(sorted(out.items()))


__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Response",
    "RetryPolicy",
    "SinkVersion",
    "check_secret",
    "check_sink_id",
    "check_url",
    "cut_error",
    "headers",
    "load_secret",
    "new_secret",
    "parse_retry",
    "payload",
    "post",
    "read_secret_file",
    "read_sinks",
    "retry_policy",
    "save_secret",
    "secret_sha256",
    "signature",
    "sink_id_for",
    "sinks_in_force",
    "verify_signature",
]
