"""``tokenledger agent register | rotate | revoke``: the operator's control events about signers."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, labels, open_home, operator_emit, print_json, table
from ledger.errors import RejectError, ValidationError
from ledger.integrity.keyring import KeyRing
from ledger.integrity.keys import SigningKey, save_key
from ledger.sdk.emitter import ControlKeys
from ledger.sdk.home import OPERATOR_ID, Home, check_signer_id, resolve_log_url
from ledger.sdk.registration import register_signer, valid_key_ids
from ledger.wire.events import CAPABILITIES, Grant, KeyRevoked, KeyRotated
from ledger.wire.timefmt import parse_duration

agent_app = typer.Typer(no_args_is_help=True, help="Register, rotate and revoke signers (signed by the operator).",
                        epilog="Example: tokenledger agent register researcher --priority 2")
AttrOpt = typer.Option(None, help="Attribute key=value (repeatable).")


def register(app: typer.Typer) -> None:
    """Add the ``agent`` group to ``app``."""
    app.add_typer(agent_app, name="agent")


@agent_app.command("register", epilog="Example: tokenledger agent register researcher --priority 2 --org acme")
@guarded
def agent_register(name: str, home: str | None = HomeOpt, log: str | None = LogOpt,
                   role: str = typer.Option("agent", help="agent | processor | operator"),
                   priority: int = typer.Option(1, help="Budget priority (higher keeps its budget longer)."),
                   org: str | None = typer.Option(None), project: str | None = typer.Option(None),
                   attr: list[str] | None = AttrOpt,
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
    """Replace NAME's key with a new one; the old key signs nothing afterwards.

    Works without NAME's key file too (it was lost): the old key is then the one the log has for NAME."""
    h = open_home(home)
    check_signer_id(name, "name")
    old_key_id = h.load_key(name).key_id if h.key_path(name).exists() else _registered_key_id(h, log, name)
    new = SigningKey.generate(name)
    (event_id,) = operator_emit(h, log, [KeyRotated(agent_id=name, old_key_id=old_key_id, new_key_id=new.key_id,
                                                      new_public_key=new.public.raw)])
    save_key(h.key_path(name), new, overwrite=True)
    info = {"signer_id": name, "old_key_id": old_key_id, "new_key_id": new.key_id, "event_id": event_id}
    print_json(info) if json_ else table("rotated", ["field", "value"], [[a, b] for a, b in info.items()])


@agent_app.command("revoke", epilog='Example: tokenledger agent revoke researcher --reason "laptop stolen"')
@guarded
def agent_revoke(name: str, home: str | None = HomeOpt, log: str | None = LogOpt,
                 reason: str = typer.Option("", help="Why (kept on the log)."), json_: bool = JsonOpt) -> None:
    """Revoke NAME's current key: every batch it signs afterwards is rejected.

    The operator's own key is never revoked here: nothing could sign a control event afterwards (not even
    the registration of a new operator). ``agent rotate operator`` replaces it and names its successor."""
    h = open_home(home)
    if name == OPERATOR_ID:
        raise ValidationError("name", name, "the operator's key cannot be revoked without naming its successor: "
                              "rotate it instead (`tokenledger agent rotate operator`)")
    k = h.load_key(name)
    body = KeyRevoked(agent_id=name, key_id=k.key_id, reason=reason)
    _refuse_what_readers_reject(h, log, body)
    (event_id,) = operator_emit(h, log, [body])
    info = {"signer_id": name, "key_id": k.key_id, "event_id": event_id}
    print_json(info) if json_ else table("revoked", ["field", "value"], [[a, b] for a, b in info.items()])


def _registered_key_id(h: Home, log: str | None, name: str) -> str:
    """NAME's one valid key on the log (its key file is gone)."""
    lg = h.open_log(resolve_log_url(log, h))
    try:
        valid = valid_key_ids(h, lg, name)
    finally:
        lg.close()
    if len(valid) != 1:
        raise ValidationError("name", name, f"has {len(valid)} valid keys on the log and no key file here: "
                              "nothing to rotate" if not valid else "has several valid keys: revoke all but one "
                              "(`tokenledger agent revoke`)", registered_key_ids=valid)
    return valid[0]


