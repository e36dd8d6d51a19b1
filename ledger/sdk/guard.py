"""The spend guard: reserve budget before an LLM call, refuse the call before any spend, commit what was used.

The contract between the guard and the instrumented clients (``ledger.sdk.instrument``): an instrumented call
asks ``active_guard()`` for the guard in force (a context variable, so threads and asyncio tasks each see their
own) and, when there is one, calls ``before_call`` with what it knows of the request before sending it (which
may raise ``BudgetRefused``: the request is then never sent) and ``after_call`` with the usage the response
reported. Everything else here is the guard's own business.

    with em.guard("usd", estimate_micros=50_000) as g:     # reserve 5 cents, wait for the budgets processor
        client.chat.completions.create(...)               # instrumented (through em): checked against the hold
        g.spent(1_200)                                    # spend no event records (micro-USD here)
    # leaving the block commits what spent() reported and frees the rest (on an exception too, then re-raises)

    @em.guard("llm_tokens", estimate_tokens=8_000)         # the decorator: one reservation per call
    async def summarise(text): ...

The rules:

* **Kinds and units.** ``usd``: micro-USD, an instrumented call priced at the time of the call with the price book
  of the processor that decides: the budgets processor's published ``budget_prices`` and ``budget_price_matches``
  views (checked against its signed manifest), i.e. every ``price_set`` / ``price_match`` on the log folded in log
  order by ``ledger.economics.pricing`` (the rule ``ledger.sdk.price_log`` folds by too), read back with
  ``price_book_from_rows``; priced exactly as that processor prices an action's usage (cache reads and writes are
  parts of ``input_tokens``, 1-hour writes part of the writes, reasoning part of ``output_tokens``; service and
  prompt-size tiers as reported). (``price_log`` itself is not read here: it imports the emitter, and the emitter
  delegates ``Emitter.guard`` to this module; the import graph has no cycles.) A book the processor has not
  published yet prices nothing: fail closed. ``llm_tokens``: ``input_tokens + output_tokens`` of the reported usage
  (cache tokens inside the input, reasoning inside the output), as the budgets processor counts them. No other
  kind: the guard holds what an LLM call spends.
* **Reserving.** With an estimate (``estimate_micros`` for usd, ``estimate_tokens`` for llm_tokens) the guard
  reserves it on entry. Without one it reserves lazily at the first instrumented call's ``before_call``:
  ``input_tokens_estimate + max_output_tokens`` tokens, for usd priced at the requested model's line in force
  now for the service tier '' (standard) and the prompt-size tier of the input estimate, every input
  token at the uncached input rate (cache discounts unknown before the call: an upper bound) plus the per-request
  fee. A model the book cannot price raises ``EconomicsError`` (code unknown_model) and a request without a maximum
  output raises ``ValidationError`` (its spend has no bound): fail closed, nothing reserved, nothing sent. Each
  reservation has a fresh id (``guard-<32 hex>``) and holds for ``ttl_us`` of event time (``GUARD_TTL_US``).
* **Waiting for the decision.** The reserve is flushed, then the published ``reservations`` view of the budgets
  processor (``ledger.sdk.views.reservation``, checked against the processor's signed manifest) is polled every
  ``DECISION_POLL_S`` seconds for at most ``timeout_s`` (default ``DECISION_TIMEOUT_S``). ``reserved``: granted,
  the body (or the call) runs. ``refused`` (or any other status: the hold is not live): ``BudgetRefused`` before
  anything is spent, naming the reservation id, kind, amount, the decision's reason and the level that decided
  (from the ``reservation_refused`` alert the refusal raised). No row within ``timeout_s``: the processor may still
  grant the hold later, so the guard **releases** it and raises ``AdmissionError`` (fail closed: the call does not
  run unadmitted). An agent with no budget of the kind anywhere in its hierarchy is refused (reason
  ``not_budgeted``): the processor admits reservations only against budgets.
* **Later calls in a block.** A call whose estimate exceeds what the holds have left (held minus used) is not sent:
  with an explicit estimate the block's hold is the caller's cap, so ``before_call`` raises ``BudgetRefused``
  (reason ``exceeds_hold``; without a maximum output the estimate is the input alone, a lower bound); a lazy guard
  reserves the shortfall as one more reservation and waits for its decision the same way.
* **Two kinds of spend, one record each.** The budgets processor counts every ``action`` event carrying LLM usage
  as consumption, and a commit as consumption too, with no link between them: a spend recorded both ways is
  counted twice. So:
  - ``after_call(usage)`` is an instrumented call, which the instrumented client records as its own ``action``
    event (``ledger.sdk.instrument``: one call, one event, emitted before ``after_call``). The guard counts it
    against its holds (``used``: what later calls are checked against) and never commits it: the action is its
    spend record, priced by the processor itself. When the book cannot price the model the response reports (a
    snapshot id no rule maps), the guard counts its tokens at the line of the model ``before_call`` priced for that
    request; if there is none, ``EconomicsError`` (never $0).
  - ``g.spent(amount)`` is spend no event records (a tool, an uninstrumented call), in the guard's unit: counted
    against the holds and committed when the block closes (``reported``). Code that meters calls itself either
    emits the action and reports it with ``after_call``, or reports it only with ``spent``; never both.
* **Calls without usage.** ``g.spent_text(prompt, reply)`` (``llm_tokens`` guards) reports a call nothing metered
  by the token estimator (``ledger.economics.token_estimate``): a real tokenizer where installed, the word
  heuristic otherwise; ``ledger.sdk.govern`` reserves and reports this way around a function.
* **Closing.** On exit, with or without an exception, ``reported`` is committed across the holds in order (each up
  to its amount; the last one also takes any excess, which the budgets processor counts as usage beyond the hold);
  a hold nothing was committed to is released. A commit frees the rest of its hold (the budgets fold,
  ``commit_chain``), so no release follows a commit. Reported spend without any hold (``spent`` before a lazy
  guard reserved) is committed under a fresh id: the processor counts it as usage and flags it
  (``commit_unknown_reservation``). Commits and releases go through the guard's emitter and are flushed before the
  block's exception is re-raised; an instrumented client metering through the same emitter has its pending
  actions appended before them (one chain, in order), so the budget never sees a hold freed before the usage it
  covered. A client metering through another agent's emitter gets no such order.
* **Nesting is refused.** Entering a guard while another is in force in the same thread or task raises
  ``ValidationError`` before anything is reserved: the outer hold would count against the inner reserve (the same
  agent's budget held twice) and an instrumented call would have two guards to report to. Guard the outermost
  block, or give inner work its own thread or task.
* **What a guard cannot prevent.** It admits calls by their estimates; a call that spends more (an input estimate
  that was low; the instrumented client's is characters / 4) is counted in full, beyond the hold, never cut. A
  block that outlives ``ttl_us`` loses its hold (the processor expires it at the next event touching the budget,
  and may then admit others); what it spent is still counted.
* **Async.** ``async with`` and decorated ``async def`` functions wait for decisions and commit in a worker thread,
  off the event loop. ``before_call`` is synchronous (the instrumented client's contract): a lazy reserve there
  blocks its caller until the decision.

Wall-clock time is read for pricing (the price in force now) and for the decision deadline (monotonic).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from ledger import limits
from ledger.economics.pricing import PriceBook, price_book_from_rows, usage_cost
from ledger.economics.token_estimate import count_tokens
from ledger.errors import AdmissionError, BudgetRefused, EconomicsError, LedgerError, ValidationError
from ledger.wire.events import BUDGET_SCOPES, LlmUsage, check_choice, check_int, check_opt_str, check_str


class CallGuard(Protocol):
    """What an instrumented client calls on the guard in force."""

    def before_call(self, *, provider: str, model: str, input_tokens_estimate: int,
                    max_output_tokens: int | None) -> None:
        """Before the request is sent: hold budget for it (raises ``BudgetRefused`` when refused)."""

    def after_call(self, usage: LlmUsage) -> None:
        """After the response: the usage it reported (counted against the guard's holds; the client's own event
        records the spend)."""


_ACTIVE: contextvars.ContextVar[CallGuard | None] = contextvars.ContextVar("tokenledger_guard", default=None)


def active_guard() -> CallGuard | None:
    """The guard in force in this thread or task, if any."""
    return _ACTIVE.get()


@runtime_checkable
class GuardEmitter(Protocol):
    """What a guard uses of its ``ledger.sdk.emitter.Emitter`` (named structurally: the emitter imports this module)."""

    signer_id: str
    home_path: Path | None

    def reserve(self, reservation_id: str, kind: str, amount: int, *, ttl_us: int = ..., scope: str = ...,
                scope_id: str | None = ..., **common: Any) -> str: ...

    def commit(self, reservation_id: str, kind: str, amount: int, *, scope: str = ..., scope_id: str | None = ...,
               **common: Any) -> str: ...

    def release(self, reservation_id: str, kind: str, *, scope: str = ..., scope_id: str | None = ...,
                **common: Any) -> str: ...

    def flush(self) -> None: ...


USD = "usd"  # micro-USD
LLM_TOKENS = "llm_tokens"  # input + output tokens
GUARD_KINDS = (USD, LLM_TOKENS)
ESTIMATE_FIELDS = {USD: "estimate_micros", LLM_TOKENS: "estimate_tokens"}

DECISION_POLL_S = 0.1  # seconds between two reads of the published reservations view while waiting
DECISION_TIMEOUT_S = 30.0  # seconds a guard waits for the budgets processor's decision by default
GUARD_TTL_US = 600_000_000  # event-time microseconds a guard's hold lasts (10 minutes: a few long LLM calls)
RESERVATION_ID_PREFIX = "guard-"  # + 32 hex digits of a random UUID: a fresh id per reservation
BUDGETS_PROCESSOR = "budgets"  # whose published views hold the decisions and the price book
PRICE_VIEWS = ("budget_prices", "budget_price_matches")  # its price lines and model-matching rules
GRANTED = "reserved"  # the reservations view's status of a live, granted hold
REFUSED = "refused"
EXCEEDS_HOLD = "exceeds_hold"  # the reason of a call refused because the block's holds do not cover it

F = TypeVar("F", bound=Callable[..., Any])


# ------------------------------------------------------------------ the pure core


def request_estimate(kind: str, book: PriceBook | None, provider: str, model: str, input_tokens: int,
                     output_tokens: int, at_us: int) -> int:
    """What one request may spend, in the guard's unit: ``input_tokens + output_tokens`` for llm_tokens; for usd
    those counts priced at the line ``book`` quotes for (provider, model) at ``at_us`` (standard service tier, the
    prompt-size tier of ``input_tokens``), all input at the uncached rate, plus the per-request fee. Raises
    ``EconomicsError`` (unknown_model) when the book cannot price the model."""
    if kind == LLM_TOKENS:
        return input_tokens + output_tokens
    assert book is not None  # a usd guard always has its book
    price = book.quote(provider, model, at_us, input_tokens=input_tokens).entry.price
    return usage_cost(price, input_tokens=input_tokens, output_tokens=output_tokens).total


def usage_amount(kind: str, book: PriceBook | None, usage: LlmUsage, at_us: int, *,
                 model: str | None = None) -> int:
    """What a reported call spent, in the guard's unit, as the budgets processor counts an action's usage:
    ``input_tokens + output_tokens`` for llm_tokens; for usd the usage priced (every token class, its service
    tier, its prompt-size tier) at the line in force at ``at_us`` for its model, or for ``model`` when given."""
    if kind == LLM_TOKENS:
        return usage.input_tokens + usage.output_tokens
    assert book is not None
    price = book.price_at(usage.provider, usage.model if model is None else model, at_us,
                          service_tier=usage.service_tier, input_tokens=usage.input_tokens)
    return usage_cost(price, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                      cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
                      reasoning_tokens=usage.reasoning_tokens,
                      cache_write_1h_tokens=usage.cache_write_1h_tokens).total


@dataclass(frozen=True)
class Hold:
    """One granted reservation of a guard: its id and the amount the budgets processor holds for it."""

    reservation_id: str
    amount: int


def settlement(holds: tuple[Hold, ...], used: int) -> list[tuple[str, int | None]]:
    """How ``used`` is settled over ``holds``, in order: (reservation id, amount to commit, or None to release).
    Each hold takes up to its amount; the last one also takes the excess (counted as usage beyond its hold)."""
    out: list[tuple[str, int | None]] = []
    left = used
    for i, hold in enumerate(holds):
        take = left if i == len(holds) - 1 else min(left, hold.amount)
        out.append((hold.reservation_id, take if take > 0 else None))
        left -= take
    return out


def fresh_reservation_id() -> str:
    return RESERVATION_ID_PREFIX + uuid.uuid4().hex


# ------------------------------------------------------------------ the guard (a spec: context manager, decorator)


class Guard:
    """A spend guard's settings: ``with guard as g`` reserves (or arms a lazy reserve), runs the block and commits;
    ``@guard`` does the same around each call of a sync or async function (one reservation per call).
    ``async with`` waits and commits off the event loop. See the module doc for the rules."""

    def __init__(self, emitter: GuardEmitter, kind: str, *, estimate_micros: int | None = None,
                 estimate_tokens: int | None = None, timeout_s: float = DECISION_TIMEOUT_S,
                 ttl_us: int = GUARD_TTL_US, scope: str = "agent", scope_id: str | None = None) -> None:
        if not isinstance(emitter, GuardEmitter):
            raise ValidationError("emitter", type(emitter).__name__, "must be an Emitter")
        if emitter.home_path is None:
            raise ValidationError("home", None, "a guard reads the budgets processor's published decisions: open "
                                  "the emitter with Emitter.open(..., home=...)")
        self.kind = check_choice("kind", kind, GUARD_KINDS)
        given = {USD: estimate_micros, LLM_TOKENS: estimate_tokens}
        for other, value in given.items():
            if other != kind and value is not None:
                raise ValidationError(ESTIMATE_FIELDS[other], value, f"is the estimate of a {other} guard; a {kind} "
                                      f"guard takes {ESTIMATE_FIELDS[kind]}")
        estimate = given[kind]
        self.estimate = None if estimate is None else check_int(ESTIMATE_FIELDS[kind], estimate, 0, limits.MAX_MICROS)
        if (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s)
                or not 0 < timeout_s <= limits.MAX_DECISION_TIMEOUT_S):
            raise ValidationError("timeout_s", timeout_s, f"must be seconds, above 0 and at most "
                                  f"{limits.MAX_DECISION_TIMEOUT_S:g}")
        self.timeout_s = float(timeout_s)
        self.ttl_us = check_int("ttl_us", ttl_us, 1, limits.MAX_DURATION_US)
        self.scope = check_choice("scope", scope, BUDGET_SCOPES)
        self.scope_id = check_opt_str("scope_id", scope_id)
        self.emitter = emitter

    # with / async with: the block in force is _ACTIVE's value (nesting is refused, so it is this guard's own)

    def __enter__(self) -> ActiveGuard:
        block = ActiveGuard(self)
        block.open()
        block.activate()
        return block

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        block = _ACTIVE.get()
        if not isinstance(block, ActiveGuard) or block.guard is not self:
            raise ValidationError("guard", repr(block), "is not the block this guard entered in this thread or task")
        try:
            block.close()
        finally:
            block.deactivate()

    async def __aenter__(self) -> ActiveGuard:
        block = ActiveGuard(self)
        block.refuse_nesting()  # here, in the task's context (the worker thread runs in a copy of it)
        await asyncio.to_thread(block.open)
        block.activate()
        return block

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        block = _ACTIVE.get()
        if not isinstance(block, ActiveGuard) or block.guard is not self:
            raise ValidationError("guard", repr(block), "is not the block this guard entered in this task")
        try:
            await asyncio.to_thread(block.close)
        finally:
            block.deactivate()

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` (sync or async): each call runs inside a fresh block of this guard."""
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await fn(*args, **kwargs)

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (f"Guard({self.kind!r}, estimate={self.estimate!r}, agent={self.emitter.signer_id!r}, "
                f"scope={self.scope!r})")


