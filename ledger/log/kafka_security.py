"""How a Kafka log authenticates and encrypts: TLS and SASL settings from a ``kafka://`` URL and a home's config.

Pure: parses and checks settings, names secrets, reads nothing (no file, no environment variable). The Kafka
adapter (``ledger.log.kafka``) turns a ``KafkaSecurity`` into kafka-python arguments and reads the secret files;
``ledger.sdk.home`` (the only reader of environment variables) resolves the variables a setting names and
passes their values in.

URL form: ``kafka://host:port[,host:port...][?name=value&name=value...]`` (values percent-encoded). The home's
config may hold the same names in an object ``"kafka": {...}`` (values strings; ``check_hostname`` may also be a
JSON boolean); a name given in the URL wins over the config. Names:

- ``security``: ``plaintext`` (default) | ``ssl`` | ``sasl_plaintext`` | ``sasl_ssl`` (any case) - Kafka's
  ``security.protocol``: TLS is on for ``ssl`` and ``sasl_ssl``, SASL for ``sasl_plaintext`` and ``sasl_ssl``.
- TLS (only with ``ssl`` / ``sasl_ssl``):
  ``ca`` - PEM file of the CA certificate(s) to trust (default: the system's trust store);
  ``cert`` - PEM file of the client certificate (mutual TLS); ``key`` - PEM file of its private key (needs
  ``cert``; without ``key`` the key must be inside the ``cert`` file); ``key_password_env`` /
  ``key_password_file`` - the key's passphrase; ``check_hostname`` - ``true`` (default) | ``false``: whether the
  broker's certificate must name the host connected to. With ``false`` the chain is still verified against
  the CA; only the name check is off (for brokers reached through an address their certificate does not name).
- SASL (only with ``sasl_plaintext`` / ``sasl_ssl``, and then required):
  ``sasl_mechanism`` - ``PLAIN`` | ``SCRAM-SHA-256`` | ``SCRAM-SHA-512`` | ``OAUTHBEARER`` (any case);
  PLAIN and SCRAM: ``sasl_username`` and exactly one of ``sasl_password_env`` / ``sasl_password_file``;
  OAUTHBEARER: ``oauth_token_command`` - a command line (split like a POSIX shell would, run WITHOUT a shell)
  whose standard output, stripped of surrounding white space, is the bearer token. It runs each time a
  connection authenticates, so it may print a fresh token every time (or cache one itself).

Secrets are never values of the URL or the config, only where to find them: ``*_env`` names an environment
variable (``[A-Za-z_][A-Za-z0-9_]*``), ``*_file`` a file whose content (trailing newline stripped) is the
secret. An inline secret (``sasl_password=``, ``password=``, ``key_password=``, ``token=``, ``oauth_token=``,
``user:password@`` in the authority) is a ValidationError whose value is redacted, as is any unknown name (a
typo must not silently turn security off). Nothing here keeps a secret value, so the ``repr`` of every object
and every error can be printed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, quote

from ledger import limits
from ledger.errors import ValidationError

URL_SCHEME = "kafka://"
REDACTED = "<redacted>"

PROTOCOLS = {"plaintext": "PLAINTEXT", "ssl": "SSL", "sasl_plaintext": "SASL_PLAINTEXT", "sasl_ssl": "SASL_SSL"}
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_MECHANISMS = (*PASSWORD_MECHANISMS, "OAUTHBEARER")


TLS_NAMES = ("ca", "cert", "key", "key_password_env", "key_password_file", "check_hostname")
SASL_NAMES = ("sasl_mechanism", "sasl_username", "sasl_password_env", "sasl_password_file", "oauth_token_command")
NAMES = ("security", *TLS_NAMES, *SASL_NAMES)
# names that would carry a secret itself: refused, with the value redacted
INLINE_SECRET_NAMES = frozenset({"sasl_password", "password", "key_password", "ssl_password", "token",
                                 "oauth_token", "sasl_plain_password", "secret"})

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class SecretRef:
    """Where one secret is: an environment variable's name or a file's path (never the secret)."""

    field: str  # the setting that named it, e.g. "log.sasl_password_env"
    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


@dataclass(frozen=True)
class KafkaSecurity:
    """Checked TLS and SASL settings of one Kafka log. Holds no secret: only where each one is."""

    protocol: str = "PLAINTEXT"
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    key_password: SecretRef | None = None
    check_hostname: bool = True
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretRef | None = None
    oauth_token_command: tuple[str, ...] | None = None
    where: str = "log"  # prefix of field names in errors: "log" (URL) or "kafka" (config)
    from_config: frozenset[str] = frozenset()  # names whose value came from the config (``kafka.<name>`` in errors)

    def field(self, name: str) -> str:
        """The field an error about setting ``name`` names: ``kafka.<name>`` if the config gave it, else
        ``<where>.<name>``."""
        return f"kafka.{name}" if name in self.from_config else f"{self.where}.{name}"

    @property
    def tls(self) -> bool:
        return self.protocol in TLS_PROTOCOLS

    @property
    def sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS

    def secrets(self) -> list[SecretRef]:
        return [s for s in (self.key_password, self.sasl_password) if s is not None]

    def env_names(self) -> list[str]:
        """The environment variables these settings name (the home reads exactly these)."""
        return [s.env for s in self.secrets() if s.env is not None]

    def summary(self) -> dict[str, Any]:
        """What is configured, for ``tokenledger doctor`` (paths and names, no secret)."""
        out: dict[str, Any] = {"security": self.protocol.lower()}
        if self.tls:
            out.update(ca=self.ca or "(system trust store)", check_hostname=self.check_hostname,
                       client_cert=self.cert, client_key=self.key,
                       key_password=self.key_password.describe() if self.key_password else None)
        if self.sasl:
            out.update(sasl_mechanism=self.sasl_mechanism, sasl_username=self.sasl_username,
                       sasl_password=self.sasl_password.describe() if self.sasl_password else None,
                       # the program only: its arguments may carry a client secret
                       oauth_token_command=(f"{self.oauth_token_command[0]} ..." if self.oauth_token_command
                                            else None))
        return {k: v for k, v in out.items() if v is not None}


PLAINTEXT = KafkaSecurity()


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``kafka://servers?params`` -> (``servers``, {name: value}); refuses an inline secret, a repeated name
    and ``user:password@`` before anything could echo the URL."""
    if not isinstance(url, str) or not url.startswith(URL_SCHEME):
        raise ValidationError("log", url if isinstance(url, str) else repr(url), "a Kafka log URL starts with kafka://")
    rest = url[len(URL_SCHEME):]
    servers, _, query = rest.partition("?")
    if "@" in servers:
        raise ValidationError("log", redact_url(url), "credentials never go in the URL: use sasl_username with "
                              "sasl_password_env=VARIABLE or sasl_password_file=/path")
    params: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=len(NAMES) + 1)
    except ValueError:  # its message quotes the field, which could be a secret: not repeated
        raise ValidationError("log", redact_url(url), f"malformed query string or more than {len(NAMES)} "
                              "settings; use ?name=value&name=value") from None
    for name, value in pairs:
        field = f"log.{name}"
        if name.lower() in INLINE_SECRET_NAMES:
            raise ValidationError(field, REDACTED, "a secret never goes in the URL: name an environment variable "
                                  f"({_env_twin(name)}=VARIABLE) or a file ({_file_twin(name)}=/path)")
        if name in params:
            raise ValidationError(field, value, "given twice in the URL")
        params[name] = value
    return servers, params


