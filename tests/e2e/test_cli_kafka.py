"""The CLI and the SDK on a Kafka log chosen by URL: init, register, emit, tail, verify, demo, replay.

Runs against the session's broker (tests/conftest.py `kafka_url`), with a topic prefix of its own.
"""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from ledger import Emitter
from processors.cli import build_app

app = build_app()  # the whole `tokenledger` command, as the console script builds it

pytestmark = pytest.mark.kafka
runner = CliRunner()


def test_cli_and_sdk_on_kafka(kafka_url, tmp_path):
    home = str(tmp_path / "home")
    prefix = f"k{uuid.uuid4().hex[:10]}"
    r = runner.invoke(app, ["init", "--home", home, "--log", kafka_url, "--topic-prefix", prefix, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["log"] == kafka_url
    r = runner.invoke(app, ["agent", "register", "alice", "--home", home])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["emit", "action", "-a", "alice", "--operation", "search", "--home", home, "--json"])
    assert r.exit_code == 0, r.output
    with Emitter.open("alice", home=home) as em:  # the SDK picks the Kafka log from the home
        ids = [em.action("llm.call", provider="openai", model="gpt-4.1", input_tokens=10 + i, output_tokens=3)
               for i in range(25)]
    r = runner.invoke(app, ["tail", "--home", home, "--json", "--limit", "0"])
    got = {json.loads(line)["event_id"] for line in r.stdout.splitlines()}
    assert set(ids) <= got
    r = runner.invoke(app, ["verify", "--home", home, "--json"])
    from ledger.economics.price_events import seed_events

    # operator + alice, the notary's registration and grant, init's price book, one action, 25 SDK actions
    assert r.exit_code == 0 and json.loads(r.stdout)["accepted_events"] == 2 + 2 + len(seed_events()) + 1 + 25


def test_demo_and_replay_on_kafka(kafka_url, tmp_path):
    home = str(tmp_path / "home")
    prefix = f"k{uuid.uuid4().hex[:10]}"
    assert runner.invoke(app, ["init", "--home", home, "--log", kafka_url, "--topic-prefix", prefix]).exit_code == 0
    r = runner.invoke(app, ["demo", "--home", home, "--tasks", "8", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["verify"]["ok"] and res["log"] == kafka_url
    kinds = {row["kind"]: row["events"] for row in res["views"]["events by kind"]}
    assert kinds["interaction"] > 0 and kinds["action"] > 0
    r = runner.invoke(app, ["replay", "journal", "--home", home, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["equal"]
