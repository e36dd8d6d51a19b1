"""Persistence of a ``BudgetManager`` to a ledger home: the registrations, policies, usage and confidences, as
signed events on the home's log.

* ``register(contract)``: the agent's key registration (``AgentRegistered`` with its priority, signed by the
  operator; the agent's key file is made if the home has none, as ``tokenledger agent register`` does), then its
  budget as a ``BudgetPolicy`` control event: scope ``agent``, kind ``llm_tokens``, allocation ``max_tokens``, hard
  limit 100% with action ``deny``, no soft throttling, no emergency reserve, no suspension, ``min_reserve`` and
  ``priority`` of the contract, the confidence threshold in thousandths, a ten-year window (the reference's budgets
  never reset).
* ``usage(...)``: an ``Action`` event signed by the agent itself whose ``usage`` carries the tokens: the reference
  counts one number per call, which is recorded as ``input_tokens`` minus the ``output_tokens`` part the caller
  names (0 unless given; cache and reasoning tokens 0), under the ``provider`` and ``model`` the store was opened
  with. The budgets processor counts ``input_tokens + output_tokens`` against the ``llm_tokens`` budget: the whole
  number. A confidence, when given, follows as an ``Outcome`` (``task_id`` = the note, confidence in thousandths,
  rounded), which the budgets processor's confidence gate reads.

Every event goes through the ledger's ``Emitter``: chained, signed, appended before the call returns (flushed), and
deduplicated by ``idempotency_key`` when one is given (a retry returns the first event's id and appends nothing).
"""

from __future__ import annotations

from pathlib import Path

from ledger.compat.tbc.contract import BudgetContract
from ledger.economics.budget_rows import policy_from_event
from ledger.errors import ValidationError
from ledger.log import Log
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home, resolve_home, resolve_log_url
from ledger.sdk.registration import register_signer
from ledger.units import MILLI
from ledger.wire.events import Action, BudgetPolicy, LlmUsage, Outcome

UNKNOWN = "unknown"  # provider and model of usage whose caller did not name them (the reference has neither)


def policy_event(contract: BudgetContract) -> BudgetPolicy:
    """The ``BudgetPolicy`` control event of ``contract`` (checked as the budgets processor will read it)."""
    policy = contract.policy()
    o = policy.overage
    threshold = contract.confidence_threshold
    body = BudgetPolicy(
        scope="agent", scope_id=contract.agent_name, budget_kind=policy.kind.value, allocation=policy.allocation,
        reset_interval_us=policy.reset_interval_us, soft_limit_pct=int(o.soft_limit_pct),
        hard_limit_pct=int(o.hard_limit_pct), throttle_at_soft=o.throttle_at_soft, suspend_at_hard=o.suspend_at_hard,
        emergency_reserve_pct=int(o.emergency_reserve_pct), hard_limit_action=policy.hard_limit_action.value,
        min_reserve=contract.reserve, priority=policy.priority,
        confidence_threshold_milli=None if threshold is None else round(threshold * MILLI), effective_from_us=0)
    policy_from_event(body)  # refuse here what the processor would refuse
    return body


class HomeStore:
    """A ledger home the manager writes to. ``close()`` (or ``with``) releases the emitters and the log."""

    def __init__(self, home: str | Path | Home, *, log: str | None = None, provider: str = UNKNOWN,
                 model: str = UNKNOWN) -> None:
        LlmUsage(provider=provider, model=model, input_tokens=0, output_tokens=0)  # refuse bad names now
        self.home = home if isinstance(home, Home) else Home.open(resolve_home(home))
        self.log_url = resolve_log_url(log, self.home)
        self.provider, self.model = provider, model
        self._log: Log | None = None
        self._emitters: dict[str, Emitter] = {}

    def _open_log(self) -> Log:
        if self._log is None:
            self._log = self.home.open_log(self.log_url)
        return self._log

    def register(self, contract: BudgetContract) -> tuple[str, str]:
        """Append the agent's registration and its policy; their event ids."""
        body = policy_event(contract)
        log = self._open_log()
        reg = register_signer(self.home, log, contract.agent_name, priority=contract.priority)
        with Emitter.for_operator(self.home, log) as em:
            policy_id = em.emit(body)
        return reg.event_id, policy_id

    def _emitter(self, agent_name: str) -> Emitter:
        em = self._emitters.get(agent_name)
        if em is None:
            if not self.home.key_path(agent_name).exists():
                raise ValidationError("agent_name", agent_name, "has no key in this home: register it with "
                                      "register_agent first")
            em = Emitter(self._open_log(), self.home.load_key(agent_name), topic=self.home.topic,
                         control_topic=self.home.control_topic, anchors=self.home.anchors(),
                         state_dir=self.home.state_dir, background_flush=False)
            self._emitters[agent_name] = em
        return em

    def usage(self, agent_name: str, tokens: int, note: str, *, output_tokens: int = 0,
              confidence: float | None = None, idempotency_key: str | None = None) -> str:
        """Append one call's usage (and its confidence); the usage event's id."""
        if isinstance(output_tokens, bool) or not isinstance(output_tokens, int) or not 0 <= output_tokens <= tokens:
            raise ValidationError("output_tokens", output_tokens, f"must be an int between 0 and tokens ({tokens})")
        usage = LlmUsage(provider=self.provider, model=self.model, input_tokens=tokens - output_tokens,
                         output_tokens=output_tokens)
        outcome = None if confidence is None else Outcome(task_id=note or "usage",
                                                          confidence_milli=round(confidence * MILLI))
        em = self._emitter(agent_name)
        event_id = em.emit(Action(operation=note or "usage", usage=usage), idempotency_key=idempotency_key)
        if outcome is not None:
            em.emit(outcome, idempotency_key=None if idempotency_key is None else f"{idempotency_key}/confidence")
        em.flush()
        return event_id

    def close(self) -> None:
        emitters, self._emitters = list(self._emitters.values()), {}
        for em in emitters:
            em.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> HomeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
