"""tbcontracts' exceptions: ``TBCError`` and its two kinds.

``UnknownAgentError`` is also a ``KeyError`` here (the reference's is not): the layer's ``Ledger`` and ``Reallocator``
raise it where the reference raises a plain ``KeyError`` for an unknown agent, so code catching either still works.
"""

from __future__ import annotations


class TBCError(Exception):
    """Base of the layer's budget errors."""


class BudgetExceededError(TBCError):
    """A spend the agent's budget could not cover, even after reallocation (or the confidence gate was closed:
    then ``requested`` is 0, as in the reference)."""

    def __init__(self, agent_name: str, requested: int, available: int) -> None:
        self.agent_name = agent_name
        self.requested = requested
        self.available = available
        super().__init__(f"Agent '{agent_name}' requested {requested} tokens but only {available} were available "
                         "even after attempting reallocation.")


class UnknownAgentError(TBCError, KeyError):
    """An agent name no contract was registered for."""

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
