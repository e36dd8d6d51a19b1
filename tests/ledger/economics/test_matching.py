"""Model-matching clauses: checked with typed errors naming the part that is wrong, one canonical text per clause,
evaluated on lower-cased ids; and the book's resolution order (exact, lower case, provider/ prefix, rules by rank
then log order, a dashed date) with a bounded number of hops."""

from __future__ import annotations

import pytest

from ledger.economics.matching import canonical_rule, dashed_date, parse_clause
from ledger.economics.pricing import PriceBook
from ledger.errors import EconomicsError, ValidationError
from ledger.limits import MAX_CLAUSE_DEPTH, MAX_MATCH_RULE_CHARS
from ledger.wire.events import PriceMatch, PriceSet

T = 1_800_000_000_000_000


@pytest.mark.parametrize(("rule", "field"), [
    ("not json", "rule"),
    ('{"equals": 3}', "rule.equals"),
    ('{"starts_with": "a", "ends_with": "b"}', "rule"),
    ('{"glob": "a*"}', "rule"),
    ('{"or": []}', "rule.or"),
    ('{"and": [{"equals": "a"}, {"nope": "b"}]}', "rule.and[1]"),
    ('{"regex": "(unclosed"}', "rule.regex"),
    ('{"or": [' * MAX_CLAUSE_DEPTH + '{"equals": "a"}' + "]}" * MAX_CLAUSE_DEPTH, "rule" + ".or[0]" * MAX_CLAUSE_DEPTH),
    ('{"equals": "' + "a" * MAX_MATCH_RULE_CHARS + '"}', "rule"),
])
def test_bad_clauses_are_refused_naming_the_part(rule, field):
    with pytest.raises(ValidationError) as caught:
        parse_clause(rule)
    assert caught.value.evidence["field"].startswith(field)


def test_canonical_text_and_lower_cased_matching():
    rule = canonical_rule({"or": [{"starts_with": "Claude-Haiku-4-5"}, {"regex": "^o[134]"}]})
    assert rule == '{"or":[{"starts_with":"claude-haiku-4-5"},{"regex":"^o[134]"}]}'
    clause = parse_clause(rule)
    assert clause.matches("claude-haiku-4-5-20251001") and clause.matches("o3-mini")
    assert not clause.matches("gpt-4.1")
    both = parse_clause('{"and":[{"contains":"sonnet"},{"ends_with":"-v1:0"}]}')
    assert both.matches("us.anthropic.claude-sonnet-4-5-20250929-v1:0") and not both.matches("claude-sonnet-4-5")


def test_dashed_date_rewrites_only_a_real_compact_date():
    assert dashed_date("gpt-5.2-20251211") == "gpt-5.2-2025-12-11"
    assert dashed_date("claude-sonnet-4-5") == "claude-sonnet-4-5"
    assert dashed_date("model-123456789") == "model-123456789"


def line(provider: str, model: str, rate: int) -> PriceSet:
    return PriceSet(provider=provider, model=model, input_micros_per_mtok=rate, output_micros_per_mtok=rate,
                    cache_read_micros_per_mtok=rate, cache_write_micros_per_mtok=rate)


def rule(provider: str, clause: dict, target: str, model: str, rank: int = 0, **kw) -> PriceMatch:
    return PriceMatch(provider=provider, rule=canonical_rule(clause), target_provider=target, target_model=model,
                      rank=rank, **kw)


@pytest.fixture
def book() -> PriceBook:
    b = PriceBook()
    for p in (line("acme", "big", 10), line("acme", "small", 1), line("other", "x", 5)):
        b.apply_price_set(p, T)
    b.apply_price_match(rule("acme", {"starts_with": "big-"}, "acme", "big", rank=1), T)
    b.apply_price_match(rule("acme", {"contains": "-small"}, "acme", "small", rank=2), T)
    return b


def test_resolution_order(book):
    assert book.resolve("acme", "big", T).via == "exact"
    assert (book.resolve("acme", "BIG", T).model, book.resolve("acme", "BIG", T).via) == ("big", "lower-case")
    assert (book.resolve("gateway", "acme/small", T).provider, book.resolve("gateway", "acme/small", T).via) == (
        "acme", "prefix")
    # both rules match: the lower rank wins; an operator alias at rank -1 comes before both
    assert book.resolve("acme", "big-small-2025", T).model == "big"
    book.apply_price_match(rule("acme", {"equals": "big-small-2025"}, "acme", "small", rank=-1), T + 1)
    assert book.resolve("acme", "big-small-2025", T + 1).model == "small"
    assert book.resolve("acme", "big-small-2025", T).model == "big"  # not before the alias's own time
    # withdrawn: the next rule applies again
    book.apply_price_match(rule("acme", {"equals": "big-small-2025"}, "acme", "small", rank=-1, active=False), T + 2)
    assert book.resolve("acme", "big-small-2025", T + 2).model == "big"


def test_a_rule_to_an_unpriced_model_and_an_unmatched_id_are_unknown_with_evidence(book):
    book.apply_price_match(rule("acme", {"equals": "ghost"}, "acme", "nowhere"), T)
    with pytest.raises(EconomicsError) as caught:
        book.resolve("acme", "ghost", T)
    assert caught.value.evidence["target"] == "acme/nowhere" and caught.value.evidence["code"] == "unknown_model"
    with pytest.raises(EconomicsError):
        book.resolve("acme", "nothing-like-it", T)


def test_provider_only_rules_cannot_loop(book):
    # two providers that send every id to each other: resolution stops after MAX_RESOLUTION_HOPS, unpriced
    book.apply_price_match(rule("p1", {"starts_with": ""}, "p2", ""), T)
    book.apply_price_match(rule("p2", {"starts_with": ""}, "p1", ""), T)
    with pytest.raises(EconomicsError):
        book.resolve("p1", "anything", T)


def test_a_non_canonical_rule_is_refused_and_changes_nothing(book):
    before = book.applied
    with pytest.raises(ValidationError, match="canonical"):
        book.apply_price_match(PriceMatch(provider="acme", rule='{"equals": "A"}', target_provider="acme",
                                          target_model="big"), T)
    assert book.applied == before