def redact_url(url: str) -> str:
    """``url`` with user info and every parameter value that could be a secret replaced by ``<redacted>``."""
    head, _, query = url.partition("?")
    if "@" in head:
        scheme, _, authority = head.partition("://")
        head = f"{scheme}://{REDACTED}@{authority.rsplit('@', 1)[1]}"
    if not query:
        return head
    parts = []
    for piece in query.split("&"):
        name, eq, _ = piece.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and (name.lower() in INLINE_SECRET_NAMES or name not in NAMES)
                     else piece)
    return f"{head}?{'&'.join(parts)}"


def parse_security(settings: Mapping[str, Any], *, where: str) -> KafkaSecurity:
    """Check one set of settings (a URL's parameters, ``where="log"``, or the config's ``kafka`` object,
    ``where="kafka"``) and return them; a ValidationError names the field (``<where>.<name>``) and value."""
    _check_names(settings, where)
    s = dict(settings)
    raw_protocol = _text(s, where, "security") or "plaintext"
    protocol = PROTOCOLS.get(raw_protocol.lower())
    if protocol is None:
        raise ValidationError(f"{where}.security", raw_protocol, f"use one of {', '.join(PROTOCOLS)}")
    tls, sasl = protocol in TLS_PROTOCOLS, protocol in SASL_PROTOCOLS
    for group, on, needs in ((TLS_NAMES, tls, "ssl or sasl_ssl"), (SASL_NAMES, sasl, "sasl_plaintext or sasl_ssl")):
        for name in group:
            if name in s and not on:
                raise ValidationError(f"{where}.{name}", s[name] if "password" not in name else REDACTED,
                                      f"applies only with security={needs} (security is {raw_protocol})")
    sec = KafkaSecurity(protocol=protocol, where=where, **_parse_tls(s, where))
    if sasl:
        sec = KafkaSecurity(**{**sec.__dict__, **_parse_sasl(s, where, raw_protocol)})
    return sec


