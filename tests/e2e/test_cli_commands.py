"""`tokenledger` is composed explicitly: the same commands as always, built from register(app) calls,
with nothing added by importing a module."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import typer
from typer.testing import CliRunner

from ledger.cli import app as ledger_cli
from processors.cli import build_app, main

ROOT = Path(__file__).resolve().parents[2]

# every command and sub-command of `tokenledger`, pinned: a command lost (or added) while moving
# registration around must show up here
COMMANDS = {
    "init", "tail", "verify", "broker", "import", "run", "status", "digest", "replay", "query", "demo", "reprice",
    "prove", "verify-proof", "checkpoint", "report", "doctor",
    "keys", "keys new", "keys list", "keys show",
    "agent", "agent register", "agent rotate", "agent revoke", "agent grant", "agent ungrant",
    "clock", "clock show", "clock set",
    "prices", "prices list", "prices show", "prices set", "prices load", "prices sync", "prices alias",
    "emit", "emit action", "emit data", "emit compute", "emit trust", "emit interaction", "emit outcome",
    "emit deposit",
    "budget", "budget check", "budget set", "budget show",
    "reputation", "reputation show",
    "econ", "econ estimate", "econ allocate", "econ deposit", "econ congestion", "econ cache",
    "serve", "token", "token create", "token list", "token revoke",
    "alerts", "alerts add-webhook", "alerts list", "alerts remove", "alerts deliveries",
}
LEDGER_ONLY = {"init", "tail", "verify", "broker", "import", "keys", "agent", "clock", "prices", "emit", "token",
               "doctor"}


def command_paths(app: typer.Typer) -> set[str]:
    found: set[str] = set()

    def walk(group: object, prefix: str) -> None:
        for name, sub in getattr(group, "commands", {}).items():
            found.add(prefix + name)
            walk(sub, prefix + name + " ")

    walk(typer.main.get_command(app), "")
    return found


def test_tokenledger_has_the_pinned_commands() -> None:
    assert command_paths(build_app()) == COMMANDS


def test_help_lists_every_top_level_command() -> None:
    result = CliRunner().invoke(build_app(), ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.splitlines() if line.startswith("  ") and line.split()}
    assert {c for c in COMMANDS if " " not in c} <= listed


def test_the_ledger_app_alone_has_only_the_ledger_commands() -> None:
    top = {c for c in command_paths(ledger_cli.build_app()) if " " not in c}
    assert top == LEDGER_ONLY


def test_building_is_explicit_and_repeatable() -> None:
    # two builds are two independent apps with the same commands: nothing lives in a module-level app
    a, b = build_app(), build_app()
    assert a is not b and command_paths(a) == command_paths(b) == COMMANDS
    assert not hasattr(ledger_cli, "app")


def test_the_console_script_is_processors_cli_main() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"tokenledger": "processors.cli:main"}
    assert callable(main)


def test_query_starts_without_importing_the_other_command_groups(tmp_path) -> None:
    """`tokenledger query` is served by an app of the processor commands alone: the emitter, the codec's writers and
    the importers are not imported (they were ~0.3 s of every query's start-up)."""
    code = ("import sys; sys.argv = ['tokenledger', 'query', '--help']\n"
            "from processors.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('ledger.sdk.emitter', 'ledger.sources.importers', 'ledger.cli.agents')"
            " if m in sys.modules)\n"
            "print('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Run SQL over the published views" in r.stdout
    assert "HEAVY []" in r.stdout
