"""tbcontracts' ``BudgetManager``: contracts, the in-memory ledger, reallocation, the confidence gate, ``govern``
and ``record_usage``; optionally persisted to a ledger home (``home=``, see ``ledger.compat.tbc.store``).

``record_usage(agent, tokens, note, confidence)``: an unknown agent raises ``UnknownAgentError``, a negative count
``ValueError``; a count beyond the agent's remaining tokens (equal is fine) asks the reallocator for the shortfall,
and if it cannot be covered raises ``BudgetExceededError`` (requested = tokens, available = remaining) and records
nothing; else the usage is recorded (and appended to the home first, when there is one), and ``confidence``, when
given, becomes the agent's last confidence. It does not consult the confidence gate (as the reference).

``govern(agent, confidence_fn=None)`` decorates a function (``UnknownAgentError`` at decoration time). Per call: a
closed gate raises ``BudgetExceededError(requested=0)`` before the call; the function runs; its tokens are estimated
(``ledger.economics.token_estimate``) from its ``str`` arguments and result and enforced like ``record_usage`` (a
refusal discards the result); the spend is recorded under the function's name and ``confidence_fn(result)`` becomes
the last confidence. As in the reference the check comes after the call: the ledger's own ``ledger.sdk.govern``
reserves before it.

Deviations: reallocation is all or nothing (``Reallocator``); float and bool token counts are refused; a repeated
``idempotency_key`` is counted once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ledger.compat.tbc import telemetry as _telemetry
from ledger.compat.tbc.confidence_gate import ConfidenceGate
from ledger.compat.tbc.contract import BudgetContract
from ledger.compat.tbc.exceptions import BudgetExceededError, UnknownAgentError
from ledger.compat.tbc.ledger import Ledger
from ledger.compat.tbc.reallocator import Reallocator
from ledger.compat.tbc.store import UNKNOWN, HomeStore
from ledger.compat.tbc.tokenizer import estimate_tokens
from ledger.economics.reallocation import Transfer, next_confidence
from ledger.errors import ValidationError
from ledger.sdk.home import Home

F = TypeVar("F", bound=Callable[..., Any])


def exact_tokens(value: object, field_name: str = "tokens") -> int:
    """A token count as the ledger keeps it: an int >= 0 (floats and bools refused, never truncated)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field_name, value, "must be an int (tokens are counted, not measured)")
    if value < 0:
        raise ValidationError(field_name, value, "tokens must be >= 0")
    return value


