"""``GET /report``: the cost report as one HTML page, the very page ``tokenledger report --html`` writes.

``?from=&to=&agent=&model=&project=`` narrow it (``processors.report.model.ReportFilter``: event time ``from``
inclusive .. ``to`` exclusive, RFC 3339; an agent, a model id as reported, a project). Scope ``read``: an operator
token sees any agent or all of them; an agent token sees only its own agent (``agent`` is forced to it; naming another
is a 403). Bearer token only, as every endpoint (no token in the URL: it would land in logs and histories).

The page is built from the published views only and rendered by ``processors.report.html.render_html``, which
escapes every text it shows and has no script and no external reference. The answer adds a Content-Security-Policy
that allows nothing but the page's own stylesheet (by its SHA-256) and inline SVG, so a text that slipped through
escaping could still run nothing and load nothing; ``nosniff``, no referrer, not cached (it holds spend data). The
home is named by its directory's name, not its path on the server. The freshness of the views it read (every
processor's: when each last published, how old that is) is the ``X-Tokenledger-Freshness`` header, compact JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import HTMLResponse

from ledger.wire.events import check_str
from processors import REGISTRY
from processors.api.auth import Principal, require
from processors.api.params import time_range
from processors.api.state import Service, service
from processors.report.html import CSS, render_html
from processors.report.model import ReportFilter, build

router = APIRouter(tags=["report"])

# the page's one <style> element holds exactly CSS: allowed by its hash, nothing else may style, script or load
_STYLE_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# the page has no JSON body to carry it: the views' publish times and ages ride in a header (compact JSON)
FRESHNESS_HEADER = "X-Tokenledger-Freshness"
REPORT_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                  "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

def report_filter(who: Principal, from_: str | None, to: str | None, agent: str | None, model: str | None,
                  project: str | None) -> ReportFilter:
    """The filter a request asks for, checked; an agent token's is always its own agent (module doc)."""
    start, end = time_range(from_, to)
    for name, value in (("agent", agent), ("model", model), ("project", project)):
        if value is not None:
            check_str(name, value)
    if agent is not None:
        who.acts_for(agent)
    elif not who.operator:
        agent = who.agent
    return ReportFilter(from_us=start, to_us=end, agent=agent, model=model, project=project)


@router.get("/report", response_class=HTMLResponse, summary="The cost report as one self-contained HTML page")
def report(from_: Annotated[str | None, Query(alias="from", description="RFC 3339, inclusive")] = None,
           to: Annotated[str | None, Query(description="RFC 3339, exclusive")] = None,
           agent: Annotated[str | None, Query(description="only this agent (an agent token: always its own)")] = None,
           model: Annotated[str | None, Query(description="only this model id, as reported")] = None,
           project: Annotated[str | None, Query(description="only this project")] = None,
           who: Principal = Depends(require("read")),  # noqa: B008 (FastAPI idiom)
           svc: Service = Depends(service)) -> HTMLResponse:  # noqa: B008
    filters = report_filter(who, from_, to, agent, model, project)
    page = build(svc.home, filters, log_url=svc.log_url)
    fresh = {name: {"published_at": f["published_at"], "age_s": f["age_s"]}
             for name, f in svc.freshness(*sorted(REGISTRY)).items()}
    return HTMLResponse(render_html({**page, "home": svc.home.path.name}),
                        headers={**REPORT_HEADERS, FRESHNESS_HEADER: json.dumps(fresh, separators=(",", ":"))})


__all__ = ["CONTENT_SECURITY_POLICY", "FRESHNESS_HEADER", "report_filter", "router"]
