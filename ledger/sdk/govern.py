"""``govern``: a decorator that holds an agent's ``llm_tokens`` budget around each call of a function, from the
function's own text when nobody reports its usage (token-budget-contracts' ``govern``, with the check before the
call instead of after it).

    em = Emitter.open("researcher", home="~/.tokenledger")

    @govern(em, max_output_tokens=800, confidence_fn=lambda reply: reply.confidence)
    def research(question: str) -> Reply: ...

Per call (each in a spend guard of its own, ``ledger.sdk.guard``):

1. **Reserve before the call.** The hold is the estimated tokens of the call's ``str`` positional arguments and
   ``str`` keyword values (``ledger.economics.token_estimate.estimate_split(...).input``: tiktoken's cl100k_base
   where installed, ``max(1, floor(words * 1.3))`` per text otherwise) plus ``max_output_tokens`` (the reply's
   bound: the function's caller knows it, the estimator cannot). The budgets processor decides it; a refusal, a
   closed confidence gate included (the processor's gate: a confidence at or above the policy's threshold, reported
   by ``confidence_fn`` after an earlier call), raises ``BudgetRefused`` and **the function does not run**. (The
   reference runs the call first and refuses its result afterwards; the spend has then happened.)
2. **Run** the function.
3. **Count what it spent.** When an instrumented client reported usage inside the call (the guard's ``used`` is
   above 0), that usage is the record and nothing is estimated (the action event it emitted is counted by the
   processor). Otherwise the call is estimated from its ``str`` arguments and ``str`` result (``spent_text``:
   input and output together) and committed when the block closes; the rest of the hold is freed. An estimate above
   the hold is committed in full (counted as usage beyond the hold), never cut.
4. **Report confidence.** With ``confidence_fn``, its value for the result (a probability in [0, 1]; None: no
   report, the last confidence stands) is emitted as an ``Outcome`` (``task_id``: ``task_id`` or the function's
   name; confidence in thousandths, rounded) signed by the agent. The processor's gate reads it for the next call.

An exception in the function commits what was reported (nothing, unless an instrumented call reported usage) and
is re-raised; no confidence is reported then. ``async def`` functions are governed the same way (waits off the
event loop).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ledger import limits
from ledger.economics.token_estimate import estimate_split
from ledger.errors import ValidationError
from ledger.sdk.emitter import Emitter
from ledger.sdk.guard import DECISION_TIMEOUT_S, GUARD_TTL_US, LLM_TOKENS, ActiveGuard, Guard
from ledger.units import MILLI
from ledger.wire.events import Outcome, check_int, check_opt_str

F = TypeVar("F", bound=Callable[..., Any])


def _confidence_milli(value: object) -> int | None:
    """A reported confidence as the log carries it (thousandths), or None (nothing reported)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValidationError("confidence", value, "must be a probability between 0 and 1 (or None)")
    return round(value * MILLI)


class Governed:
    """The settings of one ``govern`` decorator (see the module doc)."""

    def __init__(self, emitter: Emitter, *, max_output_tokens: int,
                 confidence_fn: Callable[[Any], float | None] | None = None, task_id: str | None = None,
                 timeout_s: float = DECISION_TIMEOUT_S, ttl_us: int = GUARD_TTL_US, scope: str = "agent",
                 scope_id: str | None = None) -> None:
        self.max_output_tokens = check_int("max_output_tokens", max_output_tokens, 0, limits.MAX_TOKENS)
        if confidence_fn is not None and not callable(confidence_fn):
            raise ValidationError("confidence_fn", type(confidence_fn).__name__, "must be callable")
        self.confidence_fn = confidence_fn
        self.task_id = check_opt_str("task_id", task_id)
        self.emitter = emitter
        # checks the emitter, the home, the timeout, the ttl and the scope now, at decoration time
        self._guard_args: dict[str, Any] = dict(timeout_s=timeout_s, ttl_us=ttl_us, scope=scope, scope_id=scope_id)
        Guard(emitter, LLM_TOKENS, estimate_tokens=0, **self._guard_args)

    def guard(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Guard:
        """The guard of one call: its hold is the arguments' estimate plus ``max_output_tokens``."""
        hold = estimate_split(args, kwargs).input + self.max_output_tokens
        return Guard(self.emitter, LLM_TOKENS, estimate_tokens=hold, **self._guard_args)

    def finish(self, block: ActiveGuard, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
               result: Any) -> None:
        """Count an unmetered call by its estimate, then report the result's confidence."""
        if block.used == 0:
            split = estimate_split(args, kwargs, result)
            block.spent(split.total)
        if self.confidence_fn is not None:
            milli = _confidence_milli(self.confidence_fn(result))
            if milli is not None:
                self.emitter.emit(Outcome(task_id=self.task_id or name, confidence_milli=milli))

    def __call__(self, fn: F) -> F:
        name = getattr(fn, "__name__", "call")
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def governed_async(*args: Any, **kwargs: Any) -> Any:
                async with self.guard(args, kwargs) as block:
                    result = await fn(*args, **kwargs)
                    self.finish(block, name, args, kwargs, result)
                    return result

            return governed_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def governed(*args: Any, **kwargs: Any) -> Any:
            with self.guard(args, kwargs) as block:
                result = fn(*args, **kwargs)
                self.finish(block, name, args, kwargs, result)
                return result

        return governed  # type: ignore[return-value]


def govern(emitter: Emitter, *, max_output_tokens: int,
           confidence_fn: Callable[[Any], float | None] | None = None, task_id: str | None = None,
           timeout_s: float = DECISION_TIMEOUT_S, ttl_us: int = GUARD_TTL_US, scope: str = "agent",
           scope_id: str | None = None) -> Governed:
    """A decorator governing a function's calls by ``emitter``'s agent's ``llm_tokens`` budget (see the module
    doc). ``emitter`` is opened with ``Emitter.open(..., home=...)``: the guard reads the processor's decisions."""
    return Governed(emitter, max_output_tokens=max_output_tokens, confidence_fn=confidence_fn, task_id=task_id,
                    timeout_s=timeout_s, ttl_us=ttl_us, scope=scope, scope_id=scope_id)
