"""``tokenledger prove``, ``verify-proof`` and ``checkpoint``: thin commands over processors/services/proofs.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, open_home, out, print_json, table
from ledger.sdk.home import resolve_log_url

commands = typer.Typer()  # prove, verify-proof, checkpoint


def register(app: typer.Typer) -> None:
    """Add prove, verify-proof, checkpoint to ``app``."""
    app.add_typer(commands)


@commands.command(epilog="Example: tokenledger prove 3f2a...e1 --out proof.json   ·   "
                    "tokenledger prove --ids run42.txt --out run42-proofs.json   ·   "
                    "tokenledger prove --consistency OLD_CHECKPOINT_ID NEW_CHECKPOINT_ID")
@guarded
def prove(event_ids: list[str] | None = typer.Argument(None, help="The events to prove (32 hex chars each); "
                                                                  "several share one file."),
          ids: Path | None = typer.Option(None, "--ids", help="Also prove the event ids in this file (one per line)."),
          consistency: tuple[str, str] | None = typer.Option(
              None, "--consistency", metavar="OLD NEW",
              help="Instead: prove checkpoint NEW extends checkpoint OLD (both notary checkpoint event ids, "
                   "same partition; see the `checkpoints` view or `tokenledger checkpoint --json`)."),
          checkpoint: str | None = typer.Option(None, help="Prove against this checkpoint (event id) "
                                                              "instead of the latest one covering the events."),
          out_: Path | None = typer.Option(None, "--out", help="Proof file (default: proof-<id>.json here, "
                                                              "proofs-<first id>-<n>.json for several)."),
          home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Write a self-contained proof file: each event's bytes with its path to its batch's signature, its Merkle
    inclusion path to a signed notary checkpoint, and (once per file) the checkpoints and the registrations of every
    key involved. Check it anywhere with `tokenledger verify-proof FILE --operator-key HEX`."""
    from processors.services import proofs  # imported when used: `query` must start fast
    wanted = [*(event_ids or []), *(proofs.read_event_ids(ids) if ids is not None else [])]
    proofs.require_one_target(wanted, consistency)
    h = open_home(home)
    lg = h.open_log(resolve_log_url(log, h))
    try:
        written = proofs.write_proof(h, lg, event_ids=wanted, consistency=consistency, checkpoint_id=checkpoint,
                                     out=out_)
    finally:
        lg.close()
    size = written.file.stat().st_size
    if json_:
        reports = [r.to_dict() for r in written.reports]
        # one thing proved: its fields at the top as well (what scripts read before files of many events)
        print_json({"file": str(written.file), "bytes": size, **(reports[0] if len(reports) == 1 else {}),
                    "proofs": reports})
        return
    _print_reports(f"proof written to {written.file} ({size:,} bytes)", [r.to_dict() for r in written.reports])


def _print_reports(title: str, reports: list[dict[str, Any]]) -> None:
    if len(reports) == 1:
        _print_report(title, reports[0])
        return
    table(f"{title}: {len(reports):,} events", ["event id", "signer", "leaf", "tree size", "checkpoint"],
          [[r["event_id"], r["signer_id"], r["leaf_index"], r["tree_size"], r["checkpoint_event_id"]]
           for r in reports])


def _print_report(title: str, r: dict[str, Any]) -> None:
    rows = [[k, v if not isinstance(v, dict) else ", ".join(sorted(v))] for k, v in r.items() if k != "keys"]
    rows += [[f"key {kid}", f"{v['signer_id']} ({v['role']}) fingerprint {v['fingerprint']}"]
             for kid, v in r.get("keys", {}).items()]
    table(title, ["field", "value"], rows)


@commands.command("verify-proof", epilog="Example: tokenledger verify-proof proof.json --operator-key 5c1f...9a")
@guarded
def verify_proof_cmd(file: Path = typer.Argument(..., help="A proof file written by `tokenledger prove` (one or "
                                                               "more events, or a consistency proof)."),
                     operator_key: list[str] | None = typer.Option(
                         None, "--operator-key", help="A trusted operator public key, 64 hex chars (repeatable). "
                                                      "Default: the operators in the home's config."),
                     home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Check a proof file offline: signatures, key registrations back to a trusted operator key, the event in
    its batch, the Merkle path to the signed checkpoint root (or the consistency of two checkpoints).
    Exit code 1 and the failed check if it does not hold."""
    from processors.services import proofs  # imported when used: `query` must start fast
    data = proofs.read_proof_file(file)
    trusted = proofs.parse_operator_keys(operator_key) if operator_key else open_home(home).anchors()
    reports = [r.to_dict() for r in proofs.check_proofs(data, trusted)]
    if json_:
        print_json({"ok": True, **(reports[0] if len(reports) == 1 else {}), "proofs": reports})
        return
    _print_reports("proof verified", reports)
    cps = sorted({(r["checkpoint_event_id"], r["checkpoint_signer"]) for r in reports})
    what = f"the {reports[0]['kind']} proof holds" if len(reports) == 1 else f"all {len(reports):,} proofs hold"
    out.print(f"OK: {what} against checkpoint{'s' if len(cps) > 1 else ''} "
              + ", ".join(f"{c} signed by {s}" for c, s in cps) + ".", markup=False)


@commands.command("checkpoint", epilog="Example: tokenledger checkpoint --json")
@guarded
def checkpoint_cmd(home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Run the notary until it has read the whole log, then sign a checkpoint of every partition's current
    Merkle tree (the notary must not be running; while it runs it checkpoints by itself every
    1,000 events per partition)."""
    from processors.services import proofs  # imported when used: `query` must start fast
    h = open_home(home)
    lg = h.open_log(resolve_log_url(log, h))
    try:
        rows = proofs.checkpoint_now(h, lg)
    finally:
        lg.close()
    if json_:
        print_json([dataclasses.asdict(r) for r in rows])
        return
    table("checkpoints (current tree of each partition)",
           ["topic", "partition", "tree size", "root", "next offset", "checkpoint event id", ""],
           [[r.topic, r.partition, r.tree_size, r.root_hash[:16] + "…", r.next_offset, r.checkpoint_event_id,
             "new" if r.new else "existing"] for r in rows])