def guard(emitter: GuardEmitter, kind: str, *, estimate_micros: int | None = None, estimate_tokens: int | None = None,
          timeout_s: float = DECISION_TIMEOUT_S, ttl_us: int = GUARD_TTL_US, scope: str = "agent",
          scope_id: str | None = None) -> Guard:
    """A spend guard on ``emitter`` (opened with ``Emitter.open(..., home=...)``) for ``kind`` ("usd" or
    "llm_tokens"): a context manager and a decorator that reserves before the spend, refuses before the call and
    commits what was used. ``scope``/``scope_id`` are passed to the reserve as in ``Emitter.reserve``."""
    return Guard(emitter, kind, estimate_micros=estimate_micros, estimate_tokens=estimate_tokens,
                 timeout_s=timeout_s, ttl_us=ttl_us, scope=scope, scope_id=scope_id)


# ------------------------------------------------------------------ one entered block (the CallGuard in force)


class ActiveGuard:
    """One entered guard block: its holds, what it used, and the hooks instrumented clients call. Thread-safe."""

    def __init__(self, spec: Guard) -> None:
        self.guard = spec
        self.kind = spec.kind
        self._em = spec.emitter
        self._lock = threading.RLock()
        self._holds: list[Hold] = []
        self._used = 0  # after_call usage + spent(): what the holds are checked against
        self._reported = 0  # spent(): what the guard commits (no event of its own records it)
        self._book: PriceBook | None = None
        self._asked: tuple[str, str] | None = None  # (provider, model) of the last request before_call saw
        self._token: contextvars.Token[CallGuard | None] | None = None
        self._closed = False

    # what the block holds and used

    @property
    def holds(self) -> tuple[Hold, ...]:
        with self._lock:
            return tuple(self._holds)

    @property
    def held(self) -> int:
        """The sum of the granted holds (the guard's unit)."""
        with self._lock:
            return sum(h.amount for h in self._holds)

    @property
    def used(self) -> int:
        """What the block spent so far: instrumented calls' usage plus ``spent`` (the guard's unit)."""
        with self._lock:
            return self._used

    @property
    def reported(self) -> int:
        """What ``spent`` reported: the amount the guard commits when the block closes."""
        with self._lock:
            return self._reported

    @property
    def reservation_ids(self) -> tuple[str, ...]:
        return tuple(h.reservation_id for h in self.holds)

    def spent(self, amount: int) -> None:
        """Spend no event records, in the guard's unit (micro-USD for usd, tokens for llm_tokens): committed when the
        block closes. Never for a call the instrumented client already recorded (it would count twice)."""
        amount = check_int("amount", amount, 0, limits.MAX_MICROS)
        with self._lock:
            self._check_open()
            self._used += amount
            self._reported += amount

    def spent_text(self, *texts: str) -> int:
        """Spend of a call whose usage nobody reported, estimated from its texts (prompt, reply): for an
        ``llm_tokens`` guard, ``spent`` of the sum of ``ledger.economics.token_estimate.count_tokens`` over
        ``texts`` (tiktoken's cl100k_base where installed, the words * 1.3 heuristic otherwise); returns it. A usd
        guard refuses it (an estimate in tokens has no price without a model). Reported usage replaces estimates:
        never for a call an instrumented client recorded."""
        if self.kind != LLM_TOKENS:
            raise ValidationError("kind", self.kind, "a text estimate is in tokens: only an llm_tokens guard takes it")
        amount = sum(count_tokens(t) for t in texts)
        self.spent(amount)
        return amount

    # the instrumented clients' hooks

    def before_call(self, *, provider: str, model: str, input_tokens_estimate: int,
                    max_output_tokens: int | None) -> None:
        """Before a request is sent: make sure a granted hold covers it (module doc, "Later calls")."""
        check_str("provider", provider)
        check_str("model", model)
        check_int("input_tokens_estimate", input_tokens_estimate, 0, limits.MAX_TOKENS)
        if max_output_tokens is not None:
            check_int("max_output_tokens", max_output_tokens, 0, limits.MAX_TOKENS)
        with self._lock:
            self._check_open()
            lazy = self.guard.estimate is None
            if lazy and max_output_tokens is None:
                raise ValidationError("max_output_tokens", None, "a guard without an estimate reserves what the "
                                      "request may spend: set the request's maximum output tokens, or give the "
                                      f"guard {ESTIMATE_FIELDS[self.kind]}", provider=provider, model=model)
            estimate = request_estimate(self.kind, self._price_book(), provider, model, input_tokens_estimate,
                                        max_output_tokens or 0, _now_us())
            self._asked = (provider, model)
            left = sum(h.amount for h in self._holds) - self._used
            if estimate <= left:
                return
            if not lazy:
                rid = self._holds[0].reservation_id if self._holds else None
                raise BudgetRefused(
                    f"the request's estimate of {estimate} {self.kind} exceeds the {max(left, 0)} this guard still "
                    "holds: not sent", reservation_id=rid, kind=self.kind, amount=estimate, reason=EXCEEDS_HOLD,
                    scope=self._scope_text(), held=sum(h.amount for h in self._holds), used=self._used,
                    provider=provider, model=model,
                    hint=f"give the guard a larger {ESTIMATE_FIELDS[self.kind]}, or a lower maximum output")
            self._reserve(estimate - max(left, 0))

    def after_call(self, usage: LlmUsage) -> None:
        """After a response the caller's client recorded as an action: count what it spent against the holds
        (module doc, "Two kinds of spend"); not committed."""
        if not isinstance(usage, LlmUsage):
            raise ValidationError("usage", type(usage).__name__, "must be an LlmUsage")
        at = _now_us()
        with self._lock:
            self._check_open()
            book = self._price_book()
            try:
                amount = usage_amount(self.kind, book, usage, at)
            except EconomicsError:
                if self._asked is None or self._asked[0] != usage.provider:
                    raise
                # the response names a model id the book cannot price (a snapshot of the requested model): its
                # tokens at the line of the model the request named, which before_call priced
                amount = usage_amount(self.kind, book, usage, at, model=self._asked[1])
            self._used += amount

    # entering and leaving

    def refuse_nesting(self) -> None:
        outer = _ACTIVE.get()
        if outer is not None:
            raise ValidationError("guard", repr(outer), "a guard is already in force in this thread or task; "
                                  "nested guards would hold the same budget twice: guard the outermost block only")

    def open(self) -> None:
        """Refuse nesting; with an estimate, reserve it and wait for the decision (raises when not granted)."""
        self.refuse_nesting()
        if self.guard.estimate is not None:
            with self._lock:
                self._reserve(self.guard.estimate)

    def activate(self) -> None:
        self._token = _ACTIVE.set(self)

    def deactivate(self) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    def close(self) -> None:
        """Commit what ``spent`` reported across the holds, release the unused ones, flush (module doc, "Closing")."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            em, g = self._em, self.guard
            plan = settlement(tuple(self._holds), self._reported)
            if not plan and self._reported:
                plan = [(fresh_reservation_id(), self._reported)]
            for rid, amount in plan:
                if amount is None:
                    em.release(rid, self.kind, scope=g.scope, scope_id=g.scope_id)
                else:
                    em.commit(rid, self.kind, amount, scope=g.scope, scope_id=g.scope_id)
            if plan:
                em.flush()

    # internals

    def _check_open(self) -> None:
        if self._closed:
            raise ValidationError("guard", repr(self.guard), "this guard's block is closed: its spend was committed")

    def _scope_text(self) -> str:
        return f"{self.guard.scope}:{self.guard.scope_id or self._em.signer_id}"

    def _price_book(self) -> PriceBook | None:
        """The budgets processor's published price book, read once per block (usd guards only; module doc)."""
        if self.kind != USD:
            return None
        if self._book is None:
            from ledger.sdk.views import read_views

            assert self._em.home_path is not None  # checked by Guard
            views = read_views(self._em.home_path, BUDGETS_PROCESSOR, PRICE_VIEWS)
            self._book = price_book_from_rows(views[PRICE_VIEWS[0]], views[PRICE_VIEWS[1]])
        return self._book

    def _reserve(self, amount: int) -> None:
        """Reserve ``amount`` under a fresh id, wait for the decision; keep the hold if granted, else raise."""
        em, g = self._em, self.guard
        rid = fresh_reservation_id()
        event_id = em.reserve(rid, self.kind, amount, ttl_us=g.ttl_us, scope=g.scope, scope_id=g.scope_id)
        em.flush()
        row = self._decision(rid)
        if row is None:
            try:
                em.release(rid, self.kind, scope=g.scope, scope_id=g.scope_id)
                em.flush()
            except LedgerError as e:
                e.evidence.setdefault("reservation_id", rid)
                raise
            raise AdmissionError(
                f"no decision on reservation {rid} within {g.timeout_s:g} s: released it, the call does not run",
                reservation_id=rid, kind=self.kind, amount=amount, timeout_s=g.timeout_s, released=True,
                hint="is the budgets processor running and publishing? (`tokenledger run budgets`, "
                     "`tokenledger status`); or give the guard a longer timeout_s")
        if row["status"] == GRANTED:
            self._holds.append(Hold(rid, amount))
            return
        reason = row["reason"] or row["status"]
        raise BudgetRefused(
            f"{self.kind} reservation {rid} of {amount} was {row['status']} ({reason}): the call does not run",
            reservation_id=rid, kind=self.kind, amount=amount, reason=reason, status=row["status"],
            scope=self._deciding_scope(event_id, row), hint=_refusal_hint(reason, self.kind))

    def _decision(self, rid: str) -> dict[str, Any] | None:
        """The published row of reservation ``rid``, polled until it appears or the guard's timeout passes."""
        from ledger.sdk.views import reservation

        assert self._em.home_path is not None
        deadline = time.monotonic() + self.guard.timeout_s
        while True:
            row = reservation(self._em.home_path, rid, self._em.signer_id)
            if row is not None:
                return row
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(DECISION_POLL_S, left))

    def _deciding_scope(self, event_id: str, row: dict[str, Any]) -> str:
        """The level whose decision refused the reserve (its ``reservation_refused`` alert), else the scope it named."""
        from ledger.sdk.views import read_view

        assert self._em.home_path is not None
        for a in read_view(self._em.home_path, BUDGETS_PROCESSOR, "budget_alerts"):
            if a["cause_event_id"] == event_id and a["alert"] == "reservation_refused":
                return f"{a['scope']}:{a['scope_id']}"
        return f"{row['scope']}:{row['scope_id']}"

    def __repr__(self) -> str:
        return f"ActiveGuard({self.kind!r}, agent={self._em.signer_id!r}, held={self.held}, used={self.used})"


def _refusal_hint(reason: str, kind: str) -> str:
    if reason == "not_budgeted":
        return f"no {kind} budget covers this agent's scopes: the operator sets one (`tokenledger budget set`)"
    if reason == "not_permitted":
        return ("an agent reserves only against its own scopes: the operator grants another "
                "(`tokenledger agent grant AGENT reserve --scope level:id`)")
    return f"see what is left with `tokenledger budget show --kind {kind}`; retry after the window resets"


def _now_us() -> int:
    return time.time_ns() // 1000
