"""``tokenledger doctor``: check that the home's log is reachable and laid out as the ledger needs it; each
finding says what to fix (``ledger.sdk.doctor`` has the rules). Exit 1 when any finding is a problem."""

from __future__ import annotations

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, exit, guarded, open_home, out, print_json, table
from ledger.errors import ExitCode
from ledger.sdk.doctor import PROBLEM, diagnose
from ledger.sdk.home import resolve_log_url


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to ``app``."""
    app.command("doctor", epilog=DOCTOR_EPILOG)(doctor)


DOCTOR_EPILOG = ("Example: tokenledger doctor --log 'kafka://b1:9093?security=ssl&ca=/etc/kafka/ca.pem'   "
                 "(exit code 1 if any finding is a problem)")


@guarded
def doctor(home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Check the log: connectivity (with its TLS/SASL settings), topics, partitions, replication,
    min.insync.replicas, timestamp type and retention on Kafka; file, WAL mode and permissions on SQLite."""
    h = open_home(home)
    report = diagnose(h, resolve_log_url(log, h))
    if json_:
        print_json(report.to_dict())
    else:
        table(f"doctor: {report.log}", ["check", "subject", "status", "detail", "fix"],
              [[f.check, f.subject, f.status.upper() if f.status == PROBLEM else f.status, f.detail, f.fix or ""]
               for f in report.findings])
        problems = sum(f.status == PROBLEM for f in report.findings)
        out.print("OK: no problem found." if report.ok else f"{problems} problem(s): see the fix column.")
    if not report.ok:
        exit(ExitCode.REJECTED)
