"""``tokenledger init``: create a ledger home (operator key, config, log), register the operator on the
log and append the default price book as signed control events."""

from __future__ import annotations

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, out, print_json, table
from ledger.sdk.home import Home, resolve_home
from ledger.sdk.registration import bootstrap


def register(app: typer.Typer) -> None:
    """Add ``init`` to ``app``."""
    app.command("init", epilog=INIT_EPILOG)(init)


INIT_EPILOG = "Example: tokenledger init --home ./ledger-home"


@guarded
def init(home: str | None = HomeOpt, log: str | None = LogOpt,
         partitions: int = typer.Option(1, help="Partitions of ledger.events (Kafka logs)."),
         topic_prefix: str = typer.Option("ledger", help="Topics are PREFIX.events, PREFIX.rejected, ..."),
         price_book: bool = typer.Option(True, help="Seed the price book from the installed price catalog "
                                                    "(genai-prices): price_set and price_match control events."),
         json_: bool = JsonOpt) -> None:
    """Create a ledger home: operator key, config and the log; register the operator on the log and
    seed the price book from the installed catalog (prices and model-matching rules of the main providers, as
    operator-signed control events; `tokenledger prices sync --provider P` adds others)."""
    path = resolve_home(home)
    h = Home.init(path, log_url=log, partitions=partitions, topic_prefix=topic_prefix)
    op = h.operator_key()
    lg = h.open_log()
    try:
        price_entries = bootstrap(h, lg, price_book=price_book)
    finally:
        lg.close()
    info = {"home": str(path), "log": h.config["log"], "topic": h.topic, "operator_key_id": op.key_id,
            "price_events": price_entries}
    if json_:
        print_json(info)
    else:
        table("ledger home created", ["field", "value"], [[k, v] for k, v in info.items()])
        out.print("next: tokenledger agent register NAME   (or: tokenledger demo)")
