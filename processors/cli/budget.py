"""``tokenledger budget check | set | show`` and ``tokenledger reputation show``.

``budget check`` answers allow / throttle (with the delay) / deny from the latest published budgets
view (ledger/sdk/views.py: advisory; reservations are the guarantee). ``budget set`` emits a
``BudgetPolicy`` control event signed by the operator, every unset field taken from the seed
defaults of its kind (ledger.economics.budget.default_policy). ``show`` commands print published views.
Registered by one import at the end of processors/cli/app.py.
"""

from __future__ import annotations

from typing import Any

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, open_home, operator_emit, print_json, table
from ledger.economics.budget import default_policy
from ledger.economics.budget_rows import policy_from_event
from ledger.errors import ValidationError
from ledger.sdk.home import Home
from ledger.sdk.views import check
from ledger.wire.events import BUDGET_SCOPES, BudgetPolicy
from processors import views

commands = typer.Typer()  # budget, reputation


def register(app: typer.Typer) -> None:
    """Add budget, reputation to ``app``."""
    app.add_typer(commands)


budget_app = typer.Typer(no_args_is_help=True, help="Budgets: admission checks, policies, the budgets view.",
                         epilog="Example: tokenledger budget check --agent researcher --kind llm_tokens --amount 5000")
reputation_app = typer.Typer(no_args_is_help=True, help="Reputation: trust scores, tiers and budget multipliers.",
                             epilog="Example: tokenledger reputation show")
commands.add_typer(budget_app, name="budget")
commands.add_typer(reputation_app, name="reputation")

SHOW_COLUMNS = ("scope", "scope_id", "budget_kind", "allocation", "consumed", "reserved", "remaining", "status",
                "throttle_level", "suspended")
REPUTATION_COLUMNS = ("agent_id", "accuracy", "compliance", "feedback", "reliability", "overall", "tier", "multiplier")


def _view(home: Home, view: str, key: tuple[str, ...]) -> list[dict[str, Any]]:
    return sorted(views.read_view(home, view), key=lambda r: tuple(r[k] for k in key))


@budget_app.command("check", epilog="Example: tokenledger budget check --agent researcher --kind action --amount 3 "
                                    "--project research-assistant")
