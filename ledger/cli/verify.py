"""``tokenledger verify``: re-check the whole log and the notary's signed checkpoints; exit 1 naming
the first bad record or diverging checkpoint."""

from __future__ import annotations

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, err, exit, guarded, open_home, out, print_json, progress, table
from ledger.errors import ExitCode
from ledger.sdk.home import resolve_log_url


def register(app: typer.Typer) -> None:
    """Add ``verify`` to ``app``."""
    app.command("verify", epilog=VERIFY_EPILOG)(verify)


VERIFY_EPILOG = "Example: tokenledger verify     (exit code 1 if any record is bad)"


@guarded
def verify(home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Re-check the whole log: schemas, signatures, key validity, chains. Names the first bad record."""
    from ledger.integrity.checkpoints import audit_with_checkpoints

    h = open_home(home)
    lg = h.open_log(resolve_log_url(log, h))
    try:
        total = sum(lg.end_offset(t, p) for t in h.ledger_topics for p in range(lg.partitions(t)))
        with progress(total, "verifying", not json_) as prog:
            task = prog.add_task("verify", total=total)
            # also checks the notary's signed checkpoints against Merkle trees rebuilt from the log
            report, cps = audit_with_checkpoints(lg, h.ledger_topics, h.topic_for("checkpoints"), h.anchors(),
                                                 progress=lambda n: prog.advance(task, n))
    finally:
        lg.close()
    if json_:
        print_json({**report.to_dict(), "ok": report.ok and cps.ok, "checkpoints": cps.to_dict()})
    else:
        table("verify", ["records", "accepted records", "accepted events", "signers", "rejected"],
               [[report.records, report.accepted_records, report.accepted_events, report.signers,
                 sum(report.rejected.values())]])
        if report.ok:
            out.print("OK: every record decodes, is signed by a registered, unrevoked key, and extends its chain.")
        else:
            table("rejections by code", ["code", "records"], [[k, v] for k, v in sorted(report.rejected.items())])
            fe = report.first_error or {}
            err.print(f"FIRST BAD RECORD: topic={fe.get('topic')} partition={fe.get('partition')} "
                      f"offset={fe.get('offset')} code={fe.get('code')}: {fe.get('message')}", markup=False)
        if cps.checkpoints or not cps.ok:
            out.print(f"checkpoints: {cps.checkpoints} over {cps.partitions} partitions, {cps.divergences} diverge, "
                      f"{cps.bad_records} bad records", markup=False)
        if cps.first_divergence:
            d = cps.first_divergence
            err.print(f"FIRST DIVERGING CHECKPOINT: {d['checkpoint_event_id']} topic={d['topic']} "
                      f"partition={d['partition']} tree_size={d['tree_size']}: {d['reason']} (signed root "
                      f"{d['actual_root']}, log gives {d.get('expected_root')})", markup=False)
    if not (report.ok and cps.ok):
        exit(ExitCode.REJECTED)
