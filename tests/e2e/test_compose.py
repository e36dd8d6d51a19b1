"""compose/docker-compose.yml: structure checks (no Docker needed).

Method: parse the file and check what production relies on: pinned images (never ``latest``), a
KRaft-mode Kafka (no ZooKeeper), every published port bound to 127.0.0.1, a topic-creation service
that creates exactly ``ledger.log.base.TOPICS``, broker and topic size limits that fit a full signed
batch (``ledger.limits.MAX_KAFKA_REQUEST_BYTES``), compose interpolation that cannot break, and a
processor template that runs ``tokenledger run NAME --log kafka://kafka:9092``.

PyYAML is not a dependency, so the file is parsed with ``mini_yaml`` below: the subset of YAML the
compose file is written in (block mappings and sequences, quoted and plain scalars, JSON-style flow
sequences, ``|`` blocks, anchors). Anything else is an error, so the file cannot drift outside what
this test reads. Where PyYAML is installed, both parsers must agree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ledger.limits import MAX_KAFKA_REQUEST_BYTES
from ledger.log.base import TOPICS

COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
PROCESSOR_LOG_URL = "kafka://kafka:9092"


# ---------------------------------------------------------------------------------- a YAML subset


class MiniYaml:
    """Parser for the YAML subset described in the module docstring (raises ValueError outside it)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.anchors: dict[str, Any] = {}

    def load(self) -> Any:
        i = self._next(0)
        value, i = self._block(i, self._indent(i))
        if self._next(i) < len(self.lines):
            raise ValueError(f"line {self._next(i) + 1}: unexpected indentation")
        return value

    def _next(self, i: int) -> int:
        """Index of the next line with content (blank lines and comment lines skipped)."""
        while i < len(self.lines) and (not self.lines[i].strip() or self.lines[i].lstrip().startswith("#")):
            i += 1
        return i

    def _indent(self, i: int) -> int:
        return len(self.lines[i]) - len(self.lines[i].lstrip(" "))

    def _block(self, i: int, indent: int) -> tuple[Any, int]:
        if self.lines[i].lstrip().startswith("- "):
            return self._sequence(i, indent)
        return self._mapping(i, indent)

    def _mapping(self, i: int, indent: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        merged: set[str] = set()  # keys that came from `<<:`; an explicit key overrides them (YAML merge)
        while (i := self._next(i)) < len(self.lines) and self._indent(i) == indent:
            text = self.lines[i].strip()
            m = re.fullmatch(r"([A-Za-z0-9_.<-]+):(?: (.*))?", text)
            if m is None:
                raise ValueError(f"line {i + 1}: expected `key: value`: {text!r}")
            key, rest = m[1], (m[2] or "").strip()
            value, i = self._value(rest, i, indent)
            if key == "<<":
                merged |= set(value) - set(out)
                out = {**value, **out}
            elif key in out and key not in merged:
                raise ValueError(f"line {i}: duplicate key {key!r}")
            else:
                merged.discard(key)
                out[key] = value
        return out, i

    def _sequence(self, i: int, indent: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        while (i := self._next(i)) < len(self.lines) and self._indent(i) == indent:
            text = self.lines[i].strip()
            if not text.startswith("- "):
                raise ValueError(f"line {i + 1}: expected `- item`")
            rest = text[2:].strip()
            if re.fullmatch(r"[A-Za-z0-9_.-]+:( .*)?", rest):
                raise ValueError(f"line {i + 1}: mappings inside sequences are outside the subset")
            value, i = self._value(rest, i, indent)
            out.append(value)
        return out, i

    def _value(self, rest: str, i: int, indent: int) -> tuple[Any, int]:
        """The value after `key:` or `- ` on line i; returns it and the index after it."""
        anchor = None
        if rest.startswith("&"):
            anchor, _, rest = rest[1:].partition(" ")
        if rest == "|":
            value, nxt = self._literal(i + 1, indent)
        elif rest == "":
            nxt = self._next(i + 1)
            if nxt < len(self.lines) and self._indent(nxt) > indent:
                value, nxt = self._block(nxt, self._indent(nxt))
            else:
                value = None
        elif rest.startswith("*"):
            value, nxt = json.loads(json.dumps(self.anchors[rest[1:]])), i + 1  # a copy
        else:
            value, nxt = self._scalar(rest, i), i + 1
        if anchor is not None:
            self.anchors[anchor] = value
        return value, nxt

    def _literal(self, i: int, indent: int) -> tuple[str, int]:
        """A `|` block: the following lines indented deeper, dedented, with one final newline (clip)."""
        body: list[str] = []
        base = None
        while i < len(self.lines) and (not self.lines[i].strip() or self._indent(i) > indent):
            if self.lines[i].strip():
                base = self._indent(i) if base is None else base
            body.append(self.lines[i])
            i += 1
        text = "\n".join(line[base or 0:] for line in body).rstrip("\n")
        return text + "\n", i

    @staticmethod
    def _scalar(s: str, i: int) -> Any:
        if s[0] in "\"[{":
            return json.loads(s)  # double-quoted scalars and flow collections are written JSON-style
        if s[0] == "'":
            return s[1:-1].replace("''", "'")
        if " #" in s or s[0] in "&*!%@`|>":
            raise ValueError(f"line {i + 1}: outside the subset: {s!r}")
        if s in ("true", "false"):
            return s == "true"
        if s in ("null", "~"):
            return None
        if re.fullmatch(r"[-+]?[0-9]+", s):
            return int(s)
        return s


def mini_yaml(text: str) -> Any:
    return MiniYaml(text).load()


# ---------------------------------------------------------------------------------- the compose file


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(text: str) -> dict[str, Any]:
    doc = mini_yaml(text)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def _services_and_template(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**compose["services"], "x-processor": compose["x-processor"]}


def test_the_parser_reads_the_subset_and_refuses_the_rest() -> None:
    doc = mini_yaml('a: &t\n  b: 1\n  c: ["x", "y"]\nd:\n  <<: *t\n  e: |\n    one\n      two\n  f:\n    - "q"\n    - p\n')
    assert doc == {"a": {"b": 1, "c": ["x", "y"]}, "d": {"b": 1, "c": ["x", "y"], "e": "one\n  two\n", "f": ["q", "p"]}}
    for bad in ("a: 1\na: 2\n", "a:\n  - b: 1\n", "a: b # c\n", "a b\n"):
        with pytest.raises(ValueError):
            mini_yaml(bad)


def test_pyyaml_agrees_where_installed(text: str, compose: dict[str, Any]) -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; mini_yaml alone reads the file")
    assert yaml.safe_load(text) == compose


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in _services_and_template(compose).items():
        image = svc.get("image", "")
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image!r} is not pinned"
        assert re.fullmatch(r"[0-9]+(\.[0-9]+)+(-[a-z0-9.-]+)?", tag), f"{name}: {tag!r} is not a version"
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:3.9.")


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "KRaft needs a base64 UUID cluster id"
    assert not any("ZOOKEEPER" in k for k in env)
    assert not any("zookeeper" in name for name in compose["services"])
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "a typo must not create a topic"


def test_published_ports_are_bound_to_loopback(compose: dict[str, Any]) -> None:
    published = [(name, p) for name, svc in _services_and_template(compose).items() for p in svc.get("ports", [])]
    assert published, "the broker must be reachable from the host"
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port!r} listens beyond loopback"


