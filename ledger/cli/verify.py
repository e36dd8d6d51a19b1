"""``tokenledger verify``: re-check the whole log and the notary's signed checkpoints; exit 1 naming
the first bad record or diverging checkpoint. ``--views`` also checks every processor's published views
against its signed manifest (``ledger.sdk.published``) and reports each view."""

from __future__ import annotations

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, err, exit, guarded, open_home, out, print_json, progress, table
from ledger.errors import ExitCode, ViewIntegrityError
from ledger.sdk.home import Home, resolve_log_url
from ledger.sdk.published import ViewStatus, check_published, has_published, registered_keys


def register(app: typer.Typer) -> None:
    """Add ``verify`` to ``app``."""
    app.command("verify", epilog=VERIFY_EPILOG)(verify)


VERIFY_EPILOG = "Example: tokenledger verify --views     (exit code 1 if any record or published view is bad)"


@guarded
def verify(home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt,
           views: bool = typer.Option(False, "--views", help="Also check every published view against its "
                                      "processor's signed manifest (signature, SHA-256 of each file).")) -> None:
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
    statuses = view_statuses(h, log) if views else []
    views_ok = all(s.ok for s in statuses)
    if json_:
        print_json({**report.to_dict(), "ok": report.ok and cps.ok and views_ok, "checkpoints": cps.to_dict(),
                    **({"views": [{"processor": s.processor, "view": s.view, "files": s.files, "bytes": s.bytes,
                                   "ok": s.ok, "problems": list(s.problems), "unlisted": list(s.unlisted)}
                                  for s in statuses]} if views else {})})
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
        if views:
            table("published views", ["processor", "view", "files", "bytes", "status"],
                  [[s.processor, s.view, s.files, s.bytes, _status(s)] for s in statuses])
            if not views_ok:
                bad = sorted({s.processor for s in statuses if not s.ok})
                err.print(f"VIEWS DO NOT MATCH THEIR SIGNED MANIFEST: {', '.join(bad)}. Check the state with "
                          f"`tokenledger replay NAME`, then restart the processor (`tokenledger run NAME`) "
                          "to republish its views.")
    if not (report.ok and cps.ok and views_ok):
        exit(ExitCode.REJECTED)


def _status(s: ViewStatus) -> str:
    text = "OK" if s.ok else "; ".join(s.problems)
    if s.unlisted:  # never read by query/report/budget check; plain DuckDB over views.sql would see them
        text += f" (ignored, not in the manifest: {', '.join(s.unlisted)})"
    return text


def view_statuses(h: Home, log: str | None) -> list[ViewStatus]:
    """Every published view of every processor in the home, checked against its signed manifest; a
    manifest that is missing or not validly signed is one row for the processor (view ``*``)."""
    names = sorted(p.name for p in h.views_root.iterdir() if p.is_dir()) if h.views_root.is_dir() else []
    names = [n for n in names if has_published(h.views_dir(n))]
    if not names:
        return []
    ring = registered_keys(h, log)
    out: list[ViewStatus] = []
    for name in names:
        try:
            out.extend(check_published(h.views_dir(name), name, ring).statuses)
        except ViewIntegrityError as e:
            out.append(ViewStatus(name, "*", 0, 0, (e.message,)))
    return out
