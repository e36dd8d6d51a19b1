"""Payment rails: how a settlement proposal becomes a receipt.

A rail takes a proposed ``Settlement`` (status "proposed") and returns its receipt (status
"settled", with the rail's name and a transaction reference). The settlements processor calls the
rail inside its pure fold, so a rail used there must be pure and deterministic: same proposal, same
receipt.

Built in: ``LedgerRail`` (name "ledger") — the transfer is recorded in the ledger itself; the receipt
is the Settlement event, and its ``tx_ref`` is the event's idempotency key, which makes its event id
deterministic. Real money rails (bank transfers, stablecoins, invoicing) are plug-ins outside this
package: they do I/O, so they consume the "proposed" settlements from the log and append their own
receipts, rather than running inside a fold.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

from ledger.errors import ValidationError
from ledger.wire.events import Settlement

LEDGER_RAIL = "ledger"
NO_RAIL = "none"  # a proposal not sent to any rail (metering-only tiers)


@runtime_checkable
class PaymentRail(Protocol):
    """What a rail offers: its name, and a receipt for a proposal."""

    name: str

    def settle(self, proposal: Settlement, idempotency_key: str) -> Settlement:
        """The receipt for ``proposal`` (status "settled", ``rail`` = this rail's name, a ``tx_ref``)."""
        ...


class LedgerRail:
    """The built-in rail: the ledger event is the transfer; its idempotency key is the reference."""

    name = LEDGER_RAIL

    def settle(self, proposal: Settlement, idempotency_key: str) -> Settlement:
        if not isinstance(proposal, Settlement) or proposal.status != "proposed":
            raise ValidationError("proposal", proposal, "must be a Settlement with status 'proposed'")
        return dataclasses.replace(proposal, status="settled", rail=self.name, tx_ref=idempotency_key)
