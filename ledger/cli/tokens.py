"""``tokenledger token create | list | revoke``: the API tokens ``tokenledger serve`` accepts
(``ledger.sdk.tokens``)."""

from __future__ import annotations

import time

import typer

from ledger.cli.output import HomeOpt, JsonOpt, err, fmt_time, guarded, open_home, out, print_json, table
from ledger.sdk.tokens import DEFAULT_RATE_PER_S, SCOPES, TokenInfo, TokenStore, parse_ttl

token_app = typer.Typer(no_args_is_help=True, help="API tokens for `tokenledger serve` (stored hashed; shown once).",
                        epilog="Example: tokenledger token create --agent researcher --scopes ingest,read")


def register(app: typer.Typer) -> None:
    """Add the ``token`` group to ``app``."""
    app.add_typer(token_app, name="token")


def _row(t: TokenInfo, now_us: int) -> list[str]:
    return [t.token_id, "(operator)" if t.operator else str(t.agent), ",".join(t.scopes), t.state(now_us),
            fmt_time(t.created_us), "never" if t.expires_us is None else fmt_time(t.expires_us), f"{t.rate_per_s:g}/s",
            t.note]


@token_app.command("create", epilog="Example: tokenledger token create --agent researcher\n\n"
                                    "tokenledger token create --operator --expires 30d --note grafana")
@guarded
def token_create(
        agent: str | None = typer.Option(None, "--agent", help="The agent this token acts for (only that agent)."),
        operator: bool = typer.Option(False, "--operator", help="An operator token: every agent, every scope, "
                                                               "/metrics. Give it to operators only."),
        scopes: str = typer.Option(",".join(SCOPES), "--scopes", help="Comma-separated: " + ", ".join(SCOPES) + "."),
        expires: str = typer.Option("90d", "--expires", help="Lifetime: 90d, 12h, 30m, 45s, or never."),
        rate: float = typer.Option(DEFAULT_RATE_PER_S, "--rate", help="Requests per second this token may send "
                                                                     "(per service instance)."),
        note: str = typer.Option("", "--note", help="What the token is for (shown by `token list`)."),
        home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Create a token and print it ONCE (the home keeps only its SHA-256): copy it now."""
    h = open_home(home)
    store = TokenStore(h.tokens_file)
    try:
        issued = store.create(agent=agent, operator=operator, scopes=scopes.split(","), ttl_us=parse_ttl(expires),
                              rate_per_s=rate, note=note)
    finally:
        store.close()
    now = time.time_ns() // 1000
    if json_:
        print_json({"token": issued.token, **issued.info.to_dict(now)})
        return
    out.print(issued.token)
    err.print(f"token {issued.info.token_id} for {'every agent (operator)' if operator else agent}, scopes "
              f"{','.join(issued.info.scopes)}, expires "
              f"{'never' if issued.info.expires_us is None else fmt_time(issued.info.expires_us)}. "
              "It is not shown again: store it as a secret. Use it as `Authorization: Bearer <token>`.")


@token_app.command("list", epilog="Example: tokenledger token list --json")
@guarded
def token_list(home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Every token of the home: id, agent, scopes, state (active, expired, revoked). Never the tokens themselves."""
    h = open_home(home)
    store = TokenStore(h.tokens_file)
    try:
        tokens = store.list()
    finally:
        store.close()
    now = time.time_ns() // 1000
    if json_:
        print_json([t.to_dict(now) for t in tokens])
        return
    table("tokens", ["id", "agent", "scopes", "state", "created", "expires", "rate", "note"],
          [_row(t, now) for t in tokens])


@token_app.command("revoke", epilog="Example: tokenledger token revoke 3f2a9c01b7de")
@guarded
def token_revoke(token_id: str, home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Revoke a token by its id: every service on this home refuses it from its next request."""
    h = open_home(home)
    store = TokenStore(h.tokens_file)
    try:
        info = store.revoke(token_id)
    finally:
        store.close()
    now = time.time_ns() // 1000
    if json_:
        print_json(info.to_dict(now))
        return
    table("revoked", ["id", "agent", "scopes", "state", "created", "expires", "rate", "note"], [_row(info, now)])
