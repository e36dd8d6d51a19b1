"""The public toolkit every ``tokenledger`` command is written with (ledger's and the processors').

Readable tables by default, ``--json`` for scripts, progress bars on long work (on stderr, and only
on a terminal), and errors printed as one line saying what is wrong, the evidence, and what to do
next. Exit codes come from the one table in ``ledger.errors`` (``ExitCode``, ``exit_code_for``):

    0 ok · 1 verification found bad records · 2 bad input · 3 home, key or chain problem · 4 log unavailable

Everything printed is printed literally: strings come from the log, from files and from other
people, so ``out`` and ``err`` never interpret rich markup (``[/bold]``) or emoji codes, and
``visible`` shows control characters (ESC, newlines, C1) and invisible formatting characters (bidi
overrides and isolates, zero-width marks) as escapes such as ``\\x1b`` and ``\\u202e``: in table cells
all of them, in printed lines all but newline and tab. JSON output is unchanged (``json.dumps``
already escapes every one of them).

Nothing here registers a command; ``ledger.cli.app`` and ``processors.cli`` do that explicitly.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ledger.errors import ExitCode, LedgerError, ValidationError, exit_code_for
from ledger.sdk.home import Home, resolve_home, resolve_log_url
from ledger.wire.timefmt import fmt_time, parse_time

__all__ = [
    "HomeOpt",
    "JsonOpt",
    "LogOpt",
    "codec_safe",
    "err",
    "exit",
    "fail",
    "fmt_time",
    "guarded",
    "int_arg",
    "json_line",
    "labels",
    "open_home",
    "operator_emit",
    "out",
    "parse_time",
    "print_json",
    "progress",
    "run",
    "table",
    "visible",
]

P = ParamSpec("P")
R = TypeVar("R")

PIPED_WIDTH = 160  # columns of a table written to a pipe (rich assumes 80 without a terminal)

# DEL, C1 controls, and the formatting characters that reorder or hide text on a terminal (bidi marks,
# embeddings, overrides and isolates, zero-width characters, line/paragraph separators, BOM); plus C0 below
_FORMAT = r"\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_HIDDEN_RE = re.compile(rf"[\x00-\x1f{_FORMAT}]")
_HIDDEN_BUT_LINES_RE = re.compile(rf"[\x00-\x08\x0b-\x1f{_FORMAT}]")  # newline (0a) and tab (09) kept
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def visible(text: str, *, keep_lines: bool = False) -> str:
    """``text`` with every control and invisible formatting character written as an escape (``\\x1b``,
    ``\\n``, ``\\u202e``), so what a terminal shows is what the string holds; ``keep_lines`` leaves
    newline and tab alone (whole messages, CSV)."""
    return (_HIDDEN_BUT_LINES_RE if keep_lines else _HIDDEN_RE).sub(_escape, text)


class LiteralConsole(Console):
    """A console that prints strings literally: no markup, no emoji codes, hidden characters escaped
    (newline and tab kept, so multi-line messages and CSV still print as lines). Renderables (tables,
    progress bars) are printed as they are: ``table`` builds its cells as escaped ``Text``."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        kwargs["markup"] = False
        kwargs["emoji"] = False
        super().print(*[visible(o, keep_lines=True) if isinstance(o, str) else o for o in objects], **kwargs)


out = LiteralConsole(highlight=False, soft_wrap=True, emoji=False, markup=False,
                     width=None if sys.stdout.isatty() else PIPED_WIDTH)
err = LiteralConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False, markup=False)

HomeOpt: Any = typer.Option(None, "--home",
                            help="Ledger home directory (default: $TOKENLEDGER_HOME or ~/.tokenledger).")
LogOpt: Any = typer.Option(None, "--log",
                           help="Log URL: sqlite:///path, kafka://host:port (default: the home's log).")
JsonOpt: Any = typer.Option(False, "--json", help="Print JSON instead of a table.")


# ---------------------------------------------------------------- errors and exit codes