def reported_tokens(value: object) -> int | None:
    """A framework's reported usage as a count (the adapters' rule): an int, or a finite float truncated as the
    reference does; bools, other types and non-finite floats are no count (None: estimate instead)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


class BudgetManager:
    """Token budgets for a team of agents, with priority reallocation and confidence gating."""

    def __init__(self, telemetry: Any = None, *, home: str | Path | Home | None = None, log: str | None = None,
                 provider: str = UNKNOWN, model: str = UNKNOWN) -> None:
        self.contracts: dict[str, BudgetContract] = {}
        self.ledger = Ledger()
        if isinstance(telemetry, _telemetry.TelemetryRecorder):
            self._telemetry = telemetry
        elif telemetry is not None:  # an OpenTelemetry tracer
            self._telemetry = _telemetry.TelemetryRecorder(telemetry, enabled=True)
        else:
            self._telemetry = _telemetry.TelemetryRecorder.disabled()
        self.reallocator = Reallocator(self.contracts, self.ledger, self._telemetry)
        self.store = None if home is None else HomeStore(home, log=log, provider=provider, model=model)
        self._keys: set[tuple[str, str]] = set()  # idempotency keys already counted here

    # telemetry

    def enable_telemetry(self, service_name: str = "tbcontracts") -> bool:
        """Spans through the global OpenTelemetry tracer provider; False (and nothing changes) without it."""
        recorder = _telemetry.TelemetryRecorder.from_global(service_name)
        if not recorder.enabled:
            return False
        self._telemetry = recorder
        self.reallocator.telemetry = recorder
        return True

    @property
    def telemetry(self) -> _telemetry.TelemetryRecorder:
        return self._telemetry

    # agents

    def _contract(self, agent_name: str) -> BudgetContract:
        contract = self.contracts.get(agent_name)
        if contract is None:
            raise UnknownAgentError(f"Agent '{agent_name}' was never registered.")
        return contract

    def register_agent(self, agent_name: str, priority: int = 1, max_tokens: int = 1000,
                       min_reserve: int | None = None, confidence_threshold: float | None = None) -> BudgetContract:
        """Register (or re-register: a new contract, the allocation reset to ``max_tokens``, consumption kept)."""
        contract = BudgetContract(agent_name, priority=priority, max_tokens=max_tokens, min_reserve=min_reserve,
                                  confidence_threshold=confidence_threshold)
        if self.store is not None:
            self.store.register(contract)
        self.contracts[agent_name] = contract
        self.ledger.register(agent_name, max_tokens)
        self._telemetry.event_register(agent_name, priority, max_tokens)
        return contract

    def remaining(self, agent_name: str) -> int:
        """Allocated minus consumed (negative when overdrawn by a raw ledger write)."""
        self._contract(agent_name)
        return self.ledger.remaining(agent_name)

    def report(self) -> dict[str, dict[str, int]]:
        return self.ledger.snapshot()

    # spending

    def _enforce(self, agent_name: str, tokens: int) -> tuple[Transfer, ...]:
        """Raise ``BudgetExceededError`` unless ``tokens`` fit, reallocating the shortfall (all or nothing); the
        transfers it made (none when the tokens fit as they are)."""
        remaining = self.ledger.remaining(agent_name)
        if tokens <= remaining:
            return ()
        shortfall = tokens - remaining
        if self.reallocator.reallocate(agent_name, shortfall) < shortfall:
            raise BudgetExceededError(agent_name, requested=tokens, available=remaining)
        return self.reallocator.last_transfers

    def _undo(self, transfers: tuple[Transfer, ...]) -> None:
        """Give back what ``transfers`` moved (the spend that needed them was not recorded)."""
        for t in reversed(transfers):
            self.ledger.adjust_allocation(t.recipient, -t.amount)
            self.ledger.adjust_allocation(t.donor, t.amount)

    def _record(self, agent_name: str, tokens: int, note: str, confidence: float | None, *, output_tokens: int = 0,
                idempotency_key: str | None = None) -> None:
        contract = self._contract(agent_name)
        if confidence is not None:
            next_confidence(contract.last_confidence, confidence)  # refuse a bad confidence before anything moves
        moved = self._enforce(agent_name, tokens)
        if self.store is not None:
            try:
                self.store.usage(agent_name, tokens, note, output_tokens=output_tokens, confidence=confidence,
                                 idempotency_key=idempotency_key)
            except BaseException:
                self._undo(moved)  # all or nothing: no usage on the log, so no reallocation for it either
                raise
        self.ledger.record(agent_name, tokens, note=note)
        contract.last_confidence = next_confidence(contract.last_confidence, confidence)

    def record_usage(self, agent_name: str, tokens: int, note: str = "usage", confidence: float | None = None, *,
                     output_tokens: int = 0, idempotency_key: str | None = None) -> None:
        """Record ``tokens`` the agent spent (see the module doc). ``output_tokens``: the part of ``tokens`` that
        was output (for the home's usage event); ``idempotency_key``: a retry with the same key counts once."""
        self._contract(agent_name)
        tokens = exact_tokens(tokens)
        if idempotency_key is not None and (agent_name, idempotency_key) in self._keys:
            return
        with self._telemetry.span("tbc.record_usage", {"tbc.agent": agent_name, "tbc.tokens_used": tokens,
                                                       "tbc.note": note}):
            self._record(agent_name, tokens, note, confidence, output_tokens=output_tokens,
                         idempotency_key=idempotency_key)
        if idempotency_key is not None:
            self._keys.add((agent_name, idempotency_key))

    def check_gate(self, agent_name: str, span: Any = None) -> None:
        """Raise ``BudgetExceededError(requested=0)`` when the agent's confidence gate is closed."""
        contract = self._contract(agent_name)
        if ConfidenceGate.allow_further_retrieval(contract, contract.last_confidence):
            return
        if span is not None:
            span.set_attribute("tbc.gate_blocked", True)
        assert contract.confidence_threshold is not None and contract.last_confidence is not None  # gate closed
        self._telemetry.event_gate_block(agent_name, contract.last_confidence, contract.confidence_threshold)
        raise BudgetExceededError(agent_name, requested=0, available=self.ledger.remaining(agent_name))

    def govern(self, agent_name: str, confidence_fn: Callable[[Any], float | None] | None = None) -> Callable[[F], F]:
        """The reference's decorator (see the module doc)."""
        self._contract(agent_name)

        def decorator(fn: F) -> F:
            name = getattr(fn, "__name__", "call")

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._telemetry.span("tbc.govern_call", {"tbc.agent": agent_name, "tbc.function": name,
                                                              "tbc.gate_blocked": False}) as span:
                    self.check_gate(agent_name, span)
                    result = fn(*args, **kwargs)
                    tokens = estimate_tokens(args, kwargs, result)
                    span.set_attribute("tbc.tokens_used", tokens)
                    confidence = confidence_fn(result) if confidence_fn is not None else None
                    self._record(agent_name, tokens, name, confidence)
                    return result

            return wrapper  # type: ignore[return-value]

        return decorator

    def close(self) -> None:
        """Close the home's emitters and log (nothing to do without a home)."""
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> BudgetManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
