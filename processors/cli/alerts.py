"""``tokenledger alerts add-webhook | list | remove | deliveries``: alert delivery by webhook.

``add-webhook`` declares a sink as a ``webhook_sink`` control event signed by the operator (URL, the alert kinds
it receives, the SHA-256 of its secret) after writing the secret to the home (``<home>/secrets/webhooks/<id>.key``,
mode 0600): the secret is never on the log and never printed. The deliveries processor (``tokenledger run``)
POSTs each matching alert to the sink, signed, retried with backoff (``processors.deliveries``). ``list`` shows
the sinks the log holds (and whether each one's secret file is usable), ``remove`` appends the sink with
``active`` false and deletes its secret, ``deliveries`` prints the published ``alert_deliveries`` view.
Registered by ``processors.cli.build_app``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, fmt_time, guarded, open_home, operator_emit, print_json, table
from ledger.errors import LedgerError, ValidationError
from ledger.sdk import webhooks
from ledger.sdk.home import Home, resolve_log_url
from ledger.wire.events import WEBHOOK_EVENTS, WebhookSink

alerts_app = typer.Typer(
    no_args_is_help=True, help="Alert delivery: webhook sinks that receive budget alerts and rejections, signed.",
    epilog="Example: tokenledger alerts add-webhook https://ops.example.com/hooks/ledger "
           "--events soft_limit,hard_limit,suspended,rejections --secret-file ./webhook.secret")

DELIVERY_COLUMNS = ("delivery_id", "sink_id", "kind", "status", "attempts", "last_http_status", "last_error",
                    "next_attempt_at_us", "delivered_at_us")


def register(app: typer.Typer) -> None:
    """Add the ``alerts`` group to ``app``."""
    app.add_typer(alerts_app, name="alerts")


def parse_events(text: str) -> tuple[str, ...]:
    """``--events soft_limit,hard_limit``: comma-separated alert kinds, each one known, none twice."""
    kinds = tuple(k.strip() for k in text.split(","))
    for i, k in enumerate(kinds):
        if k not in WEBHOOK_EVENTS:
            raise ValidationError(f"events[{i}]", k, f"must be one of {', '.join(WEBHOOK_EVENTS)}")
        if k in kinds[:i]:
            raise ValidationError(f"events[{i}]", k, "is named twice")
    return kinds


def _secret(secret: str | None, secret_file: str | None) -> bytes:
    if (secret is None) == (secret_file is None):
        raise ValidationError("secret", "<not shown>" if secret is not None else None,
                              "give exactly one of --secret or --secret-file",
                              hint="a random one: openssl rand -hex 32 > webhook.secret")
    if secret is not None:
        return webhooks.check_secret(secret)
    assert secret_file is not None
    return webhooks.read_secret_file(secret_file)


def _sinks(h: Home, log: str | None) -> dict[str, webhooks.SinkVersion]:
    lg = h.open_log(resolve_log_url(log, h))
    try:
        return webhooks.sinks_in_force(webhooks.read_sinks(lg, h.control_topic, h.anchors()))
    finally:
        lg.close()


def _secret_state(h: Home, v: webhooks.SinkVersion) -> str:
    """ok | removed | the reason its secret file cannot sign (the secret is read, compared, never shown)."""
    if not v.sink.active:
        return "removed"
    try:
        webhooks.load_secret(h, v.sink.sink_id, v.sink.secret_sha256)
    except LedgerError as e:
        return e.message
    return "ok"


def _sink_info(h: Home, v: webhooks.SinkVersion) -> dict[str, Any]:
    s = v.sink
    return {"sink_id": s.sink_id, "url": s.url, "events": list(s.events), "active": s.active,
            "secret_sha256": s.secret_sha256.hex(), "secret": _secret_state(h, v), "event_id": v.event_id,
            "updated": fmt_time(v.event_time_us), "secret_file": str(h.webhook_secret_path(s.sink_id))}


@alerts_app.command("add-webhook", epilog="Example: tokenledger alerts add-webhook https://ops.example.com/hooks "
                                         "--events soft_limit,hard_limit,suspended,rejections --secret-file ./s.txt")
@guarded
def add_webhook(url: str = typer.Argument(..., help="Where alerts are POSTed: an http or https URL."),
                events: str = typer.Option(..., "--events", help=f"Alert kinds, comma-separated: "
                                                                 f"{', '.join(WEBHOOK_EVENTS)}."),
                secret: str | None = typer.Option(None, "--secret", help="The signing secret (16 to 1,024 bytes; "
                                                  "prefer --secret-file: a command line is visible to others)."),
                secret_file: str | None = typer.Option(None, "--secret-file",
                                                       help="A file holding the signing secret (one trailing "
                                                            "newline is dropped)."),
                sink_id: str | None = typer.Option(None, "--sink-id", help="The sink's id (default: wh- and a hash "
                                                   "of the URL; the same id again replaces the sink)."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Declare a webhook sink (signed by the operator); its secret is kept in the home (0600), never on the log."""
    webhooks.check_url(url)
    kinds = parse_events(events)
    key = _secret(secret, secret_file)
    sid = webhooks.check_sink_id(sink_id if sink_id is not None else webhooks.sink_id_for(url))
    body = WebhookSink(sink_id=sid, url=url, events=kinds, secret_sha256=webhooks.secret_sha256(key))
    h = open_home(home)
    path = webhooks.save_secret(h, sid, key)  # first: a sink on the log always has its secret in the home
    (event_id,) = operator_emit(h, log, [body])
    info = {"sink_id": sid, "url": url, "events": ",".join(body.events), "secret_sha256": body.secret_sha256.hex(),
            "secret_file": str(path), "event_id": event_id}
    print_json(info) if json_ else table("webhook sink declared", ["field", "value"], [[k, v] for k, v in info.items()])


