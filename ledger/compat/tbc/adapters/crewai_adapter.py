"""CrewAI agents under a ``BudgetManager`` (no CrewAI import: a runner is any callable).

``govern_agent(manager, agent, runner, usage_fn=None, confidence_fn=None)``: per call, a closed confidence gate
raises ``BudgetExceededError(requested=0)``; the runner runs; the tokens are ``usage_fn(result)`` when it returns an
int or finite float (not a bool; a float truncated); if it raises or returns anything else, they are estimated from
the ``str`` arguments and the result's text (the result itself if a ``str``, else its ``raw``, ``output`` or
``result`` attribute, the first that is a ``str``). Then ``manager.record_usage(agent, tokens,
note="crewai:<runner name>", confidence=confidence_fn(result))``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ledger.compat.tbc.manager import BudgetManager, reported_tokens
from ledger.economics.token_estimate import estimate_call_tokens

TEXT_ATTRIBUTES = ("raw", "output", "result")  # where CrewAI-like result objects keep their text


def result_text(result: Any) -> str | None:
    if isinstance(result, str):
        return result
    for attr in TEXT_ATTRIBUTES:
        value = getattr(result, attr, None)
        if isinstance(value, str):
            return value
    return None


def govern_agent(manager: BudgetManager, agent_name: str, runner: Callable[..., Any],
                 usage_fn: Callable[[Any], Any] | None = None,
                 confidence_fn: Callable[[Any], float | None] | None = None) -> Callable[..., Any]:
    manager._contract(agent_name)
    name = getattr(runner, "__name__", "runner")

    @functools.wraps(runner)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        manager.check_gate(agent_name)
        result = runner(*args, **kwargs)
        tokens = None
        if usage_fn is not None:
            try:
                tokens = reported_tokens(usage_fn(result))
            except Exception:  # noqa: BLE001 - the reference's rule: a failing usage_fn means "estimate instead"
                tokens = None
        if tokens is None:
            tokens = estimate_call_tokens(args, kwargs, result_text(result))
        confidence = confidence_fn(result) if confidence_fn is not None else None
        manager.record_usage(agent_name, tokens, note=f"crewai:{name}", confidence=confidence)
        return result

    return wrapped


class TBCCrewGovernor:
    """One manager for a crew: ``register`` agents, ``wrap`` runners, ``report``."""

    def __init__(self, manager: BudgetManager | None = None) -> None:
        self.manager = manager if manager is not None else BudgetManager()

    def register(self, agent_name: str, **kwargs: Any) -> Any:
        return self.manager.register_agent(agent_name, **kwargs)

    def wrap(self, agent_name: str, runner: Callable[..., Any], usage_fn: Callable[[Any], Any] | None = None,
             confidence_fn: Callable[[Any], float | None] | None = None) -> Callable[..., Any]:
        return govern_agent(self.manager, agent_name, runner, usage_fn=usage_fn, confidence_fn=confidence_fn)

    def report(self) -> dict[str, dict[str, int]]:
        return self.manager.report()
