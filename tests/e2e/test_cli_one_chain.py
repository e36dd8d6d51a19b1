"""The command line never acknowledges what readers reject: `agent register` refuses a second key for an
agent the log already has (pointing to `agent rotate`), and `import` refuses a signer whose chain another
command writes (the operator's, on the control topic), while an ordinary import verifies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.sdk.home import Home
from ledger.testing.samples import jsonl, openai_payload
from processors.cli import build_app

app = build_app()
runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    r = runner.invoke(app, ["init", "--home", str(h), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["agent", "register", "alice", "--home", str(h)])
    assert r.exit_code == 0, r.output
    return h


def _ends(h: Path) -> tuple[int, ...]:
    home = Home.open(h)
    log = home.open_log()
    try:
        return tuple(log.end_offset(t, p) for t in home.ledger_topics for p in range(log.partitions(t)))
    finally:
        log.close()


def _verify(h: Path) -> dict:
    r = runner.invoke(app, ["verify", "--home", str(h), "--json"])
    report = json.loads(r.stdout)
    assert (r.exit_code == 0) == report["ok"], r.output
    return report


def test_register_refuses_an_agent_the_log_already_has_and_rotate_replaces_its_lost_key(home):
    Home.open(home).key_path("alice").unlink()  # the key file is lost; the log still trusts its key
    before = _ends(home)
    r = runner.invoke(app, ["agent", "register", "alice", "--home", str(home)])
    assert r.exit_code == 2, r.output
    assert "already registered" in r.output and "agent rotate alice" in r.output
    assert _ends(home) == before, "nothing appended"
    assert not Home.open(home).key_path("alice").exists(), "no second key saved"

    r = runner.invoke(app, ["agent", "rotate", "alice", "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["emit", "action", "-a", "alice", "--operation", "after-rotate", "--home", str(home)])
    assert r.exit_code == 0, r.output
    report = _verify(home)
    assert report["ok"] and report["rejected"] == {}


def test_register_again_with_the_homes_key_file_is_a_re_registration(home):
    r = runner.invoke(app, ["agent", "register", "alice", "--home", str(home), "--priority", "3"])
    assert r.exit_code == 0, r.output
    assert _verify(home)["ok"]


def test_import_as_the_operator_is_refused_and_an_agents_import_is_accepted_by_verify(home, tmp_path):
    f = tmp_path / "usage.jsonl"
    f.write_text(jsonl([openai_payload(1, created=int(time.time()))]))  # live: within the skew window
    before = _ends(home)
    r = runner.invoke(app, ["import", "openai", str(f), "--home", str(home), "--signer", "operator", "--json"])
    assert r.exit_code == 3, r.output
    assert "imported" not in r.stdout and "control" in r.output
    assert _ends(home) == before, "nothing appended"

    accepted = _verify(home)["accepted_events"]
    r = runner.invoke(app, ["import", "openai", str(f), "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["imported"] == 1
    report = _verify(home)
    assert report["ok"] and report["rejected"] == {}
    # the importer's registration and backfill grant (first import) and the imported event: all accepted
    assert report["accepted_events"] == accepted + 3