def _refuse_what_readers_reject(h: Home, log: str | None, body: KeyRevoked) -> None:
    """Refuse (exit 2, nothing appended) a revocation every reader would quarantine: of a key the log never
    registered for that signer, or of the last valid operator key (``KeyRing.validate_control``)."""
    lg = h.open_log(resolve_log_url(log, h))
    try:
        keys = ControlKeys(lg, h.control_topic, h.anchors())
        keys.refresh()
    finally:
        lg.close()
    operator = h.operator_key()
    signer = keys.ring.get(operator.key_id)
    if signer is None:
        return  # the operator's own key is not valid: the emitter refuses it, with its own error
    try:
        keys.ring.validate_control(signer, body)
    except RejectError as e:
        raise ValidationError("name", body.agent_id, f"readers would reject this revocation: {e.reason}",
                              key_id=body.key_id, code_readers_give=e.code.value) from None


def control_ring(h: Home, log: str | None) -> KeyRing:
    """The key ring the control topic builds now, as every reader folds it."""
    lg = h.open_log(resolve_log_url(log, h))
    try:
        keys = ControlKeys(lg, h.control_topic, h.anchors())
        keys.refresh()
        return keys.ring
    finally:
        lg.close()


CapabilityArg: Any = typer.Argument(..., help=f"One of {', '.join(CAPABILITIES)}.")
ScopeOpt: Any = typer.Option("", "--scope", help="For reserve: the scope as level:id (like project:p1).")


@agent_app.command("grant", epilog="Example: tokenledger agent grant importer backfill --max-age 30d\n\n"
                                   "Example: tokenledger agent grant scheduler reserve --scope project:p1")
@guarded
def agent_grant(name: str, capability: str = CapabilityArg, scope: str = ScopeOpt,
                max_age: str | None = typer.Option(None, "--max-age",
                                                   help="For backfill: how far back its events may claim to be "
                                                        "(like 30d)."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Grant NAME a capability beyond its role (signed by the operator; applies to records appended after it)."""
    h = open_home(home)
    check_signer_id(name, "name")
    body = Grant(agent_id=name, capability=capability, scope=scope,
                 max_age_us=0 if max_age is None else parse_duration(max_age, "max_age"))
    _grant(h, log, body, "granted", json_)


@agent_app.command("ungrant", epilog="Example: tokenledger agent ungrant importer backfill")
@guarded
def agent_ungrant(name: str, capability: str = CapabilityArg, scope: str = ScopeOpt,
                  home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Withdraw a grant: records appended afterwards no longer get the capability."""
    h = open_home(home)
    check_signer_id(name, "name")
    _grant(h, log, Grant(agent_id=name, capability=capability, scope=scope, active=False), "withdrawn", json_)


def _grant(h: Home, log: str | None, body: Grant, verb: str, json_: bool) -> None:
    """Refuse (exit 2, nothing appended) what readers would quarantine, then append the grant."""
    ring = control_ring(h, log)
    signer = ring.get(h.operator_key().key_id)
    if signer is not None:  # an invalid operator key is refused by the emitter, with its own error
        try:
            ring.validate_control(signer, body)
        except RejectError as e:
            raise ValidationError("name", body.agent_id, f"readers would reject this grant: {e.reason}",
                                  code_readers_give=e.code.value) from None
    if not body.active and ring.granted(body.agent_id, body.capability, body.scope) is None:
        raise ValidationError("capability", body.capability, f"{body.agent_id} holds no such grant "
                              f"(see `tokenledger clock show`)", scope=body.scope or None)
    (event_id,) = operator_emit(h, log, [body])
    info = {"signer_id": body.agent_id, "capability": body.capability, "scope": body.scope,
            "max_age_us": body.max_age_us, "active": body.active, "event_id": event_id}
    print_json(info) if json_ else table(verb, ["field", "value"], [[a, b] for a, b in info.items()])
