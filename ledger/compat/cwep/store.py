"""``CWEPStore``: CWEP's persistence on a ledger home.

``CWEPStore(store_dir)`` opens the ledger home at ``store_dir`` or creates one there (with its operator, notary and
price catalog, as ``tokenledger init`` does). ``append_cmr`` registers the requestor as a signer the first time it
is seen (its key is saved in the home) and emits the CMR as a signed ``interaction`` event with the idempotency key
``cwep.cmr:<interaction_id>``: appending the same CMR again adds nothing, a different CMR under a used id is an
``IdempotencyConflictError``. What the interaction body has no field for (each side's embedded rates, the context
state, the CMR's own timestamp, version and ``coc_chain_ref``) travels in the event's context labels ``cwep.*``, so
``read_cmrs`` gives back the CMR as written; reads go through the ledger's verifier (signatures, keys, chains), so
a record it rejects is never returned. The event time is the append time (the CMR's timestamp is kept in a
label): a signer's key is valid from its registration on.

Deposits are ledger ``deposit`` events too (``ledger.wire.events.Deposit``, folded by the reputation processor into
the ``deposits`` view): ``append_deposit`` emits the create, signed by the requestor (key ``cwep.deposit:<id>:create``),
and for a refunded or forfeited record also the resolution, signed by the responder (``cwep.deposit:<id>:<action>``);
each party is registered the first time it is seen. ``read_deposits`` rebuilds the records from the verified events
(a resolution counts only when its responder signed it, the first one only). A ``disputed`` record is refused: the
ledger has no such step.

Settlement records are free-form dicts in CWEP, so they are not ledger events: ``append_settlement`` writes JSON
lines to ``<home>/cwep/settlements.jsonl``, each line written whole and synced to disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ledger.errors import ValidationError
from ledger.integrity.verify import Accepted, audit
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home, HomeLayout
from ledger.sdk.registration import bootstrap, register_signer
from ledger.units import MILLI
from ledger.wire.events import Context, Deposit, Flow, Interaction

from . import _units
from .schema import AgentPricing, ContextState, CostMeteringRecord, DepositRecord, DepositStatus

CMR_KEY_PREFIX = "cwep.cmr:"  # idempotency key of a CMR's interaction event
DEPOSIT_KEY_PREFIX = "cwep.deposit:"  # cwep.deposit:<deposit_id>:<action>
RESOLUTIONS = {DepositStatus.REFUNDED.value: "refund", DepositStatus.FORFEITED.value: "forfeit"}
STATUS_OF = {action: status for status, action in RESOLUTIONS.items()}
LABEL_PREFIX = "cwep."
SIDECAR_DIR = "cwep"
SETTLEMENTS_FILE = "settlements.jsonl"


class CWEPStore:
    def __init__(self, store_dir: str | os.PathLike[str] = ".cwep") -> None:
        path = Path(store_dir)
        self.store_dir = str(path)
        if HomeLayout(path).config_file.exists():
            self.home = Home.open(path)
        else:
            self.home = Home.init(path)
            log = self.home.open_log()
            try:
                bootstrap(self.home, log)
            finally:
                log.close()
        self._sidecar = self.home.path / SIDECAR_DIR
        self._sidecar.mkdir(exist_ok=True)

    # ------------------------------------------------------------ CMRs: signed interaction events

    def _ensure_signer(self, agent_id: str) -> None:
        if self.home.key_path(agent_id).exists():
            return
        log = self.home.open_log()
        try:
            register_signer(self.home, log, agent_id)
        finally:
            log.close()

    def append_cmr(self, cmr: CostMeteringRecord) -> str:
        """Emit ``cmr`` as a signed interaction event of its requestor; returns the event id."""
        if not isinstance(cmr, CostMeteringRecord):
            raise ValidationError("cmr", cmr, "must be a CostMeteringRecord")
        flows = cmr.interaction_flows()
        cmr.metered()  # the embedded rates must be exact micro-USD per MTok before anything is written
        labels = {"version": cmr.cwep_version, "timestamp": cmr.timestamp,
                  "requestor_pricing": json.dumps(cmr.requestor.pricing.to_dict(), sort_keys=True),
                  "responder_pricing": json.dumps(cmr.responder.pricing.to_dict(), sort_keys=True),
                  "context_state": json.dumps(cmr.context_state.to_dict(), sort_keys=True)}
        if cmr.coc_chain_ref is not None:
            labels["coc_chain_ref"] = cmr.coc_chain_ref
        context = Context(labels=tuple((LABEL_PREFIX + k, v) for k, v in labels.items()))
        requestor = cmr.requestor.agent_id
        self._ensure_signer(requestor)
        with Emitter.open(requestor, home=self.home.path, background_flush=False) as em:
            event_id = em.interaction(
                responder_id=cmr.responder.agent_id, interaction_id=cmr.interaction_id,
                requestor_provider=cmr.requestor.provider, requestor_model=cmr.requestor.model,
                responder_provider=cmr.responder.provider, responder_model=cmr.responder.model,
                request_output=flows.request_output, request_input=flows.request_input,
                response_output=flows.response_output, response_input=flows.response_input,
                context=context, idempotency_key=CMR_KEY_PREFIX + cmr.interaction_id)
            em.flush()
        return event_id

    def _interaction_events(self) -> list[Any]:
        """The CMR interaction events that pass verification (schema, signature, key, chain), in log order."""
        return self._verified(Interaction, CMR_KEY_PREFIX)

    def _verified(self, kind: type, key_prefix: str) -> list[Any]:
        """The events of ``kind`` whose idempotency key starts with ``key_prefix`` that pass verification, in log
        order: the whole log is read through the ledger's verifier, and a record it rejects counts for nothing."""
        events: list[Any] = []

        def keep(_where: Any, accepted: Accepted) -> None:
            for decoded in accepted.events:
                event = decoded.event
                if isinstance(event.body, kind) and (event.idempotency_key or "").startswith(key_prefix):
                    events.append(event)

        log = self.home.open_log()
        try:
            audit(log, self.home.ledger_topics, self.home.anchors(), on_accepted=keep)
        finally:
            log.close()
        return events

    def read_cmrs(self, limit: int = 0) -> list[CostMeteringRecord]:
        """The stored CMRs in log order; ``limit`` > 0 gives the last ``limit`` of them."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValidationError("limit", limit, "must be a whole number >= 0 (0: all)")
        cmrs = [_cmr_of(e) for e in self._interaction_events()]
        return cmrs[-limit:] if limit else cmrs

    def cmr_count(self) -> int:
        return len(self._interaction_events())

    # ------------------------------------------------------------ settlements and deposits: JSON lines

    def _append_line(self, name: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"  # refuses what JSON cannot hold, before writing
        with open(self._sidecar / name, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def _read_lines(self, name: str) -> list[dict[str, Any]]:
        path = self._sidecar / name
        if not path.exists():
            return []
        out = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ValidationError(f"{name}:{number}", line[:80], "is not a JSON line") from None
        return out

    def append_settlement(self, record: dict[str, Any]) -> None:
        if not isinstance(record, dict):
            raise ValidationError("settlement", record, "must be a dict")
        self._append_line(SETTLEMENTS_FILE, record)

    def read_settlements(self) -> list[dict[str, Any]]:
        return self._read_lines(SETTLEMENTS_FILE)

    def settlement_count(self) -> int:
        return len(self.read_settlements())

    def _emit(self, signer: str, body: Deposit, key: str, labels: dict[str, str] | None = None) -> str:
        self._ensure_signer(signer)
        context = Context(labels=tuple((LABEL_PREFIX + k, v) for k, v in (labels or {}).items()))
        with Emitter.open(signer, home=self.home.path, background_flush=False) as em:
            event_id = em.emit(body, context=context, idempotency_key=key)
            em.flush()
        return event_id

    def append_deposit(self, deposit: DepositRecord) -> None:
        """Emit the deposit's create (and its refund or forfeit, if it has one) as signed ``deposit`` events."""
        if not isinstance(deposit, DepositRecord):
            raise ValidationError("deposit", deposit, "must be a DepositRecord")
        if deposit.status not in (DepositStatus.COMMITTED.value, *RESOLUTIONS):
            raise ValidationError("deposit.status", deposit.status, "must be committed, refunded or forfeited")
        multiplier = _units.thousandths("deposit.multiplier", deposit.multiplier)
        create = Deposit(deposit_id=deposit.deposit_id, action="create", requestor_id=deposit.requestor_id,
                         responder_id=deposit.responder_id,
                         amount_micros=_units.usd_micros("deposit.amount_usd", deposit.amount_usd),
                         reputation_tier=deposit.reputation_tier, multiplier_milli=multiplier,
                         interaction_id=deposit.interaction_id)
        self._emit(deposit.requestor_id, create, f"{DEPOSIT_KEY_PREFIX}{deposit.deposit_id}:create",
                   {"timestamp": deposit.timestamp})
        if deposit.status in RESOLUTIONS:
            action = RESOLUTIONS[deposit.status]
            self._emit(deposit.responder_id, Deposit(deposit_id=deposit.deposit_id, action=action,
                                                     requestor_id=deposit.requestor_id,
                                                     responder_id=deposit.responder_id),
                       f"{DEPOSIT_KEY_PREFIX}{deposit.deposit_id}:{action}")

    def read_deposits(self) -> list[DepositRecord]:
        """The deposits in the order they were created, with the status their responder's first resolution gave."""
        records: dict[str, DepositRecord] = {}
        for event in self._verified(Deposit, DEPOSIT_KEY_PREFIX):
            body: Deposit = event.body
            record = records.get(body.deposit_id)
            if body.action == "create" and record is None and event.signer_id == body.requestor_id:
                labels = dict(event.context.labels)
                records[body.deposit_id] = DepositRecord(
                    deposit_id=body.deposit_id, requestor_id=body.requestor_id, responder_id=body.responder_id,
                    amount_usd=_units.usd(body.amount_micros), status=DepositStatus.COMMITTED.value,
                    interaction_id=body.interaction_id, timestamp=labels.get(LABEL_PREFIX + "timestamp", ""),
                    multiplier=body.multiplier_milli / MILLI, reputation_tier=body.reputation_tier)
            elif (body.action in STATUS_OF and record is not None and event.signer_id == record.responder_id
                  and record.status == DepositStatus.COMMITTED.value
                  and (body.requestor_id, body.responder_id) == (record.requestor_id, record.responder_id)):
                record.status = STATUS_OF[body.action]
        return list(records.values())

    def deposit_count(self) -> int:
        return len(self.read_deposits())

    def statistics(self) -> dict[str, Any]:
        """Counts, the CMRs' total cost and tokens, and each agent's incurred cost (as requestor or responder)."""
        cmrs = self.read_cmrs()
        costs: dict[str, int] = {}
        total = tokens = 0
        for cmr in cmrs:
            m = cmr.metered()
            total += m.total
            tokens += m.total_tokens
            for agent, micros in ((cmr.requestor.agent_id, m.requestor_incurred),
                                  (cmr.responder.agent_id, m.responder_incurred)):
                costs[agent] = costs.get(agent, 0) + micros
        return {"cmr_count": len(cmrs), "settlement_count": self.settlement_count(),
                "deposit_count": self.deposit_count(), "total_cost_usd": _units.usd(total), "total_tokens": tokens,
                "agent_costs": {a: _units.usd(c) for a, c in costs.items()}, "store_dir": self.store_dir}