@alerts_app.command("list", epilog="Example: tokenledger alerts list --json")
@guarded
def list_sinks(home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """The webhook sinks on the log (as last declared) and whether each one's secret file can sign."""
    h = open_home(home)
    rows = [_sink_info(h, v) for v in _sinks(h, log).values()]
    if json_:
        print_json(rows)
        return
    table("webhook sinks", ["sink_id", "url", "events", "active", "secret", "updated"],
          [[r["sink_id"], r["url"], ",".join(r["events"]), "yes" if r["active"] else "no", r["secret"], r["updated"]]
           for r in rows])


@alerts_app.command("remove", epilog="Example: tokenledger alerts remove wh-3f2a9c01b7de")
@guarded
def remove_sink(sink_id: str = typer.Argument(..., help="The sink's id (tokenledger alerts list)."),
                home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Remove a sink (a webhook_sink, active false): no new deliveries, its open ones fail; its secret is deleted."""
    webhooks.check_sink_id(sink_id)
    h = open_home(home)
    current = _sinks(h, log).get(sink_id)
    if current is None or not current.sink.active:
        raise ValidationError("sink_id", sink_id, "is not an active sink on the log" if current is None else
                              "was already removed", hint="list them with: tokenledger alerts list")
    s = current.sink
    body = WebhookSink(sink_id=s.sink_id, url=s.url, events=s.events, secret_sha256=s.secret_sha256, active=False)
    (event_id,) = operator_emit(h, log, [body])
    with contextlib.suppress(FileNotFoundError):
        h.webhook_secret_path(sink_id).unlink()  # after the removal is on the log: nothing signs with it any more
    info = {"sink_id": sink_id, "url": s.url, "active": False, "event_id": event_id}
    print_json(info) if json_ else table("webhook sink removed", ["field", "value"], [[k, v] for k, v in info.items()])


@alerts_app.command("deliveries", epilog="Example: tokenledger alerts deliveries --status failed")
@guarded
def deliveries(status: str | None = typer.Option(None, "--status", help="Only pending | retrying | delivered | "
                                                                         "failed."),
               home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """The published alert_deliveries view: each (sink, alert) delivery, its status, attempts and last error."""
    from processors import views

    if status is not None and status not in ("pending", "retrying", "delivered", "failed"):
        raise ValidationError("status", status, "must be one of pending, retrying, delivered, failed")
    h = open_home(home)
    rows = sorted((r for r in views.read_view(h, "alert_deliveries") if status is None or r["status"] == status),
                  key=lambda r: (r["alert_time_us"], r["delivery_id"]))
    if json_:
        print_json(rows)
    else:
        table("alert deliveries", list(DELIVERY_COLUMNS), [[r[c] for c in DELIVERY_COLUMNS] for r in rows])
