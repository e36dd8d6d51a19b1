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
                    "tokenledger prove --consistency OLD_CHECKPOINT_ID NEW_CHECKPOINT_ID")
@guarded
def prove(event_id: str | None = typer.Argument(None, help="The event to prove (32 hex chars)."),
          consistency: tuple[str, str] | None = typer.Option(
              None, "--consistency", metavar="OLD NEW",
              help="Instead: prove checkpoint NEW extends checkpoint OLD (both notary checkpoint event ids, "
                   "same partition; see the `checkpoints` view or `tokenledger checkpoint --json`)."),
          checkpoint: str | None = typer.Option(None, help="Prove against this checkpoint (event id) "
                                                              "instead of the latest one covering the event."),
          out_: Path | None = typer.Option(None, "--out", help="Proof file (default: proof-<id>.json here)."),
          home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Write a self-contained proof file: the event's bytes and signed batch, its Merkle inclusion path to a
    signed notary checkpoint, and the registrations of every key involved. Check it anywhere with
    `tokenledger verify-proof FILE --operator-key HEX`."""
    from processors.services import proofs  # imported when used: `query` must start fast
    proofs.require_one_target(event_id, consistency)
    h = open_home(home)
    lg = h.open_log(resolve_log_url(log, h))
    try:
        written = proofs.write_proof(h, lg, event_id=event_id, consistency=consistency, checkpoint_id=checkpoint,
                                     out=out_)
    finally:
        lg.close()
    report = written.report.to_dict()
    if json_:
        print_json({"file": str(written.file), **report})
        return
    _print_report(f"proof written to {written.file}", report)


def _print_report(title: str, r: dict[str, Any]) -> None:
    rows = [[k, v if not isinstance(v, dict) else ", ".join(sorted(v))] for k, v in r.items() if k != "keys"]
    rows += [[f"key {kid}", f"{v['signer_id']} ({v['role']}) fingerprint {v['fingerprint']}"]
             for kid, v in r.get("keys", {}).items()]
    table(title, ["field", "value"], rows)


@commands.command("verify-proof", epilog="Example: tokenledger verify-proof proof.json --operator-key 5c1f...9a")
@guarded
def verify_proof_cmd(file: Path = typer.Argument(..., help="A proof file written by `tokenledger prove`."),
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
    report = proofs.check_proof(data, trusted).to_dict()
    if json_:
        print_json({"ok": True, **report})
        return
    _print_report("proof verified", report)
    out.print(f"OK: the {report['kind']} proof holds against checkpoint {report['checkpoint_event_id']} "
              f"signed by {report['checkpoint_signer']}.", markup=False)


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
