"""Token estimates for calls whose usage nobody reported: a real tokenizer where one is installed, a word count else.

What this module does
    ``count_tokens(text)`` is the number of tokens a text is estimated to hold:

    * with ``tiktoken`` importable and its ``cl100k_base`` encoding loadable (the encoding may need a download on
      first use; without network it is not loadable): the length of that BPE encoding (special-token markers in
      the text are counted as ordinary text, never refused);
    * otherwise the documented word heuristic of token-budget-contracts (SEEDS.md section 2.6): an empty text is
      0 tokens; any other text is ``max(1, floor(words * 13 / 10))``, ``words`` being the whitespace-separated
      runs of the text (so a whitespace-only text is 1 token, "hello,world" is 1). The reference computes
      ``int(words * 1.3)`` in binary floating point; the integer form here gives the same number for every word
      count (the double nearest 1.3 is above 1.3, so the float product never falls below an integer it should
      reach).

    ``estimate_call_tokens(args, kwargs, result)`` estimates one call from what it was given and what it returned:
    the sum of ``count_tokens`` over the ``str`` positional arguments, the ``str`` keyword values and a ``str``
    result; anything else (numbers, bytes, objects) counts 0, as in the reference. It is one count of the whole
    call, not split into input and output tokens: a caller that needs the split estimates the prompt and the
    result separately (``estimate_split``).

    The estimate is an estimate: reported usage, when a provider gives it, always replaces it.

What it must never do
    Read the network itself, or turn a non-text argument to ``count_tokens`` into 0 (that is an input error).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from ledger.errors import ValidationError

TIKTOKEN_ENCODING = "cl100k_base"  # the encoding the reference loads when tiktoken is installed
WORD_TOKENS_NUMERATOR = 13  # the heuristic: 1.3 tokens per whitespace-separated word, as 13 / 10
WORD_TOKENS_DENOMINATOR = 10
HEURISTIC = "words*1.3"  # the name ``tokenizer_name`` gives the heuristic


class _Encoding(Protocol):
    name: str

    def encode(self, text: str, *, disallowed_special: Any = ...) -> list[int]: ...


@functools.cache
def _encoding() -> _Encoding | None:
    """The tiktoken encoding, or None when tiktoken is absent or the encoding cannot be loaded (offline)."""
    try:
        import tiktoken  # type: ignore[import-not-found,unused-ignore]  # optional: the heuristic stands in
    except ImportError:
        return None
    try:
        enc: _Encoding = tiktoken.get_encoding(TIKTOKEN_ENCODING)
    except Exception:  # noqa: BLE001 - any failure to load (no network, no cache, corrupt file) means: no tokenizer
        return None
    return enc


def tokenizer_name() -> str:
    """Which estimator is in force here: ``tiktoken:cl100k_base`` or ``words*1.3``."""
    enc = _encoding()
    return HEURISTIC if enc is None else f"tiktoken:{enc.name}"


def word_heuristic(text: str) -> int:
    """The reference's word heuristic (see the module doc), whatever tokenizer is installed."""
    if not isinstance(text, str):
        raise ValidationError("text", type(text).__name__, "must be a str")
    if not text:
        return 0
    return max(1, len(text.split()) * WORD_TOKENS_NUMERATOR // WORD_TOKENS_DENOMINATOR)


def count_tokens(text: str) -> int:
    """The estimated number of tokens in ``text``: the BPE length with tiktoken, the word heuristic without."""
    if not isinstance(text, str):
        raise ValidationError("text", type(text).__name__, "must be a str")
    if not text:
        return 0
    enc = _encoding()
    if enc is None:
        return word_heuristic(text)
    return len(enc.encode(text, disallowed_special=()))


def _texts_tokens(values: Sequence[Any]) -> int:
    return sum(count_tokens(v) for v in values if isinstance(v, str))


def estimate_call_tokens(args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                         result: Any = None) -> int:
    """One call's estimated tokens: its ``str`` arguments, ``str`` keyword values and ``str`` result (else 0)."""
    return estimate_split(args, kwargs, result).total


class Split(NamedTuple):
    """An estimate in two parts: ``input`` from the arguments, ``output`` from the result."""

    input: int
    output: int

    @property
    def total(self) -> int:
        return self.input + self.output


def estimate_split(args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, result: Any = None) -> Split:
    """``estimate_call_tokens`` with the arguments' part (``input``) and the result's part (``output``) apart."""
    if not isinstance(args, Sequence) or isinstance(args, str | bytes):
        raise ValidationError("args", type(args).__name__, "must be a sequence of positional arguments")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ValidationError("kwargs", type(kwargs).__name__, "must be a mapping of keyword arguments")
    given = _texts_tokens(args) + _texts_tokens(list((kwargs or {}).values()))
    return Split(given, count_tokens(result) if isinstance(result, str) else 0)