def test_containers_and_host_reach_the_broker_where_it_advertises(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["INTERNAL"] == PROCESSOR_LOG_URL.removeprefix("kafka://")
    host_port = advertised["EXTERNAL"].removeprefix("127.0.0.1:")
    (published,) = compose["services"]["kafka"]["ports"]
    assert published.startswith(f"127.0.0.1:{host_port}:"), "the host must be told the address it can reach"
    assert "kafka-data" in compose["volumes"] and any(
        v.startswith("kafka-data:") for v in compose["services"]["kafka"]["volumes"]), "the ledger must survive restarts"


def _created_topics(compose: dict[str, Any]) -> dict[str, int]:
    script = "\n".join(compose["services"]["topics"]["command"])
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s*create (\S+) (\d+)\s*$", script, re.MULTILINE)}


def test_topic_service_creates_exactly_the_ledger_topics(compose: dict[str, Any]) -> None:
    created = _created_topics(compose)
    assert set(created) == set(TOPICS)
    assert all(n >= 1 for n in created.values()) and created["ledger.events"] > 1, "events scale out by partition"
    topics = compose["services"]["topics"]
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert topics["restart"] == "no"
    script = "\n".join(topics["command"])
    assert "--if-not-exists" in script and "set -euo pipefail" in script, "re-running it is safe; a failure shows"
    assert "retention.ms=-1" in script and "cleanup.policy=delete" in script, "the log keeps every record"


def test_size_limits_fit_a_full_signed_batch(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= MAX_KAFKA_REQUEST_BYTES
    sizes = re.findall(r"max\.message\.bytes=(\d+)", "\n".join(compose["services"]["topics"]["command"]))
    assert sizes and all(int(s) >= MAX_KAFKA_REQUEST_BYTES for s in sizes)


def test_interpolation_cannot_break(text: str) -> None:
    # compose expands $VAR and ${VAR}; a literal dollar for the shell must be written $$
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    bad = re.findall(r"(?<!\$)\$(?![{$])", code.replace("$$", ""))
    assert not bad, "unescaped $ in compose file"
    for var in re.findall(r"\$\{([^}]*)\}", code.replace("$$", "")):
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*(:-[^}]*)?", var), f"${{{var}}}"


def test_processor_template_runs_a_processor_against_the_cluster(compose: dict[str, Any], text: str) -> None:
    template = compose["x-processor"]
    command = template["command"]
    assert command[:2] == ["tokenledger", "run"] and command[command.index("--log") + 1] == PROCESSOR_LOG_URL
    assert template["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert "--home" in command, "processors share the ledger home created by the init service"
    assert template["entrypoint"][2].endswith('exec "$$0" "$$@"'), "the entrypoint must hand over to the command"
    assert re.search(r"^x-processor: &processor$", text, re.MULTILINE), "the template is a YAML anchor to merge"
    assert "<<: *processor" in text, "the file shows how to add a processor with the anchor"


def test_every_processor_has_a_service(compose: dict[str, Any]) -> None:
    from processors import REGISTRY

    for name in REGISTRY:
        service = compose["services"].get(name)
        assert service is not None, f"compose has no service for the {name} processor"
        cmd = service["command"]
        assert cmd[:3] == ["tokenledger", "run", name] and cmd[cmd.index("--log") + 1] == PROCESSOR_LOG_URL


def test_init_service_creates_the_shared_home_once(compose: dict[str, Any]) -> None:
    init = compose["services"]["init"]
    script = init["command"][-1]
    assert script.startswith("test -f /state/home/config.json ||"), "init must be idempotent"
    assert "tokenledger init --home /state/home --log kafka://kafka:9092" in script
    assert init["depends_on"] == {"topics": {"condition": "service_completed_successfully"}}
