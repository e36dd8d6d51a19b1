"""Drop-in layer for agent-cost-attribution 0.1.1 (``agent_cost_attribution``): per-stage token attribution of
Claude Code workflow runs (``wf_*.json``), silent-degradation findings, blended cost estimates, model routing.

Alias the module name and code written for the package runs on the ledger's own implementation::

    import sys, ledger.compat.acat
    sys.modules["agent_cost_attribution"] = ledger.compat.acat   # before the first import of the package

or run its command line: ``python -m ledger.compat.acat run.json | run-dir ...`` (``ledger.compat.acat.cli``).

Submodules and public names are the package's: ``ledger`` (AgentRecord, load_run, agents, total_tokens, decompose,
verify_invariant, summary), ``health`` (detect_degradation, is_healthy), ``pricing`` (PRICES, DEFAULT_INPUT_SHARE,
tier, blended_rate, estimate_cost, cost_by_stage, total_cost), ``routing`` (Router, MessageRouter, savings_estimate),
``cli`` (render, main). Behind them: ``ledger.sources.claude_code.read_workflow_run`` reads the documents,
``ledger.sources.attribution`` does the waterfall, the invariant and the degradation rules, ``ledger.economics.blended``
the cost estimate, ``ledger.economics.routing`` the role table, overrides, message escalation and savings.

The layer converts at its boundary: a run dict in -> a typed ``WorkflowRun``; integer micro-USD out -> float USD
(``micros / 1e6``); exact rational rates out -> float USD per token. The reference persists nothing (read-only,
post-hoc); neither does this layer. To keep a run, with signatures and idempotency, import it into a ledger home:
``tokenledger import claude-code wf_x.json --time ...``; ``tokenledger report FILE...`` is the ledger's own one-shot
report of files without a home.

Deviations from the reference behaviour (each one on purpose; the reference's behaviour is in brackets):

1. **Bad input is refused, never turned into zeros.** A token count that is not a JSON integer in
   [0, limits.MAX_TOKENS] (``"bad"``, ``"12.7"``, ``12.7``, ``true``, ``-5``), a missing ``tokens`` or
   ``totalTokens``, a ``workflowProgress`` that is not a list, an entry that is not an object or whose ``type`` is
   neither ``workflow_agent`` nor ``workflow_phase``, a string field of the wrong type: ``ledger.errors.
   ValidationError`` (a ``ValueError``) naming the JSON path (``workflowProgress[3].tokens``) and the value.
   [``int(v or 0)``, any failure -> 0; unknown entries skipped; missing counts 0.] The one document without those
   fields that is accepted is ``{}``: what ``load_run`` returns for a file it could not open (no agents, total 0).
2. **load_run**: a file that is missing, unreadable or not a regular file -> ``{}`` as in the reference; a file that
   is readable but larger than ``limits.MAX_IMPORT_FILE_BYTES``, not UTF-8/JSON, or not a JSON object ->
   ValidationError. [Every failure -> ``{}``.]
3. **Exact money.** Each agent's estimate is integer micro-USD, rounded half-to-even once, from exact rational rates
   (a float ``input_share`` means the decimal it prints as: 0.85 is 17/20); stage costs and the run total are sums
   of those integers, shown as ``micros / 1e6``, so ``total_cost(run)`` equals the sum of ``cost_by_stage(run)``
   to the micro-dollar. [Binary floats, unrounded: ``estimate_cost(1, "haiku")`` is 1.6e-06 there, 2e-06 here.]
   An ``input_share`` outside [0, 1] is a ValidationError [accepted]. ``estimate_cost(None, m)`` is refused
   [``None`` priced as 0 tokens].
4. **Degradation** compares exactly (rational means and median), so only a float tie at the ``cheap_ratio``
   boundary can decide differently; each finding's ``detail`` is the ledger's wording. [Binary floats; its own
   wording.] ``min_agents`` must be an int in [0, limits.MAX_MIN_AGENTS].
5. **AgentRecord.tool_calls** is None when the entry has no ``toolCalls`` [0].
6. **Routing**: the role table and the tags are checked at construction (each a mapping with a non-empty string
   ``model``; an ``effort`` string or None) [checked never: a bad entry fails, or routes, at use]. Overrides stay
   fail-soft, but what was ignored is kept in ``Router.problems`` (``ledger.economics.routing.OverrideProblem``)
   [silently dropped]; an overrides path that is neither str nor ``os.PathLike`` is a ValidationError
   [AttributeError at the first resolve]. ``savings_estimate`` refuses a negative or non-integer token volume
   [prices it]; its amounts are exact micro-USD as in 3.
7. **CLI** exits 1 when any named file was unreadable or refused (each one reported on stderr with the reason) [exit
   0 even when every file failed]; the rendering names the models it priced as opus because no tier matched.
"""

from ledger.compat.acat.health import detect_degradation, is_healthy
from ledger.compat.acat.ledger import (
    AgentRecord,
    agents,
    decompose,
    load_run,
    summary,
    total_tokens,
    verify_invariant,
)
from ledger.compat.acat.pricing import blended_rate, cost_by_stage, estimate_cost, total_cost

__all__ = [
    "AgentRecord", "agents", "blended_rate", "cost_by_stage", "decompose", "detect_degradation", "estimate_cost",
    "is_healthy", "load_run", "summary", "total_cost", "total_tokens", "verify_invariant",
]