def _flow_dict(flow: Flow) -> dict[str, int]:
    return {"tokens": flow.tokens, "cached_tokens": flow.cached_tokens}


def _cmr_of(event: Any) -> CostMeteringRecord:
    body: Interaction = event.body
    labels = {k[len(LABEL_PREFIX):]: v for k, v in event.context.labels if k.startswith(LABEL_PREFIX)}
    data = {
        "cwep_version": labels.get("version"), "interaction_id": body.interaction_id,
        "timestamp": labels.get("timestamp"),
        "requestor": {"agent_id": body.requestor_id, "model": body.requestor_model,
                      "provider": body.requestor_provider,
                      "pricing": AgentPricing.from_dict(json.loads(labels["requestor_pricing"])).to_dict()},
        "responder": {"agent_id": body.responder_id, "model": body.responder_model,
                      "provider": body.responder_provider,
                      "pricing": AgentPricing.from_dict(json.loads(labels["responder_pricing"])).to_dict()},
        "flows": {name: _flow_dict(getattr(body, name)) for name in
                  ("request_output", "request_input", "response_output", "response_input")},
        "context_state": ContextState.from_dict(json.loads(labels["context_state"])).to_dict(),
        "coc_chain_ref": labels.get("coc_chain_ref"),
    }
    return CostMeteringRecord.from_dict(data).compute_costs()
