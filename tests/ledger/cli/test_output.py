"""The CLI toolkit prints strings literally: no rich markup, control and bidi characters escaped."""

from __future__ import annotations

import json

from ledger.cli.output import err, json_line, out, print_json, table, visible

HOSTILE = "[/bold]\x1b[2J\u202eevil\u2066\x9b\n:smile:"


def test_visible_escapes_controls_and_bidi_and_keeps_plain_text():
    assert visible("alice [b] :smile: café") == "alice [b] :smile: café"
    assert visible("a\x1bb\u202ec\nd\te\x9bf\u200b") == "a\\x1bb\\u202ec\\nd\\te\\x9bf\\u200b"
    assert visible("a\nb\tc\x1b", keep_lines=True) == "a\nb\tc\\x1b"


def test_a_table_shows_hostile_cells_literally(capsys):
    table("t [/bold]", ["col\x1b"], [[HOSTILE], [None], [1234]])
    shown = capsys.readouterr().out
    assert "[/bold]" in shown and ":smile:" in shown and "\\x1b[2J" in shown and "\\u202e" in shown
    assert "t [/bold]" in shown and "col\\x1b" in shown and "1,234" in shown
    for raw in ("\x1b", "\u202e", "\u2066", "\x9b"):
        assert raw not in shown


def test_printed_lines_are_literal_and_keep_their_newlines(capsys):
    out.print("x [/bold] \x1b[31m y\nz")
    err.print("[red]no markup[/red] \u202e")
    captured = capsys.readouterr()
    assert captured.out == "x [/bold] \\x1b[31m y\nz\n"
    assert captured.err == "[red]no markup[/red] \\u202e\n"


def test_json_output_is_unchanged(capsys):
    print_json({"op": HOSTILE})
    json_line({"op": HOSTILE})
    first, second = capsys.readouterr().out.split("\n}\n")
    assert json.loads(first + "\n}")["op"] == HOSTILE
    assert json.loads(second)["op"] == HOSTILE
