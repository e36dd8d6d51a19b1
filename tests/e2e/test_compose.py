"""The compose files and the Dockerfile: what production relies on, checked without a Docker engine.

Method: every ``compose/*.yml`` is read with PyYAML (a runtime dependency; YAML merge keys included) and,
where a compose CLI is installed (``docker compose`` v2 or Debian's ``docker-compose`` 1.29), run through
its ``config``; each is checked for pinned images, ports bound to 127.0.0.1, a KRaft Kafka (no ZooKeeper)
whose topics come from a one-shot ``topics`` service creating exactly ``ledger.log.base.TOPICS`` with
``ledger.log.kafka.TOPIC_CONFIGS`` (the script itself is run against stub Kafka tools), named volumes, no
``pip install`` at start, one service per processor of ``processors.REGISTRY``, and every ``tokenledger``
command parsed by the real command line (``processors.cli.build_app``): a flag that does not exist fails.
``compose/production.yml`` must have 3 brokers, replication factor 3 and ``min.insync.replicas=2``, and a
pinned Schema Registry. The ``Dockerfile`` must be multi-stage, install the package at build time, run as a
non-root user, and get every file the wheel needs through ``.dockerignore``.

The image itself is not built here (that needs a Docker engine).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from ledger.limits import MAX_KAFKA_REQUEST_BYTES
from ledger.log.base import TOPICS
from ledger.log.kafka import TOPIC_CONFIGS
from processors import REGISTRY
from processors.cli import build_app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILES = sorted(COMPOSE_DIR.glob("*.yml"))
PRODUCTION = COMPOSE_DIR / "production.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

KAFKA_IMAGE = "apache/kafka:"
INTERNAL_PORT = 9092  # the listener containers use
HOST_LISTENER_PORT = 9094  # the listener published on the host
# serve listens on every interface of its container; only the published port decides who reaches it
CONTAINER_ALL_INTERFACES = "0.0.0.0"  # noqa: S104
STATE_MOUNT = "/state"
HOME = "/state/home"
PRODUCTION_REPLICAS = 3
PRODUCTION_MIN_ISR = 2
# keys Debian's docker-compose 1.29 accepts at the top of a file (it refuses `name`; `version` is obsolete in v2)
TOP_LEVEL_KEYS = {"services", "volumes", "networks", "configs", "secrets"}
PIP_INSTALL = re.compile(r"\bpip[0-9.]*\s+install\b|-m\s+pip\b")
VERSION_TAG = re.compile(r"[0-9]+(\.[0-9]+)+(-[a-z0-9.-]+)?")


# ---------------------------------------------------------------------------------- reading the files


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), f"{path.name}: no services"
    return doc


@pytest.fixture(params=COMPOSE_FILES, ids=lambda p: p.name)
def path(request: pytest.FixtureRequest) -> Path:
    return Path(request.param)


@pytest.fixture
def compose(path: Path) -> dict[str, Any]:
    return load(path)


@pytest.fixture
def production() -> dict[str, Any]:
    return load(PRODUCTION)


def brokers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Kafka nodes: services running the Kafka image as a broker (not the one-shot topics service)."""
    return {name: svc for name, svc in compose["services"].items()
            if svc.get("image", "").startswith(KAFKA_IMAGE) and "KAFKA_PROCESS_ROLES" in svc.get("environment", {})}


def cluster_url(compose: dict[str, Any]) -> str:
    return "kafka://" + ",".join(f"{svc['hostname']}:{INTERNAL_PORT}" for svc in brokers(compose).values())


def is_tokenledger_image(svc: dict[str, Any]) -> bool:
    return bool(str(svc.get("image", "")).partition(":")[0] == "tokenledger")


