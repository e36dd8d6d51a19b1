"""``tokenledger agent register | rotate | revoke``: the operator's control events about signers."""

from __future__ import annotations

import dataclasses

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, labels, open_home, operator_emit, print_json, table
from ledger.integrity.keys import SigningKey, save_key
from ledger.sdk.home import check_signer_id, resolve_log_url
from ledger.sdk.registration import register_signer
from ledger.wire.events import KeyRevoked, KeyRotated

agent_app = typer.Typer(no_args_is_help=True, help="Register, rotate and revoke signers (signed by the operator).",
                        epilog="Example: tokenledger agent register researcher --priority 2")


def register(app: typer.Typer) -> None:
    """Add the ``agent`` group to ``app``."""
    app.add_typer(agent_app, name="agent")


@agent_app.command("register", epilog="Example: tokenledger agent register researcher --priority 2 --org acme")
@guarded
def agent_register(name: str, home: str | None = HomeOpt, log: str | None = LogOpt,
                   role: str = typer.Option("agent", help="agent | processor | operator"),
                   priority: int = typer.Option(1, help="Budget priority (higher keeps its budget longer)."),
                   org: str | None = typer.Option(None), project: str | None = typer.Option(None),
                   attr: list[str] | None = typer.Option(None, help="Attribute key=value (repeatable)."),
                   json_: bool = JsonOpt) -> None:
    """Create NAME's key (if needed) and register it on the log, signed by the operator."""
    h = open_home(home)
    check_signer_id(name, "name")  # bad input is refused before the log is opened
    attributes = dict(labels(attr, "attr"))
    lg = h.open_log(resolve_log_url(log, h))
    try:
        reg = register_signer(h, lg, name, role=role, priority=priority, org=org, project=project,
                              attributes=attributes)
    finally:
        lg.close()
    info = dataclasses.asdict(reg)
    print_json(info) if json_ else table("registered", ["field", "value"], [[a, b] for a, b in info.items()])


@agent_app.command("rotate", epilog="Example: tokenledger agent rotate researcher")
@guarded
def agent_rotate(name: str, home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Replace NAME's key with a new one; the old key signs nothing afterwards."""
    h = open_home(home)
    old = h.load_key(name)
    new = SigningKey.generate(name)
    (event_id,) = operator_emit(h, log, [KeyRotated(agent_id=name, old_key_id=old.key_id, new_key_id=new.key_id,
                                                      new_public_key=new.public.raw)])
    save_key(h.key_path(name), new, overwrite=True)
    info = {"signer_id": name, "old_key_id": old.key_id, "new_key_id": new.key_id, "event_id": event_id}
    print_json(info) if json_ else table("rotated", ["field", "value"], [[a, b] for a, b in info.items()])


@agent_app.command("revoke", epilog='Example: tokenledger agent revoke researcher --reason "laptop stolen"')
@guarded
def agent_revoke(name: str, home: str | None = HomeOpt, log: str | None = LogOpt,
                 reason: str = typer.Option("", help="Why (kept on the log)."), json_: bool = JsonOpt) -> None:
    """Revoke NAME's current key: every batch it signs afterwards is rejected."""
    h = open_home(home)
    k = h.load_key(name)
    (event_id,) = operator_emit(h, log, [KeyRevoked(agent_id=name, key_id=k.key_id, reason=reason)])
    info = {"signer_id": name, "key_id": k.key_id, "event_id": event_id}
    print_json(info) if json_ else table("revoked", ["field", "value"], [[a, b] for a, b in info.items()])
