"""LangGraph nodes under a ``BudgetManager`` (no LangGraph import: a node is a callable taking the graph state).

``govern_node(manager, agent, node, usage_key=None, confidence_key=None)``: per call, a closed confidence gate
raises ``BudgetExceededError(requested=0)``; the node runs; the tokens are ``result[usage_key]`` when the result is a
mapping holding an int or finite float there (not a bool; a float truncated), else estimated from the ``str``
values (and lists of ``str``) of the state and the result mappings; ``result[confidence_key]``, when present, is the
confidence. Then ``manager.record_usage(agent, tokens, note="langgraph:<node name>", confidence=...)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from ledger.compat.tbc.manager import BudgetManager, reported_tokens
from ledger.economics.token_estimate import count_tokens


def _texts(obj: Any) -> list[str]:
    if not isinstance(obj, Mapping):
        return []
    out: list[str] = []
    for value in obj.values():
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
    return out


def estimate_from_state(state: Any, result: Any) -> int:
    """The estimated tokens of a node call from its state and result mappings."""
    return sum(count_tokens(t) for t in _texts(state) + _texts(result))


def govern_node(manager: BudgetManager, agent_name: str, node: Callable[..., Any], usage_key: str | None = None,
                confidence_key: str | None = None) -> Callable[..., Any]:
    manager._contract(agent_name)  # UnknownAgentError now, not at the first call
    name = getattr(node, "__name__", "node")

    @functools.wraps(node)
    def wrapped(state: Any, *args: Any, **kwargs: Any) -> Any:
        manager.check_gate(agent_name)
        result = node(state, *args, **kwargs)
        tokens = None
        confidence = None
        if isinstance(result, Mapping):
            if usage_key is not None:
                tokens = reported_tokens(result.get(usage_key))
            if confidence_key is not None:
                confidence = result.get(confidence_key)
        if tokens is None:
            tokens = estimate_from_state(state, result)
        manager.record_usage(agent_name, tokens, note=f"langgraph:{name}", confidence=confidence)
        return result

    return wrapped


class TBCGraphGovernor:
    """One manager for a graph's nodes: ``register`` agents, ``wrap`` nodes, ``report``."""

    def __init__(self, manager: BudgetManager | None = None) -> None:
        self.manager = manager if manager is not None else BudgetManager()

    def register(self, agent_name: str, **kwargs: Any) -> Any:
        return self.manager.register_agent(agent_name, **kwargs)

    def wrap(self, agent_name: str, node: Callable[..., Any], usage_key: str | None = None,
             confidence_key: str | None = None) -> Callable[..., Any]:
        return govern_node(self.manager, agent_name, node, usage_key=usage_key, confidence_key=confidence_key)

    def report(self) -> dict[str, dict[str, int]]:
        return self.manager.report()
