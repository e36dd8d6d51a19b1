"""Shared helpers of the bad-input battery: counting what is on a home's log, running the CLI."""

from __future__ import annotations

from collections.abc import Sequence

from click.testing import Result
from typer.testing import CliRunner

from ledger.sdk.home import Home
from processors.cli import build_app

APP = build_app()  # the whole `tokenledger` command, as the console script builds it
RUNNER = CliRunner()


def log_records(home: Home) -> dict[str, int]:
    """Records on every topic of the home's log: the evidence that a refused input appended nothing.
    Every topic counts, not only the events topic: a refusal must not register a signer, write a
    control event or a dead letter either."""
    log = home.open_log()
    try:
        out = {}
        for t in [*home.ledger_topics, home.topic_for("rejected")]:
            log.ensure_topic(t)
            out[t] = sum(log.end_offset(t, p) for p in range(log.partitions(t)))
        return out
    finally:
        log.close()


def cli(home: Home | None, args: Sequence[str]) -> Result:
    """Run ``tokenledger ARGS --home HOME`` in-process; an exception that escapes the command (a crash,
    not a typed error) is re-raised so the test shows it instead of a bare exit code 1."""
    full = [*args, "--home", str(home.path)] if home is not None else list(args)
    r = RUNNER.invoke(APP, full)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r