def _check_names(settings: Mapping[str, Any], where: str) -> None:
    """Every name known, no inline secret, every value a bounded string (``check_hostname`` may be a bool)."""
    for name, value in settings.items():
        if not isinstance(name, str) or name.lower() in INLINE_SECRET_NAMES:
            raise ValidationError(f"{where}.{name}", REDACTED, "a secret never goes in the URL or the config: name "
                                  f"an environment variable ({_env_twin(str(name))}=VARIABLE) or a file "
                                  f"({_file_twin(str(name))}=/path)")
        if name not in NAMES:
            raise ValidationError(f"{where}.{name}", REDACTED, f"unknown Kafka setting; known: {', '.join(NAMES)}")
        if name != "check_hostname" and not isinstance(value, str):
            raise ValidationError(f"{where}.{name}", value, "must be a string")
        if isinstance(value, str) and (len(value) > limits.MAX_KAFKA_SETTING_CHARS or "\x00" in value):
            raise ValidationError(f"{where}.{name}", value[:80],
                                  f"must be at most {limits.MAX_KAFKA_SETTING_CHARS} characters "
                                  "with no NUL")


def _text(s: Mapping[str, Any], where: str, name: str) -> str | None:
    v = s.get(name)
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        raise ValidationError(f"{where}.{name}", v, "must not be empty")
    return v


def _parse_tls(s: Mapping[str, Any], where: str) -> dict[str, Any]:
    check_hostname = True
    if "check_hostname" in s:
        v = s["check_hostname"]
        if isinstance(v, bool):
            check_hostname = v
        elif isinstance(v, str) and v.lower() in _BOOLS:
            check_hostname = _BOOLS[v.lower()]
        else:
            raise ValidationError(f"{where}.check_hostname", v, "use true or false")
    cert, key = _text(s, where, "cert"), _text(s, where, "key")
    if key is not None and cert is None:
        raise ValidationError(f"{where}.key", key, "a client key needs its certificate: set cert too")
    key_password = _secret(s, where, "key_password")
    if key_password is not None and cert is None:
        raise ValidationError(key_password.field, key_password.env or key_password.file,
                              "a key passphrase needs a client certificate: set cert (and key)")
    return {"ca": _text(s, where, "ca"), "cert": cert, "key": key, "key_password": key_password,
            "check_hostname": check_hostname}


def _parse_sasl(s: Mapping[str, Any], where: str, raw_protocol: str) -> dict[str, Any]:
    raw_mech = _text(s, where, "sasl_mechanism")
    if raw_mech is None:
        raise ValidationError(f"{where}.sasl_mechanism", None, f"required with security={raw_protocol}; use one "
                              f"of {', '.join(SASL_MECHANISMS)}")
    mechanism = raw_mech.upper()
    if mechanism not in SASL_MECHANISMS:
        raise ValidationError(f"{where}.sasl_mechanism", raw_mech, f"use one of {', '.join(SASL_MECHANISMS)}")
    username = _text(s, where, "sasl_username")
    password = _secret(s, where, "sasl_password")
    raw_command = _text(s, where, "oauth_token_command")
    if mechanism in PASSWORD_MECHANISMS:
        if username is None:
            raise ValidationError(f"{where}.sasl_username", None, f"required with sasl_mechanism={mechanism}")
        if len(username) > limits.MAX_SASL_USERNAME_CHARS:
            raise ValidationError(f"{where}.sasl_username", username[:80],
                                  f"longer than {limits.MAX_SASL_USERNAME_CHARS} "
                                  "characters")
        if password is None:
            raise ValidationError(f"{where}.sasl_password_env", None, f"sasl_mechanism={mechanism} needs a "
                                  "password: set sasl_password_env=VARIABLE or sasl_password_file=/path")
        if raw_command is not None:
            raise ValidationError(f"{where}.oauth_token_command", raw_command,
                                  "applies only with sasl_mechanism=OAUTHBEARER")
        return {"sasl_mechanism": mechanism, "sasl_username": username, "sasl_password": password}
    return _parse_oauth(where, mechanism, username, password, raw_command)