@guarded
def budget_check(agent: str = typer.Option(..., "--agent", help="The agent that wants to spend."),
                 kind: str = typer.Option(..., "--kind", help="action | data | compute | trust | llm_tokens | usd"),
                 amount: int = typer.Option(..., "--amount", help="Units of the kind (usd: micro-USD)."),
                 org: str | None = typer.Option(None, help="The spend's org (its hierarchy)."),
                 project: str | None = typer.Option(None, help="The spend's project."),
                 task: str | None = typer.Option(None, help="The spend's task."),
                 at_us: int | None = typer.Option(None, "--at-us", help="Event time to judge at (default: now)."),
                 home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """allow / throttle (with the backoff delay) / deny, from the latest published budgets view (advisory)."""
    h = open_home(home)
    ans = check(h.path, agent, kind, amount, org=org, project=project, task=task, at_us=at_us)
    if json_:
        print_json(ans.as_dict())
    else:
        table("admission", ["field", "value"], [[k, v] for k, v in ans.as_dict().items()])


@budget_app.command("set", epilog="Example: tokenledger budget set agent researcher --kind llm_tokens "
                                  "--allocation 200000 --hard-limit-action throttle")
@guarded
def budget_set(scope: str = typer.Argument(..., help="org | project | task | agent"),
               scope_id: str = typer.Argument(..., help="The org, project, task or agent id."),
               kind: str = typer.Option(..., "--kind", help="action | data | compute | trust | llm_tokens | usd"),
               allocation: int = typer.Option(..., "--allocation", help="Units per window (usd: micro-USD)."),
               reset_interval_us: int | None = typer.Option(None, help="Window length, us (default: the kind's)."),
               soft_limit_pct: int | None = typer.Option(None, help="Soft limit, % of the allocation."),
               hard_limit_pct: int | None = typer.Option(None, help="Hard limit, % of the allocation."),
               throttle_at_soft: bool | None = typer.Option(None, "--throttle-at-soft/--no-throttle-at-soft"),
               suspend_at_hard: bool | None = typer.Option(None, "--suspend-at-hard/--no-suspend-at-hard"),
               emergency_reserve_pct: int | None = typer.Option(None,
                                                                help="Emergency reserve beyond the hard limit, %."),
               hard_limit_action: str | None = typer.Option(None, help="allow | throttle | deny | alert_only"),
               min_reserve: int | None = typer.Option(None, help="Never lent to siblings (default 10% of allocation)."),
               priority: int = typer.Option(1, help="Reallocation priority (higher keeps its budget)."),
               confidence_threshold: float | None = typer.Option(None, help="Confidence gate in [0, 1]."),
               effective_from_us: int = typer.Option(0, help="Windows start at this event time + k * interval."),
               home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Emit a budget policy (signed by the operator); unset fields take the seed defaults of the kind."""
    if scope not in BUDGET_SCOPES:
        raise ValidationError("scope", scope, f"must be one of {', '.join(BUDGET_SCOPES)}")
    base = default_policy(kind, allocation=allocation)
    o = base.overage
    threshold = None
    if confidence_threshold is not None:
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ValidationError("confidence_threshold", confidence_threshold, "must be between 0 and 1")
        threshold = round(confidence_threshold * 1000)
    action = hard_limit_action or base.hard_limit_action.value
    reserve = base.min_reserve if min_reserve is None else min_reserve
    assert reserve is not None  # a BudgetPolicy fills its default min_reserve when it is built
    body = BudgetPolicy(
        scope=scope, scope_id=scope_id, budget_kind=kind, allocation=allocation,
        reset_interval_us=base.reset_interval_us if reset_interval_us is None else reset_interval_us,
        soft_limit_pct=int(o.soft_limit_pct) if soft_limit_pct is None else soft_limit_pct,
        hard_limit_pct=int(o.hard_limit_pct) if hard_limit_pct is None else hard_limit_pct,
        throttle_at_soft=o.throttle_at_soft if throttle_at_soft is None else throttle_at_soft,
        # the seed's suspension needs the deny action; another action turns it off unless asked
        suspend_at_hard=(o.suspend_at_hard and action == "deny") if suspend_at_hard is None else suspend_at_hard,
        emergency_reserve_pct=int(o.emergency_reserve_pct) if emergency_reserve_pct is None else emergency_reserve_pct,
        hard_limit_action=action, min_reserve=reserve,
        priority=priority, confidence_threshold_milli=threshold, effective_from_us=effective_from_us)
    policy_from_event(body)  # refuse here what the processor would refuse
    h = open_home(home)
    (event_id,) = operator_emit(h, log, [body])
    info = {"event_id": event_id, "scope": scope, "scope_id": scope_id, "budget_kind": kind, "allocation": allocation,
            "reset_interval_us": body.reset_interval_us, "hard_limit_action": action}
    print_json(info) if json_ else table("budget policy", ["field", "value"], [[k, v] for k, v in info.items()])


@budget_app.command("show", epilog="Example: tokenledger budget show --kind usd")
@guarded
def budget_show(kind: str | None = typer.Option(None, "--kind", help="Only this budget kind."),
                home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """The published budgets view: per scope and kind, allocation, use and status."""
    h = open_home(home)
    rows = [r for r in _view(h, "budgets", ("scope", "scope_id", "budget_kind"))
            if kind is None or r["budget_kind"] == kind]
    if json_:
        print_json(rows)
    else:
        table("budgets", list(SHOW_COLUMNS), [[r[c] for c in SHOW_COLUMNS] for r in rows])


@reputation_app.command("show", epilog="Example: tokenledger reputation show --json")
@guarded
def reputation_show(home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """The published reputation view: scores per dimension, overall, tier, budget multiplier."""
    h = open_home(home)
    rows = _view(h, "reputation", ("agent_id",))
    if json_:
        print_json(rows)
    else:
        table("reputation", list(REPUTATION_COLUMNS),
               [[round(r[c], 3) if isinstance(r[c], float) else r[c] for c in REPUTATION_COLUMNS] for r in rows])