def tokenledger_commands(svc: dict[str, Any]) -> list[list[str]]:
    """Every `tokenledger ...` argv a service runs: its command, or the commands inside `sh -c SCRIPT`."""
    command = svc.get("command") or []
    assert isinstance(command, list), "commands are exec-form lists (no shell re-splitting of arguments)"
    if command[:1] == ["tokenledger"]:
        return [command]
    if command[:2] == ["sh", "-c"]:
        lexer = shlex.shlex(command[2], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words, found = list(lexer), []
        argv: list[str] = []
        for word in [*words, ";"]:
            if word in ("||", "&&", ";", "|"):
                if argv[:1] == ["exec"]:
                    argv = argv[1:]
                if argv[:1] == ["tokenledger"]:
                    found.append(argv)
                argv = []
            else:
                argv.append(word)
        return found
    return []


def parse_cli(argv: list[str]) -> dict[str, Any]:
    """Parse ``tokenledger ARGS`` with the real command line, without running it; the parsed parameters.

    An unknown command or option, a missing value or a value of the wrong type raises (click's UsageError)."""
    assert argv[0] == "tokenledger"
    cmd: Any = typer.main.get_command(build_app())
    parent, name, args = None, "tokenledger", argv[1:]
    while hasattr(cmd, "get_command"):  # a group: descend to the named sub-command
        ctx = cmd.make_context(name, [], parent=parent, resilient_parsing=True)
        assert args, f"{' '.join(argv)}: a group needs a sub-command"
        sub = cmd.get_command(ctx, args[0])
        assert sub is not None, f"{' '.join(argv)}: no command {args[0]!r}"
        cmd, parent, name, args = sub, ctx, args[0], args[1:]
    return dict(cmd.make_context(name, args, parent=parent).params)


def topic_specs(compose: dict[str, Any]) -> dict[str, int]:
    """LEDGER_TOPICS of the topics service: {topic: partitions}."""
    env = compose["services"]["topics"]["environment"]
    specs = [s.rsplit(":", 1) for s in env["LEDGER_TOPICS"].split()]
    out = {topic: int(n) for topic, n in specs}
    assert len(out) == len(specs), "a topic is listed twice"
    return out


def topic_configs(compose: dict[str, Any]) -> dict[str, str]:
    env = compose["services"]["topics"]["environment"]
    return dict(item.split("=", 1) for item in env["TOPIC_CONFIGS"].split(","))


# ---------------------------------------------------------------------------------- every compose file


def test_there_is_a_development_and_a_production_file() -> None:
    assert {p.name for p in COMPOSE_FILES} >= {"docker-compose.yml", "production.yml"}


def test_the_file_is_plain_yaml_both_compose_generations_accept(path: Path, compose: dict[str, Any]) -> None:
    extra = {k for k in compose if k not in TOP_LEVEL_KEYS and not k.startswith("x-")}
    assert not extra, f"top-level keys Debian's docker-compose refuses: {extra}"
    for name, svc in compose["services"].items():
        assert isinstance(svc, dict) and ("image" in svc or "build" in svc), name
        assert "container_name" not in svc, f"{name}: a fixed container name clashes between projects"


def _compose_clis() -> list[tuple[str, list[str] | None]]:
    """(label, argv prefix or None when absent): docker compose v2 and Debian's docker-compose 1.x."""
    found: list[tuple[str, list[str] | None]] = []
    v2 = shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    found.append(("docker compose", ["docker", "compose"] if v2 else None))
    found.append(("docker-compose", [exe] if (exe := shutil.which("docker-compose")) else None))
    return found


@pytest.mark.parametrize(("label", "cli"), _compose_clis(), ids=["compose-v2", "docker-compose-v1"])
def test_the_compose_cli_accepts_the_file(label: str, cli: list[str] | None, path: Path,
                                         compose: dict[str, Any]) -> None:
    if cli is None:
        pytest.skip(f"`{label}` is not installed (Debian: apt-get install docker-compose; v2: the compose plugin)")
    # the defaults in the file, not this machine's environment, are what is checked
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and not k.endswith("_HOST_PORT")}
    result = subprocess.run([*cli, "-f", str(path), "config"], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == set(compose["services"]), "the CLI reads the same services"
    for name, svc in resolved["services"].items():
        if is_tokenledger_image(svc):
            assert Path(svc["build"]["context"]).resolve() == ROOT, f"{name}: builds the repository's Dockerfile"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and VERSION_TAG.fullmatch(tag), f"{name}: {image!r} is not pinned to a version"
        if is_tokenledger_image(svc):
            assert tag == VERSION, f"{name}: the tokenledger image is tagged with the project's version {VERSION}"
            assert svc["build"] == {"context": "..", "dockerfile": "Dockerfile"}, f"{name}: built from ../Dockerfile"
        else:
            assert "build" not in svc, name


def test_published_ports_are_bound_to_loopback(compose: dict[str, Any]) -> None:
    published = [(name, p) for name, svc in compose["services"].items() for p in svc.get("ports", [])]
    assert published, "the broker and the front door must be reachable from the host"
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port!r} listens beyond loopback"


