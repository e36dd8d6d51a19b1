"""The `tokenledger` command line: the ledger's commands plus the processor groups, composed explicitly.

``build_app()`` starts from ``ledger.cli.app.build_app()`` and calls ``register(app)`` of each
processor command module; importing a module adds nothing anywhere. ``main`` is the console script.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from ledger.cli import app as ledger_app
from processors.cli import app, budget, econ, proofs, report

PROCESSOR_COMMANDS: tuple[Callable[[typer.Typer], None], ...] = (
    app.register, budget.register, econ.register, proofs.register, report.register,
)


def build_app() -> typer.Typer:
    """A new ``tokenledger`` app: the ledger's commands, then the processors'."""
    cli = ledger_app.build_app()
    for register in PROCESSOR_COMMANDS:
        register(cli)
    return cli


def main() -> None:
    """The ``tokenledger`` console script."""
    ledger_app.run(build_app())


__all__ = ["build_app", "main"]
