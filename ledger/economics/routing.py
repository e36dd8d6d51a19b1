"""Model routing: which model (and effort) each workload runs on, and what a routing plan would save.

* **Role table** (``RoleTable``): role -> ``RoleConfig(model, effort)``. One table instead of models pinned at call
  sites. An unknown role **fails closed**: ``resolve`` raises a ValidationError naming the role (a typo must surface,
  not route silently to some default).
* **Overrides** (``parse_overrides`` over a JSON object ``{role: {"model"?: str, "effort"?: str | null}}``) re-route
  roles without a deploy and **fail soft**: a file that cannot be read or decoded, a role the table does not have, an
  entry that is not an object, a model that is not a non-empty string are *ignored*, each with an
  ``OverrideProblem`` saying what and why (returned, never silent), and the table's defaults stand. A valid
  ``model`` (surrounding whitespace stripped) replaces the role's model; an ``effort`` key replaces its effort with
  the stripped string, or with None when the value is null, empty or not a string.
* **Per-message escalation** (``MessageRouter``): an explicit ``!tag`` (a configured tag name, case-insensitive, at
  the start of the text or after whitespace, as a whole word) wins and is removed from the text (runs of spaces or
  tabs it leaves collapse to one, ends stripped); otherwise a match of the caller's ``deep_pattern`` (case-insensitive)
  routes to ``deep_role``; otherwise ``default_role``. A text that is not a string routes as the empty text.
* **Savings estimate** (``savings_estimate``; per agent: ``priced_savings``): token volumes priced on their routed
  model and on one baseline model at the blended rate of ``ledger.economics.blended``. Feed it the meter's *real*
  volumes (a workflow run's stage waterfall, ``volumes_by_role``, or the tokens per role of the ledger's own calls);
  the result is labelled an **estimate** (``SavingsEstimate.basis``): list prices and an assumed input share, never
  a measurement. ``metered_savings`` prices volumes that carry the ledger's input/output split (``metered_volumes``)
  at each model's input and output rates, so no share is assumed. Each (volume, model) amount is rounded
  half-to-even to micro-USD once and the amounts are summed, so routed, baseline and saved are exact integers that
  add up; the percentage is taken from the unrounded amounts.

Never: a float as money, a guessed model for an unknown role, an override that silently changes nothing.
Pure: the caller reads the overrides file (``read_overrides`` is the one function here that does I/O).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.economics.blended import (
    DEFAULT_INPUT_SHARE,
    Number,
    RateLookup,
    blended_rate,
    check_share,
    exact_cost,
    reference_rates,
)
from ledger.economics.money import check_tokens, round_fraction
from ledger.errors import ValidationError
from ledger.units import TOKENS_PER_MTOK
from ledger.wire.events import check_str

DEFAULT_ROLE = "chat"  # the role a message goes to without a tag or an escalation
DEEP_ROLE = "chat_deep"  # the role a message matching the escalation pattern goes to
TAG_PREFIX = "!"  # a tag is typed as !name
ESTIMATE_BASIS = "estimate: list prices at a blended input share; not a measurement"


@dataclass(frozen=True, slots=True)
class RoleConfig:
    """What a role runs on: a model name and an optional effort level (None: the provider's default)."""

    model: str
    effort: str | None = None

    def __post_init__(self) -> None:
        check_str("model", self.model, limits.MAX_ID_CHARS)
        if self.effort is not None:
            check_str("effort", self.effort, limits.MAX_LABEL_CHARS)


_UNSET: Any = object()  # an override that does not touch the effort


@dataclass(frozen=True, slots=True)
class RoleOverride:
    """A partial re-route of one role: a new model and/or a new effort (``effort_set``: the effort key was given)."""

    model: str | None = None
    effort: str | None = None
    effort_set: bool = False


@dataclass(frozen=True, slots=True)
class OverrideProblem:
    """An override that was ignored: where (``path``, JSON path in the file, "" for the whole file) and why."""

    path: str
    value: str
    reason: str


def role_table_from(roles: Mapping[str, Any]) -> dict[str, RoleConfig]:
    """A role table from ``{role: RoleConfig | {"model": str, "effort"?: str | None}}``; any bad entry is a
    ValidationError naming it (the table is the caller's code, not a tuning file: it fails closed)."""
    if not isinstance(roles, Mapping):
        raise ValidationError("roles", roles, "must be a mapping of role -> {model, effort}")
    table = {}
    for role, cfg in roles.items():
        check_str("roles", role, limits.MAX_ID_CHARS)
        if isinstance(cfg, RoleConfig):
            table[role] = cfg
            continue
        if not isinstance(cfg, Mapping):
            raise ValidationError(f"roles[{role}]", cfg, "must be a mapping with a model")
        if "model" not in cfg:
            raise ValidationError(f"roles[{role}].model", None, "is required")
        model = check_str(f"roles[{role}].model", cfg["model"], limits.MAX_ID_CHARS)
        effort = cfg.get("effort")
        if effort is not None:
            check_str(f"roles[{role}].effort", effort, limits.MAX_LABEL_CHARS)
        table[role] = RoleConfig(model, effort)
    return table


@dataclass(frozen=True)
class RoleTable:
    """Role -> RoleConfig with overrides merged over the defaults; unknown roles fail closed."""

    roles: Mapping[str, RoleConfig]
    overrides: Mapping[str, RoleOverride] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", role_table_from(self.roles))
        for role in self.overrides:
            if role not in self.roles:  # parse_overrides never yields these; a caller's own dict must not either
                raise ValidationError("overrides", role, "is not a role of the table")

    def resolve(self, role: str) -> RoleConfig:
        if not isinstance(role, str) or role not in self.roles:
            raise ValidationError("role", role, f"is not in the role table (roles: {', '.join(sorted(self.roles))})")
        cfg = self.roles[role]
        ov = self.overrides.get(role)
        if ov is None:
            return cfg
        return RoleConfig(ov.model if ov.model is not None else cfg.model, ov.effort if ov.effort_set else cfg.effort)

    def with_overrides(self, overrides: Mapping[str, RoleOverride]) -> RoleTable:
        return replace(self, overrides=dict(overrides))


def parse_overrides(document: Any, roles: Iterable[str]) -> tuple[dict[str, RoleOverride], tuple[OverrideProblem, ...]]:
    """The valid overrides of a decoded overrides document for a table with ``roles``, and a problem per ignored part
    (module doc, "Overrides")."""
    known = set(roles)
    if not isinstance(document, Mapping):
        return {}, (OverrideProblem("", type(document).__name__, "the overrides file must hold a JSON object"),)
    out: dict[str, RoleOverride] = {}
    problems: list[OverrideProblem] = []
    for role, entry in document.items():
        if role not in known:
            problems.append(OverrideProblem(str(role), "", "is not a role of the table; ignored"))
            continue
        if not isinstance(entry, Mapping):
            problems.append(OverrideProblem(role, repr(entry)[:80], "must be an object {model?, effort?}; ignored"))
            continue
        model = entry.get("model")
        if model is not None and not (isinstance(model, str) and model.strip()):
            problems.append(OverrideProblem(f"{role}.model", repr(model)[:80],
                                            "must be a non-empty string; the default model stays"))
            model = None
        elif isinstance(model, str):
            model = model.strip()
            try:
                check_str(f"{role}.model", model, limits.MAX_ID_CHARS)
            except ValidationError as e:
                problems.append(OverrideProblem(f"{role}.model", repr(model)[:80], f"{e.reason}; the default stays"))
                model = None
        effort_set = "effort" in entry
        effort = None
        if effort_set:
            raw = entry["effort"]
            effort = raw.strip() if isinstance(raw, str) and raw.strip() else None
            if effort is not None and len(effort) > limits.MAX_LABEL_CHARS:
                problems.append(OverrideProblem(f"{role}.effort", effort[:80], "is too long; the default stays"))
                effort, effort_set = None, False
        if model is not None or effort_set:
            out[role] = RoleOverride(model, effort, effort_set)
    return out, tuple(problems)


def read_overrides(path: Path, roles: Iterable[str]) -> tuple[dict[str, RoleOverride], tuple[OverrideProblem, ...]]:
    """``parse_overrides`` of the JSON file at ``path``; a file that is missing, unreadable, too large or not JSON
    gives no overrides and one problem (fail soft: the defaults stand)."""
    try:
        with path.open("rb") as f:
            data = f.read(limits.MAX_ROUTING_OVERRIDES_BYTES + 1)
    except OSError as e:
        return {}, (OverrideProblem("", str(path), f"cannot be read ({e.strerror or e}); defaults used"),)
    if len(data) > limits.MAX_ROUTING_OVERRIDES_BYTES:
        return {}, (OverrideProblem("", str(path), f"is larger than {limits.MAX_ROUTING_OVERRIDES_BYTES} bytes; "
                                    "defaults used"),)
    try:
        document = json.loads(data)
    except ValueError as e:
        return {}, (OverrideProblem("", str(path), f"is not JSON ({e}); defaults used"),)
    return parse_overrides(document, roles)


# -------------------------------------------------------------------------------- per-message routing


@dataclass(frozen=True, slots=True)
class Routed:
    """Where one message goes: its config, the text the model should see, and why (``tag:<name>``, ``deep``,
    ``default``)."""

    config: RoleConfig
    text: str
    reason: str


class MessageRouter:
    """Tag > escalation pattern > default role (module doc, "Per-message escalation")."""

    def __init__(self, table: RoleTable, *, tags: Mapping[str, RoleConfig | Mapping[str, Any]], deep_pattern: str,
                 default_role: str = DEFAULT_ROLE, deep_role: str = DEEP_ROLE) -> None:
        self.table = table
        parsed = role_table_from({check_str("tags", k, limits.MAX_ID_CHARS).lower(): v for k, v in tags.items()})
        self.tags: dict[str, RoleConfig] = parsed
        check_str("deep_pattern", deep_pattern, limits.MAX_ESCALATION_PATTERN_CHARS, text=True)
        try:
            self._deep = re.compile(deep_pattern, re.IGNORECASE)
        except re.error as e:
            raise ValidationError("deep_pattern", deep_pattern, f"is not a regular expression: {e}") from None
        names = "|".join(re.escape(k) for k in sorted(self.tags))
        # a tag is at the start or after whitespace (so "wow!cheap" is not one) and ends at a word boundary
        self._tag = re.compile(rf"(?:(?<=\s)|^){re.escape(TAG_PREFIX)}({names})\b", re.IGNORECASE) if names else None
        self.default_role = check_str("default_role", default_role)
        self.deep_role = check_str("deep_role", deep_role)

    def route(self, text: Any) -> Routed:
        message = text if isinstance(text, str) else ""
        found = self._tag.search(message) if self._tag is not None else None
        if found is not None:
            assert self._tag is not None
            cleaned = re.sub(r"[ \t]{2,}", " ", self._tag.sub("", message, count=1)).strip()
            name = found.group(1).lower()
            return Routed(self.tags[name], cleaned, f"tag:{name}")
        if self._deep.search(message):
            return Routed(self.table.resolve(self.deep_role), message, "deep")
        return Routed(self.table.resolve(self.default_role), message, "default")


# -------------------------------------------------------------------------------- savings estimate


@dataclass(frozen=True, slots=True)
class SavingsEstimate:
    """A planning estimate of routed vs all-on-one-model spend; never a measurement (``basis`` says so)."""

    baseline_micros: int
    routed_micros: int
    saved_micros: int  # negative when the routes cost more than the baseline
    saved_pct: float  # 100 * saved / baseline, of the unrounded amounts; 0.0 when the baseline is 0
    basis: str = ESTIMATE_BASIS


def savings_estimate(traffic: Mapping[str, int], routes: Mapping[str, str] | RoleTable, *, baseline_model: str,
                     input_share: Number = DEFAULT_INPUT_SHARE, rates: RateLookup = reference_rates) -> SavingsEstimate:
    """Price each role's token volume on its routed model and on ``baseline_model``.

    ``traffic`` maps role -> tokens (e.g. ``volumes_by_role`` of a run), ``routes`` maps role -> model or is a
    ``RoleTable`` (its overrides applied). A role with no route is a ValidationError: an unrouted role must surface,
    not fall back.
    """
    share = check_share(input_share)
    check_str("baseline_model", baseline_model)
    volumes = []
    for role, tokens in traffic.items():
        if isinstance(routes, RoleTable):
            model = routes.resolve(role).model
        elif role not in routes:
            raise ValidationError("traffic", role, f"has no route; routed roles: {', '.join(sorted(routes))}")
        else:
            model = check_str(f"routes[{role}]", routes[role])
        volumes.append((check_tokens(f"traffic[{role}]", tokens), model))
    return priced_savings(volumes, baseline_model, share, rates, skip_unpriced=False)


def priced_savings(volumes: Iterable[tuple[int, str]], baseline_model: str, share: Number, rates: RateLookup, *,
                   skip_unpriced: bool) -> SavingsEstimate:
    """Each (tokens, model) priced on its model and on ``baseline_model``, each amount rounded once and summed; a
    model ``rates`` does not price is left out (``skip_unpriced``) or a ValidationError."""
    baseline = routed = 0
    exact_baseline = exact_routed = Fraction(0)
    for tokens, model in volumes:
        got = exact_cost(tokens, model, share, rates=rates)
        base = exact_cost(tokens, baseline_model, share, rates=rates)
        if got is None and skip_unpriced:
            continue
        if got is None or base is None:
            raise ValidationError("model", model if got is None else baseline_model,
                                  "has no price: a savings estimate cannot price it")
        exact_routed += got
        exact_baseline += base
        routed += round_fraction(got)
        baseline += round_fraction(base)
    # The percentage is a ratio, taken from the unrounded amounts: on a baseline of a few micro-USD
    # the rounded ones would move it by tens of points.
    pct = float(100 * (exact_baseline - exact_routed) / exact_baseline) if exact_baseline else 0.0
    return SavingsEstimate(baseline, routed, baseline - routed, pct)


def volumes_by_role(usage: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Measured token volumes summed per role, in first-seen order, from (role, tokens) pairs (e.g. each workflow
    agent's stage and tokens, or each LLM call's stage and input + output tokens): the traffic for
    ``savings_estimate``."""
    out: dict[str, int] = {}
    for role, tokens in usage:
        check_str("role", role, limits.MAX_ID_CHARS)
        out[role] = out.get(role, 0) + check_tokens(f"tokens[{role}]", tokens)
    return out


@dataclass(frozen=True, slots=True)
class MeteredVolume:
    """Tokens a role was metered with, split as the ledger records them: ``input_tokens`` (everything the model read,
    cache reads included) and ``output_tokens`` (everything it wrote, reasoning included)."""

    input_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        check_tokens("input_tokens", self.input_tokens)
        check_tokens("output_tokens", self.output_tokens)


def metered_volumes(calls: Iterable[tuple[str, int, int]]) -> dict[str, MeteredVolume]:
    """(role, input_tokens, output_tokens) per metered call (e.g. each ``llm_calls`` row's stage and counts) summed
    per role, in first-seen order."""
    totals: dict[str, tuple[int, int]] = {}
    for role, input_tokens, output_tokens in calls:
        check_str("role", role, limits.MAX_ID_CHARS)
        got_in, got_out = totals.get(role, (0, 0))
        totals[role] = (got_in + check_tokens(f"input_tokens[{role}]", input_tokens),
                        got_out + check_tokens(f"output_tokens[{role}]", output_tokens))
    return {role: MeteredVolume(i, o) for role, (i, o) in totals.items()}


def metered_savings(volumes: Mapping[str, MeteredVolume], routes: Mapping[str, str] | RoleTable, *,
                    baseline_model: str, rates: RateLookup = reference_rates) -> SavingsEstimate:
    """Like ``savings_estimate``, but on volumes that carry their input/output split (the ledger meters both): each
    role's input tokens at the model's input rate and its output tokens at its output rate, so no input share is
    assumed. Still an estimate: the same tokens on another model are list prices of a run that did not happen
    (another model would not have written the same number of tokens). A model ``rates`` does not price is a
    ValidationError."""
    check_str("baseline_model", baseline_model)
    baseline = routed = 0
    exact_baseline = exact_routed = Fraction(0)
    for role, volume in volumes.items():
        if not isinstance(volume, MeteredVolume):
            raise ValidationError(f"volumes[{role}]", volume, "must be a MeteredVolume")
        model = routes.resolve(role).model if isinstance(routes, RoleTable) else _route(routes, role)
        got = _split_cost(volume, model, rates)
        base = _split_cost(volume, baseline_model, rates)
        exact_routed += got
        exact_baseline += base
        routed += round_fraction(got)
        baseline += round_fraction(base)
    pct = float(100 * (exact_baseline - exact_routed) / exact_baseline) if exact_baseline else 0.0
    return SavingsEstimate(baseline, routed, baseline - routed, pct,
                           basis="estimate: list prices of the metered input and output tokens; not a measurement")


def _route(routes: Mapping[str, str], role: str) -> str:
    if role not in routes:
        raise ValidationError("volumes", role, f"has no route; routed roles: {', '.join(sorted(routes))}")
    return check_str(f"routes[{role}]", routes[role])


def _split_cost(volume: MeteredVolume, model: str, rates: RateLookup) -> Fraction:
    got = rates(model)
    if got is None:
        raise ValidationError("model", model, "has no price: a savings estimate cannot price it")
    rate_in, rate_out = got
    return Fraction(volume.input_tokens * rate_in + volume.output_tokens * rate_out, TOKENS_PER_MTOK)


def priciest_model(models: Iterable[str], *, input_share: Number = DEFAULT_INPUT_SHARE,
                   rates: RateLookup = reference_rates) -> str | None:
    """The model with the highest blended rate (ties: the greater name), None when none is priced: the natural
    baseline for "what if everything ran on the strongest model"."""
    share = check_share(input_share)
    best: tuple[Fraction, str] | None = None
    for model in set(models):
        got = blended_rate(model, share, rates=rates)
        if got is not None and (best is None or (got, model) > best):
            best = (got, model)
    return None if best is None else best[1]


__all__ = [
    "DEEP_ROLE", "DEFAULT_ROLE", "ESTIMATE_BASIS", "MessageRouter", "MeteredVolume", "OverrideProblem",
    "RoleConfig", "RoleOverride", "RoleTable", "Routed", "SavingsEstimate", "metered_savings", "metered_volumes",
    "parse_overrides", "priced_savings", "priciest_model", "read_overrides", "role_table_from", "savings_estimate",
    "volumes_by_role",
]
