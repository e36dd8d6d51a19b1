"""The `tokenledger` command line: the ledger's commands plus the processor groups, composed explicitly.

``build_app()`` starts from ``ledger.cli.app.build_app()`` and calls ``register(app)`` of each
processor command module; importing a module adds nothing anywhere. ``main`` is the console script.

The command modules are imported by ``build_app`` when it runs, not by importing this package: ``tokenledger
query ...`` is served by an app of that one command (``query_app``), so an analyst's query starts in about the time
DuckDB does instead of after every command group (the emitter, the codec, the importers) has been imported.
"""

from __future__ import annotations

import sys

import typer


def build_app() -> typer.Typer:
    """A new ``tokenledger`` app: the ledger's commands, then the processors'."""
    from ledger.cli import app as ledger_app
    from processors.cli import alerts, app, budget, econ, proofs, report, serve

    cli = ledger_app.build_app()
    for register in (app.register, budget.register, econ.register, proofs.register, report.register, serve.register,
                     alerts.register):
        register(cli)
    return cli


def query_app() -> typer.Typer:
    """An app of the processor commands that ``query`` belongs to (run, status, digest, replay, query, demo; each
    imports its heavier parts when it runs), registered exactly as the full app registers them."""
    from processors.cli import app

    cli = typer.Typer(add_completion=False)
    app.register(cli)
    return cli


def main() -> None:
    """The ``tokenledger`` console script."""
    from ledger.cli.output import run

    run(query_app() if len(sys.argv) > 1 and sys.argv[1] == "query" else build_app())


__all__ = ["build_app", "main", "query_app"]
