"""Prometheus metrics of ``tokenledger serve`` (``prometheus-client``, text format at ``GET /metrics``).

Two kinds:
- **counted here**, as requests happen (module-level, in ``REGISTRY``): HTTP requests by route, method and status,
  and ingested events by route and outcome (feature modules call ``INGEST_EVENTS.labels(...).inc(n)``);
- **read at scrape time** from the home (``HomeCollector``): each processor's lag, events/s, events and rejected
  counts (its status file), publish age (its ``_state.json``), rejections by reason code (the journal's published
  ``rejections`` view) and budget utilisation by scope and kind (the budgets processor's ``budgets`` view). The view
  reads are cached for ``VIEW_METRICS_CACHE_S``: a scrape every second costs one DuckDB query per that period.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ledger import limits
from ledger.errors import LedgerError
from ledger.sdk.home import Home
from processors.api.state import published_state

VIEW_METRICS_CACHE_S = 5.0  # rejections and budget utilisation are read from the views at most this often

REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter("tokenledger_http_requests", "HTTP requests answered, by route template, method and status",
                        ("route", "method", "status"), registry=REGISTRY)
HTTP_LATENCY = Histogram("tokenledger_http_request_seconds", "Time to answer a request, by route template",
                         ("route",), registry=REGISTRY,
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
INGEST_EVENTS = Counter("tokenledger_ingest_events", "Events received by the ingest endpoints, by route and outcome "
                        "(accepted, duplicate, refused)", ("route", "outcome"), registry=REGISTRY)


class HomeCollector(Collector):
    """Gauges read from the home at scrape time (see the module docstring)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._lock = threading.Lock()
        self._cached_at = float("-inf")
        self._cached: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] = ([], [])

    def describe(self) -> list[Any]:
        return []  # collected lazily: describing would read the home at registration

    def collect(self) -> Iterator[Any]:
        from processors.services import replay as replay_service  # the processors' status files

        lag = GaugeMetricFamily("tokenledger_processor_lag_records", "Records on the log the processor has not read",
                                labels=("processor",))
        rate = GaugeMetricFamily("tokenledger_processor_events_per_second", "Events per second the processor folds",
                                 labels=("processor",))
        events = CounterMetricFamily("tokenledger_processor_events", "Events the processor has folded",
                                     labels=("processor",))
        rejected = CounterMetricFamily("tokenledger_processor_rejected", "Records the processor quarantined",
                                       labels=("processor",))
        up = GaugeMetricFamily("tokenledger_processor_up", "1 if the processor's process is running",
                               labels=("processor", "state"))
        age = GaugeMetricFamily("tokenledger_view_publish_age_seconds", "Seconds since the processor last published "
                                "its views", labels=("processor",))
        now = time.time()
        for s in replay_service.status(self.home):
            up.add_metric([s.processor, s.state], 1.0 if s.state == "running" else 0.0)
            if s.lag is not None:
                lag.add_metric([s.processor], float(s.lag))
            if s.events_per_s is not None:
                rate.add_metric([s.processor], float(s.events_per_s))
            if s.events is not None:
                events.add_metric([s.processor], float(s.events))
            if s.rejected is not None:
                rejected.add_metric([s.processor], float(s.rejected))
            published = published_state(self.home, s.processor)
            if published is not None:
                age.add_metric([s.processor], max(0.0, now - published["published_at"]))
        yield from (lag, rate, events, rejected, up, age)
        by_code, budgets = self._views()
        rejections = CounterMetricFamily("tokenledger_rejections", "Records quarantined by the journal, by reject code",
                                         labels=("code",))
        for code, n in by_code:
            rejections.add_metric([str(code)], float(n))
        util = GaugeMetricFamily("tokenledger_budget_utilisation_ratio", "Consumed / allocation of each budget in its "
                                 "current window", labels=("scope", "scope_id", "kind"))
        for scope, scope_id, kind, u in budgets:
            util.add_metric([str(scope), str(scope_id), str(kind)], float(u or 0.0))
        yield from (rejections, util)

    def _views(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        from processors import views

        with self._lock:
            if time.monotonic() - self._cached_at < VIEW_METRICS_CACHE_S:
                return self._cached
            try:
                with views.connect_views(self.home) as con:
                    by_code = list(views.run(con, "SELECT code, count(*) FROM rejections GROUP BY code"
                                                  " ORDER BY code").rows)
                    budgets = list(views.run(con, "SELECT scope, scope_id, budget_kind, utilisation FROM budgets"
                                                  " ORDER BY utilisation DESC NULLS LAST LIMIT ?",
                                             (limits.MAX_METRICS_BUDGET_SERIES,)).rows)
            except LedgerError:
                by_code, budgets = [], []  # views not verifiable right now (mid-publish): the next scrape tries again
            self._cached = (by_code, budgets)
            self._cached_at = time.monotonic()
            return self._cached
