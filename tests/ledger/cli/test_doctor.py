"""``tokenledger doctor``: the rules on constructed cluster layouts (exact findings), and the command on real
logs: SQLite homes (good, wrong mode, journal mode, missing file), a Tansu cluster (topics created by the ledger,
a topic with finite retention and CreateTime, a control topic with 3 partitions, no cluster at all) and a TLS
listener (settings from config.json)."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.cli.app import build_app
from ledger.log.kafka import ClusterLayout, TopicLayout
from ledger.log.kafka_security import url_with
from ledger.sdk.doctor import OK, PROBLEM, WARN, Finding, judge_kafka
from ledger.sdk.home import Home
from ledger.testing.broker import Broker, free_port
from ledger.testing.homes import make_home
from ledger.testing.tls import TlsBroker, make_pki

GOOD = {"min.insync.replicas": "2", "message.timestamp.type": "LogAppendTime", "retention.ms": "-1",
        "retention.bytes": "-1", "cleanup.policy": "delete"}


def _run(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(build_app(), ["doctor", *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def _by(findings: list[dict[str, Any]], check: str, subject: str) -> dict[str, Any]:
    (f,) = [f for f in findings if f["check"] == check and f["subject"] == subject]
    return f


# ---------------------------------------------------------------------------------------------- rules


def _layout(brokers: int, **topic: Any) -> ClusterLayout:
    base = dict(name="ledger.events", exists=True, partitions=3, replication_factor=3, in_sync=3, configs=GOOD)
    return ClusterLayout("c1", brokers, [TopicLayout(**{**base, **topic})])


def _statuses(layout: ClusterLayout, required: dict[str, int] | None = None) -> dict[str, str]:
    return {f.check: f.status for f in judge_kafka(layout, required or {"ledger.events": 3}, "b1:9093")}


def test_a_production_layout_is_all_ok() -> None:
    assert _statuses(_layout(3)) == {"partitions": OK, "replication": OK, "min.insync.replicas": OK,
                                     "timestamp type": OK, "retention": OK}


@pytest.mark.parametrize(("layout", "check", "status", "fix_has"), [
    (_layout(3, replication_factor=1, in_sync=1), "replication", PROBLEM, "kafka-reassign-partitions"),
    (_layout(1, replication_factor=1, in_sync=1, configs={**GOOD, "min.insync.replicas": "1"}), "replication", WARN,
     "3 brokers"),
    (_layout(3, in_sync=2), "replication", WARN, "out of sync"),
    (_layout(3, configs={**GOOD, "min.insync.replicas": "1"}), "min.insync.replicas", PROBLEM,
     "min.insync.replicas=2"),
    (_layout(3, configs={k: v for k, v in GOOD.items() if k != "min.insync.replicas"}), "min.insync.replicas",
     PROBLEM, "min.insync.replicas=2"),  # not set: Kafka's default 1
    (_layout(3, configs={**GOOD, "min.insync.replicas": "4"}), "min.insync.replicas", PROBLEM,
     "min.insync.replicas=2"),
    (_layout(3, configs={**GOOD, "min.insync.replicas": "3"}), "min.insync.replicas", WARN, "min.insync.replicas=2"),
    (_layout(3, configs={**GOOD, "message.timestamp.type": "CreateTime"}), "timestamp type", PROBLEM,
     "message.timestamp.type=LogAppendTime"),
    (_layout(3, configs={**GOOD, "retention.ms": "604800000"}), "retention", PROBLEM, "retention.ms=-1"),
    (_layout(3, configs={**GOOD, "retention.bytes": "1073741824"}), "retention", PROBLEM, "retention.bytes=-1"),
    (_layout(3, configs={**GOOD, "cleanup.policy": "compact,delete"}), "retention", PROBLEM,
     "cleanup.policy=delete"),
    (_layout(3, configs={k: v for k, v in GOOD.items() if k != "retention.ms"}), "retention", WARN,
     "retention.ms=-1"),
    (_layout(3, partitions=6), "partitions", WARN, '"partitions": 6'),
])
def test_each_rule(layout: ClusterLayout, check: str, status: str, fix_has: str) -> None:
    (f,) = [f for f in judge_kafka(layout, {"ledger.events": 3}, "b1:9093") if f.check == check]
    assert f.status == status, f
    assert f.fix is not None and fix_has in f.fix
    if "kafka-configs" in f.fix:
        assert "--bootstrap-server b1:9093" in f.fix and "--entity-name ledger.events" in f.fix


def test_control_topic_must_have_one_partition_and_missing_required_topics_are_problems() -> None:
    layout = ClusterLayout("c1", 3, [
        TopicLayout("ledger.control", True, 2, 3, 3, GOOD),
        TopicLayout("ledger.events", False, 0, 0, 0, {}),
        TopicLayout("ledger.rejected", False, 0, 0, 0, {}),
    ])
    found = judge_kafka(layout, {"ledger.control": 1, "ledger.events": 1}, "b:1")
    assert next(f for f in found if f.subject == "ledger.control" and f.check == "partitions").status == PROBLEM
    assert [(f.check, f.status) for f in found if f.subject == "ledger.events"] == [("topic", PROBLEM)]
    assert [(f.check, f.status) for f in found if f.subject == "ledger.rejected"] == [("topic", WARN)]


# ---------------------------------------------------------------------------------------------- SQLite


def test_a_fresh_sqlite_home_is_ok(tmp_path: Path) -> None:
    home = make_home(tmp_path / "h")
    code, report = _run("--home", str(home.path))
    assert code == 0 and report["ok"] is True and report["backend"] == "sqlite"
    f = report["findings"]
    assert _by(f, "journal mode", str(home.log_file))["detail"] == "wal"
    assert _by(f, "permissions", str(home.log_file)) == {"check": "permissions", "subject": str(home.log_file),
                                                         "status": OK, "detail": "mode 600", "fix": None}
    assert _by(f, "topic", "ledger.control")["detail"] == "1 partition(s)"
    assert {x["status"] for x in f} == {OK}


def test_sqlite_permissions_and_journal_mode_problems_say_what_to_run(tmp_path: Path) -> None:
    home = make_home(tmp_path / "h", agents=())
    path = home.log_file
    os.chmod(path, 0o644)
    code, report = _run("--home", str(home.path))
    assert code == 0  # readable by others: a warning only
    assert _by(report["findings"], "permissions", str(path))["status"] == WARN
    os.chmod(path, 0o666)  # noqa: S103 - the world-writable log doctor must report
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    code, report = _run("--home", str(home.path))
    assert code == 1 and report["ok"] is False
    perm = _by(report["findings"], "permissions", str(path))
    assert (perm["status"], perm["fix"]) == (PROBLEM, f"chmod 600 {path}")
    journal = _by(report["findings"], "journal mode", str(path))
    assert journal["status"] == PROBLEM and journal["detail"].startswith("delete") and "WAL" in journal["fix"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o666"  # doctor changed nothing


def test_a_missing_sqlite_file_is_a_problem_and_is_not_created(tmp_path: Path) -> None:
    home = Home.init(tmp_path / "h")
    missing = tmp_path / "h" / "other.sqlite"
    code, report = _run("--home", str(home.path), "--log", f"sqlite://{missing}")
    assert code == 1
    assert report["findings"] == [{"check": "file", "subject": str(missing), "status": PROBLEM,
                                   "detail": "does not exist", "fix": "run `tokenledger init` for this home"}]
    assert not missing.exists()


def test_the_table_output_names_problems_and_fixes(tmp_path: Path) -> None:
    home = make_home(tmp_path / "h", agents=())
    os.chmod(home.log_file, 0o666)  # noqa: S103 - the world-writable log doctor must report
    result = CliRunner().invoke(build_app(), ["doctor", "--home", str(home.path)], terminal_width=300)
    assert result.exit_code == 1
    assert "PROBLEM" in result.stdout and "chmod 600" in result.stdout  # (the path may fold across lines)
    assert "1 problem(s)" in result.stdout


# ---------------------------------------------------------------------------------------------- Kafka


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    from ledger.testing.broker import binary_path

    try:
        binary_path()
    except Exception as e:  # no Tansu for this platform
        pytest.skip(str(e))
    with Broker(directory=tmp_path / "broker") as b:
        yield b


@pytest.mark.kafka
def test_a_home_on_tansu_has_no_problem_but_warns_about_one_broker(broker: Broker, tmp_path: Path) -> None:
    home = make_home(tmp_path / "h", log_url=broker.url, agents=())
    code, report = _run("--home", str(home.path))
    assert code == 0, report
    f = report["findings"]
    assert _by(f, "connect", broker.bootstrap)["detail"] == "cluster tokenledger: 1 broker(s)"
    for topic in ("ledger.control", "ledger.events"):
        assert _by(f, "partitions", topic)["detail"] == "1"
        assert _by(f, "replication", topic)["status"] == WARN
        assert _by(f, "timestamp type", topic) == {"check": "timestamp type", "subject": topic, "status": OK,
                                                   "detail": "LogAppendTime", "fix": None}
        assert _by(f, "retention", topic)["status"] == OK
    assert _by(f, "security", broker.bootstrap)["status"] == OK  # plaintext on loopback


@pytest.mark.kafka
def test_a_ledger_topic_with_finite_retention_and_create_time_is_a_problem(broker: Broker, tmp_path: Path) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    home = make_home(tmp_path / "h", log_url=broker.url, agents=())
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic("ledger.rejected", 1, 1, topic_configs={
            "retention.ms": "604800000", "message.timestamp.type": "CreateTime"})])
    finally:
        admin.close()
    code, report = _run("--home", str(home.path))
    assert code == 1
    f = report["findings"]
    retention = _by(f, "retention", "ledger.rejected")
    assert retention["status"] == PROBLEM and "retention.ms=604800000" in retention["detail"]
    assert retention["fix"] == (f"kafka-configs.sh --bootstrap-server {broker.bootstrap} --alter --entity-type topics "
                                "--entity-name ledger.rejected --add-config "
                                "retention.ms=-1,retention.bytes=-1,cleanup.policy=delete")
    assert _by(f, "timestamp type", "ledger.rejected")["status"] == PROBLEM
    assert _by(f, "retention", "ledger.events")["status"] == OK


@pytest.mark.kafka
def test_a_control_topic_with_three_partitions_is_a_problem(broker: Broker, tmp_path: Path) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic("ledger.control", 3, 1)])
    finally:
        admin.close()
    home = Home.init(tmp_path / "h", log_url=broker.url)
    home.open_log().close()  # creates ledger.events; the control topic keeps its 3 partitions
    code, report = _run("--home", str(home.path))
    assert code == 1
    assert _by(report["findings"], "partitions", "ledger.control")["status"] == PROBLEM


@pytest.mark.kafka
def test_no_cluster_is_a_connect_problem_and_doctor_creates_nothing(tmp_path: Path) -> None:
    port = free_port()
    home = Home.init(tmp_path / "h", log_url=f"kafka://127.0.0.1:{port}")
    code, report = _run("--home", str(home.path))
    assert code == 1
    connect = _by(report["findings"], "connect", f"127.0.0.1:{port}")
    assert connect["status"] == PROBLEM and "cannot reach" in connect["detail"]


@pytest.mark.kafka
def test_doctor_over_tls_with_settings_from_the_config(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", server_names=("broker.example.internal",))
    with TlsBroker(pki, tmp_path / "broker") as tb:
        home = Home.init(tmp_path / "h", log_url=tb.url)
        cfg = json.loads(home.config_file.read_text())
        cfg["kafka"] = {"security": "ssl", "ca": str(pki.ca), "check_hostname": False}
        home.config_file.write_text(json.dumps(cfg))
        Home.open(home.path).open_log().close()
        code, report = _run("--home", str(home.path))
        assert code == 0, report
        sec = _by(report["findings"], "security", tb.bootstrap)
        assert sec["status"] == WARN and "check_hostname=False" in sec["detail"]
        assert _by(report["findings"], "connect", tb.bootstrap)["status"] == OK
        # a CA file that is gone: a settings problem naming the field, before any connection
        cfg["kafka"]["ca"] = str(tmp_path / "gone.pem")
        home.config_file.write_text(json.dumps(cfg))
        code, report = _run("--home", str(home.path))
        assert code == 1
        assert report["findings"][0]["check"] == "settings" and report["findings"][0]["subject"] == "kafka.ca"


def test_an_inline_secret_in_the_url_is_a_settings_problem_never_printed(tmp_path: Path) -> None:
    home = Home.init(tmp_path / "h")
    url = url_with("127.0.0.1:1", security="sasl_ssl", sasl_mechanism="PLAIN", sasl_username="u") + \
        "&sasl_password=hunter2-secret"
    result = CliRunner().invoke(build_app(), ["doctor", "--home", str(home.path), "--log", url, "--json"])
    assert result.exit_code == 1
    assert "hunter2-secret" not in result.output
    report = json.loads(result.stdout)
    assert report["findings"][0]["subject"] == "log.sasl_password" and "<redacted>" in report["log"]


def test_finding_is_plain_data() -> None:
    assert Finding("c", "s", OK, "d").fix is None
