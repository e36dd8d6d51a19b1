"""The `tokenledger` command line: ledger commands plus the processor groups."""

from processors.cli.app import main

__all__ = ["main"]
