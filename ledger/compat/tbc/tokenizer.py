"""tbcontracts' token estimation, on ``ledger.economics.token_estimate``: tiktoken's ``cl100k_base`` where it is
installed and loadable, else ``max(1, floor(words * 1.3))`` per non-empty text; a call is the sum over its ``str``
arguments, ``str`` keyword values and ``str`` result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledger.economics.token_estimate import count_tokens, estimate_call_tokens, tokenizer_name

__all__ = ["count_tokens", "estimate_tokens", "tokenizer_name"]


def estimate_tokens(args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, result: Any = None) -> int:
    """The estimated tokens of one call (see ``ledger.economics.token_estimate.estimate_call_tokens``)."""
    return estimate_call_tokens(args, kwargs, result)