def _parse_oauth(where: str, mechanism: str, username: str | None, password: SecretRef | None,
                 raw_command: str | None) -> dict[str, Any]:
    if username is not None:
        raise ValidationError(f"{where}.sasl_username", username, "OAUTHBEARER takes a token from "
                              "oauth_token_command, not a user name")
    if password is not None:
        raise ValidationError(password.field, password.env or password.file, "OAUTHBEARER takes a token from "
                              "oauth_token_command, not a password")
    if raw_command is None:
        raise ValidationError(f"{where}.oauth_token_command", None,
                              "required with sasl_mechanism=OAUTHBEARER: a command that prints a token")
    try:
        command = tuple(shlex.split(raw_command))
    except ValueError as e:
        raise ValidationError(f"{where}.oauth_token_command", raw_command, f"cannot be split: {e}") from None
    if not command:
        raise ValidationError(f"{where}.oauth_token_command", raw_command, "names no program")
    return {"sasl_mechanism": mechanism, "oauth_token_command": command}


def security_for(url: str, config: Any = None) -> KafkaSecurity:
    """The settings of ``url``: the home config's ``kafka`` object (``config``, may be None) overlaid with the
    URL's parameters (a name in the URL wins). Errors name ``log.<name>`` or ``kafka.<name>``."""
    _, params = split_url(url)
    if config is None:
        return parse_security(params, where="log")
    if not isinstance(config, Mapping):
        raise ValidationError("kafka", type(config).__name__, "must be an object of Kafka settings (see the README)")
    parse_security(config, where="kafka")  # the config alone must be valid, with its own field names
    merged = {**config, **params}
    try:
        sec = parse_security(merged, where="log")
    except ValidationError as e:
        name = e.field.split(".", 1)[1]
        if name in config and name not in params:  # the offending value came from the config
            raise ValidationError(f"kafka.{name}", e.value, e.reason) from None
        raise
    from_config = frozenset(k for k in config if k not in params)

    def origin(ref: SecretRef | None) -> SecretRef | None:
        if ref is None:
            return None
        name = ref.field.split(".", 1)[1]
        return replace(ref, field=f"kafka.{name}") if name in from_config else ref

    return replace(sec, from_config=from_config, key_password=origin(sec.key_password),
                   sasl_password=origin(sec.sasl_password))


def check_config(config: Any) -> None:
    """The home config's ``kafka`` object, checked on its own (``Home.open``)."""
    if config is None:
        return
    if not isinstance(config, Mapping):
        raise ValidationError("kafka", type(config).__name__, "must be an object of Kafka settings")
    parse_security(config, where="kafka")


def url_with(servers: str, **params: str) -> str:
    """A ``kafka://`` URL from bootstrap servers and settings (values percent-encoded)."""
    query = "&".join(f"{k}={quote(v, safe='/:,.-_@')}" for k, v in params.items())
    return f"{URL_SCHEME}{servers}" + (f"?{query}" if query else "")


def _secret(s: Mapping[str, Any], where: str, base: str) -> SecretRef | None:
    env, file = s.get(f"{base}_env"), s.get(f"{base}_file")
    if env is not None and file is not None:
        raise ValidationError(f"{where}.{base}_env", env, f"give {base}_env or {base}_file, not both")
    if env is not None:
        if not isinstance(env, str) or _ENV_NAME_RE.fullmatch(env) is None:
            raise ValidationError(f"{where}.{base}_env", REDACTED, "must be the NAME of an environment variable "
                                  "([A-Za-z_][A-Za-z0-9_]*), never the secret itself")
        return SecretRef(f"{where}.{base}_env", env=env)
    if file is not None:
        if not isinstance(file, str) or not file.strip():
            raise ValidationError(f"{where}.{base}_file", file, "must be a file path")
        return SecretRef(f"{where}.{base}_file", file=file)
    return None


def _env_twin(name: str) -> str:
    return "key_password_env" if "key" in name.lower() else "sasl_password_env"


def _file_twin(name: str) -> str:
    return "key_password_file" if "key" in name.lower() else "sasl_password_file"
