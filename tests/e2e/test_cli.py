"""The command line end to end on a real home: every command has --help with an example; tables by
default, JSON with --json; each event kind can be emitted and read back; verify passes."""

from __future__ import annotations

import json
import time

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from ledger.sdk.home import Home
from ledger.testing.homes import T0, build_record
from ledger.wire.events import Action
from ledger.wire.timefmt import fmt_time
from processors.cli import build_app

app = build_app()  # the whole `tokenledger` command, as the console script builds it

runner = CliRunner()


def all_commands():
    root = get_command(app)
    out = []

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        out.append(path)

    walk(root, [])
    return out


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "tokenledger")
def test_every_command_has_help_with_an_example(path):
    r = runner.invoke(app, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert "Example: tokenledger" in r.output


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    r = runner.invoke(app, ["init", "--home", str(h), "--json"])
    assert r.exit_code == 0, r.output
    for name in ("planner", "researcher"):
        r = runner.invoke(app, ["agent", "register", name, "--home", str(h), "--priority", "2", "--org", "acme",
                                "--attr", "team=core"])
        assert r.exit_code == 0, r.output
    return h


def test_init_refuses_an_existing_home(home):
    r = runner.invoke(app, ["init", "--home", str(home)])
    assert r.exit_code == 3 and "already exists" in r.output


def test_emit_every_kind_then_tail_and_verify(home):
    h = ["--home", str(home)]
    # a claimed time given in full, a minute ago whole seconds: inside the default skew window of its append
    claimed_us = (time.time_ns() // 1_000_000_000 - 60) * 1_000_000
    cmds = [
        ["emit", "action", "-a", "planner", "--operation", "plan", "--provider", "anthropic", "--model",
         "claude-opus-4-6", "--input-tokens", "1200", "--output-tokens", "300", "--cache-read-tokens", "200",
         "--cost-weight", "3.2", "--org", "acme", "--task", "t1", "--label", "env=test"],
        ["emit", "data", "-a", "researcher", "--bytes-read", "52000", "--source-hash", "sha256:ab"],
        ["emit", "compute", "-a", "researcher", "--node-id", "gpu-1", "--cpu-time-slices", "40", "--gpu-time-slices", "2"],
        ["emit", "trust", "-a", "planner", "--subject", "researcher", "--dimension", "reliability", "--value", "0.75"],
        ["emit", "interaction", "-a", "planner", "--responder", "researcher", "--interaction-id", "c1",
         "--requestor-provider", "anthropic", "--requestor-model", "claude-opus-4-6", "--responder-provider", "openai",
         "--responder-model", "gpt-4.1", "--request-tokens", "1500", "--response-tokens", "4000",
         "--request-cached-tokens", "300", "--cosign", "--time", fmt_time(claimed_us)],
    ]
    ids = []
    for c in cmds:
        r = runner.invoke(app, [*c, *h, "--json"])
        assert r.exit_code == 0, r.output
        ids.append(json.loads(r.stdout)["event_id"])
    r = runner.invoke(app, ["tail", *h, "--json", "--limit", "0"])
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    by_id = {row["event_id"]: row for row in rows}
    assert [by_id[i]["kind"] for i in ids] == ["action", "data", "compute", "trust", "interaction"]
    act = by_id[ids[0]]
    assert act["body"]["cost_weight_milli"] == 3200 and act["body"]["usage"]["cache_read_tokens"] == 200
    assert act["context"] == {"org": "acme", "task": "t1", "env": "test"}
    inter = by_id[ids[4]]
    assert inter["event_time"] == fmt_time(claimed_us)
    assert inter["body"]["request_input"] == {"tokens": 1500, "cached_tokens": 300}
    assert inter["body"]["cosignature"]["key_id"].startswith("ed25519:")
    assert by_id[ids[3]]["body"]["value_milli"] == 750
    r = runner.invoke(app, ["verify", *h])
    assert r.exit_code == 0 and "OK" in r.output
    r = runner.invoke(app, ["tail", *h, "--kind", "trust"])
    assert r.exit_code == 0 and "reliability" in r.output and "data" not in r.output.split("events")[1]


def test_idempotency_key_makes_cli_retries_safe(home):
    args = ["emit", "action", "-a", "planner", "--operation", "plan", "--idempotency-key", "req-42", "--home",
            str(home), "--json"]
    a = json.loads(runner.invoke(app, args).stdout)
    b = json.loads(runner.invoke(app, args).stdout)
    assert a == b  # same id, same seq: nothing appended the second time


def test_keys_and_agents(home):
    r = runner.invoke(app, ["keys", "list", "--home", str(home), "--json"])
    names = {k["signer_id"] for k in json.loads(r.stdout)}
    assert names == {"operator", "processor.notary", "planner", "researcher"}  # init registers the notary
    r = runner.invoke(app, ["keys", "new", "spare", "--home", str(home)])
    assert r.exit_code == 0 and "ed25519:" in r.output
    r = runner.invoke(app, ["agent", "revoke", "researcher", "--home", str(home), "--reason", "lost"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["emit", "action", "-a", "researcher", "--operation", "x", "--home", str(home)])
    # the emitter refuses what every reader would reject (it reads the key ring of the control topic)
    assert r.exit_code == 1 and "revoked_key" in r.output and "appended" not in r.stdout
    # a producer that bypasses the SDK appends it anyway: the log judges it
    h = Home.open(home)
    key = h.load_key("researcher")
    rec, _ = build_record(key, [Action("x")], t=T0 + 10_000)
    lg = h.open_log()
    try:
        lg.append(h.topic, [(b"researcher", rec)])
    finally:
        lg.close()
    r = runner.invoke(app, ["verify", "--home", str(home), "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout)["first_error"]["code"] == "revoked_key"


def test_demo_runs_end_to_end(tmp_path):
    r = runner.invoke(app, ["demo", "--home", str(tmp_path / "d"), "--tasks", "20", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["verify"]["ok"] and res["events"] > 300
    assert set(res["per_agent"]) == {"planner", "researcher", "writer", "critic"}
    from ledger.economics.price_events import seed_events
    from ledger.testing.workload import AGENTS, TASK_SPACING_US, demo_clock, demo_policies

    # + operator, four registrations, the notary's registration and grant, the default price book (price_set),
    # the demo's budget policies and its skew window
    assert res["verify"]["accepted_events"] == (res["events"] + 5 + 2 + len(seed_events())
                                                + len(demo_policies(start_us=0))
                                                + len(demo_clock(20 * TASK_SPACING_US, [a for a, *_ in AGENTS])))
    # a second run on the same home appends a new run and still verifies
    r = runner.invoke(app, ["demo", "--home", str(tmp_path / "d"), "--tasks", "5"])
    assert r.exit_code == 0 and "verify: OK" in r.output
