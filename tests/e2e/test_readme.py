"""The README stays true: its SDK example runs as written, and CI runs its set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from ledger.integrity.verify import audit
from ledger.testing.homes import make_home
from processors.cli import build_app

app = build_app()  # the whole `tokenledger` command, as the console script builds it

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
runner = CliRunner()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_setup_commands_come_first_and_ci_runs_them():
    first, second = blocks("bash")[:2]
    assert "tokenledger demo" in first and "pip install -e" in first
    assert "pytest" in second
    assert README.index(first) < 1500  # near the top
    ci = (ROOT / ".ci" / "run").read_text()
    assert first.strip().removesuffix("&& tokenledger demo").strip() in ci
    assert second.strip() in ci


def test_sdk_example_runs(tmp_path):
    home = make_home(tmp_path / "home", agents=("researcher", "writer"))
    code = blocks("python")[0].replace("/tmp/tl-home", str(home.path))
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102  (the test runs the README's own example)
    log = home.open_log()
    try:
        report = audit(log, home.ledger_topics, home.anchors())
    finally:
        log.close()
    assert report.ok
    assert report.accepted_events == 3 + 1 + 4  # registrations, make_home's skew window, the four events


def test_cli_table_lists_every_top_level_command():
    from typer.main import get_command

    for name in get_command(app).commands:
        assert f"tokenledger {name}" in README, f"README does not mention `tokenledger {name}`"
