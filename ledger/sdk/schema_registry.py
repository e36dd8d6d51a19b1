"""A Schema Registry client for the flat event topic: register the flat schema, resolve a schema id.

Speaks the documented Confluent Schema Registry REST API (Karapace and Redpanda's registry answer the same), JSON
bodies with content type ``application/vnd.schemaregistry.v1+json``:

    POST /subjects/{subject}/versions        {"schema": "<Avro JSON text>"}  ->  {"id": N}
    GET  /schemas/ids/{id}                                                  ->  {"schema": "<Avro JSON text>"}
    GET  /subjects/{subject}/versions/latest                                ->  {"subject", "id", "version", "schema"}

Registering the same schema again under a subject returns its existing id, so registering at every start is
idempotent. The subject of a topic's values is ``<topic>-value`` (the registry's default TopicNameStrategy, which
Connect, ksqlDB and the Confluent deserializers expect).

Where the URL comes from: ``tokenledger run --schema-registry URL`` (it reaches the processes it starts as the
environment variable ``TOKENLEDGER_SCHEMA_REGISTRY``), else the home's ``config.json`` key ``schema_registry``; none:
the flat topic uses Avro single-object encoding. Only ``http`` / ``https`` URLs without credentials are taken (a
credential in a URL would be printed with it in every error).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger import limits
from ledger.errors import SchemaRegistryError, ValidationError
from ledger.wire import flat
from ledger.wire.schemas import Schema

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ENV_VAR = "TOKENLEDGER_SCHEMA_REGISTRY"  # set by `tokenledger run --schema-registry URL` for its workers
CONFIG_KEY = "schema_registry"  # the home's config.json
REGISTRY_TIMEOUT_S = 10.0  # seconds one request may take (connect + answer)


def value_subject(topic: str) -> str:
    """The subject of ``topic``'s record values under the TopicNameStrategy."""
    subject = f"{topic}-value"
    if not topic or len(subject) > limits.MAX_REGISTRY_SUBJECT_CHARS:
        raise ValidationError("subject", subject, f"must be 1-{limits.MAX_REGISTRY_SUBJECT_CHARS} characters")
    return subject


def check_url(value: Any, field_name: str = CONFIG_KEY) -> str:
    """A registry base URL: http(s), a host, no credentials, no query or fragment; the trailing slash dropped."""
    if not isinstance(value, str) or not value or len(value) > limits.MAX_REGISTRY_URL_CHARS:
        raise ValidationError(field_name, value, f"must be an http(s) URL of at most {limits.MAX_REGISTRY_URL_CHARS} "
                                                 "characters")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(field_name, value, "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(field_name, "<a URL with credentials>", "credentials in the URL are not supported "
                                                                      "(they would be printed with it)")
    if parts.query or parts.fragment:
        raise ValidationError(field_name, value, "must not carry a query or a fragment")
    try:
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number in range)
    except ValueError:
        raise ValidationError(field_name, value, "has a port that is not a number from 0 to 65535") from None
    return value.rstrip("/")


def configured_url(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str | None:
    """The registry URL in force: ``TOKENLEDGER_SCHEMA_REGISTRY`` (what ``tokenledger run --schema-registry`` sets),
    else the home config's ``schema_registry``; None when neither names one (an empty variable names none)."""
    env = os.environ if environ is None else environ
    from_env = env.get(ENV_VAR, "")
    if from_env:
        return check_url(from_env, ENV_VAR)
    from_config = config.get(CONFIG_KEY)
    if from_config is None:
        return None
    return check_url(from_config, CONFIG_KEY)


@dataclass
class SchemaRegistry:
    """One registry (``url`` checked by ``check_url``), with the schemas it resolved kept by id."""

    url: str
    timeout_s: float = REGISTRY_TIMEOUT_S
    _by_id: dict[int, Schema] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.url = check_url(self.url, "schema_registry")

    def register(self, subject: str, schema_text: str) -> int:
        """The id of ``schema_text`` under ``subject``, registering it if the subject has not got it yet."""
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        answer = self._call("POST", path, {"schema": schema_text})
        return flat.check_schema_id("schema_registry.id", answer.get("id"))

    def latest(self, subject: str) -> dict[str, Any]:
        """The subject's latest version: ``subject``, ``id``, ``version``, ``schema``."""
        answer = self._call("GET", f"/subjects/{urllib.parse.quote(subject, safe='')}/versions/latest")
        flat.check_schema_id("schema_registry.id", answer.get("id"))
        if not isinstance(answer.get("schema"), str):
            raise ValidationError("schema_registry.schema", answer.get("schema"), "must be the schema's JSON text")
        return answer

    def flat_schema(self, schema_id: int) -> Schema:
        """The flat writer schema with registry id ``schema_id`` (kept once resolved: ids never change meaning)."""
        known = self._by_id.get(schema_id)
        if known is None:
            answer = self._call("GET", f"/schemas/ids/{flat.check_schema_id('schema_id', schema_id)}")
            text = answer.get("schema")
            if not isinstance(text, str):
                raise ValidationError("schema_registry.schema", text, "must be the schema's JSON text")
            known = self._by_id[schema_id] = flat.schema_from_text(text)
        return known

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        parts = urllib.parse.urlsplit(self.url)
        assert parts.hostname is not None  # check_url
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout_s,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout_s)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": CONTENT_TYPE}
        if data is not None:
            headers["Content-Type"] = CONTENT_TYPE
        where = {"registry": self.url, "request": f"{method} {path}"}
        try:
            conn.request(method, parts.path + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(limits.MAX_REGISTRY_RESPONSE_BYTES + 1)
        except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out, TLS, a broken answer
            raise SchemaRegistryError(f"the schema registry cannot be reached: {type(e).__name__}: {e}",
                                      hint="is the registry running at this URL? (--schema-registry / "
                                           f"{ENV_VAR} / the home's {CONFIG_KEY})", **where) from None
        finally:
            conn.close()
        if len(raw) > limits.MAX_REGISTRY_RESPONSE_BYTES:
            raise SchemaRegistryError(f"the registry's answer is over {limits.MAX_REGISTRY_RESPONSE_BYTES} bytes",
                                      status=resp.status, **where)
        try:
            answer = json.loads(raw)
        except ValueError:
            raise SchemaRegistryError("the registry's answer is not JSON", status=resp.status,
                                      body=raw[:200].decode("utf-8", "replace"), **where) from None
        if resp.status != http.HTTPStatus.OK or not isinstance(answer, dict):
            message = answer.get("message") if isinstance(answer, dict) else None
            code = answer.get("error_code") if isinstance(answer, dict) else None
            raise SchemaRegistryError(f"the registry refused the request: {message or resp.reason}",
                                      status=resp.status, error_code=code, **where)
        return answer
