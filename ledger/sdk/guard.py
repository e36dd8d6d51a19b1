"""The spend guard: reserve budget before an LLM call, refuse the call before any spend, commit what was used.

The contract between the guard and the instrumented clients (``ledger.sdk.instrument``): an instrumented call
asks ``active_guard()`` for the guard in force (a context variable, so threads and asyncio tasks each see their
own) and, when there is one, calls ``before_call`` with what it knows of the request before sending it (which
may raise ``BudgetRefused``: the request is then never sent) and ``after_call`` with the usage the response
reported. Everything else here is the guard's own business.
"""

from __future__ import annotations

import contextvars
from typing import Protocol

from ledger.wire.events import LlmUsage


class CallGuard(Protocol):
    """What an instrumented client calls on the guard in force."""

    def before_call(self, *, provider: str, model: str, input_tokens_estimate: int,
                    max_output_tokens: int | None) -> None:
        """Before the request is sent: hold budget for it (raises ``BudgetRefused`` when refused)."""

    def after_call(self, usage: LlmUsage) -> None:
        """After the response: the usage it reported (summed into the commit when the guard closes)."""


_ACTIVE: contextvars.ContextVar[CallGuard | None] = contextvars.ContextVar("tokenledger_guard", default=None)


def active_guard() -> CallGuard | None:
    """The guard in force in this thread or task, if any."""
    return _ACTIVE.get()
