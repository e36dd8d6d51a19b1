"""A deliberately naive transcription of RFC 9162 §2.1: a test oracle, never imported by ledger/.

Each function is the RFC's recursive definition written out as Python, over the list of leaf
*inputs* D_n = [d(0), ..., d(n-1)] (not leaf hashes), recomputing every subtree from scratch. It
is slow on purpose: nothing here is clever enough to share a bug with ``ledger/integrity/merkle.py``.
The RFC's definitions are quoted in the comments.
"""

from __future__ import annotations

import hashlib


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash_leaf(data: bytes) -> bytes:
    # MTH({d(0)}) = SHA-256(0x00 || d(0)).
    return sha256(b"\x00" + data)


def hash_children(left: bytes, right: bytes) -> bytes:
    # The 0x01 prefix of MTH(D_n) for n > 1; any byte strings (the RFC 6962 known answer for
    # "N123" || "N456" uses short ones).
    return sha256(b"\x01" + left + right)


def largest_power_of_two_below(n: int) -> int:
    # "let k be the largest power of two smaller than n (i.e., k < n <= 2k)"
    k = 1
    while k * 2 < n:
        k = k * 2
    return k


def mth(entries: list[bytes]) -> bytes:
    # §2.1.1:
    #   The hash of an empty list is the hash of an empty string:
    #     MTH({}) = SHA-256().
    #   The hash of a list with one entry (also known as a leaf hash) is:
    #     MTH({d(0)}) = SHA-256(0x00 || d(0)).
    #   For n > 1, let k be the largest power of two smaller than n (i.e., k < n <= 2k).
    #     MTH(D_n) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
    n = len(entries)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return hash_leaf(entries[0])
    k = largest_power_of_two_below(n)
    return hash_children(mth(entries[0:k]), mth(entries[k:n]))


def path(m: int, entries: list[bytes]) -> list[bytes]:
    # §2.1.3.1, for 0 <= m < n:
    #   The path for the single leaf in a tree with a one-element input list D[1] = {d(0)} is
    #   empty:
    #     PATH(0, {d(0)}) = {}
    #   For n > 1, let k be the largest power of two smaller than n.
    #     PATH(m, D_n) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k; and
    #     PATH(m, D_n) = PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k,
    #   where ":" is concatenation of lists.
    n = len(entries)
    assert 0 <= m < n
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return [*path(m, entries[0:k]), mth(entries[k:n])]
    return [*path(m - k, entries[k:n]), mth(entries[0:k])]


def proof(m: int, entries: list[bytes]) -> list[bytes]:
    # §2.1.4.1, for 0 < m < n:
    #   PROOF(m, D_n) = SUBPROOF(m, D_n, true)
    # Taken here also for m == n, where SUBPROOF(m, D_m, true) = {} gives the empty proof.
    assert 0 < m <= len(entries)
    return subproof(m, entries, True)


def subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    # §2.1.4.1:
    #   If m = n, the subproof is empty if b is true, and MTH(D_m) otherwise:
    #     SUBPROOF(m, D_m, true) = {}
    #     SUBPROOF(m, D_m, false) = {MTH(D_m)}
    #   For m < n, let k be the largest power of two smaller than n.
    #   If m <= k, the right subtree entries D[k:n] only exist in the current tree:
    #     SUBPROOF(m, D_n, b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
    #   If m > k, the left subtree entries D[0:k] are identical in both trees:
    #     SUBPROOF(m, D_n, b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
    n = len(entries)
    if m == n:
        if b:
            return []
        return [mth(entries)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return [*subproof(m, entries[0:k], b), mth(entries[k:n])]
    return [*subproof(m - k, entries[k:n], False), mth(entries[0:k])]


# Not from the RFC: the sample of leaf indices that the golden vectors and the tests share for
# sizes too large to take every index.
def spot_indices(size: int) -> list[int]:
    """Both ends, both sides of every power of two below size, and the middle."""
    picks = {0, 1, size // 2, size - 2, size - 1}
    boundary = 1
    while boundary < size:
        picks.update({boundary - 1, boundary})
        boundary *= 2
    return sorted(i for i in picks if 0 <= i < size)