def test_interpolation_cannot_break(path: Path) -> None:
    # compose expands $VAR and ${VAR}; a literal dollar for the shell must be written $$
    code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    bare = code.replace("$$", "")
    assert not re.findall(r"\$(?!\{)", bare), "unescaped $ in the compose file"
    for var in re.findall(r"\$\{([^}]*)\}", bare):
        assert re.fullmatch(r"[A-Z0-9_]+_HOST_PORT:-[0-9]+", var), f"${{{var}}}: only host ports are variable"


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    nodes = brokers(compose)
    assert nodes, "no Kafka broker"
    voters = {f"{svc['environment']['KAFKA_NODE_ID']}@{svc['hostname']}:9093" for svc in nodes.values()}
    assert len(voters) == len(nodes), "node ids are distinct"
    assert len({svc["environment"]["CLUSTER_ID"] for svc in nodes.values()}) == 1, "one cluster"
    for name, svc in nodes.items():
        env = svc["environment"]
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, name
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, f"{name}: every node is a voter"
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "KRaft needs a base64 UUID cluster id"
        assert not any("ZOOKEEPER" in k for k in env), name
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", f"{name}: a typo must not create a topic"
        assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= MAX_KAFKA_REQUEST_BYTES, f"{name}: a full signed batch fits"
        assert env["KAFKA_LOG_MESSAGE_TIMESTAMP_TYPE"] == "LogAppendTime", f"{name}: the broker stamps records"
        assert env["KAFKA_LOG_RETENTION_MS"] == env["KAFKA_LOG_RETENTION_BYTES"] == "-1", f"{name}: keeps everything"
    assert not any("zookeeper" in name for name in compose["services"])


def test_host_and_containers_reach_each_broker_where_it_advertises(compose: dict[str, Any]) -> None:
    for name, svc in brokers(compose).items():
        env = svc["environment"]
        advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
        assert advertised["INTERNAL"] == f"{svc['hostname']}:{INTERNAL_PORT}", name
        assert f"EXTERNAL://:{HOST_LISTENER_PORT}" in env["KAFKA_LISTENERS"].split(","), name
        (published,) = svc["ports"]
        assert published == f"{advertised['EXTERNAL']}:{HOST_LISTENER_PORT}", f"{name}: the host is told what it reaches"
        (mount,) = svc["volumes"]
        volume, _, target = mount.partition(":")
        assert volume in compose["volumes"] and target == env["KAFKA_LOG_DIRS"], f"{name}: the log is on a volume"
        assert svc["healthcheck"]["test"][0] == "CMD-SHELL" and f"{svc['hostname']}:{INTERNAL_PORT}" in \
            svc["healthcheck"]["test"][1], f"{name}: healthy means this broker answers"


