"""The ASGI application of ``tokenledger serve``: FastAPI, its routers, error mapping and request metrics.

FastAPI (on Starlette, served by uvicorn with httptools and uvloop) because it writes the OpenAPI document
(``/openapi.json``) from the endpoints themselves and checks the small request bodies (reservations) declaratively;
the hot ingest paths read their raw bodies and validate with the ledger's own checks (``ledger.sdk.json_events``,
``ledger.sdk.batch_gate``), so no per-event model object is built.

Every error is RFC 9457 problem+json (``processors.api.problems``): a ``Problem``, a ledger error, a request FastAPI
could not parse (400 naming the parameter), or anything unexpected (500 without internals; logged).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from ledger.errors import LedgerError
from processors.api import metrics, ops
from processors.api.problems import Problem, from_ledger_error, problem_response
from processors.api.state import Service

log = logging.getLogger("tokenledger.serve")

# the feature routers, each its own module with a ``router``; a module not written yet is simply absent
FEATURES = ("batches", "events", "traces", "budgets", "report")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RequestMetrics:
    """Counts every answered request by route template (not raw path: bounded label values) and status."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.HTTP_REQUESTS.labels(route, scope.get("method", ""), str(status)).inc()
            metrics.HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)


def create_app(home_path: Path, *, log_url: str | None = None, public_metrics: bool = False) -> FastAPI:
    """The service over the home at ``home_path`` (its log unless ``log_url`` names another)."""
    svc = Service.open(home_path, log_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        collector = metrics.HomeCollector(svc.home)
        metrics.REGISTRY.register(collector)
        try:
            yield
        finally:
            metrics.REGISTRY.unregister(collector)
            svc.close()

    app = FastAPI(title="tokenledger", version="1", lifespan=lifespan,
                  description="The front door of a tokenledger home: signed and JSON event ingest, OTLP traces, "
                              "reservations, balances, usage, the cost report, health and metrics. Authenticate with "
                              "`Authorization: Bearer <token>` (`tokenledger token create`). Errors are RFC 9457 "
                              "problem+json.")
    app.state.service = svc
    app.state.public_metrics = public_metrics
    app.include_router(ops.router)
    for name in FEATURES:
        try:
            module = importlib.import_module(f"processors.api.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"processors.api.{name}":
                raise
            continue
        app.include_router(module.router)

    @app.exception_handler(Problem)
    async def on_problem(request: Request, e: Exception) -> Response:
        assert isinstance(e, Problem)
        return problem_response(e)

    @app.exception_handler(LedgerError)
    async def on_ledger_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, LedgerError)
        return problem_response(from_ledger_error(e))

    @app.exception_handler(RequestValidationError)
    async def on_bad_request(request: Request, e: Exception) -> Response:
        assert isinstance(e, RequestValidationError)
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path"))
        return problem_response(Problem(400, "Invalid field", code="invalid_field", field=where or None,
                                        value=first.get("input"), detail=str(first.get("msg", "invalid request"))))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, StarletteHTTPException)
        title = {404: "Not found", 405: "Method not allowed"}.get(e.status_code, "HTTP error")
        return problem_response(Problem(e.status_code, title, detail=str(e.detail), headers=dict(e.headers or {})))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, e: Exception) -> Response:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return problem_response(Problem(500, "Internal error", code="internal",
                                        detail="the service failed; its log has the traceback"))

    app.add_middleware(RequestMetrics)
    return app
