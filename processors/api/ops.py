"""Operations endpoints: ``/healthz`` (the process answers), ``/readyz`` (the log is reachable; processors' lag) and
``/metrics`` (Prometheus text format).

``/healthz`` and ``/readyz`` are public (load balancers call them without a token) and say nothing secret: states,
lags, positions. ``/metrics`` names agents and budgets, so it needs an operator token unless the service was started
with ``--public-metrics`` (for a scraper on a private network).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledger import limits
from ledger.errors import LedgerError
from processors.api.auth import OPERATOR, authenticate
from processors.api.metrics import REGISTRY
from processors.api.problems import Problem
from processors.api.state import Service, service

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The log is reachable; each processor's state and lag",
            responses={503: {"description": "the log is unreachable, or a processor is behind ?max_lag="}})
def readyz(svc: Service = Depends(service),  # noqa: B008 (FastAPI idiom)
           max_lag: int | None = Query(None, ge=0, le=limits.MAX_READY_LAG_RECORDS,
                                       description="answer 503 when a processor is not running or lags more records "
                                                   "than this")) -> Response:
    from processors.services import replay as replay_service

    body: dict[str, Any] = {"status": "ready", "log": {"url_scheme": svc.log_url.split(":", 1)[0]}}
    ok = True
    try:
        body["log"]["events_end_offsets"] = [svc.log.end_offset(svc.home.topic, p)
                                             for p in range(svc.log.partitions(svc.home.topic))]
    except LedgerError as e:
        ok = False
        body["log"]["error"] = e.message
    statuses = replay_service.status(svc.home)
    body["processors"] = {s.processor: {"state": s.state, "lag": s.lag, "events_per_s": s.events_per_s,
                                        "updated_s_ago": s.updated_s_ago} for s in statuses}
    if max_lag is not None:
        behind = [s.processor for s in statuses if s.state != "running" or s.lag is None or s.lag > max_lag]
        if behind:
            ok = False
            body["behind"] = behind
    if not ok:
        body["status"] = "not_ready"
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
def metrics(request: Request, svc: Service = Depends(service)) -> Response:  # noqa: B008 (FastAPI idiom)
    if not request.app.state.public_metrics:
        info = authenticate(request, svc)
        if not info.operator:
            raise Problem(403, "Forbidden", code="operator_only", detail="metrics need an operator token "
                          f"(or start the service with --public-metrics); scope {OPERATOR}")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
