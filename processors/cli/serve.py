"""``tokenledger serve``: the HTTP front door (``processors.api``) on uvicorn."""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from ledger.cli.output import HomeOpt, LogOpt, err, guarded, open_home
from ledger.errors import ValidationError

DEFAULT_PORT = 8787
LISTEN_BACKLOG = 2048  # pending connections the socket queues before refusing (bursts of clients)
GRACEFUL_SHUTDOWN_S = 10  # on SIGTERM: requests in flight get this long to finish (their appends are acknowledged)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command(epilog="Example: tokenledger serve\n\n"
                       "Also: tokenledger serve --host 0.0.0.0 --port 8443 --tls-cert cert.pem --tls-key key.pem\n\n"
                       "then: curl -s localhost:8787/readyz")(guarded(serve))


def serve(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
          port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to listen on (0: any free port; the bound one "
                                                                "is printed)."),
          tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate chain: serve HTTPS."),
          tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
          public_metrics: bool = typer.Option(False, "--public-metrics", help="Serve /metrics without a token (for a "
                                                                              "scraper on a private network)."),
          home: str | None = HomeOpt, log: str | None = LogOpt) -> None:
    """Serve the ledger over HTTP: ingest (signed batches, JSON events, OTLP traces), reservations, balances, usage,
    the report, /healthz, /readyz, /metrics and /openapi.json. Callers authenticate with tokens from
    `tokenledger token create`. Stops cleanly on Ctrl-C / SIGTERM."""
    import uvicorn

    from processors.api.app import create_app

    if not 0 <= port <= 65535:
        raise ValidationError("port", port, "must be 0-65535")
    if (tls_cert is None) != (tls_key is None):
        raise ValidationError("tls_key" if tls_key is None else "tls_cert", None, "give --tls-cert and --tls-key "
                              "together")
    for name, path in (("tls_cert", tls_cert), ("tls_key", tls_key)):
        if path is not None and not path.is_file():
            raise ValidationError(name, str(path), "is not a readable file")
    h = open_home(home)
    app = create_app(h.path, log_url=log, public_metrics=public_metrics)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValidationError("port", port, f"cannot listen on {host}:{port}: {e.strerror}",
                              hint="choose another --port, or stop what listens there") from None
    sock.listen(LISTEN_BACKLOG)
    bound = sock.getsockname()[1]
    scheme = "https" if tls_cert else "http"
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    # the first line on stderr says where it listens (scripts and tests read the port from it when --port 0)
    err.print(f"tokenledger serve: listening on {scheme}://{shown}:{bound} (home {h.path}; Ctrl-C to stop)")
    config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning", access_log=False,
                            ssl_certfile=str(tls_cert) if tls_cert else None,
                            ssl_keyfile=str(tls_key) if tls_key else None,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
