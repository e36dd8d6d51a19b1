"""``tokenledger keys new | list | show``: Ed25519 key files in the home (mode 0600)."""

from __future__ import annotations

import typer

from ledger.cli.output import HomeOpt, JsonOpt, guarded, open_home, print_json, table
from ledger.errors import KeyFileError
from ledger.integrity.keys import SigningKey, load_key, public_key_fingerprint, save_key
from ledger.sdk.home import check_signer_id

keys_app = typer.Typer(no_args_is_help=True, help="Create and inspect Ed25519 key files (mode 0600).",
                       epilog="Example: tokenledger keys new researcher")


def register(app: typer.Typer) -> None:
    """Add the ``keys`` group to ``app``."""
    app.add_typer(keys_app, name="keys")


@keys_app.command("new", epilog="Example: tokenledger keys new researcher")
@guarded
def keys_new(name: str, home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Generate a key file for NAME (not yet trusted: register it with `agent register`)."""
    h = open_home(home)
    key = SigningKey.generate(check_signer_id(name, "name"))
    path = save_key(h.key_path(name), key)
    info = {"signer_id": name, "key_id": key.key_id, "path": str(path)}
    print_json(info) if json_ else table(None, ["signer", "key id", "file"], [[name, key.key_id, str(path)]])


@keys_app.command("list", epilog="Example: tokenledger keys list --json")
@guarded
def keys_list(home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """List the key files in the home (public parts only)."""
    h = open_home(home)
    rows = []
    for name in h.key_names():
        try:
            k = load_key(h.keys_dir / f"{name}.key")
            rows.append({"signer_id": name, "key_id": k.key_id, "ok": True, "problem": ""})
        except KeyFileError as e:
            rows.append({"signer_id": name, "key_id": "", "ok": False, "problem": e.message})
    if json_:
        print_json(rows)
    else:
        table("keys", ["signer", "key id", "problem"], [[r["signer_id"], r["key_id"], r["problem"]] for r in rows])


@keys_app.command("show", epilog="Example: tokenledger keys show operator")
@guarded
def keys_show(name: str, home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Show a key's public information (never the private key)."""
    h = open_home(home)
    k = h.load_key(name)
    info = {"signer_id": k.signer_id, "key_id": k.key_id, "public_key": k.public.raw.hex(),
            "fingerprint_sha256": public_key_fingerprint(k.public.raw), "file": str(h.key_path(name))}
    print_json(info) if json_ else table(None, ["field", "value"], [[a, b] for a, b in info.items()])
