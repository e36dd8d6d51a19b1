"""Nothing displayed can lie: strings from the log are printed literally (no markup, controls and bidi
overrides escaped), ids are validated with a full-match rule, so a terminal shows what the log holds."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ledger.errors import ValidationError
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import check_signer_id
from ledger.testing.homes import T0, make_home
from ledger.wire.events import Action, Trust, check_str
from processors.cli import build_app
from processors.host.service import serve

app = build_app()
runner = CliRunner()


@pytest.fixture
def home(tmp_path):
    return make_home(tmp_path / "home", agents=("alice", "bob"))


def emit(home, agent: str, *bodies) -> None:
    with Emitter.open(agent, home=home.path, background_flush=False) as em:
        for i, b in enumerate(bodies):
            em.emit(b, event_time_us=T0 + 1_000 + i)


@pytest.mark.parametrize("value", ["alice\n", "alice\r", "al\x1bice", "\u202ealice", "ali\u2066ce", "alice\x85"],
                         ids=repr)
def test_ids_are_validated_with_a_full_match_rule(value):
    with pytest.raises(ValidationError) as e:
        check_str("agent_id", value)
    assert e.value.field == "agent_id" and repr(value) in str(e.value)
    with pytest.raises(ValidationError):
        check_signer_id(value)
    with pytest.raises(ValidationError) as e:
        Action(value)
    assert e.value.field == "operation"


def test_free_text_keeps_its_newlines():
    assert check_str("reason", "line one\nline two", 100, text=True) == "line one\nline two"


def test_agent_register_refuses_a_trailing_newline(home):
    r = runner.invoke(app, ["agent", "register", "alice\n", "--home", str(home.path)])
    assert r.exit_code == 2 and "invalid name='alice\\n'" in r.output
    assert "value: alice\\n" in r.output  # the evidence line shows the newline, it does not print one
    assert not home.key_path("alice").with_name("alice\n.key").exists()


def test_emit_refuses_an_operation_with_escape_sequences(home):
    r = runner.invoke(app, ["emit", "action", "--home", str(home.path), "-a", "alice", "--operation", "x\x1b[2Jy"])
    assert r.exit_code == 2 and "\x1b" not in r.output and "x\\x1b[2Jy" in r.output


def test_markup_in_log_strings_is_printed_literally_by_tail_query_and_reputation(home):
    emit(home, "alice", Action("[/bold]"), Trust(subject_id="[/bold]", dimension="accuracy", value_milli=500))
    r = runner.invoke(app, ["tail", "--home", str(home.path)])
    assert r.exit_code == 0, r.output
    assert "[/bold]" in r.output
    log = home.open_log()
    try:
        for name in ("journal", "reputation"):
            assert serve(home, name, log, exit_when_caught_up=True) == 0
    finally:
        log.close()
    r = runner.invoke(app, ["query", "SELECT operation FROM events WHERE kind = 'action'", "--home", str(home.path)])
    assert r.exit_code == 0, r.output
    assert "[/bold]" in r.output
    r = runner.invoke(app, ["reputation", "show", "--home", str(home.path)])
    assert r.exit_code == 0, r.output
    assert "[/bold]" in r.output


def test_query_escapes_control_characters_in_table_output_but_not_in_json(home):
    sql = "SELECT chr(27) || '[2J' || chr(8238) || 'x' AS v"
    r = runner.invoke(app, ["query", sql, "--home", str(home.path)])
    assert r.exit_code == 0, r.output
    assert "\\x1b[2J\\u202ex" in r.output and "\x1b" not in r.output and "\u202e" not in r.output
    r = runner.invoke(app, ["query", sql, "--home", str(home.path), "--json"])
    assert r.exit_code == 0 and "\\u001b[2J\\u202ex" in r.output
