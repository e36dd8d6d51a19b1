"""The demo: the whole system on a seeded multi-agent workload, end to end, in one call.

``open_or_create`` makes and bootstraps a home unless one exists; ``run_demo`` emits the workload
(``ledger.testing.workload``: signed, chained, appended, verified), runs the processors in waves
(``processors.order_by_topics``) until each has caught up, asks the published views the demo's
questions (``DEMO_VIEWS``) and writes the cost report. Each call appends a new run; the log and its
verification stay whole across runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError
from ledger.sdk.home import Home, HomeLayout, resolve_log_url
from ledger.sdk.registration import bootstrap
from ledger.testing import workload
from processors import order_by_topics, views
from processors.host.supervisor import supervise
from processors.report.html import write_html
from processors.report.model import build

EVENTS_PER_TASK = 25  # about what one task of the workload emits (for a progress total)

_USD = "CAST(CAST({} AS DECIMAL(20, 0)) / 1000000 AS DECIMAL(20, 6))"  # micro-USD shown as dollars, exactly

DEMO_VIEWS = (
    ("events by kind", "SELECT kind, count(*) AS events FROM events GROUP BY kind ORDER BY events DESC"),
    ("cost per agent: incurred vs allocated by Shapley (USD)",
     f"SELECT agent_id AS agent, interactions, {_USD.format('incurred_micros')} AS incurred, "  # noqa: S608 (constants)
     f"{_USD.format('allocated_micros')} AS allocated, {_USD.format('balance_micros')} AS balance "
     "FROM agent_costs WHERE method = 'shapley' ORDER BY allocated DESC"),
    ("budgets (this hour)",
     "SELECT scope, scope_id, budget_kind, allocation, consumed, round(utilisation, 3) AS utilisation, status "
     "FROM budgets QUALIFY row_number() OVER (PARTITION BY scope, scope_id, budget_kind "
     "ORDER BY window_start_us DESC) = 1 ORDER BY scope, scope_id, budget_kind"),
    ("reputation", "SELECT agent_id AS agent, round(overall, 3) AS overall, tier, multiplier, events_counted "
                   "FROM reputation ORDER BY overall DESC"),
    ("settlements and checkpoints",
     f"SELECT 'settlements' AS what, count(*) AS n, {_USD.format('coalesce(sum(amount_micros), 0)')} AS usd "  # noqa: S608
     "FROM settlements UNION ALL SELECT 'signed Merkle checkpoints', count(*), NULL FROM checkpoints"),
    ("LLM tokens by agent and model",
     "SELECT signer_id AS agent, model, count(*) AS calls, sum(input_tokens) AS input_tokens, "
     "sum(cache_read_tokens) AS cached, sum(output_tokens) AS output_tokens FROM events "
     "WHERE kind = 'action' AND model IS NOT NULL GROUP BY ALL ORDER BY input_tokens DESC"),
    ("agent-to-agent calls (the four flows)",
     "SELECT requestor_id, responder_id, count(*) AS calls, sum(request_output_tokens) AS req_out, "
     "sum(request_input_tokens) AS req_in, sum(response_output_tokens) AS resp_out, "
     "sum(response_input_tokens) AS resp_in FROM events WHERE kind = 'interaction' GROUP BY ALL ORDER BY calls DESC"),
)


@dataclass(frozen=True)
class DemoResult:
    """One demo run: what was emitted and verified, how long the processors took, the views' answers
    (title → table, in ``DEMO_VIEWS`` order) and where the report was written."""

    home: str
    log: str
    run: str
    tasks: int
    events: int
    records: int
    emit_seconds: float
    processing_seconds: float
    processors: tuple[str, ...]
    per_agent: dict[str, dict[str, int]]
    verify: dict[str, Any]
    views: dict[str, views.Table]
    report: str

    @property
    def events_per_s(self) -> int:
        return round(self.events / self.emit_seconds) if self.emit_seconds else 0

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home, "log": self.log, "run": self.run, "tasks": self.tasks, "events": self.events,
                "records": self.records, "emit_seconds": round(self.emit_seconds, 3),
                "processing_seconds": round(self.processing_seconds, 3), "per_agent": self.per_agent,
                "verify": self.verify, "views": {t: table.records() for t, table in self.views.items()},
                "report": self.report}


def open_or_create(path: Path, log_url: str | None = None) -> tuple[Home, bool]:
    """The home at ``path``; created and bootstrapped (operator, default price book) if it has none.
    Returns (home, created)."""
    if HomeLayout(path).config_file.exists():
        return Home.open(path), False
    h = Home.init(path, log_url=log_url)
    lg = h.open_log()
    try:
        bootstrap(h, lg)
    finally:
        lg.close()
    return Home.open(path), True


def run_processors(home: Home, log_url: str | None, on_event: Callable[[str], None]) -> dict[str, int]:
    """Run every processor until caught up, wave by wave (a wave starts once the one it reads from has
    caught up); stops after the first wave with a failure. Exit codes by processor."""
    codes: dict[str, int] = {}
    for wave in order_by_topics():
        codes.update(supervise(wave, home.path, log_url, until_caught_up=True, on_event=on_event))
        if any(codes.values()):
            break
    return codes


def ask_views(home: Home) -> dict[str, views.Table]:
    """The demo's questions (``DEMO_VIEWS``) over the published views."""
    with views.connect_views(home) as con:
        return {title: views.run(con, sql) for title, sql in DEMO_VIEWS}


def run_demo(home: Home, *, log_url: str | None = None, tasks: int = 200, seed: int = 7,
             progress: Callable[[int], None] | None = None,
             on_event: Callable[[str], None] = lambda message: None) -> DemoResult:
    """Emit ``tasks`` tasks of the seeded workload, run the processors until caught up, ask the views and
    write the report (``progress``: events emitted; ``on_event``: the supervisor's messages)."""
    s = workload.run_demo(home, tasks=tasks, seed=seed, log_url=resolve_log_url(log_url, home), progress=progress)
    t0 = time.perf_counter()
    codes = run_processors(home, log_url, on_event)
    processing_s = time.perf_counter() - t0
    if any(codes.values()):
        raise LedgerError("a processor failed during the demo", exit_codes=codes,
                          hint=f"see `tokenledger status --home {home.path}`")
    answers = ask_views(home)
    report = write_html(build(home), home.report_file)
    return DemoResult(home=s.home, log=s.log, run=s.run, tasks=s.tasks, events=s.events, records=s.records,
                      emit_seconds=s.seconds, processing_seconds=processing_s, processors=tuple(sorted(codes)),
                      per_agent=s.per_agent, verify=dict(s.verify), views=answers, report=str(report))


__all__ = ["DEMO_VIEWS", "EVENTS_PER_TASK", "DemoResult", "ask_views", "open_or_create", "run_demo",
           "run_processors"]
