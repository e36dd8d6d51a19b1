"""``agent_cost_attribution.routing`` on the ledger: ``Router`` (role table, fail-closed roles, fail-soft
overrides), ``MessageRouter`` (tag > escalation pattern > default role) and ``savings_estimate`` (a planning
estimate, not a measurement), over ``ledger.economics.routing``.

Reference shapes at the boundary: a role's config is a dict ``{"model", "effort", ...}`` (a copy each time, the
caller's own extra keys kept), an unknown role is a ``KeyError``, money is float USD from integer micro-USD
(deviations 3 and 6 of ``ledger.compat.acat``). The overrides file is read again at every ``resolve`` so a re-route
takes effect without a restart, as in the reference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ledger.compat.acat.pricing import DEFAULT_INPUT_SHARE
from ledger.economics import routing
from ledger.errors import ValidationError
from ledger.units import MICROS_PER_USD


class Router:
    """Role -> ``{"model", "effort"}``, with the overrides file (JSON ``{role: {model?, effort?}}``) merged over the
    defaults at every ``resolve``; ``problems`` holds what the last read of that file ignored, and why."""

    def __init__(self, roles: Mapping[str, Any], overrides_path: str | os.PathLike[str] | None = None) -> None:
        self.roles = dict(roles)
        self._table = routing.RoleTable(routing.role_table_from(self.roles))
        if overrides_path is not None and not isinstance(overrides_path, str | os.PathLike):
            raise ValidationError("overrides_path", overrides_path, "must be a path (str or os.PathLike) or None")
        self.overrides_path = None if overrides_path is None else Path(overrides_path)
        self.problems: tuple[routing.OverrideProblem, ...] = ()

    def table(self) -> routing.RoleTable:
        """The role table with the overrides file as it is now (fail soft: see ``problems``)."""
        if self.overrides_path is None:
            return self._table
        overrides, self.problems = routing.read_overrides(self.overrides_path, self._table.roles)
        return self._table.with_overrides(overrides)

    def resolve(self, role: Any) -> dict[str, Any]:
        """A copy of ``role``'s config with the overrides applied; an unknown role is a KeyError (fail closed)."""
        try:
            cfg = self.table().resolve(role)
        except ValidationError as e:
            raise KeyError(role) from e
        out = dict(self.roles[role])
        out["model"] = cfg.model
        if "effort" in out or cfg.effort is not None:
            out["effort"] = cfg.effort
        return out

    def model_for(self, role: Any) -> str:
        model: str = self.resolve(role)["model"]
        return model

    def effort_for(self, role: Any) -> str | None:
        effort: str | None = self.resolve(role).get("effort")
        return effort


class MessageRouter:
    """Per-message routing: a ``!tag`` (stripped from the text) > a ``deep_pattern`` match (``deep_role``) > the
    ``default_role``. ``route(text)`` returns ``(config dict, text for the model)``."""

    def __init__(self, router: Router, *, tags: Mapping[str, Mapping[str, Any]], deep_pattern: str,
                 default_role: str = routing.DEFAULT_ROLE, deep_role: str = routing.DEEP_ROLE) -> None:
        self.router = router
        self.tags = {k.lower(): dict(v) for k, v in tags.items()}
        self.default_role = default_role
        self.deep_role = deep_role
        # the decision is the ledger's; the configs handed out are the caller's dicts (and the Router's overrides)
        self._decide = routing.MessageRouter(router._table, tags=self.tags, deep_pattern=deep_pattern,
                                             default_role=default_role, deep_role=deep_role)

    def route(self, text: Any) -> tuple[dict[str, Any], str]:
        try:
            routed = self._decide.route(text)
        except ValidationError as e:
            raise KeyError(e.value) from e  # the default or deep role is not in the table: fail closed
        if routed.reason.startswith("tag:"):
            return dict(self.tags[routed.reason.removeprefix("tag:")]), routed.text
        role = self.deep_role if routed.reason == "deep" else self.default_role
        return self.router.resolve(role), routed.text


def savings_estimate(traffic: Mapping[str, Any], roles: Mapping[str, Any], *, baseline_model: str,
                     input_share: Any = None) -> dict[str, float]:
    """A planning estimate of routed vs all-on-``baseline_model`` spend for ``traffic`` (role -> tokens; feed it
    measured volumes): ``{baseline_usd, routed_usd, saved_usd, saved_pct}``. A role not in ``roles`` is a
    KeyError."""
    table = routing.RoleTable(routing.role_table_from(roles))
    for role in traffic:
        if role not in table.roles:
            raise KeyError(role)
    est = routing.savings_estimate(dict(traffic), table, baseline_model=baseline_model,
                                   input_share=DEFAULT_INPUT_SHARE if input_share is None else input_share)
    return {"baseline_usd": est.baseline_micros / MICROS_PER_USD, "routed_usd": est.routed_micros / MICROS_PER_USD,
            "saved_usd": est.saved_micros / MICROS_PER_USD, "saved_pct": est.saved_pct}


__all__ = ["MessageRouter", "Router", "savings_estimate"]