def test_topics_service_creates_exactly_the_ledger_topics(compose: dict[str, Any]) -> None:
    specs = topic_specs(compose)
    assert set(specs) == set(TOPICS), "compose creates exactly ledger.log.base.TOPICS (add new topics to both)"
    assert specs["ledger.control"] == 1, "control is one partition: a total order every reader drains first"
    assert specs["ledger.events"] > 1, "events scale out by partition"
    configs = topic_configs(compose)
    assert {k: configs.get(k) for k in TOPIC_CONFIGS} == TOPIC_CONFIGS, "what ledger.log.kafka creates topics with"
    assert int(configs["max.message.bytes"]) >= MAX_KAFKA_REQUEST_BYTES
    topics = compose["services"]["topics"]
    assert topics["environment"]["BOOTSTRAP"] == cluster_url(compose).removeprefix("kafka://")
    assert topics["depends_on"] == {name: {"condition": "service_healthy"} for name in brokers(compose)}
    assert topics["restart"] == "no"
    assert int(topics["environment"]["REPLICATION_FACTOR"]) <= len(brokers(compose))


def test_every_file_runs_the_same_topics_script() -> None:
    scripts = {p.name: load(p)["services"]["topics"]["command"] for p in COMPOSE_FILES}
    assert len({json.dumps(s) for s in scripts.values()}) == 1, "the files differ only in the environment"


# ---------------------------------------------------------------------------------- the topics script, run


