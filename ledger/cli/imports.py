"""``tokenledger import KIND PATH...``: usage records from other tools onto the ledger, signed.

Registered on the app by ``register(app)`` (``ledger.cli.app.build_app`` calls it). The shared CLI
plumbing (error display, tables, JSON, progress bars, time parsing) is ``ledger.cli.output``.

Exit codes (``ledger.errors.ExitCode``): 0 every record was imported or was already there; 1 some
records were rejected, or skipped as carrying no usage without ``--allow-skips`` (every good record was still
imported; the problems and skips are listed with file and line); 2 bad input
(unknown kind, a path that does not exist, no files found, claude-code without ``--time``);
3 home or key problem, or a signer whose chain is on another topic (the operator signs control events:
importing as it would fork its chain, so it is refused before anything is appended); 4 log unavailable.

The importer's signer is registered by the operator automatically the first time
(``ledger.sources.importers.importer_key``: its key is created and an ``agent_registered`` event is appended before
the key file is written, so a failed registration never leaves a key that signs events nobody trusts), with a 30-day
backfill grant: records up to 30 days old are accepted, and each may name the agent that made the call
(``Context.agent``: OTel ``gen_ai.agent.name``, a gateway's user), which only a backfill signer may do.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ledger import limits
from ledger.cli.output import (
    HomeOpt,
    LogOpt,
    err,
    exit,
    guarded,
    open_home,
    parse_time,
    print_json,
    progress,
    table,
)
from ledger.errors import ExitCode
from ledger.sdk.home import check_signer_id, resolve_log_url
from ledger.sources.importers import (
    DEFAULT_SIGNER,
    IMPORTER_BACKFILL_US,
    KINDS,
    ImportSummary,
    check_import_time,
    check_kind,
    expand_paths,
    import_files,
    importer_emitter,
    importer_key,
)
from ledger.units import US_PER_DAY

IMPORT_EPILOG = ("Example: tokenledger import claude-code runs/ --time 2026-01-01T00:00:00Z   ·   "
                 "tokenledger import otel traces.binpb   ·   tokenledger import litellm spend_logs.csv --json")


def register(app: typer.Typer) -> None:
    """Add the ``import`` command to ``app``."""
    app.command("import", epilog=IMPORT_EPILOG)(import_command)


@guarded
def import_command(
    kind: str = typer.Argument(..., help=f"What the files hold: {' | '.join(KINDS)}."),
    paths: list[Path] = typer.Argument(..., help="Files, or directories searched recursively (wf_*.json for "
                                                 "claude-code; *.json, *.jsonl, *.ndjson, plus *.csv for litellm "
                                                 "and *.pb, *.binpb, *.otlp for otel)."),
    home: str | None = HomeOpt,
    log: str | None = LogOpt,
    signer: str = typer.Option(DEFAULT_SIGNER, "--signer", help="Signer of the imported events; registered "
                                                                "automatically if it has no key yet."),
    time_: str | None = typer.Option(None, "--time", help="Event time (ISO-8601 or microseconds) of records "
                                                             "that carry none: required for claude-code (wf files "
                                                             "have no timestamps); Anthropic payloads too."),
    allow_skips: bool = typer.Option(False, "--allow-skips", help="Exit 0 when records were skipped as carrying no "
                                                                  "usage (tool or HTTP spans); they are still listed."),
    json_: bool = typer.Option(False, "--json", help="Print the summary and every problem as JSON."),
) -> None:
    """Import usage records as signed action events, idempotently: importing a file again adds nothing.

    claude-code: one event per workflow agent (tokens recorded as input, label io_split=unknown).
    openai: chat completions, streamed final chunks, Responses objects, Batch output lines, Usage API pages.
    anthropic: messages, Message Batches results, usage report pages (cache tokens are parts of the input total).
    litellm: proxy spend logs (JSON or CSV); spend kept as the provider-reported cost.
    otel: GenAI spans (OTLP/JSON or protobuf), legacy attribute names, each call under its agent.
    Each record's format is detected from its shape. Malformed records are listed with file, line and field and
    are not imported; the rest of the file is. Records without usage are skipped and listed the same way.
    Exit code 1 when any record was rejected, or skipped (unless --allow-skips).
    """
    _run(kind, paths, home, log, signer, time_, json_, allow_skips)


def _run(kind: str, paths: list[Path], home: str | None, log: str | None, signer: str,
         time_: str | None, json_: bool, allow_skips: bool = False) -> None:
    check_kind(kind)
    check_signer_id(signer, "signer")
    event_time_us = check_import_time(kind, parse_time(time_))  # before anything is written
    files = expand_paths(kind, paths)
    h = open_home(home)
    total_bytes = sum(p.stat().st_size for p in files if p.exists())
    lg = h.open_log(resolve_log_url(log, h))
    try:
        key, registered = importer_key(h, lg, signer)
        if registered and not json_:
            err.print(f"registered signer {signer} (key id {key.key_id}) with the operator, with a "
                      f"{IMPORTER_BACKFILL_US // US_PER_DAY}-day backfill grant (history, and naming each call's "
                      "agent)", markup=False)
        # the key ring is checked before appending, as `emit` does: never "imported" for what readers reject
        with importer_emitter(h, lg, key) as em, progress(total_bytes, f"importing {kind}", not json_) as bar:
            task = bar.add_task("import", total=total_bytes)
            summary = import_files(kind, files, em, event_time_us=event_time_us,
                                   progress=lambda n: bar.advance(task, n))
    finally:
        lg.close()
    if json_:
        print_json(summary.to_dict() | {"signer": signer, "signer_registered": registered,
                                             "key_id": key.key_id})
    else:
        _show(summary, signer)
    if not summary.ok or (summary.skipped and not allow_skips):
        exit(ExitCode.REJECTED)


def _show(summary: ImportSummary, signer: str) -> None:
    table(f"import {summary.kind} as {signer}", ["files", "imported", "already imported", "skipped (no usage)",
                                                      "rejected"],
               [[summary.files, summary.imported, summary.duplicates, len(summary.skipped), len(summary.rejected)]])
    if len(summary.per_file) > 1:
        shown_files = summary.per_file[:limits.MAX_PROBLEM_ROWS]
        table("per file", ["file", "imported", "already imported", "skipped", "rejected"],
              [[f.file, f.imported, f.duplicates, f.skipped, f.rejected] for f in shown_files])
        if len(summary.per_file) > len(shown_files):
            err.print(f"... and {len(summary.per_file) - len(shown_files):,} more files (use --json to list all)",
                      markup=False)
    for title, listed in (("rejected records (not imported)", summary.rejected),
                          ("skipped records (no usage; --allow-skips to accept)", summary.skipped)):
        if not listed:
            continue
        shown = listed[:limits.MAX_PROBLEM_ROWS]
        table(title, ["file", "line", "field", "value", "reason"],
              [[p.file, "" if p.line is None else str(p.line), p.field, p.value[: limits.MAX_ID_CHARS], p.reason]
               for p in shown])
        if len(listed) > len(shown):
            err.print(f"... and {len(listed) - len(shown):,} more (use --json to list all)", markup=False)
