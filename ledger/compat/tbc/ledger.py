"""tbcontracts' in-memory ``Ledger``: per agent, the tokens allocated and consumed, and the consumption entries.

``remaining = allocated - consumed``, negative when an agent is overdrawn (a raw ``record`` beyond the allocation,
as in the reference, and as the ledger's budgets views report it). Unknown agents raise ``UnknownAgentError``, a
``KeyError`` like the reference's.

Deviations: ``record`` refuses negative and non-int token counts and ``adjust_allocation`` refuses a change that
would make an allocation negative or is not an int (``ValidationError``, a ``ValueError``); the reference adds
whatever it is given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ledger.compat.tbc.exceptions import UnknownAgentError
from ledger.economics.reputation import require_id, require_int
from ledger.limits import INT64_MAX


@dataclass
class LedgerEntry:
    """One consumption entry (``timestamp``: wall-clock seconds when it was recorded)."""

    agent_name: str
    tokens: int
    timestamp: float = field(default_factory=time.time)
    note: str = ""


class Ledger:
    """Allocated and consumed tokens per agent, in registration order."""

    def __init__(self) -> None:
        self._allocated: dict[str, int] = {}
        self._consumed: dict[str, int] = {}
        self._entries: list[LedgerEntry] = []

    def _known(self, agent_name: str) -> str:
        if agent_name not in self._allocated:
            raise UnknownAgentError(f"Unknown agent '{agent_name}'. Register it first.")
        return agent_name

    def register(self, agent_name: str, allocated_tokens: int) -> None:
        """Set the agent's allocation (a re-registration replaces it); its consumption is kept."""
        require_id("agent_name", agent_name)
        self._allocated[agent_name] = require_int("allocated_tokens", allocated_tokens)
        self._consumed.setdefault(agent_name, 0)

    def record(self, agent_name: str, tokens: int, note: str = "") -> None:
        """Add ``tokens`` to the agent's consumption, unchecked against its allocation (an overdraw is allowed)."""
        self._known(agent_name)
        require_int("tokens", tokens)
        self._consumed[agent_name] += tokens
        self._entries.append(LedgerEntry(agent_name, tokens, note=note))

    def remaining(self, agent_name: str) -> int:
        return self._allocated[self._known(agent_name)] - self._consumed[agent_name]

    def consumed(self, agent_name: str) -> int:
        return self._consumed[self._known(agent_name)]

    def allocated(self, agent_name: str) -> int:
        return self._allocated[self._known(agent_name)]

    def adjust_allocation(self, agent_name: str, delta: int) -> None:
        """Move the agent's allocation by ``delta`` (one side of a reallocation)."""
        current = self._allocated[self._known(agent_name)]
        delta = require_int("delta", delta, low=-INT64_MAX, high=INT64_MAX)
        self._allocated[agent_name] = require_int("allocation", current + delta)

    def history(self, agent_name: str | None = None) -> list[LedgerEntry]:
        """The consumption entries, oldest first (only ``agent_name``'s when given)."""
        return [e for e in self._entries if agent_name is None or e.agent_name == agent_name]

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{agent: {"allocated", "consumed", "remaining"}}`` in registration order."""
        return {a: {"allocated": self._allocated[a], "consumed": self._consumed[a],
                    "remaining": self._allocated[a] - self._consumed[a]} for a in self._allocated}
