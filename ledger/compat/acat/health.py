"""``agent_cost_attribution.health`` on the ledger: silent-degradation findings of
``ledger.sources.attribution.detect_degradation`` (errored stages, anomalously cheap stages) as dicts."""

from __future__ import annotations

from typing import Any

from ledger.compat.acat.ledger import as_run
from ledger.sources import attribution

DEFAULT_MIN_AGENTS = attribution.DEFAULT_MIN_AGENTS
DEFAULT_CHEAP_RATIO = 0.25  # read exactly as 1/4


def detect_degradation(run: Any, *, min_agents: int = DEFAULT_MIN_AGENTS,
                       cheap_ratio: Any = DEFAULT_CHEAP_RATIO) -> list[dict[str, str]]:
    """Findings ``{stage, kind, severity, detail}`` in first-seen stage order (kind ``errors`` or ``cheap``); an
    empty list is a healthy run. The run's own ``status`` is not consulted."""
    return [{"stage": f.stage, "kind": f.kind, "severity": f.severity, "detail": f.detail}
            for f in attribution.detect_degradation(as_run(run), min_agents=min_agents, cheap_ratio=cheap_ratio)]


def is_healthy(run: Any, **options: Any) -> bool:
    return not detect_degradation(run, **options)


__all__ = ["detect_degradation", "is_healthy"]