def _stub_kafka_bin(tmp_path: Path) -> Path:
    """kafka-topics.sh / kafka-configs.sh stand-ins that record their arguments; --describe answers with the
    replication factor in $STUB_RF (what an existing topic would have)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    recorder = ("#!/usr/bin/env python3\nimport json, os, sys\n"
                f"open({str(log)!r}, 'a').write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + '\\n')\n"
                "a = sys.argv[1:]\n"
                "if '--describe' in a and '--topic' in a:\n"
                "    t = a[a.index('--topic') + 1]\n"
                "    print(f\"Topic: {t}\\tTopicId: x\\tPartitionCount: 1\\tReplicationFactor: {os.environ['STUB_RF']}\\t"
                "Configs: \")\n")
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        (bin_dir / tool).write_text(recorder)
        (bin_dir / tool).chmod(stat.S_IRWXU)
    return bin_dir


def _run_topics_script(compose: dict[str, Any], tmp_path: Path, existing_rf: str) -> tuple[subprocess.CompletedProcess[str],
                                                                                           list[list[str]]]:
    topics = compose["services"]["topics"]
    assert topics["entrypoint"] == ["/bin/bash", "-c"]
    script = topics["command"][0].replace("$$", "$")  # what compose hands the shell
    assert "bin=/opt/kafka/bin\n" in script
    script = script.replace("bin=/opt/kafka/bin\n", f"bin={_stub_kafka_bin(tmp_path)}\n")
    env = {"PATH": os.environ["PATH"], "STUB_RF": existing_rf, **topics["environment"]}
    result = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    log = tmp_path / "calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def test_the_topics_script_creates_each_topic_with_its_settings(compose: dict[str, Any], tmp_path: Path) -> None:
    rf = compose["services"]["topics"]["environment"]["REPLICATION_FACTOR"]
    result, calls = _run_topics_script(compose, tmp_path, existing_rf=rf)
    assert result.returncode == 0, result.stderr
    bootstrap = compose["services"]["topics"]["environment"]["BOOTSTRAP"]
    wanted_configs = [f"{k}={v}" for k, v in topic_configs(compose).items()]
    created = {}
    for call in calls:
        tool, args = call[0], call[1:]
        assert args[:2] == ["--bootstrap-server", bootstrap], call
        if tool == "kafka-topics.sh" and "--create" in args:
            assert "--if-not-exists" in args, "re-running is safe"
            configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
            assert configs == wanted_configs, call
            assert args[args.index("--replication-factor") + 1] == rf
            created[args[args.index("--topic") + 1]] = int(args[args.index("--partitions") + 1])
    assert created == topic_specs(compose)
    altered = [c[c.index("--entity-name") + 1] for c in calls if c[0] == "kafka-configs.sh"]
    assert altered == list(topic_specs(compose)), "an existing topic gets the configs re-applied"
    for c in calls:
        if c[0] == "kafka-configs.sh":
            assert c[c.index("--add-config") + 1] == ",".join(wanted_configs)


def test_the_topics_script_refuses_a_topic_with_fewer_replicas(production: dict[str, Any], tmp_path: Path) -> None:
    result, calls = _run_topics_script(production, tmp_path, existing_rf="1")
    assert result.returncode == 1
    assert "ledger.control exists with another replication factor than 3" in result.stderr
    assert not any(c[0] == "kafka-configs.sh" for c in calls), "it stops at the first wrong topic"


# ---------------------------------------------------------------------------------- the tokenledger services


def test_every_tokenledger_command_exists_with_its_flags(compose: dict[str, Any]) -> None:
    seen = 0
    for name, svc in compose["services"].items():
        if not is_tokenledger_image(svc):
            continue
        argvs = tokenledger_commands(svc)
        assert argvs, f"{name}: runs no tokenledger command"
        for argv in argvs:
            params = parse_cli(argv)  # raises on an unknown command or flag
            assert params["home"] == HOME, f"{name}: every service uses the shared home"
            assert params["log"] == cluster_url(compose), f"{name}: {params['log']} is not this file's cluster"
            if argv[1] == "run":
                assert set(params["names"]) <= set(REGISTRY), f"{name}: {params['names']}"
            seen += 1
    assert seen >= len(REGISTRY) + 2  # the processors, init and serve


def test_the_command_check_refuses_what_the_cli_does_not_have() -> None:
    argv = ["tokenledger", "serve", "--host", CONTAINER_ALL_INTERFACES, "--port", "8787"]
    assert parse_cli(argv) | {"host": CONTAINER_ALL_INTERFACES, "port": 8787} == parse_cli(argv)
    for bad in (["tokenledger", "run", "journal", "--no-such-flag", "3"], ["tokenledger", "serve", "--port", "x"],
                ["tokenledger", "init", "--partitions"]):
        with pytest.raises(Exception) as info:
            parse_cli(bad)
        assert any(c.__name__ == "UsageError" for c in type(info.value).__mro__), bad
    with pytest.raises(AssertionError, match="no command 'nope'"):
        parse_cli(["tokenledger", "nope"])
    assert tokenledger_commands({"command": ["sh", "-c", "test -f x || exec tokenledger init --home /h && echo"]}) \
        == [["tokenledger", "init", "--home", "/h"]]


def test_every_processor_has_its_own_service(compose: dict[str, Any]) -> None:
    runs = {}
    for name, svc in compose["services"].items():
        for argv in tokenledger_commands(svc):
            if argv[1] == "run":
                params = parse_cli(argv)
                assert len(params["names"]) == 1, f"{name}: one processor per service"
                runs[params["names"][0]] = name
    assert runs == {p: p for p in REGISTRY}, "each processor of processors.REGISTRY runs as the service of its name"


def test_init_creates_the_shared_home_once_before_anything_runs_on_it(compose: dict[str, Any]) -> None:
    init = compose["services"]["init"]
    assert init["command"][:2] == ["sh", "-c"]
    assert init["command"][2].startswith(f"test -f {HOME}/config.json || exec tokenledger init "), "idempotent"
    (argv,) = tokenledger_commands(init)
    assert parse_cli(argv)["partitions"] == topic_specs(compose)["ledger.events"], "the home knows the partitions"
    assert init["depends_on"] == {"topics": {"condition": "service_completed_successfully"}}
    assert init["restart"] == "no"
    for name, svc in compose["services"].items():
        if is_tokenledger_image(svc) and name != "init":
            assert svc["depends_on"]["init"] == {"condition": "service_completed_successfully"}, name
            assert set(svc["depends_on"]) <= {"init", "schema-registry"}, name
            assert svc["restart"] == "unless-stopped", name


def test_state_lives_on_named_volumes_and_nothing_is_installed_at_start(path: Path, compose: dict[str, Any]) -> None:
    declared = compose["volumes"]
    for name, svc in compose["services"].items():
        for mount in svc.get("volumes", []):
            source = mount.partition(":")[0]
            assert source in declared, f"{name}: {mount!r} is not a named volume (no bind mounts of the repository)"
        if is_tokenledger_image(svc):
            assert svc["volumes"] == [f"processor-state:{STATE_MOUNT}"], name
        started = json.dumps([svc.get("entrypoint"), svc.get("command")])
        assert not PIP_INSTALL.search(started), f"{name}: installs at start; the image has the package"
    # explicit names: the ledger is found again whatever the project is called, and no two files share a volume
    assert all(isinstance(v, dict) and v.get("name") for v in declared.values()), "every volume has a name"
    others = [v["name"] for p in COMPOSE_FILES if p != path for v in load(p)["volumes"].values()]
    assert not {v["name"] for v in declared.values()} & set(others)


def test_serve_listens_in_the_container_and_publishes_on_loopback(compose: dict[str, Any]) -> None:
    serve = compose["services"]["serve"]
    (argv,) = tokenledger_commands(serve)
    params = parse_cli(argv)
    assert argv[1] == "serve" and params["host"] == CONTAINER_ALL_INTERFACES, "reachable from the published port"
    (published,) = serve["ports"]
    assert re.fullmatch(rf"127\.0\.0\.1:\$\{{SERVE_HOST_PORT:-[0-9]+\}}:{params['port']}", published), published
    assert f"127.0.0.1:{params['port']}/healthz" in " ".join(serve["healthcheck"]["test"])


# ---------------------------------------------------------------------------------- production


def test_production_replicates_every_record_three_times(production: dict[str, Any]) -> None:
    nodes = brokers(production)
    assert len(nodes) == PRODUCTION_REPLICAS, "three Kafka nodes"
    assert len({svc["hostname"] for svc in nodes.values()}) == PRODUCTION_REPLICAS
    assert len({p for svc in nodes.values() for p in svc["ports"]}) == PRODUCTION_REPLICAS, "a host port each"
    for name, svc in nodes.items():
        env = svc["environment"]
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == PRODUCTION_REPLICAS, name
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == PRODUCTION_MIN_ISR, name
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == PRODUCTION_REPLICAS, name
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == PRODUCTION_REPLICAS, name
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == PRODUCTION_MIN_ISR, name
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", f"{name}: acknowledged records are never lost"
    env = production["services"]["topics"]["environment"]
    assert int(env["REPLICATION_FACTOR"]) == PRODUCTION_REPLICAS
    assert int(topic_configs(production)["min.insync.replicas"]) == PRODUCTION_MIN_ISR


def test_production_has_a_pinned_schema_registry_on_the_cluster(production: dict[str, Any]) -> None:
    registry = production["services"]["schema-registry"]
    assert registry["image"].startswith("confluentinc/cp-schema-registry:")
    env = registry["environment"]
    servers = env["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"].split(",")
    assert servers == [f"PLAINTEXT://{svc['hostname']}:{INTERNAL_PORT}" for svc in brokers(production).values()]
    assert int(env["SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR"]) == PRODUCTION_REPLICAS
    assert registry["ports"] == ["127.0.0.1:${SCHEMA_REGISTRY_HOST_PORT:-8081}:8081"]
    # the journal publishes ledger.events.flat with its schema registered there, once the registry answers
    url = f"http://{registry['hostname']}:{env['SCHEMA_REGISTRY_LISTENERS'].rsplit(':', 1)[1]}"
    for name, svc in production["services"].items():
        for argv in tokenledger_commands(svc):
            wanted = url if argv[1:3] == ["run", "journal"] else None
            assert parse_cli(argv).get("schema_registry") == wanted, name
    assert production["services"]["journal"]["depends_on"]["schema-registry"] == {"condition": "service_healthy"}


# ---------------------------------------------------------------------------------- the image


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            word, _, args = pending.strip().partition(" ")
            out.append((word.upper(), " ".join(args.split())))
            pending = ""
    return out


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in dockerfile_instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_the_image_is_multi_stage_on_a_pinned_slim_python_311() -> None:
    args = dict(a.split("=", 1) for ins, a in dockerfile_instructions() if ins == "ARG" and "=" in a)
    stages = dockerfile_stages()
    assert len(stages) >= 2, "build in one stage, run from another"
    for stage in stages:
        base = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], base)
        assert re.fullmatch(r"python:3\.11\.[0-9]+-slim-[a-z]+", image), f"{image!r}: a pinned slim Python 3.11"


def test_the_package_is_installed_at_build_time_and_runs_as_a_non_root_user() -> None:
    build, final = dockerfile_stages()[0], dockerfile_stages()[-1]
    build_runs = " ".join(a for ins, a in build if ins == "RUN")
    assert "pip wheel" in build_runs and re.search(r"pip install \S*tokenledger-\*\.whl", build_runs), \
        "the build stage makes the wheel and installs it into the environment the final stage copies"
    stage_name = build[0][1].split()[-1]
    venv = re.search(r"python -m venv (\S+)", build_runs)
    assert venv is not None
    assert ("COPY", f"--from={stage_name} {venv[1]} {venv[1]}") in final, "the installed environment, not sources"
    assert not any(ins == "COPY" and not a.startswith("--from=") for ins, a in final), "no sources in the image"
    final_runs = " ".join(a for ins, a in final if ins == "RUN")
    assert not PIP_INSTALL.search(final_runs), "the final stage installs nothing: it copies the environment"
    users = [a for ins, a in final if ins == "USER"]
    assert users, "the image names its user"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root") and re.search(rf"useradd .*--uid {uid}\b", final_runs), "a non-root user it made"
    after_user = final[[ins for ins, _ in final].index("USER"):]
    assert ("RUN", "tokenledger --help > /dev/null") in after_user, "the build fails if the command cannot load"
    cmd = [json.loads(a) for ins, a in final if ins in ("CMD", "ENTRYPOINT")]
    assert cmd and not PIP_INSTALL.search(json.dumps(cmd)), "nothing is installed at start"
    env = " ".join(a for ins, a in final if ins == "ENV")
    assert f"TOKENLEDGER_HOME={HOME}" in env and f"{venv[1]}/bin" in env


def _ignored(rel: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used: last matching pattern wins; a directory's rule covers its
    contents; `!` re-includes; `**/` matches at any depth."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.removeprefix("!")
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        glob = pat.removeprefix("**/")
        matched = any(fnmatch.fnmatchcase(p, pat) for p in prefixes) or (
            pat.startswith("**/") and any(fnmatch.fnmatchcase(part, glob) for part in parts))
        if matched:
            ignored = not negate
    return ignored


def test_the_build_context_holds_every_file_the_wheel_is_made_of() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    context = {f for f in tracked if not _ignored(f, patterns)}
    copied = [a.split()[:-1] for ins, a in dockerfile_stages()[0] if ins == "COPY"]
    sources = [s for srcs in copied for s in srcs]
    assert set(sources) == {"pyproject.toml", "README.md", "schemas", "ledger", "processors"}
    for src in sources:
        inside = {f for f in tracked if f == src or f.startswith(src + "/")}
        assert inside and inside <= context, f"{src}: {sorted(inside - context)[:5]} left out of the build context"
    # the wire schemas ship through the ledger/avsc link, which must point into the context
    assert os.readlink(ROOT / "ledger" / "avsc") == "../schemas" and "schemas" in sources
    assert not {f for f in context if f.startswith(("tests/", "scripts/", ".venv/", ".git/"))}
    assert _ignored("ledger/__pycache__/x.pyc", patterns) and _ignored("home/views.duckdb", patterns)