def exit(code: ExitCode) -> NoReturn:  # the CLI's one way out with a code (shadows the builtin here only)
    """End the command with ``code`` (after its output was printed)."""
    raise typer.Exit(int(code))


def fail(e: LedgerError) -> NoReturn:
    """Print ``e`` as one message, its evidence and its hint, and exit with its code."""
    err.print(f"error: {e.message}", markup=False)
    for k, v in e.evidence.items():
        err.print(f"  {k}: {visible(codec_safe(v))}")  # one line per item, whatever the value holds
    if e.hint:
        err.print(f"  hint: {e.hint}", markup=False)
    exit(exit_code_for(e))


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our typed errors into one clear message and an exit code (no tracebacks for users)."""

    @functools.wraps(fn)
    def wrapper(*a: P.args, **kw: P.kwargs) -> R:
        try:
            return fn(*a, **kw)
        except LedgerError as e:
            fail(e)

    return wrapper


# ---------------------------------------------------------------- printing


def codec_safe(v: Any) -> str:
    """A value as text for JSON and evidence lines: bytes as hex, anything else by ``str``."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return str(v)


def print_json(obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON on stdout (bytes as hex)."""
    out.print(json.dumps(obj, indent=2, sort_keys=True, default=codec_safe), markup=False)


def json_line(obj: Any) -> None:
    """``obj`` as one line of key-sorted JSON on stdout (for streams such as ``tail --json``)."""
    out.print(json.dumps(obj, sort_keys=True, default=codec_safe), markup=False)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    """A table on stdout; integers get thousands separators, None prints as empty."""
    t = Table(title=None if title is None else Text(visible(title)), show_header=True, header_style="bold")
    for c in columns:
        t.add_column(Text(visible(c)), overflow="fold")
    for r in rows:
        # Text, not str: a cell is never parsed as markup (an operation named "[/bold]" is just text)
        t.add_row(*[Text(visible("" if x is None else f"{x:,}" if isinstance(x, int) and not isinstance(x, bool)
                                 else str(x))) for x in r])
    out.print(t)


def progress(total: int | None, label: str, enabled: bool) -> Progress:
    """A progress bar on stderr, shown only when ``enabled`` and stderr is a terminal; use as a context manager."""
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                    disable=not (enabled and err.is_terminal), transient=True)


# ---------------------------------------------------------------- arguments


def open_home(home: str | None) -> Home:
    """The ledger home named by ``--home`` (or the environment / default)."""
    return Home.open(resolve_home(home))


def int_arg(name: str, value: str | int | None) -> int | None:
    """CLI numbers are parsed here so that 1e3, nan, 3.5 or -1 get our error naming the flag."""
    if value is None:
        return None
    s = str(value).strip()
    try:
        n = int(s)
    except ValueError:
        raise ValidationError(name, s, "must be a whole number") from None
    if n < 0:
        raise ValidationError(name, n, "must not be negative")
    return n


def labels(items: list[str] | None, field: str = "label") -> dict[str, str]:
    """Repeated ``key=value`` options as a dict (a later key wins)."""
    found = {}
    for item in items or []:
        if "=" not in item:
            raise ValidationError(field, item, "must look like key=value")
        k, v = item.split("=", 1)
        found[k] = v
    return found


def operator_emit(h: Home, log: str | None, bodies: list[Any]) -> list[str]:
    """Append ``bodies`` as control events signed by the home's operator; their event ids, in order."""
    lg = h.open_log(resolve_log_url(log, h))
    try:
        from ledger.sdk.emitter import Emitter  # imported when used: `query` must start fast

        with Emitter.for_operator(h, lg) as em:
            return [em.emit(b) for b in bodies]
    finally:
        lg.close()


def run(app: typer.Typer) -> None:
    """Run ``app`` as the process's command line."""
    try:
        app()
    except BrokenPipeError:  # `tokenledger tail | head`
        sys.stderr.close()
