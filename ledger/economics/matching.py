"""Model matching as data: which priced model a reported model id is.

Providers report ids the price book does not list as such: dated (``gpt-4.1-2025-04-14``,
``claude-haiku-4-5-20251001``), prefixed (``anthropic/claude-sonnet-4-5``), cloud-wrapped
(``us.anthropic.claude-sonnet-4-5-20250929-v1:0`` on Bedrock, ``claude-sonnet-4-5@20250929`` on Vertex).
A ``price_match`` control event carries one rule: a *clause* over the lower-cased reported id and the
model it means. The clause language is the one the catalog (genai-prices) writes its own matching in, so a
catalog's rules enter the log unchanged (``tokenledger prices sync``)::

    {"equals": "gpt-4.1"}            {"starts_with": "claude-haiku-4-5"}     {"ends_with": "-v1:0"}
    {"contains": "sonnet"}           {"regex": "^o[134]"}
    {"or": [clause, ...]}            {"and": [clause, ...]}

This module is pure: it checks a clause (``parse_clause``: a typed error naming the part that is wrong),
gives it one canonical JSON text (``canonical_rule``: equal rules are equal text, so a re-sync can tell
"unchanged" from "changed"), and evaluates it (``Clause.matches``). The resolution order that uses the
rules is ``ledger.economics.pricing.PriceBook.resolve``.

Bounds: a rule is at most ``MAX_MATCH_RULE_CHARS`` of JSON and ``MAX_CLAUSE_DEPTH`` levels deep; a regex is
compiled once per process (``re``'s own cache is small, so ours is keyed by pattern) and searched with
``re.search`` semantics anchored as the pattern says, as the catalog does.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from ledger.errors import ValidationError
from ledger.limits import MAX_CLAUSE_DEPTH, MAX_CLAUSE_TERMS, MAX_MATCH_RULE_CHARS

LEAVES = ("equals", "starts_with", "ends_with", "contains", "regex")
GROUPS = ("or", "and")


@dataclass(frozen=True)
class Clause:
    """One checked clause: ``op`` is a leaf test (with ``text``) or a group (with ``terms``)."""

    op: str
    text: str = ""
    terms: tuple[Clause, ...] = ()

    def matches(self, ref: str) -> bool:
        """Whether the (already lower-cased) model id ``ref`` satisfies the clause."""
        op = self.op
        if op == "equals":
            return ref == self.text
        if op == "starts_with":
            return ref.startswith(self.text)
        if op == "ends_with":
            return ref.endswith(self.text)
        if op == "contains":
            return self.text in ref
        if op == "regex":
            return _compiled(self.text).search(ref) is not None
        if op == "or":
            return any(t.matches(ref) for t in self.terms)
        return all(t.matches(ref) for t in self.terms)

    def to_json(self) -> Any:
        if self.op in GROUPS:
            return {self.op: [t.to_json() for t in self.terms]}
        return {self.op: self.text}


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _clause(value: Any, where: str, depth: int) -> Clause:
    if depth > MAX_CLAUSE_DEPTH:
        raise ValidationError(where, "...", f"nests deeper than {MAX_CLAUSE_DEPTH} levels")
    if not isinstance(value, dict) or len(value) != 1:
        raise ValidationError(where, value, f"must be an object with one key: one of {', '.join(LEAVES + GROUPS)}")
    ((op, arg),) = value.items()
    if op in LEAVES:
        if not isinstance(arg, str):
            raise ValidationError(f"{where}.{op}", arg, "must be text")
        if op == "regex":
            try:
                _compiled(arg)
            except re.error as e:
                raise ValidationError(f"{where}.regex", arg, f"is not a valid regular expression: {e}") from None
        # the reported id is lower-cased before matching: a leaf with capitals could never match
        text = arg if op == "regex" else arg.lower()
        return Clause(op, text=text)
    if op in GROUPS:
        if not isinstance(arg, list) or not arg or len(arg) > MAX_CLAUSE_TERMS:
            raise ValidationError(f"{where}.{op}", arg, f"must be a list of 1 to {MAX_CLAUSE_TERMS} clauses")
        return Clause(op, terms=tuple(_clause(t, f"{where}.{op}[{i}]", depth + 1) for i, t in enumerate(arg)))
    raise ValidationError(where, op, f"is not a clause; the clauses are {', '.join(LEAVES + GROUPS)}")


@functools.lru_cache(maxsize=8192)
def parse_clause(rule: str) -> Clause:
    """The clause a rule's JSON text holds; a ``ValidationError`` naming the part that is wrong otherwise."""
    if not isinstance(rule, str):
        raise ValidationError("rule", rule, "must be JSON text")
    if len(rule) > MAX_MATCH_RULE_CHARS:
        raise ValidationError("rule", rule[:80] + "...", f"is longer than {MAX_MATCH_RULE_CHARS} characters")
    try:
        value = json.loads(rule)
    except ValueError as e:
        raise ValidationError("rule", rule, f"is not JSON: {e}") from None
    return _clause(value, "rule", 1)


def canonical_rule(clause: Clause | Any) -> str:
    """The one JSON text of a clause (a ``Clause`` or its JSON value): sorted keys, no spaces."""
    if not isinstance(clause, Clause):
        clause = _clause(clause, "rule", 1)
    return json.dumps(clause.to_json(), separators=(",", ":"), sort_keys=True)


_COMPACT_DATE = re.compile(r"-(20\d\d)(\d\d)(\d\d)(?=$|[^0-9])")


def dashed_date(ref: str) -> str:
    """``gpt-5.2-20251211`` -> ``gpt-5.2-2025-12-11``: gateways write compact dates where catalogs write dashed
    ones. The one rewrite the resolver tries (after the id as reported); ids without such a date are unchanged."""
    return _COMPACT_DATE.sub(lambda m: f"-{m.group(1)}-{m.group(2)}-{m.group(3)}", ref)


__all__ = ["Clause", "canonical_rule", "dashed_date", "parse_clause"]
