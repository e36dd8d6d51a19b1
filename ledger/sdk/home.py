"""The ledger home: one directory with the operator key, agent keys, emitter state, config, (by
default) the embedded log, and what the processors keep and publish.

This module is the ONE place that knows the layout; every other module asks ``HomeLayout`` (a path
only, opens nothing) or ``Home`` (the layout plus its config) for a path::

    <home>/config.json                      log URL, topic, trusted operator(s) (public keys only)
    <home>/keys/<signer>.key                Ed25519 key files, mode 0600
    <home>/state/emitters.sqlite            chain heads and idempotency windows of local emitters (restarts continue)
    <home>/state/locks/                     one lock file per signer (two emitters for one signer refuse to start)
    <home>/log.sqlite                       the embedded log (unless config.json names another log)
    <home>/processors/<name>/               a processor's private files: state.duckdb, status.json, replays
    <home>/views/<name>/<view>/*.parquet    the views a processor published (read by anyone, never written)
    <home>/views/views.sql                  CREATE VIEW statements over them, for plain DuckDB
    <home>/state/tokens.sqlite              API tokens of `tokenledger serve` (SHA-256 hashes, scopes, expiry), 0600
    <home>/secrets/webhooks/<sink_id>.key   webhook signing secrets, 0600 (dirs 0700); the log holds their SHA-256
    <home>/report.html                      the last cost report the demo wrote

A new home is made by ``Home.init`` (files) then ``registration.bootstrap`` (the operator's registration and
the default price book, appended as control events).

The home is chosen by ``--home``, else the ``TOKENLEDGER_HOME`` environment variable, else
``~/.tokenledger``. This module is the only reader of tokenledger's environment variables: besides those two,
``TOKENLEDGER_WEBHOOK_RETRY`` (``webhook_retry_setting``) sets the delivery worker's retry schedule, for tests and
operators who want another one than ``ledger.limits``'s (``ledger.sdk.webhooks.parse_retry`` says its form).
It also reads the variables a Kafka log's security settings name (``sasl_password_env=NAME``,
``key_password_env=NAME``; ``kafka_log_options``), exactly those and only when it opens that log.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.errors import HomeError, ValidationError
from ledger.files import read_text_bounded
from ledger.integrity.keys import SigningKey, load_key, save_key
from ledger.log import Log, open_log
from ledger.log.kafka_security import URL_SCHEME as KAFKA_URL_SCHEME
from ledger.log.kafka_security import check_config as check_kafka_config
from ledger.log.kafka_security import security_for

ENV_HOME = "TOKENLEDGER_HOME"
ENV_LOG = "TOKENLEDGER_LOG"
ENV_WEBHOOK_RETRY = "TOKENLEDGER_WEBHOOK_RETRY"
CONFIG_VERSION = 1
OPERATOR_ID = "operator"
SIGNER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")  # used with fullmatch
OPERATOR_LOCK_WAIT_S = 30.0  # how long an operator command waits for another one to finish
DEFAULT_TOPIC_PREFIX = "ledger"  # topics are <prefix>.events, <prefix>.rejected, ...
TOPIC_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")  # used with fullmatch


def check_topic_prefix(value: Any) -> str:
    if not isinstance(value, str) or TOPIC_PREFIX_RE.fullmatch(value) is None:
        raise ValidationError("topic_prefix", value, "must be 1-101 characters of letters, digits and . _ -")
    return value


def check_signer_id(value: Any, field: str = "agent_id") -> str:
    """Signer ids name key files too: letters, digits and ``._:@-``, 1..128 characters."""
    if not isinstance(value, str) or SIGNER_ID_RE.fullmatch(value) is None:
        raise ValidationError(field, value, "must be 1-128 characters of letters, digits and . _ : @ - "
                              "(starting with a letter or digit)")
    return value


def resolve_home(cli_value: str | Path | None = None) -> Path:
    if cli_value:
        return Path(cli_value).expanduser()
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".tokenledger"


def webhook_retry_setting() -> str | None:
    """The delivery worker's retry schedule as ``TOKENLEDGER_WEBHOOK_RETRY`` gives it (None: the defaults of
    ``ledger.limits``); parsed and checked by ``ledger.sdk.webhooks.parse_retry``."""
    return os.environ.get(ENV_WEBHOOK_RETRY) or None


def kafka_log_options(url: str, kafka_config: Any = None) -> dict[str, Any]:
    """What ``open_log`` needs beyond a ``kafka://`` URL: its security settings (the home config's ``kafka``
    object overlaid with the URL's parameters) and the values of the environment variables they name (only
    those; a variable that is not set is left out, and the log's ValidationError names the setting). No
    options for other logs."""
    if not url.startswith(KAFKA_URL_SCHEME):
        return {}
    security = security_for(url, kafka_config)
    env = {name: os.environ[name] for name in security.env_names() if name in os.environ}
    return {"security": security, "env": env}


def resolve_log_url(cli_value: str | None, home: Home | None) -> str:
    if cli_value:
        return cli_value
    env = os.environ.get(ENV_LOG)
    if env:
        return env
    if home is None:
        raise HomeError("no log given", hint="pass --log URL or --home DIR")
    return str(home.config["log"])


CONFIG_FILE = "config.json"
KEYS_DIR = "keys"
STATE_DIR = "state"
LOCKS_DIR = "locks"  # under state/
VIEW_CACHE_DIR = "view-cache"  # under state/: readers' checked private copies of published view files
LOG_FILE = "log.sqlite"
PROCESSORS_DIR = "processors"
SHARD_DIR_RE = re.compile(r"shard-(\d+)-of-(\d+)")  # a shard's directory under its processor's (and views')
VIEWS_DIR = "views"
VIEWS_SQL_FILE = "views.sql"  # under views/
REPORT_FILE = "report.html"
TOKENS_FILE = "tokens.sqlite"  # under state/
SECRETS_DIR = "secrets"
WEBHOOK_SECRETS_DIR = "webhooks"  # under secrets/
WEBHOOK_SECRET_SUFFIX = ".key"  # noqa: S105 - a file name suffix, not a password


@dataclass
class HomeLayout:
    """Where each part of a home lives. Paths only: it opens, creates and checks nothing, so a
    reader of published views can use it on a bare directory."""

    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def keys_dir(self) -> Path:
        return self.path / KEYS_DIR

    def key_path(self, signer_id: str) -> Path:
        return self.keys_dir / f"{check_signer_id(signer_id)}.key"

    @property
    def state_dir(self) -> Path:
        return self.path / STATE_DIR

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / LOCKS_DIR

    @property
    def view_cache_dir(self) -> Path:
        """Private copies of published view files that a reader has checked against their signed manifest
        (``ledger.sdk.published``), kept so each file is hashed and copied once, not on every query."""
        return self.state_dir / VIEW_CACHE_DIR

    @property
    def log_file(self) -> Path:
        """The embedded log's file (used unless config.json names another log)."""
        return self.path / LOG_FILE

    def processor_dir(self, name: str, shard: str | None = None) -> Path:
        """A processor's private files (state.duckdb, status.json, replays): one writer, that processor; a shard's
        (``shard``: its label ``shard-I-of-N``, ``processors.runtime.shards``) in a directory of its own below."""
        d = self.path / PROCESSORS_DIR / name
        return d if shard is None else d / shard

    @property
    def views_root(self) -> Path:
        return self.path / VIEWS_DIR

    def views_dir(self, name: str, shard: str | None = None) -> Path:
        """Where processor ``name`` publishes its views (``<view>/*.parquet`` and ``_state.json``); a shard of it
        (``shard``: its label ``shard-I-of-N``) in a directory of its own below."""
        d = self.views_root / name
        return d if shard is None else d / shard

    def shard_views_dirs(self, name: str) -> dict[str, Path]:
        """The shards of processor ``name`` that have a views directory: label ``shard-I-of-N`` -> directory."""
        d = self.views_root / name
        if not d.is_dir():
            return {}
        return {p.name: p for p in sorted(d.iterdir()) if p.is_dir() and SHARD_DIR_RE.fullmatch(p.name)}

    def view_dir(self, name: str, view: str) -> Path:
        """The Parquet parts of one published view of processor ``name``."""
        return self.views_dir(name) / view

    @property
    def views_sql_file(self) -> Path:
        return self.views_root / VIEWS_SQL_FILE

    @property
    def report_file(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def secrets_dir(self) -> Path:
        """Secrets that must never reach the log (mode 0700): today the webhook signing secrets."""
        return self.path / SECRETS_DIR

    @property
    def webhook_secrets_dir(self) -> Path:
        return self.secrets_dir / WEBHOOK_SECRETS_DIR

    def webhook_secret_path(self, sink_id: str) -> Path:
        """The signing secret of webhook sink ``sink_id`` (mode 0600; its SHA-256 is in the sink's control event)."""
        return self.webhook_secrets_dir / f"{check_signer_id(sink_id, 'sink_id')}{WEBHOOK_SECRET_SUFFIX}"

    @property
    def tokens_file(self) -> Path:
        """The API tokens ``tokenledger serve`` accepts (``ledger.sdk.tokens``): hashes only, never a token."""
        return self.state_dir / TOKENS_FILE


@dataclass(frozen=True)
class Registration:
    """A signer registered on the log by the operator (``Home.register_signer``)."""

    signer_id: str
    key_id: str
    role: str
    event_id: str
    key_file: str


def _check_config_fields(config: dict[str, Any]) -> None:
    """The fields a home's config must have right before anything opens a log with them: a log URL that is
    not a string would open a SQLite file named after it in the working directory, a bad topic prefix would
    create topics nobody reads, and a home without an operator trusts nobody (ValueError: ``open`` reports
    it as a malformed config naming the field and value)."""
    if not isinstance(config["log"], str) or not config["log"]:
        raise ValidationError("log", config["log"], "must be a log URL string (sqlite:///path, kafka://host:port)")
    check_topic_prefix(config.get("topic_prefix", DEFAULT_TOPIC_PREFIX))
    check_kafka_config(config.get("kafka"))  # TLS/SASL settings of a Kafka log (ledger.log.kafka_security)
    partitions = config.get("partitions", 1)
    if not isinstance(partitions, int) or isinstance(partitions, bool):
        raise ValidationError("partitions", partitions, "must be a whole number")
    operators = config["operators"]
    if not isinstance(operators, dict) or not operators:
        raise ValidationError("operators", operators, "must map at least one operator id to its public key (hex)")
    for k, v in operators.items():
        if not isinstance(v, str) or len(v) != 2 * limits.PUBLIC_KEY_BYTES:
            raise ValidationError(f"operators.{k}", v, f"must be {2 * limits.PUBLIC_KEY_BYTES} hex characters")
        try:
            bytes.fromhex(v)
        except ValueError:
            raise ValidationError(f"operators.{k}", v, "must be hexadecimal") from None


@dataclass
class Home(HomeLayout):
    config: dict[str, Any]

    # -- creation and opening

    @classmethod
    def init(cls, path: Path, *, log_url: str | None = None, topic_prefix: str = DEFAULT_TOPIC_PREFIX,
             partitions: int = 1) -> Home:
        """Create a new home (refuses a non-empty directory that is not a home). Appends nothing to the
        log: ``ledger.sdk.registration.bootstrap`` does."""
        layout = HomeLayout(Path(path))
        path = layout.path
        if layout.config_file.exists():
            raise HomeError("a ledger home already exists here", path=str(path),
                            hint="use it as it is, or choose another --home")
        if path.exists() and any(path.iterdir()):
            raise HomeError("directory is not empty and is not a ledger home", path=str(path),
                            hint="choose an empty or new directory for --home")
        for sub in (layout.keys_dir, layout.locks_dir):
            sub.mkdir(parents=True, exist_ok=True)
        os.chmod(layout.keys_dir, 0o700)
        operator = SigningKey.generate(OPERATOR_ID)
        save_key(layout.key_path(OPERATOR_ID), operator)
        config = {
            "version": CONFIG_VERSION,
            "log": log_url or f"sqlite://{layout.log_file.resolve()}",
            "topic_prefix": check_topic_prefix(topic_prefix),
            "partitions": partitions,
            "operators": {OPERATOR_ID: operator.public.raw.hex()},
        }
        tmp = layout.config_file.with_name(CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        os.replace(tmp, layout.config_file)
        return cls(path, config)

    @classmethod
    def open(cls, path: Path) -> Home:
        path = Path(path)
        cfg = HomeLayout(path).config_file
        if not path.is_dir():
            raise HomeError("ledger home does not exist", path=str(path),
                            hint=f"create one with `tokenledger init --home {path}`")
        if not cfg.exists():
            raise HomeError("directory is not a ledger home (no config.json)", path=str(path),
                            hint=f"create one with `tokenledger init --home {path}`, or pass the right --home")
        try:
            text = read_text_bounded(cfg, limits.MAX_CONFIG_FILE_BYTES, field="config",
                                     limit_name="MAX_CONFIG_FILE_BYTES")
        except ValidationError as e:  # not a regular file, too large, not UTF-8: read no further
            raise HomeError(f"config.json cannot be used: {e.reason}", path=str(cfg)) from None
        try:
            config = json.loads(text)
            if config.get("version") != CONFIG_VERSION or "log" not in config or "operators" not in config:
                raise ValueError("missing version/log/operators")
            _check_config_fields(config)
        except (ValueError, AttributeError, TypeError) as e:  # ValidationError included: it names field and value
            raise HomeError(f"config.json is malformed: {e}", path=str(cfg)) from None
        return cls(path, config)

    # -- parts

    @property
    def topic(self) -> str:
        """The topic agents append to: ``<prefix>.events``."""
        return self.topic_for("events")

    @property
    def control_topic(self) -> str:
        """Where operators append control events (one partition: a total order readers drain first)."""
        return self.topic_for("control")

    @property
    def ledger_topics(self) -> list[str]:
        """The signed input topics in the order every reader verifies them: control, then events."""
        return [self.control_topic, self.topic]

    def topic_for(self, name: str) -> str:
        """Physical topic of a logical one (events, rejected, allocations, ...): ``<prefix>.<name>``."""
        return f"{self.config.get('topic_prefix', DEFAULT_TOPIC_PREFIX)}.{name}"

    def anchors(self) -> dict[str, bytes]:
        return {k: bytes.fromhex(v) for k, v in self.config["operators"].items()}

    def load_key(self, signer_id: str) -> SigningKey:
        key = load_key(self.key_path(signer_id))
        if key.signer_id != signer_id:
            raise HomeError("key file belongs to another signer", path=str(self.key_path(signer_id)),
                            expected=signer_id, actual=key.signer_id)
        return key

    def operator_key(self) -> SigningKey:
        return self.load_key(OPERATOR_ID)

    def key_names(self) -> list[str]:
        return sorted(p.stem for p in self.keys_dir.glob("*.key"))

    def open_log(self, url: str | None = None) -> Log:
        """Open the home's log (or ``url``) and make sure its ledger topics exist. A Kafka log gets the config's
        ``kafka`` security settings and the secrets they name in environment variables (``kafka_log_options``)."""
        target = url or self.config["log"]
        log = open_log(target, **kafka_log_options(str(target), self.config.get("kafka")))
        log.ensure_topic(self.control_topic, 1)
        log.ensure_topic(self.topic, int(self.config.get("partitions", 1)))
        return log
