"""The token estimator: the word heuristic exactly as token-budget-contracts computes it (checked against the
installed package, which runs without tiktoken here), the call estimate's str-only rule, and bad input refused."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tbcontracts.tokenizer import estimate_tokens as ref_estimate

from ledger.economics import token_estimate as te
from ledger.errors import ValidationError

HAS_TIKTOKEN = importlib.util.find_spec("tiktoken") is not None


@pytest.mark.parametrize(("text", "tokens"), [
    ("", 0), ("a", 1), ("one two", 2), ("   ", 1), ("hello,world", 1), ("w " * 10, 13), ("x y z", 3),
    ("tab\tand\nnewline words", 5), ("v " * 100, 130),
])
def test_word_heuristic_values(text: str, tokens: int) -> None:
    assert te.word_heuristic(text) == tokens


@given(st.integers(min_value=0, max_value=20_000))
def test_integer_heuristic_equals_the_references_float_product_for_every_word_count(words: int) -> None:
    text = "w " * words
    assert te.word_heuristic(text) == (0 if not text else max(1, int(words * 1.3)))


@given(st.text(max_size=200))
def test_word_heuristic_equals_the_reference_on_any_text(text: str) -> None:
    assert te.word_heuristic(text) == ref_estimate((text,), {}, None)


@pytest.mark.skipif(HAS_TIKTOKEN, reason="with tiktoken installed the estimator counts BPE tokens")
def test_without_tiktoken_the_heuristic_is_in_force() -> None:
    assert te.tokenizer_name() == "words*1.3"
    assert te.count_tokens("one two three four five six seven eight nine ten") == 13


def test_call_estimate_counts_only_strings() -> None:
    split = te.estimate_split(("one two three", 42, b"bytes", None), {"style": "two words", "n": 7.5},
                              "a reply of five words")
    assert (split.input, split.output, split.total) == (3 + 2, 6, 11)
    assert te.estimate_call_tokens((), None, {"not": "a str"}) == 0
    assert te.estimate_call_tokens(["list", "of args"], {}, "") == 1 + 2
    assert te.estimate_call_tokens(("a b",), {"k": "c d e"}, "f") == ref_estimate(("a b",), {"k": "c d e"}, "f")


@pytest.mark.parametrize(("call", "field"), [
    (lambda: te.count_tokens(12), "text"),
    (lambda: te.count_tokens(None), "text"),
    (lambda: te.word_heuristic(b"bytes"), "text"),
    (lambda: te.estimate_split("a string, not a tuple"), "args"),
    (lambda: te.estimate_split((), ["k", "v"]), "kwargs"),
])
def test_bad_input_is_refused_naming_the_field(call, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        call()
    assert e.value.field == field
