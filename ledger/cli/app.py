"""The ``tokenledger`` command line: the ledger's commands, composed explicitly.

``build_app()`` makes a fresh typer app and asks each command module to ``register(app)`` itself;
nothing is added by importing a module. ``processors.cli.build_app`` starts from this app and adds
the processors' groups. The shared plumbing (consoles, tables, JSON, progress bars, error display
and exit codes) is the public toolkit in ``ledger.cli.output``; exit codes come from the one table
in ``ledger.errors`` (``ExitCode``):

    0 ok · 1 verification found bad records · 2 bad input · 3 home, key or chain problem · 4 log unavailable
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from ledger.cli import agents, broker, clock, doctor, emit, imports, init, keys, prices, tail, tokens, verify
from ledger.cli.output import run

# the order of ``tokenledger --help``: commands, then groups
LEDGER_COMMANDS: tuple[Callable[[typer.Typer], None], ...] = (
    init.register, tail.register, verify.register, broker.register, imports.register,
    keys.register, agents.register, clock.register, prices.register, emit.register, tokens.register, doctor.register,
)


def build_app() -> typer.Typer:
    """A new ``tokenledger`` app holding the ledger's commands (and nothing else)."""
    app = typer.Typer(
        name="tokenledger", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
        help="Signed, hash-chained token events for AI agents on a durable log.\n\n"
             "Start with:  tokenledger demo",
        epilog="Example: tokenledger demo && tokenledger verify",
    )
    for register in LEDGER_COMMANDS:
        register(app)
    return app


def main() -> None:
    """The ledger's commands alone (the installed ``tokenledger`` is ``processors.cli:main``)."""
    run(build_app())


if __name__ == "__main__":
    main()
