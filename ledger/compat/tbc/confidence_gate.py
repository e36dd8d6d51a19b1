"""tbcontracts' ``ConfidenceGate``, on ``ledger.economics.reallocation.gate_allows`` (the same rule: no threshold or
no confidence lets the call through; otherwise only a confidence strictly below the threshold does).

Deviation: a confidence outside [0, 1] (or NaN) raises ``ValidationError`` (a ``ValueError``); the reference compares
any float."""

from __future__ import annotations

from ledger.compat.tbc.contract import BudgetContract
from ledger.economics.reallocation import gate_allows


class ConfidenceGate:
    @staticmethod
    def allow_further_retrieval(contract: BudgetContract, confidence: float | None) -> bool:
        """Whether ``contract``'s agent may spend again after a result reported with ``confidence``."""
        return gate_allows(contract.confidence_threshold, confidence)
